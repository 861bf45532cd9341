"""Upstream mode: probes whose requests tell the reference gateway, sitting behind the gateway under test, to misbehave.

Each probe's last user message carries an upstream cue (conformance/gateway/cues.py, docs/upstream-mode.md), so
the suite knows exactly what the upstream did (a 429 with retry-after 7, a stream cut after 5 events, usage
1234/56 ...) and its checks (conformance/checks/propagation.py) compare that with what the gateway's client got.
These probes only make sense when the gateway's upstream is the reference gateway: `--upstream-mode`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from conformance.exchange import Exchange, RequestSpec
from conformance.probes import ECHO_TEXT, LONG_TEXT, WEATHER_TOOL, Probe, StepBuilder, messages_request, repeat
from conformance.target import Target

if TYPE_CHECKING:
    from conformance.runner import ConformanceRun

__all__ = [
    "CUT_AFTER",
    "PACED_ITL_MS",
    "PACED_TTFT_MS",
    "PROPAGATION_CHECKS",
    "PROPAGATION_PROBES",
    "PROPAGATION_PROBES_BY_ID",
    "RETRY_AFTER",
    "TOOL_INPUT",
    "USAGE",
    "cued",
    "send_probe",
]

CUT_AFTER = 5  # events: message_start, content_block_start, ping and two text deltas, then nothing
RETRY_AFTER = 7  # seconds: not 1, the reference gateway's own value, so a made-up retry-after is told apart
USAGE = (1234, 56)  # input, output: figures no gateway would count by itself for these prompts
PACED_TTFT_MS = 150
PACED_ITL_MS = 40
PACED_TOKENS = 16  # LONG_TEXT is sixteen words: one token each
# What the reference gateway's model calls get_weather with (required properties from the schema: a string and
# the enum's first value); the test suite checks this against conformance.gateway.model.example_input.
TOOL_INPUT: dict[str, Any] = {"location": "example", "unit": "celsius"}

PROPAGATION_CHECKS = (
    "propagation_cut_stream_not_completed",
    "propagation_stream_error_surfaces",
    "propagation_retry_after_kept",
    "propagation_overloaded_kept",
    "propagation_error_status_kept",
    "propagation_usage_kept",
    "propagation_ids_native",
    "propagation_pacing_kept",
    "propagation_tool_arguments_intact",
)


def cued(text: str, **cues: object) -> str:
    """The text with an upstream marker in front, e.g. "[[upstream:cut-after=5]] Repeat exactly: ..."."""
    parts = [name.replace("_", "-") + ("" if value is True else f"={value}") for name, value in cues.items()]
    return f"[[upstream:{','.join(parts)}]] {text}"


def anthropic_step(text: str, *, stream: bool = False, **body: Any) -> StepBuilder:
    """A /v1/messages step whose one user message is the given (cued) text."""

    def build(target: Target, _: Mapping[str, Exchange]) -> RequestSpec:
        request = messages_request(target, messages=[{"role": "user", "content": text}], **body)
        if stream:
            request["stream"] = True
        return RequestSpec("POST", "/v1/messages", json=request, stream=stream, label="upstream cue")

    return build


def openai_step(text: str, *, stream: bool = False) -> StepBuilder:
    """A /v1/chat/completions step whose one user message is the given (cued) text."""

    def build(target: Target, _: Mapping[str, Exchange]) -> RequestSpec:
        request: dict[str, Any] = {
            "model": target.model,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": text}],
        }
        if stream:
            request["stream"] = True
            request["stream_options"] = {"include_usage": True}
        return RequestSpec(
            "POST", "/v1/chat/completions", json=request, stream=stream, flavour="openai", label="upstream cue"
        )

    return build


def _tool_body() -> dict[str, Any]:
    return {"tools": [WEATHER_TOOL], "tool_choice": {"type": "tool", "name": WEATHER_TOOL["name"]}}


_CUT = cued(repeat(LONG_TEXT), cut_after=CUT_AFTER)
_ERROR = cued(repeat(LONG_TEXT), error_after=CUT_AFTER)
_LIMITED = cued(repeat(ECHO_TEXT), status=429, retry_after=RETRY_AFTER)
_OVERLOADED = cued(repeat(ECHO_TEXT), status=529)
_SERVER_ERROR = cued(repeat(ECHO_TEXT), status=500)
_BAD_REQUEST = cued(repeat(ECHO_TEXT), status=400)
_USAGE = cued(repeat(ECHO_TEXT), input_tokens=USAGE[0], output_tokens=USAGE[1])
_PACED = cued(repeat(LONG_TEXT), ttft_ms=PACED_TTFT_MS, itl_ms=PACED_ITL_MS)
# The baseline asks for the same reply with no delay: what the gateway adds by itself.
_UNPACED = cued(repeat(LONG_TEXT), ttft_ms=0, itl_ms=0)
_TOOL = cued("What is the weather in Paris? Use the get_weather tool.", tool=WEATHER_TOOL["name"])

PROPAGATION_PROBES: tuple[Probe, ...] = (
    Probe(
        "upstream_cut_stream",
        "streaming",
        f"The upstream drops the connection after {CUT_AFTER} events: the client must not get a complete message",
        (("stream", anthropic_step(_CUT, stream=True)),),
        ("propagation_cut_stream_not_completed",),
        {"cue": "cut-after"},
    ),
    Probe(
        "upstream_error_event",
        "streaming",
        f"The upstream sends an overloaded_error event after {CUT_AFTER} events: the client must see the error",
        (("stream", anthropic_step(_ERROR, stream=True)),),
        ("propagation_stream_error_surfaces", "stream_in_band_error_well_formed"),
        {"cue": "error-after"},
    ),
    Probe(
        "upstream_rate_limited",
        "messages",
        f"The upstream answers 429 with retry-after: {RETRY_AFTER}, plain and streamed",
        (("json", anthropic_step(_LIMITED)), ("stream", anthropic_step(_LIMITED, stream=True))),
        ("propagation_retry_after_kept",),
        {"status": 429, "retry_after": RETRY_AFTER},
    ),
    Probe(
        "upstream_overloaded",
        "messages",
        "The upstream answers 529 overloaded_error, plain and streamed",
        (("json", anthropic_step(_OVERLOADED)), ("stream", anthropic_step(_OVERLOADED, stream=True))),
        ("propagation_overloaded_kept",),
        {"status": 529},
    ),
    Probe(
        "upstream_server_error",
        "messages",
        "The upstream answers 500 api_error",
        (("json", anthropic_step(_SERVER_ERROR)),),
        ("propagation_error_status_kept",),
        {"status": 500},
    ),
    Probe(
        "upstream_bad_request",
        "messages",
        "The upstream answers 400 invalid_request_error",
        (("json", anthropic_step(_BAD_REQUEST)),),
        ("propagation_error_status_kept",),
        {"status": 400},
    ),
    Probe(
        "upstream_usage",
        "messages",
        f"The upstream reports usage {USAGE[0]} in / {USAGE[1]} out, plain and streamed",
        (("json", anthropic_step(_USAGE)), ("stream", anthropic_step(_USAGE, stream=True))),
        ("propagation_usage_kept", "propagation_ids_native"),
        {"input_tokens": USAGE[0], "output_tokens": USAGE[1]},
    ),
    Probe(
        "upstream_pacing",
        "streaming",
        f"The upstream streams {PACED_TOKENS} tokens {PACED_ITL_MS} ms apart after {PACED_TTFT_MS} ms; "
        "the same reply unpaced first, as a baseline",
        (("baseline", anthropic_step(_UNPACED, stream=True)), ("paced", anthropic_step(_PACED, stream=True))),
        ("propagation_pacing_kept",),
        {"ttft_s": PACED_TTFT_MS / 1000, "itl_s": PACED_ITL_MS / 1000, "tokens": PACED_TOKENS},
    ),
    Probe(
        "upstream_tool_stream",
        "tools",
        "The upstream streams a get_weather call with its arguments in many fragments",
        (("stream", anthropic_step(_TOOL, stream=True, **_tool_body())),),
        ("propagation_tool_arguments_intact", "propagation_ids_native"),
        {"tool_name": WEATHER_TOOL["name"], "tool_input": TOOL_INPUT},
        optional=True,
    ),
    Probe(
        "upstream_cut_stream_openai",
        "openai",
        f"/v1/chat/completions: the upstream drops the connection after {CUT_AFTER} chunks",
        (("stream", openai_step(_CUT, stream=True)),),
        ("propagation_cut_stream_not_completed",),
        {"cue": "cut-after"},
        optional=True,
    ),
    Probe(
        "upstream_error_event_openai",
        "openai",
        f"/v1/chat/completions: the upstream sends an in-stream error after {CUT_AFTER} chunks",
        (("stream", openai_step(_ERROR, stream=True)),),
        ("propagation_stream_error_surfaces",),
        {"cue": "error-after"},
        optional=True,
    ),
    Probe(
        "upstream_rate_limited_openai",
        "openai",
        f"/v1/chat/completions: the upstream answers 429 with retry-after: {RETRY_AFTER}",
        (("json", openai_step(_LIMITED)),),
        ("propagation_retry_after_kept",),
        {"status": 429, "retry_after": RETRY_AFTER},
        optional=True,
    ),
    Probe(
        "upstream_usage_openai",
        "openai",
        f"/v1/chat/completions: the upstream reports usage {USAGE[0]} / {USAGE[1]}, plain and streamed",
        (("json", openai_step(_USAGE)), ("stream", openai_step(_USAGE, stream=True))),
        ("propagation_usage_kept", "propagation_ids_native"),
        {"input_tokens": USAGE[0], "output_tokens": USAGE[1]},
        optional=True,
    ),
)

PROPAGATION_PROBES_BY_ID: dict[str, Probe] = {probe.id: probe for probe in PROPAGATION_PROBES}


def send_probe(run: ConformanceRun, probe: Probe) -> dict[str, Exchange]:
    """Send a probe's steps once each: a cued 429 or 529 is the answer under test, so it is never retried."""
    exchanges: dict[str, Exchange] = {}
    for role, build in probe.steps:
        step = build(run.target, exchanges)
        if isinstance(step, RequestSpec):
            exchanges[role] = run.send_one(step, retry=False)
    return exchanges
