"""The Locust users: FastHttpUser (geventhttpclient) users that send paced requests and judge every answer.

Each logical request is: wait for its slot (pacing), reserve budget, send, read the body through the suite's
StreamReader (or schema-check a JSON body), judge it (loadtests.outcomes), retry a 429 as the SDKs do, then
report: one Locust request event per HTTP attempt (failures carry their kind), optional TTFB/TTFT/ITL rows,
and one Sample to the process's Metrics.
"""

from __future__ import annotations

import random
import time
from typing import Any, ClassVar

import gevent
from geventhttpclient.url import URL
from locust import task
from locust.contrib.fasthttp import FastHttpUser

from conformance.stream import StreamReader
from loadtests.metrics import Sample
from loadtests.outcomes import (
    GatewayFailure,
    Outcome,
    body_validator,
    judge_body,
    judge_status,
    judge_stream,
    judge_transport,
)
from loadtests.pacing import Pacer, ramp
from loadtests.ratelimits import grade_retry_after, sdk_delay
from loadtests.run import LoadRun, PreparedRequest
from loadtests.wire import WireResponse, read_body, send

__all__ = ["AnthropicMessagesUser", "GatewayUser", "OpenAIChatUser", "current_run"]

_MAX_ERROR_BODY = 1 << 20
_MAX_JSON_BODY = 32 << 20
_IDLE_S = 0.2
_MAX_PROVOKE = 500  # ratelimit: requests a probe round may send to meet a 429 again
_MS = 1000.0  # seconds to milliseconds

# The LoadRun of this process, set by the plugin at test start (one Locust environment per process).
_RUNS: dict[int, LoadRun] = {}


def current_run(environment: Any) -> LoadRun | None:
    """The LoadRun the plugin made for this environment, if a test has started."""
    return _RUNS.get(id(environment))


def install_run(environment: Any, run: LoadRun | None) -> None:
    """Make run the environment's LoadRun (None forgets it)."""
    if run is None:
        _RUNS.pop(id(environment), None)
    else:
        _RUNS[id(environment)] = run


