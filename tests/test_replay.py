"""conformance.replay: recorded bytes, chunks and times come back; matching, misses, errors, encodings, the SDKs."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest

from conformance import runner
from conformance.cassette import (
    KEY_STAND_IN,
    Cassette,
    Interaction,
    RecordedError,
    RecordedRequest,
    RecordedResponse,
    read_cassette,
)
from conformance.exchange import WRONG_KEY, RequestSpec
from conformance.fixtures import CASSETTES, load_index, replay_entry
from conformance.probes import basic_body
from conformance.replay import Replayer, auth_fingerprint
from conformance.runner import ConformanceRun
from conformance.sdk import CALLS
from conformance.target import KEY_PLACEHOLDER

REFERENCE = read_cassette(CASSETTES / "reference.json")
TARGET = REFERENCE.target.to_target()
AUTH = (("anthropic-version", "2023-06-01"), ("x-api-key", KEY_PLACEHOLDER))
FAST = 1.0  # seconds: a replay never waits for what it replays


def basic(**extra: Any) -> dict[str, Any]:
    return {**basic_body(TARGET), **extra}


def post(body: dict[str, Any], headers: tuple[tuple[str, str], ...] = AUTH) -> RecordedRequest:
    return RecordedRequest("POST", "/v1/messages", headers, json.dumps(body).encode())


def answer(status: int, body: Any, *headers: tuple[str, str], at: float = 0.01) -> RecordedResponse:
    data = json.dumps(body).encode()
    return RecordedResponse(status, (("content-type", "application/json"), *headers), data, ((at, len(data)),))


def cassette(*items: Interaction) -> Cassette:
    return Cassette(REFERENCE.target, items)


def recorded_stream() -> Interaction:
    """The reference gateway's stream, its chunks spread out: 0.5 s to the first, 0.25 s between the others."""
    item = next(i for i in REFERENCE.interactions if i.response and i.response.body.startswith(b"event:"))
    assert item.response is not None
    chunks = tuple((0.5 + 0.25 * n, size) for n, (_, size) in enumerate(item.response.chunks))
    return replace(item, response=replace(item.response, chunks=chunks), duration=chunks[-1][0] + 0.1)


def test_a_stream_comes_back_byte_for_byte_with_its_recorded_chunks_and_arrival_times() -> None:
    item = recorded_stream()
    assert item.response is not None and len(item.response.chunks) > 10
    started = time.perf_counter()
    with Replayer(cassette(item)) as replayer:
        exchange = replayer.transport.send(RequestSpec("POST", "/v1/messages", json=basic(stream=True), stream=True))
    assert time.perf_counter() - started < FAST  # the recorded stream took over 4 s
    assert exchange.body == item.response.body
    assert [n for _, n in exchange.chunks] == [n for _, n in item.response.chunks]
    assert [t for t, _ in exchange.chunks] == pytest.approx([t for t, _ in item.response.chunks])
    assert exchange.timings.ttfb == pytest.approx(0.5)
    assert exchange.timings.total == pytest.approx(item.duration)
    assert exchange.stream is not None and exchange.stream.complete
    timings = exchange.stream.timings
    first_delta = next(n for n, (t, _) in enumerate(item.response.chunks) if b"text_delta" in _chunk(item, n))
    assert timings.ttft == pytest.approx(item.response.chunks[first_delta][0])
    assert timings.gaps and all(gap == pytest.approx(0.25) for gap in timings.gaps)


def _chunk(item: Interaction, n: int) -> bytes:
    assert item.response is not None
    return item.response.pieces()[n][1]


def test_repeats_come_back_in_recorded_order_and_the_retry_waits_take_no_time() -> None:
    spec = RequestSpec("POST", "/v1/messages", json=basic())
    limited = error(429, "rate_limit_error")
    items = [
        Interaction(post(basic()), answer(429, limited, ("retry-after", "30"))),
        Interaction(post(basic()), answer(429, limited, ("retry-after", "30"))),
        Interaction(post(basic()), answer(200, {"id": "msg_third"})),
    ]
    started = time.perf_counter()
    with Replayer(cassette(*items)) as replayer, replayer.active():
        run = ConformanceRun(replayer.target, transport=replayer.transport)
        final = run.send_one(spec)
        assert replayer.clock() >= 60  # the runner waited retry-after twice, on the replay's clock
    assert time.perf_counter() - started < FAST
    assert [e.status for e in run.exchanges] == [429, 429, 200]
    assert final.json() == {"id": "msg_third"}
    assert runner.time is time  # the runner's real clock is back


