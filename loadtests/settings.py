"""What a load run is told: scenario, request mix, pacing, budgets, timeouts and thresholds, validated up front."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from conformance.errors import HarnessError
from conformance.target import AUTH_SCHEMES, DEFAULT_ANTHROPIC_VERSION, DEFAULT_MODEL, AuthScheme

__all__ = [
    "DEFAULT_RUN_TIME_S",
    "PACINGS",
    "REQUEST_KINDS",
    "SCENARIOS",
    "VALIDATIONS",
    "LoadSettings",
    "Pacing",
    "RequestKind",
    "Scenario",
    "Thresholds",
    "Validation",
    "add_arguments",
    "parse_mix",
    "settings_from_options",
]

RequestKind = Literal["anthropic-stream", "anthropic", "openai-stream", "openai"]
REQUEST_KINDS: tuple[str, ...] = get_args(RequestKind)
Pacing = Literal["open", "closed"]
PACINGS: tuple[str, ...] = get_args(Pacing)
Validation = Literal["full", "grammar", "off"]
VALIDATIONS: tuple[str, ...] = get_args(Validation)

# A run without --run-time still ends: every run is bounded in time and in requests.
DEFAULT_RUN_TIME_S = 60
DEFAULT_MAX_REQUESTS = 2000


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named load shape: what it sends, whether it ramps, and how it treats 429s."""

    name: str
    description: str
    mix: tuple[tuple[RequestKind, float], ...]
    retries_429: int  # SDK-style retries after a 429 (the SDKs default to 2); 0 reports every 429 as it is
    ramps: bool = False


