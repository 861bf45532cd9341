"""Locust entry point for the LLM gateway load tests.

    GATEWAY_API_KEY=... locust -f loadtests/locustfile.py -H http://127.0.0.1:8787 --headless \\
        -u 20 -r 20 -t 30s --scenario latency --max-requests 2000 --csv reports/load/run

See docs/loadtests.md for the scenarios, the metrics, distributed runs and the CI gate.
"""

from __future__ import annotations

import loadtests.plugin  # noqa: F401  (registers the options, listeners, web UI extension and gate)
from loadtests.users import GatewayUser

__all__ = ["GatewayUser"]
