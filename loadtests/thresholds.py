"""The CI gate: compare a run's summary with its thresholds; any breach makes the run exit non-zero."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loadtests.settings import Thresholds

__all__ = ["Breach", "evaluate", "ratelimit_verdict"]


@dataclass(frozen=True, slots=True)
class Breach:
    """One threshold the run did not meet."""

    name: str
    limit: float | str | None
    observed: float | str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        """For the JSON report."""
        return {"name": self.name, "limit": self.limit, "observed": self.observed, "message": self.message}


def ratelimit_verdict(rate_limit: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The ratelimit scenario's grade of retry-after: (verdict, problems); verdict is honest / no-429 / failing."""
    grades: Mapping[str, int] = rate_limit.get("retry_after", {})
    honesty: Mapping[str, int] = rate_limit.get("honesty", {})
    answers = int(rate_limit.get("responses_429", 0))
    if not answers:
        return "no-429", ["no 429 was provoked: raise --ramp-max-rps or the user count, or the gateway has no limit"]
    problems = []
    for grade, what in (
        ("missing", "had no retry-after"),
        ("malformed", "had a malformed retry-after"),
        ("out-of-range", "had a retry-after outside the SDKs' 0 < s <= 60"),
    ):
        if grades.get(grade):
            problems.append(f"{grades[grade]} of {answers} 429s {what}")
    if honesty.get("failed"):
        problems.append(
            f"{honesty['failed']} of {sum(honesty.values())} requests sent after waiting the advertised "
            "retry-after were refused again (dishonest retry-after)"
        )
    if not honesty.get("passed") and not problems:
        problems.append("no honesty probe completed (the run ended before a retry-after could be waited out)")
    return ("failing" if problems else "honest"), problems


def evaluate(summary: Mapping[str, Any], thresholds: Thresholds, *, scenario: str) -> list[Breach]:
    """Every threshold the summary breaches (an empty list: the gate passes)."""
    breaches: list[Breach] = []
    requests = int(summary.get("requests", 0))
    if not requests:
        return [Breach("requests", ">0", 0, "no request completed: nothing was measured")]
    failures: Mapping[str, int] = summary.get("failures", {})
    failed = int(summary.get("failed", 0))
    if scenario == "ratelimit":
        # 429s are what this scenario provokes; its verdict on them is the retry-after grade below.
        failed -= sum(n for kind, n in failures.items() if kind.startswith("http-429"))
    ratio = failed / requests
    if thresholds.max_fail_ratio is not None and ratio > thresholds.max_fail_ratio:
        top = ", ".join(f"{kind} x{n}" for kind, n in list(failures.items())[:3])
        breaches.append(
            Breach(
                "fail_ratio",
                thresholds.max_fail_ratio,
                round(ratio, 6),
                f"{failed} of {requests} requests failed ({ratio:.2%} > {thresholds.max_fail_ratio:.2%}): {top}",
            )
        )
    latency: Mapping[str, Mapping[str, Any]] = summary.get("latency_ms", {})
    for name, limit in (("ttft", thresholds.max_p95_ttft_ms), ("itl", thresholds.max_p95_itl_ms)):
        if limit is None:
            continue
        p95 = latency.get(name, {}).get("p95")
        if p95 is None:
            breaches.append(Breach(f"p95_{name}_ms", limit, None, f"no {name.upper()} was measured"))
        elif p95 > limit:
            breaches.append(Breach(f"p95_{name}_ms", limit, p95, f"p95 {name.upper()} {p95:.1f} ms > {limit:g} ms"))
    streams: Mapping[str, Any] = summary.get("streams", {})
    truncated_ratio = streams.get("truncated_ratio")
    limit = thresholds.max_truncated_ratio
    if limit is not None and truncated_ratio is not None and truncated_ratio > limit:
        by_cause = ", ".join(f"{cause} {n}" for cause, n in streams.get("truncated", {}).items() if n)
        breaches.append(
            Breach(
                "truncated_ratio",
                limit,
                truncated_ratio,
                f"{streams.get('truncated_total')} of {streams.get('total')} streams ended without their end "
                f"marker ({by_cause})",
            )
        )
    if scenario == "ratelimit":
        verdict, problems = ratelimit_verdict(summary.get("rate_limit", {}))
        if problems:
            breaches.append(Breach("retry_after", "honest", verdict, "; ".join(problems)))
    return breaches
