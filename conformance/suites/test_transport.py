"""How every exchange of the run ended: the transport checks, applied at the end to all of them.

Runs last (after the probes, the properties and the rate limits), so a gateway that hangs, floods, resets or
redirects elsewhere is reported once, listing every exchange it happened to, with the kind and the bound.
"""

from __future__ import annotations

import pytest

from conformance.checks.transport import TRANSPORT_CHECKS
from conformance.probes import Probe
from conformance.runner import ConformanceRun


def test_every_exchange_ended_within_bounds(conformance_run: ConformanceRun) -> None:
    exchanges = {f"#{i} {e.request.method} {e.request.path}": e for i, e in enumerate(conformance_run.exchanges)}
    if not exchanges:
        pytest.skip("the run sent no request")
    probe = Probe("transport", "transport", "Every exchange of the run: how it ended", (), TRANSPORT_CHECKS)
    gating = [r for r in conformance_run.judge(probe, exchanges) if r.gating]
    if gating:
        pytest.fail("\n".join(f"{r.check}: {r.message}\n  reproduce: {r.reproduce}" for r in gating), pytrace=False)
