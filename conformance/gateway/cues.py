"""Upstream cues: a marker in the last user message tells the reference gateway how to misbehave for that request.

When the reference gateway sits behind a gateway under test as its upstream, the suite cannot reach it directly:
everything it says goes through the gateway. The last user message is the one thing every gateway forwards in
both dialects, so that is where the cue travels. The syntax (docs/upstream-mode.md):

    [[upstream:CUE,CUE,...]]        CUE is NAME or NAME=VALUE

    status=N          answer HTTP N (400..599) in the dialect's error envelope instead of the reply
    retry-after=S     with status=429: the retry-after header, whole seconds (default 7)
    cut-after=N       streams: drop the connection after N events (no end marker, unterminated body)
    error-after=N     streams: after N events send an in-band overloaded_error, then end the body
    ttft-ms=MS        this request's time to first token (overrides --ttft-ms)
    itl-ms=MS         this request's time between tokens (overrides --itl-ms)
    input-tokens=N    the input/prompt token count the usage reports
    output-tokens=N   the output/completion token count the usage reports
    tool[=NAME]       call a tool (the named one, else the first defined) whatever tool_choice says

The marker is removed from the text before the model reads it, so it is never echoed back. A malformed marker
is refused with a 400 naming the cue: a typo must not pass silently as a success.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from conformance.gateway.messages import IMMEDIATE, Frame, dumps
from conformance.gateway.model import Prompt, Reply
from conformance.gateway.ratelimit import Decision
from conformance.gateway.validation import RequestRejected

__all__ = ["CUE_NAMES", "DEFAULT_RETRY_AFTER", "MARKER", "NO_CUES", "Cues", "marker", "parse_cues", "take_cues"]

MARKER = re.compile(r"\[\[upstream:([^\[\]]*)\]\]")
# The marker and the whitespace around it: what is cut out of the text the model reads.
_MARKER_SPAN = re.compile(r"\s*\[\[upstream:[^\[\]]*\]\]\s*")
_CUE = re.compile(r"([a-z][a-z-]*)(?:=([A-Za-z0-9_.-]+))?")
DEFAULT_RETRY_AFTER = 7  # not the reference gateway's own 1 s, so a relayed value is told apart from a made-up one
CUED_LIMIT = 50  # the requests-per-minute a cued 429 reports in its rate-limit headers
MAX_DELAY_MS = 60_000.0  # a cue must not let one request tie the gateway up for long
OVERLOADED_MESSAGE = "Overloaded"

CUE_NAMES: tuple[str, ...] = (
    "status",
    "retry-after",
    "cut-after",
    "error-after",
    "ttft-ms",
    "itl-ms",
    "input-tokens",
    "output-tokens",
    "tool",
)
_STATUS_MESSAGES = {
    400: "upstream cue: the upstream refused this request",
    429: "upstream cue: rate limited by the upstream",
    500: "Internal server error",
    529: OVERLOADED_MESSAGE,
}


@dataclass(frozen=True, slots=True)
class Cues:
    """What one request asked the upstream to do; the defaults mean "behave"."""

    status: int | None = None
    retry_after: int | None = None
    cut_after: int | None = None
    error_after: int | None = None
    ttft_ms: float | None = None
    itl_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    tool: bool = False
    tool_name: str | None = None

    def __bool__(self) -> bool:
        return self != NO_CUES

    def refusal(self) -> RequestRejected | None:
        """The error to answer instead of the reply (status cue), or None."""
        if self.status is None:
            return None
        message = _STATUS_MESSAGES.get(self.status, f"upstream cue: HTTP {self.status}")
        retry = self.retry_after if self.retry_after is not None else DEFAULT_RETRY_AFTER
        code = "rate_limit_exceeded" if self.status == 429 else "overloaded" if self.status == 529 else None
        return RequestRejected(self.status, message, code=code, retry_after=retry if self.status == 429 else None)

    def limit(self) -> Decision | None:
        """For a cued 429: the exhausted limit its rate-limit headers report, as the API's 429s carry them."""
        if self.status != 429:
            return None
        retry = self.retry_after if self.retry_after is not None else DEFAULT_RETRY_AFTER
        return Decision(False, CUED_LIMIT, 0, float(retry), retry)

    def pacing(self, ttft_s: float, itl_s: float) -> tuple[float, float] | None:
        """(ttft, itl) in seconds for this request when a cue sets either, else None (the gateway's own)."""
        if self.ttft_ms is None and self.itl_ms is None:
            return None
        return (
            ttft_s if self.ttft_ms is None else self.ttft_ms / 1000.0,
            itl_s if self.itl_ms is None else self.itl_ms / 1000.0,
        )

    def usage(self, input_tokens: int, reply: Reply) -> tuple[int, Reply]:
        """The input count and the reply with the usage figures the cues dictate."""
        if self.output_tokens is not None:
            reply = replace(reply, output_tokens=self.output_tokens)
        return (input_tokens if self.input_tokens is None else self.input_tokens), reply

    def frames(self, frames: list[Frame], flavour: str) -> tuple[list[Frame], bool]:
        """The stream's frames as the cues bend them, and whether the connection is then dropped mid-body."""
        if self.cut_after is not None:
            return frames[: min(self.cut_after, len(frames) - 1)], True
        if self.error_after is not None:
            kept = frames[: min(self.error_after, len(frames) - 1)]
            return [*kept, (_error_frame(flavour), IMMEDIATE)], False
        return frames, False

    @property
    def truncates(self) -> bool:
        """Whether the stream ends without its end marker."""
        return self.cut_after is not None or self.error_after is not None


