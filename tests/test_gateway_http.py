"""The reference gateway over real sockets: endpoints, auth, errors, model behaviour, streaming, OpenAI surface."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conformance.gateway import RunningGateway
from conformance.schemas import validator

MODEL = "claude-sonnet-5"
VERSIONS = ("2023-06-01", "2026-10-21")
REQUEST_ID = re.compile(r"^req_[A-Za-z0-9]+$")
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
    },
}


@pytest.fixture(scope="module")
def client(reference_gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=reference_gateway.url, timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def headers(reference_gateway: RunningGateway) -> dict[str, str]:
    return {"x-api-key": reference_gateway.api_key, "anthropic-version": "2023-06-01"}


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": text}], **extra}


def sse(raw: bytes) -> list[tuple[str | None, str | None]]:
    """(event, data) per frame; asserts the body is made of complete, blank-line-terminated frames."""
    assert raw.endswith(b"\n\n"), raw[-80:]
    frames = []
    for chunk in raw.decode().split("\n\n")[:-1]:
        event = data = None
        for line in chunk.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                event = value
            elif field == "data":
                data = value
        frames.append((event, data))
    return frames


def accumulate(frames: list[tuple[str | None, str | None]]) -> dict[str, Any]:
    """The Message a stream describes, rebuilt from its events (asserting the grammar as it goes)."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    names = [event for event, _ in frames]
    assert names[0] == "message_start" and names[-1] == "message_stop" and "ping" in names
    assert names.count("message_stop") == 1 and names.count("message_delta") == 1
    for event, data in frames:
        assert data is not None
        payload = json.loads(data)
        assert payload["type"] == event
        assert validator("anthropic/stream-event").is_valid(payload), payload
        if event == "message_start":
            message = payload["message"]
            assert message["content"] == [] and message["stop_reason"] is None
            assert message["usage"]["output_tokens"] == 1
        elif event == "content_block_start":
            assert payload["index"] == len(message["content"])  # contiguous, opened in order
            message["content"].append(payload["content_block"])
        elif event == "content_block_delta":
            block = message["content"][payload["index"]]
            delta = payload["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                partial[payload["index"]] = partial.get(payload["index"], "") + delta["partial_json"]
        elif event == "content_block_stop":
            if payload["index"] in partial:
                message["content"][payload["index"]]["input"] = json.loads(partial[payload["index"]])
        elif event == "message_delta":
            message.update(payload["delta"])
            message["usage"] = {**message["usage"], **payload["usage"]}
    return message


def post(client: httpx.Client, headers: dict[str, str], body: object, path: str = "/v1/messages") -> httpx.Response:
    return client.post(path, headers=headers, json=body)


def assert_error(response: httpx.Response, status: int, error_type: str, message: str | re.Pattern[str]) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    if isinstance(message, str):
        assert body["error"]["message"] == message
    else:
        assert message.search(body["error"]["message"]), body["error"]["message"]
    assert REQUEST_ID.match(response.headers["request-id"])
    assert body["request_id"] == response.headers["request-id"]
    assert response.headers["anthropic-organization-id"]
    assert response.headers["content-type"] == "application/json"
    assert validator("anthropic/error").is_valid(body)


# ---------------------------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("auth", ["x-api-key", "bearer"])
def test_messages_with_either_auth_style_and_version(
    client: httpx.Client, reference_gateway: RunningGateway, version: str, auth: str
) -> None:
    key = reference_gateway.api_key
    creds = {"x-api-key": key} if auth == "x-api-key" else {"authorization": f"Bearer {key}"}
    response = post(client, {**creds, "anthropic-version": version}, ask("Repeat exactly: Hello, world!"))
    assert response.status_code == 200, response.text
    message = response.json()
    assert validator("anthropic/message").is_valid(message)
    assert set(message) >= {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
    assert message["id"].startswith("msg_") and message["type"] == "message" and message["role"] == "assistant"
    assert message["model"] == MODEL
    assert message["content"] == [{"type": "text", "text": "Hello, world!"}]
    assert (message["stop_reason"], message["stop_sequence"]) == ("end_turn", None)
    usage = message["usage"]
    assert usage["output_tokens"] == 4 and usage["input_tokens"] > 0
    assert (usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"], usage["service_tier"]) == (
        0,
        0,
        "standard",
    )
    assert REQUEST_ID.match(response.headers["request-id"])
    assert response.headers["anthropic-organization-id"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/messages", ask("hi")),
        ("POST", "/v1/messages/count_tokens", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
        ("GET", "/v1/models", None),
        ("GET", f"/v1/models/{MODEL}", None),
    ],
)
@pytest.mark.parametrize("query", ["?beta=true", "?beta=true&anything=else", "?"])
def test_query_strings_are_accepted_everywhere(
    client: httpx.Client, headers: dict[str, str], method: str, path: str, body: object, query: str
) -> None:
    response = client.request(method, path + query, headers=headers, json=body)
    assert response.status_code == 200, response.text


def test_any_date_shaped_version_is_accepted(client: httpx.Client, headers: dict[str, str]) -> None:
    assert post(client, {**headers, "anthropic-version": "2031-02-28"}, ask("hi")).status_code == 200


def test_max_tokens_cuts_the_reply(client: httpx.Client, headers: dict[str, str]) -> None:
    message = post(client, headers, ask("one two three four five six", max_tokens=4)).json()
    assert message["stop_reason"] == "max_tokens" and message["usage"]["output_tokens"] == 4
    assert message["content"][0]["text"] == "one two three four"


def test_stop_sequences_cut_before_the_match(client: httpx.Client, headers: dict[str, str]) -> None:
    message = post(client, headers, ask("Repeat exactly: red green STOP blue", stop_sequences=["blue", "STOP"])).json()
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "STOP")
    assert message["content"] == [{"type": "text", "text": "red green "}]


def test_system_prompt_counts_in_input_tokens(client: httpx.Client, headers: dict[str, str]) -> None:
    bare = post(client, headers, ask("hi")).json()["usage"]["input_tokens"]
    with_system = post(client, headers, ask("hi", system="You answer in four words.")).json()
    assert with_system["usage"]["input_tokens"] == bare + 6


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_forced_tool_use_builds_input_from_the_schema(
    client: httpx.Client, headers: dict[str, str], choice: dict[str, str]
) -> None:
    message = post(client, headers, ask("hello", tools=[WEATHER_TOOL], tool_choice=choice)).json()
    assert message["stop_reason"] == "tool_use"
    [call] = message["content"]
    assert call["type"] == "tool_use" and call["id"].startswith("toolu_") and call["name"] == "get_weather"
    assert call["input"] == {"city": "example", "unit": "celsius"}


def test_auto_tool_use_only_when_the_tool_is_named(client: httpx.Client, headers: dict[str, str]) -> None:
    named = post(client, headers, ask("Use get_weather for Paris", tools=[WEATHER_TOOL])).json()
    assert named["stop_reason"] == "tool_use" and [b["type"] for b in named["content"]] == ["text", "tool_use"]
    plain = post(client, headers, ask("How are you?", tools=[WEATHER_TOOL])).json()
    assert plain["stop_reason"] == "end_turn" and plain["content"] == [{"type": "text", "text": "How are you?"}]
    none = post(client, headers, ask("Use get_weather", tools=[WEATHER_TOOL], tool_choice={"type": "none"})).json()
    assert none["stop_reason"] == "end_turn"


def test_tool_round_trip(client: httpx.Client, headers: dict[str, str]) -> None:
    first = post(client, headers, ask("Use get_weather", tools=[WEATHER_TOOL])).json()
    call = first["content"][-1]
    history = [
        {"role": "user", "content": "Use get_weather"},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18 C, sunny"}]},
    ]
    second = post(client, headers, {"model": MODEL, "max_tokens": 64, "tools": [WEATHER_TOOL], "messages": history})
    assert second.status_code == 200, second.text
    assert second.json()["content"] == [{"type": "text", "text": "Acknowledged."}]


@pytest.mark.parametrize("thinking", [{"type": "enabled", "budget_tokens": 1024}, {"type": "adaptive"}])
def test_thinking_round_trip_and_tampering(
    client: httpx.Client, headers: dict[str, str], thinking: dict[str, Any]
) -> None:
    first = post(client, headers, ask("Repeat exactly: ok", max_tokens=2048, thinking=thinking)).json()
    block, text = first["content"]
    assert block["type"] == "thinking" and block["thinking"] and block["signature"]
    assert text == {"type": "text", "text": "ok"}
    history = [
        {"role": "user", "content": "Repeat exactly: ok"},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": "Repeat exactly: again"},
    ]
    body = {"model": MODEL, "max_tokens": 2048, "thinking": thinking, "messages": history}
    assert post(client, headers, body).status_code == 200
    history[1] = {"role": "assistant", "content": [{**block, "thinking": block["thinking"] + " (edited)"}, text]}
    assert_error(
        post(client, headers, body),
        400,
        "invalid_request_error",
        "messages.1.content.0: Invalid signature in thinking block",
    )


def test_omitted_thinking_display(client: httpx.Client, headers: dict[str, str]) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024, "display": "omitted"}
    message = post(client, headers, ask("hi", max_tokens=2048, thinking=thinking)).json()
    assert message["content"][0]["thinking"] == "" and message["content"][0]["signature"]
    raw = client.post("/v1/messages", headers=headers, json=ask("hi", max_tokens=2048, thinking=thinking, stream=True))
    deltas = [json.loads(d)["delta"]["type"] for e, d in sse(raw.content) if e == "content_block_delta" and d]
    assert "thinking_delta" not in deltas and deltas[0] == "signature_delta"


