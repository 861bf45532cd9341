"""Checks that the gateway does what the request asked: limits, stop sequences, tools, thinking, counting."""

from __future__ import annotations

from typing import Any

from conformance.checks._helpers import blocks, expect_status, reply_text, success_body, validate
from conformance.checks.context import CheckContext
from conformance.checks.registry import check
from conformance.exchange import Exchange
from conformance.failures import Failure, NotApplicable, SemanticMismatch
from conformance.schemas import CompiledValidator, compile_schema


def message_of(exchange: Exchange) -> dict[str, Any]:
    """The reply as a Message dict: the JSON body, or the message accumulated from the stream."""
    if exchange.request.stream:
        if exchange.stream is None or exchange.status != 200:
            raise NotApplicable(f"the stream was not served (HTTP {exchange.status})")
        return dict(exchange.stream.message)
    body = success_body(exchange)
    if not isinstance(body, dict):
        raise NotApplicable("the body is not an object (see message_matches_schema)")
    return body


def _reply(ctx: CheckContext) -> tuple[Exchange, dict[str, Any]]:
    exchange = ctx.exchanges.get("stream") or ctx.exchanges.get("json") or ctx.exchange
    return exchange, message_of(exchange)


@check(severity="must", area="semantics", section="2")
def max_tokens_stop_reason(ctx: CheckContext) -> None:
    """A reply cut by max_tokens says stop_reason "max_tokens"."""
    _, message = _reply(ctx)
    if message.get("stop_reason") != "max_tokens":
        raise SemanticMismatch(
            f"max_tokens={ctx.expect('max_tokens')} on a longer reply gave stop_reason "
            f"{message.get('stop_reason')!r}, expected 'max_tokens'"
        )


@check(severity="must", area="semantics", section="2.1")
def output_within_max_tokens(ctx: CheckContext) -> None:
    """usage.output_tokens never exceeds max_tokens."""
    _, message = _reply(ctx)
    usage = message.get("usage") or {}
    output = usage.get("output_tokens") if isinstance(usage, dict) else None
    limit = ctx.expect("max_tokens")
    if not isinstance(output, int):
        raise Failure(f"usage.output_tokens is {output!r}")
    if output > limit:
        raise SemanticMismatch(f"output_tokens {output} exceeds max_tokens {limit}")


@check(severity="must", area="semantics", section="1.2")
def stop_sequence_honoured(ctx: CheckContext) -> None:
    """A matched stop sequence ends the reply with stop_reason "stop_sequence" and names the sequence."""
    _, message = _reply(ctx)
    sequence = ctx.expect("stop_sequence")
    problems = []
    if message.get("stop_reason") != "stop_sequence":
        problems.append(f"stop_reason is {message.get('stop_reason')!r}, expected 'stop_sequence'")
    if message.get("stop_sequence") != sequence:
        problems.append(f"stop_sequence is {message.get('stop_sequence')!r}, expected {sequence!r}")
    if sequence in reply_text(message):
        problems.append(f"the reply still contains {sequence!r}: the field was dropped")
    if problems:
        raise SemanticMismatch("; ".join(problems))


def _tool_uses(ctx: CheckContext) -> tuple[Exchange, list[dict[str, Any]]]:
    exchange = ctx.exchanges.get("tool_call") or ctx.exchanges.get("stream") or ctx.exchange
    return exchange, blocks(message_of(exchange), "tool_use")


@check(severity="must", area="tools", section="1.5")
def tool_use_matches_tool(ctx: CheckContext) -> None:
    """A forced tool_choice yields a tool_use block for that tool whose input validates against its input_schema."""
    _, uses = _tool_uses(ctx)
    tool = ctx.expect("tool")
    if not uses:
        raise SemanticMismatch(f"tool_choice named {tool['name']!r} but the reply has no tool_use block")
    use = uses[0]
    problems = []
    if use.get("name") != tool["name"]:
        problems.append(f"tool_use names {use.get('name')!r}, expected {tool['name']!r}")
    tool_id = use.get("id")
    if not isinstance(tool_id, str) or not tool_id or not all(c.isalnum() or c in "_-" for c in tool_id):
        problems.append(f"tool_use id {tool_id!r} does not match ^[a-zA-Z0-9_-]+$")
    checker: CompiledValidator = compile_schema(tool["input_schema"])
    tool_input = use.get("input")
    if not isinstance(tool_input, dict):
        problems.append(f"input is {type(tool_input).__name__}, expected an object")
    elif not checker.is_valid(tool_input):
        problems.append(
            "input does not match the tool's input_schema: "
            + "; ".join(e.describe() for e in checker.errors(tool_input)[:5])
        )
    if problems:
        raise SemanticMismatch("; ".join(problems))


