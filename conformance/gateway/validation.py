"""Request validation: the project's schemas first, then the cross-field rules a schema cannot express."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conformance.gateway.model import Signer
from conformance.schemas import validator

__all__ = [
    "RequestRejected",
    "check_anthropic_request",
    "check_openai_request",
]


class RequestRejected(Exception):
    """A request the API would refuse: HTTP status, message naming the field, and (OpenAI) the param and code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after


def _schema_errors(schema_name: str, body: object) -> None:
    checker = validator(schema_name)
    if checker.is_valid(body):
        return
    errors = checker.errors(body)
    first = errors[0] if errors else None
    if first is None:  # pragma: no cover - is_valid and errors disagree only if the engine is broken
        raise RequestRejected(400, "Invalid request")
    raise RequestRejected(400, first.describe(), param=first.path or None)


def _blocks(content: object) -> Sequence[Mapping[str, Any]]:
    if isinstance(content, list):
        return [block for block in content if isinstance(block, Mapping)]
    return ()


def _turns(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[int]]]:
    """Consecutive same-role messages grouped into turns, as the API merges them: (role, message indices)."""
    turns: list[tuple[str, list[int]]] = []
    for index, message in enumerate(messages):
        role = str(message.get("role"))
        if turns and turns[-1][0] == role:
            turns[-1][1].append(index)
        else:
            turns.append((role, [index]))
    return turns


def _check_tools(body: Mapping[str, Any]) -> set[str]:
    tools = body.get("tools") or []
    names: set[str] = set()
    for index, tool in enumerate(tools):
        name = tool.get("name") if isinstance(tool, Mapping) else None
        if isinstance(name, str):
            if name in names:
                raise RequestRejected(400, f"tools.{index}.name: Tool names must be unique: {name!r} is repeated")
            names.add(name)
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping):
        kind = choice.get("type")
        if kind in ("any", "tool") and not tools:
            raise RequestRejected(
                400, f"tool_choice: tool_choice.type {kind!r} may only be specified while providing tools"
            )
        if kind == "tool" and choice.get("name") not in names:
            raise RequestRejected(400, f"tool_choice.name: Tool {choice.get('name')!r} not found in the provided tools")
        thinking = body.get("thinking")
        if (
            kind in ("any", "tool")
            and isinstance(thinking, Mapping)
            and thinking.get("type") in ("enabled", "adaptive")
        ):
            raise RequestRejected(400, "tool_choice: Thinking may not be enabled when tool_choice forces tool use.")
    return names


def _check_messages(messages: Sequence[Mapping[str, Any]], signer: Signer) -> None:
    last = len(messages) - 1
    for index, message in enumerate(messages):
        content = message.get("content")
        if content in ("", []) and not (index == last and message.get("role") == "assistant"):
            raise RequestRejected(
                400,
                f"messages.{index}: all messages must have non-empty content "
                "except for the optional final assistant message",
            )
        if message.get("role") == "assistant":
            for position, block in enumerate(_blocks(content)):
                if block.get("type") == "thinking":
                    thinking, signature = block.get("thinking"), block.get("signature")
                    if not (
                        isinstance(thinking, str) and isinstance(signature, str) and signer.verify(thinking, signature)
                    ):
                        raise RequestRejected(
                            400, f"messages.{index}.content.{position}: Invalid signature in thinking block"
                        )
    final = messages[last] if messages else None
    if final is not None and final.get("role") == "assistant":
        content = final.get("content")
        text = content if isinstance(content, str) else ""
        blocks = _blocks(content)
        if blocks and blocks[-1].get("type") == "text":
            text = str(blocks[-1].get("text", ""))
        if text and text != text.rstrip():
            raise RequestRejected(400, "messages: final assistant content cannot end with trailing whitespace")

    turns = _turns(messages)
    for turn_index, (role, indices) in enumerate(turns):
        if role != "assistant":
            continue
        uses = [
            str(block.get("id"))
            for index in indices
            for block in _blocks(messages[index].get("content"))
            if block.get("type") == "tool_use"
        ]
        if not uses or turn_index + 1 >= len(turns):
            continue
        next_role, next_indices = turns[turn_index + 1]
        answered = {
            str(block.get("tool_use_id"))
            for index in next_indices
            for block in _blocks(messages[index].get("content"))
            if block.get("type") == "tool_result"
        }
        missing = [tool_id for tool_id in uses if tool_id not in answered]
        if next_role == "user" and missing:
            raise RequestRejected(
                400,
                f"messages.{next_indices[0]}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` "
                "block in the next message.",
            )
    for turn_index, (role, indices) in enumerate(turns):
        if role != "user":
            continue
        previous = turns[turn_index - 1] if turn_index > 0 else None
        offered = (
            {
                str(block.get("id"))
                for index in previous[1]
                for block in _blocks(messages[index].get("content"))
                if block.get("type") == "tool_use"
            }
            if previous is not None and previous[0] == "assistant"
            else set()
        )
        for index in indices:
            for position, block in enumerate(_blocks(messages[index].get("content"))):
                if block.get("type") == "tool_result" and str(block.get("tool_use_id")) not in offered:
                    raise RequestRejected(
                        400,
                        f"messages.{index}.content.{position}: unexpected `tool_use_id` found in `tool_result` "
                        f"blocks: {block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message.",
                    )


