"""The lean reader's plain-frame path (SSEDecoder.plain_text + StreamReader._take_plain) against the general one.

The load tests read every stream with keep_events=False, which takes chunks of plain frames without SSEEvent
objects, and canonical text deltas without a payload or a schema call. These tests hold that path to finding
exactly what the general path finds, on every transcript, every recorded cassette and generated streams, and
hold the schemas to what the text-delta template assumes.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import stream
from conformance.cassette import read_cassette
from conformance.grammar import AnthropicGrammar
from conformance.schemas import validator
from conformance.sse import SSEDecoder
from conformance.stream import StreamReader, StreamResult
from tests.test_grammar import START

TRANSCRIPTS = Path(__file__).parent / "transcripts"
INDEX: dict[str, dict[str, Any]] = json.loads((TRANSCRIPTS / "index.json").read_text())
CASSETTES = sorted((Path(stream.__file__).parent / "fixtures" / "cassettes").glob("*.json"))


def frames_of(body: bytes) -> list[bytes]:
    """The body cut after every blank line: one chunk per frame, as a server that flushes each event sends it."""
    parts = re.split(rb"(?<=\n\n)", body)
    return [p for p in parts if p]


def chunkings(body: bytes) -> dict[str, list[bytes]]:
    frames = frames_of(body)
    return {
        "whole": [body] if body else [],
        "frames": frames,
        "pairs": [b"".join(frames[i : i + 2]) for i in range(0, len(frames), 2)],
        "7 bytes": [body[i : i + 7] for i in range(0, len(body), 7)],
        # Cut anywhere, a frame at a time or several: the lean path takes what ends at a chunk's last blank line.
        "61 bytes": [body[i : i + 61] for i in range(0, len(body), 61)],
        "333 bytes": [body[i : i + 333] for i in range(0, len(body), 333)],
    }


def read(flavour: str, chunks: list[bytes], *, cause: str = "eof", **options: Any) -> StreamResult:
    reader = StreamReader(flavour, t_start=0.0, **options)  # type: ignore[arg-type]
    t = 0.0
    for chunk in chunks:
        t += 0.25
        reader.feed(chunk, t)
    return reader.close(t + 0.25, cause=cause)


def findings(result: StreamResult) -> dict[str, Any]:
    """Everything a StreamResult says except the kept events themselves."""
    return {
        "violations": [(v.code, v.message, v.event_index) for v in result.violations],
        "anomalies": result.anomalies,
        "complete": result.complete,
        "errored": result.errored,
        "error": result.error,
        "end_cause": result.end_cause,
        "message": result.message,
        "timings": result.timings,
        "bytes_received": result.bytes_received,
        "output_tokens": result.output_tokens,
        "event_count": result.event_count,
        "content_deltas": result.content_deltas,
        "violation_counts": result.violation_counts,
    }


def assert_same(flavour: str, chunks: list[bytes], **options: Any) -> StreamResult:
    plain = read(flavour, chunks, keep_events=False, **options)
    general = read(flavour, chunks, keep_events=False, plain_path=False, **options)
    kept = read(flavour, chunks, keep_events=True, **options)
    assert findings(plain) == findings(general) == findings(kept)
    return plain


@pytest.mark.parametrize("name", sorted(INDEX))
def test_transcripts_find_the_same_on_either_path(name: str) -> None:
    entry = INDEX[name]
    body = (TRANSCRIPTS / name).read_bytes()
    for chunks in chunkings(body).values():
        for max_events in (100_000, 4):
            assert_same(entry["flavour"], chunks, expect_usage=bool(entry.get("expect_usage")), max_events=max_events)


@pytest.mark.parametrize("max_events", range(1, 9))
def test_the_event_limit_falls_at_the_same_event_on_either_path(max_events: int) -> None:
    body = (TRANSCRIPTS / "anthropic/pings.sse").read_bytes()
    deltas = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"x"}}\n\n'
    )
    start = body.index(b"event: content_block_delta")
    body = body[:start] + deltas * 6 + body[start:]
    for chunks in chunkings(body).values():
        result = assert_same("anthropic", chunks, max_events=max_events)
        assert ("too-many-events", max_events) in [(v.code, v.event_index) for v in result.violations]


def _cassette_streams() -> list[tuple[str, str, list[bytes]]]:
    found = []
    for path in CASSETTES:
        for n, interaction in enumerate(read_cassette(path).interactions):
            response = interaction.response
            if response is None or not (response.header("content-type") or "").startswith("text/event-stream"):
                continue
            flavour = "openai" if interaction.request.path.startswith("/v1/chat") else "anthropic"
            found.append((f"{path.stem}#{n}", flavour, [piece for _, piece in response.pieces()]))
    return found


CASSETTE_STREAMS = _cassette_streams()


def test_the_corpus_has_streams_of_both_flavours() -> None:
    assert {flavour for _, flavour, _ in CASSETTE_STREAMS} == {"anthropic", "openai"}
    assert len(CASSETTE_STREAMS) >= 40


@pytest.mark.parametrize(("label", "flavour", "pieces"), CASSETTE_STREAMS, ids=[s[0] for s in CASSETTE_STREAMS])
def test_recorded_streams_find_the_same_on_either_path(label: str, flavour: str, pieces: list[bytes]) -> None:
    assert_same(flavour, pieces, expect_usage=flavour == "openai")
    for chunks in chunkings(b"".join(pieces)).values():
        assert_same(flavour, chunks, expect_usage=flavour == "openai")


def test_the_plain_path_is_taken_for_plain_chunks_and_only_then() -> None:
    body = (TRANSCRIPTS / "anthropic/basic.sse").read_bytes()
    decoder = SSEDecoder()
    assert decoder.plain_text(body) == body.decode()
    assert decoder.events == decoder.bytes_received == 0  # it takes nothing: the caller cuts and counts the frames
    reader = StreamReader("anthropic", t_start=0.0, keep_events=False)
    reader.feed(body, 1.0)
    assert reader._decoder.events == reader.events_seen == body.count(b"\n\n")
    assert reader._decoder.bytes_received == len(body)
    for odd in (b"event: ping\r\ndata: {}\r\n\r\n", b"event: ping\ndata: {}\n", b"\xff\n\n"):
        assert SSEDecoder().plain_text(odd) is None
    # A frame cut across chunks: the text starts at the pending frame's first byte and ends at the chunk's last
    # blank line; what follows stays pending.
    cut = SSEDecoder()
    cut.feed(b"event: ping\ndata: {", 0.0)
    assert cut.plain_text(b'"type":"ping"}\n\nevent: pi') == 'event: ping\ndata: {"type":"ping"}\n\n'
    cut.took_plain(b'"type":"ping"}\n\nevent: pi', 1, 1.0)
    [event] = cut.feed(b'ng\ndata: {"type":"ping"}\n\n', 2.0)
    first = len(b'event: ping\ndata: {"type":"ping"}\n\n')
    assert (event.index, event.event, event.offset, event.t_start, event.t_end) == (1, "ping", first, 1.0, 2.0)
    assert cut.bytes_received == first + len(event.raw) and cut.pending_bytes == 0
    # Frames the patterns do not cut leave something over, at the first of them: the chunk goes to feed().
    ping = "event: ping\ndata: {}\n\n"
    for odd in (": comment\n\n", "data: {}\n\n", "event: ping\n\n", "event: ping\ndata: {}\nid: 1\n\n"):
        assert stream._ANTHROPIC_FRAMES(ping + odd + ping)[-1][-1] == odd + ping
    assert stream._ANTHROPIC_FRAMES(ping + ping)[-1][-1] == ""
    assert stream._OPENAI_FRAMES("data: {}\n\nevent: x\ndata: {}\n\n")[-1][-1] == "event: x\ndata: {}\n\n"
    assert stream._OPENAI_FRAMES("data: {}\n\ndata: [DONE]\n\n")[-1][-1] == ""


def test_canonical_text_blocks_skip_payloads_and_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    body = (TRANSCRIPTS / "anthropic/pings.sse").read_bytes()
    deltas = body.count(b'"type":"text_delta"')
    assert deltas >= 2
    seen: list[object] = []
    stream._KNOWN_VALID["anthropic/stream-event"].clear()
    stream._STARTS.clear()  # a message_start remembers its verdict there
    reader = StreamReader("anthropic", t_start=0.0, keep_events=False)
    checked = reader._is_valid
    assert checked is not None
    reader._is_valid = lambda payload: seen.append(payload) or checked(payload)
    reader.feed(body, 1.0)
    result = reader.close(2.0)
    assert result.violations == () and result.content_deltas == deltas
    # Taken without payloads: a text block's frames (its start and the ping after it, its deltas, its stop), and a
    # message_stop after another frame.
    lean = ("content_block_start", "content_block_delta", "content_block_stop", "message_stop")
    assert not [p for p in seen if isinstance(p, dict) and p.get("type") in lean]
    # Every other event is validated once per distinct text (the repeated pings are remembered as valid).
    others = {line for line in body.split(b"\n") if line.startswith(b"data: ") and b'"type":"message_stop"' not in line}
    others = {line for line in others if b'"type":"content_block' not in line}
    assert len(seen) == len(others) == 3


JSON_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=300, deadline=None)
@given(text=JSON_TEXT, index=st.integers(0, 10**9 - 1), ascii_only=st.booleans())
def test_every_canonical_text_delta_is_schema_valid_and_read_exactly(text: str, index: int, ascii_only: bool) -> None:
    payload = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=ascii_only)
    frame = f"event: content_block_delta\ndata: {data}\n\n"
    [(start, ping, _head, block, piece, more, stop, name, rest, end, left)] = stream._ANTHROPIC_FRAMES(frame)
    assert (start, ping, block, more, stop, name, rest, end, left) == ("", "", str(index), "", "", "", "", "", "")
    assert json.loads(f'"{piece}"') == text
    assert validator("anthropic/stream-event").is_valid(payload)


@settings(max_examples=200, deadline=None)
@given(index=st.integers(0, 10**9 - 1), ping=st.booleans(), stop=st.booleans())
def test_a_text_blocks_start_ping_and_stop_are_schema_valid_and_taken_with_its_run(
    index: int, ping: bool, stop: bool
) -> None:
    start = {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
    end = {"type": "content_block_stop", "index": index}
    delta = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": "x"}}
    frames = [_frame("content_block_start", start)]
    frames += [b'event: ping\ndata: {"type": "ping"}\n\n'] if ping else []
    frames += [_frame("content_block_delta", delta)] * 2 + ([_frame("content_block_stop", end)] if stop else [])
    [(first, pinged, _head, block, piece, more, stopped, name, data, ends, left)] = stream._ANTHROPIC_FRAMES(
        b"".join(frames).decode()
    )
    assert (first, block, piece, name, data, ends, left) == (str(index), str(index), "x", "", "", "", "")
    assert (bool(pinged), bool(stopped), more.count(stream._TEXT_DELTA_TAIL)) == (ping, stop, 1)
    stream_event = validator("anthropic/stream-event")
    assert stream_event.is_valid(start) and stream_event.is_valid(end)
    assert stream_event.is_valid({"type": "ping"}) and stream_event.is_valid({"type": "message_stop"})


def test_frames_around_a_run_that_are_not_its_blocks_are_left_to_the_general_path() -> None:
    def frame(name: str, data: str) -> str:
        return f"event: {name}\ndata: {data}\n\n"

    def block_start(index: int, block: str) -> str:
        return frame("content_block_start", f'{{"type":"content_block_start","index":{index},"content_block":{block}}}')

    run = frame(
        "content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"a"}}'
    )
    for before, after in [
        ("", frame("content_block_stop", '{"type":"content_block_stop","index":0}')),
        ("", frame("content_block_stop", '{"type":"content_block_stop","index":1,"x":1}')),
        (block_start(1, '{"type":"text","text":"x"}'), ""),
        (block_start(1, '{"type":"thinking","thinking":""}'), ""),
        (block_start(1, '{"type":"text","text":""}').replace('"text":""', '"text": ""'), ""),
        (frame("ping", '{"type": "ping"}'), ""),
    ]:
        found = stream._ANTHROPIC_FRAMES(before + run + after)
        assert [(m[0], m[1], m[3], m[6]) for m in found] == (
            [("", "", "", ""), ("", "", "1", "")] if before else [("", "", "1", ""), ("", "", "", "")]
        ), (before, after)
        assert found[1 if before else 0][7:] == ("", "", "", "")
        assert found[0 if before else 1][7:] == (*(before or after)[len("event: ") : -2].split("\ndata: "), "", "")
    # A start of another block's index is taken with the run, and then left to the general path as a whole: here
    # block 0 again (after block 0) before deltas to block 1, the index the grammar expects next.
    first = block_start(0, '{"type":"text","text":""}') + frame(
        "content_block_stop", '{"type":"content_block_stop","index":0}'
    )
    again = block_start(0, '{"type":"text","text":""}') + run
    assert [(m[0], m[1], m[3]) for m in stream._ANTHROPIC_FRAMES(again)] == [("0", "", "1")]
    result = assert_same("anthropic", [(START + first).encode(), again.encode()])
    assert {"block-reopened", "block-not-open"} <= result.codes()


@settings(max_examples=300, deadline=None)
@given(data=st.text(alphabet='{}[]":,\\/ u0123456789abfnrtxé\x01', max_size=60))
def test_the_template_matches_only_what_json_reads_as_a_text_delta(data: str) -> None:
    candidate = '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"' + data + '"}}'
    [(_start, _ping, _head, block, piece, _more, _stop, _name, rest, _end, _left)] = stream._ANTHROPIC_FRAMES(
        f"event: content_block_delta\ndata: {candidate}\n\n"
    )
    if block:
        parsed = json.loads(candidate)
        assert parsed["delta"]["text"] == json.loads(f'"{piece}"')
        assert set(parsed) == {"type", "index", "delta"} and set(parsed["delta"]) == {"type", "text"}
    else:
        assert rest == candidate  # left to the general path


FRAME = st.one_of(
    st.builds(
        lambda i, text: (
            "content_block_delta",
            {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": text}},
        ),
        st.integers(0, 2),
        JSON_TEXT,
    ),
    st.builds(
        lambda i: (
            "content_block_start",
            {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
        ),
        st.integers(0, 2),
    ),
    st.builds(lambda i: ("content_block_stop", {"type": "content_block_stop", "index": i}), st.integers(0, 2)),
    st.just(("ping", {"type": "ping"})),
    st.just(("ping", '{"type": "ping"}')),  # as the Anthropic API writes it
    st.builds(
        lambda i: (
            "content_block_start",
            {"type": "content_block_start", "index": i, "content_block": {"type": "thinking", "thinking": ""}},
        ),
        st.integers(0, 2),
    ),
    st.just(("message_stop", {"type": "message_stop"})),
    st.just(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 3},
            },
        )
    ),
    st.just(
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}})
    ),
    st.just(
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "x"}},
        )
    ),
    st.just(("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})),
    st.just(("content_block_delta", "not json")),
)


def _frame(name: str, payload: object) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"event: {name}\ndata: {data}\n\n".encode()


def _text_block(index: int, ping: bool, texts: list[str], stop: bool) -> list[tuple[str, object]]:
    """A text block as the API streams it: start (with an empty text), a ping after it, deltas, stop."""
    frames: list[tuple[str, object]] = [
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        )
    ]
    frames += [("ping", '{"type": "ping"}')] if ping else []
    frames += [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": t}},
        )
        for t in texts
    ]
    frames += [("content_block_stop", {"type": "content_block_stop", "index": index})] if stop else []
    return frames


BLOCK = st.tuples(st.booleans(), st.lists(JSON_TEXT, max_size=4), st.booleans())  # ping, texts, stop


def _blocks_among(
    blocks: list[tuple[bool, list[str], bool]], noise: list[tuple[int, tuple[str, object]]]
) -> list[tuple[str, object]]:
    """Text blocks in order, as the API streams them, with frames of every kind put anywhere among them."""
    body = [frame for index, block in enumerate(blocks) for frame in _text_block(index, *block)]
    for at, frame in noise:
        body.insert(at % (len(body) + 1), frame)
    return body


@settings(max_examples=300, deadline=None)
@given(
    blocks=st.lists(BLOCK, max_size=3),
    noise=st.lists(st.tuples(st.integers(0, 40), FRAME), max_size=4),
    started=st.booleans(),
    split=st.lists(st.integers(1, 9), min_size=1, max_size=6),
    max_events=st.sampled_from([3, 9, 100]),
    cause=st.sampled_from(["eof", "reset"]),
)
def test_generated_streams_find_the_same_on_either_path(
    blocks: list[tuple[bool, list[str], bool]],
    noise: list[tuple[int, tuple[str, object]]],
    started: bool,
    split: list[int],
    max_events: int,
    cause: str,
) -> None:
    body = _blocks_among(blocks, noise)
    frames = ([START.encode()] if started else []) + [_frame(*f) for f in body]
    chunks, pos, k = [], 0, 0
    while pos < len(frames):
        size = split[k % len(split)]
        chunks.append(b"".join(frames[pos : pos + size]))
        pos += size
        k += 1
    plain = read("anthropic", chunks, keep_events=False, max_events=max_events, cause=cause)
    general = read("anthropic", chunks, keep_events=False, plain_path=False, max_events=max_events, cause=cause)
    assert findings(plain) == findings(general)


def test_invalid_events_are_never_remembered_as_valid() -> None:
    bad = b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"}}\n\n'
    for _ in range(3):
        result = read("anthropic", [bad], keep_events=False)
        assert "schema-violation" in result.codes()
    assert bad[len(b"event: message_delta\ndata: ") : -2].decode() not in stream._KNOWN_VALID["anthropic/stream-event"]


def test_the_memo_of_valid_texts_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "_MEMO_SIZE", 5)
    known = stream._KNOWN_VALID["anthropic/stream-event"]
    known.clear()
    for i in range(12):
        read("anthropic", [_frame("content_block_stop", {"type": "content_block_stop", "index": i})], keep_events=False)
        assert len(known) <= 5
    long = {"type": "ping", "pad": "x" * (stream._MEMO_TEXT + 1)}
    read("anthropic", [_frame("ping", long)], keep_events=False)
    assert not any(len(text) > stream._MEMO_TEXT for text in known)


START_DATA = json.dumps(json.loads(START.split("data: ", 1)[1]), separators=(",", ":"))  # as the API writes it
ID_TEXT = st.text(
    st.characters(codec="utf-8", exclude_characters='"\\', min_codepoint=0x20), min_size=1, max_size=40
).filter(str.isprintable)


@settings(max_examples=200, deadline=None)
@given(first=ID_TEXT, second=ID_TEXT)
def test_message_starts_that_differ_in_the_id_alone_share_a_verdict(first: str, second: str) -> None:
    # The memo keeps one verdict for message_start texts that differ in a plain, non-empty message id alone:
    # the schema must ask no more of the id than that.
    data = START_DATA
    payload = json.loads(data)
    texts = [data.replace('"id":"msg_1"', '"id":' + json.dumps(i, ensure_ascii=False), 1) for i in (first, second)]
    stream._STARTS.clear()
    entries = [stream._message_start(text, stream._plain_id(text))[1] for text in [*texts, data]]
    assert entries[0] is not None and all(entry is entries[0] for entry in entries) and len(stream._STARTS) == 1
    check = validator("anthropic/stream-event").is_valid
    for text, value in zip(texts, (first, second), strict=True):
        assert json.loads(text) == {**payload, "message": {**payload["message"], "id": value}}
        assert check(json.loads(text))


def test_a_known_message_start_past_the_event_limit_is_reported_as_the_general_path_does() -> None:
    start = f"event: message_start\ndata: {START_DATA}\n\n".encode()
    ping = b'event: ping\ndata: {"type": "ping"}\n\n'
    read("anthropic", [start], keep_events=False)  # remembered, and found valid
    for max_events in (1, 2):  # the limit falls at the second ping, then at the message_start
        result = assert_same("anthropic", [ping * 2 + start], max_events=max_events)
        assert ("too-many-events", max_events) in [(v.code, v.event_index) for v in result.violations]


def test_message_start_ids_the_memo_must_not_skip() -> None:
    data = START_DATA
    stream._STARTS.clear()
    assert data.startswith(stream._MESSAGE_START_HEAD) and stream._message_start(data, stream._plain_id(data)) == (
        json.loads(data),
        [json.loads(data), False],
    )
    assert list(stream._STARTS) == [data[data.index('"', len(stream._MESSAGE_START_HEAD)) :]]  # after the id
    for odd in ('"id":""', '"id":"a\\"b"', '"id":"\\u0041"', '"id":"a\u2028b"', '"id":"a\x01b"'):
        text = data.replace('"id":"msg_1"', odd, 1)
        assert stream._plain_id(text) is None and stream._message_start(text, None) == (
            stream.parse_json(text),
            None,
        )  # parsed and checked each time
    valid = f"event: message_start\ndata: {data}\n\n".encode()
    for odd in (b'"id":""', b'"id":"a\x01b"'):
        bad = valid.replace(b'"id":"msg_1"', odd, 1)
        for _ in range(2):  # a violation every time, after a valid message_start was remembered
            assert "schema-violation" not in read("anthropic", [valid], keep_events=False).codes()
            assert read("anthropic", [bad], keep_events=False).codes() & {"schema-violation", "data-not-json"}


def test_message_starts_are_parsed_once_and_rebuilt_around_each_id() -> None:
    stream._STARTS.clear()
    body = (TRANSCRIPTS / "anthropic/basic.sse").read_bytes()
    head = b'data: {"type":"message_start","message":{"id":"'
    assert head in body
    ids = ["msg_a", "msg_b", "msg_\u00e9"]
    for message_id in ids:
        again = body.replace(head + body.split(head, 1)[1].split(b'"', 1)[0], head + message_id.encode(), 1)
        result = assert_same("anthropic", [again])
        assert result.message["id"] == message_id
    assert len(stream._STARTS) == 1
    # A later "message" key overrides the first id: nothing is remembered, every text is parsed.
    stream._STARTS.clear()
    twice = START_DATA[:-1] + ',"message":' + json.dumps(json.loads(START_DATA)["message"], separators=(",", ":")) + "}"
    for message_id in ("msg_1", "msg_2"):
        text = twice.replace('"id":"msg_1"', f'"id":"{message_id}"', 1)
        result = assert_same("anthropic", [f"event: message_start\ndata: {text}\n\n".encode()])
        assert result.message["id"] == "msg_1"
    assert not stream._STARTS


def test_shared_payloads_are_never_handed_out() -> None:
    # A block start, a delta with a citation, a message_delta with a nested object, an error: read twice, with
    # everything the first result handed out scribbled over in between; the second must find the same.
    start = json.loads(START_DATA)
    start["message"]["usage"]["cache_creation"] = {"ephemeral_5m_input_tokens": 0}
    start["message"]["container"] = {"id": "c", "expires_at": "soon"}
    frames = [
        _frame("message_start", start),
        _frame(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        _frame(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "citations_delta", "citation": {"type": "x"}},
            },
        ),
        _frame("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _frame(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_details": {"a": 1}},
                "usage": {"output_tokens": 2},
            },
        ),
        _frame("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}),
    ]
    body = b"".join(frames)
    first = read("anthropic", [body], keep_events=False)
    expected = json.loads(json.dumps(findings(first), default=str))

    def scribble(value: object) -> None:
        if isinstance(value, dict):
            for key in list(value):
                scribble(value[key])
                value[key] = "scribbled"
        elif isinstance(value, list):
            for item in value:
                scribble(item)
            value.append("scribbled")

    scribble(first.message)
    scribble(first.error)
    second = read("anthropic", [body], keep_events=False)
    assert json.loads(json.dumps(findings(second), default=str)) == expected
    assert all("error" not in payload for payload in stream._SHARED.values())


@pytest.mark.parametrize(
    "texts",
    [
        ["plain", 'a "quote"', "back\\slash", "new\nline", "tab\t", "", "\u00e9\u2028", "\x01"],
        ['"first"', "then plain", "and plain"],
        ["", "", "x"],
    ],
)
def test_a_run_of_text_deltas_reads_every_text_exactly(texts: list[str]) -> None:
    # One chunk holding a run of deltas to one block (one match on the lean path), escapes anywhere in it.
    def delta(text: str) -> bytes:
        return _frame(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        )

    block = _frame(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    end = [
        _frame("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _frame(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 3},
            },
        ),
        _frame("message_stop", {"type": "message_stop"}),
    ]
    body = b"".join([f"event: message_start\ndata: {START_DATA}\n\n".encode(), block, *map(delta, texts), *end])
    for limit in (100, 5):
        result = assert_same("anthropic", [body], max_events=limit)
        if limit == 100:
            assert result.message["content"][0]["text"] == "".join(texts)
            assert result.content_deltas == sum(1 for text in texts if text)


def test_a_run_is_read_text_by_text_when_its_message_is_asked_for() -> None:
    # The lean reader keeps a run's frames and cuts its texts out only for the message: each text is read on its
    # own, as the general path reads them, so a surrogate pair escaped across two deltas stays two lone halves.
    def delta(raw: str) -> bytes:
        data = '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"' + raw + '"}}'
        return f"event: content_block_delta\ndata: {data}\n\n".encode()

    block = _frame(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "a"}},
    )
    end = _frame("content_block_stop", {"type": "content_block_stop", "index": 0})
    raws = ["\\ud83d", "\\ude00", "b", "\\n", "\\ud83d\\ude00"]
    body = f"event: message_start\ndata: {START_DATA}\n\n".encode() + block + b"".join(map(delta, raws)) + end
    result = assert_same("anthropic", [body])
    assert result.message["content"][0]["text"] == "a" + "".join(json.loads(f'"{raw}"') for raw in raws)
    assert result.message["content"][0]["text"].startswith("a\ud83d\ude00b\n")
    assert result.content_deltas == len(raws) and "blocks-left-open" not in result.codes()


@pytest.mark.parametrize("max_event_bytes", [16, 48, 120, 400])
def test_oversized_frames_are_found_the_same_on_either_path(max_event_bytes: int) -> None:
    for name in ("anthropic/basic.sse", "anthropic/pings.sse", "openai/basic.sse"):
        body = (TRANSCRIPTS / name).read_bytes()
        flavour = name.split("/")[0]
        for chunks in chunkings(body).values():
            assert_same(flavour, chunks, max_event_bytes=max_event_bytes)


def test_a_frame_ending_in_cr_after_plain_frames_is_found_in_its_own_chunk() -> None:
    # Only "\n\n" ends a plain frame; a chunk whose rest holds another frame end goes to the general path whole,
    # so that frame's event comes with this chunk (its time, its anomaly), not with the next.
    def delta(text: str) -> bytes:
        return _frame(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        )[:-2]

    block = _frame(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    start = f"event: message_start\ndata: {START_DATA}\n\n".encode() + block
    for end in (b"\r\n\r\n", b"\n\r\n", b"\r\r"):
        assert_same("anthropic", [start + delta("a") + b"\n\n" + delta("b") + end, delta("c") + b"\n\n"])


def _grammar_state(grammar: AnthropicGrammar) -> tuple[object, ...]:
    blocks = [(b.index, b.kind, b.closed, b.deltas, b.start, b.signature) for b in grammar._blocks.values()]
    return (
        grammar.violations,
        grammar.violation_counts,
        grammar.events,
        grammar.content_deltas,
        (grammar.started, grammar.stopped, grammar.errored, grammar.message_deltas, grammar._last_kind),
        (grammar._open, grammar._next_index),
        blocks,
        grammar.message(),
    )


@settings(max_examples=300, deadline=None)
@given(
    blocks=st.lists(BLOCK, max_size=2),
    noise=st.lists(st.tuples(st.integers(0, 20), FRAME), max_size=3),
    started=st.booleans(),
    index=st.integers(-1, 3),
    ping=st.booleans(),
)
def test_the_grammar_takes_constant_frames_without_payloads_only_as_feed_fields_would(
    blocks: list[tuple[bool, list[str], bool]],
    noise: list[tuple[int, tuple[str, object]]],
    started: bool,
    index: int,
    ping: bool,
) -> None:
    # In any state: text_block_start / text_block_stop / known_message_start either take nothing (False), or do
    # what feeding the frames one by one does, and that finds nothing; message_stop takes nothing, or does what
    # feeding it does.
    body = _blocks_among(blocks, noise)
    grammar = AnthropicGrammar()
    if started:
        grammar.feed_fields(0, "message_start", START_DATA, json.loads(START_DATA))
    for name, payload in body:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        grammar.feed_fields(grammar.events, name, data, stream.parse_json(data))
    before = _grammar_state(grammar)
    if index < 0:  # the index the grammar expects next, for a start, and the last open block's, for a stop
        index = grammar._next_index
    start = {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
    stop = {"type": "content_block_stop", "index": index}
    cases = [
        ("text_block_start", (index, ping), [("content_block_start", start)] + ([("ping", {"type": "ping"})] * ping)),
        ("text_block_stop", (index,), [("content_block_stop", stop)]),
        (
            "text_block_stop",
            (max(grammar._open, default=0),),
            [("content_block_stop", {**stop, "index": max(grammar._open, default=0)})],
        ),
    ]
    cases.append(("message_stop", (grammar.events,), [("message_stop", {"type": "message_stop"})]))
    shared = json.loads(START_DATA)["message"]
    started = {"type": "message_start", "message": {**shared, "id": "msg_other"}}
    cases.append(("known_message_start", (shared, "msg_other"), [("message_start", started)]))
    for method, args, frames in cases:
        bulk, general = copy.deepcopy(grammar), copy.deepcopy(grammar)
        for name, payload in frames:
            general.feed_fields(general.events, name, json.dumps(payload), payload)
        if getattr(bulk, method)(*args):
            assert _grammar_state(bulk) == _grammar_state(general)
            assert general.violations == grammar.violations or method == "message_stop"  # nothing found
            assert shared == json.loads(START_DATA)["message"]  # not changed
        else:
            assert _grammar_state(bulk) == before
