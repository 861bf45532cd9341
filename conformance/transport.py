"""The only place that does I/O: sends a RequestSpec to a Target and records an Exchange, within bounds.

A gateway under test may be hostile or broken, so every exchange is bounded and every way it can go wrong
ends as an ``Exchange.error`` with a stable kind (``KINDS``), never as an exception:

- time: ``Timeouts.connect``; ``first_byte`` from the request's start to the end of the response headers;
  ``idle``, the longest silence between SSE frames of a stream (between bytes of any other body), so a drip
  that never completes a frame is cut at ``idle``; and ``total`` for the whole exchange. Each socket read and
  write gets at most the time left to whichever of these deadlines binds first (a network backend wrapped
  around httpcore's), so no drip can stretch an exchange past its total.
- size: the body is decoded here from the raw bytes (gzip, deflate, br), at most ``DECODE_PIECE`` bytes at a
  time, so a gzip bomb expands no further than the cap plus one piece; ``Limits.max_body_bytes`` caps the
  decoded body (and the raw one), ``Limits.max_events`` the events of a stream.
- redirects are never followed; a 3xx whose Location is on another origin is recorded as a finding, since a
  client that followed it would send the key there.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType, ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from conformance import __version__
from conformance.exchange import CREDENTIAL_HEADERS, WRONG_KEY, Exchange, RequestSpec, Timings, TransportError
from conformance.target import MASK, Limits, Target, Timeouts

if TYPE_CHECKING:
    from conformance.stream import StreamReader, StreamResult

__all__ = [
    "ACCEPT_ENCODING",
    "DECODE_PIECE",
    "KINDS",
    "USER_AGENT",
    "Transport",
    "bounded_client",
    "same_origin",
    "sdk_http_client",
]

USER_AGENT = f"gateway-conformance/{__version__}"
# Decoded bytes produced per step of a content decoder: the most a compressed body can expand beyond the cap.
DECODE_PIECE = 64 * 1024
# What is kept of an exchange that was cut off (the rest was read only to be counted, then dropped), so that a
# run against a gateway that sends 200 MB to every request holds one capped body at a time, not one per request.
KEPT_AFTER_CUT_BYTES = 1 << 20
KEPT_AFTER_CUT_EVENTS = 1024
_WRITE_SLICE = 64 * 1024

# Every TransportError kind, with what it means: stable strings that checks, reports and baselines key on.
KINDS: Mapping[str, str] = MappingProxyType(
    {
        "timeout-connect": "no TCP (or TLS) connection within the connect timeout",
        "timeout-first-byte": "the status line and headers did not arrive within the first-byte timeout",
        "timeout-idle": "nothing arrived for the idle timeout (no SSE frame completed, or no byte of another body)",
        "timeout-total": "the exchange took longer than the total timeout and was cut off",
        "timeout-write": "the gateway did not take the request body within the timeout",
        "timeout": "a timeout the harness could not attribute to one bound (a replayed one)",
        "too-large": "the body exceeded the maximum response size and was cut off",
        "too-many-events": "the stream exceeded the maximum number of SSE events and was cut off",
        "reset": "the connection was reset or closed before the response was complete",
        "truncated-chunked": "the connection closed in the middle of a chunked body (no terminating chunk)",
        "protocol-error": "the gateway's bytes are not valid HTTP/1.1 (status line, headers or chunk framing)",
        "decoding-error": "the body's content-encoding is corrupt, or one the harness did not ask for",
        "redirect-cross-origin": "a redirect to another origin: not followed, so the key was not sent there",
        "connect-error": "the connection was refused or the host could not be resolved",
        "usage-error": "the URL cannot be requested (scheme, syntax)",
        "http-error": "another failure of the HTTP client",
    }
)

_current: contextvars.ContextVar[_Deadlines | None] = contextvars.ContextVar("conformance_deadlines", default=None)


def _is_event_stream(response: httpx.Response) -> bool:
    media_type: str = response.headers.get("content-type", "")
    return media_type.split(";", 1)[0].strip().lower() == "text/event-stream"


def same_origin(url: str, other: str) -> bool:
    """Whether two absolute URLs share scheme, host and port (default ports filled in)."""
    a, b = urlsplit(url), urlsplit(other)

    def key(parts: Any) -> tuple[str, str, int | None]:
        scheme = (parts.scheme or "").lower()
        try:
            port = parts.port
        except ValueError:
            port = -1
        return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)

    return key(a) == key(b)


class _Deadlines:
    """The deadlines of the exchange in progress (perf_counter seconds), consulted by every socket operation."""

    __slots__ = ("first_byte_at", "headers_done", "idle", "progress_at", "reason", "timeouts", "total_at")

    def __init__(self, timeouts: Timeouts, t0: float) -> None:
        self.timeouts = timeouts
        self.first_byte_at = t0 + timeouts.first_byte
        self.total_at = t0 + timeouts.total
        self.idle = timeouts.idle
        self.headers_done = False
        self.progress_at = t0
        self.reason = ""

    def limit(self, operation: str, requested: float | None, errors: ModuleType = httpcore) -> float:
        """Seconds the next socket operation may take; errors' timeout exception when a deadline has passed."""
        now = time.perf_counter()
        own = requested if requested is not None else float("inf")
        # The operation's own timeout (connect, write), then the deadlines: the smallest one names the failure.
        best, reason = own, "timeout-connect" if operation == "connect" else "timeout-write"
        if operation == "read":
            best, reason = float("inf"), ""
        if self.headers_done:
            idle_left = self.progress_at + self.idle - now
            if idle_left < best:
                best, reason = idle_left, "timeout-idle"
        else:
            first_left = self.first_byte_at - now
            if first_left < best:
                best, reason = first_left, "timeout-first-byte"
        total_left = self.total_at - now
        if total_left <= best:
            best, reason = total_left, "timeout-total"
        self.reason = reason
        if best <= 0:
            # A zero socket timeout would make the socket non-blocking (an OSError, not a timeout).
            name = {"connect": "ConnectTimeout", "write": "WriteTimeout"}.get(operation, "ReadTimeout")
            raise getattr(errors, name)(f"{reason}: deadline passed")
        return best

    def describe(self, kind: str) -> str:
        """The message of a timeout of this kind: which bound, in seconds."""
        t = self.timeouts
        return {
            "timeout": f"timed out (connect {t.connect:g} s, first byte {t.first_byte:g} s, idle {t.idle:g} s)",
            "timeout-connect": f"no connection within the connect timeout ({t.connect:g} s)",
            "timeout-first-byte": f"no status line and headers within the first-byte timeout ({t.first_byte:g} s)",
            "timeout-idle": f"nothing arrived for the idle timeout ({t.idle:g} s) in the middle of the body",
            "timeout-total": f"the exchange took longer than the total timeout ({t.total:g} s) and was cut off",
            "timeout-write": f"the request body was not taken within {t.idle:g} s",
        }.get(kind, f"{kind}: timed out")


