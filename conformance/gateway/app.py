"""The reference gateway as a raw ASGI application: routing, auth, limits, validation, latency and faults."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import replace
from datetime import date
from typing import Any, Literal
from urllib.parse import parse_qs

from conformance.gateway.chat import chunk_frames, completion_json, prompt_from_chat
from conformance.gateway.config import GatewayConfig
from conformance.gateway.cues import NO_CUES, take_cues
from conformance.gateway.hostile import HostileFaults
from conformance.gateway.messages import (
    FINAL,
    TOKEN,
    Frame,
    StreamStyle,
    message_json,
    prompt_from_request,
    stream_frames,
)
from conformance.gateway.model import Prompt, Reply, Signer, ThinkingBlock, ToolUseBlock, catalogue, generate, new_id
from conformance.gateway.ratelimit import Decision, RateLimiter
from conformance.gateway.tokens import count_anthropic_input, count_openai_input
from conformance.gateway.validation import RequestRejected, check_anthropic_request, check_openai_request
from conformance.schemas import status_error_types, validator

__all__ = ["GatewayApp", "GatewayStats"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Flavour = Literal["anthropic", "openai", "internal"]

log = logging.getLogger("conformance.gateway")

_CUT_MESSAGE = "ASGI callable returned without completing response."
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_JSON = (b"content-type", b"application/json")
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


class _QuietStreamCuts(logging.Filter):
    """uvicorn reports a response we end on purpose (the stream-cut fault) as an error; it is not one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _CUT_MESSAGE


# One instance: Logger.addFilter ignores a filter it already has, so starting many gateways adds it once.
_QUIET_STREAM_CUTS = _QuietStreamCuts()


class GatewayStats:
    """Counters of what the gateway served (GET /_reference/stats)."""

    __slots__ = (
        "by_endpoint",
        "by_status",
        "rate_limited",
        "requests",
        "started",
        "streams",
        "streams_completed",
        "streams_disconnected",
        "streams_truncated",
    )

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.requests = 0
        self.streams = 0
        self.streams_completed = 0
        self.streams_truncated = 0
        self.streams_disconnected = 0
        self.rate_limited = 0
        self.by_status: dict[str, int] = {}
        self.by_endpoint: dict[str, int] = {}

    def snapshot(self, faults: tuple[str, ...] = ()) -> dict[str, Any]:
        """The counters as a JSON-ready dict."""
        return {
            "requests": self.requests,
            "streams": self.streams,
            "streams_completed": self.streams_completed,
            "streams_truncated": self.streams_truncated,
            "streams_disconnected": self.streams_disconnected,
            "rate_limited": self.rate_limited,
            "by_status": dict(self.by_status),
            "by_endpoint": dict(self.by_endpoint),
            "faults": list(faults),
            "uptime_s": round(time.monotonic() - self.started, 3),
        }


class _Exchange:
    """Per-request state that error rendering needs."""

    __slots__ = ("cues", "endpoint", "flavour", "limit", "request_id", "status", "stream_requested", "t0")

    def __init__(self, t0: float, flavour: Flavour, endpoint: str) -> None:
        self.t0 = t0
        self.flavour = flavour
        self.endpoint = endpoint
        self.request_id = new_id("req_")
        self.stream_requested = False
        self.limit: Decision | None = None
        self.status = 0
        self.cues = NO_CUES  # upstream cues in the last user message (cues.py)


