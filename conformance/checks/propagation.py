"""Checks that upstream failures reach the client as the upstream sent them (upstream mode, docs/upstream-mode.md).

The probes (conformance/propagation.py) cue the reference gateway behind the gateway under test, so each check
knows what the upstream did and compares it with what the gateway's client received.
"""

from __future__ import annotations

from typing import Any

from conformance.checks._helpers import expect_status, require_exchange_ok, validate
from conformance.checks.context import CheckContext
from conformance.checks.ratelimit import parse_retry_after
from conformance.checks.registry import check
from conformance.checks.streaming import stream_evidence
from conformance.exchange import Exchange
from conformance.failures import (
    Failure,
    MissingHeader,
    NotApplicable,
    SemanticMismatch,
    StreamViolation,
    WrongErrorEnvelope,
)

# Pacing: how much of the upstream's token spread may be lost before the stream counts as buffered.
PACING_SLACK = 0.5


def _ending(exchange: Exchange) -> str:
    """How a stream the client got ended, for the failure message."""
    stream = exchange.stream
    assert stream is not None
    if stream.flavour == "anthropic":
        reason = stream.message.get("stop_reason")
        return f"message_stop with stop_reason {reason!r}" if reason else "message_stop"
    choices = stream.message.get("choices") or [{}]
    return f"finish_reason {choices[0].get('finish_reason')!r} and data: [DONE]"


def _judge_broken_stream(exchange: Exchange, upstream: str) -> None:
    """Pass when the client learns the stream failed: an error status, an error event, or a broken connection."""
    if exchange.error is not None and exchange.error.kind.startswith("timeout"):
        # The client learns only by giving up: a gateway that hangs on a dead upstream holds every caller hostage.
        raise Failure(
            f"{upstream}, yet the gateway kept the client waiting until it gave up ({exchange.error.message})",
            exchange=exchange,
        )
    if exchange.status is None:
        return  # no response at all: the client certainly knows
    if exchange.status >= 400:
        return  # the gateway turned the failure into an error status (it must have buffered, but nothing is lost)
    stream = exchange.stream
    if stream is None:
        raise Failure(
            f"{upstream}, yet the client got HTTP {exchange.status} with a {exchange.content_type or 'typeless'} body "
            "instead of a failed stream",
            exchange=exchange,
        )
    if stream.errored:
        return
    if stream.complete:
        raise StreamViolation(
            f"{upstream}, yet the client got a complete message ({_ending(exchange)}): it never learns the answer "
            f"is cut short ({stream.event_count} events)",
            evidence=stream_evidence(exchange, []),
            exchange=exchange,
        )
    if stream.end_cause == "eof":
        marker = "message_stop" if stream.flavour == "anthropic" else "data: [DONE]"
        raise StreamViolation(
            f"{upstream}, yet the stream to the client ended cleanly without {marker} and without an error event: "
            "the Python SDKs return the partial answer as if it were whole",
            evidence=stream_evidence(exchange, []),
            exchange=exchange,
        )


def _streams(ctx: CheckContext) -> list[Exchange]:
    found = [exchange for exchange in ctx.exchanges.values() if exchange.request.stream]
    if not found:
        raise NotApplicable("the probe sent no streaming request")
    return found


@check(severity="must", area="propagation", section="7.3")
def propagation_cut_stream_not_completed(ctx: CheckContext) -> None:
    """A stream the upstream cut reaches the client as an error event or a broken connection, never as complete."""
    for exchange in _streams(ctx):
        _judge_broken_stream(exchange, "the upstream dropped the connection mid-stream")


@check(severity="must", area="propagation", section="3.2")
def propagation_stream_error_surfaces(ctx: CheckContext) -> None:
    """An error event the upstream sent mid-stream reaches the client as an error or a broken connection."""
    for exchange in _streams(ctx):
        _judge_broken_stream(exchange, "the upstream sent an overloaded_error event mid-stream")


def _error_type(exchange: Exchange) -> object:
    body = exchange.json_or_none()
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("type") if isinstance(error, dict) else None


def _seconds(exchange: Exchange) -> float | None:
    """The client-side retry delay: retry-after-ms, else retry-after; None when neither is there."""
    millis = exchange.header("retry-after-ms")
    if millis is not None:
        try:
            return float(millis) / 1000.0
        except ValueError:
            pass
    value = exchange.header("retry-after")
    if value is None:
        return None
    try:
        return parse_retry_after(value)
    except ValueError as exc:
        raise Failure(f"retry-after is malformed: {exc}", exchange=exchange) from None


