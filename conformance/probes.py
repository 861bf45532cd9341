"""The requests the suite sends: each probe is a few steps (requests) and the checks that judge them.

Prompts are deterministic instructions ("Repeat exactly: ...") that real models follow too, and every
probe asks for few tokens, so a run against a paid gateway stays cheap.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conformance.exchange import Exchange, RequestSpec
from conformance.target import Target

if TYPE_CHECKING:
    from conformance.sdk import SdkCall

# A step returns the request to send, an SDK call to run, or None when it cannot be sent (a prior step failed).
StepBuilder = Callable[[Target, Mapping[str, Exchange]], "RequestSpec | SdkCall | None"]

ECHO_TEXT = "The quick brown fox jumps over the lazy dog."
LONG_TEXT = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
STOP_TEXT = "alpha beta gamma HALT delta epsilon"
STOP_SEQUENCE = "HALT"
MAX_TOKENS_SMALL = 5
# A 1x1 transparent PNG: the smallest image every vision model accepts.
TINY_PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )
).decode()
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location", "unit"],
    },
}
OVERSIZE_BYTES = 33 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Probe:
    """A named scenario: requests to send in order and the checks that judge what came back."""

    id: str
    feature: str
    description: str
    steps: tuple[tuple[str, StepBuilder], ...]
    checks: tuple[str, ...]
    expect: Mapping[str, Any] = field(default_factory=dict)
    # A clean 4xx on the first step means the gateway does not offer this feature (reported, not failed).
    optional: bool = False

    @property
    def request_count(self) -> int:
        """How many requests the probe sends at most (SDK steps may send more than one)."""
        from conformance.sdk import CALLS

        return sum(CALLS[role].requests if role in CALLS else 1 for role, _ in self.steps)


def user(text: str) -> list[dict[str, Any]]:
    """A one-turn conversation."""
    return [{"role": "user", "content": text}]


def repeat(text: str) -> str:
    """The deterministic prompt real models and the reference gateway both follow."""
    return f"Repeat exactly: {text}"


def messages_request(target: Target, **body: Any) -> dict[str, Any]:
    """A Messages request body with the target's model and a small max_tokens."""
    request: dict[str, Any] = {"model": target.model, "max_tokens": 64}
    request.update(body)
    return request


def post_messages(body_fn: Callable[[Target], dict[str, Any]], *, stream: bool = False, **spec: Any) -> StepBuilder:
    """A step that POSTs /v1/messages."""

    def build(target: Target, _: Mapping[str, Exchange]) -> RequestSpec:
        body = body_fn(target)
        if stream:
            body = {**body, "stream": True}
        return RequestSpec("POST", "/v1/messages", json=body, stream=stream, **spec)

    return build


def basic_body(target: Target) -> dict[str, Any]:
    return messages_request(target, messages=user(repeat(ECHO_TEXT)))


def tool_body(target: Target) -> dict[str, Any]:
    return messages_request(
        target,
        messages=user("What is the weather in Paris? Use the get_weather tool."),
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
    )


def thinking_body(target: Target) -> dict[str, Any]:
    return messages_request(
        target,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=user(repeat("thinking probe")),
    )


def _first_block(exchange: Exchange | None, block_type: str) -> dict[str, Any] | None:
    if exchange is None or exchange.status != 200:
        return None
    body = exchange.json_or_none()
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        return None
    for block in body["content"]:
        if isinstance(block, dict) and block.get("type") == block_type:
            return block
    return None


def tool_result_step(target: Target, previous: Mapping[str, Exchange]) -> RequestSpec | None:
    """Answer the tool call of the first step; skipped when there was none."""
    first = previous.get("tool_call")
    block = _first_block(first, "tool_use")
    if block is None or first is None:
        return None
    assistant = first.json()["content"]
    body = messages_request(
        target,
        tools=[WEATHER_TOOL],
        messages=[
            *user("What is the weather in Paris? Use the get_weather tool."),
            {"role": "assistant", "content": assistant},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.get("id"), "content": "18 degrees, sunny"}],
            },
        ],
    )
    return RequestSpec("POST", "/v1/messages", json=body)