NO_CUES = Cues()


def _error_frame(flavour: str) -> bytes:
    if flavour != "openai":
        payload = {"type": "error", "error": {"type": "overloaded_error", "message": OVERLOADED_MESSAGE}}
        return f"event: error\ndata: {dumps(payload)}\n\n".encode()
    error = {"message": OVERLOADED_MESSAGE, "type": "overloaded_error", "param": None, "code": "overloaded"}
    return f"data: {dumps({'error': error})}\n\n".encode()


def marker(**cues: object) -> str:
    """The marker text for the given cues, e.g. marker(cut_after=5) == "[[upstream:cut-after=5]]"."""
    parts = []
    for name, value in cues.items():
        cue = name.replace("_", "-")
        if cue not in CUE_NAMES:
            raise ValueError(f"unknown upstream cue {cue!r}; valid: {', '.join(CUE_NAMES)}")
        parts.append(cue if value is True else f"{cue}={value}")
    return f"[[upstream:{','.join(parts)}]]"


def _integer(cue: str, value: str | None, low: int, high: int) -> int:
    if value is None or not value.isdigit() or not low <= int(value) <= high:
        raise RequestRejected(400, f"upstream cue {cue}: expected an integer {low}..{high}, got {value!r}")
    return int(value)


def _milliseconds(cue: str, value: str | None) -> float:
    try:
        number = float(value) if value is not None else -1.0
    except ValueError:
        number = -1.0
    if not 0 <= number <= MAX_DELAY_MS:
        raise RequestRejected(400, f"upstream cue {cue}: expected milliseconds 0..{MAX_DELAY_MS:g}, got {value!r}")
    return number


def parse_cues(text: str | None) -> tuple[Cues, str | None]:
    """The cues of every marker in the text, and the text with the markers cut out (None when nothing is left)."""
    if text is None or "[[upstream:" not in text:
        return NO_CUES, text
    fields: dict[str, Any] = {}
    for body in MARKER.findall(text):
        for item in filter(None, (part.strip() for part in body.split(","))):
            match = _CUE.fullmatch(item)
            if match is None or match.group(1) not in CUE_NAMES:
                raise RequestRejected(400, f"upstream cue {item!r} is not one of: {', '.join(CUE_NAMES)}")
            name, value = match.group(1), match.group(2)
            if name == "status":
                fields["status"] = _integer(name, value, 400, 599)
            elif name == "retry-after":
                fields["retry_after"] = _integer(name, value, 0, 86_400)
            elif name in ("cut-after", "error-after"):
                fields[name.replace("-", "_")] = _integer(name, value, 1, 1_000_000)
            elif name in ("ttft-ms", "itl-ms"):
                fields[name.replace("-", "_")] = _milliseconds(name, value)
            elif name in ("input-tokens", "output-tokens"):
                fields[name.replace("-", "_")] = _integer(name, value, 0, 10_000_000)
            else:
                fields["tool"] = True
                fields["tool_name"] = value
    if "cut_after" in fields and "error_after" in fields:
        raise RequestRejected(400, "upstream cues cut-after and error-after exclude each other")
    cues = replace(NO_CUES, **fields)
    # Joining the pieces around the markers with one space keeps "[[...]] Repeat exactly: X" a repeat instruction.
    rest = " ".join(piece for piece in _MARKER_SPAN.split(text) if piece)
    return cues, rest or None


def take_cues(prompt: Prompt) -> tuple[Cues, Prompt]:
    """The cues in the prompt's last user text, and the prompt the model reads: markers cut out, a cued tool forced."""
    cues, text = parse_cues(prompt.last_user_text)
    if not cues and text == prompt.last_user_text:
        return cues, prompt
    prompt = replace(prompt, last_user_text=text)
    if cues.tool:
        if not prompt.tools:
            raise RequestRejected(400, "upstream cue tool: the request defines no tools to call")
        if cues.tool_name is not None and all(tool.name != cues.tool_name for tool in prompt.tools):
            raise RequestRejected(400, f"upstream cue tool: no tool named {cues.tool_name!r} in the request")
        prompt = replace(
            prompt,
            tool_mode="tool" if cues.tool_name else "any",
            tool_name=cues.tool_name or prompt.tool_name,
        )
    return cues, prompt
