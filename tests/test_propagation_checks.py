"""Selftests of the propagation checks, offline: the reference gateway's answers, edited as bad gateways edit them.

Each upstream-mode probe (conformance/propagation.py) is answered by the reference gateway's ASGI app called in
this process (no socket), exactly as the upstream would answer it; that answer, replayed through respx into a
real Transport, is the conformant case. The deviant cases are edited copies: what a gateway that swallows a cut
stream, drops retry-after, turns a 529 into a 500, recounts usage, leaks ids or loses a tool fragment sends on.
Pacing is judged on streams fed to a StreamReader with chosen arrival times.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from conformance.checks import CHECKS, load_all
from conformance.exchange import Exchange, RequestSpec, TransportError
from conformance.gateway.app import GatewayApp
from conformance.gateway.config import GatewayConfig
from conformance.gateway.model import example_input
from conformance.probes import WEATHER_TOOL
from conformance.propagation import (
    PROPAGATION_CHECKS,
    PROPAGATION_PROBES,
    PROPAGATION_PROBES_BY_ID,
    RETRY_AFTER,
    TOOL_INPUT,
    USAGE,
)
from conformance.results import CheckResult
from conformance.runner import ConformanceRun
from conformance.stream import StreamReader
from conformance.target import Secret, Target
from conformance.transport import Transport
from tests.httpfixtures import Recorded, Replayer

load_all()

# Offline: any real connection attempt fails a test.
pytestmark = pytest.mark.usefixtures("no_network")

KEY = "sk-selftest-propagation-0123456789"
TARGET = Target("http://127.0.0.1:8787", Secret(KEY), model="claude-sonnet-4-6")
Recordings = dict[str, Recorded]
Edit = Callable[[Recordings], None]


# ---------------------------------------------------------------- the upstream's answers, offline


@functools.cache
def _app() -> GatewayApp:
    return GatewayApp(GatewayConfig(port=0, api_key=KEY))


async def _call(spec: RequestSpec) -> Recorded:
    """One request through the reference gateway's ASGI app; a body left open is a cut transfer."""
    headers = Transport(TARGET).headers_for(spec)
    scope = {
        "type": "http",
        "method": spec.method,
        "path": spec.path,
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
    }
    body = spec.body_bytes() or b""
    sent: list[dict[str, Any]] = []

    requests = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client never disconnects (a paced stream watches for that)
        raise AssertionError("unreachable")

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await _app()(scope, receive, send)
    start = sent[0]
    chunks = [m for m in sent[1:] if m["type"] == "http.response.body"]
    cut = bool(chunks) and bool(chunks[-1].get("more_body"))
    return Recorded(
        status=start["status"],
        headers=tuple((k.decode(), v.decode()) for k, v in start["headers"]),
        body=b"".join(m.get("body", b"") for m in chunks),
        comments=("curl exit: 18",) if cut else (),
    )


@functools.cache
def upstream(probe_id: str) -> dict[str, Recorded]:
    """What the reference gateway answers to each step of a propagation probe (what a faithful relay passes on)."""
    probe = PROPAGATION_PROBES_BY_ID[probe_id]
    answers: dict[str, Recorded] = {}
    for role, build in probe.steps:
        spec = build(TARGET, {})
        assert isinstance(spec, RequestSpec)
        answers[role] = asyncio.run(_call(spec))
    return answers


def judge(probe_id: str, check_id: str, edit: Edit | None = None) -> CheckResult:
    """One check on one probe, its steps answered by the upstream's answers (edited, when given)."""
    probe = PROPAGATION_PROBES_BY_ID[probe_id]
    recorded = dict(upstream(probe_id))
    if edit is not None:
        edit(recorded)
    with Replayer(TARGET) as replay:
        exchanges, _ = replay.send_steps(probe, recorded)
        run = ConformanceRun(TARGET, transport=replay.transport, checks=[check_id])
        (result,) = run.judge(probe, exchanges)
    return result


# ---------------------------------------------------------------- edits: what bad gateways do


def _body(role: str, change: Callable[[bytes], bytes]) -> Edit:
    def edit(recorded: Recordings) -> None:
        recorded[role] = recorded[role].with_body(change(recorded[role].body))

    return edit


def _header(role: str, name: str, value: str | None) -> Edit:
    def edit(recorded: Recordings) -> None:
        recorded[role] = recorded[role].with_header(name, value)

    return edit


