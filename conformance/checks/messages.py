"""Checks on non-streaming Messages responses (protocol.md section 2)."""

from __future__ import annotations

from conformance.checks._helpers import blocks, expect_status, json_body, reply_text, success_body, validate
from conformance.checks.context import CheckContext
from conformance.checks.registry import check
from conformance.exchange import WRONG_KEY
from conformance.failures import Failure, MissingHeader, NotApplicable, SecretLeak

STOP_REASONS = (
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
)


def _primary(ctx: CheckContext):  # type: ignore[no-untyped-def]
    return ctx.exchanges.get("json") or ctx.exchange


@check(severity="must", area="messages", section="2")
def status_is_success(ctx: CheckContext) -> None:
    """A valid request is served with HTTP 200."""
    for role, exchange in ctx.exchanges.items():
        if exchange.request.stream:
            continue
        expect_status(exchange, (200,), f"valid request ({role})")


@check(severity="must", area="messages", section="1.1")
def content_type_is_json(ctx: CheckContext) -> None:
    """A Messages response is application/json."""
    exchange = _primary(ctx)
    success_body(exchange)
    if exchange.content_type != "application/json":
        raise Failure(f"content-type is {exchange.header('content-type')!r}, expected application/json")


@check(severity="should", area="messages", section="2.2")
def has_request_id_header(ctx: CheckContext) -> None:
    """Every response carries a request-id header (SDKs expose it as _request_id)."""
    exchange = _primary(ctx)
    if exchange.status is None:
        raise NotApplicable("no response")
    if not exchange.header("request-id"):
        raise MissingHeader("no request-id header: clients cannot quote the request to the vendor")


@check(severity="must", area="messages", section="2")
def message_matches_schema(ctx: CheckContext) -> None:
    """The response body matches the Message schema."""
    for role, exchange in ctx.exchanges.items():
        if exchange.request.stream or exchange.request.path.split("?")[0] != "/v1/messages":
            continue
        try:
            body = success_body(exchange)
        except NotApplicable:
            continue
        validate(body, "anthropic/message", f"the {role} response")


@check(severity="must", area="messages", section="2")
def message_identity(ctx: CheckContext) -> None:
    """The Message has a string id, type "message" and role "assistant"."""
    body = success_body(_primary(ctx))
    if not isinstance(body, dict):
        raise Failure(f"the body is not a JSON object: {type(body).__name__}")
    problems = []
    if not isinstance(body.get("id"), str) or not body.get("id"):
        problems.append(f"id is {body.get('id')!r}")
    if body.get("type") != "message":
        problems.append(f"type is {body.get('type')!r}, expected 'message'")
    if body.get("role") != "assistant":
        problems.append(f"role is {body.get('role')!r}, expected 'assistant'")
    if problems:
        raise Failure("; ".join(problems))


@check(severity="info", area="messages", section="2")
def message_id_has_msg_prefix(ctx: CheckContext) -> None:
    """Message ids start with msg_ (the format may change, so this is informational)."""
    body = success_body(_primary(ctx))
    mid = body.get("id") if isinstance(body, dict) else None
    if isinstance(mid, str) and not mid.startswith("msg_"):
        leak = " (an OpenAI id leaked through a translation)" if mid.startswith("chatcmpl") else ""
        raise Failure(f"id {mid!r} does not start with msg_{leak}")


@check(severity="must", area="messages", section="2")
def content_is_array(ctx: CheckContext) -> None:
    """content is always an array of blocks, never a string."""
    body = success_body(_primary(ctx))
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        got = type(body.get("content")).__name__ if isinstance(body, dict) else type(body).__name__
        raise Failure(f"content is a {got}, expected an array of content blocks")


@check(severity="must", area="messages", section="2")
def stop_reason_valid(ctx: CheckContext) -> None:
    """stop_reason is non-null in a non-streaming response and one of the documented values."""
    body = success_body(_primary(ctx))
    reason = body.get("stop_reason") if isinstance(body, dict) else None
    if reason not in STOP_REASONS:
        raise Failure(f"stop_reason is {reason!r}, expected one of {', '.join(STOP_REASONS)}")


@check(severity="must", area="messages", section="2.1")
def usage_is_sane(ctx: CheckContext) -> None:
    """usage has integer input_tokens > 0 for a non-empty prompt and output_tokens > 0."""
    body = success_body(_primary(ctx))
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        raise Failure(f"usage is {usage!r}, expected an object")
    problems = []
    for key in ("input_tokens", "output_tokens"):
        value = usage.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            problems.append(f"{key} is {value!r}, expected a positive integer")
    for key in ("cache_creation_input_tokens", "cache_read_input_tokens"):
        value = usage.get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            problems.append(f"{key} is {value!r}")
    if problems:
        raise Failure("; ".join(problems))


@check(severity="must", area="messages", section="7.4")
def not_empty_success(ctx: CheckContext) -> None:
    """A served request is not an empty reply with end_turn (an upstream failure rendered as success)."""
    body = success_body(_primary(ctx))
    if not isinstance(body, dict):
        return
    content = body.get("content")
    if body.get("stop_reason") == "end_turn" and (not content or not (reply_text(body) or blocks(body, "tool_use"))):
        raise Failure("the reply is empty but stop_reason is end_turn: a failure disguised as a success")


@check(severity="info", area="semantics", section="8")
def reply_follows_instruction(ctx: CheckContext) -> None:
    """The reply to "Repeat exactly: X" contains X (models may vary, so informational)."""
    expected = ctx.expect("text")
    body = success_body(_primary(ctx))
    text = reply_text(body) if isinstance(body, dict) else ""
    if expected and expected.rstrip(".") not in text:
        raise Failure(f"asked to repeat {expected!r}, replied {text[:200]!r}")


@check(severity="must", area="auth", section="1.1")
def key_not_reflected(ctx: CheckContext) -> None:
    """No response repeats the caller's key (or the wrong key it was sent) in its headers or body."""
    secrets = [WRONG_KEY]
    if ctx.target.api_key is not None:
        secrets.append(ctx.target.api_key.reveal())
    for exchange in ctx.exchanges.values():
        blob = exchange.body + "\n".join(f"{k}: {v}" for k, v in exchange.headers).encode()
        if exchange.stream is not None:
            blob += b"".join(e.raw for e in exchange.stream.events)
        for secret in secrets:
            if secret.encode() in blob:
                which = "the wrong key it was sent" if secret == WRONG_KEY else "the caller's key"
                raise SecretLeak(f"the response contains {which} (masked in this report)")


@check(severity="must", area="auth", section="1.1")
def accepts_x_api_key(ctx: CheckContext) -> None:
    """The key sent as x-api-key is accepted (Anthropic-native clients send it that way)."""
    if ctx.target.api_key is None:
        raise NotApplicable("no key configured (set GATEWAY_API_KEY)")
    expect_status(ctx.exchange, (200,), "request authenticated with x-api-key")


@check(severity="must", area="auth", section="9")
def accepts_bearer(ctx: CheckContext) -> None:
    """The key sent as Authorization: Bearer is accepted (anthropic 2.12.0 sends api_key that way)."""
    if ctx.target.api_key is None:
        raise NotApplicable("no key configured (set GATEWAY_API_KEY)")
    expect_status(ctx.exchange, (200,), "request authenticated with Authorization: Bearer")


__all__ = ["STOP_REASONS", "json_body"]
