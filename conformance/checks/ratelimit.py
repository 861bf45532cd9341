"""Checks on 429 answers: an honest retry-after the SDKs can use, and the right envelope (protocol.md 4.2-4.3)."""

from __future__ import annotations

import email.utils
import time

from conformance.checks._helpers import expect_status, validate
from conformance.checks.context import CheckContext
from conformance.checks.registry import check
from conformance.exchange import Exchange
from conformance.failures import Failure, MissingHeader, NotApplicable, WrongErrorEnvelope

SDK_MAX_RETRY_AFTER = 60.0  # the Python SDK ignores larger values and falls back to its own backoff


def parse_retry_after(value: str, *, now: float | None = None) -> float:
    """Seconds to wait from retry-after: an integer of seconds or an HTTP-date; ValueError otherwise."""
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"{value!r} is neither an integer number of seconds nor an HTTP-date") from None
    return moment.timestamp() - (time.time() if now is None else now)


def limited(ctx: CheckContext) -> list[Exchange]:
    """The 429 answers this probe collected."""
    found = [ex for ex in ctx.exchanges.values() if ex.status == 429]
    if not found:
        raise NotApplicable("no 429 was seen; pass --probe-rate-limit N to provoke one")
    return found


@check(severity="must", area="ratelimit", section="4.3")
def rate_limit_retry_after(ctx: CheckContext) -> None:
    """A 429 carries retry-after (integer seconds or an HTTP-date) within the 60 s the SDKs honour."""
    for exchange in limited(ctx):
        value = exchange.header("retry-after")
        if value is None:
            should_retry = exchange.header("x-should-retry")
            extra = f" (x-should-retry: {should_retry})" if should_retry else ""
            raise MissingHeader(
                f"a 429 without retry-after{extra}: clients fall back to blind backoff", exchange=exchange
            )
        try:
            seconds = parse_retry_after(value)
        except ValueError as exc:
            raise Failure(f"retry-after is malformed: {exc}", exchange=exchange) from None
        if not 0 < seconds <= SDK_MAX_RETRY_AFTER:
            raise Failure(
                f"retry-after is {seconds:g} s; the SDKs only honour 0 < retry-after <= {SDK_MAX_RETRY_AFTER:g} s",
                exchange=exchange,
            )


@check(severity="must", area="ratelimit", section="4.2")
def rate_limit_envelope(ctx: CheckContext) -> None:
    """A 429 body is the error envelope with type rate_limit_error (not an invented type)."""
    for exchange in limited(ctx):
        if exchange.request.flavour != "anthropic":
            continue
        try:
            body = exchange.json()
        except ValueError as exc:
            raise WrongErrorEnvelope(f"the 429 body is not JSON: {exc}", exchange=exchange) from None
        try:
            validate(body, "anthropic/error", "the 429 body")
        except Failure as failure:
            raise WrongErrorEnvelope(failure.message, exchange=exchange) from None
        if body["error"]["type"] != "rate_limit_error":
            raise WrongErrorEnvelope(f"a 429 with error.type {body['error']['type']!r}", exchange=exchange)


@check(severity="info", area="ratelimit", section="2.2")
def rate_limit_headers_reported(ctx: CheckContext) -> None:
    """Reports the rate-limit headers a 429 carried (retry-after-ms, x-should-retry, anthropic-ratelimit-*)."""
    exchange = limited(ctx)[0]
    names = sorted(
        {k for k, _ in exchange.headers if k.startswith(("anthropic-ratelimit-", "retry-after-ms", "x-should-retry"))}
    )
    if not any(n.startswith("anthropic-ratelimit-") for n in names):
        raise MissingHeader(
            "no anthropic-ratelimit-* headers on the 429" + (f" (has {', '.join(names)})" if names else "")
        )


@check(severity="must", area="ratelimit", section="4.3")
def rate_limit_retry_after_honest(ctx: CheckContext) -> None:
    """A request sent after waiting the advertised retry-after succeeds."""
    exchange = ctx.get("after_wait")
    expect_status(exchange, range(200, 300), "the request sent after waiting retry-after")