SCENARIOS: Mapping[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "latency",
            "steady streaming load on /v1/messages: TTFB, TTFT, ITL, end-to-end latency, output tokens/s",
            (("anthropic-stream", 1.0),),
            retries_429=2,
        ),
        Scenario(
            "ratelimit",
            "ramps the request rate until 429s appear, then grades retry-after: present, well-formed, within the "
            "SDKs' 60 s, and honest (a request sent after waiting the advertised time succeeds)",
            (("anthropic-stream", 1.0),),
            retries_429=0,
            ramps=True,
        ),
        Scenario(
            "termination",
            "Anthropic and OpenAI streams; counts the streams that end without message_stop / [DONE], by cause "
            "(eof, reset, timeout)",
            (("anthropic-stream", 1.0), ("openai-stream", 1.0)),
            retries_429=2,
        ),
        Scenario(
            "mixed",
            "streaming and non-streaming requests on both surfaces",
            (("anthropic-stream", 4.0), ("anthropic", 2.0), ("openai-stream", 2.0), ("openai", 1.0)),
            retries_429=2,
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The CI gate: a run whose numbers exceed any of these exits non-zero (None: not checked)."""

    max_fail_ratio: float | None = 0.01
    max_p95_ttft_ms: float | None = None
    max_p95_itl_ms: float | None = None
    max_truncated_ratio: float | None = 0.0

    def __post_init__(self) -> None:
        for name in ("max_fail_ratio", "max_truncated_ratio"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise HarnessError(f"{name.replace('_', '-')} must be a ratio between 0 and 1, got {value!r}")
        for name in ("max_p95_ttft_ms", "max_p95_itl_ms"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise HarnessError(f"{name.replace('_', '-')} must be a positive number of ms, got {value!r}")

    def as_dict(self) -> dict[str, float | None]:
        """The thresholds by name, for reports."""
        return {
            "max_fail_ratio": self.max_fail_ratio,
            "max_p95_ttft_ms": self.max_p95_ttft_ms,
            "max_p95_itl_ms": self.max_p95_itl_ms,
            "max_truncated_ratio": self.max_truncated_ratio,
        }


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """Everything a load run needs besides the host and the key (which come from -H and the environment)."""

    scenario: Scenario = field(default_factory=lambda: SCENARIOS["latency"])
    mix: tuple[tuple[RequestKind, float], ...] = ()
    pacing: Pacing = "open"
    user_rps: float = 1.0  # per user; 0 sends back to back (closed loop, as fast as the gateway answers)
    max_requests: int = DEFAULT_MAX_REQUESTS
    token_budget: int | None = None
    max_tokens: int = 64
    reply_words: int = 10
    model: str = DEFAULT_MODEL
    auth: AuthScheme = "x-api-key"
    anthropic_version: str = DEFAULT_ANTHROPIC_VERSION
    validation: Validation = "full"
    connect_timeout: float = 10.0
    idle_timeout: float = 60.0
    request_timeout: float = 600.0
    retries_429: int | None = None  # None: the scenario's
    ramp_step: float = 0.5  # ratelimit: per-user requests/s added every second
    ramp_max_rps: float = 50.0  # ratelimit: per-user cap of the ramp
    honesty_probes: int = 3
    metric_rows: bool = True
    thresholds: Thresholds = field(default_factory=Thresholds)
    report_prefix: str | None = None

    def __post_init__(self) -> None:
        if not self.mix:
            object.__setattr__(self, "mix", self.scenario.mix)
        if self.retries_429 is None:
            object.__setattr__(self, "retries_429", self.scenario.retries_429)
        if self.pacing not in PACINGS:
            raise HarnessError(f"pacing must be one of {', '.join(PACINGS)}, got {self.pacing!r}")
        if self.validation not in VALIDATIONS:
            raise HarnessError(f"validation must be one of {', '.join(VALIDATIONS)}, got {self.validation!r}")
        if self.auth not in AUTH_SCHEMES:
            raise HarnessError(f"auth must be one of {', '.join(AUTH_SCHEMES)}, got {self.auth!r}")
        if not (self.user_rps >= 0 and math.isfinite(self.user_rps)):
            raise HarnessError(f"user-rps must be a finite number >= 0, got {self.user_rps!r}")
        if self.max_requests < 1:
            raise HarnessError(f"max-requests must be at least 1 (every run is bounded), got {self.max_requests}")
        if self.token_budget is not None and self.token_budget < 1:
            raise HarnessError(f"token-budget must be at least 1, got {self.token_budget}")
        if self.max_tokens < 1:
            raise HarnessError(f"max-tokens must be at least 1, got {self.max_tokens}")
        if not 1 <= self.reply_words <= 4096:
            raise HarnessError(f"reply-words must be 1..4096, got {self.reply_words}")
        for name in ("connect_timeout", "idle_timeout", "request_timeout"):
            if not getattr(self, name) > 0:
                raise HarnessError(f"{name.replace('_', '-')} must be a positive number of seconds")
        if self.retries_429 is not None and not 0 <= self.retries_429 <= 10:
            raise HarnessError(f"retries-429 must be 0..10, got {self.retries_429}")
        if self.ramp_step < 0 or self.ramp_max_rps <= 0:
            raise HarnessError("ramp-step must be >= 0 and ramp-max-rps positive")
        if self.honesty_probes < 1:
            raise HarnessError(f"honesty-probes must be at least 1, got {self.honesty_probes}")
        if self.scenario.ramps and self.user_rps == 0:
            raise HarnessError("the ratelimit scenario ramps a paced rate: user-rps must be positive")

    @property
    def sdk_retries(self) -> int:
        """How many times a 429 is retried after the wait the SDKs would choose."""
        return self.retries_429 if self.retries_429 is not None else self.scenario.retries_429

    def as_dict(self) -> dict[str, Any]:
        """The settings for the report (no secret here: the key is never a setting)."""
        return {
            "scenario": self.scenario.name,
            "mix": {kind: weight for kind, weight in self.mix},
            "pacing": self.pacing,
            "user_rps": self.user_rps,
            "max_requests": self.max_requests,
            "token_budget": self.token_budget,
            "max_tokens": self.max_tokens,
            "reply_words": self.reply_words,
            "model": self.model,
            "auth": self.auth,
            "anthropic_version": self.anthropic_version,
            "validation": self.validation,
            "connect_timeout_s": self.connect_timeout,
            "idle_timeout_s": self.idle_timeout,
            "request_timeout_s": self.request_timeout,
            "retries_429": self.sdk_retries,
            "ramp_step": self.ramp_step,
            "ramp_max_rps": self.ramp_max_rps,
            "honesty_probes": self.honesty_probes,
        }


def parse_mix(text: str) -> tuple[tuple[RequestKind, float], ...]:
    """`anthropic-stream=3,openai=1` as ((kind, weight), ...); a HarnessError naming the valid kinds otherwise."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, weight_text = part.partition("=")
        name = name.strip()
        if name not in REQUEST_KINDS:
            raise HarnessError(f"unknown request kind {name!r} in --mix; valid kinds: {', '.join(REQUEST_KINDS)}")
        try:
            weight = float(weight_text) if weight_text.strip() else 1.0
        except ValueError:
            raise HarnessError(f"--mix weight for {name} must be a number, got {weight_text!r}") from None
        if not (weight >= 0 and math.isfinite(weight)):
            raise HarnessError(f"--mix weight for {name} must be >= 0, got {weight_text!r}")
        mix[name] = weight
    if not mix or not any(mix.values()):
        raise HarnessError(f"--mix needs at least one kind with a positive weight; valid kinds: {REQUEST_KINDS}")
    return tuple((kind, weight) for kind, weight in mix.items() if weight > 0)  # type: ignore[misc]


def add_arguments(parser: Any) -> None:
    """Register the load-test options (an argparse parser, or Locust's in init_command_line_parser)."""
    group = parser.add_argument_group(
        "LLM gateway load test", "The key comes from GATEWAY_API_KEY, then ANTHROPIC_API_KEY; never from a flag."
    )
    group.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default=os.environ.get("LOCUST_SCENARIO", "latency"),
        help="what to run: "
        + "; ".join(f"{s.name}: {s.description}" for s in SCENARIOS.values())
        + " (env LOCUST_SCENARIO; default latency)",
    )
    group.add_argument(
        "--mix",
        default=None,
        metavar="KIND=W,...",
        help=f"request kinds and weights, overriding the scenario's; kinds: {', '.join(REQUEST_KINDS)}",
    )
    group.add_argument(
        "--pacing",
        choices=PACINGS,
        default="open",
        help="open: each user sends on a fixed schedule and latency counts from the scheduled time, so a slow "
        "gateway cannot hide its queueing (no coordinated omission); closed: constant throughput per user, "
        "latency from the actual send (default open)",
    )
    group.add_argument(
        "--user-rps",
        type=float,
        default=1.0,
        help="requests per second per user; 0 sends back to back (default 1)",
    )
    group.add_argument(
        "--max-requests",
        type=int,
        default=DEFAULT_MAX_REQUESTS,
        help=f"request budget of the whole run, 429 retries included; the run stops when it is spent "
        f"(default {DEFAULT_MAX_REQUESTS})",
    )
    group.add_argument(
        "--token-budget",
        type=int,
        default=None,
        help="token budget of the whole run (input + output, as the gateway reports usage); each request "
        "reserves its worst case before it is sent, so the budget is never exceeded",
    )
    group.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request (default 64)")
    group.add_argument(
        "--reply-words", type=int, default=10, help="words the prompt asks the model to repeat (default 10)"
    )
    group.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    group.add_argument(
        "--auth",
        choices=AUTH_SCHEMES,
        default="x-api-key",
        help="how /v1/messages sends the key (OpenAI requests always use Bearer)",
    )
    group.add_argument("--anthropic-version", default=DEFAULT_ANTHROPIC_VERSION, help="anthropic-version header")
    group.add_argument(
        "--validation",
        choices=VALIDATIONS,
        default="full",
        help="full: SSE framing + JSON + grammar + JSON Schema on every event (the suite's checks); grammar: "
        "without the schemas; off: bytes only, no TTFT (for measuring the harness)",
    )
    group.add_argument("--connect-timeout", type=float, default=10.0, help="seconds (default 10)")
    group.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        help="seconds without a byte before a response counts as cut by timeout (default 60)",
    )
    group.add_argument(
        "--request-timeout", type=float, default=600.0, help="seconds a whole response may take (default 600)"
    )
    group.add_argument(
        "--retries-429",
        type=int,
        default=None,
        help="retries after a 429, waiting as the SDKs do (default: 2, or 0 in the ratelimit scenario)",
    )
    group.add_argument(
        "--ramp-step", type=float, default=0.5, help="ratelimit: per-user req/s added each second (default 0.5)"
    )
    group.add_argument(
        "--ramp-max-rps", type=float, default=50.0, help="ratelimit: per-user req/s cap of the ramp (default 50)"
    )
    group.add_argument(
        "--honesty-probes",
        type=int,
        default=3,
        help="ratelimit: times a 429's retry-after is waited out and the request re-sent (default 3)",
    )
    group.add_argument(
        "--no-metric-rows",
        dest="metric_rows",
        action="store_false",
        default=True,
        help="do not add TTFB/TTFT/ITL rows to Locust's request table (they also count in its Aggregated row)",
    )
    group.add_argument(
        "--max-fail-ratio", type=float, default=0.01, help="gate: failed requests / requests (default 0.01)"
    )
    group.add_argument("--max-p95-ttft-ms", type=float, default=None, help="gate: p95 time to first token")
    group.add_argument("--max-p95-itl-ms", type=float, default=None, help="gate: p95 inter-token latency")
    group.add_argument(
        "--max-truncated-ratio",
        type=float,
        default=0.0,
        help="gate: streams without their end marker / streams (default 0)",
    )
    group.add_argument(
        "--llm-report",
        default=None,
        metavar="PREFIX",
        help="write PREFIX.json, PREFIX.csv and PREFIX.html with the LLM metrics and the gate's verdict "
        "(default: <--csv prefix>_llm when --csv is given)",
    )


