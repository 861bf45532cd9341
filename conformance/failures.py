"""What a check raises: a gateway non-conformance (an AssertionError) with what was observed and where."""

from __future__ import annotations

from collections.abc import Sequence

from conformance.exchange import Exchange
from conformance.results import Evidence


class Failure(AssertionError):
    """The gateway does not conform: the message says what was expected and what was observed."""

    def __init__(self, message: str, *, evidence: Sequence[Evidence] = (), exchange: Exchange | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.evidence = tuple(evidence)
        self.exchange = exchange


class UnexpectedStatus(Failure):
    """The HTTP status is not one the protocol allows here."""


class MissingHeader(Failure):
    """A header the protocol requires is absent."""


class SchemaViolation(Failure):
    """A body or event does not match its JSON Schema."""


class StreamViolation(Failure):
    """The event stream breaks the streaming grammar or framing."""


class WrongErrorEnvelope(Failure):
    """An error response is not the protocol's error envelope, or its type does not match the status."""


class SemanticMismatch(Failure):
    """The response is well-formed but does not do what the request asked."""


class SecretLeak(Failure):
    """The gateway reflected the caller's key back."""


class NotApplicable(Exception):
    """The check has nothing to judge in this exchange (it is skipped, not passed)."""


class Unsupported(Exception):
    """The gateway cleanly declined an optional feature (a 4xx with a proper envelope)."""