def _whole(role: str) -> Edit:
    """The transfer completes normally (no reset) with what was received."""

    def edit(recorded: Recordings) -> None:
        recorded[role] = replace(recorded[role], comments=())

    return edit


def _both(*edits: Edit) -> Edit:
    def edit(recorded: Recordings) -> None:
        for one in edits:
            one(recorded)

    return edit


_CLEAN_END = (
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":2}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def _swallow(body: bytes) -> bytes:
    """What LiteLLM did with a dead upstream: drop the error, close the block, end_turn, message_stop."""
    frames = [f + b"\n\n" for f in body.split(b"\n\n") if f and not f.startswith(b"event: error")]
    return b"".join(frames) + _CLEAN_END


def _swallow_openai(body: bytes) -> bytes:
    frames = [f + b"\n\n" for f in body.split(b"\n\n") if f and b'"error"' not in f]
    match = re.search(rb'"id":"([^"]+)"', body)
    assert match is not None
    ending = (
        b'data: {"id":"' + match.group(1) + b'","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    )
    return b"".join(frames) + ending


def _error_status(role: str, status: int, error_type: str) -> Edit:
    def edit(recorded: Recordings) -> None:
        body = f'{{"type":"error","error":{{"type":"{error_type}","message":"upstream failed"}}}}'.encode()
        recorded[role] = replace(
            recorded[role],
            status=status,
            headers=(("content-type", "application/json"), ("content-length", str(len(body)))),
            body=body,
            comments=(),
        )

    return edit


def _sse_error_instead(role: str, error_type: str) -> Edit:
    """HTTP 200 and an in-band error event where the upstream's status should have been."""

    def edit(recorded: Recordings) -> None:
        data = f'{{"type":"error","error":{{"type":"{error_type}","message":"upstream failed"}}}}'
        recorded[role] = replace(
            recorded[role],
            status=200,
            headers=(("content-type", "text/event-stream"),),
            body=f"event: error\ndata: {data}\n\n".encode(),
        )

    return edit


def _replace(role: str, old: bytes, new: bytes, count: int = -1) -> Edit:
    def change(body: bytes) -> bytes:
        assert old in body, f"{old!r} is not in the body"
        return body.replace(old, new, count)

    return _body(role, change)


def _drop_fragment(body: bytes) -> bytes:
    """The stream with its third input_json_delta fragment lost, as a relay that mishandles fragments does."""
    frames = body.split(b"\n\n")
    fragments = [
        i for i, f in enumerate(frames) if b'"input_json_delta","partial_json":"' in f and b'json":""' not in f
    ]
    del frames[fragments[2]]
    return b"\n\n".join(frames)


# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One check on one probe's answers, unedited or edited, with the outcome and a fragment of the message."""

    check: str
    probe: str
    outcome: str
    fragment: str = ""
    label: str = ""
    edit: Edit | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        kind = "conformant" if self.outcome == "passed" else "deviant"
        return f"{self.check}-{kind}" + (f"-{self.label}" if self.label else "")


# Pacing needs arrival times a replay does not have: it is judged on timed streams below.
CONFORMANT = [
    Case(check, probe.id, "passed", label=probe.id)
    for probe in PROPAGATION_PROBES
    for check in probe.checks
    if check != "propagation_pacing_kept"
]

DEVIANT = [
    Case(
        "propagation_cut_stream_not_completed",
        "upstream_cut_stream",
        "failed",
        "yet the client got a complete message (message_stop with stop_reason 'end_turn')",
        "swallowed",
        _both(_body("stream", _swallow), _whole("stream")),
    ),
    Case(
        "propagation_cut_stream_not_completed",
        "upstream_cut_stream",
        "failed",
        "ended cleanly without message_stop and without an error event",
        "clean-eof",
        _whole("stream"),
    ),
    Case(
        "propagation_cut_stream_not_completed",
        "upstream_cut_stream_openai",
        "failed",
        "yet the client got a complete message (finish_reason 'stop' and data: [DONE])",
        "openai-swallowed",
        _both(_body("stream", _swallow_openai), _whole("stream")),
    ),
    Case(
        "propagation_stream_error_surfaces",
        "upstream_error_event",
        "failed",
        "the upstream sent an overloaded_error event mid-stream, yet the client got a complete message",
        "swallowed",
        _body("stream", _swallow),
    ),
    Case(
        "propagation_stream_error_surfaces",
        "upstream_error_event_openai",
        "failed",
        "yet the client got a complete message (finish_reason 'stop' and data: [DONE])",
        "openai-swallowed",
        _body("stream", _swallow_openai),
    ),
    Case(
        "propagation_retry_after_kept",
        "upstream_rate_limited",
        "failed",
        f"the upstream's 429 said retry-after: {RETRY_AFTER}; the client's 429 (json request) has no retry-after",
        "dropped",
        _header("json", "retry-after", None),
    ),
    Case(
        "propagation_retry_after_kept",
        "upstream_rate_limited",
        "failed",
        f"the upstream's 429 said retry-after: {RETRY_AFTER}; the client was told 1 s (stream request)",
        "shortened",
        _header("stream", "retry-after", "1"),
    ),
    Case(
        "propagation_retry_after_kept",
        "upstream_rate_limited",
        "failed",
        "the upstream answered 429 (stream request): expected HTTP 429, got 200",
        "as-sse-error",
        _sse_error_instead("stream", "rate_limit_error"),
    ),
    Case(
        "propagation_retry_after_kept",
        "upstream_rate_limited",
        "failed",
        "the 429 (json request) carries error.type 'api_error', expected 'rate_limit_error'",
        "wrong-type",
        _both(_error_status("json", 429, "api_error"), _header("json", "retry-after", "7")),
    ),
    Case(
        "propagation_retry_after_kept",
        "upstream_rate_limited_openai",
        "failed",
        "the client's 429 (json request) has no retry-after",
        "openai-dropped",
        _header("json", "retry-after", None),
    ),
    Case(
        "propagation_overloaded_kept",
        "upstream_overloaded",
        "failed",
        "the upstream answered 529 overloaded_error (json request): expected HTTP 529, got 500",
        "as-500",
        _error_status("json", 500, "api_error"),
    ),
    Case(
        "propagation_overloaded_kept",
        "upstream_overloaded",
        "failed",
        "the 529 (stream request) carries error.type 'api_error', expected 'overloaded_error'",
        "wrong-type",
        _error_status("stream", 529, "api_error"),
    ),
    Case(
        "propagation_error_status_kept",
        "upstream_bad_request",
        "failed",
        "the upstream answered 400 (json request): expected HTTP 400, got 500",
        "400-as-500",
        _error_status("json", 500, "api_error"),
    ),
    Case(
        "propagation_error_status_kept",
        "upstream_bad_request",
        "failed",
        "the upstream's 400 became error.type 'api_error', expected 'invalid_request_error'",
        "400-type",
        _error_status("json", 400, "api_error"),
    ),
    Case(
        "propagation_error_status_kept",
        "upstream_server_error",
        "failed",
        "the upstream answered 500 (json request): expected HTTP 500-599, got 400",
        "500-as-400",
        _error_status("json", 400, "invalid_request_error"),
    ),
    Case(
        "propagation_error_status_kept",
        "upstream_server_error",
        "failed",
        "the 500 body does not match anthropic/error",
        "500-openai-envelope",
        _replace("json", b'{"type":"error","error":', b'{"error":'),
    ),
    Case(
        "propagation_usage_kept",
        "upstream_usage",
        "failed",
        f"the upstream reported input_tokens {USAGE[0]} and output_tokens {USAGE[1]}; the client's json answer "
        f"says {USAGE[0]} and 9",
        "recounted",
        _replace("json", f'"output_tokens":{USAGE[1]}'.encode(), b'"output_tokens":9'),
    ),
    Case(
        "propagation_usage_kept",
        "upstream_usage",
        "failed",
        f"the client's stream answer says 0 and {USAGE[1]}",
        "stream-input-zero",
        _replace("stream", f'"input_tokens":{USAGE[0]}'.encode(), b'"input_tokens":0'),
    ),
    Case(
        "propagation_usage_kept",
        "upstream_usage_openai",
        "failed",
        "the stream answer has no usage",
        "openai-no-usage-chunk",
        _body("stream", lambda b: b"".join(f + b"\n\n" for f in b.split(b"\n\n") if f and b'"choices":[]' not in f)),
    ),
    Case(
        "propagation_ids_native",
        "upstream_usage",
        "failed",
        "the json answer's message id 'chatcmpl-01",
        "chatcmpl",
        _replace("json", b'"id":"msg_', b'"id":"chatcmpl-'),
    ),
    Case(
        "propagation_ids_native",
        "upstream_tool_stream",
        "failed",
        "the stream answer's tool_use id 'call_01",
        "call",
        _replace("stream", b'"id":"toolu_', b'"id":"call_'),
    ),
    Case(
        "propagation_ids_native",
        "upstream_usage_openai",
        "failed",
        "the json answer's completion id 'msg_01",
        "openai-msg",
        _replace("json", b'"id":"chatcmpl-', b'"id":"msg_'),
    ),
    Case(
        "propagation_tool_arguments_intact",
        "upstream_tool_stream",
        "failed",
        "the upstream called get_weather with {'location': 'example', 'unit': 'celsius'}; the client got "
        "'get_weather' with {'': 'example', 'unit': 'celsius'}: fragments were lost",
        "fragment-lost",
        _body("stream", _drop_fragment),
    ),
    Case(
        "propagation_tool_arguments_intact",
        "upstream_tool_stream",
        "failed",
        "the client's stream answer has no tool_use block",
        "no-call",
        _replace("stream", b'"type":"tool_use"', b'"type":"server_tool_use"'),
    ),
]


def _params(cases: Sequence[Case]) -> Iterator[object]:
    for case in cases:
        yield pytest.param(case, id=case.id)


@pytest.mark.parametrize("case", list(_params(CONFORMANT + DEVIANT)))
def test_check(case: Case) -> None:
    result = judge(case.probe, case.check, case.edit)
    assert (result.outcome, case.fragment in result.message) == (case.outcome, True), (
        f"{case.check} on {case.probe} ({case.label}): expected {case.outcome} with {case.fragment!r}, "
        f"got {result.outcome}: {result.message}"
    )
    if case.outcome == "failed":
        assert result.evidence, "a failure carries evidence"
        assert (result.reproduce or "").startswith("curl "), result.reproduce


def _cut(role: str) -> Edit:
    """The transfer is cut (a connection reset) after what was received."""

    def edit(recorded: Recordings) -> None:
        recorded[role] = replace(recorded[role], comments=("curl exit: 18",))

    return edit


# Other ways of letting the client know, which the broken-stream checks accept.
SURFACED = [
    pytest.param(
        "upstream_cut_stream",
        "propagation_cut_stream_not_completed",
        _error_status("stream", 502, "api_error"),
        id="cut-as-502",
    ),
    pytest.param(
        "upstream_error_event",
        "propagation_stream_error_surfaces",
        _both(_body("stream", lambda body: body.split(b"event: error")[0]), _cut("stream")),
        id="error-as-reset",
    ),
]


def test_a_gateway_that_hangs_on_a_dead_upstream_fails() -> None:
    """The body stops without an end and the connection stays open: the client only learns by timing out."""
    probe = PROPAGATION_PROBES_BY_ID["upstream_cut_stream"]
    frames = _frames(probe.id, "stream")
    reader = StreamReader("anthropic", t_start=0.0)
    for frame in frames:
        reader.feed(frame, 0.01)
    spec = probe.steps[0][1](TARGET, {})
    assert isinstance(spec, RequestSpec)
    hung = Exchange(
        request=spec,
        url=TARGET.url(spec.path),
        request_headers=(),
        status=200,
        headers=(("content-type", "text/event-stream"),),
        stream=reader.close(60.01, cause="timeout-idle"),
        error=TransportError("timeout-idle", "no data for 60 s in the middle of the body"),
    )
    (result,) = ConformanceRun(TARGET, checks=["propagation_cut_stream_not_completed"]).judge(probe, {"stream": hung})
    assert result.outcome == "failed"
    assert "yet the gateway kept the client waiting until it gave up (no data for 60 s" in result.message


@pytest.mark.parametrize(("probe_id", "check_id", "edit"), SURFACED)
def test_a_failure_the_client_learns_of_passes(probe_id: str, check_id: str, edit: Edit) -> None:
    result = judge(probe_id, check_id, edit)
    assert result.outcome == "passed", result.message


# ---------------------------------------------------------------- pacing, on chosen arrival times


def _paced_exchange(
    role: str, frames: Sequence[bytes], times: Sequence[float], *, t_end: float | None = None
) -> Exchange:
    """An Exchange whose stream frames arrived at the given times (seconds from the request)."""
    reader = StreamReader("anthropic", t_start=0.0)
    for frame, t in zip(frames, times, strict=True):
        reader.feed(frame, t)
    stream = reader.close(t_end if t_end is not None else times[-1])
    spec = RequestSpec("POST", "/v1/messages", json={"stream": True}, stream=True, label=role)
    return Exchange(
        request=spec,
        url=TARGET.url("/v1/messages"),
        request_headers=(),
        status=200,
        headers=(("content-type", "text/event-stream"),),
        body=b"".join(frames),
        stream=stream,
    )


def _frames(probe_id: str, role: str) -> list[bytes]:
    return [f + b"\n\n" for f in upstream(probe_id)[role].body.split(b"\n\n") if f]


def _arrivals(frames: Sequence[bytes], ttft: float, itl: float, *, burst_after: int | None = None) -> list[float]:
    """Arrival times: frames before the first delta at once, deltas at ttft + i * itl (or all at once later)."""
    times: list[float] = []
    token = 0
    for frame in frames:
        if b"text_delta" in frame:
            t = ttft + token * itl
            if burst_after is not None and token >= burst_after:
                t = ttft + burst_after * itl
            token += 1
        else:
            t = times[-1] if times and token else 0.001
        times.append(t)
    return times


def judge_pacing(paced_times: Callable[[list[bytes]], list[float]]) -> CheckResult:
    probe = PROPAGATION_PROBES_BY_ID["upstream_pacing"]
    baseline_frames, paced_frames = _frames(probe.id, "baseline"), _frames(probe.id, "paced")
    exchanges = {
        "baseline": _paced_exchange("baseline", baseline_frames, _arrivals(baseline_frames, 0.010, 0.0)),
        "paced": _paced_exchange("paced", paced_frames, paced_times(paced_frames)),
    }
    run = ConformanceRun(TARGET, checks=["propagation_pacing_kept"])
    (result,) = run.judge(probe, exchanges)
    return result


def test_pacing_passes_when_the_gateway_streams_as_the_upstream_paced() -> None:
    # 20 ms of gateway overhead on top of the upstream's 150 ms + i * 40 ms.
    result = judge_pacing(lambda frames: _arrivals(frames, 0.170, 0.040))
    assert result.outcome == "passed", result.message


def test_pacing_fails_when_the_gateway_buffers_the_whole_stream() -> None:
    result = judge_pacing(lambda frames: [0.780] * len(frames))
    assert result.outcome == "failed"
    assert "the first token came 770 ms later than unpaced" in result.message
    assert "the gateway buffered the stream" in result.message
    assert result.evidence and (result.reproduce or "").startswith("curl ")


def test_pacing_fails_when_the_gateway_sends_the_first_token_then_a_burst() -> None:
    result = judge_pacing(lambda frames: _arrivals(frames, 0.160, 0.040, burst_after=1))
    assert result.outcome == "failed"
    assert "the upstream spread its tokens over 600 ms; the client got them within 40 ms" in result.message


def test_pacing_is_not_applicable_without_content() -> None:
    probe = PROPAGATION_PROBES_BY_ID["upstream_pacing"]
    empty = [b'event: message_start\ndata: {"type":"message_start","message":{}}\n\n']
    exchanges = {
        "baseline": _paced_exchange("baseline", empty, [0.01]),
        "paced": _paced_exchange("paced", empty, [0.01]),
    }
    (result,) = ConformanceRun(TARGET, checks=["propagation_pacing_kept"]).judge(probe, exchanges)
    assert result.outcome == "skipped", result.message


# ---------------------------------------------------------------- the probes themselves


def test_the_expected_tool_input_is_what_the_reference_model_sends() -> None:
    assert example_input(WEATHER_TOOL["input_schema"]) == TOOL_INPUT


def test_every_probe_carries_one_marker_and_only_its_own_checks() -> None:
    for probe in PROPAGATION_PROBES:
        for _, build in probe.steps:
            spec = build(TARGET, {})
            assert isinstance(spec, RequestSpec)
            assert (spec.body_bytes() or b"").count(b"[[upstream:") == 1, probe.id
        own = [c for c in probe.checks if c.startswith("propagation_")]
        assert own and set(own) <= set(PROPAGATION_CHECKS), probe.id
    assert {c for p in PROPAGATION_PROBES for c in p.checks if c.startswith("propagation_")} == set(PROPAGATION_CHECKS)


def test_every_propagation_check_has_a_conformant_and_a_deviant_case_here() -> None:
    registered = {cid for cid, spec in CHECKS.items() if spec.area == "propagation"}
    assert registered == set(PROPAGATION_CHECKS)
    # Pacing's cases are the timed tests above.
    conformant = {c.check for c in CONFORMANT} | {"propagation_pacing_kept"}
    deviant = {c.check for c in DEVIANT} | {"propagation_pacing_kept"}
    assert registered <= conformant and registered <= deviant, (registered - conformant, registered - deviant)
