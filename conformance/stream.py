"""StreamReader: SSE decoding, JSON, schema validation, the streaming grammar and timing, chunk by chunk.

This is the hot path of the load tests, so it does one pass per event and keeps nothing it was not asked
to keep: with keep_events=False no event outlives its feed() call (only the accumulated message and the
timings grow with the stream), and the lean path such a reader takes for plain chunks skips what repeats from
one stream to the next (the payload of the commonest Anthropic event, the parsing of short data texts, the
schema check of a text already found valid). Schema validation takes the compiled validator's fast `is_valid`
path and asks for the (slower) error list only when it fails. The message is made when first asked for.
"""

from __future__ import annotations

import json
import json.scanner
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, cast

from conformance.grammar import NOT_JSON, AnthropicGrammar, OpenAIGrammar, Violation
from conformance.sse import NOT_PLAIN, PLAIN_DATA_FRAME, PLAIN_NAMED_FRAME, Anomaly, SSEDecoder, SSEEvent

if TYPE_CHECKING:
    from conformance.schemas import CompiledValidator

__all__ = ["Flavour", "StreamReader", "StreamResult", "StreamTimings", "parse_json"]

Flavour = Literal["anthropic", "openai"]

_SCHEMAS: dict[str, str] = {"anthropic": "anthropic/stream-event", "openai": "openai/chat-completion-chunk"}


# json.loads wraps the C scanner in three Python calls that cost as much as the scan; the hot path calls the
# scanner directly and leaves anything unusual (leading whitespace, errors) to json.loads.
_make_scanner: Any = json.scanner.make_scanner  # typeshed types it as a class taking itself
_scan_json: Callable[[str, int], tuple[object, int]] = _make_scanner(json.JSONDecoder())
_JSON_SPACE = " \t\n\r"


def parse_json(data: str) -> object:
    """data as JSON, or NOT_JSON; never raises (too deep a nesting counts as not JSON)."""
    try:
        value, end = _scan_json(data, 0)
    except (StopIteration, ValueError, RecursionError):
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            return NOT_JSON
    if end != len(data) and data[end:].strip(_JSON_SPACE):
        return NOT_JSON
    return value


# The event that is most of every Anthropic stream, as the Anthropic API and the reference gateway serialize
# it (compact, keys in this order). Data that matches is JSON, and an instance of the stream-event schema
# whatever its index and text (tests/test_stream_plain.py holds the schema to that), so the lean reader takes it
# without building, parsing or validating a payload. A run of them to the same block is one match (possessive:
# sre keeps no state to give iterations back; each further frame repeats the first one's head, up to its text, by
# backreference, cheaper for sre than that many literals) whose further texts are not empty; their texts are cut
# out only when the message is asked for. The same match takes the frames around a run that open and close
# nearly every text block, when they are in the chunk: the block's start with an empty text (and the ping the API
# sends after the first), and its stop. Their data are constant but for the index, schema-valid whatever it is.
# Any other plain frame takes the general path, and a message_stop right after it (what ends nearly every
# stream) is taken with it.
_JSON_STRING_BODY = r'[^"\\\x00-\x1f]*+(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+'
_TEXT_DELTA_DATA = '{{"type":"content_block_delta","index":{index},"delta":{{"type":"text_delta","text":"{text}"}}}}'
_TEXT_START_DATA = '{{"type":"content_block_start","index":{index},"content_block":{{"type":"text","text":""}}}}'
_PING_DATA = '{"type": "ping"}'
_TEXT_STOP_DATA = '{{"type":"content_block_stop","index":{index}}}'
_MESSAGE_STOP_DATA = '{"type":"message_stop"}'


def _frame_around(name: str, data: str) -> list[str]:
    """The frame of an event whose data is the template `data`, cut where its fields ({index}, {text}) go."""
    return re.split(r"\{(?:index|text)\}", f"event: {name}\ndata: {data}\n\n".replace("{{", "{").replace("}}", "}"))


