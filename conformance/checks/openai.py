"""Checks on the OpenAI-compatible surface, /v1/chat/completions (protocol.md section 6)."""

from __future__ import annotations

from conformance.checks._helpers import expect_status, json_body, success_body, validate
from conformance.checks.context import CheckContext
from conformance.checks.registry import check
from conformance.checks.streaming import listing
from conformance.failures import Failure, NotApplicable, StreamViolation, WrongErrorEnvelope

# Owned by openai_stream_usage_chunk, so that each finding is reported once.
USAGE_CODES = frozenset({"usage-chunk-has-choices", "usage-before-finish", "usage-repeated", "missing-usage-chunk"})


@check(severity="must", area="openai", section="6.2")
def openai_status_is_success(ctx: CheckContext) -> None:
    """A valid chat completion request is served with HTTP 200."""
    expect_status(ctx.exchanges.get("json") or ctx.exchanges.get("stream") or ctx.exchange, (200,), "chat completion")


@check(severity="must", area="openai", section="6.2")
def openai_completion_matches_schema(ctx: CheckContext) -> None:
    """The chat completion body matches the chat.completion schema."""
    validate(success_body(ctx.get("json")), "openai/chat-completion", "the chat completion")


def _stream(ctx: CheckContext):  # type: ignore[no-untyped-def]
    exchange = ctx.get("stream")
    if exchange.status != 200 or exchange.stream is None:
        raise NotApplicable(f"the stream was not served (HTTP {exchange.status})")
    return exchange.stream


@check(severity="must", area="openai", section="6.3")
def openai_stream_grammar(ctx: CheckContext) -> None:
    """Chunks match the chunk schema, share id and created, and each choice finishes once."""
    stream = _stream(ctx)
    found = [v for v in stream.violations if v.code not in (*USAGE_CODES, "missing-done")]
    if found:
        raise StreamViolation(listing(found))


@check(severity="must", area="openai", section="6.4")
def openai_stream_ends_with_done(ctx: CheckContext) -> None:
    """An OpenAI stream ends with data: [DONE]."""
    stream = _stream(ctx)
    if not stream.complete:
        raise StreamViolation(f"the stream ended without data: [DONE] ({stream.end_cause})")


@check(severity="must", area="openai", section="6.3")
def openai_stream_usage_chunk(ctx: CheckContext) -> None:
    """With include_usage, a final chunk with choices [] carries the usage before [DONE]."""
    stream = _stream(ctx)
    found = [v for v in stream.violations if v.code in USAGE_CODES]
    if found:
        raise StreamViolation(listing(found))
    usage = stream.message.get("usage")
    if not isinstance(usage, dict) or not isinstance(usage.get("completion_tokens"), int):
        raise StreamViolation(f"include_usage was set but no usage arrived (got {usage!r})")


@check(severity="must", area="openai", section="6.5")
def openai_error_envelope(ctx: CheckContext) -> None:
    """An invalid chat completion request gets a 4xx with {"error":{"message","type","param","code"}}."""
    exchange = ctx.get("error")
    expect_status(exchange, range(400, 500), "an invalid chat completion request")
    body = json_body(exchange)
    if isinstance(body, dict) and body.get("type") == "error":
        raise WrongErrorEnvelope(
            "an Anthropic-shaped error envelope on the OpenAI endpoint: OpenAI clients read error.code and "
            f"error.param, which it lacks: {exchange.body_excerpt(300)}"
        )
    try:
        validate(body, "openai/error", "the error body")
    except Failure as failure:
        raise WrongErrorEnvelope(failure.message) from None
