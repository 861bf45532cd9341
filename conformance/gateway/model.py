"""The deterministic model: it echoes the last user text, calls tools from their schemas, thinks briefly, and signs."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from conformance.gateway.tokens import split_tokens

__all__ = [
    "FALLBACK_REPLY",
    "MODELS",
    "ModelInfo",
    "Prompt",
    "Reply",
    "Signer",
    "TextBlock",
    "ThinkingBlock",
    "ToolSpec",
    "ToolUseBlock",
    "catalogue",
    "example_input",
    "generate",
    "new_id",
    "repeat_target",
]

FALLBACK_REPLY = "Acknowledged."
_REPEAT = re.compile(r"\s*repeat exactly:\s*", re.IGNORECASE)
_THOUGHT = "I will answer the user's last message directly."
_TOOL_THOUGHT = "I should call the {name} tool."
_TOOL_PREFACE = "I'll use the {name} tool."

# base64 without its two symbols, so ids stay alphanumeric like the API's (a slight bias is harmless here).
_ALPHANUMERIC = bytes.maketrans(b"+/", b"xz")


def new_id(prefix: str) -> str:
    """A random id in the API's style: prefix + "01" + 22 alphanumeric characters (e.g. msg_01..., toolu_01...)."""
    return prefix + "01" + binascii.b2a_base64(os.urandom(17), newline=False)[:22].translate(_ALPHANUMERIC).decode()


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One entry of GET /v1/models."""

    id: str
    display_name: str
    created_at: str

    def as_json(self) -> dict[str, Any]:
        """The ModelInfo object of the API."""
        return {"type": "model", "id": self.id, "display_name": self.display_name, "created_at": self.created_at}


def _display_name(model_id: str) -> str:
    parts = [part for part in model_id.split("-") if not (len(part) == 8 and part.isdigit())]
    words = [parts[0].capitalize()] + [p.capitalize() for p in parts[1:] if not p.isdigit()]
    version = ".".join(p for p in parts[1:] if p.isdigit())
    return " ".join(words) + (f" {version}" if version else "")


# The model names the anthropic 2.12.0 SDK knows, newest first, as the API lists them.
_MODEL_IDS = (
    "claude-fable-5-2",
    "claude-mythos-5-2",
    "claude-haiku-5-5",
    "claude-sonnet-5-5",
    "claude-fable-5-1",
    "claude-opus-5-5",
    "claude-mythos-5-1",
    "claude-sonnet-5",
    "claude-fable-5",
    "claude-mythos-5",
    "claude-opus-5",
    "claude-opus-4-8",
    "claude-opus-4-7",
    "claude-mythos-preview",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    "claude-opus-4-5",
    "claude-opus-4-5-20251101",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
)


def _catalogue(ids: Sequence[str]) -> tuple[ModelInfo, ...]:
    # Synthetic release dates, one week apart and strictly decreasing, so the list order is the date order.
    newest = date(2026, 9, 1)
    return tuple(
        ModelInfo(model_id, _display_name(model_id), f"{newest - timedelta(days=7 * position)}T00:00:00Z")
        for position, model_id in enumerate(ids)
    )


MODELS: tuple[ModelInfo, ...] = _catalogue(_MODEL_IDS)


def catalogue(extra: Sequence[str] = ()) -> tuple[ModelInfo, ...]:
    """The served models: extra names first (newest), then the SDK's known names."""
    extra = tuple(name for name in extra if name not in _MODEL_IDS)
    return _catalogue(extra + _MODEL_IDS) if extra else MODELS


