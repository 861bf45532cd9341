"""Offline selftests of the transport checks and of the Transport's bounded body decoding (no socket is opened).

The checks judge recorded responses replayed through respx into a real Transport (tests/httpfixtures.py), as
tests/test_checks.py does, plus exchanges that ended in a transport error. The decoding tests hand the Transport
streamed (not pre-read) mocked responses, so its own decoders and caps do the work, as they do on a socket.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import httpx
import pytest

from conformance.checks import CHECKS, load_all
from conformance.checks.transport import TRANSPORT_CHECKS
from conformance.exchange import Exchange, RequestSpec, TransportError
from conformance.probes import Probe, basic_body, post_messages
from conformance.results import CheckResult
from conformance.runner import ConformanceRun
from conformance.target import Limits, Secret, Target
from conformance.transport import (
    ACCEPT_ENCODING,
    DECODE_PIECE,
    KEPT_AFTER_CUT_BYTES,
    Transport,
    _frame_ended,
    same_origin,
)
from tests.httpfixtures import Recorded, Replayer, fixture

load_all()

# Offline: any real connection attempt fails a test.
pytestmark = pytest.mark.usefixtures("no_network")

KEY = "sk-selftest-transport-0123456789"
TARGET = Target("http://127.0.0.1:8787", Secret(KEY), model="claude-sonnet-4-6")
PROBE = Probe(
    "transport",
    "transport",
    "a plain and a streamed request",
    (("json", post_messages(basic_body)), ("stream", post_messages(basic_body, stream=True))),
    TRANSPORT_CHECKS,
)


def judge(recorded: dict[str, Recorded]) -> dict[str, CheckResult]:
    """The probe's steps replayed from the recordings, judged by the transport checks."""
    with Replayer(TARGET) as replay:
        exchanges, _ = replay.send_steps(PROBE, recorded)
        run = ConformanceRun(TARGET, transport=replay.transport)
        return {r.check: r for r in run.judge(PROBE, exchanges)}


def conformant() -> dict[str, Recorded]:
    return {"json": fixture("messages_basic/json.txt"), "stream": fixture("messages_stream/stream.txt")}


def stream_cut() -> dict[str, Recorded]:
    return {**conformant(), "stream": fixture("messages_stream--stream-cut/stream.txt")}


def _redirect(location: str) -> Callable[[], dict[str, Recorded]]:
    def recorded() -> dict[str, Recorded]:
        moved = replace(fixture("messages_basic/json.txt"), status=307, reason="Temporary Redirect")
        return {**conformant(), "json": moved.with_header("location", location).with_body(b"")}

    return recorded


@dataclass(frozen=True)
class Case:
    """One transport check on one set of recordings, with the outcome expected and a fragment of its message."""

    check: str
    outcome: str
    recorded: Callable[[], dict[str, Recorded]] = field(compare=False)
    fragment: str = ""
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.check}-{'conformant' if self.outcome == 'passed' else 'deviant'}" + (
            f"-{self.label}" if self.label else ""
        )


CONFORMANT = [
    *(Case(check_id, "passed", conformant) for check_id in TRANSPORT_CHECKS),
    # A redirect on the gateway's own origin is not this finding (the status checks judge it).
    Case("no_cross_origin_redirect", "passed", _redirect("/v1/messages/elsewhere"), label="relative"),
    Case("no_cross_origin_redirect", "passed", _redirect("HTTP://127.0.0.1:8787/v1/x"), label="same-origin"),
    Case("response_within_bounds", "passed", _redirect("http://127.0.0.2:8787/v1/messages"), label="redirect"),
]
DEVIANT = [
    Case("response_within_bounds", "failed", stream_cut, "1 of 2 exchange(s) did not complete"),
    Case("response_within_bounds", "failed", stream_cut, "stream: reset: peer closed connection", label="kind"),
    Case(
        "no_cross_origin_redirect",
        "failed",
        _redirect("http://127.0.0.2:8787/v1/messages"),
        "json: redirect-cross-origin: HTTP 307 redirects to http://127.0.0.2:8787/v1/messages",
    ),
    Case("no_cross_origin_redirect", "failed", _redirect("http://127.0.0.1:9999/"), "not followed", label="port"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CONFORMANT + DEVIANT])
def test_check(case: Case) -> None:
    result = judge(case.recorded())[case.check]
    assert (result.outcome, case.fragment in result.message) == (case.outcome, True), result.message
    if case.outcome == "failed":
        assert result.evidence and (result.reproduce or "").startswith("curl "), result
        assert KEY not in result.message + (result.reproduce or "")


def test_every_transport_check_has_a_conformant_and_a_deviant_case_here() -> None:
    registered = {check_id for check_id, spec in CHECKS.items() if spec.area == "transport"}
    assert registered == set(TRANSPORT_CHECKS)
    conformant, deviant = {c.check for c in CONFORMANT}, {c.check for c in DEVIANT}
    assert registered <= conformant and registered <= deviant, (registered - conformant, registered - deviant)


def test_a_timeout_names_its_kind_and_bound_in_the_message() -> None:
    spec = RequestSpec("POST", "/v1/messages", json=basic_body(TARGET))
    timed_out = Exchange(
        spec,
        TARGET.url("/v1/messages"),
        (),
        error=TransportError(
            "timeout-total", "the exchange took longer than the total timeout (1.5 s) and was cut off"
        ),
    )
    ok = judge(conformant())
    probe = Probe("transport", "transport", "", (), TRANSPORT_CHECKS)
    with Replayer(TARGET) as replay:
        results = ConformanceRun(TARGET, transport=replay.transport).judge(probe, {"#0": timed_out})
    by_check = {r.check: r for r in results}
    assert by_check["response_within_bounds"].outcome == "failed"
    assert "#0: timeout-total: the exchange took longer than the total timeout (1.5 s)" in (
        by_check["response_within_bounds"].message
    )
    assert ok["response_within_bounds"].outcome == "passed"


