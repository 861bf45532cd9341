"""One request on a FastHttpUser's geventhttpclient pool, its body read chunk by chunk as the bytes arrive.

geventhttpclient's own read(n) waits until n bytes are buffered, which would smear arrival times, so this module
reads the socket itself and hands each chunk over with its perf_counter time. It also tells apart how a body
ended: "eof" (the HTTP body completed), "reset" (the connection closed or broke first), "timeout-idle" (no byte
for the idle timeout), "timeout-total" (the whole response took too long). Imports gevent: Locust runs only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError

__all__ = ["READ_SIZE", "WireResponse", "read_body", "send"]

READ_SIZE = 64 * 1024
ChunkSink = Callable[[bytes, float], None]


@dataclass(slots=True)
class WireResponse:
    """The status line and headers of a response (or why there was none), and the live response to read."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    t_headers: float | None = None
    error_kind: str | None = None  # no response: connect-error, timeout-first-byte, reset, protocol-error
    error_message: str = ""
    raw: Any = None  # geventhttpclient's HTTPSocketPoolResponse, until read_body releases it

    def header(self, name: str) -> str | None:
        """A response header by lowercase name."""
        return self.headers.get(name)


def _headers(response: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in response.items():
        found.setdefault(name.lower(), value)
    return found


def send(client: Any, method: str, uri: str, body: bytes, headers: dict[str, str]) -> WireResponse:
    """Send the request and read up to the end of the response headers; never raises for network trouble."""
    for attempt in (1, 2):
        try:
            raw = client.request(method, uri, body=body, headers=headers)
        except HTTPConnectionClosed as exc:
            # A keep-alive connection the server had already closed: it saw nothing, so one fresh try is safe.
            if attempt == 1:
                continue
            return WireResponse(error_kind="reset", error_message=f"connection closed before a response: {exc}")
        except TimeoutError as exc:
            return WireResponse(error_kind="timeout-first-byte", error_message=str(exc) or "timed out")
        except ConnectionRefusedError as exc:
            return WireResponse(error_kind="connect-error", error_message=str(exc))
        except HTTPParseError as exc:
            return WireResponse(error_kind="protocol-error", error_message=str(exc))
        except (ConnectionError, OSError) as exc:
            kind = "reset" if isinstance(exc, ConnectionResetError | BrokenPipeError) else "connect-error"
            return WireResponse(error_kind=kind, error_message=str(exc) or type(exc).__name__)
        return WireResponse(status=raw.status_code, headers=_headers(raw), t_headers=time.perf_counter(), raw=raw)
    raise AssertionError("unreachable")


def read_body(
    response: WireResponse, sink: ChunkSink, *, deadline: float, max_bytes: int | None = None
) -> tuple[str, int]:
    """Feed every body chunk to sink(chunk, t) until the body ends; (cause, bytes read). Always releases the socket."""
    raw = response.raw
    response.raw = None
    if raw is None:
        return "eof", 0
    total = 0
    clock = time.perf_counter
    buffer: bytearray = raw._body_buffer
    try:
        if buffer:
            chunk = bytes(buffer)
            del buffer[:]
            total += len(chunk)
            sink(chunk, clock())
        while not raw.message_complete:
            sock = raw._sock
            if sock is None:
                return "reset", total
            try:
                data = sock.recv(READ_SIZE)
            except TimeoutError:
                return "timeout-idle", total
            except OSError:
                return "reset", total
            now = clock()
            try:
                # An empty read is the peer's FIN: llhttp completes a close-delimited body or rejects a short one.
                raw.feed(data)
            except HTTPParseError:
                if buffer:
                    chunk = bytes(buffer)
                    del buffer[:]
                    total += len(chunk)
                    sink(chunk, now)
                return "reset", total
            if buffer:
                chunk = bytes(buffer)
                del buffer[:]
                total += len(chunk)
                sink(chunk, now)
            if not data and not raw.message_complete:
                return "reset", total
            if now > deadline:
                return "timeout-total", total
            if max_bytes is not None and total > max_bytes:
                return "too-large", total
        return "eof", total
    finally:
        # Complete: the socket went back to the pool already. Anything else: it is closed, never reused.
        raw.release()
