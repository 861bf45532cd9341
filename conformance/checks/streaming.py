"""Checks on Anthropic event streams: status, framing, grammar, termination (protocol.md section 3).

The grammar in conformance.grammar reports every violation with a stable code; each check here owns a set
of those codes, and stream_grammar reports whatever no other check owns, so nothing found goes unreported.
"""

from __future__ import annotations

from conformance.checks._helpers import expect_status, reply_text
from conformance.checks.context import CheckContext
from conformance.checks.registry import check
from conformance.exchange import Exchange
from conformance.failures import Failure, NotApplicable, StreamViolation
from conformance.grammar import VIOLATION_KINDS, Violation
from conformance.results import Evidence
from conformance.stream import StreamResult

MAX_LISTED = 8

# Which grammar/framing codes each check owns. Codes no check owns fall to the catch-alls, by the severity
# the grammar gives them (stream_grammar, stream_grammar_advisories, stream_unknown_events).
OWNED: dict[str, frozenset[str]] = {
    "stream_event_names_match_type": frozenset({"missing-event-name", "event-name-mismatch", "missing-type"}),
    "stream_events_match_schema": frozenset({"schema-violation"}),
    # An unterminated last frame counts here: the SDKs' decoders drop it, and it is usually the message_stop.
    "stream_ends_with_message_stop": frozenset(
        {
            "missing-message-stop",
            "stream-truncated",
            "no-message-start",
            "blocks-left-open",
            "missing-message-delta",
            "unterminated",
        }
    ),
    "stream_has_no_done_sentinel": frozenset({"done-sentinel"}),
    "stream_block_indices_contiguous": frozenset(
        {
            "block-index-invalid",
            "block-index-not-contiguous",
            "block-reopened",
            "block-not-open",
            "block-already-closed",
        }
    ),
    "stream_usage_present_and_cumulative": frozenset(
        {"missing-usage", "output-tokens-missing", "usage-decreased", "output-tokens-below-start"}
    ),
    "stream_data_is_json": frozenset({"no-data-field", "empty-data", "data-not-json", "not-object", "invalid-utf8"}),
    "stream_framing_clean": frozenset(
        {
            "bom",
            "oversized-event",
            "cr-line-endings",
            "mixed-line-endings",
            "unknown-field",
            "invalid-retry",
            "id-with-nul",
        }
    ),
    "stream_in_band_error_well_formed": frozenset({"error-openai-shape", "malformed-error-event", "event-after-error"}),
}
_CLAIMED = frozenset().union(*OWNED.values())
_ANTHROPIC = {k.code: k for k in VIOLATION_KINDS.values() if "anthropic" in k.flavours and k.code not in _CLAIMED}
OWNED["stream_grammar"] = frozenset(c for c, k in _ANTHROPIC.items() if k.severity == "must")
OWNED["stream_grammar_advisories"] = frozenset(c for c, k in _ANTHROPIC.items() if k.severity == "should")
OWNED["stream_unknown_events"] = frozenset(c for c, k in _ANTHROPIC.items() if k.severity == "info")


def _stream(ctx: CheckContext) -> tuple[Exchange, StreamResult]:
    exchange = ctx.exchanges.get("stream") or ctx.exchange
    if exchange.status is None:
        raise NotApplicable("no response (see stream_http_status_and_type)")
    if exchange.status != 200:
        raise NotApplicable(f"the stream was not served (HTTP {exchange.status})")
    if exchange.stream is None:
        raise NotApplicable("the response is not an event stream (see stream_http_status_and_type)")
    return exchange, exchange.stream


def _fail_on(ctx: CheckContext, codes: frozenset[str]) -> None:
    exchange, stream = _stream(ctx)
    found = [v for v in stream.violations if v.code in codes]
    if found:
        raise StreamViolation(listing(found), evidence=stream_evidence(exchange, found))


def listing(violations: list[Violation]) -> str:
    """One line per violation, with its event index."""
    shown = "; ".join(
        f"[event {v.event_index}] {v.code}: {v.message}" if v.event_index is not None else f"{v.code}: {v.message}"
        for v in violations[:MAX_LISTED]
    )
    return shown + (f" (+{len(violations) - MAX_LISTED} more)" if len(violations) > MAX_LISTED else "")


def stream_evidence(exchange: Exchange, violations: list[Violation]) -> tuple[Evidence, ...]:
    """The raw frames around the first offending events, numbered, so the offending line is visible."""
    stream = exchange.stream
    if stream is None or not stream.events:
        return ()
    flagged = {v.event_index for v in violations if v.event_index is not None}
    lines = []
    for event in stream.events[:200]:
        mark = ">>" if event.index in flagged else "  "
        text = event.raw.decode("utf-8", errors="replace").rstrip("\r\n")
        for i, line in enumerate(text.splitlines() or [""]):
            prefix = f"{mark} {event.index:>3} | " if i == 0 else f"{mark}     | "
            lines.append(prefix + line)
    if len(stream.events) > 200:
        lines.append(f"   … {len(stream.events) - 200} more events")
    lines.append(f"   end of stream: {stream.end_cause}")
    return (Evidence("events (>> marks the offending ones)", "\n".join(lines), "events"),)


