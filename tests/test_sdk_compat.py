"""The official SDKs, unmodified, against the reference gateway: what a client developer's test would do."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import anthropic
import openai
import pytest

from conformance.gateway import RunningGateway

MODEL = "claude-sonnet-5"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def claude(reference_gateway: RunningGateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=reference_gateway.url, api_key=reference_gateway.api_key, max_retries=0
    ) as client:
        yield client


@pytest.fixture(scope="module")
def gpt(reference_gateway: RunningGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{reference_gateway.url}/v1", api_key=reference_gateway.api_key, max_retries=0
    ) as client:
        yield client


def test_messages_create(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "Repeat exactly: The answer is 42."}],
        extra_body={"temperature": 0.0},
    )
    assert message.id.startswith("msg_") and message.role == "assistant" and message.model == MODEL
    assert message.content[0].type == "text" and message.content[0].text == "The answer is 42."
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 5
    assert message._request_id and message._request_id.startswith("req_")


def test_messages_stream(claude: anthropic.Anthropic) -> None:
    request = {
        "model": MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Repeat exactly: Hello, stream!"}],
    }
    with claude.messages.stream(**request) as stream:  # type: ignore[arg-type]
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["Hello", ",", " stream", "!"]
    assert final.content[0].type == "text" and final.content[0].text == "Hello, stream!"
    plain = claude.messages.create(**request)  # type: ignore[arg-type]
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.usage.output_tokens == plain.usage.output_tokens == 4
    assert final.stop_reason == plain.stop_reason == "end_turn"


def test_low_level_stream_events(claude: anthropic.Anthropic) -> None:
    events = list(
        claude.messages.create(model=MODEL, max_tokens=8, stream=True, messages=[{"role": "user", "content": "a b"}])
    )
    types = [event.type for event in events]
    assert types[0] == "message_start" and types[-1] == "message_stop" and "ping" not in types


def test_tool_use_round_trip(claude: anthropic.Anthropic) -> None:
    history: list[anthropic.types.MessageParam] = [{"role": "user", "content": "What's the weather? Use get_weather."}]
    first = claude.messages.create(model=MODEL, max_tokens=256, tools=[WEATHER], messages=history)  # type: ignore[list-item]
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "example"}
    history += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21 C"}]},
    ]
    second = claude.messages.create(model=MODEL, max_tokens=256, tools=[WEATHER], messages=history)  # type: ignore[list-item]
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"


def test_streamed_tool_input_is_assembled_by_the_sdk(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Paris"}],
    ) as stream:
        final = stream.get_final_message()
    [call] = final.content
    assert call.type == "tool_use" and call.input == {"city": "example"} and final.stop_reason == "tool_use"


def test_thinking_round_trip(claude: anthropic.Anthropic) -> None:
    thinking: anthropic.types.ThinkingConfigParam = {"type": "enabled", "budget_tokens": 1024}
    history: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Repeat exactly: first"}]
    with claude.messages.stream(model=MODEL, max_tokens=2048, thinking=thinking, messages=history) as stream:
        first = stream.get_final_message()
    assert [block.type for block in first.content] == ["thinking", "text"]
    assert first.content[0].type == "thinking" and first.content[0].signature
    history += [{"role": "assistant", "content": first.content}, {"role": "user", "content": "Repeat exactly: second"}]
    second = claude.messages.create(model=MODEL, max_tokens=2048, thinking=thinking, messages=history)
    assert second.content[-1].type == "text" and second.content[-1].text == "second"


def test_count_tokens_matches_usage(claude: anthropic.Anthropic) -> None:
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Count these five words please"}]
    counted = claude.messages.count_tokens(model=MODEL, system="Be brief.", tools=[WEATHER], messages=messages)  # type: ignore[list-item]
    used = claude.messages.create(model=MODEL, max_tokens=16, system="Be brief.", tools=[WEATHER], messages=messages)  # type: ignore[list-item]
    assert counted.input_tokens == used.usage.input_tokens


def test_models_list_pages(claude: anthropic.Anthropic) -> None:
    first_page = claude.models.list(limit=3)
    assert len(first_page.data) == 3 and first_page.has_more
    every = [model.id for model in claude.models.list(limit=3)]  # auto-pagination follows after_id
    assert len(every) == len(set(every)) > 3 and MODEL in every
    assert claude.models.retrieve(MODEL).display_name == "Claude Sonnet 5"


def test_beta_namespace_uses_beta_query(claude: anthropic.Anthropic) -> None:
    message = claude.beta.messages.create(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "beta"}], betas=["token-counting-2024-11-01"]
    )
    assert message.content[0].type == "text" and message.content[0].text == "beta"
    assert (
        claude.beta.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "beta"}]).input_tokens > 0
    )


def test_auth_token_is_sent_as_bearer(reference_gateway: RunningGateway) -> None:
    with anthropic.Anthropic(
        base_url=reference_gateway.url, auth_token=reference_gateway.api_key, max_retries=0
    ) as client:
        message = client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "token"}])
    assert message.content[0].type == "text" and message.content[0].text == "token"


@pytest.mark.parametrize(
    ("error", "call"),
    [
        (anthropic.AuthenticationError, lambda c: c.with_options(api_key="wrong-key").messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])),
        (anthropic.BadRequestError, lambda c: c.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}])),
        (anthropic.NotFoundError, lambda c: c.messages.create(
            model="claude-unknown", max_tokens=8, messages=[{"role": "user", "content": "x"}])),
        (anthropic.NotFoundError, lambda c: c.models.retrieve("claude-unknown")),
    ],
)  # fmt: skip
def test_errors_surface_as_sdk_exceptions(
    claude: anthropic.Anthropic, error: type[anthropic.APIStatusError], call: Callable[[anthropic.Anthropic], object]
) -> None:
    with pytest.raises(error) as caught:
        call(claude)
    assert caught.value.request_id and caught.value.request_id.startswith("req_")
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "error"


def test_rate_limit_error(gateway_factory: Callable[..., RunningGateway]) -> None:
    gateway = gateway_factory(rate_limit_rpm=1, rate_limit_window_s=60.0)
    with anthropic.Anthropic(base_url=gateway.url, api_key=gateway.api_key, max_retries=0) as client:
        client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert caught.value.response.headers["retry-after"] == "60"


def test_official_sdk_against_faults(gateway_factory: Callable[..., RunningGateway]) -> None:
    """What a user of the SDK sees from a broken gateway: silence (data-only) or a crash (bad indices)."""
    silent = gateway_factory(faults=("data-only",))
    request = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    with anthropic.Anthropic(base_url=silent.url, api_key=silent.api_key, max_retries=0) as client:
        assert list(client.messages.create(**request, stream=True)) == []  # type: ignore[call-overload]
    shifted = gateway_factory(faults=("noncontiguous-indices",))
    with (
        anthropic.Anthropic(base_url=shifted.url, api_key=shifted.api_key, max_retries=0) as client,
        pytest.raises(IndexError),
        client.messages.stream(**request) as stream,  # type: ignore[arg-type]
    ):
        stream.get_final_message()


def test_openai_chat_completion(gpt: openai.OpenAI) -> None:
    completion = gpt.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Repeat exactly: hi GPT"}]
    )
    assert completion.choices[0].message.content == "hi GPT" and completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 2


def test_openai_stream_with_usage(gpt: openai.OpenAI) -> None:
    stream = gpt.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Repeat exactly: streaming works"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "streaming works"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


def test_openai_tool_call(gpt: openai.OpenAI) -> None:
    tools: list[openai.types.chat.ChatCompletionToolParam] = [
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}  # type: ignore[typeddict-item]
    ]
    completion = gpt.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "weather?"}], tools=tools, tool_choice="required"
    )
    [call] = completion.choices[0].message.tool_calls or []
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "example"}

    stream = gpt.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "weather?"}],
        tools=tools,
        tool_choice="required",
        stream=True,
    )
    arguments = "".join(
        call.function.arguments or ""
        for chunk in stream
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or ()
        if call.function
    )
    assert json.loads(arguments) == {"city": "example"}


def test_openai_errors(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError):
        gpt.with_options(api_key="wrong").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.NotFoundError) as caught:
        gpt.chat.completions.create(model="gpt-imaginary", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"
