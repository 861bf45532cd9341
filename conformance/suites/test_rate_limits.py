"""Rate limits: every 429 the run met (and, with --probe-rate-limit N, one provoked on purpose) is judged."""

from __future__ import annotations

import time

import pytest

from conformance.checks.ratelimit import SDK_MAX_RETRY_AFTER, parse_retry_after
from conformance.exchange import Exchange, RequestSpec
from conformance.probes import Probe, basic_body
from conformance.runner import ConformanceRun

CHECKS = ("rate_limit_retry_after", "rate_limit_envelope", "rate_limit_headers_reported")


def _fail_if_gating(results: list) -> None:  # type: ignore[type-arg]
    gating = [r for r in results if r.gating]
    if gating:
        pytest.fail("\n".join(f"{r.check}: {r.message}" for r in gating), pytrace=False)


def test_rate_limit_answers(conformance_run: ConformanceRun, request: pytest.FixtureRequest) -> None:
    budget = request.config.option.probe_rate_limit
    exchanges: dict[str, Exchange] = {}
    checks = CHECKS
    if budget:
        body = {**basic_body(conformance_run.target), "max_tokens": 1}
        for i in range(budget):
            exchange = conformance_run.send_one(
                RequestSpec("POST", "/v1/messages", json=body, label="burst"), retry=False
            )
            if exchange.status == 429:
                exchanges[f"burst-{i}"] = exchange
                break
        limited = next(iter(exchanges.values()), None)
        value = limited.header("retry-after") if limited is not None else None
        try:
            wait = parse_retry_after(value) if value is not None else None
        except ValueError:
            wait = None
        if wait is not None and 0 < wait <= SDK_MAX_RETRY_AFTER:
            time.sleep(wait)
            spec = RequestSpec("POST", "/v1/messages", json=body, label="after retry-after")
            exchanges["after_wait"] = conformance_run.send_one(spec, retry=False)
            checks = (*CHECKS, "rate_limit_retry_after_honest")
    for i, exchange in enumerate(conformance_run.exchanges):
        if exchange.status == 429 and exchange not in exchanges.values():
            exchanges[f"seen-{i}"] = exchange
    probe = Probe("rate_limits", "messages", "Every 429 answer met during the run", (), checks)
    _fail_if_gating(conformance_run.judge(probe, exchanges))
