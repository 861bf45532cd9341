"""The streaming grammars: exact violation sets per transcript, accumulation, robustness, the code registry."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.grammar import (
    NOT_JSON,
    VIOLATION_KINDS,
    VIOLATIONS,
    AnthropicGrammar,
    OpenAIGrammar,
    Violation,
)
from conformance.sse import Anomaly, SSEEvent, decode_all

TRANSCRIPTS = Path(__file__).parent / "transcripts"
INDEX: dict[str, dict[str, Any]] = json.loads((TRANSCRIPTS / "index.json").read_text())
# Codes that only the StreamReader adds (the grammar alone never validates schemas).
READER_CODES = {"schema-violation", "too-many-events", "stream-truncated"}


def payload_of(event: SSEEvent) -> object:
    if event.data is None:
        return None
    try:
        return json.loads(event.data)
    except ValueError:
        return NOT_JSON


def run(name: str) -> AnthropicGrammar | OpenAIGrammar:
    entry = INDEX[name]
    grammar: AnthropicGrammar | OpenAIGrammar = (
        AnthropicGrammar()
        if entry["flavour"] == "anthropic"
        else OpenAIGrammar(expect_usage=bool(entry.get("expect_usage")))
    )
    for event in decode_all((TRANSCRIPTS / name).read_bytes()):
        grammar.feed(event, payload_of(event))
    grammar.finish()
    return grammar


def codes(grammar: AnthropicGrammar | OpenAIGrammar) -> set[str]:
    return {v.code for v in grammar.violations}


def feed_text(grammar: AnthropicGrammar | OpenAIGrammar, text: str) -> AnthropicGrammar | OpenAIGrammar:
    for event in decode_all(text.encode()):
        grammar.feed(event, payload_of(event))
    grammar.finish()
    return grammar


def ev(name: str | None, data: dict[str, Any] | str) -> str:
    body = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {name}\n" if name else "") + f"data: {body}\n\n"


START = ev(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "m",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    },
)
STOP = ev("message_stop", {"type": "message_stop"})


def delta(reason: str | None = "end_turn", out: int = 3) -> str:
    return ev(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": {"output_tokens": out},
        },
    )


def block(index: int, content: dict[str, Any]) -> str:
    return ev("content_block_start", {"type": "content_block_start", "index": index, "content_block": content})


def bdelta(index: int, d: dict[str, Any]) -> str:
    return ev("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})


def bstop(index: int) -> str:
    return ev("content_block_stop", {"type": "content_block_stop", "index": index})


# ----------------------------------------------------------------------------------------------- transcripts


@pytest.mark.parametrize("name", sorted(INDEX))
def test_transcript_violations_are_exactly_the_expected_ones(name: str) -> None:
    entry = INDEX[name]
    grammar = run(name)
    assert codes(grammar) == set(entry["violations"]) - READER_CODES
    assert grammar.complete is entry["complete"]
    assert grammar.errored is entry["errored"]


@pytest.mark.parametrize("name", sorted(INDEX))
def test_violations_say_what_and_where(name: str) -> None:
    grammar = run(name)
    events = len(decode_all((TRANSCRIPTS / name).read_bytes()))
    for violation in grammar.violations:
        assert violation.code in VIOLATIONS
        assert len(violation.message) > 10
        assert violation.event_index is None or 0 <= violation.event_index < events


def test_deviation_transcripts_each_report_something() -> None:
    for name, entry in INDEX.items():
        if "deviations/" in name:
            assert entry["violations"], name


def test_every_section_7_item_the_grammar_can_see_has_a_transcript() -> None:
    items = {m.group(1) for name in INDEX if (m := re.match(r"\w+-deviations/(\d\d)_", name))}
    assert {"01", "02", "03", "04", "05", "10", "11", "12", "13", "15", "19", "20"} <= items


# ----------------------------------------------------------------------------------------------- accumulation


def test_basic_message_matches_the_non_streaming_shape() -> None:
    message = run("anthropic/basic.sse").message()
    assert message == {
        "id": "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-opus-latest",
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "content": [{"type": "text", "text": "Hello"}],
        "usage": {"input_tokens": 11, "output_tokens": 6},
    }


def test_tool_thinking_and_citations_accumulate() -> None:
    tool = run("anthropic/tool_use.sse").message()
    assert tool["content"][1]["input"] == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert tool["stop_reason"] == "tool_use"
    thinking = run("anthropic/thinking.sse").message()["content"][0]
    assert thinking["thinking"].startswith("I need to find the GCD")
    assert thinking["signature"].startswith("EqQBCgIYAhIM")
    web = run("anthropic/web_search_citations.sse").message()
    assert web["content"][1]["input"] == {"query": "weather San Francisco today"}
    assert web["content"][3]["citations"][0]["cited_text"] == "Sunny, with a high near 68."
    assert web["usage"]["input_tokens"] == 10682
    assert web["usage"]["server_tool_use"] == {"web_search_requests": 1}


def test_message_so_far_on_a_cut_stream() -> None:
    grammar = run("anthropic-deviations/03_cut_mid_block.sse")
    message = grammar.message()
    assert message["content"] == [{"type": "text", "text": "The answer is forty"}]
    assert message["stop_reason"] is None


SDK_COMPARABLE = [
    n
    for n, e in INDEX.items()
    if e["flavour"] == "anthropic" and e["complete"] and not e["violations"] and "litellm/mock" not in n
]


@pytest.mark.parametrize("name", sorted(SDK_COMPARABLE))
def test_message_matches_the_official_sdk_accumulation(name: str) -> None:
    snapshot = None
    bufs: dict[int, bytes] = {}
    for event in decode_all((TRANSCRIPTS / name).read_bytes()):
        payload = payload_of(event)
        if isinstance(payload, dict) and payload.get("type") != "ping":
            snapshot = accumulate_event(event=payload, current_snapshot=snapshot, json_bufs=bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    sdk: dict[str, Any] = snapshot.to_dict()
    ours = run(name).message()
    for field in ("id", "model", "role", "stop_reason", "stop_sequence"):
        assert ours[field] == sdk.get(field), field
    assert len(ours["content"]) == len(sdk["content"])
    for mine, theirs in zip(ours["content"], sdk["content"], strict=True):
        for field in ("type", "text", "input", "thinking", "signature", "id", "name"):
            if field in theirs:
                assert mine.get(field) == theirs[field], (field, mine, theirs)
        if theirs.get("citations"):
            assert mine["citations"] == theirs["citations"]
    for field, value in sdk["usage"].items():
        if value is not None:
            assert ours["usage"][field] == value, field


def test_openai_accumulation() -> None:
    tools = run("openai/tool_calls.sse").message()
    [choice] = tools["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert [c["function"] for c in choice["message"]["tool_calls"]] == [
        {"name": "get_weather", "arguments": '{"location":"Paris"}'},
        {"name": "get_time", "arguments": '{"tz":"CET"}'},
    ]
    basic = run("openai/basic_include_usage.sse")
    message = basic.message()
    assert message["choices"][0]["message"] == {"role": "assistant", "content": "Hello there!"}
    assert message["usage"]["total_tokens"] == 17
    assert basic.output_tokens == 5
    assert run("openai/reasoning_content.sse").message()["choices"][0]["message"]["reasoning_content"] == (
        "Thinking about it."
    )


def test_openai_in_stream_error_is_recorded() -> None:
    grammar = run("openai/in_stream_error.sse")
    assert grammar.errored
    assert isinstance(grammar.error, dict) and grammar.error["type"] == "server_error"


def test_anthropic_error_payload_is_recorded() -> None:
    grammar = run("anthropic/error_overloaded.sse")
    assert isinstance(grammar.error, dict) and grammar.error["error"]["type"] == "overloaded_error"


# ----------------------------------------------------------------------------------------------- single rules


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (START + ev("ping", {"type": "ping"}) + delta() + STOP, set()),
        (START + delta() + STOP + STOP, {"event-after-message-stop"}),
        (START + ev(None, {"type": "message_delta"}), {"missing-event-name", "missing-usage", "missing-message-stop"}),
        (
            START + ev("message_delta", '{"delta": {}, "usage": {"output_tokens": 2}}') + STOP,
            {"missing-type", "stop-reason-missing"},  # dispatched on the event name, so still checked
        ),
        (START + ev("message_delta", "[1, 2]") + delta() + STOP, {"not-object"}),
        (START + block(-1, {"type": "text", "text": ""}) + delta() + STOP, {"block-index-invalid"}),
        (
            START + bdelta(0, {"type": "text_delta", "text": "x"}) + delta() + STOP,
            {"block-not-open"},
        ),
        (
            START
            + block(0, {"type": "text", "text": ""})
            + block(1, {"type": "text", "text": ""})
            + bstop(0)
            + bstop(1)
            + delta()
            + STOP,
            {"block-overlap"},
        ),
        (
            START + delta() + block(0, {"type": "text", "text": ""}) + bstop(0) + STOP,
            {"block-after-message-delta"},
        ),
        (
            START
            + block(0, {"type": "future_block"})
            + bdelta(0, {"type": "future_delta"})
            + bstop(0)
            + delta()
            + STOP,
            {"unknown-block-type", "unknown-delta-type"},
        ),
        (
            START
            + block(0, {"type": "redacted_thinking", "data": "abc"})
            + bdelta(0, {"type": "text_delta", "text": "x"})
            + bstop(0)
            + delta()
            + STOP,
            {"delta-type-mismatch"},
        ),
        (
            START
            + block(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}})
            + bstop(0)
            + delta("tool_use")
            + STOP,
            set(),
        ),
        (
            START
            + block(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}})
            + bdelta(0, {"type": "input_json_delta", "partial_json": ""})
            + bstop(0)
            + delta("tool_use")
            + STOP,
            set(),
        ),
        (
            START
            + block(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}})
            + bstop(0)
            + delta("max_tokens")
            + STOP,
            set(),
        ),
        (START + delta(out=5) + delta(out=4) + STOP, {"usage-decreased"}),
        (START + delta(out=0) + STOP, {"output-tokens-below-start"}),
        (START + delta(None) + STOP, {"stop-reason-missing"}),
        (ev("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}), set()),
        (ev("error", "Internal Server Error"), {"malformed-error-event"}),
        (ev("error", {"type": "error", "error": {"type": "api_error", "message": "x"}}) + START, {"event-after-error"}),
        ("", {"no-message-start", "missing-message-stop"}),
    ],
)
def test_single_rules(text: str, expected: set[str]) -> None:
    assert codes(feed_text(AnthropicGrammar(), text)) == expected


def chunk(choices: list[dict[str, Any]], *, usage: object = None, cid: str = "c1", created: int = 1) -> str:
    body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": "m"}
    body["choices"] = choices
    if usage is not None:
        body["usage"] = usage
    return ev(None, body)


DONE = "data: [DONE]\n\n"
USAGE = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


@pytest.mark.parametrize(
    ("text", "expect_usage", "expected"),
    [
        (chunk([{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]) + DONE, False, set()),
        (
            chunk([{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]) + DONE,
            True,
            {"missing-usage-chunk"},
        ),
        (
            chunk([{"index": 0, "delta": {"content": "a"}}])
            + chunk([], usage=USAGE)
            + chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
            + DONE,
            True,
            {"usage-before-finish"},
        ),
        (chunk([{"delta": {"content": "a"}, "finish_reason": "stop"}]) + DONE, False, {"choice-index-invalid"}),
        (
            chunk([{"index": 1, "delta": {"content": "a"}, "finish_reason": "stop"}]) + DONE,
            False,
            {"choice-index-not-contiguous"},
        ),
        (
            chunk([{"index": 0, "delta": {"tool_calls": [{"id": "x", "function": {"name": "f", "arguments": "{}"}}]}}])
            + chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
            + DONE,
            False,
            {"tool-call-index-invalid"},
        ),
        (
            chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f"}}]}}])
            + chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "b", "function": {"arguments": "{}"}}]}}])
            + chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
            + DONE,
            False,
            {"tool-call-id-changed"},
        ),
        ("data: {not json}\n\n" + DONE, False, {"data-not-json"}),
        ("data: 7\n\n" + DONE, False, {"not-object"}),
        ("id: 3\n\n" + DONE, False, {"no-data-field"}),
        (DONE + DONE, False, {"event-after-done"}),
        ('data: {"error": {"message": "boom", "type": "server_error"}}\n\n', False, set()),
        ("", False, {"missing-done"}),
    ],
)
def test_openai_single_rules(text: str, expect_usage: bool, expected: set[str]) -> None:
    assert codes(feed_text(OpenAIGrammar(expect_usage=expect_usage), text)) == expected


def test_ping_before_and_unknown_events_are_low_importance() -> None:
    assert VIOLATION_KINDS["ping-before-message-start"].severity == "info"
    assert VIOLATION_KINDS["unknown-event-type"].severity == "info"
    assert Violation("unknown-event-type", "x", 0).severity == "info"
    assert Violation("not-a-registered-code", "x", 0).severity == "must"


def test_finish_is_idempotent() -> None:
    grammar = feed_text(AnthropicGrammar(), START)
    before = list(grammar.violations)
    grammar.finish()
    assert grammar.violations == before


def test_violations_are_capped_but_counted() -> None:
    grammar = AnthropicGrammar(max_violations=5)
    feed_text(grammar, START + STOP * 20)
    assert len(grammar.violations) == 6
    assert grammar.violations[-1].code == "too-many-violations"
    assert grammar.violation_counts["event-after-message-stop"] == 19


def test_content_deltas_count_only_non_empty_content() -> None:
    grammar = run("anthropic/tool_use.sse")
    assert grammar.content_deltas == 5  # one text delta, four non-empty partial_json (the first is "")
    assert run("openai/tool_calls.sse").content_deltas == 4


# ----------------------------------------------------------------------------------------------- registry


def test_registry_is_complete_and_well_formed() -> None:
    assert set(VIOLATIONS) == set(VIOLATION_KINDS)
    for code, kind in VIOLATION_KINDS.items():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", code), code
        assert kind.severity in ("must", "should", "info")
        assert kind.description and "\n" not in kind.description
        assert set(kind.flavours) <= {"anthropic", "openai"} and kind.flavours
    for anomaly in Anomaly:
        assert anomaly.value in VIOLATIONS or anomaly is Anomaly.NO_EVENT_FIELD
    assert "missing-event-name" in VIOLATIONS


def test_every_registered_code_is_exercised() -> None:
    seen = {code for entry in INDEX.values() for code in entry["violations"]}
    source = Path(__file__).read_text() + (Path(__file__).parent / "test_stream.py").read_text()
    seen |= {code for code in VIOLATIONS if f'"{code}"' in source}
    assert set(VIOLATIONS) - seen == set()


# ----------------------------------------------------------------------------------------------- robustness

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
KEYS = st.sampled_from(
    ["type", "index", "delta", "content_block", "usage", "message", "error", "choices", "id", "created", "object"]
)
TYPES = st.sampled_from(
    [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
        "text",
        "tool_use",
        "thinking",
        "text_delta",
        "input_json_delta",
        "signature_delta",
        "citations_delta",
    ]
)
PAYLOADS = st.one_of(
    JSON,
    st.just(NOT_JSON),
    st.dictionaries(
        KEYS, JSON | TYPES | st.integers(0, 3) | st.dictionaries(KEYS, JSON | TYPES, max_size=3), max_size=5
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.none() | TYPES | st.text(max_size=5), st.none() | st.text(max_size=8), PAYLOADS), max_size=25
    )
)
def test_grammars_never_raise(steps: list[tuple[str | None, str | None, object]]) -> None:
    grammars: list[AnthropicGrammar | OpenAIGrammar] = [AnthropicGrammar(), OpenAIGrammar(expect_usage=True)]
    for i, (name, data, payload) in enumerate(steps):
        event = SSEEvent(i, name, data, None, None, b"", 0.0, 0.0)
        for grammar in grammars:
            grammar.feed(event, payload)
    for grammar in grammars:
        grammar.finish()
        grammar.message()
        assert all(v.code in VIOLATIONS for v in grammar.violations)