def test_without_exchanges_the_checks_are_skipped() -> None:
    probe = Probe("transport", "transport", "", (), TRANSPORT_CHECKS)
    with Replayer(TARGET) as replay:
        results = ConformanceRun(TARGET, transport=replay.transport).judge(probe, {})
    assert {r.outcome for r in results} == {"skipped"}


# ---------------------------------------------------------------- the Transport's own decoding, offline


DEFAULTS = Limits()


class _Chunks(httpx.SyncByteStream):
    """A streamed body (so httpx does not read or decode it first)."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = chunks
        self.served = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.served += len(chunk)
            yield chunk


def send(body: _Chunks, encoding: str | None, *, limits: Limits = DEFAULTS, stream: bool = False) -> Exchange:
    """One request answered by a mocked, streamed response with that content-encoding."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {"content-type": "text/event-stream" if stream else "application/json"}
        if encoding is not None:
            headers["content-encoding"] = encoding
        return httpx.Response(200, headers=headers, stream=body)

    target = replace(TARGET, limits=limits)
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        exchange = Transport(target, client=client).send(RequestSpec("POST", "/v1/messages", json={}, stream=stream))
    assert seen[0].headers["accept-encoding"] == ACCEPT_ENCODING
    return exchange


def _gzip(data: bytes) -> bytes:
    deflate = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return deflate.compress(data) + deflate.flush()


def test_gzip_and_deflate_bodies_are_decoded_exactly() -> None:
    payload = b'{"type":"message","content":[]}' * 1000
    packed = _gzip(payload)
    assert send(_Chunks(packed[:10], packed[10:]), "gzip").body == payload
    assert send(_Chunks(_gzip(payload[:500]) + _gzip(payload[500:])), "gzip").body == payload  # two gzip members
    assert send(_Chunks(zlib.compress(payload)), "deflate").body == payload
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert send(_Chunks(raw.compress(payload) + raw.flush()), "deflate").body == payload
    assert send(_Chunks(payload), "identity").body == payload


def test_a_gzip_bomb_is_stopped_at_the_cap_a_piece_at_a_time() -> None:
    bomb = _gzip(bytes(256 * 1024 * 1024))  # 256 MiB of zeros: about 250 KB on the wire
    body = _Chunks(*[bomb[i : i + 65536] for i in range(0, len(bomb), 65536)])
    exchange = send(body, "gzip", limits=Limits(max_body_bytes=1 << 20))
    assert exchange.error is not None and exchange.error.kind == "too-large"
    assert exchange.body_truncated and len(exchange.body) == 1 << 20
    assert sum(n for _, n in exchange.chunks) <= (1 << 20)
    assert body.served <= 65536  # it stopped inside the first compressed read, which alone inflates to 64 MiB


def test_corrupt_or_unrequested_encodings_are_decoding_errors() -> None:
    broken = send(_Chunks(b"\x1f\x8b\x08\x00not gzip at all"), "gzip")
    assert broken.error is not None and broken.error.kind == "decoding-error" and "corrupt" in broken.error.message
    truncated = send(_Chunks(_gzip(b"x" * 5000)[:-12]), "gzip")
    assert truncated.error is not None and "ended before its end marker" in truncated.error.message
    zstd = send(_Chunks(b"\x28\xb5\x2f\xfd"), "zstd")
    assert (
        zstd.error is not None
        and zstd.error.kind == "decoding-error"
        and "'zstd' was not asked for" in (zstd.error.message)
    )


def test_a_stream_past_the_event_cap_is_cut_and_kept_small() -> None:
    ping = b'event: ping\ndata: {"type":"ping"}\n\n'
    exchange = send(_Chunks(*[ping * 100] * 50), None, limits=Limits(max_events=250), stream=True)
    assert exchange.error is not None and exchange.error.kind == "too-many-events"
    assert exchange.stream is not None and 250 < exchange.stream.event_count <= 300
    assert "too-many-events" in exchange.stream.codes() and "stream-truncated" in exchange.stream.codes()


def test_a_cut_body_keeps_only_its_start() -> None:
    exchange = send(_Chunks(*[b"x" * 65536] * 40), None, limits=Limits(max_body_bytes=2 << 20))
    assert exchange.error is not None and exchange.error.kind == "too-large"
    assert len(exchange.body) == KEPT_AFTER_CUT_BYTES < 2 << 20 and exchange.body_truncated


@pytest.mark.parametrize(
    ("tail", "piece", "ended"),
    [
        (b"", b"data: {}\n\n", True),
        (b"", b"data: {}\r\n\r\n", True),
        (b"", b"data: {}\r\r", True),
        (b"{}\n", b"\nevent: x", True),  # the blank line straddles two pieces
        (b"\r\n", b"\r\n", True),
        (b"", b"data: {}\r\n", False),
        (b"", b"x" * DECODE_PIECE, False),
    ],
)
def test_an_sse_frame_end_is_seen_whatever_the_line_endings(tail: bytes, piece: bytes, ended: bool) -> None:
    assert _frame_ended(tail[-2:], piece) is ended


def test_same_origin_fills_in_default_ports_and_ignores_case() -> None:
    assert same_origin("http://Example.com/a", "http://example.com:80")
    assert same_origin("https://example.com:443/x", "https://EXAMPLE.com")
    assert not same_origin("http://example.com", "https://example.com")
    assert not same_origin("http://127.0.0.1:8787", "http://127.0.0.2:8787")
    assert not same_origin("http://127.0.0.1:8787", "http://127.0.0.1:8788")
