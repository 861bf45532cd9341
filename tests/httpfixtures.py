"""Recorded HTTP responses (`curl -i` captures) and their offline replay through respx into a real Transport.

A fixture file is what `curl -sS -i` printed, optionally wrapped in `#` comment lines (the format of the
LiteLLM captures in /work/shared/gateways/litellm/samples/ and of tests/fixtures/http/, see its README):

    ### probe request: POST /v1/messages ...      <- comment block: `#` lines before the status line
    ### curl exit: 0
    HTTP/1.1 200 OK                               <- status line, CRLF or LF
    content-type: application/json                <- headers as received, in order, duplicates kept
                                                  <- blank line
    {"id": "msg_..."}                             <- body bytes exactly as received

The body runs to content-length when the response has one, else to the end of the file. Interim 1xx
responses (`HTTP/1.1 100 Continue`) are parsed and skipped by `load`. A file may hold several responses one
after another (each may have its own comment block) provided every one but the last has a content-length.
Comment lines after a body are trailer comments of that response; a trailing `\\n### ...` block after a body
without content-length (the LiteLLM capture script appends `\\n### curl exit: N\\n`) is a trailer too, not body.
`### key: value` comments are readable with `Recorded.comment(key)`. `### curl exit: 18` (or 56, 92: the
transfer was cut) replays as a connection reset after the recorded bytes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
import respx

from conformance.exchange import Exchange, RequestSpec
from conformance.probes import Probe, basic_body, post_messages
from conformance.replay import httpx2_through
from conformance.target import Target
from conformance.transport import Transport

if TYPE_CHECKING:
    from conformance.sdk import SdkCall

__all__ = [
    "CUT_EXITS",
    "FIXTURES",
    "FIXTURE_MODEL",
    "Recorded",
    "Replayer",
    "fixture",
    "load",
    "parse",
    "property_invalid_probe",
    "property_valid_probe",
    "rate_limit_probe",
    "request_digest",
]

FIXTURES = Path(__file__).parent / "fixtures" / "http"
# The model the fixtures were recorded with (it is in every request body, hence in every request digest).
FIXTURE_MODEL = "claude-sonnet-4-6"
# curl exit codes for a transfer cut short: 18 partial file, 56 failure receiving, 92 HTTP/2 stream error.
CUT_EXITS = frozenset({18, 56, 92})
# Framing headers: the replayed httpx.Response frames its own body.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
_STATUS = re.compile(rb"HTTP/(\d(?:\.\d)?) (\d{3})(?: ([^\r\n]*))?\r?\n")
_TRAILER = re.compile(rb"(?:\n#[^\n]*)+\n?\Z")


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded response: status, headers (as received), body bytes, and the comments around it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    reason: str = ""
    http_version: str = "1.1"
    comments: tuple[str, ...] = ()
    source: str = "<bytes>"
    newline: bytes = b"\r\n"

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    def comment(self, key: str) -> str | None:
        """The value of a `### key: value` comment, or None."""
        prefix = key.lower() + ":"
        for line in self.comments:
            if line.lower().startswith(prefix):
                return line[len(prefix) :].strip()
        return None

    @property
    def curl_exit(self) -> int | None:
        """The curl exit status the capture recorded, when it did."""
        value = self.comment("curl exit")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def cut(self) -> bool:
        """Whether the transfer was cut short (replayed as a reset after the body)."""
        return self.curl_exit in CUT_EXITS

    def with_body(self, body: bytes) -> Recorded:
        """A copy with another body (content-length follows it when the response had one)."""
        return replace(self, body=body)

    def with_header(self, name: str, value: str | None) -> Recorded:
        """A copy with a header replaced in place (appended when absent), or removed when value is None."""
        lname = name.lower()
        headers: list[tuple[str, str]] = []
        seen = False
        for key, old in self.headers:
            if key.lower() != lname:
                headers.append((key, old))
            elif value is not None and not seen:
                headers.append((key, value))
                seen = True
        if value is not None and not seen:
            headers.append((lname, value))
        return replace(self, headers=tuple(headers))

    def to_bytes(self) -> bytes:
        """The response in the fixture format (comments, status line, headers, blank line, body)."""
        nl = self.newline
        out = bytearray()
        for line in self.comments:
            out += f"### {line}\n".encode()
        status = f"HTTP/{self.http_version} {self.status}" + (f" {self.reason}" if self.reason else "")
        out += status.encode("latin-1") + nl
        for key, value in self.headers:
            if key.lower() == "content-length":
                value = str(len(self.body))
            out += f"{key}: {value}".encode("latin-1") + nl
        out += nl
        out += self.body
        return bytes(out)

    def to_response(self) -> httpx.Response:
        """An httpx.Response that replays this one (a cut transfer raises RemoteProtocolError after the body)."""
        headers = [(k, v) for k, v in self.headers if k.lower() not in _FRAMING]
        if self.cut:
            return httpx.Response(self.status, headers=headers, stream=_CutStream(self.body))
        return httpx.Response(self.status, headers=headers, content=self.body)


class _CutStream(httpx.SyncByteStream):
    """The recorded bytes, then the connection drops, as httpcore reports it."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        if self._body:
            yield self._body
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def _lines(data: bytes, start: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line with its terminator) from start on."""
    pos = start
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        yield pos, data[pos:end]
        pos = end


def parse(data: bytes, *, source: str = "<bytes>") -> list[Recorded]:
    """Every response in a capture, in order (interim 1xx included); ValueError naming the problem otherwise."""
    responses: list[Recorded] = []
    pos = 0
    while True:
        comments: list[str] = []
        # The comment block (and blank lines) before a status line.
        while pos < len(data):
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end + 1
            line = data[pos:end]
            if line.startswith(b"#"):
                comments.append(line.decode("utf-8").lstrip("#").strip())
            elif line.strip():
                break
            pos = end
        if pos >= len(data):
            if comments and responses:
                last = responses[-1]
                responses[-1] = replace(last, comments=last.comments + tuple(comments))
            break
        match = _STATUS.match(data, pos)
        if match is None:
            line = data[pos : data.find(b"\n", pos) if b"\n" in data[pos:] else len(data)]
            raise ValueError(f"{source}: expected an HTTP status line at byte {pos}, got {line[:80]!r}")
        newline = b"\r\n" if match.group(0).endswith(b"\r\n") else b"\n"
        pos = match.end()
        headers: list[tuple[str, str]] = []
        for offset, line in _lines(data, pos):
            pos = offset + len(line)
            text = line.rstrip(b"\r\n")
            if not text:
                break
            if line[:1] in (b" ", b"\t"):
                raise ValueError(f"{source}: folded header line at byte {offset} is not supported")
            name, sep, value = text.decode("latin-1").partition(":")
            if not sep:
                raise ValueError(f"{source}: header line without a colon at byte {offset}: {text[:80]!r}")
            headers.append((name.strip(), value.strip()))
        else:
            raise ValueError(f"{source}: the headers of the response at byte {match.start()} never end")
        status = int(match.group(2))
        record = Recorded(
            status=status,
            headers=tuple(headers),
            body=b"",
            reason=(match.group(3) or b"").decode("latin-1"),
            http_version=match.group(1).decode(),
            comments=tuple(comments),
            source=source,
            newline=newline,
        )
        length = record.header("content-length")
        if 100 <= status < 200:
            responses.append(record)
            continue
        if length is not None and length.isdigit() and pos + int(length) <= len(data):
            body = data[pos : pos + int(length)]
            pos += int(length)
            responses.append(replace(record, body=body))
            continue
        # No usable content-length: the body runs to the end of the file, less a trailing comment block.
        rest = data[pos:]
        trailer = _TRAILER.search(rest)
        if trailer is not None:
            body = rest[: trailer.start()]
            extra = tuple(
                t.decode("utf-8").lstrip("#").strip() for t in rest[trailer.start() :].splitlines() if t.strip()
            )
        else:
            body, extra = rest, ()
        responses.append(replace(record, body=body, comments=record.comments + extra))
        break
    if not responses:
        raise ValueError(f"{source}: no HTTP response in the file")
    return responses


def load(path: str | Path) -> Recorded:
    """The final response of a capture file (interim 1xx responses skipped); ValueError if there are several."""
    path = Path(path)
    final = [r for r in parse(path.read_bytes(), source=str(path)) if not 100 <= r.status < 200]
    if len(final) != 1:
        raise ValueError(f"{path}: expected one final response, found {len(final)}")
    return final[0]


def fixture(name: str) -> Recorded:
    """A fixture by its path under tests/fixtures/http/, e.g. "messages_basic/json.txt"."""
    return load(FIXTURES / name)


def request_digest(spec: RequestSpec) -> str:
    """What a fixture's `### probe request:` comment says: method, path and the sha256 of the exact body bytes."""
    body = spec.body_bytes() or b""
    return f"{spec.method} {spec.path} sha256:{hashlib.sha256(body).hexdigest()[:16]}"