def thinking_round_trip_step(target: Target, previous: Mapping[str, Exchange]) -> RequestSpec | None:
    """Pass the thinking block back unmodified on the next turn, as the protocol requires."""
    first = previous.get("thinking")
    if _first_block(first, "thinking") is None or first is None:
        return None
    body = thinking_body(target)
    body["messages"] = [
        *body["messages"],
        {"role": "assistant", "content": first.json()["content"]},
        {"role": "user", "content": repeat("second turn")},
    ]
    return RequestSpec("POST", "/v1/messages", json=body)


def count_tokens_body(target: Target) -> dict[str, Any]:
    return {"model": target.model, "system": "You are terse.", "messages": user(repeat(ECHO_TEXT))}


def count_tokens_step(target: Target, _: Mapping[str, Exchange]) -> RequestSpec:
    return RequestSpec("POST", "/v1/messages/count_tokens", json=count_tokens_body(target))


def count_tokens_usage_step(target: Target, _: Mapping[str, Exchange]) -> RequestSpec:
    body = messages_request(target, max_tokens=16, **count_tokens_body(target))
    return RequestSpec("POST", "/v1/messages", json=body)


def get(path: str, **spec: Any) -> StepBuilder:
    """A step that GETs a path."""

    def build(target: Target, _: Mapping[str, Exchange]) -> RequestSpec:
        return RequestSpec("GET", path, **spec)

    return build


def model_get_step(target: Target, previous: Mapping[str, Exchange]) -> RequestSpec | None:
    """GET /v1/models/{id} for the first model the list returned."""
    listing = previous.get("list")
    body = listing.json_or_none() if listing is not None else None
    data = body.get("data") if isinstance(body, dict) else None
    if not data or not isinstance(data[0], dict) or not isinstance(data[0].get("id"), str):
        return None
    return RequestSpec("GET", f"/v1/models/{data[0]['id']}")


def openai_body(target: Target, *, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": target.model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": repeat(ECHO_TEXT)}],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def post_chat(*, stream: bool = False, tools: bool = False) -> StepBuilder:
    def build(target: Target, _: Mapping[str, Exchange]) -> RequestSpec:
        body = openai_body(target, stream=stream)
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": WEATHER_TOOL["name"],
                        "description": WEATHER_TOOL["description"],
                        "parameters": WEATHER_TOOL["input_schema"],
                    },
                }
            ]
            body["tool_choice"] = {"type": "function", "function": {"name": WEATHER_TOOL["name"]}}
            body["messages"] = [{"role": "user", "content": "What is the weather in Paris?"}]
        return RequestSpec("POST", "/v1/chat/completions", json=body, stream=stream, flavour="openai")

    return build


def openai_invalid_step(target: Target, _: Mapping[str, Exchange]) -> RequestSpec:
    """A chat completion request without messages."""
    return RequestSpec("POST", "/v1/chat/completions", json={"model": target.model}, flavour="openai")


def invalid(mutate: Callable[[dict[str, Any]], None], *, stream: bool = False) -> StepBuilder:
    """A step that sends a valid basic request after one mutation that breaks one rule."""

    def build(target: Target, _: Mapping[str, Exchange]) -> RequestSpec:
        body = basic_body(target)
        mutate(body)
        if stream:
            body["stream"] = True
        return RequestSpec("POST", "/v1/messages", json=body, stream=stream)

    return build


