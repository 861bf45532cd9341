"""The verdict on one response, with the suite's own grammar and schemas: success, or a failure with a named kind.

Kinds are short and stable, so Locust groups its failure table by them and the gate can count them:

    stream-truncated: eof | reset | timeout   the stream ended without message_stop (Anthropic) / [DONE] (OpenAI)
    in-band-error: <error.type>              an error event (or OpenAI {"error": ...} chunk) inside a 200 stream
    schema-violation                         an event or body that does not match its JSON Schema
    grammar: <code>                          any other must-level violation of the streaming grammar
    not-event-stream                         stream requested, but the 2xx answer is not text/event-stream
    body-not-json                            a non-streaming 2xx body that is not JSON
    http-<status>: <error.type>              a non-2xx answer (rate limits are http-429: rate_limit_error)
    transport: <what>                        no (complete) response: connect-error, timeout-first-byte, reset, ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conformance.grammar import NOT_JSON
from conformance.stream import Flavour, StreamResult, parse_json
from conformance.target import Secret, mask_secrets
from loadtests.metrics import truncation_cause

__all__ = [
    "GatewayFailure",
    "Outcome",
    "body_validator",
    "judge_body",
    "judge_status",
    "judge_stream",
    "judge_transport",
]

_BODY_SCHEMAS = {"anthropic": "anthropic/message", "openai": "openai/chat-completion"}
_DETAIL_LIMIT = 300


@dataclass(frozen=True, slots=True)
class Outcome:
    """Success (failure is None) or a failure kind, with what the metrics need from the response."""

    failure: str | None = None
    detail: str = ""
    truncated: str | None = None  # eof / reset / timeout
    output_tokens: int | None = None
    input_tokens: int | None = None
    violations: tuple[tuple[str, int], ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the request counts as a success."""
        return self.failure is None


class GatewayFailure(Exception):
    """What a failed request reports to Locust: its repr is the kind, so the failure table groups by kind."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail

    def __repr__(self) -> str:
        return self.kind

    def __str__(self) -> str:
        return f"{self.kind} ({self.detail})" if self.detail else self.kind


def _short(text: str, secrets: tuple[Secret | str | None, ...]) -> str:
    text = mask_secrets(text, secrets)
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


def _int(value: object) -> int | None:
    return value if type(value) is int else None


def _usage(flavour: Flavour, usage: object) -> tuple[int | None, int | None]:
    """(output, input) tokens from a Message / chat.completion's usage."""
    if not isinstance(usage, dict):
        return None, None
    if flavour == "anthropic":
        return _int(usage.get("output_tokens")), _int(usage.get("input_tokens"))
    return _int(usage.get("completion_tokens")), _int(usage.get("prompt_tokens"))


def _error_type(flavour: Flavour, payload: object) -> str:
    if not isinstance(payload, dict):
        return "unknown"
    error = payload.get("error")
    if isinstance(error, dict):
        # OpenAI's `type` is coarse (invalid_request_error for a bad key); its `code` says what happened.
        for key in ("type", "code") if flavour == "anthropic" else ("code", "type"):
            value = error.get(key)
            if isinstance(value, str) and value:
                return value[:64]
    return "unknown"


def judge_stream(result: StreamResult, *, secrets: tuple[Secret | str | None, ...] = ()) -> Outcome:
    """The verdict on a 2xx event stream, from the StreamReader's result."""
    output_tokens, input_tokens = result.output_tokens, result.input_tokens
    if output_tokens is None:  # no final count: what the message's usage says (message_start's placeholder)
        output_tokens = _usage(result.flavour, result.message.get("usage"))[0]
    if result.complete and not result.violations and not result.errored:  # the usual answer, quickly
        return Outcome(output_tokens=output_tokens, input_tokens=input_tokens, violations=result.violation_counts)
    counts = result.violation_counts or tuple((v.code, 1) for v in result.violations)
    common: dict[str, Any] = {"output_tokens": output_tokens, "input_tokens": input_tokens, "violations": counts}
    if result.errored:
        kind = _error_type(result.flavour, result.error)
        message = ""
        if isinstance(result.error, dict) and isinstance(result.error.get("error"), dict):
            message = str(result.error["error"].get("message", ""))
        return Outcome(f"in-band-error: {kind}", _short(message, secrets), **common)
    if not result.complete:
        cause = truncation_cause(result.end_cause)
        marker = "message_stop" if result.flavour == "anthropic" else "data: [DONE]"
        detail = f"ended by {result.end_cause} after {result.event_count} events without {marker}"
        return Outcome(f"stream-truncated: {cause}", detail, truncated=cause, **common)
    must = [v for v in result.violations if v.severity == "must"]
    schema = [v for v in must if v.code == "schema-violation"]
    if schema:
        return Outcome("schema-violation", _short(schema[0].message, secrets), **common)
    if must:
        return Outcome(f"grammar: {must[0].code}", _short(must[0].message, secrets), **common)
    return Outcome(**common)


def judge_body(
    flavour: Flavour,
    body: bytes,
    *,
    validator: Callable[[object], bool] | None,
    secrets: tuple[Secret | str | None, ...] = (),
) -> Outcome:
    """The verdict on a non-streaming 2xx body: JSON, and (with a validator) the Message / chat.completion schema."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return Outcome("body-not-json", "the body is not UTF-8")
    payload = parse_json(text)
    if payload is NOT_JSON or not isinstance(payload, dict):
        return Outcome("body-not-json", _short(text[:120], secrets))
    output_tokens, input_tokens = _usage(flavour, payload.get("usage"))
    if validator is not None and not validator(payload):
        from conformance.schemas import validator as compiled

        errors = compiled(_BODY_SCHEMAS[flavour]).errors(payload)
        detail = errors[0].describe() if errors else "does not match the schema"
        return Outcome(
            "schema-violation",
            _short(detail, secrets),
            output_tokens=output_tokens,
            input_tokens=input_tokens,
            violations=(("schema-violation", max(len(errors), 1)),),
        )
    return Outcome(output_tokens=output_tokens, input_tokens=input_tokens)


def body_validator(flavour: Flavour) -> Callable[[object], bool]:
    """The compiled schema check of a non-streaming 2xx body."""
    from conformance.schemas import validator

    return validator(_BODY_SCHEMAS[flavour]).is_valid


def judge_status(
    flavour: Flavour, status: int, body: bytes, *, secrets: tuple[Secret | str | None, ...] = ()
) -> Outcome:
    """The verdict on a non-2xx answer: http-<status>, with the error type its envelope names."""
    try:
        payload = parse_json(body.decode())
    except UnicodeDecodeError:
        payload = NOT_JSON
    kind = _error_type(flavour, payload) if payload is not NOT_JSON else "not-json"
    message = ""
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        message = str(payload["error"].get("message", ""))
    return Outcome(f"http-{status}: {kind}", _short(message, secrets))


def judge_transport(kind: str, message: str, *, secrets: tuple[Secret | str | None, ...] = ()) -> Outcome:
    """The verdict when no complete response came: a refused connection, a timeout, a reset before the headers."""
    return Outcome(f"transport: {kind}", _short(message, secrets))
