"""Each --fault visibly does what its registry entry says, seen in the raw bytes on the wire."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from conformance.gateway import FAULTS, GatewayConfig, RunningGateway, start_in_thread

MODEL = "claude-sonnet-5"
TOOL = {
    "name": "get_weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def faulty() -> Iterator[Callable[[str], RunningGateway]]:
    """A fresh gateway per fault, started on first use; all stopped together (each stop waits ~0.1 s)."""
    started: dict[str, RunningGateway] = {}

    def get(fault: str) -> RunningGateway:
        if fault not in started:
            started[fault] = start_in_thread(GatewayConfig(port=0, faults=(fault,)))
        return started[fault]

    yield get
    with ThreadPoolExecutor(max_workers=max(len(started), 1)) as pool:
        list(pool.map(RunningGateway.stop, started.values()))


def ask(text: str = "Repeat exactly: one two three", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": text}], **extra}


def headers(gateway: RunningGateway) -> dict[str, str]:
    return {"x-api-key": gateway.api_key, "anthropic-version": "2023-06-01"}


def post(
    gateway: RunningGateway, body: object, *, path: str = "/v1/messages", creds: dict[str, str] | None = None
) -> httpx.Response:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        return client.post(path, headers=headers(gateway) if creds is None else creds, json=body)


def frames(raw: bytes) -> list[str]:
    assert raw.endswith(b"\n\n")
    return raw.decode().split("\n\n")[:-1]


def events(raw: bytes) -> list[tuple[str | None, dict[str, Any] | str | None]]:
    parsed: list[tuple[str | None, dict[str, Any] | str | None]] = []
    for frame in frames(raw):
        event = None
        data: dict[str, Any] | str | None = None
        for line in frame.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                text = line[6:]
                data = text if text == "[DONE]" else json.loads(text)
        parsed.append((event, data))
    return parsed


def test_every_fault_has_a_test() -> None:
    tested = {name for name, _ in CHECKS}
    assert tested == set(FAULTS), set(FAULTS) ^ tested


def check_data_only(gw: RunningGateway) -> None:
    raw = post(gw, ask(stream=True)).content
    assert b"event:" not in raw
    assert all(frame.startswith("data: {") for frame in frames(raw))


def check_extra_done(gw: RunningGateway) -> None:
    raw = post(gw, ask(stream=True)).content
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\ndata: [DONE]\n\n')


def check_done_instead_of_stop(gw: RunningGateway) -> None:
    raw = post(gw, ask(stream=True)).content
    assert b"message_stop" not in raw and raw.endswith(b"\n\ndata: [DONE]\n\n")
    assert gw.stats()["streams_truncated"] == 1


def check_missing_message_stop(gw: RunningGateway) -> None:
    raw = post(gw, ask(stream=True)).content
    assert b"message_stop" not in raw and events(raw)[-1][0] == "message_delta"
    assert gw.stats()["streams_truncated"] == 1


def check_stream_cut(gw: RunningGateway) -> None:
    with (
        httpx.Client(base_url=gw.url, timeout=10) as client,
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", "/v1/messages", headers=headers(gw), json=ask(stream=True)) as response,
    ):
        assert response.status_code == 200
        response.read()
    # On the wire: the first events, then the connection closes without the chunked terminator.
    body = json.dumps(ask(stream=True)).encode()
    request = (
        f"POST /v1/messages HTTP/1.1\r\nhost: gw\r\nx-api-key: {gw.api_key}\r\nanthropic-version: 2023-06-01\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    received = b""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            received += chunk
    assert b"transfer-encoding: chunked" in received
    assert not received.endswith(b"0\r\n\r\n")
    assert received.count(b"event: ") == 4 and b"message_stop" not in received
    stats = gw.stats()
    assert stats["streams_truncated"] == 2 and stats["streams_completed"] == 0


def check_empty_success(gw: RunningGateway) -> None:
    raw = post(gw, ask(stream=True)).content
    names = [event for event, _ in events(raw)]
    assert names == ["message_start", "ping", "message_delta", "message_stop"]
    assert events(raw)[2][1]["delta"]["stop_reason"] == "end_turn"  # type: ignore[index]
    message = post(gw, ask()).json()
    assert message["content"] == [] and message["stop_reason"] == "end_turn"


def check_error_as_200(gw: RunningGateway) -> None:
    bad = {"x-api-key": "wrong", "anthropic-version": "2023-06-01"}
    response = post(gw, ask(stream=True), creds=bad)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    [(event, data)] = events(response.content)
    assert event == "error" and data["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert post(gw, ask(), creds=bad).status_code == 401  # non-streaming requests keep their status


def check_openai_error_envelope(gw: RunningGateway) -> None:
    response = post(gw, ask(), creds={"anthropic-version": "2023-06-01"})
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}


def check_invented_429_type(gw: RunningGateway) -> None:
    statuses = [post(gw, ask()) for _ in range(2)]
    assert [r.status_code for r in statuses] == [200, 429]
    assert statuses[1].json()["error"]["type"] == "rate_limit_exceeded"
    assert statuses[1].headers["retry-after"] == "1"


def check_429_no_retry_after(gw: RunningGateway) -> None:
    statuses = [post(gw, ask()) for _ in range(2)]
    assert [r.status_code for r in statuses] == [200, 429]
    assert statuses[1].json()["error"]["type"] == "rate_limit_error"
    assert "retry-after" not in statuses[1].headers and statuses[1].headers["x-should-retry"] == "true"


def check_missing_usage(gw: RunningGateway) -> None:
    [delta] = [data for event, data in events(post(gw, ask(stream=True)).content) if event == "message_delta"]
    assert isinstance(delta, dict) and "usage" not in delta


def check_start_input_zero(gw: RunningGateway) -> None:
    parsed = dict(events(post(gw, ask(stream=True)).content))
    assert parsed["message_start"]["message"]["usage"]["input_tokens"] == 0  # type: ignore[index]
    assert parsed["message_delta"]["usage"] == {"output_tokens": 3}  # type: ignore[index]


def check_noncontiguous_indices(gw: RunningGateway) -> None:
    parsed = events(post(gw, ask(stream=True)).content)
    indices = {data["index"] for _, data in parsed if isinstance(data, dict) and "index" in data}
    assert indices == {1}


def check_wrong_stop_reason(gw: RunningGateway) -> None:
    message = post(gw, ask(tools=[TOOL], tool_choice={"type": "any"})).json()
    assert message["content"][-1]["type"] == "tool_use" and message["stop_reason"] == "end_turn"
    assert post(gw, ask()).json()["stop_reason"] == "end_turn"


def check_drop_stop_sequences(gw: RunningGateway) -> None:
    message = post(gw, ask("Repeat exactly: one STOP two", stop_sequences=["STOP"])).json()
    assert message["content"][0]["text"] == "one STOP two" and message["stop_reason"] == "end_turn"


def check_unsigned_thinking(gw: RunningGateway) -> None:
    body = ask(max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024})
    first = post(gw, body).json()
    assert first["content"][0]["type"] == "thinking" and first["content"][0]["signature"] == ""
    history = [
        *body["messages"],
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": "more"},
    ]
    second = post(gw, {**body, "messages": history})
    assert second.status_code == 400
    assert second.json()["error"]["message"] == "messages.1.content.0: Invalid signature in thinking block"


def check_foreign_message_id(gw: RunningGateway) -> None:
    assert post(gw, ask()).json()["id"].startswith("resp_")


def check_bearer_only(gw: RunningGateway) -> None:
    assert post(gw, ask()).status_code == 401
    assert (
        post(gw, ask(), creds={"authorization": f"Bearer {gw.api_key}", "anthropic-version": "2023-06-01"}).status_code
        == 200
    )


def check_no_auth(gw: RunningGateway) -> None:
    assert post(gw, ask(), creds={"anthropic-version": "2023-06-01"}).status_code == 200
    assert post(gw, ask(), creds={"x-api-key": "anything", "anthropic-version": "2023-06-01"}).status_code == 200


def check_count_tokens_404(gw: RunningGateway) -> None:
    response = post(
        gw, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, path="/v1/messages/count_tokens"
    )
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


def check_empty_data_events(gw: RunningGateway) -> None:
    raw = post(gw, ask(stream=True)).content
    assert "event: content_block_delta" in frames(raw)


def chat_stream(gw: RunningGateway) -> list[str]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi there"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return frames(post(gw, body, path="/v1/chat/completions", creds={"authorization": f"Bearer {gw.api_key}"}).content)


def check_include_usage_ignored(gw: RunningGateway) -> None:
    sent = chat_stream(gw)
    assert sent[-1] == "data: [DONE]"
    assert not any('"choices":[]' in frame for frame in sent) and '"usage":{' not in "".join(sent)


def check_missing_done(gw: RunningGateway) -> None:
    sent = chat_stream(gw)
    assert "data: [DONE]" not in sent and '"choices":[]' in sent[-1]
    assert gw.stats()["streams_truncated"] == 1


# check_missing_message_stop tests the fault named missing-message-stop, and so on.
CHECKS: list[tuple[str, Callable[[RunningGateway], None]]] = [
    (name.removeprefix("check_").replace("_", "-"), check)
    for name, check in list(globals().items())
    if name.startswith("check_")
]


@pytest.mark.parametrize(("fault", "check"), CHECKS, ids=[name for name, _ in CHECKS])
def test_fault(faulty: Callable[[str], RunningGateway], fault: str, check: Callable[[RunningGateway], None]) -> None:
    check(faulty(fault))


def test_conformant_gateway_has_none_of_these_defects(reference_gateway: RunningGateway) -> None:
    raw = post(reference_gateway, ask(stream=True)).content
    parsed = events(raw)
    assert all(event is not None and isinstance(data, dict) and data["type"] == event for event, data in parsed)
    assert parsed[-1][0] == "message_stop" and b"[DONE]" not in raw
    assert [
        data["index"] for _, data in parsed if isinstance(data, dict) and data["type"] == "content_block_start"
    ] == [0]
