"""Lossless incremental Server-Sent Events decoder: bytes in, events out, with raw frames, anomalies and timing.

Follows the WHATWG event-stream rules and the official SDK decoders (protocol.md 3.4): lines split on CR, LF
and CRLF on bytes before UTF-8 decoding; a blank line ends a frame; `field: value` with one leading space
stripped; comment lines (`:`) are counted, not events. Unlike the SDKs it never drops or repairs anything
silently: whatever the bytes, it returns events and records what was odd about them, and never raises.

Decisions the spec leaves open, documented here once:
- A frame that holds any non-comment line is an event, even with neither `event` nor `data` (the SDKs drop
  such frames; we keep them so that nothing the gateway sent is invisible). Comment-only frames are not.
- Unknown field names are ignored as the spec says, and flagged `unknown-field` on the event.
- A frame still open at `close()` is emitted with `unterminated` (the SDKs drop it).
- A frame longer than `max_event_bytes` keeps its first `max_event_bytes` bytes (raw and parse), is flagged
  `oversized-event`, and the rest of it is discarded as it arrives, so a pending frame never holds more.
- A leading BOM is stripped from parsing as the spec says (it stays in the first frame's raw) and flagged.
- A frame whose blank line ends on a CR that is the last byte received so far is held until the next byte
  (or close) shows whether an LF completes the CRLF, so raw bytes never depend on chunking; its t_end is
  still the arrival time of the CR.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DESCRIPTIONS",
    "NOT_PLAIN",
    "PLAIN_DATA_FRAME",
    "PLAIN_NAMED_FRAME",
    "Anomaly",
    "SSEDecoder",
    "SSEEvent",
    "decode_all",
]


class Anomaly(StrEnum):
    """Framing anomalies, recorded on the event they affect and in the decoder's stream log."""

    NO_EVENT_FIELD = "no-event-field"  # frame has data but no `event:` line
    NO_DATA_FIELD = "no-data-field"  # frame has `event:` but no `data:` line
    EMPTY_DATA = "empty-data"  # data present but empty
    UNTERMINATED = "unterminated"  # EOF before the frame's blank line (SDKs drop such a frame)
    INVALID_UTF8 = "invalid-utf8"  # bytes that are not UTF-8; decoded with U+FFFD, raw kept
    BOM = "bom"  # leading U+FEFF on the stream (stripped, as the spec says)
    OVERSIZED_EVENT = "oversized-event"  # frame longer than max_event_bytes: truncated
    CR_LINE_ENDINGS = "cr-line-endings"  # a line ended by a bare CR (legal, but some parsers only split on LF)
    MIXED_LINE_ENDINGS = "mixed-line-endings"  # the stream uses more than one of LF, CRLF, CR
    UNKNOWN_FIELD = "unknown-field"  # a field name other than event, data, id, retry
    INVALID_RETRY = "invalid-retry"  # retry value not made of ASCII digits (ignored)
    ID_WITH_NUL = "id-with-nul"  # id containing NUL (ignored, as the spec says)


