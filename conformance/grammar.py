"""Streaming grammars: state machines over decoded SSE events that report every violation they see.

`AnthropicGrammar` follows protocol.md 3.1-3.2 (message_start, blocks, message_delta+, message_stop, EOF);
`OpenAIGrammar` follows 6.3-6.4 (chat.completion.chunk ..., optional usage chunk, `data: [DONE]`). Both take
each event with its already-parsed payload (parsed JSON, `NOT_JSON`, or None when the frame has no data),
keep going after a violation so that one stream shows all its defects, and accumulate the message the
official SDKs would build, so checks can compare it with the non-streaming response.

Every violation has a stable code registered in `VIOLATIONS` (code -> one-line rule) with a severity in
`VIOLATION_KINDS`; framing anomalies from the decoder are reported under their own codes, by the grammar,
because whether an anomaly matters depends on the flavour (a data-only frame is normal for OpenAI).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from conformance.sse import Anomaly, SSEEvent

__all__ = [
    "NOT_JSON",
    "VIOLATIONS",
    "VIOLATION_KINDS",
    "AnthropicGrammar",
    "OpenAIGrammar",
    "Severity",
    "Violation",
    "ViolationKind",
]

Severity = Literal["must", "should", "info"]  # same scale as conformance.results.Severity

NOT_JSON: Any = object()  # payload sentinel when data is not JSON


@dataclass(frozen=True, slots=True)
class ViolationKind:
    """A registered violation code: who can report it, how much it matters, and the rule it breaks."""

    code: str
    severity: Severity
    flavours: tuple[str, ...]
    description: str


_A, _O, _AO = ("anthropic",), ("openai",), ("anthropic", "openai")

_KINDS: tuple[ViolationKind, ...] = (
    # Framing (from the SSE decoder's anomalies).
    ViolationKind("unterminated", "must", _AO, "the last frame has no terminating blank line (the SDKs drop it)"),
    ViolationKind("invalid-utf8", "must", _AO, "a frame contains bytes that are not UTF-8"),
    ViolationKind("bom", "should", _AO, "the stream starts with a byte-order mark"),
    ViolationKind("oversized-event", "should", _AO, "a frame is longer than the decoder's max_event_bytes"),
    ViolationKind("cr-line-endings", "should", _AO, "a line ends with a bare CR (LF or CRLF expected)"),
    ViolationKind("mixed-line-endings", "should", _AO, "the stream mixes LF, CRLF and CR line endings"),
    ViolationKind("unknown-field", "should", _AO, "a frame has a field other than event, data, id, retry"),
    ViolationKind("invalid-retry", "info", _AO, "a retry field is not an integer"),
    ViolationKind("id-with-nul", "info", _AO, "an id field contains NUL"),
    ViolationKind("missing-event-name", "must", _A, "a frame has data but no `event:` line (the SDKs skip it)"),
    ViolationKind("no-data-field", "must", _AO, "a frame has no `data:` line (SDKs fail to parse it)"),
    ViolationKind("empty-data", "must", _AO, "a frame's data is empty (JSON expected)"),
    # Payloads.
    ViolationKind("data-not-json", "must", _AO, "event data is not JSON"),
    ViolationKind("not-object", "must", _AO, "event data is JSON but not an object"),
    ViolationKind("missing-type", "must", _A, "event data has no string `type`"),
    ViolationKind("event-name-mismatch", "must", _A, "the `event:` name differs from data.type"),
    ViolationKind("done-sentinel", "must", _A, "`data: [DONE]` on an Anthropic stream (it has no sentinel)"),
    ViolationKind("unknown-event-type", "info", _A, "an event type this grammar does not know (ignored)"),
    ViolationKind("error-openai-shape", "must", _A, "error payload without top-level type error ({error:{...}})"),
    ViolationKind(
        "malformed-error-event", "must", _A, 'error event is not {"type":"error","error":{"type","message"}}'
    ),
    ViolationKind("event-after-error", "must", _A, "an event follows an in-band error (error is terminal)"),
    # Anthropic order.
    ViolationKind("ping-before-message-start", "info", _A, "a ping precedes message_start"),
    ViolationKind("first-event-not-message-start", "must", _A, "the first event is not message_start"),
    ViolationKind("duplicate-message-start", "must", _A, "a second message_start"),
    ViolationKind("no-message-start", "must", _A, "the stream has no message_start"),
    ViolationKind("block-index-invalid", "must", _A, "a content block event without a non-negative integer index"),
    ViolationKind("block-index-not-contiguous", "must", _A, "content_block_start index is not the next 0,1,2..."),
    ViolationKind("block-reopened", "must", _A, "content_block_start for an index already started"),
    ViolationKind("block-not-open", "must", _A, "delta or stop for an index never started"),
    ViolationKind("block-already-closed", "must", _A, "delta or stop for an index already stopped"),
    ViolationKind("block-overlap", "should", _A, "content_block_start while another block is still open"),
    ViolationKind("block-after-message-delta", "must", _A, "content_block_start after message_delta"),
    ViolationKind("block-open-at-message-delta", "must", _A, "message_delta while content blocks are open"),
    ViolationKind("blocks-left-open", "must", _A, "the stream ended with a content block still open"),
    ViolationKind("unknown-block-type", "info", _A, "a content block type this grammar does not know"),
    ViolationKind("unknown-delta-type", "info", _A, "a delta type this grammar does not know (ignored)"),
    ViolationKind("delta-type-mismatch", "must", _A, "a delta type that does not belong to the block's type"),
    ViolationKind("tool-input-start-not-empty", "should", _A, "tool_use content_block_start input is not {}"),
    ViolationKind("tool-input-not-json", "must", _A, "a tool block's concatenated partial_json is not JSON"),
    ViolationKind("tool-input-not-object", "must", _A, "a tool block's concatenated partial_json is not an object"),
    ViolationKind("thinking-signature-missing", "must", _A, "a thinking block stops without a signature"),
    ViolationKind("missing-usage", "must", _A, "message_delta has no usage object"),
    ViolationKind("output-tokens-missing", "must", _A, "message_delta usage has no integer output_tokens"),
    ViolationKind(
        "usage-decreased", "must", _A, "message_delta output_tokens is lower than an earlier message_delta's"
    ),
    ViolationKind("output-tokens-below-start", "should", _A, "message_delta output_tokens is below message_start's"),
    ViolationKind("stop-reason-missing", "must", _A, "message_stop arrives while stop_reason is still null"),
    ViolationKind("end-turn-with-tool-use", "must", _A, "stop_reason end_turn although the message has tool_use"),
    ViolationKind("tool-use-stop-without-tool-block", "must", _A, "stop_reason tool_use without a tool_use block"),
    ViolationKind("missing-message-delta", "must", _A, "message_stop without a preceding message_delta"),
    ViolationKind("event-after-message-stop", "must", _A, "an event follows message_stop (EOF expected)"),
    ViolationKind("missing-message-stop", "must", _A, "the stream ended without message_stop"),
    # OpenAI.
    ViolationKind("chunk-object-invalid", "must", _O, 'chunk object is not "chat.completion.chunk"'),
    ViolationKind("chunk-id-changed", "must", _O, "chunk id differs from the first chunk's"),
    ViolationKind("chunk-created-changed", "must", _O, "chunk created differs from the first chunk's"),
    ViolationKind("choice-index-invalid", "must", _O, "a choice without a non-negative integer index"),
    ViolationKind("choice-index-not-contiguous", "should", _O, "a new choice index is not the next 0,1,2..."),
    ViolationKind("finish-reason-duplicate", "must", _O, "a second non-null finish_reason for the same choice"),
    ViolationKind("delta-after-finish", "must", _O, "content for a choice after its finish_reason"),
    ViolationKind("finish-reason-missing", "must", _O, "a choice never got a finish_reason"),
    ViolationKind("tool-call-index-invalid", "must", _O, "a tool_calls fragment without an integer index"),
    ViolationKind("tool-call-missing-id", "must", _O, "the first fragment of a tool call has no id"),
    ViolationKind("tool-call-missing-name", "must", _O, "the first fragment of a tool call has no function.name"),
    ViolationKind("tool-call-id-changed", "must", _O, "a later fragment of a tool call carries a different id"),
    ViolationKind("tool-call-arguments-not-json", "must", _O, "a tool call's concatenated arguments are not JSON"),
    ViolationKind("usage-chunk-has-choices", "must", _O, "the usage chunk has non-empty choices (must be [])"),
    ViolationKind("usage-before-finish", "must", _O, "the usage chunk comes before every choice finished"),
    ViolationKind("usage-repeated", "must", _O, "usage is non-null on more than one chunk"),
    ViolationKind("missing-usage-chunk", "must", _O, "include_usage was requested but no usage chunk came"),
    ViolationKind("event-after-done", "must", _O, "an event follows data: [DONE]"),
    ViolationKind("missing-done", "must", _O, "the stream ended without data: [DONE]"),
    # Added by the stream reader.
    ViolationKind("schema-violation", "must", _AO, "event data does not match its JSON Schema"),
    ViolationKind("too-many-events", "should", _AO, "more events than max_events; the rest were counted only"),
    ViolationKind("stream-truncated", "must", _AO, "the transport ended the stream (reset, timeout) early"),
    ViolationKind("too-many-violations", "info", _AO, "more violations than max_violations; the rest counted"),
)

VIOLATION_KINDS: dict[str, ViolationKind] = {kind.code: kind for kind in _KINDS}
VIOLATIONS: dict[str, str] = {kind.code: kind.description for kind in _KINDS}


@dataclass(frozen=True, slots=True)
class Violation:
    """One breach of the protocol: a registered code, what was expected and seen, and where."""

    code: str
    message: str
    event_index: int | None

    @property
    def severity(self) -> Severity:
        """The registered severity of this code ("must" for an unregistered one)."""
        kind = VIOLATION_KINDS.get(self.code)
        return kind.severity if kind is not None else "must"


# Framing anomalies are reported under their own value, except where the protocol has a better name.
_ANOMALY_CODES: dict[Anomaly, str] = {Anomaly.NO_EVENT_FIELD: "missing-event-name"}


def _is_index(value: object) -> bool:
    return type(value) is int and value >= 0


def _short(value: object, limit: int = 80) -> str:
    try:
        text = value if isinstance(value, str) else repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dumps(value: object) -> str:
    try:
        return json.dumps(value, default=str)
    except (ValueError, RecursionError):
        return _short(value)


class _Grammar:
    """Shared bookkeeping: the violation list with its cap, and the framing anomalies."""

    flavour = ""
    _ignored_anomalies: frozenset[Anomaly] = frozenset()

    def __init__(self, *, max_violations: int = 10_000) -> None:
        self.violations: list[Violation] = []
        self.violation_counts: dict[str, int] = {}
        self.max_violations = max_violations
        self.complete = False
        self.errored = False
        self.events = 0
        self.content_deltas = 0  # events that carried non-empty content (text, thinking, tool input)
        self._finished = False

    def report(self, code: str, message: str, event_index: int | None) -> None:
        """Record a violation (counted always, kept up to max_violations)."""
        counts = self.violation_counts
        counts[code] = counts.get(code, 0) + 1
        kept = len(self.violations)
        if kept < self.max_violations:
            self.violations.append(Violation(code, message, event_index))
        elif kept == self.max_violations:
            counts["too-many-violations"] = 1
            self.violations.append(
                Violation(
                    "too-many-violations",
                    f"over {self.max_violations} violations; the rest are counted only",
                    event_index,
                )
            )

    def _framing(self, event: SSEEvent) -> None:
        ignored = self._ignored_anomalies
        for code, detail in zip(event.anomalies, event.details or event.anomalies, strict=False):
            if code in ignored:
                continue
            if code is Anomaly.NO_EVENT_FIELD and event.data == "[DONE]":
                continue  # reported as done-sentinel
            self.report(_ANOMALY_CODES.get(code, code.value), f"{detail} (frame at byte {event.offset})", event.index)


# ----------------------------------------------------------------------------------------------- Anthropic

_TOOL_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
_NO_DELTAS: frozenset[str] = frozenset()
_BLOCK_DELTAS: dict[str, frozenset[str]] = {
    "text": frozenset({"text_delta", "citations_delta"}),
    "thinking": frozenset({"thinking_delta", "signature_delta"}),
    "tool_use": frozenset({"input_json_delta"}),
    "server_tool_use": frozenset({"input_json_delta"}),
    "mcp_tool_use": frozenset({"input_json_delta"}),
    "compaction": frozenset({"compaction_delta"}),
    "redacted_thinking": _NO_DELTAS,
    "web_search_tool_result": _NO_DELTAS,
    "web_fetch_tool_result": _NO_DELTAS,
    "code_execution_tool_result": _NO_DELTAS,
    "bash_code_execution_tool_result": _NO_DELTAS,
    "text_editor_code_execution_tool_result": _NO_DELTAS,
    "tool_search_tool_result": _NO_DELTAS,
    "container_upload": _NO_DELTAS,
    "mcp_tool_result": _NO_DELTAS,
}
_KNOWN_DELTAS = frozenset(
    {"text_delta", "input_json_delta", "thinking_delta", "signature_delta", "citations_delta", "compaction_delta"}
)


class _Block:
    """A content block being streamed."""

    __slots__ = ("citations", "closed", "deltas", "index", "kind", "parts", "signature", "start")

    def __init__(self, index: int, kind: str | None, start: dict[str, Any]) -> None:
        self.index = index
        self.kind = kind
        self.start = start
        self.parts: list[str | Callable[[], str]] = []  # texts, or what makes a run of them (text_deltas)
        self.citations: list[Any] = []
        self.signature: str | None = None
        self.closed = False
        self.deltas = 0

    def snapshot(self) -> dict[str, Any]:
        """The block as the non-streaming Message would hold it."""
        block = dict(self.start)
        kind = self.kind
        if kind == "text":
            block["text"] = _text(block.get("text")) + _joined(self.parts)
            if self.citations:
                block["citations"] = [*(block.get("citations") or []), *self.citations]
        elif kind == "thinking":
            block["thinking"] = _text(block.get("thinking")) + _joined(self.parts)
            if self.signature is not None:
                block["signature"] = self.signature
        elif kind in _TOOL_BLOCKS and self.deltas:
            parsed = _parse_tool_input(_joined(self.parts))
            if isinstance(parsed, dict):
                block["input"] = parsed
        return block


def _joined(parts: list[str | Callable[[], str]]) -> str:
    """The parts' texts joined; a run's (text_deltas) made now. Most blocks hold texts only: one join."""
    try:
        return "".join(cast(list[str], parts))
    except TypeError:
        return "".join(part if isinstance(part, str) else part() for part in parts)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _parse_tool_input(text: str) -> object:
    """The tool input the concatenated partial_json stands for (an empty concatenation is {})."""
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        return exc
    except RecursionError:
        return ValueError("nested too deeply to parse")


_MESSAGE_STOP: dict[str, Any] = {"type": "message_stop"}  # its handler reads nothing of it


class AnthropicGrammar(_Grammar):
    """The Messages streaming grammar: message_start, blocks, message_delta+, message_stop, then EOF."""

    flavour = "anthropic"

    def __init__(self, *, max_violations: int = 10_000) -> None:
        """Start in the state before message_start."""
        super().__init__(max_violations=max_violations)
        self.started = False
        self.stopped = False
        self.message_deltas = 0
        self.output_tokens: int | None = None  # from the last message_delta
        self.error: object = None  # the in-band error payload, when errored
        self._message: dict[str, Any] = {}
        self.usage: dict[str, Any] = {}  # message_start's usage, updated by every message_delta
        self._blocks: dict[int, _Block] = {}
        self._open: set[int] = set()
        self._next_index = 0
        self._first_reported = False
        self._start_output = -1
        self._stop_reason_event: int | None = None
        self._has_tool_use = False
        self._tool_check_done = False
        self._last_kind: str | None = None

    def feed(self, event: SSEEvent, payload: object) -> None:
        """Advance over one event; payload is its parsed JSON, NOT_JSON, or None when it has no data."""
        if event.anomalies:
            self._framing(event)
        self.feed_fields(event.index, event.event, event.data, payload)

    def feed_fields(self, index: int, name: str | None, data: str | None, payload: object) -> None:
        """feed() for an event given by its fields, once its framing anomalies (if any) are reported."""
        self.events += 1
        if type(payload) is not dict:
            self._not_an_object(index, name, data, payload)
            return
        kind = payload.get("type")
        if self.stopped or self.errored:
            self._after_end(f"{_short(kind or name)} event", index)
            return
        if kind != name or type(kind) is not str:
            kind = self._irregular(index, name, payload, kind)
            if kind is None:
                return
        self._last_kind = kind
        handler = _ANTHROPIC_HANDLERS.get(kind)
        if handler is not None:
            if not self.started and kind != "message_start" and kind != "ping":
                self._not_started(kind, index)
            handler(self, payload, index)
        elif kind == "error":
            self._error(index, payload)
        else:
            self.report("unknown-event-type", f"unknown event type {_short(kind)!r} (ignored)", index)

    def text_deltas(self, block: int, count: int, filled: int, text: str | Callable[[], str]) -> int:
        """The bulk of every stream, without payloads: `count` consecutive content_block_deltas whose data are
        exactly {"type":"content_block_delta","index":block,"delta":{"type":"text_delta","text":...}}, `filled`
        of them with a non-empty text; `text` is their texts joined, or what makes it when first asked for (the
        message is rarely wanted under load).

        Takes them and returns `filled`, when the stream is in the state where feed_fields() would only append each
        text (message started, not ended, block `block` an open text block); otherwise takes nothing and returns -1,
        and the caller feeds the payloads the general way.
        """
        if not self.started or self.stopped or self.errored:
            return -1
        found = self._blocks.get(block)
        if found is None or found.closed or found.kind != "text":
            return -1
        self.events += count
        self._last_kind = "content_block_delta"
        found.deltas += count
        found.parts.append(text)
        self.content_deltas += filled
        return filled

    def known_message_start(self, message: dict[str, Any], message_id: str) -> bool:
        """A message_start whose data is {"type":"message_start","message":...}, its message `message` with the id
        `message_id`, without its payload: `message` may be shared with other streams (it is copied, never changed).

        Taken as feed_fields() takes it when the stream has not begun (True); otherwise nothing is taken.
        """
        if self.started or self.stopped or self.errored:
            return False
        self.events += 1
        self._last_kind = "message_start"
        self._begin({**message, "id": message_id})
        return True

    def text_block_start(self, block: int, ping: bool) -> bool:
        """A content_block_start whose data is exactly {"type":"content_block_start","index":block,
        "content_block":{"type":"text","text":""}}, followed by a ping when `ping`: what opens nearly every text
        block, without its payloads.

        Takes them and returns True when feed_fields() would find nothing in them (message started, not ended, no
        message_delta yet, no block open, `block` the next index); otherwise takes nothing and returns False.
        """
        if (
            not self.started
            or self.stopped
            or self.errored
            or self.message_deltas
            or self._open
            or block != self._next_index
        ):
            return False
        self.events += 2 if ping else 1
        self._last_kind = "ping" if ping else "content_block_start"
        self._next_index = block + 1
        self._blocks[block] = _Block(block, "text", {"type": "text", "text": ""})
        self._open.add(block)
        return True

    def text_block_stop(self, block: int) -> bool:
        """A content_block_stop whose data is exactly {"type":"content_block_stop","index":block}: True when it
        closes open text block `block` of a message started and not ended (feed_fields() finds nothing in it then),
        False, taking nothing, otherwise."""
        found = self._blocks.get(block)
        if not self.started or self.stopped or self.errored or found is None or found.closed or found.kind != "text":
            return False
        self.events += 1
        self._last_kind = "content_block_stop"
        found.closed = True
        self._open.discard(block)
        return True

    def message_stop(self, index: int) -> bool:
        """A message_stop whose data is exactly {"type":"message_stop"}, event `index`: taken as feed_fields() takes
        it, without its payload, when the message started and has not ended (True); otherwise nothing is taken."""
        if not self.started or self.stopped or self.errored:
            return False
        self.events += 1
        self._last_kind = "message_stop"
        self._message_stop(_MESSAGE_STOP, index)
        return True

    def _irregular(self, index: int, name: str | None, payload: dict[str, Any], kind: object) -> str | None:
        """Event name and data.type disagree or type is missing: report, and say what to dispatch on."""
        if type(kind) is not str:
            if "error" in payload:
                self._error(index, payload)
                return None
            self.report("missing-type", f"expected data with a string type, got keys {sorted(payload)[:8]}", index)
            return name if name is not None and name in _ANTHROPIC_HANDLERS else None
        if name is not None:
            self.report("event-name-mismatch", f"event name {_short(name)!r} but data.type {_short(kind)!r}", index)
        return kind

    def _not_an_object(self, index: int, name: str | None, data: str | None, payload: object) -> None:
        if payload is None:
            return  # no data: the framing anomaly already says so
        data = data or ""
        if data.startswith("[DONE]"):
            self.report("done-sentinel", f"expected no [DONE] sentinel on an Anthropic stream, got {data!r}", index)
            return
        if self.stopped or self.errored:
            self._after_end(f"data {_short(data)!r}", index)
            return
        if name == "error":
            self.errored = True
            self.error = data
            self.report("malformed-error-event", f"error event data is not a JSON object: {_short(data)!r}", index)
            return
        if payload is NOT_JSON:
            if data:
                self.report("data-not-json", f"expected JSON data, got {_short(data)!r}", index)
        else:
            self.report("not-object", f"expected a JSON object, got {type(payload).__name__}", index)

    def _after_end(self, seen: str, index: int) -> None:
        if self.stopped:
            self.report("event-after-message-stop", f"expected EOF after message_stop, got {seen}", index)
        else:
            self.report("event-after-error", f"expected EOF after the error event, got {seen}", index)

    def _not_started(self, kind: str, index: int) -> None:
        if not self._first_reported:
            self._first_reported = True
            self.report("first-event-not-message-start", f"expected message_start first, got {kind}", index)

    def _ping(self, payload: dict[str, Any], index: int) -> None:
        if not self.started:
            self.report("ping-before-message-start", "expected message_start before any ping", index)

    def _message_start(self, payload: dict[str, Any], index: int) -> None:
        if self.started:
            self.report("duplicate-message-start", "expected one message_start, got another", index)
            return
        message = payload.get("message")
        self._begin(dict(message) if isinstance(message, dict) else None)

    def _begin(self, message: dict[str, Any] | None) -> None:
        """The message starts: message_start's message (the grammar's own copy), if it sent an object."""
        self.started = True
        if message is not None:
            self._message = message
            usage = message.get("usage")
            if isinstance(usage, dict):
                self.usage = dict(usage)
                out = usage.get("output_tokens")
                if type(out) is int:
                    self._start_output = out

    def _block_start(self, payload: dict[str, Any], index: int) -> None:
        idx = payload.get("index")
        if not _is_index(idx):
            self.report("block-index-invalid", f"content_block_start index {_short(idx)} is not an integer >= 0", index)
            return
        assert isinstance(idx, int)
        if self.message_deltas:
            self.report("block-after-message-delta", f"content_block_start {idx} after message_delta", index)
        if idx in self._blocks:
            self.report("block-reopened", f"content_block_start for index {idx}, already started", index)
            return
        if idx != self._next_index:
            self.report(
                "block-index-not-contiguous", f"expected content block index {self._next_index}, got {idx}", index
            )
        if self._open:
            opened = ", ".join(str(i) for i in sorted(self._open))
            self.report("block-overlap", f"content_block_start {idx} while block {opened} is open", index)
        self._next_index = max(self._next_index, idx + 1)
        block_data = payload.get("content_block")
        start = dict(block_data) if isinstance(block_data, dict) else {}
        kind = start.get("type")
        kind = kind if isinstance(kind, str) else None
        block = _Block(idx, kind, start)
        self._blocks[idx] = block
        self._open.add(idx)
        if kind in _TOOL_BLOCKS:
            if kind == "tool_use":
                self._has_tool_use = True
            if "input" in start and start["input"] != {}:
                self.report(
                    "tool-input-start-not-empty",
                    f"expected input {{}} in {kind} start, got {_short(_dumps(start['input']))}",
                    index,
                )
        elif kind == "thinking":
            signature = start.get("signature")
            if isinstance(signature, str) and signature:
                block.signature = signature
        elif kind not in _BLOCK_DELTAS:
            self.report("unknown-block-type", f"unknown content block type {_short(kind)!r}", index)

    def _open_block(self, payload: dict[str, Any], index: int, what: str) -> _Block | None:
        idx = payload.get("index")
        if not _is_index(idx):
            self.report("block-index-invalid", f"{what} index {_short(idx)} is not an integer >= 0", index)
            return None
        assert isinstance(idx, int)
        block = self._blocks.get(idx)
        if block is None:
            self.report("block-not-open", f"{what} for index {idx}, which was never started", index)
            return None
        if block.closed:
            self.report("block-already-closed", f"{what} for index {idx}, which was already stopped", index)
            return None
        return block

    def _block_delta(self, payload: dict[str, Any], index: int) -> None:
        idx = payload.get("index")
        block = self._blocks.get(idx) if type(idx) is int else None
        if block is None or block.closed:
            self._open_block(payload, index, "content_block_delta")  # reports why
            return
        delta = payload.get("delta")
        if type(delta) is not dict:
            return  # the schema reports the shape
        dtype = delta.get("type")
        if dtype == "text_delta" and block.kind == "text":  # the bulk of every stream
            text = delta.get("text")
            if type(text) is str:
                block.deltas += 1
                block.parts.append(text)
                if text:
                    self.content_deltas += 1
            return
        if dtype not in _KNOWN_DELTAS:
            self.report("unknown-delta-type", f"unknown delta type {_short(dtype)!r} (ignored)", index)
            return
        allowed = _BLOCK_DELTAS.get(block.kind or "")
        if allowed is not None and dtype not in allowed:
            expected = " or ".join(sorted(allowed)) or "no delta"
            self.report(
                "delta-type-mismatch",
                f"expected {expected} for {block.kind} block {block.index}, got {dtype}",
                index,
            )
            return
        block.deltas += 1
        if dtype == "text_delta":
            value = delta.get("text")
        elif dtype == "input_json_delta":
            value = delta.get("partial_json")
        elif dtype == "thinking_delta":
            value = delta.get("thinking")
        elif dtype == "signature_delta":
            signature = delta.get("signature")
            if isinstance(signature, str):
                block.signature = signature
            return
        elif dtype == "citations_delta":
            block.citations.append(delta.get("citation"))
            return
        else:
            return
        if isinstance(value, str):
            block.parts.append(value)
            if value:
                self.content_deltas += 1

    def _block_stop(self, payload: dict[str, Any], index: int) -> None:
        block = self._open_block(payload, index, "content_block_stop")
        if block is None:
            return
        block.closed = True
        self._open.discard(block.index)
        kind = block.kind
        if kind in _TOOL_BLOCKS and block.deltas:
            text = _joined(block.parts)
            parsed = _parse_tool_input(text)
            if isinstance(parsed, ValueError):
                self.report(
                    "tool-input-not-json",
                    f"{kind} block {block.index}: partial_json concatenates to {_short(text)!r}, not JSON ({parsed})",
                    index,
                )
            elif not isinstance(parsed, dict):
                self.report(
                    "tool-input-not-object",
                    f"{kind} block {block.index}: expected a JSON object, got {type(parsed).__name__}",
                    index,
                )
        elif kind == "thinking" and not block.signature:
            self.report(
                "thinking-signature-missing",
                f"thinking block {block.index} stopped without a non-empty signature (signature_delta expected)",
                index,
            )

    def _message_delta(self, payload: dict[str, Any], index: int) -> None:
        if self._open:
            opened = ", ".join(str(i) for i in sorted(self._open))
            self.report("block-open-at-message-delta", f"message_delta while block {opened} is still open", index)
        self.message_deltas += 1
        delta = payload.get("delta")
        if isinstance(delta, dict):
            self._message.update(delta)
            if "stop_reason" in delta:
                self._stop_reason_event = index
        usage = payload.get("usage")
        if not isinstance(usage, dict):
            self.report("missing-usage", f"expected usage with output_tokens, got {_short(usage)}", index)
            return
        out = usage.get("output_tokens")
        if type(out) is not int:
            self.report("output-tokens-missing", f"expected integer usage.output_tokens, got {_short(out)}", index)
        else:
            previous = self.output_tokens
            if previous is not None:
                if out < previous:
                    self.report("usage-decreased", f"usage is cumulative: output_tokens {out} after {previous}", index)
            elif out < self._start_output:
                # Kept apart from usage-decreased: message_start's count is a placeholder, and even SDK
                # fixtures have shown 1 there and 0 in a refusal's message_delta.
                self.report(
                    "output-tokens-below-start",
                    f"output_tokens {out} is below message_start's {self._start_output}",
                    index,
                )
            self.output_tokens = out
        # As the SDK does: message_start's usage, overridden by every non-null value a message_delta sends
        # (the SDK names the keys it copies; taking them all keeps newer counters too).
        merged = self.usage
        for key, value in usage.items():
            if value is not None:
                merged[key] = value

    def _message_stop(self, payload: dict[str, Any], index: int) -> None:
        if not self.message_deltas:
            self.report(
                "missing-message-delta", "expected message_delta (stop_reason, usage) before message_stop", index
            )
        elif self._message.get("stop_reason") is None:
            self.report("stop-reason-missing", "message_stop while stop_reason is still null", index)
        self.stopped = True
        self.complete = True
        self._check_stop_reason()

    def _error(self, index: int, payload: dict[str, Any]) -> None:
        self.errored = True
        self.error = payload
        if payload.get("type") != "error":
            self.report(
                "error-openai-shape",
                f'expected {{"type":"error","error":{{...}}}}, got keys {sorted(payload)[:8]} without type "error"',
                index,
            )
            return
        error = payload.get("error")
        if (
            not isinstance(error, dict)
            or not isinstance(error.get("type"), str)
            or not isinstance(error.get("message"), str)
        ):
            self.report(
                "malformed-error-event",
                f"expected error {{type: str, message: str}}, got {_short(_dumps(error))}",
                index,
            )

    def _check_stop_reason(self) -> None:
        if self._tool_check_done:
            return
        self._tool_check_done = True
        reason = self._message.get("stop_reason")
        at = self._stop_reason_event
        if reason == "end_turn" and self._has_tool_use:
            self.report("end-turn-with-tool-use", "expected stop_reason tool_use: the message has a tool_use block", at)
        elif reason == "tool_use" and not self._has_tool_use:
            self.report("tool-use-stop-without-tool-block", "stop_reason tool_use but no tool_use block", at)

    def finish(self) -> None:
        """End of stream: report what never came (message_start, message_stop, block stops)."""
        if self._finished:
            return
        self._finished = True
        if self.errored:
            return
        if not self.started:
            self.report("no-message-start", f"stream of {self.events} events has no message_start", None)
        if self._open:
            for idx in sorted(self._open):
                self.report("blocks-left-open", f"content block {idx} was never stopped", None)
        if not self.stopped:
            last = f"; last event was {self._last_kind}" if self._last_kind else ""
            self.report(
                "missing-message-stop", f"stream ended after {self.events} events without message_stop{last}", None
            )
        if not self._tool_check_done and self._message.get("stop_reason") is not None:
            self._check_stop_reason()

    def message(self) -> dict[str, Any]:
        """The Message accumulated so far, shaped like the non-streaming response: a copy the caller owns (the
        lean StreamReader shares payloads between streams, and the grammar keeps parts of them)."""
        message: dict[str, Any] = {
            "id": None,
            "type": "message",
            "role": "assistant",
            "model": None,
            "stop_reason": None,
            "stop_sequence": None,
        }
        message.update(self._message)
        message["content"] = [self._blocks[idx].snapshot() for idx in sorted(self._blocks)]
        message["usage"] = dict(self.usage)
        return copy.deepcopy(message)

    def input_tokens(self) -> int | None:
        """usage.input_tokens as the stream reported it (message_start's, or a message_delta's), if an integer."""
        value = self.usage.get("input_tokens")
        return value if type(value) is int else None


# Dispatch on the event type, kept on no instance: a dict of bound methods would make every grammar a reference
# cycle, left for the cyclic garbage collector (a measurable cost per stream under load).
_ANTHROPIC_HANDLERS: dict[str, Callable[[AnthropicGrammar, dict[str, Any], int], None]] = {
    "message_start": AnthropicGrammar._message_start,
    "content_block_start": AnthropicGrammar._block_start,
    "content_block_delta": AnthropicGrammar._block_delta,
    "content_block_stop": AnthropicGrammar._block_stop,
    "message_delta": AnthropicGrammar._message_delta,
    "message_stop": AnthropicGrammar._message_stop,
    "ping": AnthropicGrammar._ping,
}


# ----------------------------------------------------------------------------------------------- OpenAI


class _ToolCall:
    __slots__ = ("arguments", "id", "index", "name", "type")

    def __init__(self, index: int) -> None:
        self.index = index
        self.id: str | None = None
        self.name: str | None = None
        self.type = "function"
        self.arguments: list[str] = []


class _Choice:
    __slots__ = ("content", "finish_event", "finish_reason", "reasoning", "refusal", "role", "tool_calls")

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, _ToolCall] = {}
        self.finish_reason: object = None
        self.finish_event: int | None = None


class OpenAIGrammar(_Grammar):
    """The chat.completion.chunk stream: same id/created, one finish_reason per choice, usage chunk, [DONE]."""

    flavour = "openai"
    _ignored_anomalies = frozenset({Anomaly.NO_EVENT_FIELD})

    def __init__(self, *, expect_usage: bool = False, max_violations: int = 10_000) -> None:
        """expect_usage: the request set stream_options.include_usage, so a usage chunk must come."""
        super().__init__(max_violations=max_violations)
        self.expect_usage = expect_usage
        self.done = False
        self.error: object = None
        self.usage: dict[str, Any] | None = None
        self.output_tokens: int | None = None
        self._id: object = None
        self._created: object = None
        self._model: object = None
        self._fingerprint: object = None
        self._chunks = 0
        self._choices: dict[int, _Choice] = {}
        self._usage_event: int | None = None

    def feed(self, event: SSEEvent, payload: object) -> None:
        """Advance over one event; payload is its parsed JSON, NOT_JSON, or None when it has no data."""
        if event.anomalies:
            self._framing(event)
        if event.data is None and not self.done:
            self.events += 1
            if event.event is None and (event.id is not None or event.retry is not None):
                self.report(
                    "no-data-field", "frame has id/retry but no data (the OpenAI SDK parses '' as JSON)", event.index
                )
            return
        self.feed_fields(event.index, event.event, event.data, payload)

    def feed_fields(self, index: int, name: str | None, data: str | None, payload: object) -> None:
        """feed() for an event given by its fields, once its framing anomalies (if any) are reported."""
        self.events += 1
        if self.done:
            self.report("event-after-done", f"expected EOF after [DONE], got {_short(data)!r}", index)
            return
        if type(payload) is not dict:
            if data is None:
                return  # no data: the framing anomaly already says so
            if data.startswith("[DONE]"):
                self.done = True
                self.complete = True
            elif payload is NOT_JSON:
                if data:
                    self.report("data-not-json", f"expected JSON data or [DONE], got {_short(data)!r}", index)
            else:
                self.report("not-object", f"expected a JSON object, got {type(payload).__name__}", index)
            return
        if payload.get("error"):
            self.errored = True
            self.error = payload.get("error")
            return
        self._chunks += 1
        if payload.get("object") != "chat.completion.chunk":
            self.report(
                "chunk-object-invalid",
                f'expected object "chat.completion.chunk", got {_short(payload.get("object"))}',
                index,
            )
        chunk_id = payload.get("id")
        created = payload.get("created")
        if self._chunks == 1:
            self._id, self._created = chunk_id, created
            self._model = payload.get("model")
            self._fingerprint = payload.get("system_fingerprint")
        else:
            if chunk_id != self._id:
                self.report("chunk-id-changed", f"expected id {_short(self._id)}, got {_short(chunk_id)}", index)
            if created != self._created:
                self.report(
                    "chunk-created-changed", f"expected created {_short(self._created)}, got {_short(created)}", index
                )
        choices = payload.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict):
                    self._choice(choice, index)
        usage = payload.get("usage")
        if usage is not None:
            self._usage_chunk(usage, choices, index)

    def _choice(self, choice: dict[str, Any], index: int) -> None:
        ci = choice.get("index")
        if not _is_index(ci):
            self.report("choice-index-invalid", f"choice index {_short(ci)} is not an integer >= 0", index)
            return
        assert isinstance(ci, int)
        state = self._choices.get(ci)
        if state is None:
            if ci != len(self._choices):
                self.report(
                    "choice-index-not-contiguous", f"expected choice index {len(self._choices)}, got {ci}", index
                )
            state = self._choices[ci] = _Choice()
        delta = choice.get("delta")
        if type(delta) is dict and delta:
            content = delta.get("content") if len(delta) == 1 else None
            if type(content) is str and state.finish_reason is None:  # the bulk of every stream
                if content:
                    state.content.append(content)
                    self.content_deltas += 1
            else:
                self._delta(state, ci, delta, index)
        reason = choice.get("finish_reason")
        if reason is not None:
            if state.finish_reason is not None:
                self.report(
                    "finish-reason-duplicate",
                    f"choice {ci} already finished with {_short(state.finish_reason)}, got {_short(reason)}",
                    index,
                )
                return
            state.finish_reason = reason
            state.finish_event = index
            for call in state.tool_calls.values():
                self._check_arguments(ci, call, index)

    def _delta(self, state: _Choice, ci: int, delta: dict[str, Any], index: int) -> None:
        content = delta.get("content")
        reasoning = delta.get("reasoning_content")
        refusal = delta.get("refusal")
        calls = delta.get("tool_calls")
        carries = bool(content) or bool(reasoning) or bool(refusal) or bool(calls)
        if carries and state.finish_reason is not None:
            self.report(
                "delta-after-finish", f"choice {ci} got content after finish_reason {state.finish_reason}", index
            )
        role = delta.get("role")
        if isinstance(role, str) and state.role is None:
            state.role = role
        if isinstance(content, str) and content:
            state.content.append(content)
            self.content_deltas += 1
        if isinstance(reasoning, str) and reasoning:
            state.reasoning.append(reasoning)
            self.content_deltas += 1
        if isinstance(refusal, str) and refusal:
            state.refusal.append(refusal)
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    self._tool_call(state, ci, call, index)

    def _tool_call(self, state: _Choice, ci: int, call: dict[str, Any], index: int) -> None:
        ti = call.get("index")
        if not _is_index(ti):
            self.report(
                "tool-call-index-invalid", f"choice {ci}: tool_calls index {_short(ti)} is not an integer", index
            )
            return
        assert isinstance(ti, int)
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        call_id = call.get("id")
        name = function.get("name")
        tool = state.tool_calls.get(ti)
        if tool is None:
            tool = state.tool_calls[ti] = _ToolCall(ti)
            if isinstance(call_id, str) and call_id:
                tool.id = call_id
            else:
                self.report("tool-call-missing-id", f"choice {ci} tool call {ti}: first fragment has no id", index)
            if isinstance(name, str) and name:
                tool.name = name
            else:
                self.report(
                    "tool-call-missing-name", f"choice {ci} tool call {ti}: first fragment has no function.name", index
                )
            kind = call.get("type")
            if isinstance(kind, str):
                tool.type = kind
        else:
            if isinstance(call_id, str) and call_id and tool.id is not None and call_id != tool.id:
                self.report(
                    "tool-call-id-changed", f"choice {ci} tool call {ti}: id {call_id!r} after {tool.id!r}", index
                )
            if tool.name is None and isinstance(name, str) and name:
                tool.name = name
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            tool.arguments.append(arguments)
            self.content_deltas += 1

    def _check_arguments(self, ci: int, call: _ToolCall, index: int) -> None:
        text = "".join(call.arguments)
        try:
            json.loads(text)
        except (ValueError, RecursionError) as exc:
            self.report(
                "tool-call-arguments-not-json",
                f"choice {ci} tool call {call.index}: arguments {_short(text)!r} are not JSON ({exc})",
                index,
            )

    def _usage_chunk(self, usage: object, choices: object, index: int) -> None:
        if self._usage_event is not None:
            self.report(
                "usage-repeated", f"usage already sent at event {self._usage_event}; expected it on one chunk", index
            )
        else:
            self._usage_event = index
            unfinished = [str(ci) for ci, state in sorted(self._choices.items()) if state.finish_reason is None]
            if unfinished:
                self.report(
                    "usage-before-finish",
                    f"usage chunk before finish_reason of choice {', '.join(unfinished)}",
                    index,
                )
        if choices:
            self.report(
                "usage-chunk-has-choices", f"expected choices [] on the usage chunk, got {_short(choices)}", index
            )
        if isinstance(usage, dict):
            self.usage = usage
            tokens = usage.get("completion_tokens")
            if type(tokens) is int:
                self.output_tokens = tokens

    def finish(self) -> None:
        """End of stream: report a missing [DONE], unfinished choices and a missing usage chunk."""
        if self._finished:
            return
        self._finished = True
        if self.errored:
            return
        if not self.done:
            self.report("missing-done", f"stream ended after {self.events} events without data: [DONE]", None)
        for ci, state in sorted(self._choices.items()):
            if state.finish_reason is None:
                self.report("finish-reason-missing", f"choice {ci} never got a finish_reason", None)
        if self.expect_usage and self._usage_event is None:
            self.report("missing-usage-chunk", "include_usage was requested but no chunk carried usage", None)

    def message(self) -> dict[str, Any]:
        """The chat.completion accumulated so far."""
        choices = []
        for ci, state in sorted(self._choices.items()):
            message: dict[str, Any] = {
                "role": state.role or "assistant",
                "content": "".join(state.content) if state.content else None,
            }
            if state.reasoning:
                message["reasoning_content"] = "".join(state.reasoning)
            if state.refusal:
                message["refusal"] = "".join(state.refusal)
            if state.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": call.type,
                        "function": {"name": call.name, "arguments": "".join(call.arguments)},
                    }
                    for _, call in sorted(state.tool_calls.items())
                ]
            choices.append({"index": ci, "message": message, "finish_reason": state.finish_reason})
        completion: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion",
            "created": self._created,
            "model": self._model,
            "choices": choices,
            "usage": self.usage,
        }
        if self._fingerprint is not None:
            completion["system_fingerprint"] = self._fingerprint
        return copy.deepcopy(completion)

    def input_tokens(self) -> int | None:
        """usage.prompt_tokens of the usage chunk, if an integer."""
        value = self.usage.get("prompt_tokens") if self.usage is not None else None
        return value if type(value) is int else None
