"""Cassettes: what a gateway did, kept as versioned JSON with credentials redacted, to be replayed offline.

A cassette holds the target it was recorded from and every interaction in the order the requests were
sent: the request (method, path, headers, body), the response (status, headers as received, the body
bytes as the client read them, with each chunk's arrival time and size) and the transport error that
ended it, if any. Requests sent by the Transport and by the official SDKs (through httpx2) are both kept,
so a replay reproduces the framing, the timing and the SDKs' view. The format is documented in
docs/cassettes.md and by the schema schemas/cassette/cassette.json.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import quote

import httpx

from conformance import __version__
from conformance.errors import HarnessError
from conformance.exchange import CREDENTIAL_HEADERS, WRONG_KEY, Exchange, RequestSpec
from conformance.target import (
    DEFAULT_ANTHROPIC_VERSION,
    DEFAULT_MODEL,
    KEY_PLACEHOLDER,
    MASK,
    AuthScheme,
    Limits,
    Secret,
    Target,
    Timeouts,
)
from conformance.transport import Transport

if TYPE_CHECKING:
    import httpx2

__all__ = [
    "CASSETTE_FILE",
    "FORMAT",
    "KEY_STAND_IN",
    "Cassette",
    "CassetteError",
    "Interaction",
    "RecordedError",
    "RecordedRequest",
    "RecordedResponse",
    "RecordedTarget",
    "Recorder",
    "RecordingTransport",
    "Redactor",
    "body_digest",
    "cassette_path",
    "decode_chunks",
    "exception_kind",
    "interaction_from_exchange",
    "read_cassette",
    "relative_path",
    "render_cassette",
    "request_from_wire",
    "write_cassette",
]

FORMAT = "gateway-conformance/cassette@1"
FORMAT_NAME = "gateway-conformance/cassette"
CASSETTE_FILE = "cassette.json"
SCHEMA = "cassette/cassette"
# What the key becomes wherever a response (or anything but a request's credential header) repeated it. A replay
# sends this as its key, so a check that looks for the key in a response finds it again where the gateway put it.
KEY_STAND_IN = "REDACTED-GATEWAY-API-KEY"
# Request bodies above this are kept as their digest only (the 33 MB probe), and are matched byte for byte.
MAX_STORED_BODY = 64 * 1024
# Transport error kinds the Transport derives from the response itself (a replay raises nothing for them).
DERIVED_KINDS = frozenset({"redirect-cross-origin"})
# The exception a replay raises, after the recorded bytes, to reproduce a transport error kind (httpx and httpx2
# share these names). The Transport names the kind from the exception's class (and, for RemoteProtocolError, from
# the recorded message); the raised exception also carries the recorded kind as `.kind`.
KIND_EXCEPTIONS: Mapping[str, str] = {
    "timeout-connect": "ConnectTimeout",
    "timeout-first-byte": "ReadTimeout",
    "timeout-idle": "ReadTimeout",
    "timeout-total": "ReadTimeout",
    "timeout-write": "WriteTimeout",
    "timeout": "WriteTimeout",
    "connect-error": "ConnectError",
    "protocol-error": "RemoteProtocolError",
    "truncated-chunked": "RemoteProtocolError",
    "reset": "ReadError",
    "decoding-error": "DecodingError",
    "usage-error": "UnsupportedProtocol",
    "too-large": "TransportError",
    "too-many-events": "TransportError",
    "http-error": "TransportError",
}
# JSON fields whose string values are credentials, masked wherever a body has them.
CREDENTIAL_FIELD = re.compile(
    r"^(?:x[-_])?(?:api[-_]?key|apikey|access[-_]?token|refresh[-_]?token|id[-_]?token|session[-_]?token|"
    r"auth[-_]?token|client[-_]?secret|secret|password|passwd|authorization|cookie|token)$",
    re.IGNORECASE,
)

Via = Literal["transport", "sdk"]
Headers = tuple[tuple[str, str], ...]


class CassetteError(HarnessError):
    """A cassette that cannot be read: missing, not JSON, another format version, or not matching its schema."""


@dataclass(frozen=True, slots=True)
class RecordedTarget:
    """Who the cassette was recorded from; a replay talks to the same URL with the key stand-in."""

    base_url: str
    auth: AuthScheme = "x-api-key"
    has_key: bool = True
    model: str = DEFAULT_MODEL
    anthropic_version: str = DEFAULT_ANTHROPIC_VERSION
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def of(cls, target: Target) -> RecordedTarget:
        """The recordable part of a target (never its key)."""
        return cls(
            target.base_url,
            target.auth,
            target.api_key is not None,
            target.model,
            target.anthropic_version,
            target.timeouts,
            target.limits,
        )

    def to_target(self) -> Target:
        """The target a replay uses: the recorded one, with KEY_STAND_IN as its key."""
        key = Secret(KEY_STAND_IN) if self.has_key else None
        return Target(
            self.base_url,
            key,
            auth=self.auth,
            anthropic_version=self.anthropic_version,
            model=self.model,
            timeouts=self.timeouts,
            limits=self.limits,
        )


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as sent: method, path under the base URL (query included), headers, and its body's digest."""

    method: str
    path: str
    headers: Headers = ()
    body: bytes | None = None  # None: no body, or one too large to keep (then only size and digest)
    digest: str = ""
    size: int = 0

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", body_digest(self.body))
        if self.body is not None and not self.size:
            object.__setattr__(self, "size", len(self.body))

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    def json(self) -> Any:
        """The body parsed as JSON, or None when there is none or it is not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self) -> str:
        """`POST /v1/messages (sha256:0123abcd…)`, for messages."""
        return f"{self.method} {self.path} ({self.digest[:15]}…)"


@dataclass(frozen=True, slots=True)
class RecordedResponse:
    """A response as read: status, headers in order, body bytes (content-decoded), and each chunk's arrival."""

    status: int
    headers: Headers = ()
    body: bytes = b""
    # (seconds since the request started, byte count) per chunk as the client read it.
    chunks: tuple[tuple[float, int], ...] = ()
    truncated: bool = False  # the body was cut at the Transport's size limit; only what was kept is here

    def __post_init__(self) -> None:
        if not self.chunks and self.body:
            object.__setattr__(self, "chunks", ((0.0, len(self.body)),))

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    def pieces(self) -> list[tuple[float, bytes]]:
        """The body split as it arrived: (arrival time, bytes) per chunk."""
        out: list[tuple[float, bytes]] = []
        pos = 0
        for t, size in self.chunks:
            piece = self.body[pos : pos + size]
            pos += size
            if piece:
                out.append((t, piece))
        if pos < len(self.body):  # a hand-made cassette whose chunks do not cover the body
            out.append((self.chunks[-1][0] if self.chunks else 0.0, self.body[pos:]))
        return out