def _valid_version(value: bytes) -> bool:
    text = value.decode("latin-1")
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _duration(seconds: float) -> str:
    """OpenAI's reset format: 1s, 6m0s, 1h2m3s."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class GatewayApp:
    """ASGI 3 application serving the Anthropic Messages API and the OpenAI chat surface, deterministically."""

    def __init__(self, config: GatewayConfig) -> None:
        if config.api_key is None:
            raise ValueError("GatewayApp needs a concrete api_key (GatewayConfig.with_key())")
        self.config = config
        self.stats = GatewayStats()
        self._key = config.api_key.encode()
        self._signer = Signer(config.api_key)
        self._models = catalogue(config.extra_models)
        self._model_ids = frozenset(model.id for model in self._models)
        self._status_types = status_error_types()
        self._org = config.organization_id.encode()
        self._ttft = config.ttft_ms / 1000.0
        self._itl = config.itl_ms / 1000.0
        self._limiter = (
            RateLimiter(config.rate_limit_rpm, config.rate_limit_window_s)
            if config.rate_limit_rpm is not None
            else None
        )
        self._fault_429 = config.has("invented-429-type") or config.has("429-no-retry-after")
        self._generation_count = 0
        self._style = StreamStyle(
            data_only=config.has("data-only"),
            ending=(
                "none"
                if config.has("missing-message-stop")
                else "done"
                if config.has("done-instead-of-stop")
                else "stop+done"
                if config.has("extra-done")
                else "stop"
            ),
            delta_usage=(
                "none" if config.has("missing-usage") else "output-only" if config.has("start-input-zero") else "full"
            ),
            start_input_zero=config.has("start-input-zero"),
            index_offset=1 if config.has("noncontiguous-indices") else 0,
            empty_data_event=config.has("empty-data-events"),
        )
        self._routes: dict[str, tuple[str, Callable[[_Exchange, Scope, Receive, Send], Awaitable[None]], Flavour]] = {
            "/v1/messages": ("POST", self._messages, "anthropic"),
            "/v1/messages/count_tokens": ("POST", self._count_tokens, "anthropic"),
            "/v1/models": ("GET", self._list_models, "anthropic"),
            "/v1/chat/completions": ("POST", self._chat, "openai"),
            "/_reference/stats": ("GET", self._stats_endpoint, "internal"),
        }
        if config.has("count-tokens-404"):
            del self._routes["/v1/messages/count_tokens"]
        # Compile the schemas now, not on the first request.
        for name in ("anthropic/messages-request", "anthropic/count-tokens-request", "openai/chat-completion-request"):
            validator(name)
        logging.getLogger("uvicorn.error").addFilter(_QUIET_STREAM_CUTS)
        # A hostile fault (hostile.py) answers every /v1/ request in place of everything below.
        self._hostile = HostileFaults.for_config(config)

    # ------------------------------------------------------------------ ASGI entry point

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        if self._hostile is not None and await self._hostile(scope, receive, send):
            return
        t0 = time.perf_counter()
        path: str = scope["path"]
        route = self._routes.get(path)
        endpoint = path
        if route is None and path.startswith("/v1/models/") and len(path) > 11 and "/" not in path[11:]:
            route = ("GET", self._get_model, "anthropic")
            endpoint = "/v1/models/{model_id}"
        flavour: Flavour = route[2] if route else ("openai" if path.startswith("/v1/chat/") else "anthropic")
        exchange = _Exchange(t0, flavour, endpoint if route else "(unknown)")
        if flavour != "internal":
            self.stats.requests += 1
            self.stats.by_endpoint[exchange.endpoint] = self.stats.by_endpoint.get(exchange.endpoint, 0) + 1
        try:
            if route is None:
                raise RequestRejected(404, "Not Found")
            if scope["method"] != route[0]:
                await self._error(exchange, send, RequestRejected(405, "Method Not Allowed"), allow=route[0])
                return
            await route[1](exchange, scope, receive, send)
        except RequestRejected as rejected:
            await self._error(exchange, send, rejected)
        except Exception:
            log.exception("reference gateway: unhandled error on %s %s", scope["method"], path)
            if not exchange.status:
                await self._error(exchange, send, RequestRejected(500, "Internal server error"))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ response plumbing

    def _base_headers(self, exchange: _Exchange) -> list[tuple[bytes, bytes]]:
        rid = exchange.request_id.encode()
        headers = [(b"request-id", rid), (b"anthropic-organization-id", self._org)]
        if exchange.flavour == "openai":
            headers.append((b"x-request-id", rid))
        decision = exchange.limit
        if decision is not None:
            reset = RateLimiter.reset_timestamp(decision).encode()
            if exchange.flavour == "openai":
                headers += [
                    (b"x-ratelimit-limit-requests", str(decision.limit).encode()),
                    (b"x-ratelimit-remaining-requests", str(decision.remaining).encode()),
                    (b"x-ratelimit-reset-requests", _duration(decision.reset_after_s).encode()),
                ]
            else:
                headers += [
                    (b"anthropic-ratelimit-requests-limit", str(decision.limit).encode()),
                    (b"anthropic-ratelimit-requests-remaining", str(decision.remaining).encode()),
                    (b"anthropic-ratelimit-requests-reset", reset),
                ]
        return headers

    async def _start(self, exchange: _Exchange, send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        exchange.status = status
        if exchange.flavour != "internal":
            key = str(status)
            self.stats.by_status[key] = self.stats.by_status.get(key, 0) + 1
        await send({"type": "http.response.start", "status": status, "headers": headers})

    async def _json(
        self,
        exchange: _Exchange,
        send: Send,
        status: int,
        payload: object,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = _encode(payload).encode()
        headers = self._base_headers(exchange)
        headers += [_JSON, (b"content-length", str(len(body)).encode())]
        if extra:
            headers += extra
        await self._start(exchange, send, status, headers)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _error(
        self, exchange: _Exchange, send: Send, rejected: RequestRejected, *, allow: str | None = None
    ) -> None:
        status = rejected.status
        extra: list[tuple[bytes, bytes]] = []
        if allow:
            extra.append((b"allow", allow.encode()))
        if status == 429:
            self.stats.rate_limited += 1
            extra.append((b"x-should-retry", b"true"))
            if rejected.retry_after is not None and not self.config.has("429-no-retry-after"):
                extra.append((b"retry-after", str(rejected.retry_after).encode()))
        elif status >= 500:
            extra.append((b"x-should-retry", b"true"))

        if exchange.flavour == "openai":
            payload: dict[str, Any] = {
                "error": {
                    "message": rejected.message,
                    "type": _openai_error_type(status),
                    "param": rejected.param,
                    "code": rejected.code or _openai_error_code(status),
                }
            }
            await self._json(exchange, send, status, payload, extra)
            return
        error_type = self._status_types.get(status, "invalid_request_error" if status < 500 else "api_error")
        if status == 429 and self.config.has("invented-429-type"):
            error_type = "rate_limit_exceeded"
        if self.config.has("openai-error-envelope"):
            payload = {
                "error": {"message": rejected.message, "type": error_type, "param": rejected.param, "code": str(status)}
            }
        else:
            payload = {
                "type": "error",
                "error": {"type": error_type, "message": rejected.message},
                "request_id": exchange.request_id,
            }
        if self.config.has("error-as-200") and exchange.stream_requested and exchange.endpoint == "/v1/messages":
            data = json.dumps(payload, separators=(",", ":")).encode()
            frame = (
                b"data: " + data + b"\n\n" if self.config.has("data-only") else b"event: error\ndata: " + data + b"\n\n"
            )
            self.stats.streams += 1
            await self._start(exchange, send, 200, self._base_headers(exchange) + _SSE_HEADERS + extra)
            await send({"type": "http.response.body", "body": frame, "more_body": False})
            return
        await self._json(exchange, send, status, payload, extra)

    # ------------------------------------------------------------------ request gates

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.config.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise RequestRejected(400, "content-length: invalid header value") from None
                if declared > limit:
                    # Answer before reading a byte: uvicorn discards the rest of the body on its own.
                    raise RequestRejected(413, f"Request exceeds the maximum allowed number of bytes ({limit})")
                break
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            if len(body) > limit:
                raise RequestRejected(413, f"Request exceeds the maximum allowed number of bytes ({limit})")
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body"):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestRejected(400, "client disconnected before the body was complete")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestRejected(413, f"Request exceeds the maximum allowed number of bytes ({limit})")
            chunks.append(chunk)
        return b"".join(chunks)

    def _authenticate(self, exchange: _Exchange, scope: Scope) -> str:
        """The caller's key (the limiter's bucket name), or RequestRejected 401."""
        api_key: bytes | None = None
        bearer: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                api_key = value
            elif name == b"authorization":
                bearer = value
        if self.config.has("bearer-only"):
            api_key = None
        presented = api_key
        if presented is None and bearer is not None:
            scheme, _, token = bearer.partition(b" ")
            presented = token.strip() if scheme.lower() == b"bearer" else b""
        if self.config.has("no-auth"):
            return (presented or b"anonymous").decode("latin-1")
        openai = exchange.flavour == "openai"
        if presented is None:
            message = (
                "You didn't provide an API key. Provide it in the Authorization header (Bearer auth)."
                if openai
                else "x-api-key header is required"
            )
            raise RequestRejected(401, message, code="invalid_api_key" if openai else None)
        if not hmac.compare_digest(presented, self._key):
            message = "Incorrect API key provided." if openai else "invalid x-api-key"
            raise RequestRejected(401, message, code="invalid_api_key" if openai else None)
        return presented.decode("latin-1")

    @staticmethod
    def _check_version(scope: Scope) -> None:
        for name, value in scope["headers"]:
            if name == b"anthropic-version":
                if not _valid_version(value):
                    shown = value.decode("latin-1")[:64]
                    raise RequestRejected(
                        400, f"anthropic-version: {shown!r} is not a valid version (expected a date such as 2023-06-01)"
                    )
                return
        raise RequestRejected(400, "anthropic-version: header is required")

    def _rate_limit(self, exchange: _Exchange, key: str, *, generation: bool) -> None:
        if self._limiter is not None:
            decision = self._limiter.acquire(key) if generation else self._limiter.peek(key)
            exchange.limit = decision
            if not decision.allowed:
                message = (
                    "Rate limit reached for requests"
                    if exchange.flavour == "openai"
                    else f"This request would exceed your organization's rate limit of {decision.limit} requests "
                    f"per {self.config.rate_limit_window_s:g} seconds."
                )
                raise RequestRejected(429, message, code="rate_limit_exceeded", retry_after=decision.retry_after_s)
        elif generation and self._fault_429:
            self._generation_count += 1
            if self._generation_count % self.config.fault_every == 0:
                raise RequestRejected(429, "Rate limited", code="rate_limit_exceeded", retry_after=1)

    @staticmethod
    def _parse(body: bytes, flavour: Flavour) -> Any:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            if flavour == "openai":
                raise RequestRejected(
                    400,
                    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                    "your HTTP library correctly. The OpenAI API expects a JSON payload.)",
                ) from exc
            raise RequestRejected(400, f"body: Invalid JSON: {exc}") from exc

    @staticmethod
    def _peek_stream(body: bytes) -> bool:
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return False
        return isinstance(parsed, dict) and parsed.get("stream") is True

    # ------------------------------------------------------------------ endpoints

    async def _messages(self, exchange: _Exchange, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await self._read_body(scope, receive)
        if self.config.has("error-as-200"):
            exchange.stream_requested = self._peek_stream(raw)
        key = self._authenticate(exchange, scope)
        self._check_version(scope)
        self._rate_limit(exchange, key, generation=True)
        parsed = self._parse(raw, "anthropic")
        if isinstance(parsed, dict):
            exchange.stream_requested = parsed.get("stream") is True
        body = check_anthropic_request(
            parsed, schema_name="anthropic/messages-request", known_models=self._model_ids, signer=self._signer
        )
        prompt = prompt_from_request(body, drop_stop_sequences=self.config.has("drop-stop-sequences"))
        prompt = self._take_cues(exchange, prompt)
        reply = self._bend(generate(prompt, self._signer))
        input_tokens = count_anthropic_input(body)
        input_tokens, reply = exchange.cues.usage(input_tokens, reply)
        message_id = new_id("resp_" if self.config.has("foreign-message-id") else "msg_")
        model = str(body["model"])
        if exchange.stream_requested:
            frames = stream_frames(
                reply, message_id=message_id, model=model, input_tokens=input_tokens, style=self._style
            )
            truncated = self._style.ending in ("none", "done")
            await self._stream(exchange, receive, send, frames, truncated=truncated)
            return
        await self._wait_for_reply(exchange, reply)
        await self._json(
            exchange, send, 200, message_json(reply, message_id=message_id, model=model, input_tokens=input_tokens)
        )

    def _bend(self, reply: Reply) -> Reply:
        """The reply as the active faults deform it (identity for a conformant gateway)."""
        config = self.config
        if config.has("empty-success"):
            return Reply((), "end_turn", None, 1)
        if config.has("unsigned-thinking"):
            reply = replace(
                reply,
                blocks=tuple(replace(b, signature="") if isinstance(b, ThinkingBlock) else b for b in reply.blocks),
            )
        if config.has("wrong-stop-reason") and any(isinstance(b, ToolUseBlock) for b in reply.blocks):
            reply = replace(reply, stop_reason="end_turn")
        return reply

    async def _count_tokens(self, exchange: _Exchange, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await self._read_body(scope, receive)
        key = self._authenticate(exchange, scope)
        self._check_version(scope)
        self._rate_limit(exchange, key, generation=False)
        body = check_anthropic_request(
            self._parse(raw, "anthropic"),
            schema_name="anthropic/count-tokens-request",
            known_models=self._model_ids,
            signer=self._signer,
        )
        await self._json(exchange, send, 200, {"input_tokens": count_anthropic_input(body)})

    async def _list_models(self, exchange: _Exchange, scope: Scope, receive: Receive, send: Send) -> None:
        key = self._authenticate(exchange, scope)
        self._check_version(scope)
        self._rate_limit(exchange, key, generation=False)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        limit_text = query.get("limit", ["20"])[-1]
        try:
            limit = int(limit_text)
        except ValueError:
            raise RequestRejected(400, "limit: Input should be a valid integer") from None
        if not 1 <= limit <= 1000:
            bound = "greater than or equal to 1" if limit < 1 else "less than or equal to 1000"
            raise RequestRejected(400, f"limit: Input should be {bound}")
        after = query.get("after_id", [None])[-1]
        before = query.get("before_id", [None])[-1]
        ids = [model.id for model in self._models]
        if after and before:
            raise RequestRejected(400, "before_id: cannot be combined with after_id")
        cursor = after or before
        if cursor is not None and cursor not in ids:
            raise RequestRejected(400, f"{'after_id' if after else 'before_id'}: unknown model id {cursor!r}")
        if after:
            start = ids.index(after) + 1
            page = self._models[start : start + limit]
            has_more = start + limit < len(ids)
        elif before:
            end = ids.index(before)
            start = max(0, end - limit)
            page = self._models[start:end]
            has_more = start > 0
        else:
            page = self._models[:limit]
            has_more = limit < len(ids)
        payload = {
            "data": [model.as_json() for model in page],
            "has_more": has_more,
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
        }
        await self._json(exchange, send, 200, payload)

    async def _get_model(self, exchange: _Exchange, scope: Scope, receive: Receive, send: Send) -> None:
        key = self._authenticate(exchange, scope)
        self._check_version(scope)
        self._rate_limit(exchange, key, generation=False)
        model_id = scope["path"][len("/v1/models/") :]
        for model in self._models:
            if model.id == model_id:
                await self._json(exchange, send, 200, model.as_json())
                return
        raise RequestRejected(404, f"model: {model_id}")

    async def _chat(self, exchange: _Exchange, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await self._read_body(scope, receive)
        key = self._authenticate(exchange, scope)
        self._rate_limit(exchange, key, generation=True)
        body = check_openai_request(self._parse(raw, "openai"), known_models=self._model_ids)
        prompt = prompt_from_chat(body, drop_stop_sequences=self.config.has("drop-stop-sequences"))
        prompt = self._take_cues(exchange, prompt)
        reply = generate(prompt, self._signer)
        prompt_tokens = count_openai_input(body)
        prompt_tokens, reply = exchange.cues.usage(prompt_tokens, reply)
        completion_id = new_id("chatcmpl-")
        created = int(time.time())
        model = str(body["model"])
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = bool(options.get("include_usage")) and not self.config.has("include-usage-ignored")
            done = not self.config.has("missing-done")
            frames = chunk_frames(
                reply,
                completion_id=completion_id,
                created=created,
                model=model,
                prompt_tokens=prompt_tokens,
                include_usage=include_usage,
                done=done,
            )
            await self._stream(exchange, receive, send, frames, truncated=not done)
            return
        await self._wait_for_reply(exchange, reply)
        payload = completion_json(
            reply, completion_id=completion_id, created=created, model=model, prompt_tokens=prompt_tokens
        )
        await self._json(exchange, send, 200, payload)

    async def _stats_endpoint(self, exchange: _Exchange, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if not client or client[0] not in _LOOPBACK:
            raise RequestRejected(403, "the stats endpoint answers loopback clients only")
        await self._json(exchange, send, 200, self.stats.snapshot(self.config.faults))

    def _take_cues(self, exchange: _Exchange, prompt: Prompt) -> Prompt:
        """Upstream cues (cues.py): kept on the exchange; the prompt without its markers; a cued status raises."""
        exchange.cues, prompt = take_cues(prompt)
        refusal = exchange.cues.refusal()
        if refusal is not None:
            exchange.limit = exchange.limit or exchange.cues.limit()
            raise refusal
        return prompt

    # ------------------------------------------------------------------ timing

    def _pacing(self, exchange: _Exchange) -> tuple[float, float]:
        """(ttft, itl) in seconds for this request: an upstream cue's, else the configured ones."""
        return exchange.cues.pacing(self._ttft, self._itl) or (self._ttft, self._itl)

    async def _wait_for_reply(self, exchange: _Exchange, reply: Reply) -> None:
        """Hold a non-streaming answer until its last token would have been streamed: t0 + ttft + (n-1) * itl."""
        ttft, itl = self._pacing(exchange)
        if not (ttft or itl):
            return
        deadline = exchange.t0 + ttft + max(reply.streamed_deltas - 1, 0) * itl
        await _sleep_until(deadline)

    async def _stream(
        self, exchange: _Exchange, receive: Receive, send: Send, frames: list[Frame], *, truncated: bool
    ) -> None:
        """Send the frames, each token frame at t0 + ttft + i * itl (absolute deadlines, so errors never add up)."""
        self.stats.streams += 1
        cut = self.config.has("stream-cut")
        if cut:
            frames = frames[: min(self.config.cut_after_events, len(frames) - 1)]
        frames, cue_cut = exchange.cues.frames(frames, exchange.flavour)
        cut, truncated = cut or cue_cut, truncated or exchange.cues.truncates
        await self._start(exchange, send, 200, self._base_headers(exchange) + _SSE_HEADERS)
        if not any(self._pacing(exchange)):
            await send({"type": "http.response.body", "body": b"".join(f for f, _ in frames), "more_body": cut})
        else:
            watcher = asyncio.ensure_future(receive())
            try:
                if not await self._paced(exchange, send, frames, watcher, cut):
                    self.stats.streams_disconnected += 1
                    return
            finally:
                watcher.cancel()
        if cut or truncated:
            self.stats.streams_truncated += 1
        else:
            self.stats.streams_completed += 1
        # With stream-cut the body is left open; returning now makes uvicorn drop the connection mid-body.

    async def _paced(
        self, exchange: _Exchange, send: Send, frames: list[Frame], watcher: asyncio.Future[Message], cut: bool
    ) -> bool:
        ttft, itl = self._pacing(exchange)
        first = exchange.t0 + ttft
        pending: list[bytes] = []
        tokens = 0
        for data, timing in frames:
            if timing == TOKEN:
                deadline = first + tokens * itl
                tokens += 1
            elif timing == FINAL:
                deadline = first + max(tokens - 1, 0) * itl
            else:
                pending.append(data)
                continue
            if deadline > time.perf_counter():
                if pending:
                    await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
                    pending = []
                if watcher.done():
                    return False
                await _sleep_until(deadline)
                if watcher.done():
                    return False
            pending.append(data)
        await send({"type": "http.response.body", "body": b"".join(pending), "more_body": cut})
        return True


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def _openai_error_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _openai_error_code(status: int) -> str | None:
    return {401: "invalid_api_key", 404: "not_found", 405: "method_not_allowed", 429: "rate_limit_exceeded"}.get(status)
