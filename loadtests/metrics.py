"""The load test's own numbers: mergeable histograms and counters, so workers ship them and the master adds them up.

A Histogram keeps log-spaced buckets with 0.1 % relative accuracy (the idea of DDSketch), plus exact count, sum,
min and max. Two histograms merge by adding bucket counts, so percentiles over a distributed run are the
percentiles of all samples, not an average of per-worker percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HISTOGRAMS",
    "PERCENTILES",
    "TRUNCATION_CAUSES",
    "Histogram",
    "Metrics",
    "Sample",
    "truncation_cause",
]

PERCENTILES = (0.5, 0.9, 0.95, 0.99)
# name -> (label, unit)
HISTOGRAMS: Mapping[str, tuple[str, str]] = {
    "ttfb": ("TTFB", "ms"),
    "ttft": ("TTFT", "ms"),
    "itl": ("ITL", "ms"),
    "e2e": ("E2E", "ms"),
    "tokens_per_s": ("output tokens/s", "tok/s"),
    "wait_429": ("429 wait", "ms"),
    "send_lag": ("send lag", "ms"),
}
TRUNCATION_CAUSES = ("eof", "reset", "timeout")
MAX_EXAMPLES = 50  # failure kinds that keep an example (the first one seen)

_ACCURACY = 0.001
_GAMMA = (1 + _ACCURACY) / (1 - _ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_MIN_VALUE = 1e-3  # smaller values (e.g. two deltas in one TCP read, 0 ms apart) land in the zero bucket


def truncation_cause(end_cause: str) -> str:
    """The cause family of a stream that ended without its end marker: eof, reset or timeout."""
    if end_cause.startswith("timeout"):
        return "timeout"
    if end_cause == "eof":
        return "eof"
    return "reset"


class Histogram:
    """Log-bucketed histogram with exact count/sum/min/max; percentiles within 0.1 % of the true sample."""

    __slots__ = ("buckets", "count", "maximum", "minimum", "total", "zeros")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf
        self.zeros = 0

    def add(self, value: float) -> None:
        """Record one value (negative values count as zero)."""
        self.count += 1
        self.total += value
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value
        if value < _MIN_VALUE:
            self.zeros += 1
        else:
            index = math.ceil(math.log(value) / _LOG_GAMMA)
            self.buckets[index] = self.buckets.get(index, 0) + 1

    def add_many(self, values: Sequence[float], scale: float = 1.0) -> None:
        """Record several values, each times scale: a stream's inter-token gaps, the zeros among them (deltas read
        together) in bulk."""
        zeros = values.count(0.0)
        if zeros:
            self.count += zeros
            self.zeros += zeros
            if self.minimum > 0.0:
                self.minimum = 0.0
            if self.maximum < 0.0:
                self.maximum = 0.0
            if zeros == len(values):
                return
        add = self.add
        for value in filter(None, values) if zeros else values:
            add(value * scale)

    def merge(self, other: Histogram) -> None:
        """Add another histogram's samples to this one."""
        if not other.count:
            return
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        self.zeros += other.zeros
        buckets = self.buckets
        for index, n in other.buckets.items():
            buckets[index] = buckets.get(index, 0) + n

    def percentile(self, q: float) -> float | None:
        """The nearest-rank q-quantile (0 < q <= 1), None when empty."""
        if not self.count:
            return None
        if not 0 < q <= 1:
            raise ValueError(f"q must be in (0, 1], got {q}")
        rank = max(1, math.ceil(q * self.count))
        if rank <= self.zeros:
            return max(self.minimum, 0.0)
        seen = self.zeros
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                estimate = 2 * _GAMMA**index / (_GAMMA + 1)
                return min(max(estimate, self.minimum), self.maximum)
        return self.maximum

    @property
    def mean(self) -> float | None:
        """The exact mean, None when empty."""
        return self.total / self.count if self.count else None

    def describe(self) -> dict[str, float | int | None]:
        """count, mean, min, p50, p90, p95, p99, max (rounded for a report)."""
        row: dict[str, float | int | None] = {"count": self.count, "mean": _round(self.mean)}
        row["min"] = _round(self.minimum) if self.count else None
        for q in PERCENTILES:
            row[f"p{round(q * 100)}"] = _round(self.percentile(q))
        row["max"] = _round(self.maximum) if self.count else None
        return row

    def to_wire(self) -> dict[str, Any]:
        """A msgpack/JSON-friendly form (lists, not int-keyed maps)."""
        indices = sorted(self.buckets)
        return {
            "n": self.count,
            "s": self.total,
            "lo": self.minimum if self.count else None,
            "hi": self.maximum if self.count else None,
            "z": self.zeros,
            "i": indices,
            "c": [self.buckets[i] for i in indices],
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Histogram:
        """The inverse of to_wire."""
        histogram = cls()
        histogram.count = int(data["n"])
        histogram.total = float(data["s"])
        if histogram.count:
            histogram.minimum = float(data["lo"])
            histogram.maximum = float(data["hi"])
        histogram.zeros = int(data["z"])
        histogram.buckets = {int(i): int(c) for i, c in zip(data["i"], data["c"], strict=True)}
        return histogram


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(slots=True)
class Sample:
    """One logical request as the metrics see it (times in ms)."""

    kind: str
    failure: str | None = None
    status: int | None = None
    ttfb_ms: float | None = None
    ttft_ms: float | None = None
    gaps_s: tuple[float, ...] = ()  # inter-token gaps in seconds, as the reader gives them (recorded in ms)
    e2e_ms: float | None = None
    send_lag_ms: float | None = None
    output_tokens: int | None = None
    input_tokens: int | None = None
    stream: bool = False
    truncated: str | None = None  # eof / reset / timeout: the stream ended without its end marker
    violations: tuple[tuple[str, int], ...] = ()
    attempts: int = 1
    rate_limited: int = 0  # 429 answers this request met before its final answer
    waited_ms: float = 0.0  # time spent waiting before retries after those 429s
    detail: str = ""  # what the failure saw (masked)
    curl: str = ""  # how to reproduce the request (the key as $GATEWAY_API_KEY)


class Metrics:
    """Counters and histograms of one process (or, on the master, of all workers merged)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self.histograms: dict[str, Histogram] = {name: Histogram() for name in HISTOGRAMS}
        self.requests = 0
        self.failed = 0
        self.attempts = 0
        self.by_kind: dict[str, list[int]] = {}  # kind -> [requests, failed]
        self.failures: dict[str, int] = {}
        self.violations: dict[str, int] = {}
        self.streams = 0
        self.streams_complete = 0
        self.truncated: dict[str, int] = dict.fromkeys(TRUNCATION_CAUSES, 0)
        self.output_tokens = 0
        self.input_tokens = 0
        self.rate_limited = 0  # 429 answers
        self.requests_rate_limited = 0  # logical requests that met at least one 429
        self.retry_after: dict[str, int] = {}  # present / missing / malformed / out-of-range
        self.honesty: dict[str, int] = {}  # passed / failed / untestable
        self.first_429_rps: float | None = None
        self.counters: dict[str, int] = {}
        self.examples: dict[str, dict[str, str]] = {}  # failure kind -> its first detail and curl

    def record(self, sample: Sample) -> None:
        """Count one finished request."""
        self.requests += 1
        self.attempts += sample.attempts
        per_kind = self.by_kind.get(sample.kind)
        if per_kind is None:
            per_kind = self.by_kind[sample.kind] = [0, 0]
        per_kind[0] += 1
        if sample.failure is not None:
            self.failed += 1
            per_kind[1] += 1
            self.failures[sample.failure] = self.failures.get(sample.failure, 0) + 1
            if sample.failure not in self.examples and len(self.examples) < MAX_EXAMPLES:
                self.examples[sample.failure] = {"detail": sample.detail, "curl": sample.curl}
        h = self.histograms
        if sample.ttfb_ms is not None:
            h["ttfb"].add(sample.ttfb_ms)
        if sample.ttft_ms is not None:
            h["ttft"].add(sample.ttft_ms)
        if sample.gaps_s:
            h["itl"].add_many(sample.gaps_s, 1000.0)
        if sample.e2e_ms is not None:
            h["e2e"].add(sample.e2e_ms)
        if sample.send_lag_ms is not None:
            h["send_lag"].add(sample.send_lag_ms)
        if sample.output_tokens is not None:
            self.output_tokens += sample.output_tokens
            # Decode speed from the gateway's own count: tokens after the first, over the time after the first.
            if sample.ttft_ms is not None and sample.e2e_ms is not None and sample.e2e_ms > sample.ttft_ms:
                h["tokens_per_s"].add(sample.output_tokens * 1000.0 / (sample.e2e_ms - sample.ttft_ms))
        if sample.input_tokens is not None:
            self.input_tokens += sample.input_tokens
        if sample.stream:
            self.streams += 1
            if sample.truncated is not None:
                self.truncated[sample.truncated] = self.truncated.get(sample.truncated, 0) + 1
            elif sample.failure is None or not sample.failure.startswith("in-band-error"):
                self.streams_complete += 1
        for code, n in sample.violations:
            self.violations[code] = self.violations.get(code, 0) + n
        if sample.rate_limited:
            self.rate_limited += sample.rate_limited
            self.requests_rate_limited += 1
            if sample.waited_ms > 0:
                h["wait_429"].add(sample.waited_ms)

    def count(self, name: str, n: int = 1) -> None:
        """Bump a free-form counter."""
        self.counters[name] = self.counters.get(name, 0) + n

    def grade_retry_after(self, grade: str) -> None:
        """Count one 429's retry-after grade."""
        self.retry_after[grade] = self.retry_after.get(grade, 0) + 1

    def grade_honesty(self, verdict: str) -> None:
        """Count one honesty probe's verdict (passed / failed / untestable)."""
        self.honesty[verdict] = self.honesty.get(verdict, 0) + 1

    # ---------------------------------------------------------------- distribution

    def to_wire(self) -> dict[str, Any]:
        """Everything, in a msgpack/JSON-friendly form."""
        return {
            "histograms": {name: h.to_wire() for name, h in self.histograms.items() if h.count},
            "requests": self.requests,
            "failed": self.failed,
            "attempts": self.attempts,
            "by_kind": {k: list(v) for k, v in self.by_kind.items()},
            "failures": dict(self.failures),
            "violations": dict(self.violations),
            "streams": self.streams,
            "streams_complete": self.streams_complete,
            "truncated": dict(self.truncated),
            "output_tokens": self.output_tokens,
            "input_tokens": self.input_tokens,
            "rate_limited": self.rate_limited,
            "requests_rate_limited": self.requests_rate_limited,
            "retry_after": dict(self.retry_after),
            "honesty": dict(self.honesty),
            "first_429_rps": self.first_429_rps,
            "counters": dict(self.counters),
            "examples": {kind: dict(example) for kind, example in self.examples.items()},
        }

    def take(self) -> dict[str, Any]:
        """to_wire() and reset, atomically for greenlets: what a worker ships to the master each report."""
        data = self.to_wire()
        self.reset()
        return data

    def merge_wire(self, data: Mapping[str, Any]) -> None:
        """Add a to_wire() snapshot (a worker's report) to these metrics."""
        for name, wire in data.get("histograms", {}).items():
            self.histograms.setdefault(name, Histogram()).merge(Histogram.from_wire(wire))
        self.requests += int(data.get("requests", 0))
        self.failed += int(data.get("failed", 0))
        self.attempts += int(data.get("attempts", 0))
        for kind, (n, failed) in data.get("by_kind", {}).items():
            row = self.by_kind.setdefault(kind, [0, 0])
            row[0] += int(n)
            row[1] += int(failed)
        for field_name in ("failures", "violations", "truncated", "retry_after", "honesty", "counters"):
            target: dict[str, int] = getattr(self, field_name)
            for key, n in data.get(field_name, {}).items():
                target[key] = target.get(key, 0) + int(n)
        self.streams += int(data.get("streams", 0))
        self.streams_complete += int(data.get("streams_complete", 0))
        self.output_tokens += int(data.get("output_tokens", 0))
        self.input_tokens += int(data.get("input_tokens", 0))
        self.rate_limited += int(data.get("rate_limited", 0))
        self.requests_rate_limited += int(data.get("requests_rate_limited", 0))
        for kind, example in data.get("examples", {}).items():
            if kind not in self.examples and len(self.examples) < MAX_EXAMPLES:
                self.examples[kind] = dict(example)
        first = data.get("first_429_rps")
        if first is not None and (self.first_429_rps is None or first < self.first_429_rps):
            self.first_429_rps = float(first)

    # ---------------------------------------------------------------- reporting

    @property
    def truncated_total(self) -> int:
        """Streams that ended without their end marker, whatever the cause."""
        return sum(self.truncated.values())

    def summary(self, *, duration_s: float | None = None) -> dict[str, Any]:
        """A JSON-ready summary: counts, ratios, latency percentiles, failures by kind, truncation by cause."""
        requests = self.requests
        streams = self.streams
        latency = {name: self.histograms[name].describe() for name in HISTOGRAMS if name != "tokens_per_s"}
        throughput = (
            round(self.output_tokens / duration_s, 3) if duration_s and duration_s > 0 and self.output_tokens else None
        )
        return {
            "requests": requests,
            "failed": self.failed,
            "succeeded": requests - self.failed,
            "attempts": self.attempts,
            "fail_ratio": round(self.failed / requests, 6) if requests else None,
            "requests_per_s": round(requests / duration_s, 3) if duration_s and duration_s > 0 else None,
            "by_kind": {k: {"requests": v[0], "failed": v[1]} for k, v in sorted(self.by_kind.items())},
            "failures": dict(sorted(self.failures.items(), key=lambda kv: (-kv[1], kv[0]))),
            "failure_examples": {kind: self.examples[kind] for kind in sorted(self.examples)},
            "violations": dict(sorted(self.violations.items(), key=lambda kv: (-kv[1], kv[0]))),
            "streams": {
                "total": streams,
                "complete": self.streams_complete,
                "truncated": dict(self.truncated),
                "truncated_total": self.truncated_total,
                "truncated_ratio": round(self.truncated_total / streams, 6) if streams else None,
            },
            "latency_ms": latency,
            "tokens": {
                "output": self.output_tokens,
                "input": self.input_tokens,
                "output_per_s_overall": throughput,
                "output_per_s_per_stream": self.histograms["tokens_per_s"].describe(),
            },
            "rate_limit": {
                "responses_429": self.rate_limited,
                "requests_hit": self.requests_rate_limited,
                "waited_ms": self.histograms["wait_429"].describe(),
                "retry_after": dict(sorted(self.retry_after.items())),
                "honesty": dict(sorted(self.honesty.items())),
                "first_429_at_user_rps": self.first_429_rps,
            },
            "counters": dict(sorted(self.counters.items())),
        }
