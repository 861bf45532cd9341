"""The cost guard: a request budget and a token budget that a run never exceeds.

Each send reserves its worst case (prompt tokens + max_tokens) before it goes out and settles with the usage
the gateway reports when it is back, so the token budget holds even with many requests in flight. When the
budget is spent and the last request in flight has finished, `on_spent` is called once: the run ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Budget", "CostEstimate", "split"]


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """The most a run can cost: every request uses its whole max_tokens."""

    max_requests: int
    max_tokens: int
    prompt_tokens: int  # per request, estimated
    token_budget: int | None

    @property
    def per_request(self) -> int:
        """Worst-case tokens of one request."""
        return self.max_tokens + self.prompt_tokens

    @property
    def worst_case_tokens(self) -> int:
        """Worst-case tokens of the run: the token budget when it is lower than requests x per-request."""
        total = self.max_requests * self.per_request
        return min(total, self.token_budget) if self.token_budget is not None else total

    def describe(self) -> str:
        """One line for the console."""
        line = (
            f"cost guard: at most {self.max_requests} requests x ({self.max_tokens} max_tokens + "
            f"~{self.prompt_tokens} prompt tokens) = {self.max_requests * self.per_request} tokens"
        )
        if self.token_budget is not None:
            line += f"; token budget {self.token_budget}: the run stops before it would exceed it"
        return line

    def as_dict(self) -> dict[str, int | None]:
        """For the report."""
        return {
            "max_requests": self.max_requests,
            "max_tokens_per_request": self.max_tokens,
            "prompt_tokens_per_request": self.prompt_tokens,
            "token_budget": self.token_budget,
            "worst_case_tokens": self.worst_case_tokens,
        }


def split(total: int | None, parts: int, index: int) -> int | None:
    """Part `index` of `total` divided as evenly as possible among `parts` (None stays None)."""
    if total is None:
        return None
    if parts < 1 or not 0 <= index < parts:
        raise ValueError(f"index {index} out of range for {parts} parts")
    base, extra = divmod(total, parts)
    return base + (1 if index < extra else 0)


class Budget:
    """Requests and tokens left to this process; greenlet-safe because nothing in it yields."""

    def __init__(
        self, max_requests: int, token_budget: int | None = None, *, on_spent: Callable[[], None] | None = None
    ) -> None:
        self.requests_left = max_requests
        self.tokens_left = token_budget
        self.in_flight = 0
        self.sent = 0
        self.tokens_used = 0
        self.spent = False
        self.on_spent = on_spent
        self._announced = False

    def acquire(self, reserve_tokens: int) -> bool:
        """Take one request and reserve its worst-case tokens; False (the budget is then spent) when they do not fit."""
        if self.spent:
            self._maybe_announce()
            return False
        if self.requests_left <= 0 or (self.tokens_left is not None and self.tokens_left < reserve_tokens):
            self.spent = True
            self._maybe_announce()
            return False
        self.requests_left -= 1
        if self.tokens_left is not None:
            self.tokens_left -= reserve_tokens
        self.in_flight += 1
        self.sent += 1
        return True

    def settle(self, reserved_tokens: int, used_tokens: int | None) -> None:
        """A request is back: give back what it reserved and did not use (unknown usage keeps the reservation)."""
        self.in_flight -= 1
        if used_tokens is not None:
            self.tokens_used += used_tokens
            if self.tokens_left is not None:
                self.tokens_left += max(reserved_tokens - used_tokens, 0)
        else:
            self.tokens_used += reserved_tokens
        self._maybe_announce()

    def hold(self) -> None:
        """Count a request as in flight while it waits to retry, so the run does not end under it."""
        self.in_flight += 1

    def release(self) -> None:
        """The end of a hold()."""
        self.in_flight -= 1
        self._maybe_announce()

    def _maybe_announce(self) -> None:
        if self.spent and self.in_flight == 0 and not self._announced:
            self._announced = True
            if self.on_spent is not None:
                self.on_spent()