# ---------------------------------------------------------------------------------------------- streaming

STREAM_CASES = {
    "echo": ask("Repeat exactly: The quick brown fox, jumped!"),
    "max_tokens": ask("one two three four five", max_tokens=2),
    "stop_sequence": ask("alpha beta gamma", stop_sequences=["gamma"]),
    "tool": ask("call get_weather now", tools=[WEATHER_TOOL]),
    "forced_tool": ask("x", tools=[WEATHER_TOOL], tool_choice={"type": "any"}),
    "thinking": ask("think then answer", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048}),
    "system": ask("hi", system=[{"type": "text", "text": "Be terse."}]),
}


@pytest.mark.parametrize("case", STREAM_CASES)
def test_streamed_and_non_streamed_agree(client: httpx.Client, headers: dict[str, str], case: str) -> None:
    body = STREAM_CASES[case]
    plain = post(client, headers, body).json()
    response = post(client, headers, {**body, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    streamed = accumulate(sse(response.content))

    def comparable(block: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in block.items() if k not in ("id", "signature")}

    assert [comparable(b) for b in streamed["content"]] == [comparable(b) for b in plain["content"]]
    assert (streamed["stop_reason"], streamed["stop_sequence"]) == (plain["stop_reason"], plain["stop_sequence"])
    for key in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        assert streamed["usage"][key] == plain["usage"][key], key
    counted = post(client, headers, {k: v for k, v in body.items() if k not in ("max_tokens", "stop_sequences")},
                   "/v1/messages/count_tokens").json()  # fmt: skip
    assert counted == {"input_tokens": plain["usage"]["input_tokens"]}


def test_stream_frames_are_exact(client: httpx.Client, headers: dict[str, str]) -> None:
    raw = post(client, headers, ask("Repeat exactly: a b", stream=True)).content
    text = raw.decode()
    expected_events = [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    assert [event for event, _ in sse(raw)] == expected_events
    assert re.fullmatch(r"(event: [a-z_]+\ndata: [^\n]+\n\n)+", text)
    delta = json.loads(sse(raw)[-2][1] or "")
    assert delta["usage"] == {
        "input_tokens": delta["usage"]["input_tokens"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 2,
    }


# ---------------------------------------------------------------------------------------------- count_tokens


@pytest.mark.parametrize(
    "body",
    [
        ask("hello"),
        ask("hello", system="You are a poet."),
        ask("hello", tools=[WEATHER_TOOL], tool_choice={"type": "auto"}),
        ask("x", thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2000),
        {
            "model": MODEL,
            "max_tokens": 50,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Look:"}, {"type": "image", "source": {
                    "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
                {"role": "assistant", "content": "A picture."},
                {"role": "user", "content": "Repeat exactly: thanks"},
            ],
        },
    ],
)  # fmt: skip
def test_count_tokens_equals_usage_input_tokens(
    client: httpx.Client, headers: dict[str, str], body: dict[str, Any]
) -> None:
    message = post(client, headers, body).json()
    count_body = {k: v for k, v in body.items() if k != "max_tokens"}
    counted = post(client, headers, count_body, "/v1/messages/count_tokens")
    assert counted.status_code == 200, counted.text
    assert validator("anthropic/count-tokens-response").is_valid(counted.json())
    assert counted.json()["input_tokens"] == message["usage"]["input_tokens"]


# ---------------------------------------------------------------------------------------------- models


def test_models_list_and_paging_both_ways(client: httpx.Client, headers: dict[str, str]) -> None:
    everything = client.get("/v1/models?limit=1000", headers=headers).json()
    assert validator("anthropic/models-list").is_valid(everything)
    ids = [model["id"] for model in everything["data"]]
    assert everything["has_more"] is False and MODEL in ids
    assert (everything["first_id"], everything["last_id"]) == (ids[0], ids[-1])
    default = client.get("/v1/models", headers=headers).json()
    assert len(default["data"]) == min(20, len(ids)) and default["has_more"] is (len(ids) > 20)

    forward: list[str] = []
    params: dict[str, Any] = {"limit": 5}
    while True:
        page = client.get("/v1/models", headers=headers, params=params).json()
        forward += [model["id"] for model in page["data"]]
        if not page["has_more"]:
            break
        params = {"limit": 5, "after_id": page["last_id"]}
    assert forward == ids

    backward: list[str] = []
    params = {"limit": 4, "before_id": ids[-1]}
    while True:
        page = client.get("/v1/models", headers=headers, params=params).json()
        backward = [model["id"] for model in page["data"]] + backward
        if not page["has_more"]:
            break
        params = {"limit": 4, "before_id": page["first_id"]}
    assert backward == ids[:-1]


def test_get_model(client: httpx.Client, headers: dict[str, str]) -> None:
    model = client.get(f"/v1/models/{MODEL}", headers=headers).json()
    assert model["id"] == MODEL and model["type"] == "model" and model["display_name"] == "Claude Sonnet 5"
    assert validator("anthropic/model").is_valid(model)
    assert_error(client.get("/v1/models/claude-nope", headers=headers), 404, "not_found_error", "model: claude-nope")


@pytest.mark.parametrize("limit", ["0", "1001", "many"])
def test_models_limit_out_of_range(client: httpx.Client, headers: dict[str, str], limit: str) -> None:
    assert_error(
        client.get(f"/v1/models?limit={limit}", headers=headers), 400, "invalid_request_error", re.compile("^limit: ")
    )


# ---------------------------------------------------------------------------------------------- errors


def test_missing_key(client: httpx.Client) -> None:
    response = post(client, {"anthropic-version": "2023-06-01"}, ask("hi"))
    assert_error(response, 401, "authentication_error", "x-api-key header is required")


@pytest.mark.parametrize(
    "creds",
    [
        {"x-api-key": "sk-wrong-secret-value"},
        {"authorization": "Bearer sk-wrong-secret-value"},
        {"authorization": "Basic x"},
    ],
)
def test_wrong_key_is_refused_and_never_echoed(client: httpx.Client, creds: dict[str, str]) -> None:
    response = post(client, {**creds, "anthropic-version": "2023-06-01"}, ask("hi"))
    assert_error(response, 401, "authentication_error", "invalid x-api-key")
    assert "sk-wrong-secret-value" not in response.text


def test_key_in_the_query_string_is_not_a_credential(client: httpx.Client, reference_gateway: RunningGateway) -> None:
    response = client.post(
        f"/v1/messages?api_key={reference_gateway.api_key}", headers={"anthropic-version": "2023-06-01"}, json=ask("hi")
    )
    assert response.status_code == 401


def test_missing_version(client: httpx.Client, reference_gateway: RunningGateway) -> None:
    response = post(client, {"x-api-key": reference_gateway.api_key}, ask("hi"))
    assert_error(response, 400, "invalid_request_error", "anthropic-version: header is required")


@pytest.mark.parametrize("version", ["latest", "2023-6-1", "2023-13-45", "20230601", ""])
def test_malformed_version(client: httpx.Client, headers: dict[str, str], version: str) -> None:
    response = post(client, {**headers, "anthropic-version": version}, ask("hi"))
    assert_error(response, 400, "invalid_request_error", re.compile(r"^anthropic-version: .* is not a valid version"))


def test_invalid_json(client: httpx.Client, headers: dict[str, str]) -> None:
    response = client.post(
        "/v1/messages", headers={**headers, "content-type": "application/json"}, content=b'{"model": '
    )
    assert_error(response, 400, "invalid_request_error", re.compile(r"^body: Invalid JSON"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, "max_tokens: Field required"),
        (ask("hi", temperature=1.5), "temperature: Input should be less than or equal to 1"),
        (ask("hi", top_k=-1), "top_k: Input should be greater than or equal to 0"),
        (ask("hi", surprise=True), "surprise: Extra inputs are not permitted"),
        ({**ask("x"), "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
         "messages.0.content.0.text: String should have at least 1 character"),
        (ask("hi", thinking={"type": "enabled", "budget_tokens": 100}, max_tokens=2000),
         "thinking.budget_tokens: Input should be greater than or equal to 1024"),
        (ask("hi", tools=[{**WEATHER_TOOL, "name": "bad name!"}]), re.compile(r"^tools\.0\.name: ")),
        ([1, 2], re.compile(r"Input should be a valid object")),
    ],
)  # fmt: skip
def test_schema_errors_name_the_field(
    client: httpx.Client, headers: dict[str, str], body: object, message: str | re.Pattern[str]
) -> None:
    assert_error(post(client, headers, body), 400, "invalid_request_error", message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (ask("hi", thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=2048),
         re.compile(r"^max_tokens: `max_tokens` must be greater than `thinking.budget_tokens`")),
        (ask("hi", tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "get_time"}),
         re.compile(r"^tool_choice.name: Tool 'get_time' not found")),
        (ask("hi", tool_choice={"type": "any"}), re.compile(r"^tool_choice: ")),
        (ask("hi", tools=[WEATHER_TOOL, WEATHER_TOOL]), re.compile(r"^tools.1.name: Tool names must be unique")),
        ({**ask("x"), "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01nope", "content": "x"}]},
        ]}, re.compile(r"^messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_01nope")),
        ({**ask("x"), "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_01a", "name": "get_weather", "input": {}},
            ]},
            {"role": "user", "content": "no result here"},
        ], "tools": [WEATHER_TOOL]},
         re.compile(r"^messages.2: `tool_use` ids were found without `tool_result` blocks")),
        ({**ask("x"), "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure "}]},
         "messages: final assistant content cannot end with trailing whitespace"),
        ({**ask("x"), "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "forged", "signature": "c2lnbmF0dXJl"}]},
            {"role": "user", "content": "again"},
        ]}, "messages.1.content.0: Invalid signature in thinking block"),
    ],
)  # fmt: skip
def test_cross_field_rules(
    client: httpx.Client, headers: dict[str, str], body: object, message: str | re.Pattern[str]
) -> None:
    assert_error(post(client, headers, body), 400, "invalid_request_error", message)


