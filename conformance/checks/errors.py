"""Checks on error responses: status, envelope, type-for-status, request id (protocol.md section 4)."""

from __future__ import annotations

from conformance.checks._helpers import expect_status, json_body, require_exchange_ok, validate
from conformance.checks.context import CheckContext
from conformance.checks.registry import check
from conformance.failures import Failure, MissingHeader, NotApplicable, UnexpectedStatus, WrongErrorEnvelope
from conformance.schemas import status_error_types


def _error_exchange(ctx: CheckContext):  # type: ignore[no-untyped-def]
    exchange = ctx.exchanges.get("error") or ctx.exchange
    require_exchange_ok(exchange)
    if exchange.status is not None and exchange.status < 400:
        raise NotApplicable(f"the request was not rejected (HTTP {exchange.status}; see error_status_expected)")
    return exchange


@check(severity="must", area="errors", section="4.2")
def error_status_expected(ctx: CheckContext) -> None:
    """An invalid request is rejected with the status the protocol gives that error class."""
    statuses = tuple(ctx.expect("statuses", (400,)))
    exchange = ctx.exchanges.get("error") or ctx.exchange
    expect_status(exchange, statuses, ctx.probe.description)


@check(severity="must", area="errors", section="4.1")
def error_envelope_schema(ctx: CheckContext) -> None:
    """An error body is {"type":"error","error":{"type","message"}} with a documented error type."""
    exchange = _error_exchange(ctx)
    try:
        body = json_body(exchange)
    except Failure as failure:
        raise WrongErrorEnvelope(f"the error is not JSON: {failure.message}") from None
    if isinstance(body, dict) and "type" not in body and isinstance(body.get("error"), dict):
        raise WrongErrorEnvelope(
            f"OpenAI-shaped error envelope on an Anthropic endpoint (no top-level type): {exchange.body_excerpt(300)}"
        )
    try:
        validate(body, "anthropic/error", "the error body")
    except Failure as failure:
        raise WrongErrorEnvelope(failure.message) from None


@check(severity="must", area="errors", section="4.2")
def error_type_matches_status(ctx: CheckContext) -> None:
    """error.type is the one the protocol pairs with the HTTP status (429 rate_limit_error, 529 overloaded...)."""
    exchange = _error_exchange(ctx)
    body = exchange.json_or_none()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        raise NotApplicable("no error object (see error_envelope_schema)")
    table = status_error_types()
    status = exchange.status
    assert status is not None
    expected = table.get(status)
    if expected is None:
        # 4xx statuses without their own type use invalid_request_error; 5xx api_error (protocol.md 4.2).
        expected = "invalid_request_error" if status < 500 else "api_error"
        if status >= 500 and error.get("type") in ("api_error", "overloaded_error", "timeout_error"):
            return
    if error.get("type") != expected:
        raise WrongErrorEnvelope(f"HTTP {status} carries error.type {error.get('type')!r}, expected {expected!r}")


@check(severity="should", area="errors", section="4.1")
def error_has_request_id(ctx: CheckContext) -> None:
    """An error response carries request-id (header) so the caller can report it."""
    exchange = _error_exchange(ctx)
    if not exchange.header("request-id"):
        raise MissingHeader("the error response has no request-id header")


@check(severity="must", area="auth", section="1.1")
def gateway_requires_key(ctx: CheckContext) -> None:
    """A request without a valid key is refused with 401, never served."""
    exchange = ctx.exchanges.get("error") or ctx.exchange
    require_exchange_ok(exchange)
    if exchange.status is not None and 200 <= exchange.status < 300:
        raise UnexpectedStatus(
            f"served a request with {'no' if exchange.request.auth == 'none' else 'a wrong'} key "
            f"(HTTP {exchange.status}): anyone can spend this gateway's credit"
        )


@check(severity="must", area="streaming", section="7.6")
def error_not_sent_as_stream(ctx: CheckContext) -> None:
    """An error found before streaming starts is a 4xx/5xx status, not HTTP 200 with an SSE error event."""
    exchange = ctx.exchanges.get("error") or ctx.exchange
    require_exchange_ok(exchange)
    if exchange.status is not None and 200 <= exchange.status < 300:
        if exchange.stream is not None and exchange.stream.errored:
            raise UnexpectedStatus("an invalid request got HTTP 200 and an in-band error event instead of a 4xx")
        raise UnexpectedStatus(f"an invalid request was served (HTTP {exchange.status})")
