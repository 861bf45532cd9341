"""Small shared pieces for checks: getting a JSON body, validating it, describing what was seen."""

from __future__ import annotations

from typing import Any

from conformance.exchange import Exchange
from conformance.failures import Failure, NotApplicable, SchemaViolation, UnexpectedStatus
from conformance.schemas import validator

MAX_LISTED = 8


def require_exchange_ok(exchange: Exchange) -> None:
    """NotApplicable when the exchange has no usable response (another check reports that)."""
    if exchange.status is None:
        raise NotApplicable("no response was received (see the status check)")


def json_body(exchange: Exchange) -> Any:
    """The body as JSON, or a Failure that says what came instead."""
    require_exchange_ok(exchange)
    try:
        return exchange.json()
    except ValueError as exc:
        raise Failure(f"expected a JSON body, got {exchange.content_type or 'no content-type'}: {exc}") from exc


def success_body(exchange: Exchange) -> Any:
    """The JSON body of a 2xx response; NotApplicable otherwise (status checks report that)."""
    require_exchange_ok(exchange)
    if exchange.status is None or not 200 <= exchange.status < 300:
        raise NotApplicable(f"the request was not served (HTTP {exchange.status})")
    return json_body(exchange)


def expect_status(exchange: Exchange, allowed: tuple[int, ...] | range, what: str) -> None:
    """Fail unless the status is one of the allowed ones."""
    if exchange.error is not None and exchange.status is None:
        raise Failure(f"{what}: no response ({exchange.error.kind}: {exchange.error.message})", exchange=exchange)
    if exchange.status not in allowed:
        shown = exchange.body_excerpt(300)
        wanted = f"{allowed.start}-{allowed.stop - 1}" if isinstance(allowed, range) else " or ".join(map(str, allowed))
        raise UnexpectedStatus(f"{what}: expected HTTP {wanted}, got {exchange.status}: {shown}", exchange=exchange)


def validate(instance: Any, schema_name: str, what: str) -> None:
    """Fail with every schema error (up to a few) when the instance does not match."""
    checker = validator(schema_name)
    if checker.is_valid(instance):
        return
    errors = checker.errors(instance)
    listed = "; ".join(e.describe() for e in errors[:MAX_LISTED])
    more = f" (+{len(errors) - MAX_LISTED} more)" if len(errors) > MAX_LISTED else ""
    raise SchemaViolation(f"{what} does not match {schema_name}: {listed}{more}")


def reply_text(message: dict[str, Any]) -> str:
    """The concatenated text of a message's text blocks."""
    content = message.get("content")
    if not isinstance(content, list):
        return ""
    return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")


def blocks(message: dict[str, Any], block_type: str) -> list[dict[str, Any]]:
    """The message's content blocks of one type."""
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict) and b.get("type") == block_type]