def _get(options: object, name: str, default: Any = None) -> Any:
    return getattr(options, name, default)


def settings_from_options(options: argparse.Namespace | object) -> LoadSettings:
    """LoadSettings from parsed options (Locust's or argparse's); HarnessError when something is invalid."""
    scenario_name = _get(options, "scenario") or "latency"
    if scenario_name not in SCENARIOS:
        raise HarnessError(f"unknown scenario {scenario_name!r}; valid scenarios: {', '.join(SCENARIOS)}")
    scenario = SCENARIOS[scenario_name]
    mix_text = _get(options, "mix")
    report = _get(options, "llm_report")
    csv_prefix = _get(options, "csv_prefix")
    if report is None and csv_prefix:
        report = f"{csv_prefix}_llm"
    return LoadSettings(
        scenario=scenario,
        mix=parse_mix(mix_text) if mix_text else scenario.mix,
        pacing=_get(options, "pacing", "open"),
        user_rps=float(_get(options, "user_rps", 1.0)),
        max_requests=int(_get(options, "max_requests", DEFAULT_MAX_REQUESTS)),
        token_budget=_get(options, "token_budget"),
        max_tokens=int(_get(options, "max_tokens", 64)),
        reply_words=int(_get(options, "reply_words", 10)),
        model=_get(options, "model", DEFAULT_MODEL),
        auth=_get(options, "auth", "x-api-key"),
        anthropic_version=_get(options, "anthropic_version", DEFAULT_ANTHROPIC_VERSION),
        validation=_get(options, "validation", "full"),
        connect_timeout=float(_get(options, "connect_timeout", 10.0)),
        idle_timeout=float(_get(options, "idle_timeout", 60.0)),
        request_timeout=float(_get(options, "request_timeout", 600.0)),
        retries_429=_get(options, "retries_429"),
        ramp_step=float(_get(options, "ramp_step", 0.5)),
        ramp_max_rps=float(_get(options, "ramp_max_rps", 50.0)),
        honesty_probes=int(_get(options, "honesty_probes", 3)),
        metric_rows=bool(_get(options, "metric_rows", True)),
        thresholds=Thresholds(
            max_fail_ratio=_get(options, "max_fail_ratio", 0.01),
            max_p95_ttft_ms=_get(options, "max_p95_ttft_ms"),
            max_p95_itl_ms=_get(options, "max_p95_itl_ms"),
            max_truncated_ratio=_get(options, "max_truncated_ratio", 0.0),
        ),
        report_prefix=report,
    )
