"""Deterministic tokenisation and input-token counting of the reference gateway (documented rules, not a BPE)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "IMAGE_TOKENS",
    "MESSAGE_OVERHEAD",
    "REQUEST_OVERHEAD",
    "canonical_json",
    "count_anthropic_input",
    "count_openai_input",
    "count_tokens",
    "split_tokens",
]

# A token is optional leading whitespace plus one word or one other character; a trailing run of whitespace
# is a token of its own. The pieces therefore concatenate back to the text exactly.
_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")

REQUEST_OVERHEAD = 3
MESSAGE_OVERHEAD = 3
IMAGE_TOKENS = 85
# Binary documents (base64 PDF, url, file id) are opaque to the gateway, so they cost a flat amount.
OPAQUE_DOCUMENT_TOKENS = 100


def split_tokens(text: str) -> list[str]:
    """The text as tokens; `"".join(split_tokens(t)) == t` always."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    """How many tokens `split_tokens` yields for the text."""
    return len(_TOKEN.findall(text))


def canonical_json(value: object) -> str:
    """Sorted keys, no spaces, no ASCII escaping: the form whose tokens are counted for structured values."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _without_cache_control(value: Mapping[str, Any]) -> dict[str, Any]:
    return {key: item for key, item in value.items() if key != "cache_control"}


def _block_tokens(block: object) -> int:
    if isinstance(block, str):
        return count_tokens(block)
    if not isinstance(block, Mapping):
        return count_tokens(canonical_json(block))
    kind = block.get("type")
    if kind == "text":
        return count_tokens(str(block.get("text", "")))
    if kind in ("thinking", "redacted_thinking"):
        # Like the real API, earlier turns' thinking is not part of the context the model reads.
        return 0
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "tool_use":
        return count_tokens(str(block.get("name", ""))) + count_tokens(canonical_json(block.get("input", {})))
    if kind == "tool_result":
        return _content_tokens(block.get("content", ""))
    if kind == "document":
        source = block.get("source")
        if isinstance(source, Mapping) and source.get("type") == "text":
            return count_tokens(str(source.get("data", "")))
        if isinstance(source, Mapping) and source.get("type") == "content":
            return _content_tokens(source.get("content", ""))
        return OPAQUE_DOCUMENT_TOKENS
    return count_tokens(canonical_json(_without_cache_control(block)))


def _content_tokens(content: object) -> int:
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, Sequence):
        return sum(_block_tokens(block) for block in content)
    return 0


def _tools_tokens(tools: object) -> int:
    if not isinstance(tools, Sequence):
        return 0
    return sum(
        count_tokens(canonical_json(_without_cache_control(tool) if isinstance(tool, Mapping) else tool))
        for tool in tools
    )


def count_anthropic_input(body: Mapping[str, Any]) -> int:
    """input_tokens of a Messages or count_tokens request: system + messages + tools, by the documented rule."""
    total = REQUEST_OVERHEAD + _content_tokens(body.get("system") or "")
    messages = body.get("messages")
    if isinstance(messages, Sequence):
        for message in messages:
            if isinstance(message, Mapping):
                total += MESSAGE_OVERHEAD + _content_tokens(message.get("content", ""))
    return total + _tools_tokens(body.get("tools"))


def _openai_part_tokens(part: object) -> int:
    if isinstance(part, Mapping):
        kind = part.get("type")
        if kind == "text":
            return count_tokens(str(part.get("text", "")))
        if kind in ("image_url", "input_image"):
            return IMAGE_TOKENS
        return count_tokens(canonical_json(part))
    return count_tokens(str(part))


def count_openai_input(body: Mapping[str, Any]) -> int:
    """prompt_tokens of a chat completion request: messages (content, tool calls) + tools, same rule as Anthropic."""
    total = REQUEST_OVERHEAD
    messages = body.get("messages")
    if isinstance(messages, Sequence):
        for message in messages:
            if not isinstance(message, Mapping):
                continue
            total += MESSAGE_OVERHEAD
            content = message.get("content")
            if isinstance(content, str):
                total += count_tokens(content)
            elif isinstance(content, Sequence):
                total += sum(_openai_part_tokens(part) for part in content)
            for call in message.get("tool_calls") or ():
                function = call.get("function", {}) if isinstance(call, Mapping) else {}
                total += count_tokens(str(function.get("name", ""))) + count_tokens(str(function.get("arguments", "")))
    return total + _tools_tokens(body.get("tools"))
