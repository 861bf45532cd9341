"""Checks on /v1/models (protocol.md section 5.2)."""

from __future__ import annotations

from conformance.checks._helpers import expect_status, success_body, validate
from conformance.checks.context import CheckContext
from conformance.checks.registry import check
from conformance.failures import Failure


@check(severity="must", area="models", section="5.2")
def models_list_matches_schema(ctx: CheckContext) -> None:
    """GET /v1/models answers {data: [model...], has_more, first_id, last_id}."""
    exchange = ctx.get("list")
    expect_status(exchange, (200,), "GET /v1/models")
    validate(success_body(exchange), "anthropic/models-list", "the models list")


@check(severity="should", area="models", section="5.2")
def models_paging(ctx: CheckContext) -> None:
    """limit=1 returns at most one model, and first_id/last_id name the page's ends."""
    exchange = ctx.get("page")
    expect_status(exchange, (200,), "GET /v1/models?limit=1")
    body = success_body(exchange)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise Failure("data is not an array")
    if len(data) > 1:
        raise Failure(f"limit=1 returned {len(data)} models")
    ends = (data[0].get("id"), data[-1].get("id")) if data and isinstance(data[0], dict) else None
    if ends is not None and (body.get("first_id"), body.get("last_id")) != ends:
        raise Failure(
            f"first_id/last_id are {body.get('first_id')!r}/{body.get('last_id')!r}, "
            f"expected the page's model id {data[0].get('id')!r}"
        )


@check(severity="must", area="models", section="5.2")
def model_matches_schema(ctx: CheckContext) -> None:
    """GET /v1/models/{id} for a listed model answers the model object."""
    exchange = ctx.get("one")
    expect_status(exchange, (200,), f"GET {exchange.request.path}")
    validate(success_body(exchange), "anthropic/model", "the model object")