@dataclass(frozen=True, slots=True)
class RecordedError:
    """How an exchange ended abnormally: the Transport's error kind, the exception, and its (masked) message."""

    kind: str
    message: str
    exception: str = ""

    def __post_init__(self) -> None:
        if not self.exception:
            object.__setattr__(self, "exception", KIND_EXCEPTIONS.get(self.kind, ""))


@dataclass(frozen=True, slots=True)
class Interaction:
    """One request and what came back: a response, an error, or both (a body cut short)."""

    request: RecordedRequest
    response: RecordedResponse | None = None
    error: RecordedError | None = None
    duration: float = 0.0
    via: Via = "transport"
    label: str = ""
    test: str = ""


@dataclass(frozen=True, slots=True)
class Cassette:
    """A recording: the target, the interactions in the order they were sent, and what made them."""

    target: RecordedTarget
    interactions: tuple[Interaction, ...] = ()
    recorded_at: str = ""
    tool_version: str = __version__
    options: Mapping[str, Any] = field(default_factory=dict)
    sdk_versions: Mapping[str, str] = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """The cassette as the JSON document the schema describes."""
        t = self.target
        doc: dict[str, Any] = {
            "format": FORMAT,
            "recorded_at": self.recorded_at,
            "tool_version": self.tool_version,
            "target": {
                "base_url": t.base_url,
                "auth": t.auth,
                "has_key": t.has_key,
                "model": t.model,
                "anthropic_version": t.anthropic_version,
                "timeouts": {
                    "connect": t.timeouts.connect,
                    "first_byte": t.timeouts.first_byte,
                    "idle": t.timeouts.idle,
                    "total": t.timeouts.total,
                },
                "limits": {"max_body_bytes": t.limits.max_body_bytes, "max_events": t.limits.max_events},
            },
        }
        if self.options:
            doc["options"] = dict(self.options)
        if self.sdk_versions:
            doc["sdk_versions"] = dict(self.sdk_versions)
        if self.note:
            doc["note"] = self.note
        doc["interactions"] = [_interaction_json(i) for i in self.interactions]
        return doc

    @classmethod
    def from_json(cls, doc: Any, *, source: str = "<cassette>") -> Cassette:
        """A cassette from its JSON document; CassetteError naming the problem when it is not one."""
        if not isinstance(doc, dict):
            raise CassetteError(f"{source}: a cassette is a JSON object")
        fmt = doc.get("format")
        if not isinstance(fmt, str) or not fmt.startswith(FORMAT_NAME + "@"):
            raise CassetteError(f"{source}: not a cassette (format {fmt!r}, expected {FORMAT!r})")
        if fmt != FORMAT:
            raise CassetteError(f"{source}: cassette format {fmt!r} is not supported by this version ({FORMAT!r})")
        from conformance.schemas import validator

        errors = validator(SCHEMA).errors(doc)
        if errors:
            shown = "; ".join(e.describe() for e in errors[:5])
            raise CassetteError(f"{source}: the cassette does not match its schema: {shown}")
        t = doc["target"]
        timeouts = Timeouts(**t["timeouts"]) if "timeouts" in t else Timeouts()
        limits = Limits(**t["limits"]) if "limits" in t else Limits()
        target = RecordedTarget(
            t["base_url"],
            t.get("auth", "x-api-key"),
            t.get("has_key", True),
            t.get("model", DEFAULT_MODEL),
            t.get("anthropic_version", DEFAULT_ANTHROPIC_VERSION),
            timeouts,
            limits,
        )
        try:
            interactions = tuple(_interaction_from_json(item) for item in doc["interactions"])
        except (ValueError, KeyError) as exc:
            raise CassetteError(f"{source}: {exc}") from exc
        return cls(
            target=target,
            interactions=interactions,
            recorded_at=doc.get("recorded_at", ""),
            tool_version=doc.get("tool_version", ""),
            options=dict(doc.get("options", {})),
            sdk_versions=dict(doc.get("sdk_versions", {})),
            note=doc.get("note", ""),
        )