def check_anthropic_request(
    body: object, *, schema_name: str, known_models: frozenset[str], signer: Signer
) -> Mapping[str, Any]:
    """The body of a valid /v1/messages or count_tokens request, or RequestRejected (400, or 404 for the model)."""
    _schema_errors(schema_name, body)
    assert isinstance(body, Mapping)  # the schema requires an object
    model = body["model"]
    if model not in known_models:
        raise RequestRejected(404, f"model: {model}")
    thinking = body.get("thinking")
    if (
        isinstance(thinking, Mapping)
        and thinking.get("type") == "enabled"
        and "max_tokens" in body
        and thinking.get("budget_tokens", 0) >= body["max_tokens"]
    ):
        raise RequestRejected(
            400,
            "max_tokens: `max_tokens` must be greater than `thinking.budget_tokens` "
            f"(got max_tokens={body['max_tokens']}, budget_tokens={thinking.get('budget_tokens')})",
        )
    _check_tools(body)
    _check_messages(body["messages"], signer)
    return body


def _openai_turn_checks(messages: Sequence[Mapping[str, Any]]) -> None:
    offered: set[str] = set()
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "assistant":
            offered = {
                str(call.get("id"))
                for call in message.get("tool_calls") or ()
                if isinstance(call, Mapping) and call.get("id") is not None
            }
        elif role == "tool":
            if str(message.get("tool_call_id")) not in offered:
                raise RequestRejected(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                    "with 'tool_calls'.",
                    param=f"messages.[{index}].role",
                )
        else:
            offered = set()


def check_openai_request(body: object, *, known_models: frozenset[str]) -> Mapping[str, Any]:
    """The body of a valid chat completion request, or RequestRejected with the OpenAI param and code."""
    _schema_errors("openai/chat-completion-request", body)
    assert isinstance(body, Mapping)
    model = body["model"]
    if model not in known_models:
        raise RequestRejected(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    if body.get("stream_options") is not None and not body.get("stream"):
        raise RequestRejected(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    if body.get("n") not in (None, 1):
        raise RequestRejected(400, "n: the reference gateway generates exactly one choice (n must be 1)", param="n")
    tools = body.get("tools") or []
    names = {
        str(tool.get("function", {}).get("name"))
        for tool in tools
        if isinstance(tool, Mapping) and isinstance(tool.get("function"), Mapping)
    }
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        name = choice["function"].get("name")
        if name not in names:
            raise RequestRejected(
                400,
                f"Invalid value for 'tool_choice': tool '{name}' is not one of the provided tools.",
                param="tool_choice",
            )
    elif choice == "required" and not tools:
        raise RequestRejected(
            400,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            param="tool_choice",
        )
    _openai_turn_checks(body["messages"])
    return body
