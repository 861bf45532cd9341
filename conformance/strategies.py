"""Hypothesis strategies for Messages requests, derived from the request schema.

Valid requests stay cheap (tiny max_tokens, short "Repeat exactly" prompts) because against a paid
gateway every example costs money. Invalid requests are valid ones with exactly one rule broken; the
rules are read from the schema (required keys, numeric bounds, enums, closed objects), so when the
schema changes the strategies follow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from conformance.errors import HarnessError
from conformance.probes import drop_field as _drop
from conformance.probes import set_field as _set
from conformance.schemas import schema

REQUEST_SCHEMA = "anthropic/messages-request"
WORDS = ("alpha", "beta", "gamma", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")


def _properties() -> dict[str, Any]:
    props: dict[str, Any] = schema(REQUEST_SCHEMA)["properties"]
    return props


def _bound(name: str, key: str, default: float) -> float:
    value = _properties().get(name, {}).get(key, default)
    return float(value)


@st.composite
def _prompt(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6))
    return "Repeat exactly: " + " ".join(words)


def _content(prompt: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.one_of(prompt, prompt.map(lambda text: [{"type": "text", "text": text}]))


@st.composite
def _conversation(draw: st.DrawFn) -> list[dict[str, Any]]:
    turns = draw(st.integers(min_value=0, max_value=1))
    messages: list[dict[str, Any]] = []
    for _ in range(turns):
        messages.append({"role": "user", "content": draw(_content(_prompt()))})
        messages.append({"role": "assistant", "content": draw(_prompt()).removeprefix("Repeat exactly: ")})
    messages.append({"role": "user", "content": draw(_content(_prompt()))})
    return messages


def message_requests(
    *, model: str, min_max_tokens: int = 1, max_max_tokens: int = 16, stream: bool | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Valid Messages request bodies: every one must be served with HTTP 200 and a valid Message."""
    if not model:
        raise HarnessError("message_requests needs a model name")
    if not 1 <= min_max_tokens <= max_max_tokens:
        raise HarnessError(f"need 1 <= min_max_tokens <= max_max_tokens, got {min_max_tokens}, {max_max_tokens}")

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": draw(st.integers(min_value=min_max_tokens, max_value=max_max_tokens)),
            "messages": draw(_conversation()),
        }
        if draw(st.booleans()):
            body["system"] = draw(_content(st.sampled_from(["You are terse.", "Answer briefly."])))
        # Newer models refuse temperature and top_p together, so a request sets at most one of them.
        sampling = draw(st.sampled_from(["none", "temperature", "top_p"]))
        if sampling == "temperature":
            body["temperature"] = draw(
                st.floats(_bound("temperature", "minimum", 0), _bound("temperature", "maximum", 1))
            )
        elif sampling == "top_p":
            low = max(_bound("top_p", "minimum", 0), 0.01)
            body["top_p"] = draw(st.floats(low, _bound("top_p", "maximum", 1)))
        if draw(st.booleans()):
            body["top_k"] = draw(st.integers(int(_bound("top_k", "minimum", 0)) + 1, 500))
        if draw(st.booleans()):
            body["stop_sequences"] = draw(st.lists(st.sampled_from(["zulu", "STOP", "\n\n###"]), max_size=2))
        if draw(st.booleans()):
            body["metadata"] = {"user_id": draw(st.uuids()).hex}
        chosen_stream = draw(st.booleans()) if stream is None else stream
        if chosen_stream:
            body["stream"] = True
        return body

    return build()


@dataclass(frozen=True, slots=True)
class Mutation:
    """One rule broken on purpose: its label names the rule, apply() breaks it in place."""

    label: str
    apply: Callable[[dict[str, Any]], None]


def _first_user(value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        body["messages"][-1] = value

    return mutate


WRONG_TYPES: dict[str, Any] = {"integer": "12", "number": "0.5", "string": 12, "boolean": "yes", "array": "x"}


def mutations() -> tuple[Mutation, ...]:
    """Every single-rule violation the schema defines for the top level and the message list."""
    props = _properties()
    found: list[Mutation] = []
    for key in schema(REQUEST_SCHEMA)["required"]:
        found.append(Mutation(f"{key} missing (required)", _drop(key)))
    for key, spec in sorted(props.items()):
        kind = spec.get("type")
        if "maximum" in spec:
            over = spec["maximum"] + (1 if kind == "integer" else 0.5)
            found.append(Mutation(f"{key}={over} above its maximum {spec['maximum']}", _set(key, over)))
        if "minimum" in spec:
            under = spec["minimum"] - 1
            found.append(Mutation(f"{key}={under} below its minimum {spec['minimum']}", _set(key, under)))
        if isinstance(kind, str) and kind in WRONG_TYPES:
            wrong = WRONG_TYPES[kind]
            found.append(Mutation(f"{key}={wrong!r}: not a {kind}", _set(key, wrong)))
        if "enum" in spec and all(isinstance(v, str) for v in spec["enum"]):
            found.append(Mutation(f"{key}='not-a-valid-value': not in its enum", _set(key, "not-a-valid-value")))
    if schema(REQUEST_SCHEMA).get("additionalProperties") is False:
        found.append(Mutation("an unknown top-level field", _set("conformance_unknown_field", True)))
    found += [
        Mutation("messages is empty", _set("messages", [])),
        Mutation("a message role that does not exist", _first_user({"role": "robot", "content": "hi"})),
        Mutation("an empty text block", _first_user({"role": "user", "content": [{"type": "text", "text": ""}]})),
        Mutation("a content block type that does not exist", _first_user({"role": "user", "content": [{"type": "x"}]})),
        Mutation("a message without content", _first_user({"role": "user"})),
    ]
    return tuple(found)


def invalid_message_requests(*, model: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(rule, body) pairs: a valid non-streaming request with exactly one rule broken; must be rejected with 400."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
        body = draw(message_requests(model=model, stream=False))
        mutation = draw(st.sampled_from(mutations()))
        mutation.apply(body)
        return mutation.label, body

    return build()