DESCRIPTIONS: dict[Anomaly, str] = {
    Anomaly.NO_EVENT_FIELD: "frame has data but no `event:` line",
    Anomaly.NO_DATA_FIELD: "frame has an `event:` line but no `data:` line",
    Anomaly.EMPTY_DATA: "frame's data is empty",
    Anomaly.UNTERMINATED: "stream ended before the frame's terminating blank line",
    Anomaly.INVALID_UTF8: "frame contains bytes that are not valid UTF-8",
    Anomaly.BOM: "stream starts with a byte-order mark (U+FEFF)",
    Anomaly.OVERSIZED_EVENT: "frame longer than max_event_bytes; kept truncated",
    Anomaly.CR_LINE_ENDINGS: "a line is terminated by a bare CR",
    Anomaly.MIXED_LINE_ENDINGS: "the stream mixes LF, CRLF and CR line endings",
    Anomaly.UNKNOWN_FIELD: "a line has a field name other than event, data, id or retry",
    Anomaly.INVALID_RETRY: "retry value is not an integer of ASCII digits",
    Anomaly.ID_WITH_NUL: "id value contains NUL and is ignored",
}


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One decoded frame, with its exact bytes, arrival times and framing anomalies."""

    index: int
    event: str | None
    data: str | None
    id: str | None
    retry: int | None
    raw: bytes
    t_start: float
    t_end: float
    anomalies: tuple[Anomaly, ...] = ()
    offset: int = 0  # stream byte offset of raw[0]
    details: tuple[str, ...] = ()  # one human-readable line per anomaly, same order


# A frozen dataclass's __init__ sets each field through object.__setattr__, which costs several times more
# than the rest of decoding a frame; the hot path fills the slots through their descriptors instead.
_new_object = object.__new__
(_set_index, _set_event, _set_data, _set_id, _set_retry, _set_raw, _set_t_start, _set_t_end, _set_anomalies,
 _set_offset, _set_details) = (
    SSEEvent.__dict__[name].__set__
    for name in ("index", "event", "data", "id", "retry", "raw", "t_start", "t_end", "anomalies", "offset", "details")
)  # fmt: skip


def _make_event(
    index: int, event: str | None, data: str | None, raw: bytes, t_start: float, t_end: float, offset: int
) -> SSEEvent:
    """An SSEEvent without id, retry or anomalies, built fast (equal to one built by the constructor)."""
    made: SSEEvent = _new_object(SSEEvent)
    _set_index(made, index)
    _set_event(made, event)
    _set_data(made, data)
    _set_id(made, None)
    _set_retry(made, None)
    _set_raw(made, raw)
    _set_t_start(made, t_start)
    _set_t_end(made, t_end)
    _set_anomalies(made, ())
    _set_offset(made, offset)
    _set_details(made, ())
    return made


# Plain frames: `event: NAME` (when an event line is expected) or nothing, then one `data:` line with one space,
# LF endings (`.` is anything but LF; CR is ruled out before). Such frames cannot carry an anomaly.
PLAIN_NAMED_FRAME = r"event: (.*)\ndata: (.+)\n\n"  # groups: name, data
PLAIN_DATA_FRAME = r"data: (.+)\n\n"  # group: data
# The last alternative of a pattern that cuts text into plain frames with findall(): at the first place where no
# frame matches, it takes all the rest, so the text was plain frames only when the last match left it empty.
NOT_PLAIN = r"([\s\S]+)"

# Two line terminators in a row end a frame. Atomic groups stop "\r\n" from being read as "\r" then "\n".
_FRAME_END = re.compile(rb"(?>\r\n|\r|\n)(?>\r\n|\r|\n)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_MAX_LOG = 10_000  # stream anomaly log entries kept; the rest only counted
_LF, _CRLF, _CR, _MIXED = 1, 2, 4, 8


class SSEDecoder:
    """Incremental decoder: feed() chunks as they arrive, close() at end of body."""

    def __init__(self, *, max_event_bytes: int = 1 << 20, expect_event_field: bool = True) -> None:
        """A decoder whose pending frame never exceeds max_event_bytes; expect_event_field=False for OpenAI."""
        self.max_event_bytes = max(16, max_event_bytes)
        self.expect_event_field = expect_event_field
        # Both logs hold (code, stream byte offset, detail) and stop growing at _MAX_LOG entries.
        self.stream_anomalies: list[tuple[Anomaly, int, str]] = []  # every anomaly, events' and strays'
        self.stray_anomalies: list[tuple[Anomaly, int, str]] = []  # in frames that are not events (comments)
        self.anomalies_dropped = 0
        self.bytes_received = 0
        self.comments = 0
        self.events = 0
        self.closed = False
        self._parts: list[bytes] = []  # pending frame, not yet terminated
        self._plen = 0
        self._tail = b""  # last bytes of the pending frame, to find a terminator split across chunks
        self._offset = 0  # stream offset of the pending frame's first byte
        self._t_first = 0.0
        self._discard = 0  # bytes of an oversized frame thrown away so far
        self._head: bytes = b""  # kept head of an oversized frame
        self._styles = 0  # bitmask of line-ending styles seen
        self._held: bytes | None = None  # a complete frame ending on CR, waiting to see if LF follows
        self._held_t = 0.0
        self._cut = 0  # where plain_text() last cut its chunk, for took_plain()

    @property
    def pending_bytes(self) -> int:
        """Bytes held for the frame still open (never more than max_event_bytes plus a few)."""
        return self._plen + len(self._head) + len(self._held or b"")

    def feed(self, chunk: bytes, t: float) -> list[SSEEvent]:
        """Decode a chunk received at time t; returns the frames it completed."""
        if self.closed or not chunk:
            return []
        start = self.bytes_received
        self.bytes_received = start + len(chunk)
        if self._held is not None:
            return self._release(chunk, start, t)
        if self._plen == 0 and not self._discard:
            data = chunk.lstrip(b"\r\n")
            if not data:
                return []
            self._offset = start + len(chunk) - len(data)
            self._t_first = t
            if data[-2:] == b"\n\n":
                # Most servers flush one whole frame per chunk: take it without the general scan.
                event = self._quick(data, t)
                if event is not None:
                    return [event]
            return self._scan(data, 0, t)
        probe = self._tail + chunk
        found = _FRAME_END.search(probe)
        if found is None:
            self._hold(chunk, probe)
            return []
        if not self._discard:
            data = b"".join(self._parts) + chunk
            search = max(0, self._plen - 3)
            self._parts = []
            self._plen = 0
            return self._scan(data, search, t)
        # The oversized frame ends inside this chunk: emit its head, decode the rest normally.
        cut = found.end() - len(self._tail)
        self._discard += cut
        events = self._flush_oversized(t, terminated=True)
        rest = chunk[cut:].lstrip(b"\r\n")
        if rest:
            self._offset = start + len(chunk) - len(rest)
            self._t_first = t
            events.extend(self._scan(rest, 0, t))
        return events

    def plain_text(self, chunk: bytes) -> str | None:
        """The text of the frames this chunk completes, when they may be taken as plain frames; else None.

        Plain frames back to back (PLAIN_NAMED_FRAME, or PLAIN_DATA_FRAME when no `event:` line is expected)
        carry no anomaly, so a caller that cuts all of the text into such frames may take them itself, without
        SSEEvent objects, and then call took_plain(); when its pattern leaves anything over (see NOT_PLAIN), it
        calls feed() with the chunk instead. The text runs from the pending frame's first byte to the chunk's
        last blank line. This checks the rest: no CR held back and no oversized frame being dropped, a blank
        line in the chunk, valid UTF-8, LF line endings only (in the text, after it, and in the stream before),
        nothing longer than max_event_bytes. Takes nothing.
        """
        if self._held is not None or self._discard or self.closed or self._styles > _LF:
            return None
        cut = chunk.rfind(b"\n\n") + 2
        if cut < 2:
            return None
        limit = self.max_event_bytes
        if cut < len(chunk):
            head = chunk[:cut]
            if len(chunk) - cut > limit or b"\r" in chunk[cut:]:
                return None
        else:
            head = chunk
        if self._plen:
            head = b"".join(self._parts) + head
        if len(head) > limit:
            return None
        try:
            text = head.decode()
        except UnicodeDecodeError:
            return None
        if "\r" in text:
            return None
        self._cut = cut
        return text

    def took_plain(self, chunk: bytes, frames: int, t: float) -> None:
        """Take the chunk whose text plain_text() returned last, received at t, as `frames` plain frames; what
        follows its last blank line stays pending, as feed() keeps it."""
        cut = self._cut
        received = self.bytes_received = self.bytes_received + len(chunk)
        self.events += frames
        self._styles = _LF
        if cut < len(chunk):
            rest = chunk[cut:]
            self._parts = [rest]
            self._plen = len(rest)
            self._tail = rest[-3:]
            self._offset = received - len(rest)
            self._t_first = t
        else:
            if self._plen:
                self._parts = []
                self._plen = 0
                self._tail = b""
            self._offset = received

    def close(self, t: float) -> list[SSEEvent]:
        """End of body at time t: flush a pending frame, flagged unterminated."""
        if self.closed:
            return []
        self.closed = True
        if self._held is not None:
            return self._release(b"", self.bytes_received, t)
        if self._discard:
            return self._flush_oversized(t, terminated=False)
        if not self._plen:
            return []
        frame = b"".join(self._parts)
        self._parts = []
        self._plen = 0
        event = self._frame(frame, t, terminated=False)
        return [event] if event is not None else []

    def _release(self, chunk: bytes, start: int, t: float) -> list[SSEEvent]:
        """Emit the frame held on a final CR, taking the LF that completes a CRLF, then go on with the chunk."""
        frame, self._held = self._held or b"", None
        if chunk[:1] == b"\n":
            frame += b"\n"
        event = self._frame(frame, self._held_t, terminated=True)
        self._offset += len(frame)
        events = [event] if event is not None else []
        if chunk:
            self.bytes_received = start
            events.extend(self.feed(chunk, t))
        return events

    def _hold(self, chunk: bytes, probe: bytes) -> None:
        """Keep an unterminated chunk, or discard it once the frame has outgrown the limit."""
        self._tail = probe[-3:]
        if self._discard:
            self._discard += len(chunk)
            return
        self._parts.append(chunk)
        self._plen += len(chunk)
        if self._plen > self.max_event_bytes:
            joined = b"".join(self._parts)
            self._head = joined[: self.max_event_bytes]
            self._discard = len(joined) - self.max_event_bytes
            self._parts = []
            self._plen = 0

    def _scan(self, data: bytes, search: int, t: float) -> list[SSEEvent]:
        """Cut every complete frame out of data (which starts with the pending frame) and keep the rest."""
        events: list[SSEEvent] = []
        pos = 0
        fast = data.find(b"\r") < 0
        size = len(data)
        limit = self.max_event_bytes
        while True:
            if fast:
                end = data.find(b"\n\n", search)
                if end < 0:
                    break
                end += 2
            else:
                found = _FRAME_END.search(data, search)
                if found is None:
                    break
                end = found.end()
            if end == size and data[end - 1] == 13 and end - pos <= limit:
                # Maybe the CR of a CRLF whose LF is still in flight: wait for the next byte so raw is exact.
                # t_end stays the time of this chunk, when the frame became complete.
                self._held = data[pos:end] if pos else data
                self._held_t = t
                return events
            if end - pos > limit:
                event = self._frame(data[pos : pos + limit], t, terminated=True, dropped=end - pos - limit)
            else:
                frame = data[pos:end] if pos or end < size else data
                event = self._quick(frame, t) if fast else None
                if event is None:
                    event = self._frame(frame, t, terminated=True)
            if event is not None:
                events.append(event)
            # Blank lines between frames belong to no frame.
            nxt = end
            while nxt < size and data[nxt] in b"\r\n":
                nxt += 1
            self._offset += nxt - pos
            self._t_first = t
            pos = search = nxt
        if pos < size:
            rest = data[pos:] if pos else data
            self._tail = rest[-3:]
            if len(rest) > limit:
                self._head = rest[:limit]
                self._discard = len(rest) - limit
            else:
                self._parts = [rest]
                self._plen = len(rest)
        return events

    def _quick(self, raw: bytes, t: float) -> SSEEvent | None:
        """Exactly one frame `event: X\ndata: D\n\n` or `data: D\n\n` in LF, or None for the general parser."""
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return None
        if self._styles != _LF or "\r" in text:
            return None
        end = len(text) - 2
        first = text.find("\n")
        if text.startswith("event: "):
            if not text.startswith("data: ", first + 1) or text.find("\n", first + 1) != end:
                return None
            event: str | None = text[7:first]
            data = text[first + 7 : end]
        elif first == end and text.startswith("data: ") and not self.expect_event_field:
            event = None
            data = text[6:end]
        else:
            return None
        if not data:
            return None  # empty data is an anomaly: the general parser records it
        index = self.events
        self.events = index + 1
        return _make_event(index, event, data, raw, self._t_first, t, self._offset)

    def _flush_oversized(self, t: float, *, terminated: bool) -> list[SSEEvent]:
        head, dropped = self._head, self._discard
        self._head = b""
        self._discard = 0
        self._tail = b""
        event = self._frame(head, t, terminated=terminated, dropped=dropped)
        self._offset += len(head) + dropped
        return [event] if event is not None else []

    def _note(self, into: list[tuple[Anomaly, str]], code: Anomaly, offset: int, detail: str) -> None:
        into.append((code, detail))
        if len(self.stream_anomalies) < _MAX_LOG:
            self.stream_anomalies.append((code, offset, detail))
        else:
            self.anomalies_dropped += 1

    def _frame(self, raw: bytes, t: float, *, terminated: bool, dropped: int = 0) -> SSEEvent | None:
        """Parse one frame's bytes into an event (None for a comment-only frame)."""
        offset = self._offset
        notes: list[tuple[Anomaly, str]] = []
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            text = raw.decode(errors="replace")
            self._note(notes, Anomaly.INVALID_UTF8, offset + exc.start, f"invalid UTF-8 at byte {offset + exc.start}")
        if offset == 0 and text.startswith("\ufeff"):
            text = text[1:]
            self._note(notes, Anomaly.BOM, 0, "stream starts with U+FEFF")
        if "\r" in text:
            lines = self._cr_lines(text, offset, notes)
        else:
            if self._styles != _LF:
                self._style(_LF, notes, offset)
            lines = text.split("\n")
        event: str | None = None
        data: list[str] | None = None
        ident: str | None = None
        retry: int | None = None
        fields = False
        for line in lines:
            if not line:
                continue
            colon = line.find(":")
            if colon == 0:
                self.comments += 1
                continue
            fields = True
            if colon < 0:
                name, value = line, ""
            else:
                name = line[:colon]
                value = line[colon + 2 :] if line[colon + 1 : colon + 2] == " " else line[colon + 1 :]
            if name == "data":
                if data is None:
                    data = [value]
                else:
                    data.append(value)
            elif name == "event":
                event = value
            elif name == "id":
                if "\0" in value:
                    self._note(notes, Anomaly.ID_WITH_NUL, offset, "id contains NUL; ignored")
                else:
                    ident = value
            elif name == "retry":
                if value.isascii() and value.isdigit():
                    retry = int(value)
                else:
                    self._note(notes, Anomaly.INVALID_RETRY, offset, f"retry value {value[:40]!r} is not digits")
            else:
                self._note(notes, Anomaly.UNKNOWN_FIELD, offset, f"unknown field {name[:40]!r}")
        if dropped:
            detail = f"frame cut at {len(raw)} bytes, {dropped} more bytes discarded"
            self._note(notes, Anomaly.OVERSIZED_EVENT, offset, detail)
        if not terminated:
            self._note(notes, Anomaly.UNTERMINATED, offset + len(raw), "stream ended inside this frame")
        if not fields:
            if notes and len(self.stray_anomalies) < _MAX_LOG:
                self.stray_anomalies.extend((code, offset, detail) for code, detail in notes)
            return None
        joined = None if data is None else (data[0] if len(data) == 1 else "\n".join(data))
        if joined is None:
            if event is not None:
                self._note(notes, Anomaly.NO_DATA_FIELD, offset, f"event {event[:40]!r} has no data line")
        else:
            if event is None and self.expect_event_field:
                self._note(notes, Anomaly.NO_EVENT_FIELD, offset, "data without an event line")
            if not joined:
                self._note(notes, Anomaly.EMPTY_DATA, offset, "data is empty")
        index = self.events
        self.events = index + 1
        if notes:
            codes = tuple(code for code, _ in notes)
            details = tuple(detail for _, detail in notes)
            return SSEEvent(index, event, joined, ident, retry, raw, self._t_first, t, codes, offset, details)
        return SSEEvent(index, event, joined, ident, retry, raw, self._t_first, t, (), offset, ())

    def _cr_lines(self, text: str, offset: int, notes: list[tuple[Anomaly, str]]) -> list[str]:
        crlf = text.count("\r\n")
        bare_cr = text.count("\r") - crlf
        bits = (_CRLF if crlf else 0) | (_LF if text.count("\n") > crlf else 0) | (_CR if bare_cr > 0 else 0)
        if bits | self._styles != self._styles:
            self._style(bits, notes, offset)
        return _LINE_BREAK.split(text)

    def _style(self, bits: int, notes: list[tuple[Anomaly, str]], offset: int) -> None:
        before = self._styles
        now = before | bits
        if now & _CR and not before & _CR:
            self._note(notes, Anomaly.CR_LINE_ENDINGS, offset, "line terminated by a bare CR")
        if now & 7 not in (0, _LF, _CRLF, _CR) and not now & _MIXED:
            now |= _MIXED
            self._note(notes, Anomaly.MIXED_LINE_ENDINGS, offset, "stream mixes line-ending styles")
        self._styles = now


def decode_all(data: bytes | Iterable[bytes]) -> list[SSEEvent]:
    """Decode a whole body (bytes, or chunks) at once; chunk i arrives at time i."""
    decoder = SSEDecoder()
    chunks = [data] if isinstance(data, bytes | bytearray | memoryview) else data
    events: list[SSEEvent] = []
    t = 0.0
    for chunk in chunks:
        events.extend(decoder.feed(bytes(chunk), t))
        t += 1.0
    events.extend(decoder.close(t))
    return events