_TEXT_DELTA_HEAD, _TEXT_DELTA_TEXT, _TEXT_DELTA_TAIL = _frame_around("content_block_delta", _TEXT_DELTA_DATA)
_HEAD, _TEXT, _TAIL, _PING, _END, _START, _START_TAIL, _STOP, _STOP_TAIL = (
    re.escape(literal)
    for literal in (
        _TEXT_DELTA_HEAD,
        _TEXT_DELTA_TEXT,
        _TEXT_DELTA_TAIL,
        f"event: ping\ndata: {_PING_DATA}\n\n",
        f"event: message_stop\ndata: {_MESSAGE_STOP_DATA}\n\n",
        *_frame_around("content_block_start", _TEXT_START_DATA),
        *_frame_around("content_block_stop", _TEXT_STOP_DATA),
    )
)
_INDEX = "(0|[1-9][0-9]{0,8})"
_ANTHROPIC_FRAMES = re.compile(
    f"(?:{_START}{_INDEX}{_START_TAIL}({_PING})?)?"
    f"({_HEAD}{_INDEX}{_TEXT})({_JSON_STRING_BODY}){_TAIL}"
    f'((?:\\3(?!"){_JSON_STRING_BODY}{_TAIL})*+)'
    f"({_STOP}\\4{_STOP_TAIL})?"
    f"|{PLAIN_NAMED_FRAME}({_END})?|{NOT_PLAIN}"
).findall  # (start's index, ping, first delta's head, block index, first text, further deltas, stop, "", "", "", "")
# or ("", "", "", "", "", "", "", name, data, the message_stop frame after it or "", "") or ("", ..., the rest)


def _run_raws(block: str, first: str, more: str) -> list[str]:
    """The texts of a run of text deltas as its frames hold them (JSON string bodies): the first, then the ones in
    `more`, each between the literal rest of two frames (which holds newlines, so a split cuts them out)."""
    raws = [first]
    if more:
        rest = more[len(_TEXT_DELTA_HEAD) + len(block) + len(_TEXT_DELTA_TEXT) : -len(_TEXT_DELTA_TAIL)]
        raws += rest.split(f"{_TEXT_DELTA_TAIL}{_TEXT_DELTA_HEAD}{block}{_TEXT_DELTA_TEXT}")
    return raws


def _unescaped(raw: str) -> str:
    """The text a JSON string body stands for."""
    return cast(str, _scan_json(f'"{raw}"', 0)[0]) if "\\" in raw else raw


def _run_text(block: str, first: str, more: str) -> str:
    """The texts of a run joined, each read on its own (as the general path reads them: surrogate escapes in two
    texts stay two)."""
    return "".join(map(_unescaped, _run_raws(block, first, more)))


_OPENAI_FRAMES = re.compile(f"{PLAIN_DATA_FRAME}|{NOT_PLAIN}").findall  # (data, "")
_new = object.__new__
_ZEROS = (0.0,) * 64  # the gaps between content deltas that arrived in the same chunk


# Compiled validators by schema name; conformance.schemas (jsonschema-rs, the registry) loads on first use.
_VALIDATORS: dict[str, CompiledValidator] = {}


# Schema verdicts are a function of the data text, and most events repeat it exactly (ping, message_stop,
# block starts and stops, and every stream of a load test asks the same question): short texts found valid are
# remembered per schema, a bounded set that is emptied when full.
_MEMO_TEXT = 512
_MEMO_SIZE = 4096
_KNOWN_VALID: dict[str, set[str]] = {name: set() for name in _SCHEMAS.values()}

# A message_start differs from the last one in its message id alone. The lean reader remembers what it found of
# one under the text after a plain id (not empty, printable, no escape): its parsed payload, and whether its schema
# verdict was valid (the schema asks only for a non-empty string there, and the rest parses the same). Entries are
# kept per such text, a bounded dict emptied when full; payloads are shared: the grammar copies what it keeps, and
# message() returns a deep copy.
_MESSAGE_START_HEAD = '{"type":"message_start","message":{"id":"'
_ID_AT = len(_MESSAGE_START_HEAD)
_STARTS_SIZE = 256
_STARTS: dict[str, list[Any]] = {}  # the text after the id -> [payload, schema verdict known valid]


def _plain_id(data: str) -> tuple[str, str] | None:
    """The id of a message_start data text (which starts with _MESSAGE_START_HEAD) and the text after it, when the
    id is plain."""
    end = data.find('"', _ID_AT)
    message_id = data[_ID_AT:end]
    if end <= _ID_AT or "\\" in message_id or not message_id.isprintable():
        return None
    return message_id, data[end:]


