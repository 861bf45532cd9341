"""The reference gateway's pieces without a socket: tokens, the model, signatures, the limiter, faults, config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conformance.errors import HarnessError
from conformance.gateway import FAULTS, GatewayConfig
from conformance.gateway.faults import describe_faults
from conformance.gateway.model import (
    FALLBACK_REPLY,
    Prompt,
    Signer,
    TextBlock,
    ThinkingBlock,
    ToolSpec,
    ToolUseBlock,
    example_input,
    generate,
    repeat_target,
)
from conformance.gateway.ratelimit import RateLimiter
from conformance.gateway.tokens import count_anthropic_input, count_tokens, split_tokens

SIGNER = Signer("unit-test-key")
WEATHER = ToolSpec(
    "get_weather",
    {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city"]},
)


@pytest.mark.parametrize(
    "text", ["Hello, world!", "  leading and trailing  ", "a\n\nb\tc", "", "naïve café ✓ 東京", "x=1;y=[2]", "\n"]
)
def test_tokens_concatenate_back_to_the_text(text: str) -> None:
    assert "".join(split_tokens(text)) == text
    assert count_tokens(text) == len(split_tokens(text))


def test_tokens_are_words_with_their_leading_space_or_single_symbols() -> None:
    assert split_tokens("Hello, big world!") == ["Hello", ",", " big", " world", "!"]


def test_input_count_covers_system_messages_and_tools() -> None:
    base = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "one two"}]}
    plain = count_anthropic_input(base)
    assert plain == 3 + 3 + 2
    assert count_anthropic_input({**base, "system": "be brief"}) == plain + 2
    with_tool = {**base, "tools": [{"name": "t", "input_schema": {"type": "object"}}]}
    assert count_anthropic_input(with_tool) > plain
    blocks = {**base, "messages": [{"role": "user", "content": [{"type": "text", "text": "one two"}]}]}
    assert count_anthropic_input(blocks) == plain


@pytest.mark.parametrize(
    ("said", "reply"),
    [("Repeat exactly: X y z", "X y z"), ("repeat exactly:\nline", "line"), ("just echo me", "just echo me")],
)
def test_repeat_target(said: str, reply: str) -> None:
    assert repeat_target(said) == reply


def test_reply_echoes_and_bills_one_token_per_piece() -> None:
    reply = generate(Prompt(last_user_text="Repeat exactly: Hello, world!"), SIGNER)
    assert reply.blocks == (TextBlock("Hello, world!", ("Hello", ",", " world", "!")),)
    assert (reply.stop_reason, reply.stop_sequence, reply.output_tokens) == ("end_turn", None, 4)


def test_no_text_in_the_last_user_turn_gives_the_fixed_sentence() -> None:
    reply = generate(Prompt(last_user_text=None), SIGNER)
    assert isinstance(reply.blocks[0], TextBlock)
    assert reply.blocks[0].text == FALLBACK_REPLY


def test_max_tokens_cuts_after_exactly_max_tokens() -> None:
    reply = generate(Prompt(last_user_text="one two three four five", max_tokens=3), SIGNER)
    assert reply.stop_reason == "max_tokens"
    assert reply.output_tokens == 3
    assert isinstance(reply.blocks[0], TextBlock) and reply.blocks[0].text == "one two three"


def test_stop_sequence_cuts_before_the_first_completed_match() -> None:
    reply = generate(Prompt(last_user_text="alpha beta END gamma", stop_sequences=("gamma", "END")), SIGNER)
    assert (reply.stop_reason, reply.stop_sequence) == ("stop_sequence", "END")
    assert isinstance(reply.blocks[0], TextBlock) and reply.blocks[0].text == "alpha beta "


def test_prefill_is_continued_not_repeated() -> None:
    reply = generate(Prompt(last_user_text="Repeat exactly: Hello world", prefill="Hello"), SIGNER)
    assert isinstance(reply.blocks[0], TextBlock) and reply.blocks[0].text == " world"


@pytest.mark.parametrize(("mode", "text", "expect_tool"), [
    ("auto", "what is the weather? use get_weather", True),
    ("auto", "what is the weather?", False),
    ("any", "anything", True),
    ("tool", "anything", True),
    ("none", "use get_weather", False),
])  # fmt: skip
def test_tool_choice(mode: str, text: str, expect_tool: bool) -> None:
    prompt = Prompt(last_user_text=text, tools=(WEATHER,), tool_mode=mode, tool_name="get_weather")  # type: ignore[arg-type]
    reply = generate(prompt, SIGNER)
    calls = [block for block in reply.blocks if isinstance(block, ToolUseBlock)]
    assert bool(calls) is expect_tool
    if expect_tool:
        assert reply.stop_reason == "tool_use"
        assert calls[0].id.startswith("toolu_")
        assert calls[0].input == {"city": "example"}
        assert json.loads("".join(calls[0].pieces)) == calls[0].input
        forced = mode in ("any", "tool")
        assert (len(reply.blocks) == 1) is forced  # forced calls come without a text preface
    else:
        assert reply.stop_reason == "end_turn"


def test_example_input_follows_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 10},
            "count": {"type": "integer", "minimum": 3},
            "ratio": {"type": "number", "exclusiveMinimum": 0.5},
            "mode": {"enum": ["fast", "slow"]},
            "flag": {"type": ["null", "boolean"]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "when": {"type": "string", "format": "date-time"},
            "nested": {"$ref": "#/$defs/inner"},
            "optional": {"type": "string"},
        },
        "required": ["name", "count", "ratio", "mode", "flag", "tags", "when", "nested"],
        "$defs": {"inner": {"type": "object", "properties": {"x": {"const": 7}}, "required": ["x"]}},
    }
    value = example_input(schema)
    assert value == {
        "name": "examplexxx",
        "count": 3,
        "ratio": 1,
        "mode": "fast",
        "flag": True,
        "tags": ["example", "example"],
        "when": "2025-01-01T00:00:00Z",
        "nested": {"x": 7},
    }


def test_thinking_block_comes_first_and_is_signed() -> None:
    reply = generate(Prompt(last_user_text="hi", thinking="shown"), SIGNER)
    thinking = reply.blocks[0]
    assert isinstance(thinking, ThinkingBlock) and thinking.thinking
    assert SIGNER.verify(thinking.thinking, thinking.signature)
    assert not SIGNER.verify(thinking.thinking + " edited", thinking.signature)
    assert not Signer("another-key").verify(thinking.thinking, thinking.signature)
    assert reply.output_tokens == thinking.tokens + 1


def test_omitted_thinking_has_empty_text_but_a_signature_and_still_bills() -> None:
    reply = generate(Prompt(last_user_text="hi", thinking="omitted"), SIGNER)
    thinking = reply.blocks[0]
    assert isinstance(thinking, ThinkingBlock) and thinking.thinking == "" and thinking.signature
    assert SIGNER.verify("", thinking.signature)
    assert reply.output_tokens == thinking.tokens + 1 and thinking.tokens > 0
    assert reply.streamed_deltas == 1  # only the text token is streamed


def test_limiter_refuses_with_an_honest_retry_after() -> None:
    now = [1000.0]
    limiter = RateLimiter(7, 60.0, clock=lambda: now[0])
    assert all(limiter.acquire("k").allowed for _ in range(7))
    refused = limiter.acquire("k")
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after_s == math.ceil(60 / 7)  # 9 s
    now[0] += refused.retry_after_s - 1  # one second early: still refused
    assert not limiter.acquire("k").allowed
    now[0] += 1
    assert limiter.acquire("k").allowed
    assert limiter.acquire("other-key").allowed  # per key


def test_limiter_reports_the_time_to_full_and_never_an_early_retry() -> None:
    now = [0.0]
    limiter = RateLimiter(3, 1.0, clock=lambda: now[0])
    for _ in range(3):
        limiter.acquire("k")
    refused = limiter.acquire("k")
    assert refused.retry_after_s == 1 and math.isclose(refused.reset_after_s, 1.0)
    now[0] += 0.2
    assert limiter.acquire("k").retry_after_s == 1  # 0.133 s rounded up, never 0
    assert RateLimiter.reset_timestamp(refused).endswith("Z")


def test_fault_registry_is_data_with_section_7_items() -> None:
    required = {
        "missing-message-stop", "extra-done", "done-instead-of-stop", "openai-error-envelope", "invented-429-type",
        "429-no-retry-after", "noncontiguous-indices", "missing-usage", "stream-cut", "data-only", "empty-success",
        "error-as-200", "wrong-stop-reason", "drop-stop-sequences", "empty-data-events", "no-auth",
    }  # fmt: skip
    assert required <= set(FAULTS)
    assert all(1 <= fault.item <= 20 and fault.summary for fault in FAULTS.values())
    listing = describe_faults().splitlines()
    assert len(listing) == len(FAULTS) and all("section 7 item" in line for line in listing)


def test_every_fault_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "reference-gateway.md").read_text()
    for fault in FAULTS.values():
        assert f"| `{fault.name}` | {fault.item} |" in doc, fault.name


def test_config_rejects_unknown_faults_and_nonsense() -> None:
    with pytest.raises(HarnessError, match=r"valid faults: .*stream-cut"):
        GatewayConfig(faults=("no-such-fault",))
    with pytest.raises(HarnessError):
        GatewayConfig(ttft_ms=-1)
    with pytest.raises(HarnessError):
        GatewayConfig(rate_limit_rpm=0)
    config, made_up = GatewayConfig(api_key=None).with_key()
    assert made_up and config.api_key and config.api_key.startswith("sk-ref-")