def test_unknown_model(client: httpx.Client, headers: dict[str, str]) -> None:
    response = post(client, headers, {**ask("hi"), "model": "claude-imaginary-9"})
    assert_error(response, 404, "not_found_error", "model: claude-imaginary-9")


@pytest.mark.parametrize("path", ["/v1/nothing", "/v1/messages/", "/v2/messages", "/"])
def test_unknown_path(client: httpx.Client, headers: dict[str, str], path: str) -> None:
    assert_error(client.post(path, headers=headers, json={}), 404, "not_found_error", "Not Found")


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/messages"), ("DELETE", "/v1/models"), ("PUT", "/v1/messages/count_tokens")]
)
def test_wrong_method(client: httpx.Client, headers: dict[str, str], method: str, path: str) -> None:
    response = client.request(method, path, headers=headers)
    assert_error(response, 405, "invalid_request_error", "Method Not Allowed")
    assert response.headers["allow"] in ("GET", "POST")


def test_declared_oversize_body_is_refused_before_it_is_read(
    reference_gateway: RunningGateway, headers: dict[str, str]
) -> None:
    request = (
        "POST /v1/messages HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
        f"x-api-key: {headers['x-api-key']}\r\nanthropic-version: 2023-06-01\r\n"
        f"content-length: {32 * 1024 * 1024 + 1}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", reference_gateway.port), timeout=5) as sock:
        sock.sendall(request + b"{")
        head = sock.recv(65536).decode()
    assert head.startswith("HTTP/1.1 413 ")
    body = json.loads(head.split("\r\n\r\n", 1)[1])
    assert body["error"]["type"] == "request_too_large" and body["type"] == "error"