def _message_start(data: str, plain: tuple[str, str] | None) -> tuple[object, list[Any] | None]:
    """The payload of a message_start data text (which starts with _MESSAGE_START_HEAD), with its memo entry when
    its id is plain (`plain`, from _plain_id): parsed once per text after the id, then rebuilt around each id."""
    if plain is None:
        return parse_json(data), None
    message_id, rest = plain
    entry = _STARTS.get(rest)
    if entry is not None:
        found = entry[0]
        return {**found, "message": {**found["message"], "id": message_id}}, entry
    payload = parse_json(data)
    if type(payload) is not dict or type(payload.get("message")) is not dict:
        return payload, None
    # Remember it only if the id in the text is the id in the payload (no later duplicate key overrides it): the
    # same text around another id must parse to the same payload around that id.
    other = f"{message_id}~"
    while f'"{other}"' in data:
        other += "~"
    if parse_json(f"{data[:_ID_AT]}{other}{rest}") != {**payload, "message": {**payload["message"], "id": other}}:
        return payload, None
    if len(_STARTS) >= _STARTS_SIZE:
        _STARTS.clear()
    entry = _STARTS[rest] = [payload, False]
    return payload, entry


# Parsed payloads of short Anthropic data texts, shared by the lean readers of every stream: the same ping,
# block start and stop, message_delta and message_stop come in every stream of a load test. Only payloads the
# grammar never hands out are shared: an object whose values are scalars or objects of scalars, not an error
# (the grammar copies the inner objects it keeps, and keeps an error's payload as it is).
_SHARED_TEXT = 256
_SHARED: dict[str, dict[str, Any]] = {}
_SCALARS = (str, int, float, bool, type(None))


def _share(data: str, payload: dict[str, Any]) -> None:
    """Remember a parsed payload for every lean reader, when the grammar cannot hand it out (see _SHARED)."""
    if payload.get("type") == "error" or "error" in payload:
        return
    for value in payload.values():
        if type(value) is dict:
            if not all(isinstance(inner, _SCALARS) for inner in value.values()):
                return
        elif not isinstance(value, _SCALARS):
            return
    if len(_SHARED) >= _MEMO_SIZE:
        _SHARED.clear()
    _SHARED[data] = payload


@dataclass(slots=True)
class StreamTimings:
    """Latencies of one stream, in seconds from the request start."""

    ttfb: float | None  # first byte of body after request start
    ttft: float | None  # first non-empty content delta (text/thinking/tool JSON) after request start
    gaps: tuple[float, ...]  # between consecutive content deltas (inter-token latency)
    total: float | None


@dataclass(slots=True)
class StreamResult:
    """Everything one stream showed: events (if kept), violations in event order, the message, timings.

    Made once per stream by StreamReader.close() (not frozen: it is built on every request of a load test, and
    a frozen dataclass's __init__ costs three times as much); nothing changes it afterwards.
    """

    flavour: Flavour
    events: tuple[SSEEvent, ...]
    payloads: tuple[object, ...]
    anomalies: tuple[tuple[Anomaly, int, str], ...]  # the decoder's log: (code, byte offset, detail)
    violations: tuple[Violation, ...]  # framing + schema + grammar, in event order, then end-of-stream ones
    complete: bool
    end_cause: str
    timings: StreamTimings
    bytes_received: int
    output_tokens: int | None
    errored: bool = False  # an in-band error arrived (Anthropic error event, OpenAI {"error": ...})
    error: object = None  # that error payload
    event_count: int = 0  # every event, kept or not
    content_deltas: int = 0
    violation_counts: tuple[tuple[str, int], ...] = ()  # every violation counted, even past the kept list
    input_tokens: int | None = None  # from the usage the stream reported
    _grammar: AnthropicGrammar | OpenAIGrammar | None = field(default=None, repr=False, compare=False)
    _message: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def message(self) -> dict[str, Any]:
        """The message the stream accumulated, shaped like the non-streaming response (made on first use)."""
        if self._message is None:
            self._message = self._grammar.message() if self._grammar is not None else {}
        return self._message

    def codes(self) -> frozenset[str]:
        """The distinct violation codes found."""
        return frozenset(code for code, _ in self.violation_counts) | {v.code for v in self.violations}


