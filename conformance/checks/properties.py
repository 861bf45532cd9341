"""Checks over the property-based examples: every valid request served, every invalid one rejected."""

from __future__ import annotations

from conformance.checks._helpers import validate
from conformance.checks.context import CheckContext
from conformance.checks.registry import check
from conformance.failures import Failure, NotApplicable

MAX_SHOWN = 3


def _examples(ctx: CheckContext):  # type: ignore[no-untyped-def]
    if not ctx.exchanges:
        raise NotApplicable("no examples were sent (--max-examples 0?)")
    return ctx.exchanges.values()


def _problem_valid(exchange) -> str | None:  # type: ignore[no-untyped-def]
    if exchange.status != 200:
        return f"HTTP {exchange.status}: {exchange.body_excerpt(200)}"
    if exchange.request.stream:
        stream = exchange.stream
        if stream is None:
            return "not an event stream"
        if not stream.complete:
            return f"stream incomplete ({stream.end_cause})"
        bad = [v for v in stream.violations if v.code not in ("unknown-event-type",)]
        if bad:
            return f"stream violation: {bad[0].code}: {bad[0].message}"
        return None
    try:
        validate(exchange.json(), "anthropic/message", "the response")
    except (Failure, ValueError) as exc:
        return str(exc)
    return None


@check(severity="must", area="properties", section="1.2")
def property_valid_requests_served(ctx: CheckContext) -> None:
    """Every generated valid request is served: 200 and a schema-valid Message or a complete, clean stream."""
    failures = [(ex, p) for ex in _examples(ctx) if (p := _problem_valid(ex)) is not None]
    if failures:
        shown = "\n".join(f"- {p}\n  reproduce: {ex.curl()}" for ex, p in failures[:MAX_SHOWN])
        raise Failure(
            f"{len(failures)} of {len(ctx.exchanges)} valid requests were not served correctly:\n{shown}",
            exchange=failures[0][0],
        )


def _problem_invalid(exchange) -> str | None:  # type: ignore[no-untyped-def]
    if exchange.status != 400:
        return f"{exchange.request.label}: expected HTTP 400, got {exchange.status}"
    try:
        body = exchange.json()
        validate(body, "anthropic/error", "the error body")
    except (Failure, ValueError) as exc:
        return f"{exchange.request.label}: {exc}"
    if body["error"]["type"] != "invalid_request_error":
        return f"{exchange.request.label}: error.type {body['error']['type']!r}, expected invalid_request_error"
    return None


@check(severity="must", area="properties", section="4.2")
def property_invalid_requests_rejected(ctx: CheckContext) -> None:
    """Every generated request that breaks one rule is rejected with 400 invalid_request_error in the envelope."""
    failures = [(ex, p) for ex in _examples(ctx) if (p := _problem_invalid(ex)) is not None]
    if failures:
        shown = "\n".join(f"- {p}\n  reproduce: {ex.curl()}" for ex, p in failures[:MAX_SHOWN])
        raise Failure(
            f"{len(failures)} of {len(ctx.exchanges)} invalid requests were not rejected properly:\n{shown}",
            exchange=failures[0][0],
        )
