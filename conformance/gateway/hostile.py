"""Hostile and broken gateways, served as `--fault` modes (HOSTILE_FAULTS; docs/hostile-gateways.md).

A hostile fault replaces the answer to every /v1/ request. Most are plain ASGI. uvicorn frames every response
itself, though, so the four that break HTTP (drip-headers, tcp-reset, truncated-chunked, not-http) write raw bytes
on the connection's own asyncio transport, taken from uvicorn's request cycle (the ASGI `send` callable is a
bound method of it): the gateway keeps one URL for every fault. redirect-cross-origin points at a recording
server of its own on 127.0.0.2 (another origin on the same host), whose log GET /_reference/hostile reports.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import struct
import threading
import weakref
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from conformance.errors import HarnessError
from conformance.gateway.config import GatewayConfig
from conformance.gateway.faults import HOSTILE_FAULTS
from conformance.gateway.model import new_id

__all__ = [
    "BOMB_BYTES",
    "DRIP_INTERVAL_S",
    "HUGE_BODY_BYTES",
    "PING_INTERVAL_S",
    "REDIRECT_HOST",
    "HostileFaults",
    "gzip_bomb",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DRIP_INTERVAL_S = 0.2  # under any sensible idle timeout: only a bound on the whole exchange stops a drip
PING_INTERVAL_S = 0.01
HUGE_BODY_BYTES = 200 * 1024 * 1024
BOMB_BYTES = 1 << 30  # what the gzip bomb inflates to
REDIRECT_HOST = "127.0.0.2"
_BLOCK = 1 << 20
_DELTA_TEXT = 64 * 1024
_RECORDED_MAX = 64 * 1024  # bytes kept per request the recorder receives
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_JSON = b"application/json"
_SSE = b"text/event-stream; charset=utf-8"
# What the gzip bomb's spaces sit between: a JSON message, or an SSE ping and then a comment line of spaces.
_BOMB_JSON = (b'{"type":"message","role":"assistant","content":[', b'],"stop_reason":"end_turn"}')
_BOMB_SSE = (b'event: ping\ndata: {"type":"ping"}\n\n: ', b"\n\n")
_ENVOY = b"upstream connect error or disconnect/reset before headers. reset reason: connection termination"


def _frame(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def _message(model: str, text: str) -> dict[str, Any]:
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 2},
    }


def _start_frames(model: str) -> bytes:
    start = {**_message(model, ""), "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": 12, "output_tokens": 1}
    return _frame("message_start", {"type": "message_start", "message": start}) + _frame(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )


def _delta(text: str) -> bytes:
    return _frame(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


def _end_frames() -> bytes:
    delta = {"stop_reason": "end_turn", "stop_sequence": None}
    return (
        _frame("content_block_stop", {"type": "content_block_stop", "index": 0})
        + _frame("message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 2}})
        + _frame("message_stop", {"type": "message_stop"})
    )


def _answer(model: str, stream: bool, text: str = "Hello there") -> bytes:
    """A small conformant answer: the Message JSON, or its event stream."""
    if stream:
        return _start_frames(model) + _delta(text) + _end_frames()
    return json.dumps(_message(model, text), separators=(",", ":")).encode()


_BOMBS_LOCK = threading.Lock()


def gzip_bomb(prefix: bytes, suffix: bytes, size: int = BOMB_BYTES) -> tuple[bytes, bytes, int, bytes]:
    """The bomb of _gzip_bomb, built once per process even when several threads ask for it at once."""
    with _BOMBS_LOCK:
        return _gzip_bomb(prefix, suffix, size)


@functools.cache
def _gzip_bomb(prefix: bytes, suffix: bytes, size: int) -> tuple[bytes, bytes, int, bytes]:
    """(head, block, count, tail): head + block * count + tail is one gzip stream of prefix, size spaces, suffix.

    Each 1 MiB of spaces is compressed after a full flush, which resets the deflate state, so every block
    compresses to the same bytes, and the CRC of the whole is combined from the block's: a 1 GiB bomb costs a few
    milliseconds, not a gigabyte of work.
    """
    count = max(size // _BLOCK, 1)
    spaces = b" " * _BLOCK
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(spaces) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(spaces) + deflate.flush(zlib.Z_FULL_FLUSH)
    if again != block:  # pragma: no cover - zlib guarantees it; the bomb would be wrong otherwise
        raise AssertionError("deflate blocks after a full flush differ")
    last = deflate.compress(suffix) + deflate.flush()
    crc = _crc32_combine(zlib.crc32(prefix), _crc32_repeated(zlib.crc32(spaces), _BLOCK, count), count * _BLOCK)
    crc = zlib.crc32(suffix, crc)
    total = len(prefix) + count * _BLOCK + len(suffix)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, total & 0xFFFFFFFF)
    return header + first, block, count, last + trailer


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def _crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of A + B from crc(A), crc(B) and len(B): zlib's crc32_combine, which Python does not expose."""
    if length2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << (n - 1) for n in range(1, 32)]  # the operator for one zero bit
    even = _gf2_square(odd)
    odd = _gf2_square(even)
    while True:
        even = _gf2_square(odd)
        if length2 & 1:
            crc1 = _gf2_times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = _gf2_square(even)
        if length2 & 1:
            crc1 = _gf2_times(odd, crc1)
        length2 >>= 1
        if not length2:
            break
    return crc1 ^ crc2


