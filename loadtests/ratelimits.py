"""Grading a 429's retry-after (protocol.md 4.3), and the wait an official SDK would choose before retrying."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from conformance.checks.ratelimit import SDK_MAX_RETRY_AFTER, parse_retry_after

__all__ = ["RetryAfterGrade", "grade_retry_after", "sdk_delay"]

Grade = Literal["present", "missing", "malformed", "out-of-range"]

_INITIAL_RETRY_DELAY = 0.5  # the SDKs' backoff when retry-after is absent or not honoured
_MAX_RETRY_DELAY = 8.0


@dataclass(frozen=True, slots=True)
class RetryAfterGrade:
    """What one 429 said about when to come back."""

    grade: Grade
    seconds: float | None  # the advertised wait when present and well-formed
    raw: str | None
    should_retry: str | None  # x-should-retry, when sent

    @property
    def usable(self) -> bool:
        """Whether an SDK would wait exactly this long (present, well-formed, 0 < s <= 60)."""
        return self.grade == "present"

    def describe(self) -> str:
        """One line for a report."""
        if self.grade == "missing":
            extra = f" (x-should-retry: {self.should_retry})" if self.should_retry else ""
            return f"no retry-after{extra}: clients fall back to blind backoff"
        if self.grade == "malformed":
            return f"retry-after {self.raw!r} is neither integer seconds nor an HTTP-date"
        if self.grade == "out-of-range":
            return f"retry-after {self.raw!r} = {self.seconds:g} s; the SDKs honour only 0 < s <= 60"
        return f"retry-after {self.raw!r} = {self.seconds:g} s"


def grade_retry_after(header: Callable[[str], str | None], *, now: float | None = None) -> RetryAfterGrade:
    """Grade a 429 by its headers (`header(name)` returns a value or None), as the conformance check does."""
    raw = header("retry-after")
    should_retry = header("x-should-retry")
    if raw is None:
        return RetryAfterGrade("missing", None, None, should_retry)
    try:
        seconds = parse_retry_after(raw, now=now)
    except ValueError:
        return RetryAfterGrade("malformed", None, raw, should_retry)
    if not 0 < seconds <= SDK_MAX_RETRY_AFTER:
        return RetryAfterGrade("out-of-range", seconds, raw, should_retry)
    return RetryAfterGrade("present", seconds, raw, should_retry)


def sdk_delay(
    header: Callable[[str], str | None], retries_taken: int, *, rand: Callable[[], float] = random.random
) -> float:
    """Seconds the Python SDK waits before retry number retries_taken + 1 (retry-after-ms, retry-after, backoff)."""
    ms = header("retry-after-ms")
    if ms is not None:
        try:
            seconds = float(ms) / 1000.0
        except ValueError:
            seconds = -1.0
        if 0 < seconds <= SDK_MAX_RETRY_AFTER:
            return seconds
    grade = grade_retry_after(header)
    if grade.usable and grade.seconds is not None:
        return grade.seconds
    backoff: float = min(_INITIAL_RETRY_DELAY * 2.0**retries_taken, _MAX_RETRY_DELAY)
    return backoff * (1 - 0.25 * rand())