@check(severity="must", area="tools", section="7.13")
def tool_use_stop_reason(ctx: CheckContext) -> None:
    """A reply that ends in a tool call has stop_reason "tool_use"."""
    exchange, uses = _tool_uses(ctx)
    if not uses:
        raise NotApplicable("no tool_use block (see tool_use_matches_tool)")
    reason = message_of(exchange).get("stop_reason")
    if reason != "tool_use":
        raise SemanticMismatch(f"the reply has a tool_use block but stop_reason is {reason!r}")


@check(severity="must", area="tools", section="1.4")
def tool_result_accepted(ctx: CheckContext) -> None:
    """The next turn carrying a tool_result for the tool call is served."""
    exchange = ctx.get("tool_result")
    expect_status(exchange, (200,), "the tool_result turn")
    validate(success_body(exchange), "anthropic/message", "the tool_result turn's response")


@check(severity="must", area="thinking", section="3.1")
def thinking_block_signed(ctx: CheckContext) -> None:
    """With thinking enabled the reply starts with a thinking block that carries a non-empty signature."""
    exchange = ctx.exchanges.get("thinking") or ctx.exchanges.get("stream") or ctx.exchange
    message = message_of(exchange)
    content = message.get("content") or []
    if (
        not content
        or not isinstance(content[0], dict)
        or content[0].get("type") not in ("thinking", "redacted_thinking")
    ):
        first = content[0].get("type") if content and isinstance(content[0], dict) else None
        raise SemanticMismatch(f"thinking was enabled but the first block is {first!r}, not a thinking block")
    block = content[0]
    if block.get("type") == "thinking" and not block.get("signature"):
        raise SemanticMismatch("the thinking block has no signature: the next turn will be rejected")


@check(severity="must", area="thinking", section="7.15")
def thinking_round_trip_accepted(ctx: CheckContext) -> None:
    """The thinking block passed back unmodified on the next turn is accepted (its signature is genuine)."""
    exchange = ctx.get("round_trip")
    expect_status(exchange, (200,), "the next turn carrying the thinking block back")


@check(severity="must", area="count_tokens", section="5.1")
def count_tokens_matches_schema(ctx: CheckContext) -> None:
    """count_tokens answers 200 with {"input_tokens": int}."""
    exchange = ctx.get("count")
    expect_status(exchange, (200,), "count_tokens")
    validate(success_body(exchange), "anthropic/count-tokens-response", "the count_tokens response")


@check(severity="should", area="count_tokens", section="8")
def count_tokens_agrees_with_usage(ctx: CheckContext) -> None:
    """count_tokens for a request equals (within 2%) the usage.input_tokens the same request reports."""
    counted = success_body(ctx.get("count"))
    served = success_body(ctx.get("json"))
    count = counted.get("input_tokens") if isinstance(counted, dict) else None
    usage = served.get("usage") if isinstance(served, dict) else None
    used = usage.get("input_tokens") if isinstance(usage, dict) else None
    if not isinstance(count, int) or not isinstance(usage, dict) or not isinstance(used, int):
        raise NotApplicable("a count is missing (see the schema checks)")
    cached = sum(usage.get(k) or 0 for k in ("cache_creation_input_tokens", "cache_read_input_tokens"))
    total = used + cached
    if abs(count - total) > max(1, round(total * 0.02)):
        raise SemanticMismatch(f"count_tokens says {count}, the same request's usage says {total} input tokens")


@check(severity="should", area="streaming", section="8")
def stream_matches_non_stream(ctx: CheckContext) -> None:
    """The same request streamed and not streamed agree on content, stop_reason and usage."""
    streamed = message_of(ctx.get("stream"))
    whole = message_of(ctx.get("json"))
    problems = []
    if reply_text(streamed) != reply_text(whole):
        problems.append(f"text differs: streamed {reply_text(streamed)[:120]!r} vs {reply_text(whole)[:120]!r}")
    if streamed.get("stop_reason") != whole.get("stop_reason"):
        problems.append(f"stop_reason {streamed.get('stop_reason')!r} vs {whole.get('stop_reason')!r}")
    s_usage, w_usage = streamed.get("usage") or {}, whole.get("usage") or {}
    for key in ("input_tokens", "output_tokens"):
        if s_usage.get(key) != w_usage.get(key):
            problems.append(f"usage.{key} {s_usage.get(key)!r} streamed vs {w_usage.get(key)!r}")
    if problems:
        raise SemanticMismatch("; ".join(problems))
