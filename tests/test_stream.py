"""StreamReader: the full pipeline (decode, JSON, schema, grammar, timing) over transcripts and odd inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.grammar import NOT_JSON, VIOLATIONS
from conformance.stream import StreamReader, StreamResult, parse_json

TRANSCRIPTS = Path(__file__).parent / "transcripts"
INDEX: dict[str, dict[str, Any]] = json.loads((TRANSCRIPTS / "index.json").read_text())


def read(name: str, *, chunk: int | None = None, **options: Any) -> StreamResult:
    entry = INDEX[name]
    body = (TRANSCRIPTS / name).read_bytes()
    reader = StreamReader(entry["flavour"], t_start=0.0, expect_usage=bool(entry.get("expect_usage")), **options)
    size = chunk or len(body) or 1
    for i in range(0, len(body), size):
        reader.feed(body[i : i + size], 1.0 + i)
    return reader.close(1.0 + len(body))


def where(result: StreamResult) -> list[tuple[str, int | None]]:
    return [(v.code, v.event_index) for v in result.violations]


@pytest.mark.parametrize("name", sorted(INDEX))
def test_transcript(name: str) -> None:
    entry = INDEX[name]
    result = read(name)
    assert result.codes() == set(entry["violations"])
    assert result.complete is entry["complete"]
    assert result.errored is entry["errored"]
    assert result.end_cause == "eof"
    assert result.event_count == len(result.events) == len(result.payloads)
    assert result.bytes_received == len((TRANSCRIPTS / name).read_bytes())


@pytest.mark.parametrize("name", sorted(INDEX))
def test_chunking_does_not_change_the_findings(name: str) -> None:
    assert where(read(name, chunk=1)) == where(read(name)) == where(read(name, chunk=7))


def test_schema_violations_carry_path_and_message() -> None:
    result = read("anthropic-deviations/10_message_delta_without_usage.sse")
    [schema] = [v for v in result.violations if v.code == "schema-violation"]
    assert schema.message == "message_delta event: usage: Field required"
    assert schema.event_index == 4


def test_without_schema_validation() -> None:
    result = read("anthropic-deviations/10_message_delta_without_usage.sse", validate_schema=False)
    assert result.codes() == {"missing-usage"}


def test_keep_events_false_keeps_nothing_but_finds_the_same() -> None:
    name = "anthropic-deviations/12_non_contiguous_indices.sse"
    lean = read(name, keep_events=False)
    full = read(name)
    assert lean.events == () and lean.payloads == ()
    assert where(lean) == where(full)
    assert lean.event_count == full.event_count == 10
    assert lean.message == full.message
    assert lean.timings == full.timings


def test_max_events_bounds_what_is_kept() -> None:
    result = read("anthropic/pings.sse", max_events=4)
    assert len(result.events) == 4 and len(result.payloads) == 4
    assert result.event_count == 13
    assert [(v.code, v.event_index) for v in result.violations] == [("too-many-events", 4)]
    assert result.complete


@pytest.mark.parametrize("cause", ["reset", "timeout-idle", "timeout-total"])
def test_transport_cause_is_named_when_the_stream_is_incomplete(cause: str) -> None:
    body = (TRANSCRIPTS / "anthropic-deviations/03_cut_mid_block.sse").read_bytes()
    reader = StreamReader("anthropic", t_start=0.0)
    reader.feed(body, 0.5)
    result = reader.close(3.0, cause=cause)
    assert result.end_cause == cause
    assert result.codes() == {"blocks-left-open", "missing-message-stop", "stream-truncated"}
    [truncated] = [v for v in result.violations if v.code == "stream-truncated"]
    assert cause in truncated.message


def test_transport_cause_after_a_complete_or_errored_stream_is_not_a_violation() -> None:
    for name in ("anthropic/basic.sse", "anthropic/error_overloaded.sse", "openai/basic.sse"):
        reader = StreamReader(INDEX[name]["flavour"], t_start=0.0)
        reader.feed((TRANSCRIPTS / name).read_bytes(), 0.1)
        assert "stream-truncated" not in reader.close(0.2, cause="reset").codes()


def test_openai_cut_stream_names_the_cause() -> None:
    reader = StreamReader("openai", t_start=0.0)
    reader.feed((TRANSCRIPTS / "openai-deviations/20_no_done_after_failure.sse").read_bytes(), 0.1)
    result = reader.close(0.2, cause="reset")
    assert result.codes() == {"missing-done", "finish-reason-missing", "stream-truncated"}


def test_output_tokens() -> None:
    assert read("anthropic/basic.sse").output_tokens == 6
    assert read("anthropic/multiple_message_deltas.sse").output_tokens == 5
    assert read("anthropic-deviations/03_cut_mid_block.sse").output_tokens is None
    assert read("openai/basic_include_usage.sse").output_tokens == 5
    assert read("openai/basic.sse").output_tokens is None


# ----------------------------------------------------------------------------------------------- timing

# Arrival times (ms after the request) of each frame's `event:` and `data:` lines, from the LiteLLM capture
# /work/shared/gateways/litellm/samples/openai-upstream/stream_slow_timing.txt (upstream paced 200 ms apart);
# the frames are those of openai-upstream__msg_stream.sse, which carry the same text.
SLOW_TIMES = [
    (32.5, 32.6),
    (227.9, 228.0),
    (228.5, 228.6),
    (428.2, 428.3),
    (628.7, 628.8),
    (828.6, 828.6),
    (1029.2, 1029.2),
    (1433.0, 1433.1),
    (1440.6, 1440.7),
]


def test_timings_of_the_paced_litellm_capture() -> None:
    body = (TRANSCRIPTS / "litellm/openai-upstream__msg_stream.sse").read_bytes()
    frames = [frame + b"\n\n" for frame in body.split(b"\n\n") if frame]
    assert len(frames) == len(SLOW_TIMES)
    reader = StreamReader("anthropic", t_start=0.0)
    for frame, (t_event, t_data) in zip(frames, SLOW_TIMES, strict=True):
        head, _, rest = frame.partition(b"\n")
        reader.feed(head + b"\n", t_event / 1000)
        reader.feed(rest, t_data / 1000)
    result = reader.close(1.4410)
    timings = result.timings
    assert timings.ttfb == pytest.approx(0.0325)
    assert timings.ttft == pytest.approx(0.2286)
    assert timings.gaps == pytest.approx((0.1997, 0.2005, 0.1998))
    assert timings.total == pytest.approx(1.441)
    assert result.events[2].t_start == pytest.approx(0.2285)
    assert result.events[2].t_end == pytest.approx(0.2286)
    assert result.codes() == set()


def frames_at(name: str, start: float = 1.0) -> StreamResult:
    """Feed one frame per chunk, frame i at time start + i."""
    entry = INDEX[name]
    body = (TRANSCRIPTS / name).read_bytes()
    reader = StreamReader(entry["flavour"], t_start=0.0)
    for i, frame in enumerate(f for f in body.split(b"\n\n") if f):
        reader.feed(frame + b"\n\n", start + i)
    return reader.close(100.0)


def test_ttft_skips_empty_deltas() -> None:
    tool = frames_at("litellm/openai-upstream__up_msg_tool_stream.sse")
    assert tool.timings.ttft == 3.0  # message_start, start, then the first partial_json at frame 2
    openai_tools = frames_at("openai/tool_calls.sse")
    assert openai_tools.timings.ttft == 2.0  # frame 0 has arguments "", frame 1 the first fragment
    assert openai_tools.timings.gaps == (1.0, 1.0, 1.0)
    thinking = frames_at("anthropic/thinking.sse")
    assert thinking.timings.ttft == 3.0
    assert thinking.timings.gaps == (1.0, 4.0)  # the signature_delta is not content


def test_no_content_no_ttft() -> None:
    result = read("anthropic/refusal.sse")
    assert result.timings.ttft is None and result.timings.gaps == ()
    assert result.timings.ttfb == 1.0


# ----------------------------------------------------------------------------------------------- framing


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'event: ping\ndata: {"type":"ping"}\n\nevent: ping\r\ndata: {"type":"ping"}\r\n\r\n', {"mixed-line-endings"}),
        (b'retry: soon\nevent: ping\ndata: {"type":"ping"}\n\n', {"invalid-retry"}),
        (b'id: a\x00\nevent: ping\ndata: {"type":"ping"}\n\n', {"id-with-nul"}),
        (b': caf\xe9\n\nevent: ping\ndata: {"type":"ping"}\n\n', {"invalid-utf8"}),
        (b"event: ping\ndata: " + b"x" * 100 + b"\n\n", {"oversized-event", "data-not-json"}),
        (b": " + b"x" * 100 + b"\n\n", {"oversized-event"}),
    ],
)
def test_framing_anomalies_become_violations(body: bytes, expected: set[str]) -> None:
    reader = StreamReader("anthropic", t_start=0.0, max_event_bytes=64)
    reader.feed(body, 0.1)
    result = reader.close(0.2)
    assert result.codes() - {"no-message-start", "missing-message-stop", "ping-before-message-start"} == expected


def test_openai_data_only_frames_are_normal() -> None:
    result = read("openai/basic.sse")
    assert result.codes() == set()
    assert all(e.anomalies == () for e in result.events)  # the reader tells the decoder not to expect names
    assert not result.anomalies


def test_close_is_idempotent_and_feed_after_close_is_ignored() -> None:
    reader = StreamReader("anthropic", t_start=0.0)
    reader.feed((TRANSCRIPTS / "anthropic/basic.sse").read_bytes(), 0.1)
    first = reader.close(0.2)
    reader.feed(b"event: ping\ndata: {}\n\n", 0.3)
    assert reader.close(0.4) is first


def test_bad_flavour_is_rejected() -> None:
    with pytest.raises(ValueError, match="flavour"):
        StreamReader("gemini", t_start=0.0)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    body=st.lists(
        st.sampled_from(
            [
                b"event: message_start\n",
                b"event: content_block_delta\n",
                b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}\n',
                b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}\n',
                b'data: {"type":"message_start","message":{}}\n',
                b"data: [DONE]\n",
                b'data: {"error":{}}\n',
                b"\n",
                b"\r",
                b":\n",
            ]
        )
        | st.binary(max_size=6),
        max_size=30,
    ).map(b"".join),
    flavour=st.sampled_from(["anthropic", "openai"]),
    keep=st.booleans(),
)
def test_any_bytes_give_a_result(body: bytes, flavour: Any, keep: bool) -> None:
    reader = StreamReader(flavour, t_start=0.0, keep_events=keep, max_events=5)
    for i in range(0, len(body), 5):
        reader.feed(body[i : i + 5], float(i))
    result = reader.close(1e6, cause="reset")
    assert all(v.code in VIOLATIONS for v in result.violations)
    assert result.bytes_received == len(body)
    assert len(result.events) <= 5


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"a": [1, 2.5, null, true]}', {"a": [1, 2.5, None, True]}),
        (' \t{"a": 1} \r\n', {"a": 1}),
        ("7", 7),
        ('"x"', "x"),
        ("[DONE]", NOT_JSON),
        ('{"a": 1} trailing', NOT_JSON),
        ('{"a": 1}{"b": 2}', NOT_JSON),
        ("", NOT_JSON),
        ("[" * 100_000, NOT_JSON),
        ("[" * 100_000 + "]" * 100_000, NOT_JSON),
    ],
)
def test_parse_json_matches_json_loads_and_never_raises(data: str, expected: object) -> None:
    parsed = parse_json(data)
    assert parsed is expected if expected is NOT_JSON else parsed == expected


def test_deeply_nested_data_is_reported_not_raised() -> None:
    deep = "[" * 50_000 + "]" * 50_000
    partial = json.dumps("[" * 50_000)
    body = f"event: ping\ndata: {deep}\n\n" + (TRANSCRIPTS / "anthropic/tool_use.sse").read_text().replace(
        '"partial_json":""', f'"partial_json":{partial}'
    )
    reader = StreamReader("anthropic", t_start=0.0)
    reader.feed(body.encode(), 0.1)
    result = reader.close(0.2)
    assert result.codes() == {"data-not-json", "tool-input-not-json"}
