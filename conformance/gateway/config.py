"""GatewayConfig: everything the reference gateway can be told, validated up front."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from conformance.errors import HarnessError
from conformance.gateway.faults import validate_fault_names

__all__ = ["DEFAULT_HOST", "DEFAULT_ORGANIZATION_ID", "DEFAULT_PORT", "MAX_BODY_BYTES", "GatewayConfig", "make_up_key"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
MAX_BODY_BYTES = 32 * 1024 * 1024  # the Messages and Token Counting limit (protocol.md 1.1)
DEFAULT_ORGANIZATION_ID = "00000000-0000-4000-8000-00000000f00d"


def make_up_key() -> str:
    """A fresh random key in the API's shape, for a gateway started without one."""
    return f"sk-ref-{secrets.token_urlsafe(24)}"  # not sk-ant-: secret scanners would flag it


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Where the reference gateway listens, which key it accepts, and how it is slowed down or broken."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0 picks a free port
    api_key: str | None = None  # None: a key is made up at start and reported
    ttft_ms: float = 0.0  # request receipt -> first content delta
    itl_ms: float = 0.0  # between consecutive content deltas
    rate_limit_rpm: int | None = None  # requests per window per key; None: no limiter, no rate-limit headers
    rate_limit_window_s: float = 60.0  # the limiter's window (tests shorten it)
    faults: tuple[str, ...] = ()
    fault_every: int = 2  # 429 faults without a limiter: every Nth generation request is refused
    cut_after_events: int = 4  # stream-cut: events sent before the connection is dropped
    extra_models: tuple[str, ...] = ()
    max_body_bytes: int = MAX_BODY_BYTES
    organization_id: str = DEFAULT_ORGANIZATION_ID

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise HarnessError(f"port must be 0..65535, got {self.port}")
        if self.ttft_ms < 0 or self.itl_ms < 0:
            raise HarnessError("ttft_ms and itl_ms must not be negative")
        if self.rate_limit_rpm is not None and self.rate_limit_rpm < 1:
            raise HarnessError(f"rate_limit_rpm must be at least 1, got {self.rate_limit_rpm}")
        if self.rate_limit_window_s <= 0:
            raise HarnessError("rate_limit_window_s must be positive")
        if self.fault_every < 1 or self.cut_after_events < 1:
            raise HarnessError("fault_every and cut_after_events must be at least 1")
        if self.max_body_bytes < 1:
            raise HarnessError("max_body_bytes must be positive")
        if self.api_key is not None and not self.api_key:
            raise HarnessError("api_key must not be empty (use None to have one made up)")
        object.__setattr__(self, "faults", validate_fault_names(self.faults))
        object.__setattr__(self, "extra_models", tuple(self.extra_models))

    def with_key(self) -> tuple[GatewayConfig, bool]:
        """This config with a key filled in, and whether the key was made up."""
        if self.api_key is not None:
            return self, False
        return replace(self, api_key=make_up_key()), True

    def has(self, fault: str) -> bool:
        """Whether the named fault is active."""
        return fault in self.faults
