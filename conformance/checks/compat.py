"""Checks that the official SDKs work against the gateway, unmodified (protocol.md 3.3, 6.4)."""

from __future__ import annotations

from conformance.checks.context import CheckContext
from conformance.checks.registry import check
from conformance.failures import Failure, NotApplicable
from conformance.results import Evidence
from conformance.sdk import SdkOutcome


def _outcome(ctx: CheckContext, name: str) -> SdkOutcome:
    outcome = ctx.observations.get(name)
    if not isinstance(outcome, SdkOutcome):
        raise NotApplicable(f"the SDK call {name} did not run")
    if not outcome.ok:
        shown = outcome.error or outcome.summary
        raise Failure(
            f"the official SDK raised {outcome.summary}",
            evidence=(Evidence(f"{outcome.call}: {outcome.error_type}", shown, "text"),),
        )
    return outcome


@check(severity="must", area="compat", section="3.3")
def sdk_messages_create_works(ctx: CheckContext) -> None:
    """The official anthropic SDK's messages.create returns a Message with text and a stop_reason."""
    outcome = _outcome(ctx, "anthropic_messages_create")
    if not outcome.details.get("stop_reason"):
        raise Failure(f"the SDK returned a Message without stop_reason: {outcome.summary}")


@check(severity="must", area="compat", section="3.3")
def sdk_stream_final_message_works(ctx: CheckContext) -> None:
    """messages.stream(): text_stream yields the text and get_final_message() has it with a stop_reason."""
    outcome = _outcome(ctx, "anthropic_messages_stream")
    details = outcome.details
    if not details.get("text") or details.get("streamed_text") != details.get("text"):
        raise Failure(f"streamed {details.get('streamed_text')!r} but the final message says {details.get('text')!r}")
    if not details.get("stop_reason"):
        raise Failure("the final message has no stop_reason (the stream carried no message_delta the SDK saw)")


@check(severity="must", area="compat", section="1.5")
def sdk_tool_round_trip_works(ctx: CheckContext) -> None:
    """Through the SDK, a forced tool call gives tool_use with stop_reason tool_use, and the tool_result turn works."""
    outcome = _outcome(ctx, "anthropic_tool_round_trip")
    if outcome.details.get("stop_reason") != "tool_use":
        raise Failure(f"the tool call came with stop_reason {outcome.details.get('stop_reason')!r}")


@check(severity="must", area="compat", section="6.4")
def openai_sdk_chat_works(ctx: CheckContext) -> None:
    """The official openai SDK gets the same text plain and streamed, and the include_usage chunk."""
    outcome = _outcome(ctx, "openai_chat_completion")
    details = outcome.details
    if not details.get("text") or details.get("text") != details.get("streamed_text"):
        raise Failure(f"plain {details.get('text')!r} vs streamed {details.get('streamed_text')!r}")
    if not details.get("stream_usage"):
        raise Failure("include_usage was set but the SDK saw no usage chunk")
