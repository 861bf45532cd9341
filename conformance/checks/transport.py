"""Checks on how exchanges ended: within the harness's bounds, over clean HTTP, with no redirect to another origin.

The Transport records every way an exchange can go wrong as Exchange.error with a stable kind
(conformance.transport.KINDS); these checks name that kind and the bound that was hit. The suite applies them
to every exchange of a run at its end (conformance/suites/test_transport.py), so a gateway that hangs, floods
or resets is reported once, in one place, whatever probe met it.
"""

from __future__ import annotations

from conformance.checks.context import CheckContext
from conformance.checks.registry import check
from conformance.exchange import Exchange
from conformance.failures import Failure, NotApplicable

__all__ = ["MAX_LISTED", "TRANSPORT_CHECKS", "no_cross_origin_redirect", "response_within_bounds"]

MAX_LISTED = 8
REDIRECT = "redirect-cross-origin"
TRANSPORT_CHECKS = ("response_within_bounds", "no_cross_origin_redirect")


def _with_error(ctx: CheckContext, *, redirects: bool) -> list[tuple[str, Exchange]]:
    if not ctx.exchanges:
        raise NotApplicable("no request was sent")
    return [
        (role, exchange)
        for role, exchange in ctx.exchanges.items()
        if exchange.error is not None and (exchange.error.kind == REDIRECT) is redirects
    ]


def _listing(found: list[tuple[str, Exchange]]) -> str:
    lines = []
    for role, exchange in found[:MAX_LISTED]:
        assert exchange.error is not None
        lines.append(f"{role}: {exchange.error.kind}: {exchange.error.message}")
    if len(found) > MAX_LISTED:
        lines.append(f"(+{len(found) - MAX_LISTED} more)")
    return "\n".join(lines)


@check(severity="must", area="transport", section="1")
def response_within_bounds(ctx: CheckContext) -> None:
    """Every response arrives whole over well-formed HTTP, within the harness's time, size and event bounds."""
    found = _with_error(ctx, redirects=False)
    if found:
        total = len(ctx.exchanges)
        head = f"{len(found)} of {total} exchange(s) did not complete (kind: what happened, and the bound):\n"
        raise Failure(head + _listing(found), exchange=found[0][1])


@check(severity="must", area="transport", section="1")
def no_cross_origin_redirect(ctx: CheckContext) -> None:
    """The gateway never redirects to another origin: a client that followed would send the key there."""
    found = _with_error(ctx, redirects=True)
    if found:
        raise Failure(
            f"{len(found)} redirect(s) to another origin (not followed by the harness):\n" + _listing(found),
            exchange=found[0][1],
        )
