"""Upstream mode end to end: the reference gateway behind a small relay, the propagation suite run through the relay.

The relay is written here: an ASGI app on 127.0.0.1 that forwards /v1/messages and /v1/chat/completions to the
reference gateway and streams the answer back as it arrives. Faithful, every propagation check passes; in each of
its bad modes (the bugs real gateways have) the matching check, and only that one, fails.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import uvloop

from conformance.checks import CHECKS, load_all
from conformance.exchange import RequestSpec
from conformance.gateway import GatewayConfig, RunningGateway, start_in_thread
from conformance.gateway.cues import Cues, marker, parse_cues
from conformance.gateway.runner import bind, gateway_url
from conformance.probes import PROBES
from conformance.propagation import PROPAGATION_CHECKS, PROPAGATION_PROBES, RETRY_AFTER, USAGE, cued, send_probe
from conformance.results import CheckResult
from conformance.runner import ConformanceRun
from conformance.target import Secret, Target

Scope = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[MutableMapping[str, Any]], Any]
Mode = Literal["faithful", "swallow-cut", "drop-retry-after", "buffer", "529-as-500"]

# Register every check now: pytester runs in this process re-import what they import, and a check module imported
# for the first time inside one would register its checks a second time in the next.
load_all()

# Headers that describe one hop's connection, not the message: never forwarded.
HOP_BY_HOP = frozenset({b"host", b"connection", b"content-length", b"transfer-encoding", b"keep-alive"})
ANTHROPIC_END = (
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":2}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
OPENAI_END = (
    b'data: {"id":"chatcmpl-relay","object":"chat.completion.chunk","created":1,"model":"relay",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)


class Relay:
    """A minimal gateway: forwards to one upstream, streaming through; `mode` adds one real-world bug."""

    def __init__(self, upstream: str, mode: Mode) -> None:
        self.upstream = upstream
        self.mode = mode
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        assert self._client is not None, "the relay serves only between lifespan startup and shutdown"
        query = scope["query_string"].decode("latin-1")
        url = self.upstream + scope["path"] + (f"?{query}" if query else "")
        request = self._client.build_request(scope["method"], url, headers=headers, content=body)
        response = await self._client.send(request, stream=True)
        try:
            await self._relay(scope, response, send)
        finally:
            await response.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # One upstream client for the relay's life: building one per request costs tens of ms (its SSL context).
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._client = httpx.AsyncClient(timeout=30.0, trust_env=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _relay(self, scope: Scope, response: httpx.Response, send: Send) -> None:
        status = response.status_code
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
        if self.mode == "drop-retry-after":
            headers = [(k, v) for k, v in headers if k.lower() != b"retry-after"]
        if self.mode == "529-as-500" and status == 529:
            await response.aread()
            body = b'{"type":"error","error":{"type":"api_error","message":"Internal server error"}}'
            await send(
                {"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if self.mode == "buffer":
            chunks, broken = [], False
            try:
                chunks = [chunk async for chunk in response.aiter_raw()]
            except httpx.HTTPError:
                broken = True
            await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": broken})
            return
        if self.mode == "swallow-cut" and response.headers.get("content-type", "").startswith("text/event-stream"):
            await self._swallow(scope, response, send)
            return
        try:
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError:
            return  # the upstream broke off: returning with the body open makes uvicorn drop the connection too
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _swallow(scope: Scope, response: httpx.Response, send: Send) -> None:
        """The bug: an upstream failure mid-stream is dropped and the stream is finished as if all went well."""
        pending, ended = b"", False
        try:
            async for chunk in response.aiter_raw():
                pending += chunk
                *frames, pending = pending.split(b"\n\n")
                kept = [f for f in frames if not f.startswith(b"event: error") and b'{"error"' not in f]
                ended = ended or any(b"message_stop" in f or b"[DONE]" in f for f in kept)
                if kept:
                    await send({"type": "http.response.body", "body": b"\n\n".join(kept) + b"\n\n", "more_body": True})
        except httpx.HTTPError:
            pass
        ending = b"" if ended else OPENAI_END if scope["path"].endswith("/chat/completions") else ANTHROPIC_END
        await send({"type": "http.response.body", "body": ending, "more_body": False})


class RunningRelay:
    """A relay served by uvicorn in a background thread on a free loopback port (uvloop, as the gateway runs)."""

    def __init__(self, upstream: str, mode: Mode) -> None:
        import uvicorn

        self._sock = bind("127.0.0.1", 0)
        self.url = gateway_url("127.0.0.1", self._sock.getsockname()[1])
        config = uvicorn.Config(
            Relay(upstream, mode), lifespan="on", access_log=False, log_config=None, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name=f"relay-{mode}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline and self._thread.is_alive(), "the relay did not start"
            time.sleep(0.005)

    def _serve(self) -> None:
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(self._server.serve(sockets=[self._sock]))
        finally:
            self._sock.close()

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningGateway]:
    """The reference gateway as the relay's upstream (no faults of its own: every failure is cued)."""
    with start_in_thread(GatewayConfig(port=0)) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def relays(upstream: RunningGateway) -> Iterator[dict[Mode, RunningRelay]]:
    """One relay per mode, all in front of the same upstream."""
    modes: tuple[Mode, ...] = ("faithful", "swallow-cut", "drop-retry-after", "buffer", "529-as-500")
    started = {mode: RunningRelay(upstream.url, mode) for mode in modes}
    yield started
    for relay in started.values():
        relay.stop()