class StreamReader:
    """Feed an SSE body chunk by chunk with arrival times; close() returns the StreamResult."""

    def __init__(
        self,
        flavour: Flavour,
        *,
        t_start: float,
        validate_schema: bool = True,
        keep_events: bool = True,
        max_events: int = 100_000,
        expect_usage: bool = False,
        max_event_bytes: int = 1 << 20,
        plain_path: bool = True,
    ) -> None:
        """Read one stream of the given flavour for a request sent at t_start (perf_counter seconds).

        plain_path=False turns off the fast path of a reader that keeps no events (tests compare the two).
        """
        if flavour not in _SCHEMAS:
            raise ValueError(f"flavour must be 'anthropic' or 'openai', got {flavour!r}")
        self.flavour: Flavour = flavour
        self.t_start = t_start
        self.keep_events = keep_events
        # Without events to keep, plain chunks skip SSEEvent objects (and text deltas their payloads).
        self._lean = not keep_events and plain_path
        self.max_events = max_events
        self._decoder = SSEDecoder(max_event_bytes=max_event_bytes, expect_event_field=flavour == "anthropic")
        self._grammar: AnthropicGrammar | OpenAIGrammar = (
            AnthropicGrammar() if flavour == "anthropic" else OpenAIGrammar(expect_usage=expect_usage)
        )
        self._is_valid: Callable[[object], bool] | None = None
        self._schema_name = _SCHEMAS[flavour]
        if validate_schema:
            found = _VALIDATORS.get(self._schema_name)
            if found is None:
                from conformance.schemas import validator

                found = _VALIDATORS[self._schema_name] = validator(self._schema_name)
            self._validator = found
            self._is_valid = self._validator.is_valid
        self._known_valid = _KNOWN_VALID[self._schema_name]
        self._events: list[SSEEvent] = []
        self._payloads: list[object] = []
        self._count = 0
        self._strays = 0
        self._first_byte: float | None = None
        self._first_content: float | None = None
        self._last_content = 0.0
        self._gaps: list[float] = []
        self._result: StreamResult | None = None

    @property
    def events_seen(self) -> int:
        """Events decoded so far, kept or not (the transport stops reading at its cap)."""
        return self._count

    def feed(self, chunk: bytes, t: float) -> None:
        """Take the next chunk of the body, received at time t."""
        if self._result is not None or not chunk:
            return
        if self._first_byte is None:
            self._first_byte = t
        decoder = self._decoder
        if self._lean:
            text = decoder.plain_text(chunk)
            if text is not None:
                frames = _ANTHROPIC_FRAMES(text) if self.flavour == "anthropic" else _OPENAI_FRAMES(text)
                if not frames[-1][-1]:  # nothing is left over: the chunk is plain frames only
                    first = self._count
                    self._take_plain(frames, t)
                    decoder.took_plain(chunk, self._count - first, t)
                    return
        events = decoder.feed(chunk, t)
        if events:
            self._take(events)
        if len(decoder.stray_anomalies) != self._strays:
            self._report_strays()

    def close(self, t: float, *, cause: str = "eof") -> StreamResult:
        """End of the body at time t, for the given cause ("eof", "reset", "timeout-idle", ...)."""
        if self._result is not None:
            return self._result
        decoder = self._decoder
        events = decoder.close(t)
        if events:
            self._take(events)
        if len(decoder.stray_anomalies) != self._strays:
            self._report_strays()
        grammar = self._grammar
        grammar.finish()
        if cause != "eof" and not grammar.complete and not grammar.errored:
            marker = "message_stop" if self.flavour == "anthropic" else "data: [DONE]"
            grammar.report("stream-truncated", f"the stream was cut by {cause} before {marker}", None)
        first = self._first_byte
        # Made without calling the classes: a class called with keywords passes them through a dict (CPython 3.11),
        # which made these two calls most of what close() cost. Their own __init__ takes the same keywords.
        timings = _new(StreamTimings)
        StreamTimings.__init__(
            timings,
            ttfb=None if first is None else first - self.t_start,
            ttft=None if self._first_content is None else self._first_content - self.t_start,
            gaps=tuple(self._gaps),
            total=t - self.t_start,
        )
        result = self._result = _new(StreamResult)
        StreamResult.__init__(
            result,
            flavour=self.flavour,
            events=tuple(self._events),
            payloads=tuple(self._payloads),
            anomalies=tuple(decoder.stream_anomalies),
            violations=tuple(grammar.violations),
            complete=grammar.complete,
            end_cause=cause,
            timings=timings,
            bytes_received=decoder.bytes_received,
            output_tokens=grammar.output_tokens,
            errored=grammar.errored,
            error=grammar.error,
            event_count=self._count,
            content_deltas=grammar.content_deltas,
            violation_counts=tuple(sorted(grammar.violation_counts.items())) if grammar.violation_counts else (),
            input_tokens=grammar.input_tokens(),
            _grammar=grammar,
        )
        return self._result

    def _take(self, events: list[SSEEvent]) -> None:
        """JSON, grammar, timing and schema for each event: the hot loop, so locals and no helper calls."""
        grammar = self._grammar
        is_valid = self._is_valid
        keep = self.keep_events
        limit = self.max_events
        scan = _scan_json
        known = self._known_valid
        for event in events:
            data = event.data
            payload: object = None
            if data is not None:
                try:
                    payload, end = scan(data, 0)
                    if end != len(data) and data[end:].strip(_JSON_SPACE):
                        payload = NOT_JSON
                except (StopIteration, ValueError, RecursionError):
                    payload = parse_json(data)
            count = self._count = self._count + 1
            if count <= limit:
                if keep:
                    self._events.append(event)
                    self._payloads.append(payload)
            elif count == limit + 1:
                grammar.report(
                    "too-many-events",
                    f"more than {limit} events; later ones are checked and counted but not kept",
                    event.index,
                )
            before = grammar.content_deltas
            grammar.feed(event, payload)
            if grammar.content_deltas != before:
                self._content(event.t_end, count <= limit)
            if is_valid is not None and type(payload) is dict and data not in known:
                self._check_schema(is_valid, payload, data, event.index)

    def _take_plain(self, frames: list[tuple[str, ...]], t: float) -> None:
        """_take() for a chunk of plain frames, all received at t: the same findings in the same order, faster."""
        count = self._count  # events before this chunk: the index of its first
        if self.flavour == "openai":
            for data, _ in frames:
                self._take_data(count, None, data, parse_json(data), t)
                count += 1
            return
        grammar = self._grammar
        assert isinstance(grammar, AnthropicGrammar)
        limit = self.max_events
        shared = _SHARED
        is_valid = self._is_valid
        known = self._known_valid
        feed_fields = grammar.feed_fields
        for start, ping, _, block, piece, more, stop, name, data, end, _ in frames:
            if not block:
                # _take_data() written out, with the memos: this loop takes most events of the streams a load
                # test reads.
                index = count
                count = self._count = count + 1
                entry = None
                bulk = False  # taken without a payload
                if name == "message_start" and data.startswith(_MESSAGE_START_HEAD):
                    plain = _plain_id(data)
                    if plain is not None:
                        entry = _STARTS.get(plain[1])
                        # Seen before and found valid: the grammar takes its message around this id when the stream
                        # has not begun, without a payload.
                        if (
                            entry is not None
                            and entry[1]
                            and count <= limit
                            and grammar.known_message_start(entry[0]["message"], plain[0])
                        ):
                            bulk = True
                    if not bulk:
                        payload, entry = _message_start(data, plain)
                else:
                    payload = shared.get(data)
                    if payload is None:
                        payload = parse_json(data)
                        if len(data) <= _SHARED_TEXT and type(payload) is dict:
                            _share(data, payload)
                if not bulk:
                    if count == limit + 1:
                        grammar.report(
                            "too-many-events",
                            f"more than {limit} events; later ones are checked and counted but not kept",
                            index,
                        )
                    before = grammar.content_deltas
                    feed_fields(index, name, data, payload)
                    if grammar.content_deltas != before:
                        self._content(t, count <= limit)
                    if is_valid is not None and type(payload) is dict:
                        if entry is not None:
                            if not entry[1]:
                                entry[1] = self._check_schema(is_valid, payload, None, index)
                        elif data not in known:
                            self._check_schema(is_valid, payload, data, index)
                if end:  # a message_stop frame follows, as it follows every message_delta that ends a message
                    if count < limit and grammar.message_stop(count):
                        count = self._count = count + 1
                    else:
                        self._take_data(count, "message_stop", _MESSAGE_STOP_DATA, parse_json(_MESSAGE_STOP_DATA), t)
                        count += 1
                continue
            # A text block's frames: its start (and a ping) if in the chunk, a run of deltas, its stop if in the chunk.
            n = 1 + more.count(_TEXT_DELTA_TAIL)  # the run's further frames each end with it, and a text cannot hold it
            size = n + (2 if ping else 1 if start else 0) + (1 if stop else 0)
            taken = 0  # the match's frames taken without payloads
            if count + size <= limit:
                index = int(block)
                if start == block and grammar.text_block_start(index, ping != ""):  # a start of this block
                    taken = 2 if ping else 1
                if taken or not start:
                    text: str | Callable[[], str] = piece
                    if more or "\\" in piece:
                        text = partial(_run_text, block, piece, more)
                    filled = grammar.text_deltas(index, n, n if piece else n - 1, text)
                    if filled >= 0:
                        taken += n
                        if filled:
                            self._contents(t, filled)
                        if stop and grammar.text_block_stop(index):
                            taken += 1
            count = self._count = count + taken
            if taken != size:
                self._take_block_frames(start, ping, block, piece, more, stop, taken, t)
                count = self._count

    def _take_block_frames(
        self, start: str, ping: str, block: str, piece: str, more: str, stop: str, skip: int, t: float
    ) -> None:
        """The frames of a text block's match (see _ANTHROPIC_FRAMES) taken the general way, one by one, from the
        `skip`-th on."""
        frames = []
        if start:
            frames.append(("content_block_start", _TEXT_START_DATA.format(index=start)))
            if ping:
                frames.append(("ping", _PING_DATA))
        for raw in _run_raws(block, piece, more):
            frames.append(("content_block_delta", _TEXT_DELTA_DATA.format(index=block, text=raw)))
        if stop:
            frames.append(("content_block_stop", _TEXT_STOP_DATA.format(index=block)))
        for name, data in frames[skip:]:
            self._take_data(self._count, name, data, parse_json(data), t)

    def _take_data(self, index: int, name: str | None, data: str, payload: object, t: float) -> None:
        """One plain frame's event, its payload parsed: grammar, timing, schema (unless its text is known valid)."""
        count = self._count = self._count + 1
        limit = self.max_events
        grammar = self._grammar
        if count == limit + 1:
            grammar.report(
                "too-many-events", f"more than {limit} events; later ones are checked and counted but not kept", index
            )
        before = grammar.content_deltas
        grammar.feed_fields(index, name, data, payload)
        if grammar.content_deltas != before:
            self._content(t, count <= limit)
        is_valid = self._is_valid
        if is_valid is not None and type(payload) is dict and data not in self._known_valid:
            self._check_schema(is_valid, payload, data, index)

    def _content(self, t: float, keep_gap: bool) -> None:
        if self._first_content is None:
            self._first_content = t
        elif keep_gap:
            self._gaps.append(t - self._last_content)
        self._last_content = t

    def _contents(self, t: float, n: int) -> None:
        """_content(t, True) n times over."""
        if self._first_content is None:
            self._first_content = self._last_content = t
            n -= 1
        if n:
            gaps = self._gaps
            gaps.append(t - self._last_content)
            if n > 1:
                gaps += _ZEROS[: n - 1] if n <= len(_ZEROS) else [0.0] * (n - 1)
            self._last_content = t

    def _check_schema(
        self, is_valid: Callable[[object], bool], payload: dict[str, Any], data: str | None, index: int
    ) -> bool:
        """Validate one payload (reporting what is wrong); a short data text found valid is remembered."""
        if not is_valid(payload):
            self._schema_errors(payload, index)
            return False
        if data is not None and len(data) <= _MEMO_TEXT:
            known = self._known_valid
            if len(known) >= _MEMO_SIZE:
                known.clear()
            known.add(data)
        return True

    def _schema_errors(self, payload: dict[str, Any], index: int) -> None:
        # Shapes the grammar names better are left to it: a missing `type` (Anthropic) or an in-stream
        # {"error": ...} (OpenAI, where it is the documented way to fail a stream).
        if self.flavour == "anthropic":
            if not isinstance(payload.get("type"), str):
                return
            what = f"{payload['type']} event"
        else:
            if payload.get("error"):
                return
            what = "chunk"
        for error in self._validator.errors(payload):
            self._grammar.report("schema-violation", f"{what}: {error.describe()}", index)

    def _report_strays(self) -> None:
        # Anomalies in comment-only frames belong to no event, so they carry no event index.
        strays = self._decoder.stray_anomalies
        for code, offset, detail in strays[self._strays :]:
            self._grammar.report(code.value, f"{detail} (comment-only frame at byte {offset})", None)
        self._strays = len(strays)