def error(status: int, kind: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": f"HTTP {status}"}}


def test_a_request_without_a_recording_fails_at_once_and_says_why() -> None:
    with Replayer(cassette(Interaction(post(basic()), answer(200, {"id": "msg_1"})))) as replayer:
        started = time.perf_counter()
        other = replayer.transport.send(RequestSpec("POST", "/v1/messages", json=basic(max_tokens=7)))
        nowhere = replayer.transport.send(RequestSpec("GET", "/v1/nope"))
        again = replayer.transport.send(RequestSpec("POST", "/v1/messages", json=basic()))
        twice = replayer.transport.send(RequestSpec("POST", "/v1/messages", json=basic()))
    assert time.perf_counter() - started < FAST
    assert other.status is None and other.error is not None
    assert "no recorded response for POST /v1/messages" in other.error.message
    assert "another body" in other.error.message
    assert nowhere.error is not None and "no GET /v1/nope at all" in nowhere.error.message
    assert again.status == 200
    assert twice.error is not None and "already used" in twice.error.message
    assert len(replayer.misses) == 3
    assert replayer.unused() == []
    assert "3 had no recording" in replayer.summary()


def test_auth_headers_tell_otherwise_identical_requests_apart() -> None:
    body = basic()
    items = [
        Interaction(post(body, (("anthropic-version", "2023-06-01"),)), answer(401, error(401, "none"))),
        Interaction(post(body), answer(200, {"id": "msg_key"})),
        Interaction(post(body, (*AUTH[:1], ("x-api-key", WRONG_KEY))), answer(401, error(401, "wrong"))),
    ]
    with Replayer(cassette(*items)) as replayer:
        sent = [
            replayer.transport.send(RequestSpec("POST", "/v1/messages", json=body, auth=auth))
            for auth in ("target", "wrong-key", "none")
        ]
    assert [e.json() for e in sent] == [{"id": "msg_key"}, error(401, "wrong"), error(401, "none")]
    assert auth_fingerprint([("x-api-key", KEY_STAND_IN)]) == auth_fingerprint([("x-api-key", KEY_PLACEHOLDER)])
    assert auth_fingerprint([("authorization", "Bearer x")]) != auth_fingerprint([("x-api-key", "x")])


@pytest.mark.parametrize(
    ("kind", "message", "with_response"),
    [
        ("reset", "Connection reset by peer", True),
        (
            "truncated-chunked",
            "peer closed connection without sending complete message body: incomplete chunked read",
            True,
        ),
        ("timeout-idle", "", True),
        ("decoding-error", "the gzip body is corrupt", True),
        ("timeout-first-byte", "", False),
        ("connect-error", "[Errno 111] Connection refused", False),
    ],
)
def test_a_recorded_transport_error_happens_again_where_it_happened(
    kind: str, message: str, with_response: bool
) -> None:
    item = recorded_stream()
    assert item.response is not None
    cut = replace(item.response, body=item.response.body[:300], chunks=((0.5, 300),))
    recorded = replace(item, response=cut if with_response else None, error=RecordedError(kind, message), duration=2.0)
    with Replayer(cassette(recorded)) as replayer:
        exchange = replayer.transport.send(RequestSpec("POST", "/v1/messages", json=basic(stream=True), stream=True))
    assert exchange.error is not None and exchange.error.kind == kind
    if message:
        assert exchange.error.message == message
    assert exchange.timings.total == pytest.approx(2.0)
    if with_response:
        assert exchange.status == 200 and exchange.body == item.response.body[:300]
        assert exchange.stream is not None and not exchange.stream.complete
    else:
        assert exchange.status is None


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, br"])
def test_a_content_encoded_body_replays_as_the_client_read_it(encoding: str) -> None:
    item = recorded_stream()
    assert item.response is not None
    headers = (*item.response.headers, ("content-encoding", encoding))
    encoded = replace(item, response=replace(item.response, headers=headers))
    with Replayer(cassette(encoded)) as replayer:
        exchange = replayer.transport.send(RequestSpec("POST", "/v1/messages", json=basic(stream=True), stream=True))
    assert exchange.error is None
    assert exchange.body == item.response.body
    assert [n for _, n in exchange.chunks] == [n for _, n in item.response.chunks]
    assert exchange.header("content-encoding") == encoding


def test_the_sdks_are_answered_from_the_cassette_through_respx() -> None:
    create = next(i for i in REFERENCE.interactions if i.via == "sdk")
    with Replayer(cassette(create)) as replayer, replayer.active():
        outcome = CALLS["anthropic_messages_create"].execute(replayer.target)
        missed = CALLS["anthropic_messages_create"].execute(replayer.target)
    assert outcome.ok, outcome.summary
    assert outcome.details["text"] == "The quick brown fox jumps over the lazy dog."
    assert not missed.ok and len(replayer.misses) == 1
    assert "already used" in replayer.misses[0]


@pytest.mark.usefixtures("no_network")
def test_a_replay_never_opens_a_socket() -> None:
    entry = next(e for e in load_index() if e.name == "reference")
    outcome = replay_entry(entry)  # every probe, the SDKs' included
    assert outcome.problems() == []
    assert outcome.report.requests_sent >= len(REFERENCE.interactions)