def test_oversize_body_is_refused(client: httpx.Client, headers: dict[str, str]) -> None:
    filler = "x" * (32 * 1024 * 1024)
    response = post(client, headers, ask(filler))
    assert_error(response, 413, "request_too_large", re.compile("maximum allowed number of bytes"))


# ---------------------------------------------------------------------------------------------- OpenAI surface


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


def test_chat_completion(client: httpx.Client, reference_gateway: RunningGateway) -> None:
    bearer = {"authorization": f"Bearer {reference_gateway.api_key}"}
    response = client.post(
        "/v1/chat/completions", headers=bearer, json=chat("Repeat exactly: Hi there!", max_completion_tokens=2)
    )
    assert response.status_code == 200, response.text
    completion = response.json()
    assert validator("openai/chat-completion").is_valid(completion)
    assert completion["object"] == "chat.completion" and completion["choices"][0]["finish_reason"] == "length"
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "Hi there", "refusal": None}
    assert completion["usage"]["completion_tokens"] == 2
    assert completion["usage"]["total_tokens"] == completion["usage"]["prompt_tokens"] + 2
    assert REQUEST_ID.match(response.headers["x-request-id"])


def test_chat_stream_with_usage_and_tool_call(client: httpx.Client, reference_gateway: RunningGateway) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": WEATHER_TOOL["input_schema"]}}]
    body = chat("please lookup", tools=tools, stream=True, stream_options={"include_usage": True})
    raw = client.post(
        "/v1/chat/completions", headers={"authorization": f"Bearer {reference_gateway.api_key}"}, json=body
    ).content
    frames = sse(raw)
    assert all(event is None for event, _ in frames)
    assert frames[-1] == (None, "[DONE]")
    chunks = [json.loads(data or "") for _, data in frames[:-1]]
    assert all(validator("openai/chat-completion-chunk").is_valid(chunk) for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1 and len({chunk["created"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["tool_calls"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    fragments = [
        call["function"].get("arguments", "")
        for chunk in chunks[:-1]
        for call in chunk["choices"][0]["delta"].get("tool_calls") or ()
    ]
    assert len([f for f in fragments if f]) > 2
    assert json.loads("".join(fragments)) == {"city": "example", "unit": "celsius"}


@pytest.mark.parametrize(
    ("headers_for", "body", "status", "code"),
    [
        ("none", chat("hi"), 401, "invalid_api_key"),
        ("wrong", chat("hi"), 401, "invalid_api_key"),
        ("good", {**chat("hi"), "model": "gpt-nope"}, 404, "model_not_found"),
        ("good", chat("hi", temperature=3), 400, None),
        ("good", chat("hi", stream_options={"include_usage": True}), 400, None),
    ],
)
def test_chat_errors_use_the_openai_envelope(
    client: httpx.Client,
    reference_gateway: RunningGateway,
    headers_for: str,
    body: object,
    status: int,
    code: str | None,
) -> None:
    creds = {
        "none": {},
        "wrong": {"authorization": "Bearer nope"},
        "good": {"authorization": f"Bearer {reference_gateway.api_key}"},
    }
    response = client.post("/v1/chat/completions", headers=creds[headers_for], json=body)
    assert response.status_code == status
    error = response.json()
    assert set(error) == {"error"} and set(error["error"]) == {"message", "type", "param", "code"}
    assert error["error"]["code"] == code
    assert validator("openai/error").is_valid(error)
    assert REQUEST_ID.match(response.headers["x-request-id"])


# ---------------------------------------------------------------------------------------------- stats


def test_stats_count_what_was_served(reference_gateway: RunningGateway, headers: dict[str, str]) -> None:
    before = reference_gateway.stats()
    with httpx.Client(base_url=reference_gateway.url) as http:
        http.post("/v1/messages", headers=headers, json=ask("hi", stream=True))
        http.post("/v1/messages", headers={"anthropic-version": "2023-06-01"}, json=ask("hi"))
        over_http = http.get("/_reference/stats").json()
    after = reference_gateway.stats()
    assert after["requests"] - before["requests"] == 2
    assert after["streams"] - before["streams"] == 1 and after["streams_completed"] - before["streams_completed"] == 1
    assert after["by_status"]["401"] - before["by_status"].get("401", 0) == 1
    assert set(over_http) == set(after) and over_http["requests"] == after["requests"]