@check(severity="must", area="streaming", section="3.1")
def stream_http_status_and_type(ctx: CheckContext) -> None:
    """A streaming request is answered 200 with content-type text/event-stream."""
    exchange = ctx.exchanges.get("stream") or ctx.exchange
    expect_status(exchange, (200,), "streaming request")
    if exchange.content_type != "text/event-stream":
        raise Failure(
            f"content-type is {exchange.header('content-type')!r}, expected text/event-stream "
            "(a JSON body to a stream request yields nothing in the SDKs)"
        )


@check(severity="must", area="streaming", section="3.1")
def stream_event_names_match_type(ctx: CheckContext) -> None:
    """Every frame has an event: line equal to its data.type (the SDKs dispatch on the event name)."""
    _fail_on(ctx, OWNED["stream_event_names_match_type"])


@check(severity="must", area="streaming", section="3.1")
def stream_events_match_schema(ctx: CheckContext) -> None:
    """Every event's data matches the schema of its type."""
    _fail_on(ctx, OWNED["stream_events_match_schema"])


@check(severity="must", area="streaming", section="3.2")
def stream_ends_with_message_stop(ctx: CheckContext) -> None:
    """The stream ends with message_stop (after message_delta), then EOF: a cut stream is never complete."""
    exchange, stream = _stream(ctx)
    found = [v for v in stream.violations if v.code in OWNED["stream_ends_with_message_stop"]]
    if found or (not stream.complete and not stream.errored):
        message = listing(found) if found else f"the stream ended without message_stop ({stream.end_cause})"
        raise StreamViolation(message, evidence=stream_evidence(exchange, found))


@check(severity="must", area="streaming", section="7.2")
def stream_has_no_done_sentinel(ctx: CheckContext) -> None:
    """An Anthropic stream carries no data: [DONE] (it breaks strict parsers)."""
    _fail_on(ctx, OWNED["stream_has_no_done_sentinel"])


@check(severity="must", area="streaming", section="3.2")
def stream_block_indices_contiguous(ctx: CheckContext) -> None:
    """Content blocks use indices 0,1,2... each opened before its deltas and stopped once."""
    _fail_on(ctx, OWNED["stream_block_indices_contiguous"])


@check(severity="must", area="streaming", section="3.1")
def stream_usage_present_and_cumulative(ctx: CheckContext) -> None:
    """message_delta carries usage.output_tokens, and usage is cumulative (never decreases)."""
    _fail_on(ctx, OWNED["stream_usage_present_and_cumulative"])


@check(severity="should", area="streaming", section="3.4")
def stream_framing_clean(ctx: CheckContext) -> None:
    """Frames are well-formed SSE: LF or CRLF line ends, known fields, no BOM, no oversized frame."""
    _fail_on(ctx, OWNED["stream_framing_clean"])


@check(severity="must", area="streaming", section="4.2")
def stream_in_band_error_well_formed(ctx: CheckContext) -> None:
    """An in-band error event has the error envelope and ends the stream."""
    _fail_on(ctx, OWNED["stream_in_band_error_well_formed"])


@check(severity="must", area="streaming", section="3.2")
def stream_grammar(ctx: CheckContext) -> None:
    """The event order follows the streaming grammar (every must-level violation no other check owns)."""
    _fail_on(ctx, OWNED["stream_grammar"])


@check(severity="should", area="streaming", section="3.2")
def stream_grammar_advisories(ctx: CheckContext) -> None:
    """Lesser grammar deviations: overlapping blocks, a tool_use start whose input is not {}."""
    _fail_on(ctx, OWNED["stream_grammar_advisories"])


@check(severity="must", area="streaming", section="7.19")
def stream_data_is_json(ctx: CheckContext) -> None:
    """Every frame has data that is one UTF-8 JSON object (empty or non-JSON data breaks the SDKs' parsers)."""
    _fail_on(ctx, OWNED["stream_data_is_json"])


@check(severity="must", area="streaming", section="7.4")
def stream_not_empty_success(ctx: CheckContext) -> None:
    """A complete stream is not an empty reply with end_turn (an upstream failure disguised as success)."""
    _, stream = _stream(ctx)
    message = stream.message
    has_content = reply_text(message) or any(
        isinstance(b, dict) and b.get("type") != "text" for b in (message.get("content") or [])
    )
    if stream.complete and message.get("stop_reason") == "end_turn" and not has_content:
        raise StreamViolation("a complete stream with no content and stop_reason end_turn")


@check(severity="info", area="streaming", section="3.1")
def stream_unknown_events(ctx: CheckContext) -> None:
    """Unknown event, block and delta types are tolerated but reported (the API may add them)."""
    _fail_on(ctx, OWNED["stream_unknown_events"])


__all__ = ["OWNED"]


@check(severity="must", area="streaming", section="8")
def stream_message_start_usage(ctx: CheckContext) -> None:
    """message_start carries usage with input_tokens > 0 for a non-empty prompt (billing depends on it)."""
    _, stream = _stream(ctx)
    first = next((p for p in stream.payloads if isinstance(p, dict) and p.get("type") == "message_start"), None)
    if first is None:
        raise NotApplicable("no message_start (see stream_ends_with_message_stop)")
    message = first.get("message")
    usage = message.get("usage") if isinstance(message, dict) else None
    value = usage.get("input_tokens") if isinstance(usage, dict) else None
    if not isinstance(value, int) or value <= 0:
        raise StreamViolation(f"message_start usage.input_tokens is {value!r}, expected a positive integer")