class _BoundedStream(httpcore.NetworkStream):
    """A connection whose every read and write is given at most the time left to the exchange's deadlines.

    errors is the httpcore module whose exceptions the pool expects (httpcore, or the SDKs' httpcore2).
    """

    def __init__(self, inner: Any, errors: ModuleType = httpcore) -> None:
        self._inner = inner
        self._errors = errors

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadlines = _current.get()
        if deadlines is not None:
            timeout = deadlines.limit("read", timeout, self._errors)
        data: bytes = self._inner.read(max_bytes, timeout)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        deadlines = _current.get()
        if deadlines is None:
            self._inner.write(buffer, timeout)
            return
        # httpcore gives each send() the whole timeout; slicing re-reads the deadlines, so a gateway that takes the
        # body a trickle at a time cannot hold the exchange past its bounds either.
        view = memoryview(buffer)
        for start in range(0, len(view), _WRITE_SLICE):
            self._inner.write(
                bytes(view[start : start + _WRITE_SLICE]), deadlines.limit("write", timeout, self._errors)
            )

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        deadlines = _current.get()
        if deadlines is not None:
            timeout = deadlines.limit("connect", timeout, self._errors)
        return _BoundedStream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._errors)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, with connections that honour the current exchange's deadlines."""

    def __init__(self, inner: Any, errors: ModuleType = httpcore) -> None:
        self._inner = inner
        self._errors = errors

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        deadlines = _current.get()
        if deadlines is not None:
            timeout = deadlines.limit("connect", timeout, self._errors)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _BoundedStream(stream, self._errors)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _BoundedStream(self._inner.connect_unix_socket(path, timeout, socket_options), self._errors)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bounded_client(timeouts: Timeouts) -> httpx.Client:
    """An httpx client whose sockets honour each exchange's deadlines (see Transport.send)."""
    transport = httpx.HTTPTransport(trust_env=False)
    # httpx has no public hook for the network backend: wrap the pool's. tests/test_hostile.py fails if a new
    # httpx moves it (a drip would then run for total + idle again).
    pool = getattr(transport, "_pool", None)
    if isinstance(pool, httpcore.ConnectionPool):
        pool._network_backend = _BoundedBackend(pool._network_backend)
    return httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(
            connect=timeouts.connect, read=timeouts.first_byte, write=timeouts.idle, pool=timeouts.connect
        ),
        follow_redirects=False,  # a redirect must never carry the key to another origin
        trust_env=False,  # environment proxies would send loopback traffic elsewhere
    )