def run_propagation(url: str, key: str) -> list[CheckResult]:
    """Every propagation probe through the gateway at url, judged (ConformanceRun, as the suite runs them)."""
    run = ConformanceRun(Target(url, Secret(key)))
    for probe in PROPAGATION_PROBES:
        run.judge(probe, send_probe(run, probe))
    return run.results


@pytest.fixture(scope="module")
def results_through(upstream: RunningGateway, relays: dict[Mode, RunningRelay]) -> Callable[[Mode], list[CheckResult]]:
    """The propagation results through one relay, run once per mode (each run takes about a second of pacing)."""
    return functools.cache(lambda mode: run_propagation(relays[mode].url, upstream.api_key))


# ---------------------------------------------------------------- the suite through relays


def test_a_faithful_relay_passes_every_propagation_check_through_the_plugin(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    upstream: RunningGateway,
    relays: dict[Mode, RunningRelay],
) -> None:
    monkeypatch.setenv("GATEWAY_API_KEY", upstream.api_key)
    report_dir = pytester.path / "report"
    result = pytester.runpytest(
        "-p", "no:locust", "-p", "no:cacheprovider", "--pyargs", "conformance.suites",
        "--gateway-url", relays["faithful"].url, "--upstream-mode", "--checks", "propagation",
        "--report-dir", str(report_dir), "-v",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*plan: about * requests (18 for 13 probes*", "*test_upstream_failure_propagates?upstream_cut_stream? PASSED*"]
    )
    report = json.loads((report_dir / "conformance.json").read_text())
    seen: dict[str, set[str]] = {}
    for entry in report["checks"]:
        seen.setdefault(entry["id"], set()).add(entry["outcome"])
    assert {cid: states for cid, states in seen.items() if cid in PROPAGATION_CHECKS} == {
        cid: {"passed"} for cid in PROPAGATION_CHECKS
    }
    assert report["verdict"] == "conformant"


BAD_RELAYS = [
    ("swallow-cut", {"propagation_cut_stream_not_completed", "propagation_stream_error_surfaces"}),
    ("drop-retry-after", {"propagation_retry_after_kept"}),
    ("buffer", {"propagation_pacing_kept"}),
    ("529-as-500", {"propagation_overloaded_kept"}),
]


@pytest.mark.parametrize(("mode", "failing"), BAD_RELAYS, ids=[mode for mode, _ in BAD_RELAYS])
def test_a_bad_relay_fails_exactly_the_matching_checks(
    results_through: Callable[[Mode], list[CheckResult]], mode: Mode, failing: set[str]
) -> None:
    results = results_through(mode)
    failed = {r.check for r in results if r.outcome in ("failed", "error")}
    assert failed == failing, [(r.probe, r.check, r.message) for r in results if r.outcome != "passed"]
    assert all(CHECKS[check].severity == "must" for check in failing)
    assert {r.outcome for r in results if r.check not in failing} == {"passed"}


def test_the_failures_say_what_the_upstream_did_and_what_the_client_got(
    results_through: Callable[[Mode], list[CheckResult]],
) -> None:
    swallowed = results_through("swallow-cut")
    cut = next(r for r in swallowed if r.probe == "upstream_cut_stream" and r.check.endswith("not_completed"))
    assert "the upstream dropped the connection mid-stream, yet the client got a complete message" in cut.message
    assert "message_stop with stop_reason 'end_turn'" in cut.message
    assert (cut.reproduce or "").startswith("curl ") and "[[upstream:cut-after=5]]" in (cut.reproduce or "")
    dropped = results_through("drop-retry-after")
    retry = next(r for r in dropped if r.check == "propagation_retry_after_kept" and r.outcome == "failed")
    assert f"the upstream's 429 said retry-after: {RETRY_AFTER}; the client's 429" in retry.message


def test_the_cli_check_in_upstream_mode_exits_1_for_a_relay_that_drops_retry_after(
    tmp_path: Path, upstream: RunningGateway, relays: dict[Mode, RunningRelay]
) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "conformance", "check", "--gateway-url", relays["drop-retry-after"].url,
            "--upstream-mode", "--checks", "propagation", "--report-dir", "out",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**_environ(), "GATEWAY_API_KEY": upstream.api_key},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NON-CONFORMANT" in result.stdout
    report = json.loads((tmp_path / "out" / "conformance.json").read_text())
    assert {c["id"] for c in report["checks"] if c["outcome"] == "failed"} == {"propagation_retry_after_kept"}


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("GATEWAY_URL", "ANTHROPIC_API_KEY")}


