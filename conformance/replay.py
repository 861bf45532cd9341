"""Replay: a cassette answers the run's requests offline, through respx, with the recorded framing and timing.

The Transport gets an httpx client whose transport is a respx router (no socket is ever opened) and a clock
that hands out the recorded arrival times; the official SDKs' httpx2 transport is routed through a second
respx router while a replay is active. Each request is answered by the first unused interaction with the same
method, path, canonical body digest and auth headers, so repeats come back in recorded order. A request the
cassette has no recording for fails at once with a transport error that says so (it is also listed in
`Replayer.misses`): a replay never waits for anything.
"""

from __future__ import annotations

import functools
import importlib.util
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import respx

from conformance.cassette import (
    DERIVED_KINDS,
    KEY_STAND_IN,
    KIND_EXCEPTIONS,
    Cassette,
    Interaction,
    RecordedError,
    RecordedRequest,
    Via,
    read_cassette,
    request_from_wire,
)
from conformance.exchange import WRONG_KEY
from conformance.target import KEY_PLACEHOLDER, Target
from conformance.transport import Transport

if TYPE_CHECKING:
    from pathlib import Path

    import httpx2

__all__ = [
    "CassetteSource",
    "ReplayMiss",
    "Replayer",
    "RequestKey",
    "Source",
    "VirtualClock",
    "auth_fingerprint",
    "httpx2_through",
    "open_replay",
    "request_key",
    "response_for",
]

RequestKey = tuple[str, str, str, tuple[str, ...]]


class ReplayMiss(httpx.TransportError):
    """A request the cassette has no recording for (the exchange fails with this message, at once)."""


class VirtualClock:
    """A clock that only moves when the replay says so: to each chunk's recorded arrival, and over sleeps."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move forward (a sleep during a replay takes no wall-clock time)."""
        self.now += max(float(seconds), 0.0)

    def at_least(self, t: float) -> None:
        """Move forward to t, never back."""
        self.now = max(self.now, t)