class Signer:
    """Signs thinking text with an HMAC key derived from the gateway's API key, and checks passed-back blocks."""

    __slots__ = ("_key",)

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"reference-gateway/thinking/" + secret.encode()).digest()

    def sign(self, thinking: str) -> str:
        """The signature of a thinking block whose text is exactly `thinking`."""
        digest = hmac.new(self._key, thinking.encode(), hashlib.sha256).digest()
        return base64.b64encode(b"\x01" + digest).decode()

    def verify(self, thinking: str, signature: str) -> bool:
        """Whether this gateway issued `signature` for exactly this text (constant-time comparison)."""
        return hmac.compare_digest(self.sign(thinking).encode(), signature.encode())


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A custom tool the model may call: its name and input_schema."""

    name: str
    input_schema: Mapping[str, Any]


ToolMode = Literal["auto", "any", "tool", "none"]
ThinkingMode = Literal["off", "shown", "omitted"]


@dataclass(frozen=True, slots=True)
class Prompt:
    """What the model reads, independent of the wire format (Anthropic or OpenAI)."""

    last_user_text: str | None  # None when the last user turn has no text (e.g. only tool_result)
    prefill: str = ""
    tools: tuple[ToolSpec, ...] = ()
    tool_mode: ToolMode = "none"
    tool_name: str | None = None  # for tool_mode "tool"
    thinking: ThinkingMode = "off"
    max_tokens: int | None = None
    stop_sequences: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ThinkingBlock:
    """A thinking block; `pieces` are streamed as thinking_delta unless the display is omitted."""

    thinking: str  # the text as shown in the block ("" when display is omitted)
    pieces: tuple[str, ...]
    signature: str
    tokens: int


@dataclass(frozen=True, slots=True)
class TextBlock:
    """A text block; each piece is one output token and one text_delta."""

    text: str
    pieces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ToolUseBlock:
    """A tool call; `pieces` are the fragments of the JSON input, one output token each."""

    id: str
    name: str
    input: dict[str, Any]
    pieces: tuple[str, ...]


Block = ThinkingBlock | TextBlock | ToolUseBlock
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


@dataclass(frozen=True, slots=True)
class Reply:
    """The model's whole answer: blocks in order, why it stopped, and the output tokens billed."""

    blocks: tuple[Block, ...]
    stop_reason: StopReason
    stop_sequence: str | None
    output_tokens: int

    @property
    def streamed_deltas(self) -> int:
        """How many content deltas carry tokens (what the ITL schedule spaces out)."""
        total = 0
        for block in self.blocks:
            if isinstance(block, ThinkingBlock):
                total += len(block.pieces) if block.thinking else 0
            else:
                total += len(block.pieces)
        return total


def repeat_target(text: str) -> str:
    """What the model says to `text`: X for "Repeat exactly: X", otherwise the text itself."""
    match = _REPEAT.match(text)
    return text[match.end() :] if match else text


def _mentioned_tool(text: str | None, tools: Sequence[ToolSpec]) -> ToolSpec | None:
    if not text:
        return None
    for tool in tools:
        if re.search(rf"(?<![\w-]){re.escape(tool.name)}(?![\w-])", text):
            return tool
    return None


def _choose_tool(prompt: Prompt) -> tuple[ToolSpec | None, bool]:
    """The tool to call, and whether the call is forced (forced calls get no text preface)."""
    if not prompt.tools or prompt.tool_mode == "none":
        return None, False
    if prompt.tool_mode == "tool":
        for tool in prompt.tools:
            if tool.name == prompt.tool_name:
                return tool, True
        return None, False
    mentioned = _mentioned_tool(prompt.last_user_text, prompt.tools)
    if prompt.tool_mode == "any":
        return mentioned or prompt.tools[0], True
    return mentioned, False


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """The stop sequence that completes first in the text, and where it starts."""
    best: tuple[int, int, str] | None = None
    for stop in stops:
        if not stop:
            continue
        start = text.find(stop)
        if start >= 0 and (best is None or start + len(stop) < best[1]):
            best = (start, start + len(stop), stop)
    return (best[0], best[2]) if best else None


class _Budget:
    __slots__ = ("left", "used")

    def __init__(self, max_tokens: int | None) -> None:
        self.left = math.inf if max_tokens is None else max_tokens
        self.used = 0

    def take(self, wanted: int) -> int:
        granted = int(min(wanted, self.left))
        self.left -= granted
        self.used += granted
        return granted