def _crc32_repeated(crc: int, length: int, count: int) -> int:
    """The CRC-32 of a block repeated count times, from the block's CRC and length (by doubling)."""
    total, total_length = 0, 0
    while count:
        if count & 1:
            total = _crc32_combine(total, crc, length) if total_length else crc
            total_length += length
        count >>= 1
        if count:
            crc, length = _crc32_combine(crc, crc, length), length * 2
    return total


class _Recorder:
    """A plain HTTP server on 127.0.0.2 that keeps what it receives: where the cross-origin redirect points."""

    def __init__(self, key: str) -> None:
        sock = socket.create_server((REDIRECT_HOST, 0))
        sock.settimeout(0.2)
        self.port: int = sock.getsockname()[1]
        self.url = f"http://{REDIRECT_HOST}:{self.port}"
        self.received: list[bytes] = []
        self._key = key.encode()
        stop = threading.Event()
        # The thread holds the socket, the log and the event, never self: dropping the gateway stops it.
        threading.Thread(
            target=_record, args=(sock, self.received, stop), name=f"hostile-recorder:{self.port}", daemon=True
        ).start()
        weakref.finalize(self, stop.set)

    def snapshot(self) -> dict[str, Any]:
        """What reached the recorder: request lines and header names, and whether the gateway's key came too."""
        requests = list(self.received)
        return {
            "redirect_target": self.url,
            "received_requests": len(requests),
            "received_key": any(self._key in raw for raw in requests),
            "requests": [_describe(raw) for raw in requests],
        }


def _describe(raw: bytes) -> dict[str, Any]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return {"request_line": head[0], "header_names": sorted({line.split(":", 1)[0].lower() for line in head[1:]})}


def _record(sock: socket.socket, log: list[bytes], stop: threading.Event) -> None:
    with sock:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1.0)
                raw = b""
                try:
                    while len(raw) < _RECORDED_MAX and not _complete(raw):
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        raw += chunk
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                except OSError:
                    pass
                log.append(raw[:_RECORDED_MAX])
                del log[:-64]


def _complete(raw: bytes) -> bool:
    """Whether raw holds a whole request (headers, and as much body as content-length says)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value)
    return True


def _raw_transport(send: Send) -> Any:
    """The connection's asyncio transport, from uvicorn's request cycle (whose bound method `send` is)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "write") or not hasattr(transport, "abort"):
        raise RuntimeError("this ASGI server does not expose the connection: raw hostile faults need uvicorn")
    return transport


