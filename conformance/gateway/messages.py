"""The Anthropic Messages surface: request -> Prompt, Reply -> Message JSON or SSE frames (protocol.md 2-3)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from conformance.gateway.model import Prompt, Reply, TextBlock, ThinkingBlock, ToolSpec, ToolUseBlock

__all__ = [
    "FINAL",
    "IMMEDIATE",
    "TOKEN",
    "Frame",
    "StreamStyle",
    "message_json",
    "prompt_from_request",
    "stream_frames",
]

# When a frame may go out: at once; at its token's slot t0 + ttft + i * itl; or, for the frame that ends the
# reply, no earlier than t0 + ttft (so an empty reply still takes its time to first token).
IMMEDIATE, TOKEN, FINAL = 0, 1, 2
Frame = tuple[bytes, int]


# One encoder, built once: json.dumps with non-default options builds a new encoder on every call.
dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
quote: Callable[[str], str] = json.encoder.encode_basestring  # a JSON string literal, in C


def text_of(content: object) -> str | None:
    """The text of a message content: the string itself, or its text blocks joined; None without text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(block.get("text", ""))
            for block in content
            if isinstance(block, Mapping) and block.get("type") == "text"
        ]
        return "\n".join(texts) if texts else None
    return None


def prompt_from_request(body: Mapping[str, Any], *, drop_stop_sequences: bool = False) -> Prompt:
    """What the model reads from a validated /v1/messages body."""
    messages = body["messages"]
    prefill = ""
    if messages and messages[-1].get("role") == "assistant":
        prefill = text_of(messages[-1].get("content")) or ""
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    tools = tuple(
        ToolSpec(str(tool["name"]), tool["input_schema"])
        for tool in body.get("tools") or ()
        if isinstance(tool, Mapping) and isinstance(tool.get("input_schema"), Mapping) and "name" in tool
    )
    choice = body.get("tool_choice")
    mode: Literal["auto", "any", "tool", "none"] = "auto" if tools else "none"
    tool_name = None
    if isinstance(choice, Mapping) and choice.get("type") in ("auto", "any", "tool", "none"):
        mode = choice["type"]
        tool_name = choice.get("name")
    thinking = body.get("thinking")
    thinking_mode: Literal["off", "shown", "omitted"] = "off"
    if isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive"):
        thinking_mode = "omitted" if thinking.get("display") == "omitted" else "shown"
    return Prompt(
        last_user_text=text_of(last_user.get("content")) if last_user else None,
        prefill=prefill,
        tools=tools,
        tool_mode=mode,
        tool_name=tool_name,
        thinking=thinking_mode,
        max_tokens=int(body["max_tokens"]),
        stop_sequences=() if drop_stop_sequences else tuple(body.get("stop_sequences") or ()),
    )


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _block_json(block: TextBlock | ThinkingBlock | ToolUseBlock) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ThinkingBlock):
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}


def message_json(reply: Reply, *, message_id: str, model: str, input_tokens: int) -> dict[str, Any]:
    """The non-streaming Message object, with every key the API sends."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [_block_json(block) for block in reply.blocks],
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "stop_details": None,
        "container": None,
        "usage": _usage(input_tokens, reply.output_tokens),
    }


@dataclass(frozen=True, slots=True)
class StreamStyle:
    """How the stream is framed: conformant by default, or bent by the active faults."""

    data_only: bool = False
    ending: Literal["stop", "none", "done", "stop+done"] = "stop"
    delta_usage: Literal["full", "none", "output-only"] = "full"
    start_input_zero: bool = False
    index_offset: int = 0
    empty_data_event: bool = False


_PING = '{"type": "ping"}'


def stream_frames(
    reply: Reply, *, message_id: str, model: str, input_tokens: int, style: StreamStyle = StreamStyle()
) -> list[Frame]:
    """Every SSE frame of the streamed reply, in order (protocol.md 3.1-3.5)."""
    if style.data_only:

        def frame(name: str, payload: str) -> bytes:
            return f"data: {payload}\n\n".encode()
    else:

        def frame(name: str, payload: str) -> bytes:
            return f"event: {name}\ndata: {payload}\n\n".encode()

    start_message: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "stop_details": None,
        "container": None,
        "usage": _usage(0 if style.start_input_zero else input_tokens, 1),
    }
    frames: list[Frame] = [
        (frame("message_start", dumps({"type": "message_start", "message": start_message})), IMMEDIATE)
    ]
    if not reply.blocks:
        frames.append((frame("ping", _PING), IMMEDIATE))
        if style.empty_data_event:
            frames.append((b"event: ping\n\n", IMMEDIATE))

    for position, block in enumerate(reply.blocks):
        index = position + style.index_offset
        head = f'{{"type":"content_block_delta","index":{index},"delta":'
        if isinstance(block, TextBlock):
            opening: dict[str, Any] = {"type": "text", "text": ""}
        elif isinstance(block, ThinkingBlock):
            opening = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            opening = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
        start = {"type": "content_block_start", "index": index, "content_block": opening}
        frames.append((frame("content_block_start", dumps(start)), IMMEDIATE))
        if position == 0:
            frames.append((frame("ping", _PING), IMMEDIATE))
            if style.empty_data_event:
                frames.append((b"event: content_block_delta\n\n", IMMEDIATE))
        if isinstance(block, TextBlock):
            frames.extend(
                (frame("content_block_delta", f'{head}{{"type":"text_delta","text":{quote(piece)}}}}}'), TOKEN)
                for piece in block.pieces
            )
        elif isinstance(block, ThinkingBlock):
            if block.thinking:
                frames.extend(
                    (
                        frame("content_block_delta", f'{head}{{"type":"thinking_delta","thinking":{quote(piece)}}}}}'),
                        TOKEN,
                    )
                    for piece in block.pieces
                )
            signature = f'{head}{{"type":"signature_delta","signature":{dumps(block.signature)}}}}}'
            frames.append((frame("content_block_delta", signature), IMMEDIATE))
        else:
            frames.append(
                (frame("content_block_delta", f'{head}{{"type":"input_json_delta","partial_json":""}}}}'), IMMEDIATE)
            )
            frames.extend(
                (
                    frame(
                        "content_block_delta", f'{head}{{"type":"input_json_delta","partial_json":{quote(piece)}}}}}'
                    ),
                    TOKEN,
                )
                for piece in block.pieces
            )
        frames.append((frame("content_block_stop", f'{{"type":"content_block_stop","index":{index}}}'), IMMEDIATE))

    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
    }
    if style.delta_usage == "full":
        delta["usage"] = {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": reply.output_tokens,
        }
    elif style.delta_usage == "output-only":
        delta["usage"] = {"output_tokens": reply.output_tokens}
    frames.append((frame("message_delta", dumps(delta)), FINAL))
    if style.ending in ("stop", "stop+done"):
        frames.append((frame("message_stop", '{"type":"message_stop"}'), IMMEDIATE))
    if style.ending in ("done", "stop+done"):
        frames.append((b"data: [DONE]\n\n", IMMEDIATE))
    return frames
