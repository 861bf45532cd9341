"""The only place that does I/O: sends a RequestSpec to a Target and records an Exchange."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType

import httpx

from conformance import __version__
from conformance.exchange import CREDENTIAL_HEADERS, WRONG_KEY, Exchange, RequestSpec, Timings, TransportError
from conformance.target import MASK, Target

USER_AGENT = f"gateway-conformance/{__version__}"


def _is_event_stream(response: httpx.Response) -> bool:
    media_type: str = response.headers.get("content-type", "")
    return media_type.split(";", 1)[0].strip().lower() == "text/event-stream"


class Transport:
    """Sends requests to one target; network failures become Exchange.error, never exceptions."""

    def __init__(
        self, target: Target, *, client: httpx.Client | None = None, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.target = target
        # Injectable so a replay can hand out the recorded arrival times instead of the wall clock.
        self.clock = clock
        self._owns_client = client is None
        t = target.timeouts
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(connect=t.connect, read=t.first_byte, write=t.idle, pool=t.connect),
            follow_redirects=False,  # a redirect must never carry the key to another origin
            trust_env=False,  # environment proxies would send loopback traffic elsewhere
        )

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
        limits = self.target.limits
        t0 = self.clock()
        deadline = t0 + timeouts.total
        status: int | None = None
        headers: tuple[tuple[str, str], ...] = ()
        body = bytearray()
        chunks: list[tuple[float, int]] = []
        truncated = False
        reader: StreamReader | None = None
        error: TransportError | None = None
        ttfb: float | None = None
        cause = "eof"
        try:
            request = self._client.build_request(
                spec.method, url, headers=self.headers_for(spec), content=spec.body_bytes()
            )
            response = self._client.send(request, stream=True)
            try:
                status = response.status_code
                headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.headers.raw)
                if _is_event_stream(response) or (spec.stream and 200 <= status < 300):
                    reader = StreamReader(
                        spec.flavour, t_start=t0, max_events=limits.max_events, expect_usage=_asks_usage(spec)
                    )
                # From here on the read timeout bounds the silence between chunks, not the wait for headers.
                timeout_ext = request.extensions.get("timeout")
                if isinstance(timeout_ext, dict):
                    timeout_ext["read"] = min(timeouts.idle, max(deadline - self.clock(), 0.001))
                # No chunk size: a sized iterator holds bytes back until it fills, which would both hide a cut
                # stream's last events and flatten every arrival time (TTFT, ITL) into the total.
                for chunk in response.iter_bytes():
                    now = self.clock()
                    if ttfb is None:
                        ttfb = now - t0
                    chunks.append((now - t0, len(chunk)))
                    if reader is not None:
                        reader.feed(chunk, now)
                    room = limits.max_body_bytes - len(body)
                    if room > 0:
                        body += chunk[:room]
                    if len(chunk) > room:
                        truncated = True
                        if reader is None or len(body) >= limits.max_body_bytes:
                            error = TransportError(
                                "too-large", f"response exceeded {limits.max_body_bytes} bytes and was cut off"
                            )
                            break
                    if now > deadline:
                        error = TransportError(
                            "timeout-total", f"the exchange took longer than {timeouts.total:g} s and was cut off"
                        )
                        break
            finally:
                response.close()
        except httpx.ReadTimeout:
            if status is None:
                error = TransportError("timeout-first-byte", f"no response within {timeouts.first_byte:g} s")
            else:
                error = TransportError("timeout-idle", f"no data for {timeouts.idle:g} s in the middle of the body")
        except httpx.HTTPError as exc:
            error = TransportError(_error_kind(exc, status), self.target.mask(str(exc)) or type(exc).__name__)
        if error is not None:
            cause = error.kind
        t_end = self.clock()
        stream = reader.close(t_end, cause=cause) if reader is not None else None
        return Exchange(
            request=spec,
            url=url,
            request_headers=shown,
            status=status,
            headers=headers,
            body=bytes(body),
            body_truncated=truncated,
            chunks=tuple(chunks),
            stream=stream,
            error=error,
            timings=Timings(ttfb=ttfb, total=t_end - t0),
        )


def _asks_usage(spec: RequestSpec) -> bool:
    """Whether an OpenAI request asked for the final usage chunk (stream_options.include_usage)."""
    body = spec.json if isinstance(spec.json, dict) else {}
    options = body.get("stream_options")
    return spec.flavour == "openai" and isinstance(options, dict) and options.get("include_usage") is True


def _error_kind(exc: httpx.HTTPError, status: int | None) -> str:
    """A stable name for a transport failure."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "timeout-connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect-error"
    if isinstance(exc, httpx.RemoteProtocolError):
        # Before the status line the server broke HTTP itself; after it, the body was cut short.
        return "reset" if status is not None else "protocol-error"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return "reset"
    if isinstance(exc, httpx.DecodingError):
        return "decoding-error"
    if isinstance(exc, httpx.TooManyRedirects | httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "usage-error"
    return "http-error"