def body_digest(body: bytes | None) -> str:
    """sha256 of a request body in canonical form: JSON re-serialized with sorted keys, anything else as is."""
    return "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()


def _canonical(body: bytes | None) -> bytes:
    if not body:
        return b""
    if len(body) <= MAX_STORED_BODY:
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            return body
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return body


def relative_path(url: str, base_url: str) -> str:
    """A URL as a path under the base URL (query included); the whole URL when it is not under it."""
    u = httpx.URL(url)
    b = httpx.URL(base_url)
    path = u.raw_path.decode("ascii")
    prefix = b.raw_path.decode("ascii").rstrip("/")
    same_origin = (u.scheme, u.host, u.port) == (b.scheme, b.host, b.port)
    if same_origin and (path == prefix or path.startswith(prefix + "/")):
        return path[len(prefix) :] or "/"
    return str(u)


def cassette_path(path: str | Path) -> Path:
    """The cassette file a path names: the file itself, or DIR/cassette.json for a directory."""
    path = Path(path)
    return path / CASSETTE_FILE if path.is_dir() or not path.suffix else path


def read_cassette(path: str | Path) -> Cassette:
    """Read a cassette file (or DIR/cassette.json); CassetteError when it cannot be used."""
    file = cassette_path(path)
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CassetteError(f"no cassette at {file} (record one with `python -m conformance record`)") from exc
    except (OSError, ValueError) as exc:
        raise CassetteError(f"{file}: cannot read the cassette: {exc}") from exc
    return Cassette.from_json(doc, source=str(file))


def render_cassette(cassette: Cassette) -> str:
    """The cassette as text: indented objects, one line per header, chunk list and body line; one final newline."""
    return _render(cassette.to_json(), "") + "\n"


def write_cassette(cassette: Cassette, path: str | Path) -> Path:
    """Write a cassette (to DIR/cassette.json when path is a directory), atomically; returns the file."""
    from conformance.reporting.files import write_text_atomic

    return write_text_atomic(cassette_path(path), render_cassette(cassette))


