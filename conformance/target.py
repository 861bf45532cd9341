"""Who we talk to: base URL, auth scheme, key, anthropic-version, model and timeouts."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args
from urllib.parse import urlsplit

from conformance.errors import HarnessError

AuthScheme = Literal["x-api-key", "bearer"]
AUTH_SCHEMES: tuple[str, ...] = get_args(AuthScheme)
KEY_ENV_VARS = ("GATEWAY_API_KEY", "ANTHROPIC_API_KEY")
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MODEL = "claude-sonnet-4-6"
MASK = "***"
# What a reproduction line says instead of the key: the user's shell fills it in.
KEY_PLACEHOLDER = "$GATEWAY_API_KEY"


class Secret:
    """A credential that never shows itself in a repr, str, format or log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise HarnessError("an API key must not be empty")
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not picklable: it would leave the process unmasked")


def key_from_env(environ: Mapping[str, str] | None = None) -> Secret | None:
    """The key from GATEWAY_API_KEY, then ANTHROPIC_API_KEY; None when neither is set."""
    env = os.environ if environ is None else environ
    for name in KEY_ENV_VARS:
        value = env.get(name, "").strip()
        if value:
            return Secret(value)
    return None


def mask_secrets(text: str, secrets: Iterable[Secret | str | None]) -> str:
    """Replace every occurrence of each secret in text with the mask."""
    for secret in secrets:
        if secret is None:
            continue
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value and value in text:
            text = text.replace(value, MASK)
    return text


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Bounds on one exchange, in seconds; the defaults suit LLM streams."""

    connect: float = 10.0
    first_byte: float = 120.0
    idle: float = 60.0
    total: float = 600.0

    def __post_init__(self) -> None:
        for name in ("connect", "first_byte", "idle", "total"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise HarnessError(f"timeout {name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one exchange may hold in memory."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_events: int = 100_000

    def __post_init__(self) -> None:
        if self.max_body_bytes <= 0 or self.max_events <= 0:
            raise HarnessError("limits must be positive")


@dataclass(frozen=True, slots=True)
class Target:
    """A gateway under test; its key is redacted in every repr."""

    base_url: str
    api_key: Secret | None = None
    auth: AuthScheme = "x-api-key"
    anthropic_version: str = DEFAULT_ANTHROPIC_VERSION
    model: str = DEFAULT_MODEL
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise HarnessError(f"gateway URL must be an http:// or https:// URL, got {self.base_url!r}")
        if parts.query or parts.fragment:
            raise HarnessError(f"gateway URL must not carry a query or fragment, got {self.base_url!r}")
        if parts.username or parts.password:
            raise HarnessError("gateway URL must not carry credentials; set GATEWAY_API_KEY instead")
        if self.auth not in AUTH_SCHEMES:
            raise HarnessError(f"auth scheme must be one of {', '.join(AUTH_SCHEMES)}, got {self.auth!r}")
        if not self.model:
            raise HarnessError("model must not be empty")
        # The SDKs take the base URL without /v1 (ANTHROPIC_BASE_URL); accept either spelling.
        base = self.base_url.rstrip("/")
        base = base.removesuffix("/v1")
        object.__setattr__(self, "base_url", base)

    @classmethod
    def from_env(cls, base_url: str, environ: Mapping[str, str] | None = None, **options: object) -> Target:
        """A target whose key comes from GATEWAY_API_KEY or ANTHROPIC_API_KEY."""
        return cls(base_url, key_from_env(environ), **options)  # type: ignore[arg-type]

    @property
    def origin(self) -> str:
        """scheme://host:port of the base URL (where credentials may be sent)."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    def url(self, path: str) -> str:
        """Absolute URL of an API path such as /v1/messages."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def auth_headers(self, *, placeholder: bool = False) -> dict[str, str]:
        """The credential header for this target; with placeholder, the key is the shell variable."""
        if self.api_key is None:
            return {}
        value = KEY_PLACEHOLDER if placeholder else self.api_key.reveal()
        if self.auth == "bearer":
            return {"authorization": f"Bearer {value}"}
        return {"x-api-key": value}

    def mask(self, text: str) -> str:
        """Text with this target's key masked."""
        return mask_secrets(text, [self.api_key])
