"""Property-based: schema-derived valid requests must be served, single-rule violations rejected."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from conformance.exchange import Exchange, RequestSpec
from conformance.probes import Probe
from conformance.runner import ConformanceRun
from conformance.strategies import invalid_message_requests, message_requests


def _settings(request: pytest.FixtureRequest) -> settings:
    # No shrinking: every example is a paid request; the first failing example is reported as found.
    return settings(
        max_examples=request.config.option.max_examples,
        phases=[Phase.explicit, Phase.generate],
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


def _probe(pid: str, check: str, description: str) -> Probe:
    return Probe(pid, "messages", description, (), (check,))


def _finish(run: ConformanceRun, probe: Probe, exchanges: dict[str, Exchange]) -> None:
    results = run.judge(probe, exchanges)
    gating = [r for r in results if r.gating]
    if gating:
        pytest.fail("\n".join(r.message for r in gating), pytrace=False)


def test_valid_requests_are_served(conformance_run: ConformanceRun, request: pytest.FixtureRequest) -> None:
    probe = _probe("property_valid", "property_valid_requests_served", "Generated valid requests")
    if "property_valid_requests_served" not in conformance_run.enabled:
        pytest.skip("check not selected")
    exchanges: dict[str, Exchange] = {}

    @_settings(request)
    @given(body=message_requests(model=conformance_run.target.model))
    def send(body: dict[str, Any]) -> None:
        spec = RequestSpec("POST", "/v1/messages", json=body, stream=bool(body.get("stream")), label="valid")
        exchange = conformance_run.send_one(spec)
        exchanges[f"example{len(exchanges)}"] = exchange

    send()
    _finish(conformance_run, probe, exchanges)


def test_invalid_requests_are_rejected(conformance_run: ConformanceRun, request: pytest.FixtureRequest) -> None:
    probe = _probe("property_invalid", "property_invalid_requests_rejected", "Generated single-rule violations")
    if "property_invalid_requests_rejected" not in conformance_run.enabled:
        pytest.skip("check not selected")
    exchanges: dict[str, Exchange] = {}

    @_settings(request)
    @given(case=invalid_message_requests(model=conformance_run.target.model))
    def send(case: tuple[str, dict[str, Any]]) -> None:
        label, body = case
        exchange = conformance_run.send_one(RequestSpec("POST", "/v1/messages", json=body, label=label))
        exchanges[f"example{len(exchanges)}"] = exchange

    send()
    _finish(conformance_run, probe, exchanges)