@check(severity="must", area="propagation", section="7.9")
def propagation_retry_after_kept(ctx: CheckContext) -> None:
    """An upstream 429 reaches the client as a 429 with the upstream's retry-after (or a longer one)."""
    expected = float(ctx.expect("retry_after"))
    for role, exchange in ctx.exchanges.items():
        expect_status(exchange, (429,), f"the upstream answered 429 ({role} request)")
        seconds = _seconds(exchange)
        if seconds is None:
            raise MissingHeader(
                f"the upstream's 429 said retry-after: {expected:g}; the client's 429 ({role} request) has no "
                "retry-after: SDKs fall back to blind backoff and retry into the limit",
                exchange=exchange,
            )
        if seconds < expected:
            raise Failure(
                f"the upstream's 429 said retry-after: {expected:g}; the client was told {seconds:g} s "
                f"({role} request): it retries before the limit allows",
                exchange=exchange,
            )
        if exchange.request.flavour == "anthropic" and _error_type(exchange) != "rate_limit_error":
            raise WrongErrorEnvelope(
                f"the 429 ({role} request) carries error.type {_error_type(exchange)!r}, expected 'rate_limit_error'",
                exchange=exchange,
            )


@check(severity="must", area="propagation", section="7.8")
def propagation_overloaded_kept(ctx: CheckContext) -> None:
    """An upstream 529 reaches the client as 529 overloaded_error, not as a 500."""
    for role, exchange in ctx.exchanges.items():
        expect_status(exchange, (529,), f"the upstream answered 529 overloaded_error ({role} request)")
        if exchange.request.flavour == "anthropic" and _error_type(exchange) != "overloaded_error":
            raise WrongErrorEnvelope(
                f"the 529 ({role} request) carries error.type {_error_type(exchange)!r}, expected 'overloaded_error'",
                exchange=exchange,
            )


@check(severity="must", area="propagation", section="4.2")
def propagation_error_status_kept(ctx: CheckContext) -> None:
    """An upstream 400 reaches the client as 400 invalid_request_error, an upstream 500 as a 5xx error."""
    upstream = int(ctx.expect("status"))
    for role, exchange in ctx.exchanges.items():
        if upstream < 500:
            expect_status(exchange, (upstream,), f"the upstream answered {upstream} ({role} request)")
        else:
            expect_status(exchange, range(500, 600), f"the upstream answered {upstream} ({role} request)")
        if exchange.request.flavour != "anthropic":
            continue
        body = exchange.json_or_none()
        try:
            validate(body, "anthropic/error", f"the {exchange.status} body")
        except Failure as failure:
            raise WrongErrorEnvelope(failure.message, exchange=exchange) from None
        if upstream < 500 and _error_type(exchange) != "invalid_request_error":
            raise WrongErrorEnvelope(
                f"the upstream's 400 became error.type {_error_type(exchange)!r}, expected 'invalid_request_error'",
                exchange=exchange,
            )


def _served(exchange: Exchange, role: str) -> None:
    expect_status(exchange, range(200, 300), f"the {role} request (the upstream served it)")


def _answer(exchange: Exchange) -> dict[str, Any]:
    """The Message or chat.completion the client got, streamed or not."""
    if exchange.stream is not None:
        return exchange.stream.message
    body = exchange.json_or_none()
    if not isinstance(body, dict):
        raise Failure(f"expected a JSON body, got {exchange.body_excerpt(200)!r}", exchange=exchange)
    return body


@check(severity="must", area="propagation", section="7.10")
def propagation_usage_kept(ctx: CheckContext) -> None:
    """The usage the client sees is the upstream's: the same input and output token counts."""
    expected = (int(ctx.expect("input_tokens")), int(ctx.expect("output_tokens")))
    for role, exchange in ctx.exchanges.items():
        _served(exchange, role)
        usage = _answer(exchange).get("usage")
        openai = exchange.request.flavour == "openai"
        names = ("prompt_tokens", "completion_tokens") if openai else ("input_tokens", "output_tokens")
        if not isinstance(usage, dict):
            raise SemanticMismatch(
                f"the {role} answer has no usage; the upstream reported {expected}", exchange=exchange
            )
        seen = (usage.get(names[0]), usage.get(names[1]))
        if seen != expected:
            raise SemanticMismatch(
                f"the upstream reported {names[0]} {expected[0]} and {names[1]} {expected[1]}; the client's "
                f"{role} answer says {seen[0]} and {seen[1]}: the gateway recounted or lost the upstream's figures",
                exchange=exchange,
            )


