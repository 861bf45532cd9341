"""Runs probes against a target and turns what the checks found into CheckResults (no pytest here)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conformance import __version__
from conformance.checks import CHECKS, CheckContext, load_all
from conformance.checks.context import ReadExchanges
from conformance.exchange import Exchange, RequestSpec
from conformance.failures import Failure, NotApplicable, Unsupported
from conformance.probes import Probe
from conformance.results import CheckResult, Evidence, Outcome, RunReport, Severity
from conformance.target import Target
from conformance.transport import Transport

if TYPE_CHECKING:
    from conformance.reporting import Baseline

# Statuses that mean "this gateway does not offer that feature", when the body is a proper error.
DECLINE_STATUSES = frozenset({400, 403, 404, 405, 415, 422, 501})
EVIDENCE_LIMIT = 6000
RETRY_STATUSES = frozenset({429, 529})
MAX_RETRIES = 2  # the official SDKs' default


def exchange_evidence(exchange: Exchange, target: Target) -> tuple[Evidence, ...]:
    """What a person needs to see of an exchange: status and headers, then the events or the body."""
    if exchange.error is not None and exchange.status is None:
        return (Evidence("transport", f"{exchange.error.kind}: {exchange.error.message}"),)
    head = f"HTTP {exchange.status}\n" + "\n".join(f"{k}: {v}" for k, v in exchange.headers)
    items = [Evidence("response headers", target.mask(head), "headers")]
    if exchange.stream is not None and exchange.stream.events:
        raw = b"".join(e.raw for e in exchange.stream.events)
        items.append(Evidence("events", target.mask(_clip(raw.decode("utf-8", errors="replace"))), "events"))
    elif exchange.body:
        items.append(Evidence("body", target.mask(_clip(exchange.body.decode("utf-8", errors="replace"))), "body"))
    if exchange.error is not None:
        items.append(Evidence("transport", f"{exchange.error.kind}: {exchange.error.message}"))
    return tuple(items)


def _clip(text: str) -> str:
    if len(text) <= EVIDENCE_LIMIT:
        return text
    return text[:EVIDENCE_LIMIT] + f"\n… ({len(text) - EVIDENCE_LIMIT} more characters)"


def declined(exchange: Exchange) -> str | None:
    """Why an optional feature looks unsupported (a clean 4xx with an error body), or None."""
    if exchange.status not in DECLINE_STATUSES:
        return None
    body = exchange.json_or_none()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    kind = error.get("type", "?")
    return f"the gateway declined it: HTTP {exchange.status} {kind}: {str(error.get('message', ''))[:200]}"


def sdk_declined(observations: Mapping[str, Any]) -> str | None:
    """Why an optional feature looks unsupported to an SDK (it raised for a clean 4xx), or None."""
    for outcome in observations.values():
        status = getattr(outcome, "status", None)
        if status in DECLINE_STATUSES:
            return f"the gateway declined it: HTTP {status} ({getattr(outcome, 'error_type', '?')})"
    return None


class ConformanceRun:
    """One run against one target: sends probes, applies checks, keeps every result."""

    def __init__(
        self,
        target: Target,
        *,
        transport: Transport | None = None,
        checks: Iterable[str] | None = None,
        required: Iterable[str] = (),
        baseline: Baseline | None = None,
    ) -> None:
        load_all()
        self.target = target
        self.transport = transport or Transport(target)
        self.enabled = frozenset(CHECKS) if checks is None else frozenset(checks)
        self.required = tuple(required)
        self.baseline = baseline
        self.results: list[CheckResult] = []
        self.exchanges: list[Exchange] = []
        self.sdk_requests = 0
        self.started = time.time()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")

    @property
    def requests_sent(self) -> int:
        """Requests sent so far, those the SDKs sent included."""
        return len(self.exchanges) + self.sdk_requests

    def selected(self, probes: Sequence[Probe]) -> list[Probe]:
        """The probes that have at least one enabled check."""
        return [p for p in probes if any(c in self.enabled for c in p.checks)]

    def send_one(self, spec: RequestSpec, *, retry: bool = True) -> Exchange:
        """Send one request and count it; 429/529 are retried like the SDKs do, honouring retry-after.

        Every 429 stays in self.exchanges, so the rate-limit checks judge it, while the probe gets the
        answer the gateway gives once its limit allows: a rate-limited gateway is not failed everywhere.
        """
        for attempt in range(MAX_RETRIES + 1):
            exchange = self.transport.send(spec)
            self.exchanges.append(exchange)
            if not retry or exchange.status not in RETRY_STATUSES or attempt == MAX_RETRIES:
                return exchange
            time.sleep(self._retry_delay(exchange, attempt))
        raise AssertionError("unreachable")

    def _retry_delay(self, exchange: Exchange, attempt: int) -> float:
        from conformance.checks.ratelimit import SDK_MAX_RETRY_AFTER, parse_retry_after

        value = exchange.header("retry-after")
        if value is not None:
            try:
                seconds = parse_retry_after(value)
            except ValueError:
                seconds = -1.0
            if 0 < seconds <= SDK_MAX_RETRY_AFTER:
                return seconds
        return min(0.5 * float(2**attempt), 8.0)

    def send(self, probe: Probe) -> tuple[dict[str, Exchange], dict[str, Any]]:
        """Send a probe's steps in order; a step whose builder returns None is not sent."""
        from conformance.sdk import SdkCall

        exchanges: dict[str, Exchange] = {}
        observations: dict[str, Any] = {}
        for role, build in probe.steps:
            step = build(self.target, exchanges)
            if step is None:
                continue
            if isinstance(step, SdkCall):
                observations[role] = step.execute(self.target)
                self.sdk_requests += step.requests
            else:
                exchanges[role] = self.send_one(step)
        return exchanges, observations

    def run_probe(self, probe: Probe) -> list[CheckResult]:
        """Send a probe and judge it with each of its enabled checks."""
        exchanges, observations = self.send(probe)
        return self.judge(probe, exchanges, observations)

    def judge(
        self, probe: Probe, exchanges: dict[str, Exchange], observations: dict[str, Any] | None = None
    ) -> list[CheckResult]:
        """Apply the probe's enabled checks to its exchanges and record the results."""
        ctx = CheckContext(probe, ReadExchanges(exchanges), self.target, observations or {})
        first = next(iter(exchanges.values()), None)
        decline = declined(first) if probe.optional and first is not None else None
        if decline is None and probe.optional and first is None:
            decline = sdk_declined(ctx.observations)
        results = []
        for check_id in probe.checks:
            if check_id not in self.enabled:
                continue
            results.append(self._apply(check_id, ctx, first, decline))
        return self.record(results)

    def record(self, results: Iterable[CheckResult]) -> list[CheckResult]:
        """Keep results (marking the baseline's accepted deviations) and return them as kept."""
        kept = list(self.baseline.apply(results)) if self.baseline is not None else list(results)
        self.results.extend(kept)
        return kept

    def _apply(self, check_id: str, ctx: CheckContext, first: Exchange | None, decline: str | None) -> CheckResult:
        spec = CHECKS[check_id]
        severity: Severity = spec.severity
        outcome: Outcome
        reproduce = self.target.mask(first.curl()) if first is not None else None
        evidence: tuple[Evidence, ...] = ()
        if decline is not None:
            if ctx.probe.feature in self.required:
                outcome, message, severity = "failed", f"required feature {ctx.probe.feature}: {decline}", "must"
                evidence = exchange_evidence(first, self.target) if first is not None else ()
            else:
                outcome, message = "unsupported", decline
        else:
            read = ctx.exchanges if isinstance(ctx.exchanges, ReadExchanges) else None
            if read is not None:
                read.last_read = None
            try:
                spec.func(ctx)
            except Failure as failure:
                outcome, message = "failed", self.target.mask(failure.message)
                # Show the exchange the check judged (a multi-step probe's later step), not always the first.
                shown = failure.exchange or (read.last_read if read is not None else None) or first
                evidence = failure.evidence or (exchange_evidence(shown, self.target) if shown is not None else ())
                if shown is not None:
                    reproduce = self.target.mask(shown.curl())
            except NotApplicable as why:
                outcome, message = "skipped", str(why)
            except Unsupported as why:
                outcome, message = "unsupported", str(why)
            except Exception as exc:  # a check that crashes is a harness bug: report it, never hide it
                outcome = "error"
                message = self.target.mask(f"check crashed: {type(exc).__name__}: {exc}")
                evidence = (Evidence("traceback", self.target.mask(traceback.format_exc()), "text"),)
            else:
                outcome, message = "passed", ""
        return CheckResult(
            check=check_id,
            probe=ctx.probe.id,
            area=spec.area,
            feature=ctx.probe.feature,
            outcome=outcome,
            severity=severity,
            rule=spec.rule,
            section=spec.section,
            message=message,
            reproduce=reproduce,
            evidence=evidence,
        )

    def report(self, *, results: Sequence[CheckResult] | None = None, baseline_path: str | None = None) -> RunReport:
        """The run so far as a RunReport."""
        return RunReport(
            gateway_url=self.target.base_url,
            model=self.target.model,
            started_at=self.started_at,
            duration_s=time.time() - self.started,
            tool_version=__version__,
            requests_sent=self.requests_sent,
            results=tuple(self.results if results is None else results),
            required=self.required,
            baseline_path=baseline_path,
        )
