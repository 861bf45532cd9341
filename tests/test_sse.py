"""The SSE decoder: field parsing, line endings on bytes, chunk-boundary invariance, anomalies, timing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.sse import DESCRIPTIONS, Anomaly, SSEDecoder, SSEEvent, decode_all

TRANSCRIPTS = Path(__file__).parent / "transcripts"
INDEX: dict[str, dict[str, object]] = json.loads((TRANSCRIPTS / "index.json").read_text())
BODIES = {name: (TRANSCRIPTS / name).read_bytes() for name in INDEX}


def key(events: list[SSEEvent]) -> list[tuple[object, ...]]:
    """Everything about an event except its arrival times."""
    return [(e.index, e.event, e.data, e.id, e.retry, e.raw, e.anomalies, e.offset, e.details) for e in events]


def feed_chunks(chunks: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for t, chunk in enumerate(chunks):
        events.extend(decoder.feed(chunk, float(t)))
    events.extend(decoder.close(float(len(chunks))))
    return events


# ----------------------------------------------------------------------------------------------- fields


def test_fields_are_parsed_as_the_spec_says() -> None:
    body = (
        b"event: message_start\n"
        b"data: first\n"
        b"data:second\n"
        b"data:  two spaces\n"
        b"data\n"
        b"id: 42\n"
        b"retry: 3000\n"
        b": a comment inside the frame\n"
        b"\n"
    )
    [event] = decode_all(body)
    assert event.event == "message_start"
    assert event.data == "first\nsecond\n two spaces\n"
    assert event.id == "42"
    assert event.retry == 3000
    assert event.raw == body
    assert event.anomalies == ()


def test_comment_only_frames_are_counted_not_events() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b": keep-alive\n\n:\n\nevent: ping\ndata: {}\n\n", 0.0)
    assert [e.event for e in events] == ["ping"]
    assert events[0].index == 0
    assert decoder.comments == 2


def test_u2028_inside_data_is_not_a_line_break() -> None:
    [event] = decode_all('event: x\ndata: {"t":"a\u2028b\u2029c\x85d"}\n\n'.encode())
    assert event.data == '{"t":"a\u2028b\u2029c\x85d"}'


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_lf_crlf_and_cr_frame_the_same_events(eol: bytes) -> None:
    body = eol.join([b"event: a", b"data: 1", b"data: 2", b"", b"event: b", b"data: 3", b"", b""])
    events = decode_all(body)
    assert [(e.event, e.data) for e in events] == [("a", "1\n2"), ("b", "3")]
    expected = (Anomaly.CR_LINE_ENDINGS,) if eol == b"\r" else ()
    assert events[0].anomalies == expected
    assert b"".join(e.raw for e in events) == body


def test_crlf_split_across_chunks_is_not_an_empty_line() -> None:
    events = feed_chunks([b"event: a\r", b"\ndata: 1\r", b"\n\r", b"\n"])
    assert [(e.event, e.data, e.raw) for e in events] == [("a", "1", b"event: a\r\ndata: 1\r\n\r\n")]
    assert events[0].anomalies == ()


def test_frame_ending_on_a_final_cr_keeps_the_cr_arrival_time() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\r\n\r", 5.0) == []  # the LF may still come
    [first] = decoder.feed(b"\ndata: 2\r\n\r", 9.0)
    assert (first.raw, first.t_start, first.t_end) == (b"data: 1\r\n\r\n", 5.0, 5.0)
    [second] = decoder.close(10.0)  # no LF came: the blank line ended on a bare CR
    assert (second.raw, second.t_start, second.t_end) == (b"data: 2\r\n\r", 9.0, 9.0)


def test_mixed_line_endings_are_flagged_once() -> None:
    events = decode_all(b"data: 1\n\ndata: 2\r\n\r\ndata: 3\r\n\r\n")
    assert [e.anomalies for e in events] == [
        (Anomaly.NO_EVENT_FIELD,),
        (Anomaly.MIXED_LINE_ENDINGS, Anomaly.NO_EVENT_FIELD),
        (Anomaly.NO_EVENT_FIELD,),
    ]


def test_invalid_utf8_is_replaced_flagged_and_kept_raw() -> None:
    body = b'event: x\ndata: {"t":"a\xffb"}\n\n'
    decoder = SSEDecoder()
    [event] = decoder.feed(body, 0.0)
    assert event.data == '{"t":"a\ufffdb"}'
    assert event.raw == body
    assert event.anomalies == (Anomaly.INVALID_UTF8,)
    assert decoder.stream_anomalies == [(Anomaly.INVALID_UTF8, body.index(b"\xff"), "invalid UTF-8 at byte 22")]


def test_multibyte_character_split_across_chunks() -> None:
    body = "event: x\ndata: héllo ✓\n\n".encode()
    cut = body.index("✓".encode()) + 1
    [event] = feed_chunks([body[:cut], body[cut:]])
    assert event.data == "héllo ✓"
    assert event.anomalies == ()


def test_missing_final_blank_line_is_flushed_as_unterminated() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: a\ndata: 1\n\nevent: message_stop\ndata: {}\n", 0.0)[0].event == "a"
    [event] = decoder.close(1.0)
    assert (event.event, event.data, event.raw) == ("message_stop", "{}", b"event: message_stop\ndata: {}\n")
    assert event.anomalies == (Anomaly.UNTERMINATED,)
    assert decoder.close(2.0) == []


def test_bom_is_stripped_and_flagged() -> None:
    [event] = decode_all(b"\xef\xbb\xbfevent: a\ndata: 1\n\n")
    assert (event.event, event.data) == ("a", "1")
    assert event.raw.startswith(b"\xef\xbb\xbf")
    assert event.anomalies == (Anomaly.BOM,)


def test_bom_later_in_the_stream_is_just_an_unknown_field() -> None:
    events = decode_all(b"event: a\ndata: 1\n\n\xef\xbb\xbfevent: b\ndata: 2\n\n")
    assert events[1].event is None
    assert Anomaly.UNKNOWN_FIELD in events[1].anomalies


def test_id_with_nul_and_bad_retry_are_ignored_and_flagged() -> None:
    [event] = decode_all(b"id: a\x00b\nretry: 10s\ndata: x\n\n")
    assert (event.id, event.retry) == (None, None)
    assert event.anomalies == (Anomaly.ID_WITH_NUL, Anomaly.INVALID_RETRY, Anomaly.NO_EVENT_FIELD)


def test_event_without_data_and_empty_data() -> None:
    no_data, empty, id_only = decode_all(b"event: content_block_delta\n\nevent: ping\ndata:\n\nid: 7\n\n")
    assert (no_data.event, no_data.data, no_data.anomalies) == ("content_block_delta", None, (Anomaly.NO_DATA_FIELD,))
    assert (empty.data, empty.anomalies) == ("", (Anomaly.EMPTY_DATA,))
    assert (id_only.event, id_only.data, id_only.id, id_only.anomalies) == (None, None, "7", ())


def test_unknown_field_only_frame_is_still_an_event() -> None:
    [event] = decode_all(b'{"type":"error","error":{}}')
    assert event.event is None and event.data is None
    assert event.anomalies == (Anomaly.UNKNOWN_FIELD, Anomaly.UNTERMINATED)


def test_every_anomaly_has_a_description() -> None:
    assert set(DESCRIPTIONS) == set(Anomaly)


def test_anomalies_in_comment_frames_are_stray() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b": caf\xe9\n\n", 0.0) == []
    assert decoder.close(1.0) == []
    assert [code for code, _, _ in decoder.stray_anomalies] == [Anomaly.INVALID_UTF8]


# ----------------------------------------------------------------------------------------------- limits


def test_oversized_frame_is_cut_flagged_and_bounded() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    big = b"event: content_block_delta\ndata: " + b"x" * 1000 + b"\n\nevent: ping\ndata: {}\n\n"
    events: list[SSEEvent] = []
    for i in range(0, len(big), 7):
        events.extend(decoder.feed(big[i : i + 7], float(i)))
        assert decoder.pending_bytes <= 64 + 7
    events.extend(decoder.close(9999.0))
    first, ping = events
    assert len(first.raw) == 64
    assert first.event == "content_block_delta"
    assert Anomaly.OVERSIZED_EVENT in first.anomalies
    assert (ping.event, ping.data, ping.offset) == ("ping", "{}", big.index(b"event: ping"))


def test_oversized_frame_in_one_chunk() -> None:
    body = b"data: " + b"y" * 300 + b"\n\ndata: z\n\n"
    events = SSEDecoder(max_event_bytes=100).feed(body, 0.0)
    assert [len(e.raw) for e in events] == [100, 9]
    assert events[0].anomalies == (Anomaly.OVERSIZED_EVENT, Anomaly.NO_EVENT_FIELD)
    assert events[1].data == "z"


def test_oversized_unterminated_frame_at_close() -> None:
    decoder = SSEDecoder(max_event_bytes=32)
    decoder.feed(b"data: " + b"q" * 100, 0.0)
    [event] = decoder.close(1.0)
    assert Anomaly.OVERSIZED_EVENT in event.anomalies and Anomaly.UNTERMINATED in event.anomalies


def test_feed_after_close_is_ignored() -> None:
    decoder = SSEDecoder()
    decoder.close(0.0)
    assert decoder.feed(b"data: x\n\n", 1.0) == []


# ----------------------------------------------------------------------------------------------- timing


def test_arrival_times_follow_the_chunks() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: a\nda", 1.0) == []
    [a] = decoder.feed(b"ta: 1\n\nevent: b\n", 2.0)
    [b] = decoder.feed(b"data: 2\n\n", 3.0)
    assert (a.t_start, a.t_end) == (1.0, 2.0)
    assert (b.t_start, b.t_end) == (2.0, 3.0)
    assert decoder.bytes_received == len(b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\n")


# ----------------------------------------------------------------------------------------------- transcripts


@pytest.mark.parametrize("name", sorted(BODIES))
def test_every_split_point_gives_the_one_shot_events(name: str) -> None:
    body = BODIES[name]
    whole = key(decode_all(body))
    assert whole, "a transcript has events"
    for cut in range(1, len(body)):
        assert key(feed_chunks([body[:cut], body[cut:]])) == whole, f"split at byte {cut}"


@pytest.mark.parametrize("name", sorted(BODIES))
def test_one_byte_chunks_give_the_one_shot_events(name: str) -> None:
    body = BODIES[name]
    assert key(feed_chunks([body[i : i + 1] for i in range(len(body))])) == key(decode_all(body))


@pytest.mark.parametrize("name", sorted(BODIES))
def test_raw_frames_are_the_body(name: str) -> None:
    body = BODIES[name]
    if b"\n:" in body or body.startswith(b":"):
        pytest.skip("comment-only frames are not events, so their bytes are in no raw")
    assert b"".join(e.raw for e in decode_all(body)) == body


@pytest.mark.parametrize("eol", [b"\r\n", b"\r"])
@pytest.mark.parametrize("name", [n for n in sorted(BODIES) if b"\r" not in BODIES[n]])
def test_line_ending_variants_decode_alike(name: str, eol: bytes) -> None:
    body = BODIES[name]
    lf = decode_all(body)
    other = decode_all(body.replace(b"\n", eol))
    assert [(e.event, e.data, e.id) for e in other] == [(e.event, e.data, e.id) for e in lf]


# ----------------------------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(BODIES)), cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_random_chunkings_give_the_one_shot_events(name: str, cuts: list[int]) -> None:
    body = BODIES[name]
    points = sorted({c % (len(body) + 1) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert key(feed_chunks(chunks)) == key(decode_all(body))


_SSE_BYTES = st.lists(
    st.sampled_from(
        [b"\n", b"\r", b"\r\n", b"data:", b"event: ", b"id:", b"retry: 5", b":", b" ", b"x", b"\xff", b"\xef\xbb\xbf"]
    )
    | st.binary(max_size=8),
    max_size=40,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(body=_SSE_BYTES, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6), limit=st.integers(16, 64))
def test_any_bytes_decode_without_error(body: bytes, cuts: list[int], limit: int) -> None:
    decoder = SSEDecoder(max_event_bytes=limit)
    points = sorted({c % (len(body) + 1) for c in cuts})
    events: list[SSEEvent] = []
    for a, b in zip([0, *points], [*points, len(body)], strict=True):
        events.extend(decoder.feed(body[a:b], float(a)))
        assert decoder.pending_bytes <= limit + (b - a) + 3
    events.extend(decoder.close(1e9))
    assert [e.index for e in events] == list(range(len(events)))
    assert all(len(e.raw) <= max(limit, len(body)) for e in events)
    assert sum(len(e.raw) for e in events) <= len(body)
    assert decoder.bytes_received == len(body)
    one_shot = SSEDecoder(max_event_bytes=limit)
    expected = one_shot.feed(body, 0.0) + one_shot.close(1.0)
    if not any(Anomaly.OVERSIZED_EVENT in e.anomalies for e in expected):
        assert key(events) == key(expected)
