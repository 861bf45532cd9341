"""A per-key token-bucket request limiter whose retry-after is honest (computed from the bucket, rounded up)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["Decision", "RateLimiter", "rfc3339"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The limiter's answer for one request, with what the rate-limit headers report."""

    allowed: bool
    limit: int
    remaining: int
    reset_after_s: float  # until the bucket is full again
    retry_after_s: int | None  # set when refused: whole seconds after which one request is certain to pass


def rfc3339(moment: datetime) -> str:
    """UTC timestamp in the form the API uses for `*-reset`: 2026-01-01T00:00:07Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    """`limit` requests per `window_s` seconds per key, refilled continuously (the API's token-bucket model)."""

    def __init__(self, limit: int, window_s: float = 60.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.limit = limit
        self.window_s = window_s
        self._rate = limit / window_s
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _refill(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.limit), now)
        else:
            bucket.tokens = min(float(self.limit), bucket.tokens + (now - bucket.stamp) * self._rate)
            bucket.stamp = now
        return bucket

    def acquire(self, key: str) -> Decision:
        """Take one request from the key's bucket, or say how long until one is available."""
        bucket = self._refill(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Decision(True, self.limit, int(bucket.tokens), self._until_full(bucket), None)
        # Whole seconds, rounded up, so that a client waiting exactly this long always gets through; the epsilon
        # keeps float noise in the refill arithmetic from adding a spurious extra second.
        wait = (1.0 - bucket.tokens) / self._rate
        retry_after = max(1, math.ceil(wait - 1e-9))
        return Decision(False, self.limit, 0, self._until_full(bucket), retry_after)

    def peek(self, key: str) -> Decision:
        """The key's state without taking anything (for headers on responses that were not counted)."""
        bucket = self._refill(key)
        return Decision(True, self.limit, int(bucket.tokens), self._until_full(bucket), None)

    def _until_full(self, bucket: _Bucket) -> float:
        return (self.limit - bucket.tokens) / self._rate

    @staticmethod
    def reset_timestamp(decision: Decision, now: datetime | None = None) -> str:
        """The RFC 3339 moment at which the bucket is full again."""
        moment = (now or datetime.now(UTC)) + timedelta(seconds=math.ceil(decision.reset_after_s))
        return rfc3339(moment)