def test_without_upstream_mode_the_suite_skips_propagation_and_sends_no_marker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, upstream: RunningGateway
) -> None:
    before = upstream.stats()["requests"]
    monkeypatch.setenv("GATEWAY_API_KEY", upstream.api_key)
    result = pytester.runpytest(
        "-p", "no:locust", "-p", "no:cacheprovider", "--pyargs", "conformance.suites",
        "--gateway-url", upstream.url, "--checks", "propagation", "-rs",
        "--report-dir", str(pytester.path / "report"),
    )  # fmt: skip
    result.stdout.fnmatch_lines(["*SKIPPED*upstream mode is off: pass --upstream-mode*"])
    assert upstream.stats()["requests"] == before


def test_the_ordinary_suite_sends_no_upstream_marker() -> None:
    target = Target("http://127.0.0.1:9", Secret("k"))
    for probe in PROBES:
        for _, build in probe.steps:
            spec = build(target, {})
            if isinstance(spec, RequestSpec):
                assert b"[[upstream:" not in (spec.body_bytes() or b""), probe.id
    # Nor do the SDK scenarios, the strategies or anything else outside upstream mode's own modules.
    package = Path(__file__).parents[1] / "conformance"
    own = {"propagation.py", "cues.py", "test_propagation.py"}
    holders = {path.name for path in package.rglob("*.py") if "[[upstream:" in path.read_text()}
    assert holders <= own, holders - own


# ---------------------------------------------------------------- the cues on the reference gateway itself


def _post(gateway: RunningGateway, path: str, text: str, **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 64, **extra}
    body["messages"] = [{"role": "user", "content": text}]
    headers = {"x-api-key": gateway.api_key, "anthropic-version": "2023-06-01"}
    return httpx.post(gateway.url + path, json=body, headers=headers, timeout=10, trust_env=False)


