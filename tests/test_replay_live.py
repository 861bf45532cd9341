"""Live, then replayed: a broken stream reaches the same findings offline as it did on the wire.

The gateways here are real sockets on 127.0.0.1: the reference gateway with its stream-cut fault, and a canned
HTTP/1.1 server that sends hand-made bytes piece by piece (a frame cut in the middle of a chunked body, a final
frame without its blank line), which no fault of the reference gateway produces.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from conformance.cassette import Recorder, read_cassette, write_cassette
from conformance.exchange import Exchange
from conformance.fixtures import CASSETTES
from conformance.probes import PROBES_BY_ID
from conformance.replay import Replayer
from conformance.results import CheckResult
from conformance.runner import ConformanceRun
from conformance.target import Secret, Target
from tests.conftest import GatewayFactory

KEY = "sk-live-replay-0123456789abcdef"
# What the reference gateway answered the messages_stream probe (its stream and its plain reply), as raw bytes.
_REFERENCE = read_cassette(CASSETTES / "reference.json")
_STREAM = next(i for i in _REFERENCE.interactions if i.response and i.response.body.startswith(b"event:"))
_JSON = next(i for i in _REFERENCE.interactions if i.response and i.response.body.startswith(b'{"id"'))
assert _STREAM.response is not None and _JSON.response is not None
FRAMES = [f + b"\n\n" for f in _STREAM.response.body.split(b"\n\n") if f]
MESSAGE = _JSON.response.body

Plan = list[tuple[float, bytes]]  # (seconds to wait, bytes to send); the connection closes after the last


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.request.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
        )
        while len(body) < length:
            body += self.request.recv(65536)
        plan: Plan = self.server.respond(json.loads(body))  # type: ignore[attr-defined]
        for delay, piece in plan:
            time.sleep(delay)
            self.request.sendall(piece)
        self.request.shutdown(socket.SHUT_RDWR)


@contextmanager
def canned_server(respond: Callable[[dict[str, object]], Plan]) -> Iterator[str]:
    """A loopback HTTP server answering each request with the plan respond() gives for its JSON body."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.respond = respond  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _json_reply() -> Plan:
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(MESSAGE)}\r\n"
    return [(0.0, head.encode() + b"connection: close\r\n\r\n" + MESSAGE)]


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nrequest-id: req_canned\r\nconnection: close\r\n"


def cut_mid_frame(body: dict[str, object]) -> Plan:
    """Chunked: five frames, half of the sixth, then the connection closes (no terminating chunk)."""
    if not body.get("stream"):
        return _json_reply()
    plan = [(0.0, SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n")]
    plan += [(0.02, _chunk(f)) for f in FRAMES[:5]]
    return [*plan, (0.02, _chunk(FRAMES[5])[: len(FRAMES[5]) // 2])]


def no_final_blank_line(body: dict[str, object]) -> Plan:
    """Close-delimited: every frame, the last one without its blank line, then EOF."""
    if not body.get("stream"):
        return _json_reply()
    frames = [*FRAMES[:-1], FRAMES[-1].removesuffix(b"\n")]
    return [(0.0, SSE_HEAD + b"\r\n"), *((0.01, f) for f in frames)]


def run_live_then_replay(
    target: Target, tmp_path: object
) -> tuple[list[CheckResult], list[CheckResult], Exchange, Exchange]:
    """The messages_stream probe live (recorded), then replayed from the written cassette: both runs' results."""
    probe = PROBES_BY_ID["messages_stream"]
    recorder = Recorder(target)
    live = ConformanceRun(target, transport=recorder.transport())
    live_results = live.run_probe(probe)
    cassette = read_cassette(write_cassette(recorder.cassette(), tmp_path))  # type: ignore[arg-type]
    with Replayer(cassette) as replayer, replayer.active():
        replayed = ConformanceRun(replayer.target, transport=replayer.transport)
        replay_results = replayed.run_probe(probe)
        assert replayer.misses == [] and replayer.unused() == []
    return live_results, replay_results, live.exchanges[0], replayed.exchanges[0]


def assert_same_findings(live: list[CheckResult], replay: list[CheckResult]) -> set[str]:
    assert [r.to_json() for r in replay] == [r.to_json() for r in live]
    return {r.check for r in live if r.outcome == "failed"}


def assert_same_exchange(live: Exchange, replay: Exchange) -> None:
    assert replay.body == live.body and replay.headers == live.headers and replay.status == live.status
    assert replay.error == live.error
    assert [n for _, n in replay.chunks] == [n for _, n in live.chunks]
    assert [t for t, _ in replay.chunks] == pytest.approx([t for t, _ in live.chunks], abs=1e-6)
    assert live.stream is not None and replay.stream is not None
    assert replay.stream.violations == live.stream.violations
    assert replay.stream.end_cause == live.stream.end_cause


def test_a_stream_cut_in_the_middle_of_a_frame(tmp_path: object) -> None:
    with canned_server(cut_mid_frame) as url:
        live, replay, live_ex, replay_ex = run_live_then_replay(Target(url, Secret(KEY)), tmp_path)
    failed = assert_same_findings(live, replay)
    assert "stream_ends_with_message_stop" in failed
    assert live_ex.error is not None and live_ex.error.kind == "truncated-chunked"
    assert_same_exchange(live_ex, replay_ex)


def test_a_final_frame_without_its_blank_line(tmp_path: object) -> None:
    with canned_server(no_final_blank_line) as url:
        live, replay, live_ex, replay_ex = run_live_then_replay(Target(url, Secret(KEY)), tmp_path)
    failed = assert_same_findings(live, replay)
    # The SDKs drop a frame without its blank line: here that is the message_stop.
    assert "stream_ends_with_message_stop" in failed
    assert live_ex.error is None
    assert_same_exchange(live_ex, replay_ex)
    assert len(live_ex.chunks) > 5  # the pieces arrived apart, and came back apart


def test_the_reference_gateway_cutting_a_stream(gateway_factory: GatewayFactory, tmp_path: object) -> None:
    gateway = gateway_factory(faults=("stream-cut",), api_key=KEY, itl_ms=5)
    live, replay, live_ex, replay_ex = run_live_then_replay(Target(gateway.url, Secret(KEY)), tmp_path)
    failed = assert_same_findings(live, replay)
    assert "stream_ends_with_message_stop" in failed
    assert live_ex.error is not None
    assert_same_exchange(live_ex, replay_ex)
