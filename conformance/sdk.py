"""Runs the official `anthropic` and `openai` SDKs against a target and records what they made of it.

The SDKs forgive some defects and choke on others (protocol.md 3.3, 6.4), so "does the official client
work" is its own question. Each call here is one probe step; its SdkOutcome is judged by the compat checks.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conformance.probes import ECHO_TEXT, WEATHER_TOOL, repeat
from conformance.target import Target
from conformance.transport import sdk_http_client

SDK_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class SdkOutcome:
    """What an SDK call returned or raised, reduced to what the checks need."""

    call: str
    ok: bool
    summary: str
    error_type: str | None = None
    error: str | None = None
    status: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class SdkCall:
    """A probe step that runs an SDK scenario instead of sending one request."""

    name: str
    run: Callable[[Target], dict[str, Any]]
    requests: int = 1

    def execute(self, target: Target) -> SdkOutcome:
        """Run the scenario; any exception the SDK raises becomes a failed outcome, masked."""
        start = time.perf_counter()
        try:
            details = self.run(target)
        except Exception as exc:  # the SDK's exceptions are the finding
            status = getattr(exc, "status_code", None)
            shown = str(exc) or f"{exc!r} raised in {_where(exc)}"
            return SdkOutcome(
                self.name,
                False,
                target.mask(f"{type(exc).__name__}: {shown}")[:1000],
                error_type=type(exc).__name__,
                error=target.mask(str(exc))[:2000],
                status=status if isinstance(status, int) else None,
                seconds=time.perf_counter() - start,
            )
        return SdkOutcome(
            self.name, True, str(details.get("summary", "")), details=details, seconds=time.perf_counter() - start
        )


def _where(exc: BaseException) -> str:
    """The innermost frame of an exception, as package/module.py:function (for messages that say nothing)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    path = "/".join(last.filename.replace("\\", "/").split("/")[-3:])
    return f"{path}:{last.name}"


def anthropic_client(target: Target) -> Any:
    """An official Anthropic client for the target, without retries (a retry would hide the first answer)."""
    import anthropic

    key = target.api_key.reveal() if target.api_key is not None else None
    credentials: dict[str, Any] = {"auth_token": key} if target.auth == "bearer" else {"api_key": key or "none"}
    return anthropic.Anthropic(
        base_url=target.base_url, max_retries=0, timeout=SDK_TIMEOUT, http_client=sdk_http_client(target), **credentials
    )


def openai_client(target: Target) -> Any:
    """An official OpenAI client for the target's /v1 surface."""
    import openai

    key = target.api_key.reveal() if target.api_key is not None else "none"
    return openai.OpenAI(
        base_url=target.base_url + "/v1",
        api_key=key,
        max_retries=0,
        timeout=SDK_TIMEOUT,
        http_client=sdk_http_client(target),
    )


def _text(message: Any) -> str:
    return "".join(getattr(b, "text", "") for b in message.content if getattr(b, "type", None) == "text")


def messages_create(target: Target) -> dict[str, Any]:
    """client.messages.create: a plain request."""
    message = anthropic_client(target).messages.create(
        model=target.model, max_tokens=64, messages=[{"role": "user", "content": repeat(ECHO_TEXT)}]
    )
    return {
        "summary": f"stop_reason={message.stop_reason} text={_text(message)[:80]!r}",
        "text": _text(message),
        "stop_reason": message.stop_reason,
        "output_tokens": message.usage.output_tokens,
    }


def messages_stream(target: Target) -> dict[str, Any]:
    """client.messages.stream(...): iterate text_stream, then get_final_message()."""
    client = anthropic_client(target)
    with client.messages.stream(
        model=target.model, max_tokens=64, messages=[{"role": "user", "content": repeat(ECHO_TEXT)}]
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    return {
        "summary": f"stop_reason={final.stop_reason} text={_text(final)[:80]!r}",
        "streamed_text": streamed,
        "text": _text(final),
        "stop_reason": final.stop_reason,
        "output_tokens": final.usage.output_tokens if final.usage is not None else None,
    }


def tool_round_trip(target: Target) -> dict[str, Any]:
    """A forced tool call, then the tool_result turn, through the SDK."""
    client = anthropic_client(target)
    question = [{"role": "user", "content": "What is the weather in Paris? Use the get_weather tool."}]
    first = client.messages.create(
        model=target.model,
        max_tokens=128,
        messages=question,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": WEATHER_TOOL["name"]},
    )
    uses = [b for b in first.content if getattr(b, "type", None) == "tool_use"]
    if not uses:
        raise AssertionError(f"no tool_use block (stop_reason {first.stop_reason})")
    second = client.messages.create(
        model=target.model,
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=[
            *question,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "18C"}]},
        ],
    )
    return {
        "summary": f"tool {uses[0].name} input={uses[0].input} then stop_reason={second.stop_reason}",
        "stop_reason": first.stop_reason,
        "input": uses[0].input,
    }


def chat_completion(target: Target) -> dict[str, Any]:
    """openai: chat.completions.create, then a stream with include_usage."""
    client = openai_client(target)
    messages = [{"role": "user", "content": repeat(ECHO_TEXT)}]
    completion = client.chat.completions.create(model=target.model, max_tokens=64, messages=messages)
    text = completion.choices[0].message.content or ""
    chunks = list(
        client.chat.completions.create(
            model=target.model, max_tokens=64, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = next((c.usage for c in reversed(chunks) if c.usage is not None), None)
    return {
        "summary": f"text={text[:60]!r} streamed={streamed[:60]!r} usage={'yes' if usage else 'no'}",
        "text": text,
        "streamed_text": streamed,
        "stream_usage": usage is not None,
    }


CALLS: dict[str, SdkCall] = {
    call.name: call
    for call in (
        SdkCall("anthropic_messages_create", messages_create),
        SdkCall("anthropic_messages_stream", messages_stream),
        SdkCall("anthropic_tool_round_trip", tool_round_trip, requests=2),
        SdkCall("openai_chat_completion", chat_completion, requests=2),
    )
}