def is_bounded(client: httpx.Client) -> bool:
    """Whether a client's connections honour the exchange deadlines (True for the clients bounded_client makes)."""
    transport = getattr(client, "_transport", None)
    pool = getattr(transport, "_pool", None)
    return isinstance(getattr(pool, "_network_backend", None), _BoundedBackend)


# ------------------------------------------------------------------ content decoding, bounded


class _Decoder(Protocol):
    def decode(self, data: bytes) -> Iterator[bytes]: ...

    def finish(self) -> Iterator[bytes]: ...


class _DecodingError(Exception):
    """The body cannot be decoded: a corrupt stream, or an encoding the harness did not ask for."""


class _ZlibDecoder:
    """gzip or deflate, DECODE_PIECE bytes of output at a time; several gzip members are decoded in turn."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._gzip = encoding != "deflate"
        self._d = zlib.decompressobj(zlib.MAX_WBITS | 16 if self._gzip else zlib.MAX_WBITS)
        self._started = False
        self._ended = False  # the stream ended and what followed is not another gzip member: ignored

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            yield from self._decode(data)
        except zlib.error as exc:
            raise _DecodingError(f"the {self.encoding} body is corrupt: {exc}") from exc

    def _decode(self, data: bytes) -> Iterator[bytes]:
        if not self._started and data:
            self._started = True
            if not self._gzip and data[0] & 0x0F != 8:
                # "deflate" is meant to be zlib-wrapped, but servers send raw deflate too; clients accept both.
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
        while data and not self._ended:
            if self._d.eof:
                # data follows the end of the stream: another gzip member, or bytes every client ignores.
                if not (self._gzip and data[:2] == b"\x1f\x8b"):
                    self._ended = True
                    return
                self._d = zlib.decompressobj(zlib.MAX_WBITS | 16)
            out = self._d.decompress(data, DECODE_PIECE)
            if out:
                yield out
            data = self._d.unconsumed_tail
            while len(out) == DECODE_PIECE and not data and not self._d.eof:
                # Output was capped with no input left: what is still inside comes out a piece at a time.
                out = self._d.decompress(b"", DECODE_PIECE)
                if out:
                    yield out
            if self._d.eof:
                data = self._d.unused_data

    def finish(self) -> Iterator[bytes]:
        if self._started and not self._ended and not self._d.eof:
            raise _DecodingError(f"the {self.encoding} body ended before its end marker (a truncated stream)")
        return iter(())


class _BrotliDecoder:
    """br, DECODE_PIECE bytes of output at a time (brotli >= 1.1's output_buffer_limit)."""

    def __init__(self) -> None:
        self._brotli: Any = importlib.import_module("brotli")
        self._d = self._brotli.Decompressor()

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            out = self._d.process(data, output_buffer_limit=DECODE_PIECE)
            if out:
                yield out
            while not self._d.can_accept_more_data():
                out = self._d.process(b"", output_buffer_limit=DECODE_PIECE)
                if not out:
                    break
                yield out
        except self._brotli.error as exc:
            raise _DecodingError(f"the br body is corrupt: {exc}") from exc

    def finish(self) -> Iterator[bytes]:
        if not self._d.is_finished():
            raise _DecodingError("the br body ended before its end marker (a truncated stream)")
        return iter(())


def _bounded_brotli() -> bool:
    try:
        brotli: Any = importlib.import_module("brotli")
    except ImportError:
        return False
    return hasattr(brotli.Decompressor(), "can_accept_more_data")


# Only what can be decoded a piece at a time is asked for: a gateway that sends anything else is reported.
ACCEPT_ENCODING = "gzip, deflate, br" if _bounded_brotli() else "gzip, deflate"


def _decoders(content_encoding: str) -> list[_Decoder]:
    """The decoders for a Content-Encoding header value, in the order they apply (the reverse of the listing)."""
    decoders: list[_Decoder] = []
    for token in reversed([t.strip().lower() for t in content_encoding.split(",") if t.strip()]):
        if token == "identity":
            continue
        if token in ("gzip", "x-gzip", "deflate"):
            decoders.append(_ZlibDecoder("deflate" if token == "deflate" else "gzip"))
        elif token == "br" and "br" in ACCEPT_ENCODING:
            decoders.append(_BrotliDecoder())
        else:
            raise _DecodingError(f"content-encoding {token!r} was not asked for (accept-encoding: {ACCEPT_ENCODING})")
    return decoders


def _through(decoders: list[_Decoder], data: bytes) -> Iterator[bytes]:
    """data through every decoder in turn, lazily, so no stage holds more than one piece."""
    pieces: Iterable[bytes] = (data,)
    for decoder in decoders:
        pieces = _chain(decoder, pieces)
    return iter(pieces)


def _chain(decoder: _Decoder, pieces: Iterable[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield from decoder.decode(piece)


def _finish(decoders: list[_Decoder]) -> Iterator[bytes]:
    """What is left in the decoders at the end of the body (each stage's rest through the later stages)."""
    for i, decoder in enumerate(decoders):
        for rest in decoder.finish():
            yield from _through(decoders[i + 1 :], rest)


# ------------------------------------------------------------------ the transport


@dataclass(slots=True)
class _Body:
    """What a response has brought so far; the loop in Transport.send fills it."""

    data: bytearray
    chunks: list[tuple[float, int]]
    raw_bytes: int = 0
    truncated: bool = False
    ttfb: float | None = None


def _events_seen(reader: StreamReader) -> int:
    # StreamReader counts every event (kept or not) but has no public accessor yet.
    count: int = reader.events_seen
    return count


def _frame_ended(tail: bytes, piece: bytes) -> bool:
    """Whether an SSE frame ended in piece: a blank line, i.e. two line ends in a row whatever their style."""
    if b"\n\n" in piece or b"\r\r" in piece or b"\n\r" in piece:
        return True
    joint = tail + piece[:2]
    return b"\n\n" in joint or b"\r\r" in joint or b"\n\r" in joint


class Transport:
    """Sends requests to one target; network failures become Exchange.error, never exceptions."""

    def __init__(
        self, target: Target, *, client: httpx.Client | None = None, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.target = target
        # Injectable so a replay can hand out the recorded arrival times instead of the wall clock.
        self.clock = clock
        self._owns_client = client is None
        self._client = client or bounded_client(target.timeouts)

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        if self._owns_client:
            self._client.close()

    def headers_for(self, spec: RequestSpec, *, placeholder: bool = False) -> dict[str, str]:
        """The headers a request carries: defaults for its flavour, credentials, then the spec's own."""
        headers = {"user-agent": USER_AGENT, "accept": "application/json"}
        if spec.json is not None or spec.content is not None:
            headers["content-type"] = "application/json"
        if spec.flavour == "anthropic":
            headers["anthropic-version"] = self.target.anthropic_version
        headers.update(self._auth_headers(spec, placeholder=placeholder))
        for name, value in spec.headers:
            headers[name.lower()] = value
        for name in spec.drop_headers:
            headers.pop(name.lower(), None)
        return headers

    def _auth_headers(self, spec: RequestSpec, *, placeholder: bool) -> dict[str, str]:
        if spec.auth == "none":
            return {}
        if spec.auth == "wrong-key":
            scheme = self.target.auth
            return {"authorization": f"Bearer {WRONG_KEY}"} if scheme == "bearer" else {"x-api-key": WRONG_KEY}
        if spec.auth in ("x-api-key", "bearer"):
            return replace(self.target, auth=spec.auth).auth_headers(placeholder=placeholder)
        return self.target.auth_headers(placeholder=placeholder)

    def _shown_headers(self, spec: RequestSpec) -> tuple[tuple[str, str], ...]:
        shown = []
        for name, value in self.headers_for(spec, placeholder=True).items():
            if name in CREDENTIAL_HEADERS and "$GATEWAY_API_KEY" not in value and WRONG_KEY not in value:
                value = MASK
            shown.append((name, self.target.mask(value)))
        return tuple(shown)

    def send(self, spec: RequestSpec) -> Exchange:
        """Send one request and record everything the gateway did, within the target's bounds."""
        from conformance.stream import StreamReader

        url = self.target.url(spec.path)
        shown = self._shown_headers(spec)
        timeouts = self.target.timeouts
        t0 = self.clock()
        deadlines = _Deadlines(timeouts, time.perf_counter())
        token = _current.set(deadlines)
        status: int | None = None
        headers: tuple[tuple[str, str], ...] = ()
        body = _Body(bytearray(), [])
        reader: StreamReader | None = None
        error: TransportError | None = None
        try:
            headers_out = self.headers_for(spec)
            headers_out.setdefault("accept-encoding", ACCEPT_ENCODING)
            request = self._client.build_request(spec.method, url, headers=headers_out, content=spec.body_bytes())
            response = self._client.send(request, stream=True)
            try:
                deadlines.headers_done = True
                deadlines.progress_at = time.perf_counter()
                status = response.status_code
                headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.headers.raw)
                if _is_event_stream(response) or (spec.stream and 200 <= status < 300):
                    reader = StreamReader(
                        spec.flavour,
                        t_start=t0,
                        max_events=self.target.limits.max_events,
                        expect_usage=_asks_usage(spec),
                    )
                error = self._read(response, t0, deadlines, body, reader)
                if error is None:
                    error = self._redirect(response, url)
            finally:
                response.close()
        except httpx.TimeoutException as exc:
            kind = _replayed_kind(exc) or deadlines.reason or _timeout_kind(exc, status)
            error = TransportError(kind, deadlines.describe(kind))
        except httpx.HTTPError as exc:
            kind = _replayed_kind(exc) or _error_kind(exc, status)
            error = TransportError(kind, self.target.mask(str(exc)) or type(exc).__name__)
        except Exception as exc:  # a hostile answer must never escape as a traceback
            error = TransportError("http-error", self.target.mask(f"{type(exc).__name__}: {exc}"))
        finally:
            _current.reset(token)
        t_end = self.clock()
        stream = reader.close(t_end, cause=error.kind if error is not None else "eof") if reader is not None else None
        data = body.data
        if error is not None:
            # Cut off: keep enough to show, and let the rest go now rather than at the end of the run.
            if len(data) > KEPT_AFTER_CUT_BYTES:
                del data[KEPT_AFTER_CUT_BYTES:]
                body.truncated = True
            stream = _trim(stream)
        return Exchange(
            request=spec,
            url=url,
            request_headers=shown,
            status=status,
            headers=headers,
            body=bytes(data),
            body_truncated=body.truncated,
            chunks=tuple(body.chunks),
            stream=stream,
            error=error,
            timings=Timings(ttfb=body.ttfb, total=t_end - t0),
        )

    def _read(
        self,
        response: httpx.Response,
        t0: float,
        deadlines: _Deadlines,
        body: _Body,
        reader: StreamReader | None,
    ) -> TransportError | None:
        """Read the body as it arrives, decoded a piece at a time, until its end or a bound; the error, if any."""
        limits = self.target.limits
        timeouts = self.target.timeouts
        cap = limits.max_body_bytes
        raws: Iterable[bytes]
        if response.is_stream_consumed:
            # A mocked response (respx, a replay) arrives already read, and already decoded by httpx.
            raws, decoders = [response.content], []
        else:
            # No chunk size: a sized iterator holds bytes back until it fills, which would both hide a cut
            # stream's last events and flatten every arrival time (TTFT, ITL) into the total.
            raws = response.iter_raw()
            try:
                decoders = _decoders(response.headers.get("content-encoding", ""))
            except _DecodingError as exc:
                return TransportError("decoding-error", str(exc))
        tail = b""
        deadline = t0 + timeouts.total
        try:
            for raw in raws:
                now = self.clock()
                if body.ttfb is None:
                    body.ttfb = now - t0
                body.raw_bytes += len(raw)
                if decoders and body.raw_bytes > cap:
                    body.truncated = True
                    return TransportError("too-large", f"the response exceeded {cap} bytes on the wire and was cut off")
                decoded = 0
                pieces = _through(decoders, raw) if decoders else (raw,)
                for piece in pieces:
                    if decoders and time.perf_counter() > deadlines.total_at:
                        # One compressed read can inflate to many pieces: the total holds between them too.
                        body.chunks.append((now - t0, decoded))
                        return TransportError("timeout-total", deadlines.describe("timeout-total"))
                    room = cap - len(body.data)
                    if len(piece) > room:
                        piece = piece[:room]
                        body.truncated = True
                    decoded += len(piece)
                    body.data += piece
                    if reader is not None:
                        reader.feed(piece, now)
                        if _events_seen(reader) > limits.max_events:
                            body.chunks.append((now - t0, decoded))
                            return TransportError(
                                "too-many-events", f"the stream exceeded {limits.max_events} events and was cut off"
                            )
                        if _frame_ended(tail, piece):
                            deadlines.progress_at = time.perf_counter()
                        tail = (tail + piece)[-2:]
                    if body.truncated:
                        body.chunks.append((now - t0, decoded))
                        return TransportError("too-large", f"the response exceeded {cap} bytes and was cut off")
                if decoded:
                    body.chunks.append((now - t0, decoded))
                if reader is None:
                    deadlines.progress_at = time.perf_counter()
                if now > deadline:
                    return TransportError("timeout-total", deadlines.describe("timeout-total"))
            for piece in _finish(decoders):
                if len(piece) > cap - len(body.data):
                    body.truncated = True
                    return TransportError("too-large", f"the response exceeded {cap} bytes and was cut off")
                body.data += piece
                if reader is not None:
                    reader.feed(piece, self.clock())
        except _DecodingError as exc:
            return TransportError("decoding-error", str(exc))
        return None

    def _redirect(self, response: httpx.Response, url: str) -> TransportError | None:
        """A finding for a redirect to another origin (never followed), else None."""
        location = response.headers.get("location")
        if not 300 <= response.status_code < 400 or not location:
            return None
        target = urljoin(url, location)
        if same_origin(target, self.target.origin):
            return None
        return TransportError(
            "redirect-cross-origin",
            self.target.mask(
                f"HTTP {response.status_code} redirects to {target}, another origin than {self.target.origin}: "
                "not followed (a client that follows it sends the key there)"
            ),
        )


def _trim(stream: StreamResult | None) -> StreamResult | None:
    """A cut stream's result with its first events only (KEPT_AFTER_CUT_*); its findings and counts all stay."""
    if stream is None:
        return None
    kept = size = 0
    for event in stream.events:
        size += len(event.raw)
        if kept >= KEPT_AFTER_CUT_EVENTS or size > KEPT_AFTER_CUT_BYTES:
            break
        kept += 1
    message = _trim_message(stream.message)
    if kept == len(stream.events) and message is stream.message:
        return stream
    return replace(stream, events=stream.events[:kept], payloads=stream.payloads[:kept], _message=message)


def _trim_message(message: dict[str, Any]) -> dict[str, Any]:
    """The accumulated message with no block string longer than KEPT_AFTER_CUT_BYTES (the same dict if none is)."""
    content = message.get("content")
    if not isinstance(content, list) or not any(
        isinstance(block, dict) and any(isinstance(v, str) and len(v) > KEPT_AFTER_CUT_BYTES for v in block.values())
        for block in content
    ):
        return message
    blocks = [
        {k: v[:KEPT_AFTER_CUT_BYTES] if isinstance(v, str) else v for k, v in block.items()}
        if isinstance(block, dict)
        else block
        for block in content
    ]
    return {**message, "content": blocks}


def _asks_usage(spec: RequestSpec) -> bool:
    """Whether an OpenAI request asked for the final usage chunk (stream_options.include_usage)."""
    body = spec.json if isinstance(spec.json, dict) else {}
    options = body.get("stream_options")
    return spec.flavour == "openai" and isinstance(options, dict) and options.get("include_usage") is True


def _replayed_kind(exc: Exception) -> str | None:
    """The kind a replayed exception carries (conformance.replay sets `.kind` to the recorded one), if any."""
    kind = getattr(exc, "kind", None)
    return kind if isinstance(kind, str) and kind in KINDS else None


def _timeout_kind(exc: httpx.TimeoutException, status: int | None) -> str:
    """The kind of a timeout the deadlines did not set (an injected client's)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "timeout-connect"
    if isinstance(exc, httpx.WriteTimeout):
        return "timeout-write"
    return "timeout-first-byte" if status is None else "timeout-idle"


def _error_kind(exc: httpx.HTTPError, status: int | None) -> str:
    """A stable name for a transport failure."""
    if isinstance(exc, httpx.ConnectError):
        return "connect-error"
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc)
        if "incomplete chunked read" in text:
            return "truncated-chunked"
        if "peer closed connection" in text or "Server disconnected" in text:
            return "reset"
        return "protocol-error"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return "reset"
    if isinstance(exc, httpx.DecodingError):
        return "decoding-error"
    if isinstance(exc, httpx.TooManyRedirects | httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "usage-error"
    return "http-error"


# ------------------------------------------------------------------ the official SDKs' HTTP client, bounded


def sdk_http_client(target: Target) -> Any:
    """An httpx2 client for the official SDKs (conformance.sdk) with the bounds a Transport keeps.

    The SDKs' own client follows redirects (to any origin, with x-api-key), reads a whole body into memory and
    lets httpx2 inflate it; this one never follows a redirect, caps and decodes bodies a piece at a time, and holds
    each request to the target's timeouts. A bound that is hit surfaces as an httpx2 error, which the SDK raises as
    APIConnectionError or APITimeoutError: an SDK step that fails, not a hung or swollen harness.
    """
    import httpcore2
    import httpx2

    inner = httpx2.HTTPTransport(trust_env=False)
    pool = getattr(inner, "_pool", None)
    if isinstance(pool, httpcore2.ConnectionPool):
        pool._network_backend = cast("httpcore2.NetworkBackend", _BoundedBackend(pool._network_backend, httpcore2))
    transport_type, _ = _sdk_types()
    return httpx2.Client(
        transport=transport_type(inner, target),
        timeout=httpx2.Timeout(target.timeouts.total, connect=target.timeouts.connect),
        follow_redirects=False,
        trust_env=False,
    )


@functools.cache
def _sdk_types() -> tuple[Any, Any]:
    """The httpx2 transport and byte stream classes (made on first use: httpx2 is imported only for the SDKs)."""
    import httpx2

    class SdkTransport(httpx2.BaseTransport):
        """Each request under fresh deadlines, each body decoded and capped here."""

        def __init__(self, inner: httpx2.HTTPTransport, target: Target) -> None:
            self._inner = inner
            self._target = target

        def __enter__(self) -> SdkTransport:
            self._inner.__enter__()
            return self

        def __exit__(
            self,
            exc_type: type[BaseException] | None = None,
            exc: BaseException | None = None,
            tb: TracebackType | None = None,
        ) -> None:
            self._inner.__exit__(exc_type, exc, tb)

        def close(self) -> None:
            self._inner.close()

        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            deadlines = _Deadlines(self._target.timeouts, time.perf_counter())
            request.headers["accept-encoding"] = ACCEPT_ENCODING
            token = _current.set(deadlines)
            try:
                response = self._inner.handle_request(request)
            finally:
                _current.reset(token)
            deadlines.headers_done = True
            deadlines.progress_at = time.perf_counter()
            try:
                decoders = _decoders(response.headers.get("content-encoding", ""))
            except _DecodingError as exc:
                response.close()
                raise httpx2.DecodingError(str(exc), request=request) from None
            headers = [
                (k, v)
                for k, v in response.headers.multi_items()
                if not decoders or k.lower() not in ("content-encoding", "content-length")
            ]
            media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            assert isinstance(response.stream, httpx2.SyncByteStream)
            body = SdkBody(response.stream, deadlines, decoders, self._target.limits, media == "text/event-stream")
            return httpx2.Response(response.status_code, headers=headers, stream=body, extensions=response.extensions)

    class SdkBody(httpx2.SyncByteStream):
        """A response body, decoded, capped, and read under its request's deadlines."""

        def __init__(
            self,
            inner: httpx2.SyncByteStream,
            deadlines: _Deadlines,
            decoders: list[_Decoder],
            limits: Limits,
            sse: bool,
        ) -> None:
            self._inner = inner
            self._deadlines = deadlines
            self._decoders = decoders
            self._limits = limits
            self._sse = sse

        def __iter__(self) -> Iterator[bytes]:
            deadlines, limits = self._deadlines, self._limits
            raws = iter(self._inner)
            size = frames = 0
            tail = b""
            try:
                while True:
                    token = _current.set(deadlines)
                    try:
                        raw = next(raws, None)
                    finally:
                        _current.reset(token)
                    pieces = _finish(self._decoders) if raw is None else _through(self._decoders, raw)
                    for piece in pieces:
                        size += len(piece)
                        if size > limits.max_body_bytes:
                            raise httpx2.ReadError(f"too-large: the response exceeded {limits.max_body_bytes} bytes")
                        if self._sse:
                            # A frame count good enough for a bound (the SDK parses the stream itself).
                            frames += piece.count(b"\n\n") + piece.count(b"\r\n\r\n")
                            if frames > limits.max_events:
                                raise httpx2.ReadError(f"too-many-events: more than {limits.max_events} events")
                            if _frame_ended(tail, piece):
                                deadlines.progress_at = time.perf_counter()
                            tail = (tail + piece)[-2:]
                        else:
                            deadlines.progress_at = time.perf_counter()
                        if time.perf_counter() > deadlines.total_at:
                            raise httpx2.ReadTimeout(deadlines.describe("timeout-total"))
                        yield piece
                    if raw is None:
                        return
            except _DecodingError as exc:
                raise httpx2.DecodingError(str(exc)) from None

        def close(self) -> None:
            self._inner.close()

    return SdkTransport, SdkBody