class GatewayUser(FastHttpUser):
    """Sends the scenario's mix of requests to -H/--host, paced, with every answer judged by the suite's core."""

    # Chosen by the plugin from --connect-timeout / --idle-timeout before users are spawned.
    connection_timeout = 10.0
    network_timeout = 60.0
    concurrency = 1
    # None: the scenario's mix; a subclass may pin the kinds it sends.
    kinds: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        run = current_run(environment)
        if run is None:
            raise RuntimeError("loadtests.plugin is not loaded: import it in the locustfile")
        self.load = run
        settings = run.settings
        self._request_event = environment.events.request
        self._clients: dict[str, tuple[Any, str]] = {}
        self._kinds = [k for k in run.kinds if self.kinds is None or k in self.kinds] or list(run.kinds)
        self._weights = [run.weights[run.kinds.index(k)] for k in self._kinds]
        rate: Any = settings.user_rps
        if settings.scenario.ramps:
            rate = ramp(settings.user_rps, settings.ramp_step, settings.ramp_max_rps)
        self.pacer = Pacer(rate, open_loop=settings.pacing == "open", phase=random.random())
        self._validator = {
            flavour: body_validator(flavour) if settings.validation == "full" else None
            for flavour in ("anthropic", "openai")
        }
        self._prober = False

    def wait_time(self) -> float:
        """Until this user's next scheduled send (or a short idle when the run has nothing more for it)."""
        if self.load.phase != "run" or self.load.budget.spent:
            return _IDLE_S
        return self.pacer.delay()

    @task
    def send_next(self) -> None:
        """One logical request of the mix (or, in the ratelimit scenario's grading phase, the honesty probes)."""
        run = self.load
        if run.phase == "probe":
            if self._prober or run.claim_prober():
                self._prober = True
                self._probe_retry_after()
            return
        if run.phase != "run" or run.budget.spent:
            return
        kind = self._kinds[0] if len(self._kinds) == 1 else random.choices(self._kinds, self._weights)[0]
        self.send_request(run.requests[kind], self.pacer.take())

    # ------------------------------------------------------------------ one logical request

    def send_request(self, prepared: PreparedRequest, origin: float) -> Sample | None:
        """Send one logical request whose latency counts from `origin`; retries 429s as the SDKs do."""
        run = self.load
        settings = run.settings
        attempts = 0
        rate_limited = 0
        waited = 0.0
        lag: float | None = None
        budget = run.budget
        if not budget.acquire(prepared.reserve_tokens):
            return None
        while True:
            attempts += 1
            outcome, sample, wire = self._attempt(prepared, origin)
            if lag is None:
                lag = sample.send_lag_ms
            if wire.status != 429:
                budget.settle(prepared.reserve_tokens, _used_tokens(outcome, wire))
                break
            rate_limited += 1
            grade = grade_retry_after(wire.header)
            run.metrics.grade_retry_after(grade.grade)
            if settings.scenario.ramps:
                run.limited(self.pacer.rate_now())
            if attempts > settings.sdk_retries or run.phase != "run":
                budget.settle(prepared.reserve_tokens, 0)
                break
            # Still in flight while it waits: the run must not end under a request that will be retried.
            budget.hold()
            budget.settle(prepared.reserve_tokens, 0)
            started = time.perf_counter()
            gevent.sleep(sdk_delay(wire.header, attempts - 1))
            waited += time.perf_counter() - started
            retry = budget.acquire(prepared.reserve_tokens)
            budget.release()
            if not retry:
                break  # the budget is spent: the last 429 is this request's answer
        sample.attempts = attempts
        sample.rate_limited = rate_limited
        sample.waited_ms = waited * 1000.0
        sample.send_lag_ms = lag
        run.metrics.record(sample)
        return sample

    def _client(self, prepared: PreparedRequest) -> tuple[Any, str]:
        found = self._clients.get(prepared.url)
        if found is None:
            # The FastHttpUser's own geventhttpclient pool: its timeouts and keep-alive connections.
            url = URL(prepared.url)
            found = self._clients[prepared.url] = (self.client.client.clientpool.get_client(url), url.request_uri)
        return found

    def _attempt(self, prepared: PreparedRequest, origin: float) -> tuple[Outcome, Sample, WireResponse]:
        """One HTTP exchange: send, read, judge, fire Locust's request event(s)."""
        run = self.load
        settings = run.settings
        client, uri = self._client(prepared)
        wall = time.time()
        t_send = time.perf_counter()
        deadline = t_send + settings.request_timeout
        wire = send(client, "POST", uri, prepared.body, prepared.headers)
        sample = Sample(kind=prepared.kind, send_lag_ms=max(t_send - origin, 0.0) * 1000.0)
        length = 0
        reader: StreamReader | None = None
        if wire.status is None:
            outcome = judge_transport(wire.error_kind or "error", wire.error_message, secrets=run.secrets)
            t_end = time.perf_counter()
        elif 200 <= wire.status < 300 and prepared.stream and _is_event_stream(wire):
            sample.stream = True
            if settings.validation == "off":
                first: list[float] = []

                def count(chunk: bytes, t: float, first: list[float] = first) -> None:
                    if not first:
                        first.append(t)

                cause, length = read_body(wire, count, deadline=deadline)
                t_end = time.perf_counter()
                outcome = Outcome() if cause == "eof" else Outcome(f"transport: {cause}", "body cut short")
                sample.ttfb_ms = (first[0] - origin) * 1000.0 if first else None
            else:
                reader = StreamReader(
                    prepared.flavour,
                    t_start=origin,
                    validate_schema=settings.validation == "full",
                    keep_events=False,
                    expect_usage=prepared.flavour == "openai",
                )
                cause, length = read_body(wire, reader.feed, deadline=deadline)
                t_end = time.perf_counter()
                result = reader.close(t_end, cause=cause)
                outcome = judge_stream(result, secrets=run.secrets)
                timings = result.timings
                sample.ttfb_ms = None if timings.ttfb is None else timings.ttfb * 1000.0
                sample.ttft_ms = None if timings.ttft is None else timings.ttft * 1000.0
                sample.gaps_s = timings.gaps
                sample.truncated = outcome.truncated
        else:
            chunks: list[bytes] = []
            first_t: list[float] = []

            def keep(chunk: bytes, t: float) -> None:
                if not first_t:
                    first_t.append(t)
                chunks.append(chunk)

            ok = 200 <= wire.status < 300
            cause, length = read_body(
                wire, keep, deadline=deadline, max_bytes=_MAX_JSON_BODY if ok else _MAX_ERROR_BODY
            )
            t_end = time.perf_counter()
            body = b"".join(chunks)
            sample.ttfb_ms = (first_t[0] - origin) * 1000.0 if first_t else None
            if not ok:
                outcome = judge_status(prepared.flavour, wire.status, body[:_MAX_ERROR_BODY], secrets=run.secrets)
            elif cause != "eof":
                outcome = Outcome(f"transport: {cause}", "the body was cut short")
            elif prepared.stream:
                outcome = Outcome(
                    "not-event-stream",
                    f"stream requested, got content-type {wire.header('content-type')!r}",
                )
            elif settings.validation == "off":
                outcome = Outcome()
            else:
                outcome = judge_body(
                    prepared.flavour, body, validator=self._validator[prepared.flavour], secrets=run.secrets
                )
        e2e_ms = (t_end - origin) * 1000.0
        sample.failure = outcome.failure
        if outcome.failure is not None:
            sample.detail = outcome.detail
            sample.curl = prepared.curl
        sample.status = wire.status
        sample.e2e_ms = e2e_ms
        sample.output_tokens = outcome.output_tokens
        sample.input_tokens = outcome.input_tokens
        sample.violations = outcome.violations
        fire = self._request_event.fire
        fire(
            request_type="POST",
            name=prepared.label,
            response_time=e2e_ms,
            response_length=length,
            response=None,
            context={"kind": prepared.kind},
            exception=None if outcome.failure is None else GatewayFailure(outcome.failure, outcome.detail),
            start_time=wall,
            url=prepared.url,
        )
        if settings.metric_rows:
            for label, value in (("TTFB", sample.ttfb_ms), ("TTFT", sample.ttft_ms)):
                if value is not None:
                    fire(
                        request_type=label,
                        name=prepared.label,
                        response_time=value,
                        response_length=0,
                        response=None,
                        context={},
                        exception=None,
                    )
            if sample.gaps_s:
                fire(
                    request_type="ITL",
                    name=prepared.label,
                    response_time=sum(sample.gaps_s) * _MS / len(sample.gaps_s),
                    response_length=0,
                    response=None,
                    context={},
                    exception=None,
                )
        return outcome, sample, wire

    # ------------------------------------------------------------------ ratelimit: is retry-after honest?

    def _probe_retry_after(self) -> None:
        """Meet a 429, wait exactly its retry-after, send again: the answer must not be another 429."""
        run = self.load
        prepared = run.requests[self._kinds[0]]
        metrics = run.metrics
        for _round in range(run.settings.honesty_probes):
            grade = None
            t_429 = 0.0
            for _ in range(_MAX_PROVOKE):
                if run.phase == "done" or not run.budget.acquire(prepared.reserve_tokens):
                    run.finish("budget")
                    return
                outcome, sample, wire = self._attempt(prepared, time.perf_counter())
                run.budget.settle(prepared.reserve_tokens, _used_tokens(outcome, wire))
                if wire.status == 429:
                    grade = grade_retry_after(wire.header)
                    metrics.grade_retry_after(grade.grade)
                    t_429 = wire.t_headers or time.perf_counter()
                    sample.rate_limited = 1
                    metrics.record(sample)
                    break
                metrics.record(sample)
            if grade is None or not grade.usable or grade.seconds is None:
                metrics.grade_honesty("untestable")
                continue
            # Waiting from our receipt of the 429 waits at least as long as the gateway advertised.
            gevent.sleep(max(t_429 + grade.seconds - time.perf_counter(), 0.0))
            if not run.budget.acquire(prepared.reserve_tokens):
                run.finish("budget")
                return
            origin = time.perf_counter()
            outcome, sample, wire = self._attempt(prepared, origin)
            run.budget.settle(prepared.reserve_tokens, _used_tokens(outcome, wire))
            metrics.histograms["wait_429"].add((origin - t_429) * 1000.0)
            refused = wire.status == 429
            if refused:
                sample.rate_limited = 1
                metrics.grade_retry_after(grade_retry_after(wire.header).grade)
            metrics.record(sample)
            metrics.grade_honesty("failed" if refused else "passed")
        run.finish("ratelimit graded")


def _used_tokens(outcome: Outcome, wire: WireResponse) -> int | None:
    """Tokens the gateway says a request used; 0 for a refused one; None (keep the reservation) when unknown."""
    if outcome.output_tokens is not None and outcome.input_tokens is not None:
        return outcome.output_tokens + outcome.input_tokens
    if wire.status is not None and not 200 <= wire.status < 300:
        return 0
    return None


def _is_event_stream(wire: WireResponse) -> bool:
    value = wire.header("content-type") or ""
    return value.split(";", 1)[0].strip().lower() == "text/event-stream"


class AnthropicMessagesUser(GatewayUser):
    """Only /v1/messages requests (streaming and not) of the scenario's mix."""

    kinds = ("anthropic-stream", "anthropic")


class OpenAIChatUser(GatewayUser):
    """Only /v1/chat/completions requests (streaming and not) of the scenario's mix."""

    kinds = ("openai-stream", "openai")