@dataclass
class Replayer:
    """Sends RequestSpecs through a real Transport whose client is answered by respx from recorded responses.

    Each send mounts one respx route for exactly that method and URL, answered by the fixture; the route must
    be called once, and any other request fails (the router is strict and the client has no network transport).
    """

    target: Target
    check_request: bool = True
    router: respx.MockRouter = field(init=False)
    transport: Transport = field(init=False)
    sent: list[Exchange] = field(init=False, default_factory=list)
    _client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.router = respx.MockRouter(assert_all_called=True, assert_all_mocked=True, base_url=self.target.base_url)
        self._client = httpx.Client(transport=httpx.MockTransport(self.router.handler), follow_redirects=False)
        self.transport = Transport(self.target, client=self._client)

    def __enter__(self) -> Replayer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the client."""
        self._client.close()

    def send(self, spec: RequestSpec, recorded: Recorded) -> Exchange:
        """Send one request; respx answers it with the recorded response."""
        if self.check_request:
            recorded_for = recorded.comment("probe request")
            if recorded_for is not None and recorded_for != request_digest(spec):
                raise AssertionError(
                    f"{recorded.source} was recorded for {recorded_for!r}, but the probe sends {request_digest(spec)!r}"
                )
        url = self.target.url(spec.path)
        route = self.router.route(method=spec.method, url=url).mock(return_value=recorded.to_response())
        try:
            exchange = self.transport.send(spec)
        finally:
            self.router.clear()
        if route.call_count != 1:
            raise AssertionError(f"the respx route for {spec.method} {url} was called {route.call_count} times")
        self.sent.append(exchange)
        return exchange

    def send_steps(
        self, probe: Probe, recorded: Mapping[str, Recorded | Sequence[Recorded]]
    ) -> tuple[dict[str, Exchange], dict[str, Any]]:
        """A probe's steps in order, as ConformanceRun.send does: (exchanges, observations of SDK steps).

        Every step sent must have a recording; an SDK step has the list of responses its requests get, in order.
        """
        from conformance.sdk import SdkCall

        exchanges: dict[str, Exchange] = {}
        observations: dict[str, Any] = {}
        for role, build in probe.steps:
            step = build(self.target, exchanges)
            if step is None:
                continue
            if role not in recorded:
                raise AssertionError(f"probe {probe.id} sends step {role!r} but no recording was given for it")
            given = recorded[role]
            if isinstance(step, SdkCall):
                observations[role] = self.run_sdk(step, [given] if isinstance(given, Recorded) else list(given))
            else:
                if not isinstance(given, Recorded):
                    raise AssertionError(f"step {role!r} of probe {probe.id} is one request: give one recording")
                exchanges[role] = self.send(step, given)
        unused = set(recorded) - set(exchanges) - set(observations)
        if unused:
            raise AssertionError(f"probe {probe.id} did not send step(s) {sorted(unused)} that have recordings")
        return exchanges, observations

    def run_sdk(self, call: SdkCall, recordings: Sequence[Recorded]) -> Any:
        """Run an official-SDK scenario with respx answering its requests from the recordings, in order."""
        queue = list(recordings)
        problems: list[str] = []

        def answer(request: httpx.Request) -> httpx.Response:
            if not queue:
                problems.append(f"unexpected request {request.method} {request.url}")
                return httpx.Response(599)
            recorded = queue.pop(0)
            expected = (recorded.comment("probe request") or "").split()[:2]
            seen = [request.method, request.url.raw_path.decode()]
            if expected and expected != seen:
                problems.append(f"{recorded.source} answers {' '.join(expected)}, the SDK sent {' '.join(seen)}")
            return recorded.to_response()

        router = respx.MockRouter(assert_all_called=True, assert_all_mocked=True)
        route = router.route(url__startswith=self.target.base_url + "/").mock(side_effect=answer)
        with httpx2_through(router.handler):
            outcome = call.execute(self.target)
        if problems or queue:
            raise AssertionError("; ".join(problems) or f"the SDK left {len(queue)} recording(s) unused")
        if route.call_count != len(recordings):
            raise AssertionError(f"respx answered {route.call_count} SDK requests, expected {len(recordings)}")
        return outcome


# Scenarios the suite builds outside conformance.probes.PROBES (conformance/suites/test_rate_limits.py and
# test_properties.py), fixed to a few steps so they can be recorded.
RATE_LIMIT_CHECKS = ("rate_limit_retry_after", "rate_limit_envelope", "rate_limit_headers_reported")


def _burst_body(target: Target) -> dict[str, object]:
    return {**basic_body(target), "max_tokens": 1}


def rate_limit_probe(*, after_wait: bool = True) -> Probe:
    """The suite's rate-limit probe: a request answered 429, then (optionally) one sent after retry-after."""
    steps = [("burst-0", post_messages(_burst_body, label="burst"))]
    checks: Sequence[str] = RATE_LIMIT_CHECKS
    if after_wait:
        steps.append(("after_wait", post_messages(_burst_body, label="after retry-after")))
        checks = (*RATE_LIMIT_CHECKS, "rate_limit_retry_after_honest")
    return Probe("rate_limits", "messages", "Every 429 answer met during the run", tuple(steps), tuple(checks))


def property_valid_probe() -> Probe:
    """Two fixed 'generated' valid requests: one plain, one streamed."""
    return Probe(
        "property_valid",
        "messages",
        "Generated valid requests",
        (
            ("example0", post_messages(basic_body, label="valid")),
            ("example1", post_messages(basic_body, stream=True, label="valid")),
        ),
        ("property_valid_requests_served",),
    )


def property_invalid_probe() -> Probe:
    """Two fixed single-rule violations, labelled as the strategies label them."""

    def missing_max_tokens(target: Target) -> dict[str, object]:
        body = basic_body(target)
        del body["max_tokens"]
        return body

    def temperature(target: Target) -> dict[str, object]:
        return {**basic_body(target), "temperature": 1.5}

    return Probe(
        "property_invalid",
        "messages",
        "Generated single-rule violations",
        (
            ("example0", post_messages(missing_max_tokens, label="max_tokens missing")),
            ("example1", post_messages(temperature, label="temperature above 1")),
        ),
        ("property_invalid_requests_rejected",),
    )