def set_field(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets one top-level field of a request body."""

    def mutate(body: dict[str, Any]) -> None:
        body[key] = value

    return mutate


def drop_field(key: str) -> Callable[[dict[str, Any]], None]:
    """A mutation that removes one top-level field of a request body."""

    def mutate(body: dict[str, Any]) -> None:
        body.pop(key, None)

    return mutate


def _empty_text(body: dict[str, Any]) -> None:
    body["messages"] = [{"role": "user", "content": [{"type": "text", "text": ""}]}]


def _bad_tool_name(body: dict[str, Any]) -> None:
    body["tools"] = [{**WEATHER_TOOL, "name": "get weather"}]


def _budget(budget: int, max_tokens: int) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        body["max_tokens"] = max_tokens
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}

    return mutate


def raw_post(path: str, content: bytes, **spec: Any) -> StepBuilder:
    """A step that POSTs exact bytes (a body that is not valid JSON, say)."""

    def build(target: Target, _: Mapping[str, Exchange]) -> RequestSpec:
        return RequestSpec("POST", path, content=content, **spec)

    return build


def oversize_step(target: Target, _: Mapping[str, Exchange]) -> RequestSpec:
    """A valid request for the target's model, padded past the 32 MB limit: only its size is wrong."""
    filler = "x" * (OVERSIZE_BYTES - 200)
    body = {"model": target.model, "max_tokens": 1, "messages": [{"role": "user", "content": filler}]}
    return RequestSpec("POST", "/v1/messages", content=json.dumps(body).encode())


def sdk_step(name: str) -> StepBuilder:
    """A step that runs one official-SDK scenario (see conformance.sdk)."""

    def build(target: Target, _: Mapping[str, Exchange]) -> SdkCall:
        from conformance.sdk import CALLS

        return CALLS[name]

    return build


ERROR_CHECKS = ("error_status_expected", "error_envelope_schema", "error_type_matches_status", "error_has_request_id")
STREAM_CHECKS = (
    "stream_http_status_and_type",
    "stream_event_names_match_type",
    "stream_events_match_schema",
    "stream_ends_with_message_stop",
    "stream_has_no_done_sentinel",
    "stream_block_indices_contiguous",
    "stream_usage_present_and_cumulative",
    "stream_message_start_usage",
    "stream_grammar",
    "stream_grammar_advisories",
    "stream_data_is_json",
    "stream_framing_clean",
    "stream_unknown_events",
    "stream_in_band_error_well_formed",
    "stream_not_empty_success",
)
MESSAGE_CHECKS = (
    "status_is_success",
    "content_type_is_json",
    "has_request_id_header",
    "message_matches_schema",
    "message_identity",
    "message_id_has_msg_prefix",
    "content_is_array",
    "stop_reason_valid",
    "usage_is_sane",
    "not_empty_success",
)


def _error_probe(pid: str, description: str, step: StepBuilder, statuses: tuple[int, ...], **expect: Any) -> Probe:
    return Probe(
        pid,
        "messages",
        description,
        (("error", step),),
        ERROR_CHECKS + tuple(expect.pop("extra_checks", ())),
        {"statuses": statuses, **expect},
    )


PROBES: tuple[Probe, ...] = (
    Probe(
        "messages_basic",
        "messages",
        "A plain non-streaming Messages request",
        (("json", post_messages(basic_body)),),
        (*MESSAGE_CHECKS, "reply_follows_instruction", "key_not_reflected"),
        {"text": ECHO_TEXT},
    ),
    Probe(
        "messages_stream",
        "streaming",
        "The same request streamed, then sent again without streaming to compare",
        (("stream", post_messages(basic_body, stream=True)), ("json", post_messages(basic_body))),
        (*STREAM_CHECKS, "stream_matches_non_stream", "reply_follows_instruction"),
        {"text": ECHO_TEXT},
    ),
    Probe(
        "auth_x_api_key",
        "messages",
        "The key sent as x-api-key, as Anthropic-native clients do",
        (("json", post_messages(basic_body, auth="x-api-key")),),
        ("accepts_x_api_key",),
    ),
    Probe(
        "auth_bearer",
        "messages",
        "The key sent as Authorization: Bearer, as the SDKs' auth_token does",
        (("json", post_messages(basic_body, auth="bearer")),),
        ("accepts_bearer",),
    ),
    Probe(
        "max_tokens",
        "messages",
        f"max_tokens={MAX_TOKENS_SMALL} on a longer reply",
        (
            (
                "json",
                post_messages(
                    lambda t: messages_request(t, max_tokens=MAX_TOKENS_SMALL, messages=user(repeat(LONG_TEXT)))
                ),
            ),
        ),
        ("status_is_success", "message_matches_schema", "max_tokens_stop_reason", "output_within_max_tokens"),
        {"max_tokens": MAX_TOKENS_SMALL},
    ),
    Probe(
        "max_tokens_stream",
        "streaming",
        f"max_tokens={MAX_TOKENS_SMALL} on a longer reply, streamed",
        (
            (
                "stream",
                post_messages(
                    lambda t: messages_request(t, max_tokens=MAX_TOKENS_SMALL, messages=user(repeat(LONG_TEXT))),
                    stream=True,
                ),
            ),
        ),
        (*STREAM_CHECKS, "max_tokens_stop_reason", "output_within_max_tokens"),
        {"max_tokens": MAX_TOKENS_SMALL},
    ),
    Probe(
        "stop_sequences",
        "messages",
        f"stop_sequences=[{STOP_SEQUENCE!r}] on a reply that contains it",
        (
            (
                "json",
                post_messages(
                    lambda t: messages_request(t, stop_sequences=[STOP_SEQUENCE], messages=user(repeat(STOP_TEXT)))
                ),
            ),
        ),
        ("status_is_success", "message_matches_schema", "stop_sequence_honoured"),
        {"stop_sequence": STOP_SEQUENCE},
    ),
    Probe(
        "tool_forced",
        "tools",
        "tool_choice names a tool: the reply is a tool_use block for it",
        (("tool_call", post_messages(tool_body)), ("tool_result", tool_result_step)),
        (
            "status_is_success",
            "message_matches_schema",
            "tool_use_matches_tool",
            "tool_use_stop_reason",
            "tool_result_accepted",
        ),
        {"tool": WEATHER_TOOL},
        optional=True,
    ),
    Probe(
        "tool_forced_stream",
        "tools",
        "A forced tool call, streamed: input arrives as input_json_delta fragments",
        (("stream", post_messages(tool_body, stream=True)),),
        (*STREAM_CHECKS, "tool_use_matches_tool", "tool_use_stop_reason"),
        {"tool": WEATHER_TOOL},
        optional=True,
    ),
    Probe(
        "thinking",
        "thinking",
        "Extended thinking: a signed thinking block first, accepted back unmodified next turn",
        (("thinking", post_messages(thinking_body)), ("round_trip", thinking_round_trip_step)),
        ("status_is_success", "message_matches_schema", "thinking_block_signed", "thinking_round_trip_accepted"),
        optional=True,
    ),
    Probe(
        "thinking_stream",
        "thinking",
        "Extended thinking streamed: thinking_delta then signature_delta before the block stops",
        (("stream", post_messages(thinking_body, stream=True)),),
        (*STREAM_CHECKS, "thinking_block_signed"),
        optional=True,
    ),
    Probe(
        "vision",
        "vision",
        "A base64 PNG image block",
        (
            (
                "json",
                post_messages(
                    lambda t: messages_request(
                        t,
                        messages=[
                            {
                                "role": "user",
                                "content": [
                                    {
                                        "type": "image",
                                        "source": {"type": "base64", "media_type": "image/png", "data": TINY_PNG},
                                    },
                                    {"type": "text", "text": repeat("image received")},
                                ],
                            }
                        ],
                    )
                ),
            ),
        ),
        ("status_is_success", "message_matches_schema", "not_empty_success"),
        optional=True,
    ),
    Probe(
        "count_tokens",
        "count_tokens",
        "count_tokens answers {input_tokens} and agrees with the usage of the same request",
        (("count", count_tokens_step), ("json", count_tokens_usage_step)),
        ("count_tokens_matches_schema", "count_tokens_agrees_with_usage"),
        optional=True,
    ),
    Probe(
        "count_tokens_beta",
        "count_tokens",
        "count_tokens with ?beta=true, as Claude Code calls it",
        (
            (
                "count",
                lambda t, _: RequestSpec("POST", "/v1/messages/count_tokens?beta=true", json=count_tokens_body(t)),
            ),
        ),
        ("count_tokens_matches_schema",),
        optional=True,
    ),
    Probe(
        "models",
        "models",
        "GET /v1/models, a page of one, and GET /v1/models/{id}",
        (("list", get("/v1/models")), ("page", get("/v1/models?limit=1")), ("one", model_get_step)),
        ("models_list_matches_schema", "models_paging", "model_matches_schema"),
        optional=True,
    ),
    Probe(
        "openai_chat",
        "openai",
        "POST /v1/chat/completions without streaming, then an invalid one for the error envelope",
        (("json", post_chat()), ("error", openai_invalid_step)),
        ("openai_status_is_success", "openai_completion_matches_schema", "openai_error_envelope"),
        optional=True,
    ),
    Probe(
        "openai_chat_stream",
        "openai",
        "POST /v1/chat/completions streamed with include_usage",
        (("stream", post_chat(stream=True)),),
        (
            "openai_status_is_success",
            "openai_stream_grammar",
            "openai_stream_ends_with_done",
            "openai_stream_usage_chunk",
        ),
        {"include_usage": True},
        optional=True,
    ),
    Probe(
        "sdk_anthropic",
        "messages",
        "The official anthropic SDK: messages.create, messages.stream().get_final_message(), a tool round trip",
        (
            ("anthropic_messages_create", sdk_step("anthropic_messages_create")),
            ("anthropic_messages_stream", sdk_step("anthropic_messages_stream")),
            ("anthropic_tool_round_trip", sdk_step("anthropic_tool_round_trip")),
        ),
        ("sdk_messages_create_works", "sdk_stream_final_message_works", "sdk_tool_round_trip_works"),
    ),
    Probe(
        "sdk_openai",
        "openai",
        "The official openai SDK: chat.completions.create plain and streamed with include_usage",
        (("openai_chat_completion", sdk_step("openai_chat_completion")),),
        ("openai_sdk_chat_works",),
        optional=True,
    ),
    _error_probe("error_missing_max_tokens", "max_tokens is required", invalid(drop_field("max_tokens")), (400,)),
    _error_probe("error_temperature_range", "temperature above 1", invalid(set_field("temperature", 1.5)), (400,)),
    _error_probe("error_top_p_range", "top_p above 1", invalid(set_field("top_p", 2)), (400,)),
    _error_probe("error_top_k_negative", "top_k below 0", invalid(set_field("top_k", -1)), (400,)),
    _error_probe("error_empty_text_block", "an empty text block", invalid(_empty_text), (400,)),
    _error_probe("error_bad_tool_name", "a tool name with a space", invalid(_bad_tool_name), (400,)),
    _error_probe("error_thinking_budget_small", "budget_tokens below 1024", invalid(_budget(1000, 2048)), (400,)),
    _error_probe(
        "error_thinking_budget_over_max", "budget_tokens not below max_tokens", invalid(_budget(2048, 2048)), (400,)
    ),
    _error_probe("error_unknown_field", "an unknown top-level field", invalid(set_field("not_a_field", True)), (400,)),
    _error_probe(
        "error_messages_not_array", "messages is not an array", invalid(set_field("messages", "hello")), (400,)
    ),
    _error_probe(
        "error_malformed_json",
        "a body that is not JSON",
        raw_post(
            "/v1/messages",
            b'{"model": "x", "messages": [',
        ),
        (400,),
    ),
    _error_probe(
        "error_missing_version",
        "no anthropic-version header",
        post_messages(basic_body, drop_headers=("anthropic-version",)),
        (400,),
    ),
    _error_probe(
        "error_missing_key",
        "no credentials at all",
        post_messages(basic_body, auth="none"),
        (401,),
        extra_checks=("gateway_requires_key",),
    ),
    _error_probe(
        "error_wrong_key",
        "a wrong key",
        post_messages(basic_body, auth="wrong-key"),
        (401,),
        extra_checks=("gateway_requires_key", "key_not_reflected"),
    ),
    _error_probe(
        "error_unknown_model",
        "a model that does not exist",
        post_messages(lambda t: {**basic_body(t), "model": "no-such-model-conformance"}),
        (400, 404),
    ),
    _error_probe("error_unknown_path", "a path that does not exist", get("/v1/no-such-endpoint"), (404,)),
    _error_probe(
        "error_request_too_large",
        "a body over the 32 MB limit",
        oversize_step,
        (413,),
    ),
    Probe(
        "error_before_stream",
        "streaming",
        "An invalid streaming request: the error comes as a 4xx status, not 200 + an SSE error",
        (("error", invalid(drop_field("max_tokens"), stream=True)),),
        ("error_not_sent_as_stream", *ERROR_CHECKS),
        {"statuses": (400,)},
    ),
)

PROBES_BY_ID: dict[str, Probe] = {p.id: p for p in PROBES}