# Lists written one item per line; every other list and a request's JSON body stay on one line.
_ONE_PER_LINE = frozenset({"interactions", "lines", "headers"})


def _render(value: Any, indent: str, key: str = "") -> str:
    """JSON with objects indented, headers and body lines one per line, chunk lists and request bodies compact."""
    inner = indent + "  "
    if isinstance(value, dict) and value and key != "json":
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_render(v, inner, k)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value and key in _ONE_PER_LINE:
        return "[\n" + ",\n".join(inner + _render(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


# --- JSON <-> dataclasses -------------------------------------------------------------------------------------


def _body_json(body: bytes, *, exact: bool) -> dict[str, Any]:
    """A body's spelling: JSON when it parses (a response only when re-serializing it gives back the same bytes),
    UTF-8 text (as lines when it has several), else base64."""
    if body[:1] in (b"{", b"["):
        try:
            value = json.loads(body)
        except ValueError:
            pass
        else:
            if not exact or _compact(value) == body:
                return {"json": value}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode("ascii")}
    lines = text.splitlines(keepends=True)
    return {"lines": lines} if len(lines) > 1 else {"text": text}


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _body_from_json(data: Mapping[str, Any]) -> bytes:
    if "json" in data:
        return _compact(data["json"])
    if "lines" in data:
        return "".join(data["lines"]).encode("utf-8")
    if "text" in data:
        return str(data["text"]).encode("utf-8")
    if "base64" in data:
        return base64.b64decode(data["base64"], validate=True)
    raise ValueError(f"a body has json, lines, text or base64, got {sorted(data)}")


def _interaction_json(item: Interaction) -> dict[str, Any]:
    req = item.request
    request: dict[str, Any] = {"method": req.method, "path": req.path, "headers": [list(h) for h in req.headers]}
    if req.body is not None and len(req.body) <= MAX_STORED_BODY:
        request["body"] = _body_json(req.body, exact=False)
    elif req.size:
        request["body"] = {"omitted": True}
    else:
        request["body"] = None
    request["size"] = req.size
    request["digest"] = req.digest
    out: dict[str, Any] = {"via": item.via}
    if item.label:
        out["label"] = item.label
    if item.test:
        out["test"] = item.test
    out["request"] = request
    if item.response is None:
        out["response"] = None
    else:
        resp = item.response
        out["response"] = {
            "status": resp.status,
            "headers": [list(h) for h in resp.headers],
            "body": _body_json(resp.body, exact=True),
            "chunks": [[round(t, 6), n] for t, n in resp.chunks],
        }
        if resp.truncated:
            out["response"]["truncated"] = True
    out["error"] = (
        None
        if item.error is None
        else {"kind": item.error.kind, "exception": item.error.exception, "message": item.error.message}
    )
    out["duration"] = round(item.duration, 6)
    return out


def _interaction_from_json(data: Mapping[str, Any]) -> Interaction:
    req = data["request"]
    body_doc = req.get("body")
    body = None if body_doc is None or body_doc.get("omitted") else _body_from_json(body_doc)
    if body_doc is not None and body_doc.get("omitted") and not req.get("digest"):
        raise ValueError(f"{req['method']} {req['path']}: a request whose body is omitted needs its digest")
    request = RecordedRequest(
        method=req["method"].upper(),
        path=req["path"],
        headers=tuple((str(k).lower(), str(v)) for k, v in req.get("headers", ())),
        body=body,
        digest=req.get("digest", ""),
        size=int(req.get("size", 0)),
    )
    response = None
    if data.get("response") is not None:
        resp = data["response"]
        rbody = _body_from_json(resp["body"]) if resp.get("body") is not None else b""
        chunks = tuple((float(t), int(n)) for t, n in resp.get("chunks", ()))
        response = RecordedResponse(
            status=int(resp["status"]),
            headers=tuple((str(k).lower(), str(v)) for k, v in resp.get("headers", ())),
            body=rbody,
            chunks=chunks,
            truncated=bool(resp.get("truncated", False)),
        )
        covered = sum(n for _, n in response.chunks)
        if covered != len(rbody) and not response.truncated and "chunks" in resp:
            raise ValueError(f"{request.describe()}: the chunks cover {covered} bytes of a {len(rbody)}-byte body")
    error = None
    if data.get("error") is not None:
        err = data["error"]
        error = RecordedError(err["kind"], err.get("message", ""), err.get("exception", ""))
    if response is None and error is None:
        raise ValueError(f"{request.describe()}: an interaction needs a response, an error, or both")
    return Interaction(
        request=request,
        response=response,
        error=error,
        duration=float(data.get("duration", 0.0)),
        via=data.get("via", "transport"),
        label=data.get("label", ""),
        test=data.get("test", ""),
    )


# --- redaction ------------------------------------------------------------------------------------------------


class Redactor:
    """Masks credentials before anything is written: credential headers and fields, and the key wherever it is.

    A request's credential header shows the key as $GATEWAY_API_KEY (as the curl lines do). Anywhere else the key
    becomes KEY_STAND_IN, which a replay sends as its key: a gateway that echoed the key is still caught echoing it.
    Other credential values (cookies, tokens in JSON fields) become `***`. The wrong key the probes send on purpose
    is not a secret and stays.
    """

    def __init__(self, key: str | None) -> None:
        self.key = key or None
        forms = {key, quote(key, safe=""), json.dumps(key)[1:-1]} if key else set()
        # Longest first, so a form that contains another is replaced whole.
        self._forms = sorted((f for f in forms if f), key=len, reverse=True)

    def text(self, text: str) -> str:
        """Text with every form of the key replaced by the stand-in."""
        for form in self._forms:
            text = text.replace(form, KEY_STAND_IN)
        return text

    def interaction(self, item: Interaction) -> Interaction:
        """The interaction with its credentials masked (the request digest is kept: replays match on it)."""
        return replace(
            item,
            request=self.request(item.request),
            response=self.response(item.response) if item.response is not None else None,
            error=replace(item.error, message=self.text(item.error.message)) if item.error is not None else None,
            label=self.text(item.label),
            test=self.text(item.test),
        )

    def request(self, req: RecordedRequest) -> RecordedRequest:
        """A request with its credential headers shown as $GATEWAY_API_KEY or ***, and its body scrubbed.

        The digest is taken after the key became the stand-in (what a replay sends) and before credential fields
        were masked (a replay sends them unmasked).
        """
        req = replace(req, path=self.text(req.path), headers=self._headers(req.headers, KEY_PLACEHOLDER))
        if req.body is None:
            return req
        whole = ((0.0, len(req.body)),)
        keyed, _ = _replace_in_chunks(req.body, whole, self._key_replacements())
        masked, _ = _replace_in_chunks(keyed, whole, [(v, MASK.encode()) for v in _credential_values(keyed)])
        return replace(req, body=masked, digest=body_digest(keyed), size=len(keyed))

    def response(self, resp: RecordedResponse) -> RecordedResponse:
        """A response with credential headers masked, and the key and credential fields scrubbed from its body."""
        body, chunks = self._body(resp.body, resp.chunks)
        return replace(resp, headers=self._headers(resp.headers, KEY_STAND_IN), body=body, chunks=chunks)

    def _headers(self, headers: Headers, key_shown_as: str) -> Headers:
        return tuple(
            (name, self._credential(value, key_shown_as) if name.lower() in CREDENTIAL_HEADERS else self.text(value))
            for name, value in headers
        )

    def _credential(self, value: str, key_shown_as: str) -> str:
        if self.key is not None and self.key in value:
            return value.replace(self.key, key_shown_as)
        if WRONG_KEY in value or KEY_PLACEHOLDER in value or KEY_STAND_IN in value:
            return value
        return MASK

    def _key_replacements(self) -> list[tuple[bytes, bytes]]:
        return [(form.encode(), KEY_STAND_IN.encode()) for form in self._forms]

    def _body(self, body: bytes, chunks: Sequence[tuple[float, int]]) -> tuple[bytes, tuple[tuple[float, int], ...]]:
        replacements = self._key_replacements() + [(value, MASK.encode()) for value in _credential_values(body)]
        return _replace_in_chunks(body, tuple(chunks), replacements)


def _credential_values(body: bytes) -> list[bytes]:
    """The raw text of every credential-named string field in a JSON body, or in the JSON data lines of SSE."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return []
    documents: list[Any] = []
    try:
        documents.append(json.loads(text))
    except ValueError:
        # SSE data lines, or one JSON document per line.
        for line in text.splitlines():
            try:
                documents.append(json.loads(line[5:] if line.startswith("data:") else line))
            except ValueError:
                continue
    found: list[bytes] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and CREDENTIAL_FIELD.match(str(key)) and value not in ("", MASK):
                    if WRONG_KEY not in value and KEY_STAND_IN not in value and KEY_PLACEHOLDER not in value:
                        found.append(json.dumps(value, ensure_ascii=False)[1:-1].encode())
                        found.append(json.dumps(value)[1:-1].encode())
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for document in documents:
        walk(document)
    return sorted(set(found), key=len, reverse=True)


def _replace_in_chunks(
    body: bytes, chunks: tuple[tuple[float, int], ...], replacements: Sequence[tuple[bytes, bytes]]
) -> tuple[bytes, tuple[tuple[float, int], ...]]:
    """Replace byte strings in a body and move the chunk boundaries with them (a boundary inside a match moves
    to its end, so no chunk ever holds part of a secret)."""
    spans: list[tuple[int, int, bytes]] = []
    for old, new in replacements:
        start = body.find(old)
        while old and start >= 0:
            end = start + len(old)
            if not any(s < end and start < e for s, e, _ in spans):
                spans.append((start, end, new))
            start = body.find(old, end)
    if not spans:
        return body, chunks
    spans.sort()
    out = bytearray()
    pos = 0
    for start, end, new in spans:
        out += body[pos:start] + new
        pos = end
    out += body[pos:]

    def moved(offset: int) -> int:
        shift = 0
        for start, end, new in spans:
            if end <= offset:
                shift += len(new) - (end - start)
            elif start < offset:  # the boundary falls inside a match: it moves to the match's end
                return end + shift + len(new) - (end - start)
        return offset + shift

    new_chunks: list[tuple[float, int]] = []
    old_end = new_end_prev = 0
    for t, size in chunks:
        old_end += size
        new_end = moved(min(old_end, len(body)))
        if new_end > new_end_prev:
            new_chunks.append((t, new_end - new_end_prev))
            new_end_prev = new_end
    if new_end_prev < len(out):
        last_t = new_chunks[-1][0] if new_chunks else 0.0
        new_chunks.append((last_t, len(out) - new_end_prev))
    return bytes(out), tuple(new_chunks)


# --- recording --------------------------------------------------------------------------------------------------


def exception_kind(exc: BaseException, *, got_response: bool) -> str:
    """The Transport's error kind for an httpx or httpx2 exception, by class name (the two libraries share them)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "ConnectTimeout" in names:
        return "timeout-connect"
    if "ReadTimeout" in names:
        return "timeout-idle" if got_response else "timeout-first-byte"
    if "TimeoutException" in names:
        return "timeout"
    if "ConnectError" in names:
        return "connect-error"
    if "RemoteProtocolError" in names:
        text = str(exc)
        if "incomplete chunked read" in text:
            return "truncated-chunked"
        if "peer closed connection" in text or "Server disconnected" in text:
            return "reset"
        return "protocol-error"
    if names & {"ReadError", "WriteError"}:
        return "reset"
    if "DecodingError" in names:
        return "decoding-error"
    if names & {"UnsupportedProtocol", "InvalidURL", "TooManyRedirects"}:
        return "usage-error"
    return "http-error"


def interaction_from_exchange(exchange: Exchange, target: Target, *, test: str = "") -> Interaction:
    """What the Transport did, as an interaction (not yet redacted)."""
    spec: RequestSpec = exchange.request
    request = _request(
        spec.method, relative_path(exchange.url, target.base_url), exchange.request_headers, spec.body_bytes()
    )
    response = None
    if exchange.status is not None:
        response = RecordedResponse(
            status=exchange.status,
            headers=exchange.headers,
            body=exchange.body,
            chunks=exchange.chunks,
            truncated=exchange.body_truncated,
        )
    error = None
    if exchange.error is not None:
        error = RecordedError(exchange.error.kind, exchange.error.message)
    return Interaction(
        request=request,
        response=response,
        error=error,
        duration=exchange.timings.total or 0.0,
        via="transport",
        label=spec.label,
        test=test,
    )


def request_from_wire(
    method: str, url: str, headers: Iterable[tuple[bytes, bytes]] | Iterable[tuple[str, str]], body: bytes, base: str
) -> RecordedRequest:
    """A request as an HTTP client sent it (raw headers), as a RecordedRequest relative to the base URL."""
    decoded = []
    for name, value in headers:
        n = name.decode("latin-1") if isinstance(name, bytes) else name
        v = value.decode("latin-1") if isinstance(value, bytes) else value
        decoded.append((n.lower(), v))
    return _request(method, relative_path(url, base), tuple(decoded), body or None)


def _request(method: str, path: str, headers: Headers, body: bytes | None) -> RecordedRequest:
    """A RecordedRequest; a body too large to keep is reduced to its size and digest."""
    if body is not None and len(body) > MAX_STORED_BODY:
        return RecordedRequest(method.upper(), path, headers, None, body_digest(body), len(body))
    return RecordedRequest(method.upper(), path, headers, body)


def decode_chunks(pieces: Sequence[tuple[float, bytes]], content_encoding: str | None) -> list[tuple[float, bytes]]:
    """Raw (content-encoded) chunks as a client decodes them; an encoding httpx does not decode is left as is."""
    decoders: list[Callable[[bytes], bytes]] = []
    for name in reversed([e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]):
        decoder = _decoder(name)
        if decoder is None:
            return [(t, d) for t, d in pieces if d]
        decoders.append(decoder)
    out = []
    for t, data in pieces:
        for decode in decoders:
            data = decode(data)
        if data:
            out.append((t, data))
    return out


def _decoder(name: str) -> Callable[[bytes], bytes] | None:
    if name == "identity":
        return lambda data: data
    if name == "gzip":
        gz = zlib.decompressobj(zlib.MAX_WBITS | 16)
        return gz.decompress
    if name == "deflate":
        state: dict[str, Any] = {"obj": None}

        def inflate(data: bytes) -> bytes:
            if state["obj"] is None:  # zlib-wrapped, as the RFC says, else raw deflate as some servers send
                try:
                    obj = zlib.decompressobj()
                    out = obj.decompress(data)
                    state["obj"] = obj
                    return out
                except zlib.error:
                    state["obj"] = zlib.decompressobj(-zlib.MAX_WBITS)
            result: bytes = state["obj"].decompress(data)
            return result

        return inflate
    if name == "br":
        try:
            import brotli  # type: ignore[import-untyped]
        except ImportError:
            return None
        br = brotli.Decompressor()
        return cast(Callable[[bytes], bytes], br.process)
    return None


class RecordingTransport(Transport):
    """A Transport that also hands every exchange to a Recorder."""

    def __init__(self, target: Target, recorder: Recorder, **options: Any) -> None:
        super().__init__(target, **options)
        self.recorder = recorder

    def send(self, spec: RequestSpec) -> Exchange:
        """Send as the Transport does, and record what happened."""
        slot = self.recorder.reserve()
        exchange = super().send(spec)
        self.recorder.put(slot, interaction_from_exchange(exchange, self.target, test=self.recorder.context))
        return exchange


class Recorder:
    """Collects the interactions of a run (Transport and SDK requests, in the order they were sent) as a cassette."""

    def __init__(self, target: Target, *, options: Mapping[str, Any] | None = None, note: str = "") -> None:
        self.target = target
        self.options = dict(options or {})
        self.note = note
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        # The pytest node id (or any label) of what is running now, kept with each interaction.
        self.context = ""
        self._slots: dict[int, Interaction | None] = {}
        self._pending: dict[int, Callable[[], Interaction]] = {}
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def transport(self, **options: Any) -> RecordingTransport:
        """A Transport for the target that records into this recorder."""
        return RecordingTransport(self.target, self, **options)

    def reserve(self) -> int:
        """A slot for a request about to be sent (interactions keep the order requests were sent in)."""
        with self._lock:
            slot = next(self._counter)
            self._slots[slot] = None
            return slot

    def put(self, slot: int, interaction: Interaction) -> None:
        """Fill a reserved slot."""
        with self._lock:
            self._slots[slot] = interaction
            self._pending.pop(slot, None)

    def __len__(self) -> int:
        return sum(1 for item in self._slots.values() if item is not None) + len(self._pending)

    def cassette(self) -> Cassette:
        """The recording so far, redacted (a stream the SDK never finished is kept as far as it was read)."""
        with self._lock:
            for slot, finish in list(self._pending.items()):
                self._slots[slot] = finish()
            items = [item for _, item in sorted(self._slots.items()) if item is not None]
        redactor = Redactor(self.target.api_key.reveal() if self.target.api_key is not None else None)
        target = RecordedTarget.of(self.target)
        return Cassette(
            target=replace(target, base_url=redactor.text(target.base_url)),
            interactions=tuple(redactor.interaction(item) for item in items),
            recorded_at=self.started_at,
            options={k: redactor.text(v) if isinstance(v, str) else v for k, v in self.options.items()},
            sdk_versions=_sdk_versions(),
            note=redactor.text(self.note),
        )

    def write(self, path: str | Path) -> Path:
        """Write the redacted cassette; refuses to write a file that would still hold the key."""
        text = render_cassette(self.cassette())
        key = self.target.api_key.reveal() if self.target.api_key is not None else None
        if key and key in text:  # every path above masks it: this is the last line of defence
            raise HarnessError("the cassette still contains the key after redaction; nothing was written")
        from conformance.reporting.files import write_text_atomic

        return write_text_atomic(cassette_path(path), text)

    @contextmanager
    def sdk_requests(self) -> Iterator[None]:
        """Record the official SDKs' requests too (their httpx2 transport is wrapped while this is active)."""
        try:
            import httpx2
        except ImportError:  # SDKs built on httpx: their requests are not recorded
            yield
            return
        original = httpx2.HTTPTransport.handle_request
        recorder = self

        def handle_request(transport: httpx2.HTTPTransport, request: httpx2.Request) -> httpx2.Response:
            slot = recorder.reserve()
            body = request.read()
            sent = request_from_wire(
                request.method, str(request.url), request.headers.raw, body, recorder.target.base_url
            )
            started = time.perf_counter()
            try:
                response = original(transport, request)
            except httpx2.TransportError as exc:
                error = RecordedError(exception_kind(exc, got_response=False), str(exc), type(exc).__name__)
                recorder.put(
                    slot, Interaction(sent, None, error, time.perf_counter() - started, "sdk", "", recorder.context)
                )
                raise
            tee = _tee_stream(recorder, slot, sent, response, started)
            response.stream = tee
            return response

        httpx2.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            httpx2.HTTPTransport.handle_request = original  # type: ignore[method-assign]

    def _pend(self, slot: int, finish: Callable[[], Interaction]) -> None:
        with self._lock:
            self._pending[slot] = finish


def _tee_stream(
    recorder: Recorder, slot: int, sent: RecordedRequest, response: httpx2.Response, started: float
) -> httpx2.SyncByteStream:
    """The SDK response's byte stream, passed through unchanged while each chunk and its arrival are kept."""
    import httpx2

    inner = response.stream
    pieces: list[tuple[float, bytes]] = []
    state: dict[str, Any] = {"error": None, "done": False}
    headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.headers.raw)
    context = recorder.context

    def finish() -> Interaction:
        decoded = decode_chunks(pieces, response.headers.get("content-encoding"))
        body = b"".join(d for _, d in decoded)
        recorded = RecordedResponse(response.status_code, headers, body, tuple((t, len(d)) for t, d in decoded))
        exc = state["error"]
        error = (
            None if exc is None else RecordedError(exception_kind(exc, got_response=True), str(exc), type(exc).__name__)
        )
        end = pieces[-1][0] if pieces else 0.0
        duration = state.get("duration", end)
        return Interaction(sent, recorded, error, duration, "sdk", "", context)

    def complete() -> None:
        if not state["done"]:
            state["done"] = True
            state["duration"] = time.perf_counter() - started
            recorder.put(slot, finish())

    class Tee(httpx2.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            try:
                for chunk in cast(Iterable[bytes], inner):
                    pieces.append((time.perf_counter() - started, chunk))
                    yield chunk
            except httpx2.TransportError as exc:
                state["error"] = exc
                complete()
                raise
            complete()

        def close(self) -> None:
            try:
                if isinstance(inner, httpx2.SyncByteStream):
                    inner.close()
            finally:
                complete()

    recorder._pend(slot, finish)
    return Tee()


def _sdk_versions() -> dict[str, str]:
    """The SDK versions a recording was made with (a replay's SDK requests must match theirs)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("anthropic", "openai"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