def test_the_marker_is_never_echoed_and_usage_follows_the_cue(upstream: RunningGateway) -> None:
    reply = _post(upstream, "/v1/messages", cued("Repeat exactly: hello there", input_tokens=5, output_tokens=3))
    assert reply.status_code == 200, reply.text
    assert reply.json()["content"] == [{"type": "text", "text": "hello there"}]
    assert (reply.json()["usage"]["input_tokens"], reply.json()["usage"]["output_tokens"]) == (5, 3)
    chat = _post(upstream, "/v1/chat/completions", "Repeat exactly: hi [[upstream:output-tokens=9]]")
    assert chat.json()["choices"][0]["message"]["content"] == "hi"
    assert chat.json()["usage"]["completion_tokens"] == 9


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[upstream:explode]] hi", "upstream cue 'explode' is not one of: status, retry-after"),
        ("[[upstream:status=200]] hi", "upstream cue status: expected an integer 400..599, got '200'"),
        ("[[upstream:cut-after=1,error-after=2]] hi", "cut-after and error-after exclude each other"),
        ("[[upstream:tool]] hi", "upstream cue tool: the request defines no tools"),
    ],
    ids=["unknown", "status-200", "cut-and-error", "tool-without-tools"],
)
def test_a_malformed_cue_is_a_400_in_either_dialect(upstream: RunningGateway, text: str, fragment: str) -> None:
    anthropic = _post(upstream, "/v1/messages", text)
    assert (anthropic.status_code, anthropic.json()["error"]["type"]) == (400, "invalid_request_error")
    assert fragment in anthropic.json()["error"]["message"]
    openai = _post(upstream, "/v1/chat/completions", text)
    assert openai.status_code == 400 and fragment in openai.json()["error"]["message"]


def test_status_cues_answer_in_each_dialects_envelope(upstream: RunningGateway) -> None:
    overloaded = _post(upstream, "/v1/messages", cued("hi", status=529), stream=True)
    assert (overloaded.status_code, overloaded.json()["error"]["type"]) == (529, "overloaded_error")
    assert overloaded.headers["x-should-retry"] == "true"
    limited = _post(upstream, "/v1/chat/completions", cued("hi", status=429, retry_after=30))
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "30")
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


def test_stream_cues_cut_or_fail_the_stream_and_are_counted(upstream: RunningGateway) -> None:
    before = upstream.stats()["streams_truncated"]
    headers = {"x-api-key": upstream.api_key, "anthropic-version": "2023-06-01"}
    body = {"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": True}
    with httpx.Client(trust_env=False, timeout=10) as client:
        messages = [{"role": "user", "content": cued("Repeat exactly: a b c d e", error_after=3)}]
        errored = client.post(upstream.url + "/v1/messages", json={**body, "messages": messages}, headers=headers)
        assert errored.text.endswith(
            'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
        )
        assert errored.text.count("event: ") == 4
        messages = [{"role": "user", "content": cued("Repeat exactly: a b c d e", cut_after=3)}]
        with (
            pytest.raises(httpx.RemoteProtocolError),
            client.stream(
                "POST", upstream.url + "/v1/chat/completions", json={**body, "messages": messages}, headers=headers
            ) as cut,
        ):
            cut.read()
    assert upstream.stats()["streams_truncated"] == before + 2


def test_pacing_cues_set_this_requests_time_to_first_token(upstream: RunningGateway) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:
        body = {"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": True}
        body["messages"] = [{"role": "user", "content": cued("Repeat exactly: one two three", ttft_ms=120, itl_ms=30)}]
        headers = {"x-api-key": upstream.api_key, "anthropic-version": "2023-06-01"}
        started = time.perf_counter()
        arrivals = []
        with client.stream("POST", upstream.url + "/v1/messages", json=body, headers=headers) as response:
            for line in response.iter_lines():
                if "text_delta" in line:
                    arrivals.append(time.perf_counter() - started)
    assert len(arrivals) == 3
    assert 0.110 < arrivals[0] < 0.400, arrivals
    assert 0.050 < arrivals[-1] - arrivals[0] < 0.300, arrivals


def test_the_suites_markers_are_the_gateways_syntax() -> None:
    text = cued("Repeat exactly: hi", status=429, retry_after=RETRY_AFTER, tool=True)
    assert text == marker(status=429, retry_after=RETRY_AFTER, tool=True) + " Repeat exactly: hi"
    cues, rest = parse_cues(text)
    assert (cues.status, cues.retry_after, cues.tool, rest) == (429, RETRY_AFTER, True, "Repeat exactly: hi")
    assert parse_cues("A [[upstream:itl-ms=5]]\nB [[upstream:ttft-ms=7]]") == (Cues(ttft_ms=7, itl_ms=5), "A B")


def test_the_usage_probe_figures_are_not_what_the_model_would_count() -> None:
    # The check can only tell relaying from recounting if the cued figures differ from the real ones.
    from conformance.gateway.tokens import count_tokens

    assert USAGE[1] != count_tokens("The quick brown fox jumps over the lazy dog.")
