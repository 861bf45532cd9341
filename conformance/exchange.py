"""One request/response pair: what was sent, what came back, when, and how to reproduce it."""

from __future__ import annotations

import json as _json
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from conformance.stream import StreamResult

Flavour = Literal["anthropic", "openai"]
# How a request authenticates: as the target says, not at all, with one scheme forced, or with a wrong key.
AuthMode = Literal["target", "none", "x-api-key", "bearer", "wrong-key"]
# Sent by the wrong-key probes: not a secret, so it may appear in reports.
WRONG_KEY = "sk-conformance-wrong-key-000000000000"

# Header names whose values are credentials: masked wherever an exchange is shown or stored.
CREDENTIAL_HEADERS = frozenset(
    {"x-api-key", "authorization", "proxy-authorization", "cookie", "set-cookie", "api-key", "x-goog-api-key"}
)


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """What to send: method, path, body, extra headers, and whether a stream is expected."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    drop_headers: tuple[str, ...] = ()
    stream: bool = False
    flavour: Flavour = "anthropic"
    auth: AuthMode = "target"
    label: str = ""

    def body_bytes(self) -> bytes | None:
        """The exact bytes the body will have on the wire."""
        if self.content is not None:
            return self.content
        if self.json is None:
            return None
        return _json.dumps(self.json, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class TransportError:
    """Why an exchange did not complete normally: a timeout, a reset, a refused connection, a cap hit."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds from the start of the request."""

    ttfb: float | None = None
    total: float | None = None


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and what the gateway did with it."""

    request: RequestSpec
    url: str
    request_headers: tuple[tuple[str, str], ...]
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    body_truncated: bool = False
    # (seconds since the request started, byte count) for each chunk as it arrived: enough to replay the
    # body with its framing and timing (what a cassette stores).
    chunks: tuple[tuple[float, int], ...] = ()
    stream: StreamResult | None = None
    error: TransportError | None = None
    timings: Timings = field(default_factory=Timings)

    def header(self, name: str) -> str | None:
        """The first value of a response header, by case-insensitive name."""
        lname = name.lower()
        for key, value in self.headers:
            if key == lname:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of a response header."""
        lname = name.lower()
        return [value for key, value in self.headers if key == lname]

    @property
    def content_type(self) -> str:
        """The media type of the response, lowercased, without parameters."""
        value = self.header("content-type") or ""
        return value.split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        """The response body parsed as JSON; ValueError when it is not JSON."""
        if not self.body:
            raise ValueError("the response has no body")
        try:
            return _json.loads(self.body)
        except (UnicodeDecodeError, _json.JSONDecodeError) as exc:
            raise ValueError(f"the response body is not JSON: {exc}") from exc

    def json_or_none(self) -> Any:
        """The response body as JSON, or None when it is not JSON."""
        try:
            return self.json()
        except ValueError:
            return None

    def body_excerpt(self, limit: int = 600) -> str:
        """The start of the body as text, for a report."""
        text = self.body[:limit].decode("utf-8", errors="replace")
        return text + ("…" if len(self.body) > limit else "")

    def curl(self) -> str:
        """A curl command that reproduces the request; credentials are the $GATEWAY_API_KEY variable."""
        parts = ["curl", "-sS", "-i"]
        if self.request.stream:
            parts.append("-N")
        parts += ["-X", self.request.method, shlex.quote(self.url)]
        for name, value in self.request_headers:
            if name.lower() == "content-length":
                continue
            parts += ["-H", _quote_header(name, value)]
        body = self.request.body_bytes()
        if body is not None:
            if len(body) > 8192:
                parts += ["--data-binary", f"@body.json  # {len(body)} bytes, not shown"]
            else:
                parts += ["--data-binary", shlex.quote(body.decode("utf-8", errors="replace"))]
        return " ".join(parts)


def _quote_header(name: str, value: str) -> str:
    # The key placeholder must stay expandable by the shell, so such headers use double quotes.
    if "$GATEWAY_API_KEY" in value:
        return '"' + f"{name}: {value}".replace('"', '\\"') + '"'
    return shlex.quote(f"{name}: {value}")
