"""When each user sends, and from when its latency counts: the guard against coordinated omission.

Open pacing keeps a schedule per user (send k at t0 + k / rate). A user that is still busy when its next send
is due sends as soon as it is free, and that request's latency counts from the scheduled time, so time spent
queueing behind a slow gateway is measured instead of silently skipped (the mistake a closed loop makes when
it simply sends fewer requests while the gateway is slow). Closed pacing is Locust's constant_throughput:
latency counts from the actual send. A rate of 0 sends back to back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Pacer", "ramp"]

Clock = Callable[[], float]


def ramp(start: float, step: float, cap: float) -> Callable[[float], float]:
    """A rate that starts at `start` and grows by `step` per second, up to `cap`."""

    def rate(elapsed: float) -> float:
        return min(cap, start + step * max(elapsed, 0.0))

    return rate


class Pacer:
    """One user's send schedule: delay() until the next send, take() the time its latency counts from."""

    def __init__(
        self,
        rate: float | Callable[[float], float],
        *,
        open_loop: bool = True,
        phase: float = 0.0,
        clock: Clock = time.perf_counter,
    ) -> None:
        """rate in sends per second (or a function of seconds since start); phase in [0, 1) spreads users out."""
        self._rate = rate if callable(rate) else (lambda _elapsed, r=float(rate): r)
        self._open = open_loop
        self._clock = clock
        self._t0 = clock()
        first = self._rate(0.0)
        self._next = self._t0 + (phase / first if first > 0 else 0.0)
        self._last_start: float | None = None

    def rate_now(self) -> float:
        """The current rate (a ramp grows with time)."""
        return self._rate(self._clock() - self._t0)

    def delay(self) -> float:
        """Seconds to wait before the next send (0 when it is due or overdue)."""
        return max(0.0, self._next - self._clock())

    def take(self) -> float:
        """Start a send now: the time its latency counts from, and the schedule moves on."""
        now = self._clock()
        rate = self._rate(now - self._t0)
        interval = 1.0 / rate if rate > 0 else 0.0
        if self._open and rate > 0:
            intended = self._next
            self._next = intended + interval
            return min(intended, now)
        # Closed loop: like constant_throughput, the next send is one interval after this one started.
        self._next = now + interval
        return now

    def reset(self) -> None:
        """Restart the schedule from now (after a pause, so the backlog of a pause is not charged as latency)."""
        self._next = self._clock()
