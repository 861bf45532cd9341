"""Upstream mode: with the reference gateway as the gateway's upstream, upstream failures must reach the client.

Runs only with --upstream-mode (docs/upstream-mode.md): its requests carry upstream cues that only the reference
gateway understands, so against any other upstream they would only be answered as ordinary prompts.
"""

from __future__ import annotations

import pytest

from conformance.plugin import RUN_KEY
from conformance.probes import Probe
from conformance.propagation import PROPAGATION_PROBES, send_probe
from conformance.runner import ConformanceRun

OFF = (
    "upstream mode is off: pass --upstream-mode when the gateway's upstream is the reference gateway "
    "(docs/upstream-mode.md)"
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "upstream_probe" not in metafunc.fixturenames:
        return
    if not metafunc.config.getoption("upstream_mode", default=False):
        off = pytest.param(None, marks=pytest.mark.skip(reason=OFF), id="upstream-mode-off")
        metafunc.parametrize("upstream_probe", [off])
        return
    run = metafunc.config.stash.get(RUN_KEY, None)
    probes = run.selected(PROPAGATION_PROBES) if run is not None else list(PROPAGATION_PROBES)
    metafunc.parametrize("upstream_probe", probes, ids=[p.id for p in probes])


def test_upstream_failure_propagates(upstream_probe: Probe, conformance_run: ConformanceRun) -> None:
    results = conformance_run.judge(upstream_probe, send_probe(conformance_run, upstream_probe))
    gating = [r for r in results if r.gating]
    if gating:
        pytest.fail("\n".join(f"{r.check}: {r.message}\n  reproduce: {r.reproduce}" for r in gating), pytrace=False)