def _linger_zero(transport: Any) -> None:
    """SO_LINGER {on, 0 s}: closing the socket then sends a RST instead of a FIN."""
    sock = transport.get_extra_info("socket")
    linger = struct.pack("ii", 1, 0)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    except (AttributeError, OSError):
        # uvloop hands out a pseudo-socket; the option belongs to the socket, so a duplicate descriptor will do.
        dup = socket.fromfd(sock.fileno(), socket.AF_INET, socket.SOCK_STREAM)
        try:
            dup.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        finally:
            dup.close()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        if len(body) < limit:
            body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _disconnected(receive: Receive) -> None:
    """Wait until the client hangs up (the request body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class HostileFaults:
    """Serves the one hostile fault a gateway was started with, in place of every /v1/ answer."""

    def __init__(self, config: GatewayConfig, fault: str) -> None:
        self.config = config
        self.fault = fault
        self._key = config.api_key or ""
        self._recorder = _Recorder(self._key) if fault == "redirect-cross-origin" else None
        if fault == "gzip-bomb":
            # Built now, in the background, rather than on the first request.
            def build() -> None:
                for ends in (_BOMB_JSON, _BOMB_SSE):
                    gzip_bomb(*ends)

            threading.Thread(target=build, name="hostile-gzip-bomb", daemon=True).start()
        self._handlers: dict[str, Callable[[Scope, Receive, Send, bool, str], Awaitable[None]]] = {
            "drip": self._drip,
            "drip-headers": self._drip_headers,
            "endless-ping": self._endless_ping,
            "never-answer": self._never_answer,
            "huge-body": self._huge_body,
            "gzip-bomb": self._gzip_bomb,
            "invalid-utf8": self._invalid_utf8,
            "html-error-page": self._html_error_page,
            "non-json-body": self._non_json_body,
            "tcp-reset": self._tcp_reset,
            "truncated-chunked": self._truncated_chunked,
            "not-http": self._not_http,
            "redirect-cross-origin": self._redirect,
        }

    @classmethod
    def for_config(cls, config: GatewayConfig) -> HostileFaults | None:
        """The hostile fault of a config, or None; a HarnessError for more than one (each replaces every answer)."""
        chosen = [name for name in config.faults if name in HOSTILE_FAULTS]
        if not chosen:
            return None
        if len(chosen) > 1:
            raise HarnessError(f"hostile faults replace every answer: choose one, not {', '.join(chosen)}")
        return cls(config, chosen[0])

    def snapshot(self) -> dict[str, Any]:
        """The fault, and what the recording server received (redirect-cross-origin)."""
        found: dict[str, Any] = {"fault": self.fault}
        if self._recorder is not None:
            found.update(self._recorder.snapshot())
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request if this fault covers it (every /v1/ path, and /_reference/hostile); else False."""
        path: str = scope["path"]
        if path == "/_reference/hostile":
            client = scope.get("client") or ("", 0)
            allowed = client[0] in _LOOPBACK
            payload = self.snapshot() if allowed else {"error": "loopback clients only"}
            await self._send(send, 200 if allowed else 403, [(b"content-type", _JSON)], json.dumps(payload).encode())
            return True
        if not path.startswith("/v1/"):
            return False
        body = await _read_body(receive, self.config.max_body_bytes)
        try:
            parsed = json.loads(body) if body else {}
        except (ValueError, UnicodeDecodeError):
            parsed = {}
        parsed = parsed if isinstance(parsed, dict) else {}
        model = parsed.get("model") if isinstance(parsed.get("model"), str) else "claude-sonnet-4-6"
        await self._handlers[self.fault](scope, receive, send, parsed.get("stream") is True, str(model))
        return True

    # ------------------------------------------------------------------ ASGI behaviours

    @staticmethod
    async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    @staticmethod
    async def _until_gone(receive: Receive, send: Send, pieces: Any, interval: float) -> None:
        """Send pieces (an iterator of bytes) one per interval until they run out or the client hangs up."""
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            for piece in pieces:
                if watcher.done():
                    return
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                await asyncio.sleep(interval)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()

    async def _drip(self, scope: Scope, receive: Receive, send: Send, stream: bool, model: str) -> None:
        answer = _answer(model, stream)

        def pieces() -> Any:
            for i in range(len(answer)):
                yield answer[i : i + 1]
            while True:  # then whitespace, forever: the body never ends
                yield b" "

        content_type = _SSE if stream else _JSON
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
        await self._until_gone(receive, send, pieces(), DRIP_INTERVAL_S)

    async def _endless_ping(self, scope: Scope, receive: Receive, send: Send, stream: bool, model: str) -> None:
        ping = _frame("ping", {"type": "ping"})

        def pieces() -> Any:
            yield _start_frames(model)
            while True:
                yield ping

        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", _SSE)]})
        await self._until_gone(receive, send, pieces(), PING_INTERVAL_S)

    async def _never_answer(self, scope: Scope, receive: Receive, send: Send, stream: bool, model: str) -> None:
        await _disconnected(receive)

    async def _huge_body(self, scope: Scope, receive: Receive, send: Send, stream: bool, model: str) -> None:
        if stream:
            delta = _delta("x" * _DELTA_TEXT)
            count = HUGE_BODY_BYTES // len(delta)
            head, tail = _start_frames(model), _end_frames()

            def pieces() -> Any:
                yield head
                for _ in range(count):
                    yield delta
                yield tail

            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", _SSE)]})
            await self._until_gone(receive, send, pieces(), 0)
            return
        prefix, suffix = json.dumps(_message(model, "<>"), separators=(",", ":")).encode().split(b"<>")
        filler = b"x" * _BLOCK
        count = (HUGE_BODY_BYTES - len(prefix) - len(suffix)) // _BLOCK
        length = len(prefix) + count * _BLOCK + len(suffix)

        def blocks() -> Any:
            yield prefix
            for _ in range(count):
                yield filler
            yield suffix

        headers = [(b"content-type", _JSON), (b"content-length", str(length).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await self._until_gone(receive, send, blocks(), 0)

    async def _gzip_bomb(self, scope: Scope, receive: Receive, send: Send, stream: bool, model: str) -> None:
        # Fixed bytes around the spaces, so the bomb is built once per process (see __init__), not per request.
        prefix, suffix = _BOMB_SSE if stream else _BOMB_JSON
        head, block, count, tail = await asyncio.to_thread(gzip_bomb, prefix, suffix)
        length = len(head) + len(block) * count + len(tail)
        headers = [
            (b"content-type", _SSE if stream else _JSON),
            (b"content-encoding", b"gzip"),
            (b"content-length", str(length).encode()),
        ]

        def pieces() -> Any:
            yield head
            batch = block * 64
            for _ in range(count // 64):
                yield batch
            for _ in range(count % 64):
                yield block
            yield tail

        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await self._until_gone(receive, send, pieces(), 0)

    async def _invalid_utf8(self, scope: Scope, receive: Receive, send: Send, stream: bool, model: str) -> None:
        bad = b"caf\xc3\xa9 \xff\xfe\xc3("  # valid, then bytes no UTF-8 decoder accepts
        answer = _answer(model, stream, text="@@TEXT@@").replace(b"@@TEXT@@", bad)
        await self._send(send, 200, [(b"content-type", _SSE if stream else _JSON)], answer)

    async def _html_error_page(self, scope: Scope, receive: Receive, send: Send, stream: bool, model: str) -> None:
        # As debug pages of misconfigured proxies do: the request's headers, the caller's key among them.
        dump = "\n".join(f"{k.decode('latin-1')}: {v.decode('latin-1')}" for k, v in scope["headers"])
        page = (
            "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
            f"</center>\r\n<pre>{dump}</pre>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        )
        await self._send(send, 502, [(b"content-type", b"text/html")], page.encode("utf-8", "replace"))

    async def _non_json_body(self, scope: Scope, receive: Receive, send: Send, stream: bool, model: str) -> None:
        if stream:
            await self._send(send, 200, [(b"content-type", _SSE)], b"data: " + _ENVOY + b"\n\n")
            return
        await self._send(send, 200, [(b"content-type", _JSON)], _ENVOY)

    async def _redirect(self, scope: Scope, receive: Receive, send: Send, stream: bool, model: str) -> None:
        if self._recorder is None:  # pragma: no cover - __init__ starts it for this fault
            raise RuntimeError("redirect-cross-origin without its recording server")
        query = scope.get("query_string", b"")
        location = f"{self._recorder.url}{scope['path']}" + (f"?{query.decode('latin-1')}" if query else "")
        body = json.dumps({"type": "error", "error": {"type": "api_error", "message": "moved"}}).encode()
        await self._send(send, 307, [(b"location", location.encode()), (b"content-type", _JSON)], body)

    # ------------------------------------------------------------------ raw behaviours (the connection itself)

    async def _drip_headers(self, scope: Scope, receive: Receive, send: Send, stream: bool, model: str) -> None:
        transport = _raw_transport(send)
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-padding: " + b"a" * 64 + b"\r\n\r\n"
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            for i in range(len(head)):
                if watcher.done() or transport.is_closing():
                    break
                transport.write(head[i : i + 1])
                await asyncio.sleep(DRIP_INTERVAL_S)
            transport.close()
            await watcher
        finally:
            watcher.cancel()

    async def _tcp_reset(self, scope: Scope, receive: Receive, send: Send, stream: bool, model: str) -> None:
        transport = _raw_transport(send)
        if stream:
            head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            transport.write(head + _chunk(_start_frames(model)))
        else:
            answer = _answer(model, False)
            status = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(answer)}\r\n\r\n"
            transport.write(status.encode() + answer[: len(answer) // 2])
        # Let the bytes leave before the reset, so the client sees a response cut short, not a refused request.
        await asyncio.sleep(0.05)
        _linger_zero(transport)
        transport.abort()
        await _disconnected(receive)

    async def _truncated_chunked(self, scope: Scope, receive: Receive, send: Send, stream: bool, model: str) -> None:
        transport = _raw_transport(send)
        content_type = b"text/event-stream" if stream else b"application/json"
        head = b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type + b"\r\ntransfer-encoding: chunked\r\n\r\n"
        first = _start_frames(model) if stream else b'{"type":"message",'
        transport.write(head + _chunk(first) + b"400\r\n" + b'"role":"assistant"'[:16])
        await asyncio.sleep(0.05)
        transport.close()  # a FIN in the middle of a chunk
        await _disconnected(receive)

    async def _not_http(self, scope: Scope, receive: Receive, send: Send, stream: bool, model: str) -> None:
        transport = _raw_transport(send)
        # A whole "head" (up to a blank line), so the client parses it and finds no status line, not a hang-up.
        transport.write(b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n\r\n")
        transport.close()
        await _disconnected(receive)
