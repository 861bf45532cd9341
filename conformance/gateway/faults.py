"""The registry of named deviations the reference gateway can serve on purpose (protocol.md section 7)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from conformance.errors import HarnessError

__all__ = [
    "FAULTS",
    "HOSTILE_FAULTS",
    "Fault",
    "HostileFault",
    "describe_faults",
    "describe_hostile_faults",
    "validate_fault_names",
]


@dataclass(frozen=True, slots=True)
class Fault:
    """One deliberate deviation: its name, the protocol.md section 7 item it reproduces, and what it does."""

    name: str
    item: int
    summary: str


_ALL: tuple[Fault, ...] = (
    Fault("data-only", 1, "SSE frames carry only `data:` lines, no `event:` lines (official SDKs see zero events)"),
    Fault("extra-done", 2, "`data: [DONE]` is sent after `event: message_stop`"),
    Fault("done-instead-of-stop", 2, "the stream ends with `data: [DONE]` instead of `event: message_stop`"),
    Fault("missing-message-stop", 3, "the stream ends after `message_delta`, with no `message_stop`"),
    Fault(
        "stream-cut",
        3,
        "the connection is closed abruptly after N events (--cut-after-events, default 4): no end marker, "
        "unterminated chunked body (Anthropic and OpenAI streams)",
    ),
    Fault(
        "empty-success",
        4,
        "no content at all: message_start, message_delta end_turn, message_stop (non-streaming: `content: []`)",
    ),
    Fault(
        "error-as-200",
        6,
        "errors on a `stream: true` request to /v1/messages are sent as HTTP 200 + `event: error` instead of 4xx/5xx",
    ),
    Fault(
        "openai-error-envelope",
        7,
        "errors on the Anthropic endpoints use the OpenAI envelope {error:{message,type,param,code}}",
    ),
    Fault(
        "invented-429-type",
        8,
        "429s carry error.type `rate_limit_exceeded`; without --rate-limit-rpm every Nth generation request "
        "(--fault-every, default 2) is answered 429",
    ),
    Fault(
        "429-no-retry-after",
        9,
        "429s carry no `retry-after`; without --rate-limit-rpm every Nth generation request (--fault-every, "
        "default 2) is answered 429",
    ),
    Fault("missing-usage", 10, "`message_delta` has no `usage` object"),
    Fault("start-input-zero", 10, "`message_start` reports input_tokens 0 and `message_delta` only output_tokens"),
    Fault("noncontiguous-indices", 12, "content-block indices start at 1 instead of 0 (Python SDK: IndexError)"),
    Fault("wrong-stop-reason", 13, "stop_reason `end_turn` on a turn that ends with a tool_use block"),
    Fault("drop-stop-sequences", 14, "`stop_sequences` is ignored: the full reply with stop_reason end_turn"),
    Fault("unsigned-thinking", 15, "thinking blocks carry an empty signature (the next turn then fails with 400)"),
    Fault("foreign-message-id", 16, "message ids are prefixed `resp_` instead of `msg_`"),
    Fault("bearer-only", 17, "only `Authorization: Bearer` is read; `x-api-key` is ignored (401)"),
    Fault("no-auth", 17, "any key, or none, is accepted"),
    Fault("count-tokens-404", 18, "/v1/messages/count_tokens answers 404 not_found_error"),
    Fault("empty-data-events", 19, "a named event with no `data:` line (`event: content_block_delta` + blank line)"),
    Fault("include-usage-ignored", 20, "OpenAI streams send no usage chunk even with stream_options.include_usage"),
    Fault("missing-done", 20, "OpenAI streams end without `data: [DONE]`"),
)

FAULTS: Mapping[str, Fault] = MappingProxyType({fault.name: fault for fault in _ALL})


@dataclass(frozen=True, slots=True)
class HostileFault:
    """A hostile or broken behaviour (no protocol deviation): what the gateway does and what the harness reports."""

    name: str
    finding: str  # the TransportError kind, or the check, that reports it (docs/hostile-gateways.md)
    summary: str


# Served by conformance/gateway/hostile.py, to every /v1/ request, instead of the normal answer.
_HOSTILE: tuple[HostileFault, ...] = (
    HostileFault("drip", "timeout-total / timeout-idle", "the answer one byte every 0.2 s, without end"),
    HostileFault("drip-headers", "timeout-first-byte", "the status line and headers one byte every 0.2 s"),
    HostileFault("endless-ping", "timeout-total / too-many-events", "message_start, then a ping every 10 ms forever"),
    HostileFault("never-answer", "timeout-first-byte", "reads the request and never answers"),
    HostileFault("huge-body", "too-large", "a 200 MB answer (one JSON body, or 64 KB text deltas)"),
    HostileFault("gzip-bomb", "too-large", "content-encoding gzip: 1 MB on the wire that inflates to 1 GiB"),
    HostileFault("invalid-utf8", "not JSON / invalid-utf8", "the answer's text holds bytes that are not UTF-8"),
    HostileFault(
        "html-error-page", "HTTP 502, not JSON", "502 with an HTML page that dumps the request headers (key included)"
    ),
    HostileFault("non-json-body", "not JSON / data-not-json", "200 application/json (or SSE data) that is plain text"),
    HostileFault("tcp-reset", "reset", "headers and part of the body, then a TCP RST (SO_LINGER 0)"),
    HostileFault("truncated-chunked", "truncated-chunked", "a chunk announced 1024 bytes long, 16 sent, then FIN"),
    HostileFault("not-http", "protocol-error", "answers with bytes that are not an HTTP status line"),
    HostileFault(
        "redirect-cross-origin",
        "redirect-cross-origin",
        "307 to the same path on 127.0.0.2 (another origin), where a recording server logs what it receives",
    ),
)

HOSTILE_FAULTS: Mapping[str, HostileFault] = MappingProxyType({fault.name: fault for fault in _HOSTILE})


def validate_fault_names(names: Iterable[str]) -> tuple[str, ...]:
    """The names, deduplicated in order; a HarnessError listing the valid names if one is unknown."""
    chosen: list[str] = []
    for name in names:
        if name not in FAULTS and name not in HOSTILE_FAULTS:
            valid = ", ".join([*FAULTS, *HOSTILE_FAULTS])
            raise HarnessError(f"unknown fault {name!r}; valid faults: {valid}")
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def describe_faults() -> str:
    """One line per fault: name, section 7 item, summary (what `--fault list` prints)."""
    width = max(len(name) for name in FAULTS)
    return "\n".join(f"{f.name:<{width}}  section 7 item {f.item:>2}: {f.summary}" for f in FAULTS.values())


def describe_hostile_faults() -> str:
    """One line per hostile fault: name, what the harness reports, summary."""
    width = max(len(name) for name in HOSTILE_FAULTS)
    return "\n".join(f"{f.name:<{width}}  hostile ({f.finding}): {f.summary}" for f in HOSTILE_FAULTS.values())
