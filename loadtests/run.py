"""The state one process shares between its users: target, prepared requests, metrics, budget and the phase.

Plain Python (no Locust): the Locust plugin builds a LoadRun at test start and tells it how to signal the rest of
a distributed run (`on_limited`, `on_finished`), so the users never need to know whether they run alone, on a
worker, or under a master.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from conformance import __version__
from conformance.exchange import Exchange, RequestSpec
from conformance.gateway.tokens import count_anthropic_input, count_openai_input
from conformance.probes import messages_request, openai_body, repeat, user
from conformance.stream import Flavour
from conformance.target import KEY_PLACEHOLDER, Secret, Target
from loadtests.budget import Budget, CostEstimate
from loadtests.metrics import Metrics
from loadtests.settings import LoadSettings, RequestKind

__all__ = ["LoadRun", "Phase", "PreparedRequest", "prepare_requests", "reply_text"]

Phase = Literal["run", "probe", "done"]
USER_AGENT = f"gateway-conformance-load/{__version__}"
_VOCABULARY = (
    *("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"),
    *("mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey"),
    *("xray", "yankee", "zulu"),
)


def reply_text(words: int) -> str:
    """The text the prompt asks to be repeated: `words` words, one token each on the reference gateway."""
    return " ".join(_VOCABULARY[i % len(_VOCABULARY)] for i in range(words))


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request built once and sent many times: its bytes, headers and what it may cost."""

    kind: RequestKind
    flavour: Flavour
    stream: bool
    path: str
    url: str
    label: str  # the name in Locust's table
    body: bytes
    headers: dict[str, str]  # includes the credential: never logged, never shown
    prompt_tokens: int  # the reference gateway's count of the prompt (an estimate for other gateways)
    reserve_tokens: int  # the most one request can cost: prompt + max_tokens
    curl: str  # reproduces the request; the key is the shell's $GATEWAY_API_KEY


def prepare_requests(settings: LoadSettings, target: Target) -> dict[str, PreparedRequest]:
    """One PreparedRequest per kind in the settings' mix."""
    text = repeat(reply_text(settings.reply_words))
    prepared: dict[str, PreparedRequest] = {}
    for kind, _weight in settings.mix:
        stream = kind.endswith("-stream")
        flavour: Flavour = "openai" if kind.startswith("openai") else "anthropic"
        headers = {"user-agent": USER_AGENT, "content-type": "application/json"}
        if flavour == "anthropic":
            path = "/v1/messages"
            body = messages_request(target, max_tokens=settings.max_tokens, messages=user(text))
            if stream:
                body["stream"] = True
            headers["accept"] = "text/event-stream" if stream else "application/json"
            headers["anthropic-version"] = settings.anthropic_version
            headers.update(target.auth_headers())
            prompt_tokens = count_anthropic_input(body)
        else:
            path = "/v1/chat/completions"
            body = openai_body(target, stream=stream)
            body["max_tokens"] = settings.max_tokens
            body["messages"] = [{"role": "user", "content": text}]
            headers["accept"] = "text/event-stream" if stream else "application/json"
            # The OpenAI surface authenticates with Bearer, whatever the Anthropic side uses.
            if target.api_key is not None:
                headers["authorization"] = f"Bearer {target.api_key.reveal()}"
            prompt_tokens = count_openai_input(body)
        label = f"{path} [stream]" if stream else path
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        shown = {**headers, **_placeholder_auth(target, flavour)}
        spec = RequestSpec("POST", path, content=data, stream=stream, flavour=flavour)
        curl = Exchange(spec, target.url(path), tuple(shown.items())).curl()
        prepared[kind] = PreparedRequest(
            kind=kind,
            flavour=flavour,
            stream=stream,
            path=path,
            url=target.url(path),
            label=label,
            body=data,
            headers=headers,
            prompt_tokens=prompt_tokens,
            reserve_tokens=prompt_tokens + settings.max_tokens,
            curl=curl,
        )
    return prepared


def _placeholder_auth(target: Target, flavour: Flavour) -> dict[str, str]:
    if target.api_key is None:
        return {}
    if flavour == "openai":
        return {"authorization": f"Bearer {KEY_PLACEHOLDER}"}
    return target.auth_headers(placeholder=True)


class LoadRun:
    """Per-process state of one load run."""

    def __init__(
        self,
        settings: LoadSettings,
        target: Target,
        *,
        metrics: Metrics | None = None,
        request_share: int | None = None,
        token_share: int | None = None,
        may_probe: bool = True,
        on_limited: Callable[[float], None] | None = None,
        on_finished: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.target = target
        self.metrics = metrics if metrics is not None else Metrics()
        self.requests = prepare_requests(settings, target)
        self.kinds = [kind for kind, _ in settings.mix]
        self.weights = [weight for _, weight in settings.mix]
        self.cost = CostEstimate(
            max_requests=settings.max_requests,
            max_tokens=settings.max_tokens,
            prompt_tokens=max(r.prompt_tokens for r in self.requests.values()),
            token_budget=settings.token_budget,
        )
        self.budget = Budget(
            settings.max_requests if request_share is None else request_share,
            settings.token_budget if token_share is None else token_share,
            on_spent=lambda: self.finish("budget"),
        )
        self.phase: Phase = "run"
        self.may_probe = may_probe and settings.scenario.ramps
        self.prober_claimed = False
        self.started = time.perf_counter()
        self.finished_reason: str | None = None
        self._on_limited = on_limited
        self._on_finished = on_finished
        self.secrets: tuple[Secret | None, ...] = (target.api_key,)

    def set_share(self, requests: int, tokens: int | None) -> None:
        """This process's part of the run's budgets (a worker's share, sent by the master)."""
        self.budget.requests_left = requests
        self.budget.tokens_left = tokens

    def limited(self, user_rps: float) -> None:
        """The first 429 of a ramp: stop ramping everywhere and start grading retry-after."""
        if self.metrics.first_429_rps is None:
            self.metrics.first_429_rps = round(user_rps, 3)
        if self.phase == "run" and self.settings.scenario.ramps:
            self.phase = "probe"
            if self._on_limited is not None:
                self._on_limited(user_rps)

    def enter_phase(self, phase: Phase) -> None:
        """Move to a phase another process decided (the master's broadcast)."""
        order = {"run": 0, "probe": 1, "done": 2}
        if order[phase] > order[self.phase]:
            self.phase = phase

    def claim_prober(self) -> bool:
        """Whether the calling user becomes the one that waits out retry-after (one per run)."""
        if self.may_probe and not self.prober_claimed:
            self.prober_claimed = True
            return True
        return False

    def finish(self, reason: str) -> None:
        """This process is done (budget spent, grading finished): tell whoever ends the run, once."""
        if self.finished_reason is not None:
            return
        self.finished_reason = reason
        if reason != "budget":
            self.phase = "done"
        if self._on_finished is not None:
            self._on_finished(reason)

    def describe(self) -> dict[str, Any]:
        """For the report: settings and the cost guard."""
        return {"settings": self.settings.as_dict(), "cost": self.cost.as_dict()}
