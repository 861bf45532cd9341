"""Selftests for schemas/ and conformance.schemas: examples pass, mutations fail, both engines agree."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import pytest
import referencing
import referencing.exceptions

from conformance import schemas

EXAMPLES = Path(__file__).parent / "schema_examples"

REQUIRED_NAMES = (
    "anthropic/messages-request",
    "anthropic/message",
    "anthropic/stream-event",
    "anthropic/error",
    "anthropic/count-tokens-request",
    "anthropic/count-tokens-response",
    "anthropic/models-list",
    "anthropic/model",
    "openai/chat-completion-request",
    "openai/chat-completion",
    "openai/chat-completion-chunk",
    "openai/error",
)
CLOSED_REQUESTS = (
    "anthropic/messages-request",
    "anthropic/count-tokens-request",
    "openai/chat-completion-request",
)


# ---------------------------------------------------------------------------------------------- fixtures as data


def _load_examples(kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    root = EXAMPLES / kind
    for path in sorted(root.rglob("*.json")):
        name = path.relative_to(root).with_suffix("").as_posix()
        found[name] = json.loads(path.read_text(encoding="utf-8"))
    return found


VALID = _load_examples("valid")
INVALID = _load_examples("invalid")


def _sse_payloads(path: Path) -> list[tuple[str, Any]]:
    """(event name, parsed data) for every frame of a recorded transcript; a deliberately tiny parser."""
    frames = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        lines = [line for line in block.splitlines() if line]
        if not lines:
            continue
        event = next(line[len("event: ") :] for line in lines if line.startswith("event: "))
        data = "\n".join(line[len("data: ") :] for line in lines if line.startswith("data: "))
        frames.append((event, json.loads(data)))
    return frames


STREAMS = sorted((EXAMPLES / "streams").glob("*.sse"))


@dataclass(frozen=True)
class Case:
    """One instance to validate against one schema, with the path an error must name when invalid."""

    schema: str
    case_id: str
    instance: Any
    valid: bool
    path: str | None = None
    exact: bool = True  # False: an error at or below `path` will do

    @property
    def id(self) -> str:
        return f"{self.schema}:{self.case_id}"


def _valid_cases() -> Iterator[Case]:
    for name, examples in VALID.items():
        for example_id, instance in examples.items():
            yield Case(name, example_id, instance, valid=True)
    for stream in STREAMS:
        for index, (event, payload) in enumerate(_sse_payloads(stream)):
            yield Case("anthropic/stream-event", f"{stream.stem}[{index}]:{event}", payload, valid=True)


VALID_CASES = list(_valid_cases())


# ------------------------------------------------------------------------------------------------------ mutations

_DELETE = object()


def _parts(path: str) -> list[str | int]:
    return [int(part) if part.isdigit() else part for part in path.split(".")]


def _apply(instance: Any, changes: dict[str, Any]) -> Any:
    """A deep copy with each dotted path set to a value (or removed, for _DELETE)."""
    result = copy.deepcopy(instance)
    for path, value in changes.items():
        *parents, leaf = _parts(path)
        node = result
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[leaf]
        elif isinstance(node, list) and isinstance(leaf, int) and leaf == len(node):
            node.append(value)
        else:
            node[leaf] = value
    return result


@dataclass(frozen=True)
class Mutation:
    """A targeted change to a valid example that the schema must reject, at `path`."""

    schema: str
    base: str
    mutation_id: str
    changes: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def case(self) -> Case:
        instance = _apply(VALID[self.schema][self.base], self.changes)
        return Case(self.schema, f"{self.base}/{self.mutation_id}", instance, valid=False, path=self.path)


def _req(base: str, mutation_id: str, changes: dict[str, Any], path: str) -> Mutation:
    return Mutation("anthropic/messages-request", base, mutation_id, changes, path)


BAD_TEXT_BLOCK = {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}, "role": "user"}

TARGETED: list[Mutation] = [
    # --- anthropic/messages-request: numbers, enums, strings (protocol.md 1.2 and 8's probes)
    _req("minimal", "temperature-1.5", {"temperature": 1.5}, "temperature"),
    _req("minimal", "temperature-negative", {"temperature": -0.1}, "temperature"),
    _req("minimal", "temperature-string", {"temperature": "0.5"}, "temperature"),
    _req("minimal", "top-p-2", {"top_p": 2}, "top_p"),
    _req("minimal", "top-k-minus-1", {"top_k": -1}, "top_k"),
    _req("minimal", "top-k-fraction", {"top_k": 1.5}, "top_k"),
    _req("minimal", "max-tokens-negative", {"max_tokens": -1}, "max_tokens"),
    _req("minimal", "max-tokens-fraction", {"max_tokens": 1.5}, "max_tokens"),
    _req("minimal", "max-tokens-string", {"max_tokens": "100"}, "max_tokens"),
    _req("minimal", "model-empty", {"model": ""}, "model"),
    _req("minimal", "model-257-chars", {"model": "m" * 257}, "model"),
    _req("minimal", "messages-empty", {"messages": []}, "messages"),
    _req("minimal", "role-tool", {"messages.0.role": "tool"}, "messages.0.role"),
    _req("minimal", "role-missing", {"messages.0.role": _DELETE}, "messages.0.role"),
    _req("minimal", "content-missing", {"messages.0.content": _DELETE}, "messages.0.content"),
    _req("minimal", "content-number", {"messages.0.content": 42}, "messages.0.content"),
    _req(
        "minimal",
        "content-single-block-object",
        {"messages.0.content": {"type": "text", "text": "x"}},
        "messages.0.content",
    ),
    _req("minimal", "message-extra-field", {"messages.0.name": "bob"}, "messages.0.name"),
    _req("minimal", "service-tier-priority", {"service_tier": "priority"}, "service_tier"),
    _req("minimal", "stop-sequences-string", {"stop_sequences": "END"}, "stop_sequences"),
    _req("minimal", "stop-sequences-number", {"stop_sequences": [1]}, "stop_sequences.0"),
    _req("minimal", "stream-string", {"stream": "true"}, "stream"),
    _req("minimal", "metadata-user-id-257", {"metadata": {"user_id": "u" * 257}}, "metadata.user_id"),
    _req("minimal", "metadata-extra-field", {"metadata": {"session": "s"}}, "metadata.session"),
    _req("minimal", "openai-max-completion-tokens", {"max_completion_tokens": 5}, "max_completion_tokens"),
    _req("minimal", "openai-n", {"n": 1}, "n"),
    _req("minimal", "cache-control-persistent", {"cache_control": {"type": "persistent"}}, "cache_control.type"),
    _req(
        "minimal", "cache-control-ttl-10m", {"cache_control": {"type": "ephemeral", "ttl": "10m"}}, "cache_control.ttl"
    ),
    _req(
        "minimal", "cache-control-extra", {"cache_control": {"type": "ephemeral", "scope": "x"}}, "cache_control.scope"
    ),
    _req("minimal", "mcp-servers-21", {"mcp_servers": [{"type": "url", "url": "u", "name": "n"}] * 21}, "mcp_servers"),
    _req("minimal", "output-config-effort", {"output_config": {"effort": "extreme"}}, "output_config.effort"),
    _req(
        "minimal",
        "output-config-json-object",
        {"output_config": {"format": {"type": "json_object", "schema": {}}}},
        "output_config.format.type",
    ),
    _req("minimal", "output-config-extra", {"output_config": {"verbosity": "low"}}, "output_config.verbosity"),
    # --- content blocks (1.3, 1.4)
    _req(
        "streaming-multi-turn-prefill",
        "empty-text-block",
        {"messages.2.content.0.text": ""},
        "messages.2.content.0.text",
    ),
    _req(
        "streaming-multi-turn-prefill",
        "text-block-number",
        {"messages.2.content.0.text": 7},
        "messages.2.content.0.text",
    ),
    _req(
        "streaming-multi-turn-prefill",
        "text-block-extra",
        {"messages.2.content.0": BAD_TEXT_BLOCK},
        "messages.2.content.0.role",
    ),
    _req(
        "streaming-multi-turn-prefill",
        "block-type-unknown",
        {"messages.2.content.0.type": "input_text"},
        "messages.2.content.0.type",
    ),
    _req(
        "streaming-multi-turn-prefill",
        "block-type-missing",
        {"messages.2.content.0.type": _DELETE},
        "messages.2.content.0.type",
    ),
    _req("every-top-level-field", "system-empty-text", {"system.0.text": ""}, "system.0.text"),
    _req(
        "every-top-level-field",
        "system-image-block",
        {"system.0": {"type": "image", "source": {"type": "url", "url": "u"}}},
        "system.0.type",
    ),
    _req(
        "image-blocks",
        "image-bmp",
        {"messages.0.content.0.source.media_type": "image/bmp"},
        "messages.0.content.0.source.media_type",
    ),
    _req(
        "image-blocks",
        "image-source-path",
        {"messages.0.content.0.source.type": "path"},
        "messages.0.content.0.source.type",
    ),
    _req(
        "image-blocks",
        "image-base64-no-data",
        {"messages.0.content.0.source.data": _DELETE},
        "messages.0.content.0.source.data",
    ),
    _req(
        "image-blocks",
        "image-url-no-url",
        {"messages.0.content.4.source.url": _DELETE},
        "messages.0.content.4.source.url",
    ),
    _req("image-blocks", "image-no-source", {"messages.0.content.0.source": _DELETE}, "messages.0.content.0.source"),
    _req(
        "document-blocks",
        "pdf-wrong-media-type",
        {"messages.0.content.0.source.media_type": "text/plain"},
        "messages.0.content.0.source.media_type",
    ),
    _req("document-blocks", "title-empty", {"messages.0.content.0.title": ""}, "messages.0.content.0.title"),
    _req("document-blocks", "title-501", {"messages.0.content.0.title": "t" * 501}, "messages.0.content.0.title"),
    _req(
        "document-blocks",
        "citations-extra",
        {"messages.0.content.0.citations": {"enabled": True, "x": 1}},
        "messages.0.content.0.citations.x",
    ),
    _req(
        "document-blocks",
        "content-source-bad-block",
        {"messages.0.content.3.source.content.0.text": ""},
        "messages.0.content.3.source.content.0.text",
    ),
    _req(
        "search-result-block",
        "search-result-no-title",
        {"messages.0.content.0.title": _DELETE},
        "messages.0.content.0.title",
    ),
    _req(
        "thinking-enabled-round-trip",
        "thinking-no-signature",
        {"messages.1.content.0.signature": _DELETE},
        "messages.1.content.0.signature",
    ),
    _req(
        "thinking-enabled-round-trip",
        "redacted-no-data",
        {"messages.1.content.1.data": _DELETE},
        "messages.1.content.1.data",
    ),
    _req(
        "tool-use-round-trip", "tool-use-id-space", {"messages.1.content.1.id": "toolu 01"}, "messages.1.content.1.id"
    ),
    _req("tool-use-round-trip", "tool-use-name-empty", {"messages.1.content.1.name": ""}, "messages.1.content.1.name"),
    _req(
        "tool-use-round-trip",
        "tool-use-name-201",
        {"messages.1.content.1.name": "n" * 201},
        "messages.1.content.1.name",
    ),
    _req(
        "tool-use-round-trip",
        "tool-use-input-string",
        {"messages.1.content.1.input": "{}"},
        "messages.1.content.1.input",
    ),
    _req(
        "tool-use-round-trip",
        "tool-use-no-input",
        {"messages.1.content.1.input": _DELETE},
        "messages.1.content.1.input",
    ),
    _req(
        "tool-use-round-trip",
        "tool-result-id-colon",
        {"messages.2.content.0.tool_use_id": "call:1"},
        "messages.2.content.0.tool_use_id",
    ),
    _req(
        "tool-use-round-trip",
        "tool-result-is-error-string",
        {"messages.2.content.0.is_error": "yes"},
        "messages.2.content.0.is_error",
    ),
    _req(
        "tool-use-round-trip",
        "tool-result-content-number",
        {"messages.2.content.0.content": 15},
        "messages.2.content.0.content",
    ),
    _req(
        "tool-use-round-trip",
        "tool-result-thinking-inside",
        {"messages.2.content.1.content.0": {"type": "thinking", "thinking": "x", "signature": "s"}},
        "messages.2.content.1.content.0.type",
    ),
    _req(
        "tool-use-round-trip",
        "tool-result-empty-text",
        {"messages.2.content.1.content.0.text": ""},
        "messages.2.content.1.content.0.text",
    ),
    _req(
        "server-tool-round-trip-blocks",
        "server-tool-use-client-id",
        {"messages.1.content.0.id": "toolu_01"},
        "messages.1.content.0.id",
    ),
    _req(
        "server-tool-round-trip-blocks",
        "server-result-no-content",
        {"messages.1.content.1.content": _DELETE},
        "messages.1.content.1.content",
    ),
    _req(
        "mid-conversation-system",
        "mid-conv-empty",
        {"messages.2.content.0.content": []},
        "messages.2.content.0.content",
    ),
    _req(
        "mid-conversation-system",
        "mid-conv-image",
        {"messages.2.content.0.content.0": {"type": "image", "source": {"type": "url", "url": "u"}}},
        "messages.2.content.0.content.0.type",
    ),
    # --- tools (1.5)
    _req("every-top-level-field", "tool-name-space", {"tools.0.name": "get weather"}, "tools.0.name"),
    _req("every-top-level-field", "tool-name-129", {"tools.0.name": "a" * 129}, "tools.0.name"),
    _req("every-top-level-field", "tool-name-dot", {"tools.0.name": "weather.get"}, "tools.0.name"),
    _req("every-top-level-field", "tool-no-input-schema", {"tools.0.input_schema": _DELETE}, "tools.0.input_schema"),
    _req(
        "every-top-level-field",
        "tool-input-schema-array",
        {"tools.0.input_schema.type": "array"},
        "tools.0.input_schema.type",
    ),
    _req(
        "every-top-level-field",
        "tool-input-schema-no-type",
        {"tools.0.input_schema.type": _DELETE},
        "tools.0.input_schema.type",
    ),
    _req("every-top-level-field", "tool-extra-field", {"tools.0.parameters": {}}, "tools.0.parameters"),
    _req(
        "every-top-level-field",
        "tool-openai-shape",
        {"tools.0": {"type": "function", "function": {"name": "f"}}},
        "tools.0.type",
    ),
    _req("server-tools", "server-tool-wrong-name", {"tools.9.name": "search"}, "tools.9.name"),
    _req("server-tools", "server-tool-no-name", {"tools.0.name": _DELETE}, "tools.0.name"),
    _req("server-tools", "server-tool-unknown-version", {"tools.0.type": "web_search_20990101"}, "tools.0.type"),
    # --- tool_choice, thinking
    _req("tool-choice-any-and-none", "tool-choice-required", {"tool_choice": {"type": "required"}}, "tool_choice.type"),
    _req("tool-choice-any-and-none", "tool-choice-string", {"tool_choice": "auto"}, "tool_choice"),
    _req("tool-choice-any-and-none", "tool-choice-tool-no-name", {"tool_choice": {"type": "tool"}}, "tool_choice.name"),
    _req(
        "tool-choice-any-and-none",
        "tool-choice-none-parallel",
        {"tool_choice": {"type": "none", "disable_parallel_tool_use": True}},
        "tool_choice.disable_parallel_tool_use",
    ),
    _req(
        "tool-choice-any-and-none",
        "tool-choice-parallel-string",
        {"tool_choice.disable_parallel_tool_use": "true"},
        "tool_choice.disable_parallel_tool_use",
    ),
    _req(
        "thinking-budget-minimum-and-display", "budget-1000", {"thinking.budget_tokens": 1000}, "thinking.budget_tokens"
    ),
    _req(
        "thinking-budget-minimum-and-display", "budget-1023", {"thinking.budget_tokens": 1023}, "thinking.budget_tokens"
    ),
    _req(
        "thinking-budget-minimum-and-display",
        "budget-missing",
        {"thinking.budget_tokens": _DELETE},
        "thinking.budget_tokens",
    ),
    _req("thinking-budget-minimum-and-display", "display-full", {"thinking.display": "full"}, "thinking.display"),
    _req("thinking-budget-minimum-and-display", "thinking-type-on", {"thinking": {"type": "on"}}, "thinking.type"),
    _req(
        "thinking-budget-minimum-and-display",
        "disabled-with-budget",
        {"thinking.type": "disabled"},
        "thinking.budget_tokens",
    ),
    # --- anthropic/count-tokens-request (5.1)
    Mutation("anthropic/count-tokens-request", "minimal", "max-tokens", {"max_tokens": 10}, "max_tokens"),
    Mutation("anthropic/count-tokens-request", "minimal", "stream", {"stream": True}, "stream"),
    Mutation("anthropic/count-tokens-request", "minimal", "temperature", {"temperature": 0.5}, "temperature"),
    Mutation(
        "anthropic/count-tokens-request",
        "with-system-tools-thinking",
        "budget-1000",
        {"thinking.budget_tokens": 1000},
        "thinking.budget_tokens",
    ),
    # --- anthropic/message (2)
    Mutation("anthropic/message", "text-end-turn", "content-string", {"content": "Hi! My name is Claude."}, "content"),
    Mutation("anthropic/message", "text-end-turn", "stop-reason-null", {"stop_reason": None}, "stop_reason"),
    Mutation("anthropic/message", "text-end-turn", "stop-reason-openai", {"stop_reason": "stop"}, "stop_reason"),
    Mutation("anthropic/message", "text-end-turn", "role-user", {"role": "user"}, "role"),
    Mutation("anthropic/message", "text-end-turn", "type-chat-completion", {"type": "chat.completion"}, "type"),
    Mutation("anthropic/message", "text-end-turn", "id-empty", {"id": ""}, "id"),
    Mutation(
        "anthropic/message", "text-end-turn", "usage-no-output", {"usage.output_tokens": _DELETE}, "usage.output_tokens"
    ),
    Mutation(
        "anthropic/message", "text-end-turn", "usage-no-input", {"usage.input_tokens": _DELETE}, "usage.input_tokens"
    ),
    Mutation("anthropic/message", "text-end-turn", "usage-negative", {"usage.input_tokens": -1}, "usage.input_tokens"),
    Mutation(
        "anthropic/message", "text-end-turn", "usage-fraction", {"usage.output_tokens": 1.5}, "usage.output_tokens"
    ),
    Mutation("anthropic/message", "text-end-turn", "text-missing", {"content.0.text": _DELETE}, "content.0.text"),
    Mutation("anthropic/message", "text-end-turn", "text-number", {"content.0.text": 1}, "content.0.text"),
    Mutation(
        "anthropic/message", "text-end-turn", "block-reasoning", {"content.0.type": "reasoning"}, "content.0.type"
    ),
    Mutation("anthropic/message", "text-end-turn", "block-no-type", {"content.0.type": _DELETE}, "content.0.type"),
    Mutation(
        "anthropic/message",
        "full-usage-and-nulls",
        "cache-read-string",
        {"usage.cache_read_input_tokens": "0"},
        "usage.cache_read_input_tokens",
    ),
    Mutation(
        "anthropic/message",
        "full-usage-and-nulls",
        "service-tier-flex",
        {"usage.service_tier": "flex"},
        "usage.service_tier",
    ),
    Mutation(
        "anthropic/message",
        "full-usage-and-nulls",
        "cache-creation-no-1h",
        {"usage.cache_creation.ephemeral_1h_input_tokens": _DELETE},
        "usage.cache_creation.ephemeral_1h_input_tokens",
    ),
    Mutation(
        "anthropic/message",
        "full-usage-and-nulls",
        "citations-object",
        {"content.0.citations": {}},
        "content.0.citations",
    ),
    Mutation(
        "anthropic/message",
        "full-usage-and-nulls",
        "container-no-id",
        {"container": {"expires_at": "x"}},
        "container.id",
    ),
    Mutation("anthropic/message", "tool-use", "tool-id-colon", {"content.1.id": "call:1"}, "content.1.id"),
    Mutation(
        "anthropic/message",
        "tool-use",
        "tool-input-string",
        {"content.1.input": '{"location": "SF"}'},
        "content.1.input",
    ),
    Mutation("anthropic/message", "tool-use", "tool-no-name", {"content.1.name": _DELETE}, "content.1.name"),
    Mutation(
        "anthropic/message",
        "thinking",
        "thinking-no-signature",
        {"content.0.signature": _DELETE},
        "content.0.signature",
    ),
    Mutation(
        "anthropic/message",
        "server-tools-and-citations",
        "server-id-toolu",
        {"content.0.id": "toolu_01"},
        "content.0.id",
    ),
    Mutation(
        "anthropic/message",
        "server-tools-and-citations",
        "citation-no-cited-text",
        {"content.8.citations.0.cited_text": _DELETE},
        "content.8.citations.0.cited_text",
    ),
    Mutation("anthropic/message", "refusal", "stop-details-string", {"stop_details": "refusal"}, "stop_details"),
    # --- anthropic/stream-event (beyond the hand-written invalid/ fixtures)
    Mutation(
        "anthropic/stream-event", "message-start-full-usage", "role-user", {"message.role": "user"}, "message.role"
    ),
    Mutation(
        "anthropic/stream-event",
        "message-start-full-usage",
        "stop-sequence-set",
        {"message.stop_sequence": "x"},
        "message.stop_sequence",
    ),
    Mutation(
        "anthropic/stream-event",
        "message-delta-3.5",
        "stop-sequence-number",
        {"delta.stop_sequence": 1},
        "delta.stop_sequence",
    ),
    Mutation(
        "anthropic/stream-event",
        "message-delta-usage-3.1",
        "input-negative",
        {"usage.input_tokens": -5},
        "usage.input_tokens",
    ),
    Mutation(
        "anthropic/stream-event", "start-tool-use", "input-string", {"content_block.input": ""}, "content_block.input"
    ),
    Mutation("anthropic/stream-event", "compaction-delta", "content-number", {"delta.content": 3}, "delta.content"),
    Mutation("anthropic/stream-event", "ping", "index-string", {"type": "content_block_stop", "index": "0"}, "index"),
    # --- anthropic/count-tokens-response, model, models-list (5)
    Mutation("anthropic/count-tokens-response", "basic", "negative", {"input_tokens": -1}, "input_tokens"),
    Mutation("anthropic/count-tokens-response", "basic", "fraction", {"input_tokens": 2.5}, "input_tokens"),
    Mutation("anthropic/model", "minimal", "type-models", {"type": "models"}, "type"),
    Mutation("anthropic/model", "minimal", "created-date-only", {"created_at": "2025-09-29"}, "created_at"),
    Mutation("anthropic/model", "minimal", "created-epoch-int", {"created_at": 1727568000}, "created_at"),
    Mutation("anthropic/model", "minimal", "created-words", {"created_at": "yesterday"}, "created_at"),
    Mutation("anthropic/model", "minimal", "created-month-13", {"created_at": "2025-13-01T00:00:00Z"}, "created_at"),
    Mutation("anthropic/model", "minimal", "created-no-zone", {"created_at": "2025-09-29T00:00:00"}, "created_at"),
    Mutation("anthropic/model", "minimal", "created-space", {"created_at": "2025-09-29 00:00:00Z"}, "created_at"),
    Mutation("anthropic/model", "minimal", "created-hour-24", {"created_at": "2025-09-29T24:00:00Z"}, "created_at"),
    Mutation("anthropic/model", "newer-fields", "max-tokens-negative", {"max_tokens": -1}, "max_tokens"),
    Mutation(
        "anthropic/models-list", "page", "item-no-display-name", {"data.0.display_name": _DELETE}, "data.0.display_name"
    ),
    Mutation(
        "anthropic/models-list",
        "page",
        "item-openai-model",
        {"data.0": {"id": "gpt-4o", "object": "model", "created": 1, "owned_by": "openai"}},
        "data.0.type",
    ),
    # --- openai/chat-completion-request (6.1)
    Mutation("openai/chat-completion-request", "minimal", "temperature-2.5", {"temperature": 2.5}, "temperature"),
    Mutation("openai/chat-completion-request", "minimal", "top-p-1.5", {"top_p": 1.5}, "top_p"),
    Mutation("openai/chat-completion-request", "minimal", "n-0", {"n": 0}, "n"),
    Mutation("openai/chat-completion-request", "minimal", "stop-5", {"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    Mutation(
        "openai/chat-completion-request", "minimal", "presence-minus-3", {"presence_penalty": -3}, "presence_penalty"
    ),
    Mutation("openai/chat-completion-request", "minimal", "frequency-3", {"frequency_penalty": 3}, "frequency_penalty"),
    Mutation(
        "openai/chat-completion-request",
        "minimal",
        "logit-bias-101",
        {"logit_bias": {"50256": 101}},
        "logit_bias.50256",
    ),
    Mutation("openai/chat-completion-request", "minimal", "top-logprobs-21", {"top_logprobs": 21}, "top_logprobs"),
    Mutation(
        "openai/chat-completion-request", "minimal", "role-model", {"messages.0.role": "model"}, "messages.0.role"
    ),
    Mutation(
        "openai/chat-completion-request",
        "minimal",
        "user-no-content",
        {"messages.0.content": _DELETE},
        "messages.0.content",
    ),
    Mutation(
        "openai/chat-completion-request",
        "minimal",
        "user-part-image",
        {"messages.0.content": [{"type": "image", "url": "u"}]},
        "messages.0.content.0.type",
    ),
    Mutation("openai/chat-completion-request", "minimal", "anthropic-top-k", {"top_k": 5}, "top_k"),
    Mutation("openai/chat-completion-request", "minimal", "messages-empty", {"messages": []}, "messages"),
    Mutation("openai/chat-completion-request", "minimal", "tool-choice-any", {"tool_choice": "any"}, "tool_choice"),
    Mutation(
        "openai/chat-completion-request",
        "minimal",
        "stream-options-extra",
        {"stream_options": {"include_usage": True, "x": 1}},
        "stream_options.x",
    ),
    Mutation(
        "openai/chat-completion-request",
        "minimal",
        "response-format-xml",
        {"response_format": {"type": "xml"}},
        "response_format.type",
    ),
    Mutation(
        "openai/chat-completion-request",
        "every-field",
        "tool-message-no-call-id",
        {"messages.3.tool_call_id": _DELETE},
        "messages.3.tool_call_id",
    ),
    Mutation(
        "openai/chat-completion-request",
        "every-field",
        "function-name-space",
        {"tools.0.function.name": "get weather"},
        "tools.0.function.name",
    ),
    Mutation(
        "openai/chat-completion-request",
        "every-field",
        "tool-anthropic-shape",
        {"tools.0": {"name": "f", "input_schema": {"type": "object"}}},
        "tools.0.type",
    ),
    Mutation(
        "openai/chat-completion-request",
        "every-field",
        "tool-call-no-arguments",
        {"messages.2.tool_calls.0.function.arguments": _DELETE},
        "messages.2.tool_calls.0.function.arguments",
    ),
    Mutation(
        "openai/chat-completion-request",
        "every-field",
        "image-url-no-url",
        {"messages.1.content.1.image_url": {}},
        "messages.1.content.1.image_url.url",
    ),
    # --- openai/chat-completion (6.2)
    Mutation("openai/chat-completion", "text", "object-chunk", {"object": "chat.completion.chunk"}, "object"),
    Mutation(
        "openai/chat-completion", "text", "finish-null", {"choices.0.finish_reason": None}, "choices.0.finish_reason"
    ),
    Mutation(
        "openai/chat-completion",
        "text",
        "finish-end-turn",
        {"choices.0.finish_reason": "end_turn"},
        "choices.0.finish_reason",
    ),
    Mutation("openai/chat-completion", "text", "usage-no-total", {"usage.total_tokens": _DELETE}, "usage.total_tokens"),
    Mutation(
        "openai/chat-completion", "text", "role-user", {"choices.0.message.role": "user"}, "choices.0.message.role"
    ),
    Mutation("openai/chat-completion", "text", "created-string", {"created": "1741569952"}, "created"),
    Mutation(
        "openai/chat-completion",
        "text",
        "content-array",
        {"choices.0.message.content": [{"type": "text", "text": "x"}]},
        "choices.0.message.content",
    ),
    Mutation(
        "openai/chat-completion",
        "tool-calls",
        "tool-call-no-id",
        {"choices.0.message.tool_calls.0.id": _DELETE},
        "choices.0.message.tool_calls.0.id",
    ),
    Mutation(
        "openai/chat-completion",
        "tool-calls",
        "arguments-object",
        {"choices.0.message.tool_calls.0.function.arguments": {"location": "Boston"}},
        "choices.0.message.tool_calls.0.function.arguments",
    ),
    # --- openai/chat-completion-chunk (6.3)
    Mutation("openai/chat-completion-chunk", "content", "object-completion", {"object": "chat.completion"}, "object"),
    Mutation(
        "openai/chat-completion-chunk",
        "finish",
        "finish-eos",
        {"choices.0.finish_reason": "eos"},
        "choices.0.finish_reason",
    ),
    Mutation("openai/chat-completion-chunk", "content", "no-delta", {"choices.0.delta": _DELETE}, "choices.0.delta"),
    Mutation(
        "openai/chat-completion-chunk",
        "content",
        "content-number",
        {"choices.0.delta.content": 1},
        "choices.0.delta.content",
    ),
    Mutation("openai/chat-completion-chunk", "content", "created-float", {"created": 1694268190.5}, "created"),
    Mutation(
        "openai/chat-completion-chunk",
        "include-usage-final",
        "usage-no-total",
        {"usage.total_tokens": _DELETE},
        "usage.total_tokens",
    ),
    Mutation(
        "openai/chat-completion-chunk",
        "tool-call-first-fragment",
        "tool-call-no-index",
        {"choices.0.delta.tool_calls.0.index": _DELETE},
        "choices.0.delta.tool_calls.0.index",
    ),
    Mutation(
        "openai/chat-completion-chunk",
        "tool-call-first-fragment",
        "tool-call-type-tool",
        {"choices.0.delta.tool_calls.0.type": "tool"},
        "choices.0.delta.tool_calls.0.type",
    ),
]


_WRONG_TYPE = {str: 12345, bool: "yes", int: "7", float: "7.5", list: {"not": "a list"}, dict: [], type(None): [[]]}
# Keys the schemas deliberately leave undeclared (open responses): changing their type must not matter.
_UNDECLARED = {
    ("anthropic/stream-event", "payload"),
    ("anthropic/stream-event", "amazon-bedrock-invocationMetrics"),
    ("anthropic/message", "future_top_level_field"),
    ("anthropic/count-tokens-response", "context_management"),
}


def _root(name: str) -> dict[str, Any]:
    """The root object schema of a file, following a top-level local $ref."""
    document = schemas.schema(name)
    ref = document.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return dict(document["$defs"][ref.removeprefix("#/$defs/")])
    return document


def _required_keys(name: str, instance: dict[str, Any]) -> list[str]:
    keys = list(_root(name).get("required", []))
    if name == "anthropic/stream-event":
        event = schemas.schema(name)["$defs"].get(str(instance.get("type")))
        keys += [key for key in (event or {}).get("required", []) if key not in keys]
    return keys


def _generic_mutations() -> Iterator[Case]:
    """For every valid object example: drop each required key, give each key a wrong type, add an unknown key."""
    for case in VALID_CASES:
        instance = case.instance
        if not isinstance(instance, dict):
            continue
        for key in _required_keys(case.schema, instance):
            yield Case(case.schema, f"{case.case_id}/drop-{key}", _apply(instance, {key: _DELETE}), False, key)
        for key, value in instance.items():
            if (case.schema, key) in _UNDECLARED:
                continue
            wrong = _WRONG_TYPE[type(value)]
            mutated = {**instance, key: wrong}
            yield Case(case.schema, f"{case.case_id}/wrong-type-{key}", mutated, False, key, exact=False)
        if case.schema in CLOSED_REQUESTS:
            extra = {**instance, "unknown_field": 1}
            yield Case(case.schema, f"{case.case_id}/unknown-field", extra, False, "unknown_field")


def _fixture_invalid_cases() -> Iterator[Case]:
    for name, examples in INVALID.items():
        for case_id, entry in examples.items():
            yield Case(name, case_id, entry["instance"], valid=False, path=entry["path"])


INVALID_CASES = [m.case() for m in TARGETED] + list(_fixture_invalid_cases()) + list(_generic_mutations())
ALL_CASES = VALID_CASES + INVALID_CASES


# ---------------------------------------------------------------------------------------------------- the files


@pytest.mark.parametrize("name", schemas.schema_names())
def test_schema_file_is_valid_draft_2020_12(name: str) -> None:
    document = schemas.schema(name)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == f"{schemas.SCHEMA_BASE}{name}.json"
    jsonschema.Draft202012Validator.check_schema(document)
    assert jsonschema_rs.meta.is_valid(document)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


@pytest.mark.parametrize("name", schemas.schema_names())
def test_every_ref_resolves_inside_the_registry(name: str) -> None:
    document = schemas.schema(name)
    resolver = schemas.registry().resolver(base_uri=document["$id"])
    refs = list(_refs(document))
    for ref in refs:
        assert not ref.startswith(("http:", "https:")), f"{ref}: $refs must be relative"
        resolved = resolver.lookup(ref)
        assert isinstance(resolved.contents, dict | bool), ref
    schemas.validator(name)  # compiles, which resolves every $ref through the jsonschema-rs registry


def test_required_logical_names_exist() -> None:
    assert set(REQUIRED_NAMES) <= set(schemas.schema_names())


def test_every_schema_has_valid_examples() -> None:
    covered = {case.schema for case in VALID_CASES}
    top_level = {name for name in schemas.schema_names() if name in REQUIRED_NAMES}
    assert top_level <= covered


def test_schema_dir_is_the_repository_schemas_directory() -> None:
    directory = schemas.schema_dir()
    assert directory == Path(__file__).resolve().parent.parent / "schemas"
    assert (directory / "anthropic" / "messages-request.json").is_file()


def test_registry_holds_every_file_and_is_immutable() -> None:
    registry = schemas.registry()
    assert isinstance(registry, referencing.Registry)
    for name in schemas.schema_names():
        assert f"{schemas.SCHEMA_BASE}{name}.json" in registry
    assert registry is schemas.registry()
    with pytest.raises(AttributeError):
        registry.foo = 1  # type: ignore[attr-defined]


def test_schema_returns_a_copy() -> None:
    first = schemas.schema("anthropic/error")
    first["x-status-types"]["400"] = "tampered"
    assert schemas.schema("anthropic/error")["x-status-types"]["400"] == "invalid_request_error"


def test_unknown_schema_name_is_an_error() -> None:
    with pytest.raises(schemas.UnknownSchemaReference, match="anthropic/nope"):
        schemas.schema("anthropic/nope")


def test_status_error_types_match_protocol_table() -> None:
    assert schemas.status_error_types() == {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "billing_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        504: "timeout_error",
        529: "overloaded_error",
    }


def test_status_error_types_are_all_in_the_error_enum() -> None:
    enum = set(schemas.schema("anthropic/error")["$defs"]["error_type"]["enum"])
    assert set(schemas.status_error_types().values()) <= enum
    assert len(enum) == 10


# ---------------------------------------------------------------------------------------- examples and mutations


@pytest.mark.parametrize("case", VALID_CASES, ids=lambda case: case.id)
def test_valid_example_passes(case: Case) -> None:
    errors = schemas.validator(case.schema).errors(case.instance)
    assert errors == (), [error.describe() for error in errors]
    assert schemas.validator(case.schema).is_valid(case.instance)


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda case: case.id)
def test_invalid_example_fails_at_the_named_path(case: Case) -> None:
    compiled = schemas.validator(case.schema)
    assert not compiled.is_valid(case.instance)
    errors = compiled.errors(case.instance)
    assert errors, "is_valid is False but errors() is empty"
    paths = [error.path for error in errors]
    named = case.path in paths or (not case.exact and any(path.startswith(f"{case.path}.") for path in paths))
    assert named, f"expected an error at {case.path!r}, got {[e.describe() for e in errors]}"


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda case: case.id)
def test_python_and_rust_engines_agree(case: Case) -> None:
    reference = schemas.reference_validator(case.schema)
    assert reference.is_valid(case.instance) is case.valid
    assert schemas.validator(case.schema).is_valid(case.instance) is case.valid


def test_mutation_ids_are_unique() -> None:
    ids = [case.id for case in INVALID_CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("stream", STREAMS, ids=lambda path: path.stem)
def test_recorded_stream_event_names_match_data_type(stream: Path) -> None:
    frames = _sse_payloads(stream)
    assert frames
    for event, payload in frames:
        assert payload["type"] == event


def test_basic_stream_is_the_protocol_wire_example() -> None:
    events = [event for event, _ in _sse_payloads(EXAMPLES / "streams" / "basic_response.sse")]
    assert events == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


# ------------------------------------------------------------------------------------------------ error reporting


def _request(**changes: Any) -> dict[str, Any]:
    return _apply(VALID["anthropic/messages-request"]["streaming-multi-turn-prefill"], changes)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(_request(max_tokens=_DELETE), "max_tokens: Field required", id="missing-max-tokens"),
        pytest.param(
            _request(temperature=1.5), "temperature: Input should be less than or equal to 1", id="temperature"
        ),
        pytest.param(_request(top_p=2), "top_p: Input should be less than or equal to 1", id="top-p"),
        pytest.param(_request(top_k=-1), "top_k: Input should be greater than or equal to 0", id="top-k"),
        pytest.param(_request(foo=1), "foo: Extra inputs are not permitted", id="unknown-field"),
        pytest.param(
            _request(**{"messages.2.content.0.text": ""}),
            "messages.2.content.0.text: String should have at least 1 character",
            id="empty-text-block",
        ),
        pytest.param(
            _request(thinking={"type": "enabled", "budget_tokens": 1000}),
            "thinking.budget_tokens: Input should be greater than or equal to 1024",
            id="budget-tokens",
        ),
        pytest.param(
            _request(tools=[{"name": "get weather", "input_schema": {"type": "object"}}]),
            "tools.0.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'",
            id="tool-name",
        ),
        pytest.param(
            _request(**{"messages.0.role": "tool"}),
            "messages.0.role: Input should be 'user', 'assistant' or 'system'",
            id="role",
        ),
        pytest.param(_request(stream="yes"), "stream: Input should be a valid boolean", id="stream-type"),
        pytest.param(
            _request(**{"messages.2.content.0.type": "input_text"}),
            "messages.2.content.0.type: Input should be 'text', 'image', 'document', 'search_result', 'thinking', "
            "'redacted_thinking', 'tool_use', 'tool_result', 'server_tool_use', 'web_search_tool_result', "
            "'web_fetch_tool_result', 'code_execution_tool_result', 'bash_code_execution_tool_result', "
            "'text_editor_code_execution_tool_result', 'tool_search_tool_result', 'container_upload' or "
            "'mid_conv_system'",
            id="block-type",
        ),
    ],
)
def test_400_message_names_the_field(body: dict[str, Any], expected: str) -> None:
    described = [error.describe() for error in schemas.validator("anthropic/messages-request").errors(body)]
    assert described == [expected]


def test_errors_are_sorted_most_specific_first_and_deterministic() -> None:
    body = _request(**{"messages.2.content.0.text": "", "temperature": 3, "max_tokens": _DELETE})
    compiled = schemas.validator("anthropic/messages-request")
    errors = compiled.errors(body)
    assert [error.path for error in errors] == ["messages.2.content.0.text", "max_tokens", "temperature"]
    assert compiled.errors(body) == errors


def test_describe_at_the_root_is_the_message_alone() -> None:
    (error,) = schemas.validator("anthropic/stream-event").errors([1, 2])
    assert error == schemas.SchemaError("", "Input should be a valid object")
    assert error.describe() == "Input should be a valid object"
    assert schemas.SchemaError("a.0.b", "m").describe() == "a.0.b: m"


def test_openai_shaped_in_band_error_is_reported_as_missing_type() -> None:
    event = {"error": {"message": "upstream failed", "type": "stream_error"}}
    described = [error.describe() for error in schemas.validator("anthropic/stream-event").errors(event)]
    assert described == ["type: Field required"]


def test_non_json_values_are_invalid_not_exceptions() -> None:
    compiled = schemas.validator("anthropic/stream-event")
    assert compiled.is_valid(object()) is False
    (error,) = compiled.errors({"type": "ping", 1: 2})
    assert error.path == ""
    assert "not a JSON value" in error.message


def test_validator_is_cached() -> None:
    assert schemas.validator("anthropic/stream-event") is schemas.validator("anthropic/stream-event")
    assert schemas.validator("anthropic/stream-event").name == "anthropic/stream-event"


def test_long_engine_messages_are_truncated() -> None:
    compiled = schemas.compile_schema({"not": {"type": "string"}})
    (error,) = compiled.errors("x" * 10_000)
    assert len(error.message) <= 200


# ------------------------------------------------------------------------------------------- no network, ever


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    "ref",
    ["nope.json", "anthropic/nope.json#/$defs/x", "https://example.com/schema.json", "usage.json#/$defs/absent"],
)
def test_unknown_ref_fails_closed_in_jsonschema_rs(ref: str) -> None:
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{schemas.SCHEMA_BASE}anthropic/selftest.json",
        "$ref": ref,
    }
    with pytest.raises(schemas.UnknownSchemaReference):
        schemas.compile_schema(document)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("ref", ["https://example.com/schema.json", f"{schemas.SCHEMA_BASE}anthropic/nope.json"])
def test_unknown_ref_fails_closed_in_jsonschema(ref: str) -> None:
    reference = jsonschema.Draft202012Validator({"$ref": ref}, registry=schemas.registry())
    with pytest.raises(referencing.exceptions.Unresolvable):
        reference.is_valid({})


def test_an_invalid_schema_is_a_compile_error_not_an_unknown_reference() -> None:
    with pytest.raises(schemas.SchemaCompileError, match="not a valid JSON Schema") as raised:
        schemas.compile_schema({"type": "bogus"})
    assert not isinstance(raised.value, schemas.UnknownSchemaReference)


def test_refs_into_the_registry_work_from_ad_hoc_schemas() -> None:
    document = {"$ref": f"{schemas.SCHEMA_BASE}anthropic/usage.json#/$defs/delta_usage"}
    compiled = schemas.compile_schema(document)
    assert compiled.is_valid({"output_tokens": 3})
    assert [error.describe() for error in compiled.errors({})] == ["output_tokens: Field required"]