@check(severity="should", area="propagation", section="7.16")
def propagation_ids_native(ctx: CheckContext) -> None:
    """Ids the client sees are its dialect's: no chatcmpl-/call_ ids in Anthropic answers, no msg_/toolu_ in OpenAI."""
    for role, exchange in ctx.exchanges.items():
        require_exchange_ok(exchange)
        if exchange.status is None or not 200 <= exchange.status < 300:
            continue
        answer = _answer(exchange)
        if exchange.request.flavour == "anthropic":
            ids = [("message id", answer.get("id"))]
            ids += [("tool_use id", b.get("id")) for b in answer.get("content") or () if isinstance(b, dict)]
            foreign = ("chatcmpl", "call_")
        else:
            ids = [("completion id", answer.get("id"))]
            for choice in answer.get("choices") or ():
                message = choice.get("message") if isinstance(choice, dict) else None
                calls = message.get("tool_calls") if isinstance(message, dict) else None
                ids += [("tool call id", c.get("id")) for c in calls or () if isinstance(c, dict)]
            foreign = ("msg_", "toolu_")
        for what, value in ids:
            if isinstance(value, str) and value.startswith(foreign):
                dialect = "OpenAI" if exchange.request.flavour == "anthropic" else "Anthropic"
                raise SemanticMismatch(
                    f"the {role} answer's {what} {value!r} is a {dialect} id: the upstream's id leaked through "
                    "the translation",
                    exchange=exchange,
                )


@check(severity="must", area="propagation", section="3")
def propagation_pacing_kept(ctx: CheckContext) -> None:
    """A slow upstream stream stays a stream: first token as soon as the upstream's, tokens spread as it spread them."""
    baseline, paced = ctx.get("baseline"), ctx.get("paced")
    for role, exchange in (("baseline", baseline), ("paced", paced)):
        _served(exchange, role)
        if exchange.stream is None or exchange.stream.timings.ttft is None:
            raise NotApplicable(f"the {role} stream carried no content delta (see the streaming checks)")
    assert baseline.stream is not None and paced.stream is not None
    base_ttft, ttft = baseline.stream.timings.ttft, paced.stream.timings.ttft
    assert base_ttft is not None and ttft is not None
    up_ttft = float(ctx.expect("ttft_s"))
    up_span = float(ctx.expect("itl_s")) * (int(ctx.expect("tokens")) - 1)
    added = ttft - base_ttft
    if added > up_ttft + PACING_SLACK * up_span:
        raise Failure(
            f"the upstream sent its first token {up_ttft * 1000:.0f} ms in and its last "
            f"{(up_ttft + up_span) * 1000:.0f} ms in; through the gateway the first token came "
            f"{added * 1000:.0f} ms later than unpaced ({ttft * 1000:.0f} ms vs {base_ttft * 1000:.0f} ms): "
            "the gateway buffered the stream",
            evidence=stream_evidence(paced, []),
            exchange=paced,
        )
    span = sum(paced.stream.timings.gaps)
    if span < PACING_SLACK * up_span:
        raise Failure(
            f"the upstream spread its tokens over {up_span * 1000:.0f} ms; the client got them within "
            f"{span * 1000:.0f} ms: the gateway held them back and sent them in a burst",
            evidence=stream_evidence(paced, []),
            exchange=paced,
        )


@check(severity="must", area="propagation", section="3.1")
def propagation_tool_arguments_intact(ctx: CheckContext) -> None:
    """A tool call the upstream streamed in fragments reaches the client whole: same tool, same arguments."""
    name, arguments = ctx.expect("tool_name"), ctx.expect("tool_input")
    for role, exchange in ctx.exchanges.items():
        _served(exchange, role)
        calls = [
            b for b in _answer(exchange).get("content") or () if isinstance(b, dict) and b.get("type") == "tool_use"
        ]
        if not calls:
            raise SemanticMismatch(
                f"the upstream called {name} with {arguments}; the client's {role} answer has no tool_use block",
                exchange=exchange,
            )
        call = calls[0]
        if call.get("name") != name or call.get("input") != arguments:
            raise SemanticMismatch(
                f"the upstream called {name} with {arguments}; the client got {call.get('name')!r} with "
                f"{call.get('input')!r}: fragments were lost, repeated or reordered",
                evidence=stream_evidence(exchange, []),
                exchange=exchange,
            )
