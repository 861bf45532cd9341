"""Every probe against the gateway under test; a test fails when a must-level check fails."""

from __future__ import annotations

import pytest

from conformance.probes import Probe
from conformance.runner import ConformanceRun


def test_probe(probe: Probe, conformance_run: ConformanceRun) -> None:
    results = conformance_run.run_probe(probe)
    gating = [r for r in results if r.gating]
    if gating:
        pytest.fail("\n".join(f"{r.check}: {r.message}\n  reproduce: {r.reproduce}" for r in gating), pytrace=False)