def auth_fingerprint(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """What a request's headers say about how it authenticates and which API version and betas it asks for."""
    marks = []
    for name, value in headers:
        lname = name.lower()
        if lname in ("x-api-key", "authorization"):
            if KEY_PLACEHOLDER in value or KEY_STAND_IN in value:
                kind = "key"
            elif WRONG_KEY in value:
                kind = "wrong-key"
            else:
                kind = "other"
            marks.append(f"{lname}={kind}")
        elif lname == "anthropic-version":
            marks.append(lname)
        elif lname == "anthropic-beta":
            marks.append(f"{lname}={value}")
    return tuple(sorted(marks))


def request_key(request: RecordedRequest) -> RequestKey:
    """What a replay matches on: method, path (query included), canonical body digest, auth fingerprint."""
    return (request.method.upper(), request.path, request.digest, auth_fingerprint(request.headers))


class Source(Protocol):
    """Where a replay gets the answer to a request: a cassette, or (to build one) a scripted gateway."""

    def take(self, request: RecordedRequest, via: Via) -> Interaction | None:
        """The interaction that answers this request, or None when there is none."""
        ...

    def explain(self, request: RecordedRequest) -> str:
        """Why there is no answer, for the error message."""
        ...


class CassetteSource:
    """Answers from a cassette's interactions: same key, first unused first."""

    def __init__(self, interactions: Iterable[Interaction]) -> None:
        self._all = tuple(interactions)
        self._queues: dict[RequestKey, deque[Interaction]] = defaultdict(deque)
        for item in self._all:
            self._queues[request_key(item.request)].append(item)

    def take(self, request: RecordedRequest, via: Via) -> Interaction | None:
        """The first unused interaction recorded for the same request."""
        queue = self._queues.get(request_key(request))
        return queue.popleft() if queue else None

    def explain(self, request: RecordedRequest) -> str:
        """How the cassette's recordings of the same method and path differ from this request."""
        key = request_key(request)
        same_path = [i for i in self._all if (i.request.method, i.request.path) == (request.method, request.path)]
        if not same_path:
            return f"the cassette has no {request.method} {request.path} at all"
        if self._all and any(request_key(i.request) == key for i in self._all):
            return "every recording of it was already used (the replay sends it more often than the run did)"
        bodies = {i.request.digest for i in same_path}
        prints = {auth_fingerprint(i.request.headers) for i in same_path}
        why = []
        if request.digest not in bodies:
            why.append("another body (another model, --max-examples, SDK version or probe?)")
        if key[3] not in prints:
            why.append(f"other auth headers ({', '.join(key[3]) or 'none'})")
        return f"the cassette has {len(same_path)} {request.method} {request.path} with " + (
            " and ".join(why) or "other requests"
        )

    def unused(self) -> list[Interaction]:
        """Recordings no request asked for, in recorded order."""
        left = {id(i) for queue in self._queues.values() for i in queue}
        return [i for i in self._all if id(i) in left]


class _ReplayStream(httpx.SyncByteStream):
    """A recorded body, chunk by chunk, setting the clock to each chunk's arrival, then the recorded ending."""

    def __init__(
        self,
        pieces: Sequence[tuple[float, bytes]],
        clock: VirtualClock,
        base: float,
        duration: float,
        error: Exception | None,
    ) -> None:
        self._pieces = pieces
        self._clock = clock
        self._base = base
        self._duration = duration
        self._error = error
        self._ended = False

    def __iter__(self) -> Iterator[bytes]:
        for t, data in self._pieces:
            self._clock.at_least(self._base + t)
            yield data
        self._end()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._end()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._clock.at_least(self._base + self._duration)


def _exception(error: RecordedError | None) -> Exception | None:
    """The httpx exception that reproduces a recorded error (None for errors the Transport derives itself).

    It carries the recorded kind as `.kind`, for a Transport that takes the kind from the exception when it has one.
    """
    if error is None or error.kind in DERIVED_KINDS:
        return None
    name = error.exception or KIND_EXCEPTIONS.get(error.kind, "TransportError")
    cls = getattr(httpx, name, None)
    if not (isinstance(cls, type) and issubclass(cls, httpx.RequestError)):
        cls = httpx.TransportError
    exc: Exception = cls(error.message)
    exc.kind = error.kind  # type: ignore[attr-defined]
    return exc


def response_for(item: Interaction, clock: VirtualClock) -> httpx.Response:
    """The httpx response that replays an interaction; raises its error at once when it had no response."""
    base = clock.now
    error = _exception(item.error)
    if item.response is None:
        clock.at_least(base + item.duration)
        raise error if error is not None else httpx.TransportError("the recording has neither response nor error")
    resp = item.response
    pieces = _encoded(resp.pieces(), resp.header("content-encoding"))
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
    stream = _ReplayStream(pieces, clock, base, max(item.duration, pieces[-1][0] if pieces else 0.0), error)
    return httpx.Response(resp.status, headers=headers, stream=stream)


class _Encoder:
    """Re-applies a content-encoding chunk by chunk (flushed), so the client decodes exactly the recorded chunks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._obj: Any = None
        if name == "gzip":
            self._obj = zlib.compressobj(wbits=zlib.MAX_WBITS | 16)
        elif name == "deflate":
            self._obj = zlib.compressobj(wbits=zlib.MAX_WBITS)
        elif name == "br":
            import brotli  # type: ignore[import-untyped]

            self._obj = brotli.Compressor()

    def push(self, data: bytes, *, final: bool = False) -> bytes:
        """Encode a chunk and flush it (or finish the stream)."""
        if self.name in ("gzip", "deflate"):
            out: bytes = self._obj.compress(data) + self._obj.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
            return out
        if self.name == "br":
            result: bytes = self._obj.process(data) + (self._obj.finish() if final else self._obj.flush())
            return result
        return data


@functools.cache
def _can_encode(name: str) -> bool:
    if name in ("identity", "gzip", "deflate"):
        return True
    if name == "br":
        return importlib.util.find_spec("brotli") is not None
    return False  # httpx does not decode it either, so the recorded bytes go through as they are


def _encoded(pieces: list[tuple[float, bytes]], content_encoding: str | None) -> list[tuple[float, bytes]]:
    names = [e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]
    encoders = [_Encoder(name) for name in names if _can_encode(name) and name != "identity"]
    if not encoders:
        return pieces
    out = []
    for t, data in pieces:
        for encoder in encoders:
            data = encoder.push(data)
        out.append((t, data))
    tail = b""
    for encoder in encoders:
        tail = encoder.push(tail, final=True)
    out.append((out[-1][0] if out else 0.0, tail))
    return out


class Replayer:
    """Answers a run's requests from a source (a cassette), through respx; never opens a socket.

    `transport` is the Transport to give ConformanceRun; `active()` also routes the official SDKs and makes the
    runner's retry waits virtual. Misses (requests without a recording) are in `misses`, in order.
    """

    def __init__(
        self, cassette: Cassette | None = None, *, source: Source | None = None, target: Target | None = None
    ) -> None:
        if source is None:
            if cassette is None:
                raise ValueError("a Replayer needs a cassette or a source")
            source = CassetteSource(cassette.interactions)
        if target is None:
            if cassette is None:
                raise ValueError("a Replayer without a cassette needs a target")
            target = cassette.target.to_target()
        self.cassette = cassette
        self.source = source
        self.target = target
        self.clock = VirtualClock()
        self.misses: list[str] = []
        self.answered = 0
        self.router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        self.router.route(name="transport").mock(side_effect=self._answer)
        self.sdk_router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        self.sdk_router.route(name="sdk").mock(side_effect=self._answer_sdk)
        self._client = httpx.Client(transport=httpx.MockTransport(self.router.handler), follow_redirects=False)
        self.transport = Transport(self.target, client=self._client, clock=self.clock)

    def __enter__(self) -> Replayer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the client."""
        self._client.close()

    @contextmanager
    def active(self) -> Iterator[Replayer]:
        """While active: the SDKs' requests are answered too, and the runner's 429 waits advance the clock only."""
        with ExitStack() as stack:
            stack.enter_context(httpx2_through(self.sdk_router.handler))
            stack.enter_context(_virtual_sleep(self.clock))
            yield self

    def unused(self) -> list[Interaction]:
        """Recordings no request asked for (a replay of part of the run leaves some)."""
        unused = getattr(self.source, "unused", None)
        return list(unused()) if callable(unused) else []

    def summary(self) -> str:
        """One line: what was answered, what was missing, what was left."""
        line = f"replayed {self.answered} request(s) offline"
        if self.misses:
            line += f"; {len(self.misses)} had no recording"
        left = self.unused()
        if left:
            line += f"; {len(left)} recording(s) were not asked for"
        return line

    def _answer(self, request: httpx.Request) -> httpx.Response:
        return self._respond(request, "transport", self.clock)

    def _answer_sdk(self, request: httpx.Request) -> httpx.Response:
        # The SDKs' timing is not judged: their chunks come without moving the run's clock.
        return self._respond(request, "sdk", VirtualClock())

    def _respond(self, request: httpx.Request, via: Via, clock: VirtualClock) -> httpx.Response:
        sent = request_from_wire(
            request.method, str(request.url), request.headers.raw, request.content, self.target.base_url
        )
        item = self.source.take(sent, via)
        if item is None:
            miss = f"replay: no recorded response for {sent.describe()}: {self.source.explain(sent)}"
            self.misses.append(miss)
            raise ReplayMiss(miss, request=request)
        self.answered += 1
        return response_for(item, clock)


def open_replay(path: str | Path, *, target: Target | None = None) -> Replayer:
    """A Replayer for a cassette file or directory; CassetteError when it cannot be read."""
    return Replayer(read_cassette(path), target=target)


@contextmanager
def _virtual_sleep(clock: VirtualClock) -> Iterator[None]:
    """Make conformance.runner's retry waits advance the virtual clock instead of sleeping."""
    from conformance import runner

    setattr(runner, "time", _VirtualTime(time, clock))  # noqa: B010 - typed as a module, so not assignable
    try:
        yield
    finally:
        setattr(runner, "time", time)  # noqa: B010


class _VirtualTime:
    """The time module as the runner sees it during a replay: everything real except sleep."""

    def __init__(self, real: ModuleType, clock: VirtualClock) -> None:
        self._real = real
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def sleep(self, seconds: float) -> None:
        """Advance the virtual clock."""
        self._clock.advance(seconds)


@contextmanager
def httpx2_through(handler: Callable[[httpx.Request], httpx.Response]) -> Iterator[None]:
    """Route httpx2 (the official SDKs' HTTP client since anthropic 2 / openai 3) through an httpx/respx handler.

    respx patches httpcore, which httpx2 does not use (it has httpcore2), so the SDKs' transport is patched here,
    at the same level: each httpx2 request becomes an httpx request for respx, its answer an httpx2 response, and
    an httpx error the httpx2 error of the same name.
    """
    try:
        import httpx2
    except ImportError:  # SDKs built on httpx: nothing to route
        yield
        return

    # Defined for the httpx2 imported now: a test runner that re-imports modules between sessions has a new one.
    def as_httpx2(exc: httpx.HTTPError) -> Exception:
        cls = getattr(httpx2, type(exc).__name__, None)
        if not (isinstance(cls, type) and issubclass(cls, httpx2.RequestError)):
            cls = httpx2.TransportError
        converted: Exception = cls(str(exc))
        return converted

    class Httpx2Stream(httpx2.SyncByteStream):
        """An httpx response body as an httpx2 byte stream; an httpx error becomes the httpx2 one."""

        def __init__(self, response: httpx.Response) -> None:
            self._response = response

        def __iter__(self) -> Iterator[bytes]:
            try:
                yield from self._response.stream  # type: ignore[misc]
            except httpx.HTTPError as exc:
                raise as_httpx2(exc) from exc

        def close(self) -> None:
            self._response.close()

    def handle_request(self: httpx2.HTTPTransport, request: httpx2.Request) -> httpx2.Response:
        bridged = httpx.Request(request.method, str(request.url), headers=request.headers.raw, content=request.read())
        try:
            response = handler(bridged)
        except httpx.HTTPError as exc:
            raise as_httpx2(exc) from exc
        return httpx2.Response(response.status_code, headers=response.headers.raw, stream=Httpx2Stream(response))

    original = httpx2.HTTPTransport.handle_request
    httpx2.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
    try:
        yield
    finally:
        httpx2.HTTPTransport.handle_request = original  # type: ignore[method-assign]
