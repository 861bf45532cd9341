"""The OpenAI Chat Completions surface: request -> Prompt, Reply -> chat.completion or chunk frames (protocol.md 6)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from conformance.gateway.messages import FINAL, IMMEDIATE, TOKEN, Frame, dumps, quote, text_of
from conformance.gateway.model import Prompt, Reply, TextBlock, ToolSpec, ToolUseBlock

__all__ = ["chunk_frames", "completion_json", "prompt_from_chat"]

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def prompt_from_chat(body: Mapping[str, Any], *, drop_stop_sequences: bool = False) -> Prompt:
    """What the model reads from a validated chat completion body."""
    messages = body["messages"]
    prefill = ""
    if messages and messages[-1].get("role") == "assistant":
        prefill = text_of(messages[-1].get("content")) or ""
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    tools = tuple(
        ToolSpec(str(tool["function"]["name"]), tool["function"].get("parameters") or {"type": "object"})
        for tool in body.get("tools") or ()
        if isinstance(tool, Mapping) and isinstance(tool.get("function"), Mapping) and "name" in tool["function"]
    )
    choice = body.get("tool_choice")
    mode: Literal["auto", "any", "tool", "none"] = "auto" if tools else "none"
    tool_name = None
    if choice in ("none", "auto"):
        mode = "none" if choice == "none" else mode
    elif choice == "required":
        mode = "any"
    elif isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        mode, tool_name = "tool", choice["function"].get("name")
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    stop = body.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    return Prompt(
        last_user_text=text_of(last_user.get("content")) if last_user else None,
        prefill=prefill,
        tools=tools,
        tool_mode=mode,
        tool_name=tool_name,
        max_tokens=int(limit) if limit else None,
        stop_sequences=() if drop_stop_sequences else stops,
    )


def _call_id(block: ToolUseBlock) -> str:
    return "call_" + block.id.removeprefix("toolu_")


def _usage(prompt_tokens: int, reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": prompt_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_json(
    reply: Reply, *, completion_id: str, created: int, model: str, prompt_tokens: int
) -> dict[str, Any]:
    """The non-streaming chat.completion object."""
    text = "".join(block.text for block in reply.blocks if isinstance(block, TextBlock))
    calls = [
        {
            "id": _call_id(block),
            "type": "function",
            "function": {"name": block.name, "arguments": "".join(block.pieces)},
        }
        for block in reply.blocks
        if isinstance(block, ToolUseBlock)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _FINISH[reply.stop_reason]}],
        "usage": _usage(prompt_tokens, reply),
        "service_tier": "default",
        "system_fingerprint": None,
    }


def chunk_frames(
    reply: Reply,
    *,
    completion_id: str,
    created: int,
    model: str,
    prompt_tokens: int,
    include_usage: bool,
    done: bool = True,
) -> list[Frame]:
    """Every `data:` frame of the streamed completion, ending with `data: [DONE]` (protocol.md 6.3-6.4)."""
    usage_field = ',"usage":null' if include_usage else ""
    head = (
        f'data: {{"id":{dumps(completion_id)},"object":"chat.completion.chunk","created":{created},'
        f'"model":{dumps(model)},"system_fingerprint":null,"choices":[{{"index":0,"delta":'
    )

    def chunk(delta: str, finish: str = "null") -> bytes:
        return f'{head}{delta},"logprobs":null,"finish_reason":{finish}}}]{usage_field}}}\n\n'.encode()

    frames: list[Frame] = [(chunk('{"role":"assistant","content":"","refusal":null}'), IMMEDIATE)]
    call_index = 0
    for block in reply.blocks:
        if isinstance(block, TextBlock):
            frames.extend((chunk(f'{{"content":{quote(piece)}}}'), TOKEN) for piece in block.pieces)
        elif isinstance(block, ToolUseBlock):
            opening = {
                "tool_calls": [
                    {
                        "index": call_index,
                        "id": _call_id(block),
                        "type": "function",
                        "function": {"name": block.name, "arguments": ""},
                    }
                ]
            }
            frames.append((chunk(dumps(opening)), IMMEDIATE))
            frames.extend(
                (
                    chunk(f'{{"tool_calls":[{{"index":{call_index},"function":{{"arguments":{quote(piece)}}}}}]}}'),
                    TOKEN,
                )
                for piece in block.pieces
            )
            call_index += 1
    frames.append((chunk("{}", dumps(_FINISH[reply.stop_reason])), FINAL))
    if include_usage:
        usage = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [],
            "usage": _usage(prompt_tokens, reply),
        }
        frames.append((f"data: {dumps(usage)}\n\n".encode(), IMMEDIATE))
    if done:
        frames.append((b"data: [DONE]\n\n", IMMEDIATE))
    return frames
