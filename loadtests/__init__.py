"""Load tests for Anthropic-compatible gateways: Locust users that judge every response with the suite's core.

The modules fall in two groups. The plain ones (settings, metrics, outcomes, pacing, budget, ratelimits,
thresholds, reports, ci) import neither Locust nor gevent, so they can be tested and reused anywhere. The Locust
front-end (wire, users, plugin, webui, locustfile) imports Locust, which monkey-patches the process on import:
never import those from a process that is not a Locust run. See docs/loadtests.md.
"""

from __future__ import annotations