def generate(prompt: Prompt, signer: Signer) -> Reply:
    """The deterministic reply to a prompt (see docs/reference-gateway.md for the rules)."""
    budget = _Budget(prompt.max_tokens)
    blocks: list[Block] = []
    tool, forced = _choose_tool(prompt)

    if prompt.thinking != "off":
        thought = _TOOL_THOUGHT.format(name=tool.name) if tool else _THOUGHT
        pieces = split_tokens(thought)
        granted = budget.take(len(pieces))
        kept = "".join(pieces[:granted])
        shown = kept if prompt.thinking == "shown" else ""
        # The signature covers the text exactly as the block carries it, so an edited block fails verification.
        blocks.append(ThinkingBlock(shown, tuple(pieces[:granted]), signer.sign(shown), granted))
        if granted < len(pieces):
            return Reply(tuple(blocks), "max_tokens", None, max(budget.used, 1))

    if tool is not None and forced:
        text = ""
    elif tool is not None:
        text = _TOOL_PREFACE.format(name=tool.name)
    elif prompt.last_user_text is None:
        text = FALLBACK_REPLY
    else:
        text = repeat_target(prompt.last_user_text)
        if prompt.prefill and text.startswith(prompt.prefill):
            text = text[len(prompt.prefill) :]

    stopped = _first_stop(text, prompt.stop_sequences)
    if stopped is not None:
        text = text[: stopped[0]]
    pieces = split_tokens(text)
    granted = budget.take(len(pieces))
    if granted:
        blocks.append(TextBlock("".join(pieces[:granted]), tuple(pieces[:granted])))
    if granted < len(pieces):
        return Reply(tuple(blocks), "max_tokens", None, max(budget.used, 1))
    if stopped is not None:
        return Reply(tuple(blocks), "stop_sequence", stopped[1], max(budget.used, 1))

    if tool is not None:
        arguments = example_input(tool.input_schema)
        fragments = split_tokens(json.dumps(arguments, ensure_ascii=False))
        if budget.left < len(fragments):
            # A call that does not fit is not emitted at all: half a JSON object is no use to a client.
            budget.take(len(fragments))
            return Reply(tuple(blocks), "max_tokens", None, max(budget.used, 1))
        budget.take(len(fragments))
        blocks.append(ToolUseBlock(new_id("toolu_"), tool.name, arguments, tuple(fragments)))
        return Reply(tuple(blocks), "tool_use", None, max(budget.used, 1))
    return Reply(tuple(blocks), "end_turn", None, max(budget.used, 1))


_STRING_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
}


def _resolve(reference: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    if not reference.startswith("#"):
        return {}
    node: Any = root
    for part in reference.lstrip("#").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return {}
    return node if isinstance(node, Mapping) else {}


def _number(schema: Mapping[str, Any], integral: bool) -> int | float:
    value: float = 0
    if isinstance(schema.get("minimum"), int | float):
        value = max(value, schema["minimum"])
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        value = max(value, math.floor(schema["exclusiveMinimum"]) + 1)
    if isinstance(schema.get("maximum"), int | float) and value > schema["maximum"]:
        value = schema["maximum"]
    if isinstance(schema.get("exclusiveMaximum"), int | float) and value >= schema["exclusiveMaximum"]:
        value = math.ceil(schema["exclusiveMaximum"]) - 1
    if integral:
        return math.ceil(value)
    return int(value) if float(value).is_integer() else value


def _example(schema: object, root: Mapping[str, Any], depth: int) -> Any:
    if depth > 12:
        return None
    if not isinstance(schema, Mapping):
        # `true` (or a missing schema) accepts anything; a string is the least surprising value.
        return "example"
    if "$ref" in schema and isinstance(schema["$ref"], str):
        target = {**_resolve(schema["$ref"], root), **{k: v for k, v in schema.items() if k != "$ref"}}
        return _example(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            chosen = next((o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")), options[0])
            rest = {k: v for k, v in schema.items() if k != key}
            return _example({**rest, **chosen} if isinstance(chosen, Mapping) else chosen, root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, Mapping):
                part = _resolve(part["$ref"], root) if isinstance(part.get("$ref"), str) else part
                for key, value in part.items():
                    if key in ("properties",) and isinstance(merged.get(key), Mapping):
                        merged[key] = {**merged[key], **value}
                    elif key == "required" and isinstance(merged.get(key), list):
                        merged[key] = [*merged[key], *value]
                    else:
                        merged.setdefault(key, value)
        return _example(merged, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        required = required if isinstance(required, list) else []
        return {name: _example(properties.get(name, {}), root, depth + 1) for name in required if isinstance(name, str)}
    if kind == "array":
        items = schema.get("items", {})
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        count = max(int(schema.get("minItems", 1)), len(prefix))
        if isinstance(schema.get("maxItems"), int):
            count = min(count, schema["maxItems"])
        return [_example(prefix[i] if i < len(prefix) else items, root, depth + 1) for i in range(count)]
    if kind == "string":
        text = _STRING_FORMATS.get(str(schema.get("format")), "example")
        minimum = schema.get("minLength")
        if isinstance(minimum, int) and len(text) < minimum:
            text += "x" * (minimum - len(text))
        maximum = schema.get("maxLength")
        if isinstance(maximum, int):
            text = text[:maximum]
        return text
    if kind == "integer":
        return _number(schema, integral=True)
    if kind == "number":
        return _number(schema, integral=False)
    if kind == "boolean":
        return True
    return None


def example_input(input_schema: Mapping[str, Any]) -> dict[str, Any]:
    """A deterministic tool input that satisfies the schema's required properties, types and enums."""
    value = _example(input_schema, input_schema, 0)
    return value if isinstance(value, dict) else {}
