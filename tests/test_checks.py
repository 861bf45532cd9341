"""Selftests of every registered check, offline: recorded HTTP responses replayed through respx into a real Transport.

Each check has a conformant case (a capture from the reference gateway: outcome "passed") and at least one
deviant case (a capture from the gateway run with a --fault, an edited copy of a conformant capture, or a
real LiteLLM capture: outcome "failed", with a fragment of the message). The fixtures and how they were made
are described in tests/fixtures/http/README.md; tests/httpfixtures.py loads and replays them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from conformance.checks import CHECKS, load_all
from conformance.checks.registry import check
from conformance.exchange import WRONG_KEY
from conformance.probes import PROBES, PROBES_BY_ID, Probe
from conformance.results import CheckResult
from conformance.runner import ConformanceRun
from conformance.sse import decode_all
from conformance.target import MASK, Secret, Target
from tests.httpfixtures import (
    FIXTURE_MODEL,
    FIXTURES,
    Recorded,
    Replayer,
    fixture,
    load,
    parse,
    property_invalid_probe,
    property_valid_probe,
    rate_limit_probe,
)

load_all()

# Offline: any real connection attempt fails a test.
pytestmark = pytest.mark.usefixtures("no_network")

TEST_KEY = "sk-selftest-not-a-real-key-0123456789"
TARGET = Target("http://127.0.0.1:8787", Secret(TEST_KEY), model=FIXTURE_MODEL)

# A scenario is a fixture directory (one file per step, named for the step's role), or a composition of files
# from several directories: role -> file, or role -> files for an SDK step (one per request the SDK sends).
Steps = Mapping[str, str | tuple[str, ...]]
Edit = Callable[[dict[str, Recorded | list[Recorded]]], None]

SDK_ANTHROPIC: dict[str, str | tuple[str, ...]] = {
    "anthropic_messages_create": "messages_basic/json.txt",
    "anthropic_messages_stream": "messages_stream/stream.txt",
    "anthropic_tool_round_trip": ("tool_forced/tool_call.txt", "tool_forced/tool_result.txt"),
}
SDK_OPENAI: dict[str, str | tuple[str, ...]] = {
    "openai_chat_completion": ("openai_chat/json.txt", "openai_chat_stream/stream.txt"),
}
# The SDK probes send what the official clients send; they are answered with the captures of the probe
# requests that ask the same thing (same model, prompt and options).
COMPOSED: dict[str, Steps] = {
    "sdk_anthropic": SDK_ANTHROPIC,
    # A composition that leaves out some of its probe's steps is replayed with those steps only.
    "sdk_anthropic--invented-429-type": {"anthropic_messages_create": "messages_basic--invented-429-type/json.txt"},
    "sdk_anthropic--noncontiguous-indices": {
        "anthropic_messages_stream": "messages_stream--noncontiguous-indices/stream.txt",
    },
    "sdk_anthropic--wrong-stop-reason": {
        "anthropic_tool_round_trip": (
            "tool_forced--wrong-stop-reason/tool_call.txt",
            "tool_forced--wrong-stop-reason/tool_result.txt",
        ),
    },
    "sdk_openai": SDK_OPENAI,
    "sdk_openai--include-usage-ignored": {
        "openai_chat_completion": ("openai_chat/json.txt", "openai_chat_stream--include-usage-ignored/stream.txt"),
    },
    # Real LiteLLM 1.106.2 captures (/work/shared/gateways/litellm/samples/), copied verbatim.
    "messages_stream--litellm-mock": {
        "stream": "litellm/mock__msg_stream.txt",
        "json": "litellm/mock__msg_nonstream.txt",
    },
    "messages_basic--litellm-mock": {"json": "litellm/mock__msg_nonstream.txt"},
    "messages_stream--litellm-openai-upstream": {
        "stream": "litellm/openai-upstream__msg_stream.txt",
        "json": "litellm/openai-upstream__msg_nonstream.txt",
    },
    "error_wrong_key--litellm-mock": {"error": "litellm/mock__msg_wrong_key.txt"},
    "error_missing_key--litellm-no-prisma": {
        "error": "litellm/without-workarounds__no_key_without_prisma_installed.txt"
    },
    "models--litellm-mock": {"list": "litellm/mock__models_list.txt"},
}
# The scenarios that are not a probe of conformance.probes.PROBES (the suite builds them in its rate-limit and
# property tests), fixed to a few steps.
EXTRA_PROBES: dict[str, Probe] = {
    "rate_limits": rate_limit_probe(),
    "rate_limits--429-no-retry-after": rate_limit_probe(after_wait=False),
    "rate_limits--invented-429-type": rate_limit_probe(after_wait=False),
    "property_valid": property_valid_probe(),
    "property_invalid": property_invalid_probe(),
}


def probe_for(scenario: str) -> Probe:
    """The probe a scenario's fixtures answer: its own entry, else the probe named before `--`."""
    probe = EXTRA_PROBES.get(scenario) or EXTRA_PROBES.get(scenario.split("--", 1)[0])
    probe = probe or PROBES_BY_ID[scenario.split("--", 1)[0]]
    if scenario in COMPOSED:
        steps = tuple(step for step in probe.steps if step[0] in COMPOSED[scenario])
        probe = replace(probe, steps=steps)
    return probe


def recordings(scenario: str) -> dict[str, Recorded | list[Recorded]]:
    """The recorded responses of a scenario, by step role."""
    if scenario in COMPOSED:
        return {
            role: load(FIXTURES / files) if isinstance(files, str) else [load(FIXTURES / f) for f in files]
            for role, files in COMPOSED[scenario].items()
        }
    directory = FIXTURES / scenario
    if not directory.is_dir():
        raise AssertionError(f"no fixture directory {directory} (re-run tests/fixtures/http/capture.py?)")
    return {path.stem: load(path) for path in sorted(directory.glob("*.txt"))}


def judge(
    scenario: str,
    checks: Sequence[str] | None = None,
    *,
    edit: Edit | None = None,
    probe: Probe | None = None,
    required: Sequence[str] = (),
) -> list[CheckResult]:
    """Replay a scenario's steps offline in order and judge them with the given checks of its probe."""
    probe = probe or probe_for(scenario)
    recorded = recordings(scenario)
    if edit is not None:
        edit(recorded)
    with Replayer(TARGET) as replay:
        exchanges, observations = replay.send_steps(probe, recorded)
        assert len(replay.router.calls) == len(exchanges), "respx answered a request that is not a probe step"
        run = ConformanceRun(TARGET, transport=replay.transport, checks=checks, required=required)
        return run.judge(probe, exchanges, observations)


@functools.cache
def judged(scenario: str) -> dict[str, CheckResult]:
    """Every check of a scenario's probe on its unedited fixtures (replayed once per session: it is deterministic)."""
    return {r.check: r for r in judge(scenario)}


def judge_one(scenario: str, check_id: str, *, edit: Edit | None = None) -> CheckResult:
    """The one result of one check on a scenario (the check must be one of the probe's)."""
    results = judge(scenario, [check_id], edit=edit) if edit is not None else list(judged(scenario).values())
    found = [r for r in results if r.check == check_id]
    assert found, f"{check_id} is not a check of {probe_for(scenario).id}"
    return found[0]


def one(recorded: Recorded | list[Recorded]) -> Recorded:
    assert isinstance(recorded, Recorded)
    return recorded


# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One check judged on one scenario, with the exact outcome expected and a fragment of its message."""

    check: str
    scenario: str
    outcome: str
    fragment: str = ""
    label: str = ""  # tells apart several cases of one check and kind
    edit: Edit | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        kind = "conformant" if self.outcome == "passed" else "deviant"
        return f"{self.check}-{kind}" + (f"-{self.label}" if self.label else "")


def deviant(check_id: str, scenario: str, fragment: str, label: str = "") -> Case:
    return Case(check_id, scenario, "failed", fragment, label)


CONFORMANT_SCENARIOS = [
    *sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and "--" not in p.name and p.name != "litellm"),
    "sdk_anthropic",
    "sdk_openai",
]


def _conformant_cases() -> list[Case]:
    """Each check on the first conformant scenario whose probe has it."""
    cases: dict[str, Case] = {}
    order = [p.id for p in PROBES] + sorted(EXTRA_PROBES)
    for scenario in sorted(CONFORMANT_SCENARIOS, key=lambda s: order.index(s) if s in order else len(order)):
        for check_id in probe_for(scenario).checks:
            cases.setdefault(check_id, Case(check_id, scenario, "passed"))
    return list(cases.values())


CONFORMANT = [
    *_conformant_cases(),
    # A real capture that conforms: LiteLLM's /v1/models (translated to the Anthropic list shape).
    Case("models_list_matches_schema", "models--litellm-mock", "passed", label="litellm"),
]

DEVIANT = [
    # messages
    deviant("status_is_success", "messages_basic--invented-429-type", "expected HTTP 200, got 429"),
    deviant("content_type_is_json", "messages_basic--edit-content-type", "content-type is 'text/plain; charset=utf-8'"),
    deviant("has_request_id_header", "messages_basic--edit-no-request-id", "no request-id header"),
    deviant("has_request_id_header", "messages_basic--litellm-mock", "no request-id header", "litellm"),
    deviant("message_matches_schema", "messages_basic--edit-no-model", "does not match anthropic/message: model"),
    deviant("message_identity", "messages_basic--edit-role-user", "role is 'user', expected 'assistant'"),
    deviant("message_id_has_msg_prefix", "messages_basic--foreign-message-id", "does not start with msg_"),
    deviant("content_is_array", "messages_basic--edit-content-string", "content is a str"),
    deviant("stop_reason_valid", "messages_basic--edit-stop-reason-null", "stop_reason is None"),
    deviant("usage_is_sane", "messages_basic--edit-input-tokens-zero", "input_tokens is 0, expected a positive"),
    deviant("not_empty_success", "messages_basic--empty-success", "the reply is empty but stop_reason is end_turn"),
    deviant("reply_follows_instruction", "messages_basic--empty-success", "asked to repeat"),
    deviant("key_not_reflected", "error_wrong_key--edit-key-echoed", "the wrong key it was sent"),
    deviant("accepts_x_api_key", "auth_x_api_key--bearer-only", "expected HTTP 200, got 401"),
    deviant("accepts_bearer", "auth_bearer--key-refused", "expected HTTP 200, got 401"),
    # streaming
    deviant("stream_http_status_and_type", "messages_stream--invented-429-type", "expected HTTP 200, got 429"),
    deviant(
        "stream_http_status_and_type", "messages_stream--litellm-mock", "content-type is 'application/json'", "litellm"
    ),
    deviant("stream_event_names_match_type", "messages_stream--data-only", "missing-event-name"),
    deviant("stream_events_match_schema", "messages_stream--edit-role-user", "schema-violation"),
    deviant("stream_ends_with_message_stop", "messages_stream--missing-message-stop", "missing-message-stop"),
    deviant("stream_ends_with_message_stop", "messages_stream--stream-cut", "stream-truncated", "stream-cut"),
    deviant("stream_has_no_done_sentinel", "messages_stream--extra-done", "done-sentinel"),
    deviant("stream_block_indices_contiguous", "messages_stream--noncontiguous-indices", "block-index-not-contiguous"),
    deviant("stream_usage_present_and_cumulative", "messages_stream--missing-usage", "missing-usage"),
    deviant("stream_message_start_usage", "messages_stream--start-input-zero", "input_tokens is 0"),
    deviant("stream_message_start_usage", "messages_stream--litellm-openai-upstream", "input_tokens is 0", "litellm"),
    deviant("stream_grammar", "messages_stream--edit-duplicate-message-start", "duplicate-message-start"),
    deviant("stream_grammar_advisories", "tool_forced_stream--edit-start-input", "tool-input-start-not-empty"),
    deviant("stream_data_is_json", "messages_stream--empty-data-events", "no-data-field"),
    deviant("stream_framing_clean", "messages_stream--edit-unknown-field", "unknown-field"),
    deviant("stream_unknown_events", "messages_stream--edit-unknown-event", "unknown-event-type"),
    deviant("stream_in_band_error_well_formed", "messages_stream--edit-openai-error-event", "error-openai-shape"),
    deviant("stream_not_empty_success", "messages_stream--empty-success", "no content and stop_reason end_turn"),
    deviant("stream_matches_non_stream", "messages_stream--edit-json-output-tokens", "usage.output_tokens"),
    deviant("error_not_sent_as_stream", "error_before_stream--error-as-200", "in-band error event instead of a 4xx"),
    # semantics, tools, thinking, count_tokens
    deviant(
        "max_tokens_stop_reason", "max_tokens--edit-end-turn", "gave stop_reason 'end_turn', expected 'max_tokens'"
    ),
    deviant(
        "output_within_max_tokens", "max_tokens_stream--edit-output-tokens", "output_tokens 9 exceeds max_tokens 5"
    ),
    deviant("stop_sequence_honoured", "stop_sequences--drop-stop-sequences", "expected 'stop_sequence'"),
    deviant("tool_use_matches_tool", "tool_forced--edit-input", "input does not match the tool's input_schema"),
    deviant("tool_use_stop_reason", "tool_forced--wrong-stop-reason", "stop_reason is 'end_turn'"),
    deviant("tool_result_accepted", "tool_forced--edit-result-rejected", "expected HTTP 200, got 400"),
    deviant("thinking_block_signed", "thinking--unsigned-thinking", "has no signature"),
    deviant("thinking_round_trip_accepted", "thinking--unsigned-thinking", "expected HTTP 200, got 400"),
    deviant("count_tokens_matches_schema", "count_tokens--edit-schema", "count-tokens-response: input_tokens"),
    deviant("count_tokens_agrees_with_usage", "count_tokens--edit-count-doubled", "count_tokens says"),
    # models
    deviant("models_list_matches_schema", "models--edit-list-no-has-more", "anthropic/models-list: has_more"),
    deviant("models_paging", "models--edit-page-ids", "first_id/last_id are 'claude-not-on-this-page'"),
    deviant("model_matches_schema", "models--edit-model-no-type", "does not match anthropic/model: type"),
    # openai
    deviant("openai_status_is_success", "openai_chat--invented-429-type", "expected HTTP 200, got 429"),
    deviant("openai_completion_matches_schema", "openai_chat--edit-no-choices", "chat-completion: choices"),
    deviant("openai_error_envelope", "openai_chat--edit-fastapi-error", "does not match openai/error: error"),
    deviant("openai_stream_grammar", "openai_chat_stream--edit-chunk-id", "chunk-id-changed"),
    deviant("openai_stream_ends_with_done", "openai_chat_stream--missing-done", "without data: [DONE]"),
    deviant("openai_stream_usage_chunk", "openai_chat_stream--include-usage-ignored", "no chunk carried usage"),
    # errors and auth
    deviant("error_status_expected", "error_missing_key--no-auth", "expected HTTP 401, got 200"),
    deviant("error_status_expected", "error_wrong_key--litellm-mock", "expected HTTP 401, got 400", "litellm"),
    deviant("error_envelope_schema", "error_missing_max_tokens--openai-error-envelope", "OpenAI-shaped error envelope"),
    deviant("error_envelope_schema", "error_wrong_key--litellm-mock", "OpenAI-shaped error envelope", "litellm"),
    deviant("error_envelope_schema", "error_missing_key--litellm-no-prisma", "the error is not JSON", "litellm-500"),
    deviant(
        "error_type_matches_status",
        "error_missing_max_tokens--edit-api-error",
        "HTTP 400 carries error.type 'api_error'",
    ),
    deviant("error_has_request_id", "error_missing_max_tokens--edit-no-request-id", "no request-id header"),
    deviant("gateway_requires_key", "error_missing_key--no-auth", "served a request with no key"),
    # rate limits
    deviant("rate_limit_retry_after", "rate_limits--429-no-retry-after", "a 429 without retry-after"),
    deviant("rate_limit_envelope", "rate_limits--invented-429-type", "the 429 body does not match anthropic/error"),
    deviant("rate_limit_headers_reported", "rate_limits--invented-429-type", "no anthropic-ratelimit-* headers"),
    deviant("rate_limit_retry_after_honest", "rate_limits--no-wait", "expected HTTP 200-299, got 429"),
    # properties
    deviant(
        "property_valid_requests_served",
        "property_valid--missing-message-stop",
        "1 of 2 valid requests were not served correctly:\n- stream incomplete (eof)",
    ),
    deviant(
        "property_invalid_requests_rejected",
        "property_invalid--openai-error-envelope",
        "2 of 2 invalid requests were not rejected properly",
    ),
    # the official SDKs
    deviant("sdk_messages_create_works", "sdk_anthropic--invented-429-type", "the official SDK raised RateLimitError"),
    deviant(
        "sdk_stream_final_message_works", "sdk_anthropic--noncontiguous-indices", "the official SDK raised IndexError"
    ),
    deviant("sdk_tool_round_trip_works", "sdk_anthropic--wrong-stop-reason", "stop_reason 'end_turn'"),
    deviant("openai_sdk_chat_works", "sdk_openai--include-usage-ignored", "saw no usage chunk"),
]


def _repair_header(role: str, name: str, value: str | None) -> Edit:
    def edit(recorded: dict[str, Recorded | list[Recorded]]) -> None:
        recorded[role] = one(recorded[role]).with_header(name, value)

    return edit


def _repair_body(role: str, old: bytes, new: bytes) -> Edit:
    def change(body: bytes) -> bytes:
        assert old in body, f"{old!r} is not in the body"
        return body.replace(old, new)

    return _repair_with(role, change)


def _repair_with(role: str, change: Callable[[bytes], bytes]) -> Edit:
    def edit(recorded: dict[str, Recorded | list[Recorded]]) -> None:
        step = one(recorded[role])
        recorded[role] = step.with_body(change(step.body))

    return edit


def _shift_indices(body: bytes) -> bytes:
    """The noncontiguous-indices stream with its block indices renumbered from 0."""
    for old in range(1, 10):
        body = body.replace(f'"index":{old}'.encode(), f'"index":{old - 1}'.encode())
    return body


# The deviation taken out again (in memory): the same check on the same capture then passes, so the failures
# above are caused by the deviation and nothing else.
REPAIRED = [
    Case(
        "has_request_id_header",
        "messages_basic--edit-no-request-id",
        "passed",
        label="repaired",
        edit=_repair_header("json", "request-id", "req_01selftest"),
    ),
    Case(
        "message_id_has_msg_prefix",
        "messages_basic--foreign-message-id",
        "passed",
        label="repaired",
        edit=_repair_body("json", b'"id":"resp_', b'"id":"msg_'),
    ),
    Case(
        "stream_has_no_done_sentinel",
        "messages_stream--extra-done",
        "passed",
        label="repaired",
        edit=_repair_body("stream", b"data: [DONE]\n\n", b""),
    ),
    Case(
        "stream_framing_clean",
        "messages_stream--edit-unknown-field",
        "passed",
        label="repaired",
        edit=_repair_body("stream", b"x-trace: 1\n", b""),
    ),
    Case(
        "error_type_matches_status",
        "error_missing_max_tokens--edit-api-error",
        "passed",
        label="repaired",
        edit=_repair_body("error", b'"type":"api_error"', b'"type":"invalid_request_error"'),
    ),
    Case(
        "key_not_reflected",
        "error_wrong_key--edit-key-echoed",
        "passed",
        label="repaired",
        edit=_repair_body("error", WRONG_KEY.encode(), b"(redacted)"),
    ),
    Case(
        "rate_limit_retry_after",
        "rate_limits--429-no-retry-after",
        "passed",
        label="repaired",
        edit=_repair_header("burst-0", "retry-after", "1"),
    ),
    Case(
        "stream_block_indices_contiguous",
        "messages_stream--noncontiguous-indices",
        "passed",
        label="repaired",
        edit=_repair_with("stream", _shift_indices),
    ),
]


def _params(cases: Sequence[Case]) -> Iterator[object]:
    for case in cases:
        yield pytest.param(case, id=case.id)


@pytest.mark.parametrize("case", list(_params(CONFORMANT + DEVIANT + REPAIRED)))
def test_check(case: Case) -> None:
    result = judge_one(case.scenario, case.check, edit=case.edit)
    assert (result.outcome, case.fragment in result.message) == (case.outcome, True), (
        f"{case.check} on {case.scenario}: expected {case.outcome} with {case.fragment!r}, "
        f"got {result.outcome}: {result.message}"
    )
    # An SDK step is no single request: its failure has neither a curl line nor an exchange to show.
    if case.outcome == "failed" and not probe_for(case.scenario).id.startswith("sdk_"):
        assert result.evidence, "a failure carries evidence"
        assert (result.reproduce or "").startswith("curl "), result.reproduce


# Areas whose checks have their selftests, and a coverage test of their own, in another file.
SELFTESTS_ELSEWHERE = {
    "propagation": "tests/test_propagation_checks.py",
    "transport": "tests/test_transport_checks.py",
}


def test_every_check_has_a_conformant_and_a_deviant_case() -> None:
    """A check without selftests (a new one, say) fails here by name."""
    load_all()
    for area, path in SELFTESTS_ELSEWHERE.items():
        assert (Path(__file__).parent.parent / path).exists(), f"{area} checks' selftests are missing: {path}"
    conformant = {c.check for c in CONFORMANT}
    deviants = {c.check for c in DEVIANT}
    missing = {
        check_id: [kind for kind, have in (("conformant", conformant), ("deviant", deviants)) if check_id not in have]
        for check_id in sorted(CHECKS)
        if CHECKS[check_id].area not in SELFTESTS_ELSEWHERE
    }
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, "checks without a selftest case: " + "; ".join(
        f"{check_id} (no {' and no '.join(kinds)} case)" for check_id, kinds in missing.items()
    )
    unknown = sorted({c.check for c in CONFORMANT + DEVIANT + REPAIRED} - set(CHECKS))
    assert not unknown, f"selftest cases for checks that are not registered: {unknown}"


@pytest.mark.parametrize("scenario", CONFORMANT_SCENARIOS)
def test_conformant_scenario_passes_every_check_of_its_probe(scenario: str) -> None:
    """No false positives: a reference-gateway capture passes every check its probe applies."""
    results = list(judged(scenario).values())
    assert results, f"no checks judged {scenario}"
    bad = [f"{r.check}: {r.outcome} {r.message}" for r in results if r.outcome != "passed"]
    assert not bad, f"{scenario}: " + "; ".join(bad)


def test_openai_error_envelope_rejects_an_anthropic_envelope() -> None:
    result = judge_one("openai_chat--edit-anthropic-error", "openai_error_envelope")
    assert result.outcome == "failed", result.message


def test_a_cut_stream_keeps_the_events_received_before_the_cut() -> None:
    recorded = recordings("messages_stream--stream-cut")
    with Replayer(TARGET) as replay:
        exchanges, _ = replay.send_steps(PROBES_BY_ID["messages_stream"], recorded)
    stream = exchanges["stream"].stream
    assert stream is not None and stream.end_cause == "reset"
    assert [e.event for e in stream.events] == CUT_EVENTS


CUT_EVENTS = ["message_start", "content_block_start", "ping", "content_block_delta"]


def test_the_stream_cut_capture_holds_four_events_then_a_reset() -> None:
    recorded = fixture("messages_stream--stream-cut/stream.txt")
    assert (recorded.cut, recorded.curl_exit) == (True, 18)
    assert [e.event for e in decode_all(recorded.body)] == CUT_EVENTS


# ---------------------------------------------------------------- the runner's mapping of outcomes


def test_a_crashing_check_is_an_error_not_a_failure() -> None:
    @check(severity="must", area="messages", section="0")
    def selftest_crashing_check(ctx: object) -> None:
        """A throwaway check that crashes."""
        raise ZeroDivisionError(f"boom near {TEST_KEY}")

    try:
        probe = replace(PROBES_BY_ID["messages_basic"], checks=("selftest_crashing_check", "status_is_success"))
        crashed, passed = judge("messages_basic", probe=probe)
    finally:
        CHECKS.pop("selftest_crashing_check")
    assert (crashed.outcome, passed.outcome) == ("error", "passed")
    assert crashed.message == f"check crashed: ZeroDivisionError: boom near {MASK}"
    assert crashed.gating
    assert [e.title for e in crashed.evidence] == ["traceback"]
    assert TEST_KEY not in crashed.evidence[0].content


def test_a_failure_is_masked_and_reproducible() -> None:
    """A check's message never shows the caller's key, and the curl line carries $GATEWAY_API_KEY."""

    def reflect(recorded: dict[str, Recorded | list[Recorded]]) -> None:
        recorded["json"] = one(recorded["json"]).with_header("x-debug-api-key", TEST_KEY)

    result = judge_one("messages_basic", "key_not_reflected", edit=reflect)
    assert (result.outcome, result.message) == (
        "failed",
        "the response contains the caller's key (masked in this report)",
    )
    shown = result.message + (result.reproduce or "") + "".join(e.content for e in result.evidence)
    assert TEST_KEY not in shown
    assert MASK in shown
    assert '"x-api-key: $GATEWAY_API_KEY"' in (result.reproduce or "")


def test_an_optional_feature_declined_with_a_clean_404_is_unsupported() -> None:
    results = judge("count_tokens--count-tokens-404")
    assert [(r.check, r.outcome) for r in results] == [
        ("count_tokens_matches_schema", "unsupported"),
        ("count_tokens_agrees_with_usage", "unsupported"),
    ]
    assert all(r.message.startswith("the gateway declined it: HTTP 404 not_found_error") for r in results)
    assert not any(r.gating for r in results)


def test_a_required_feature_declined_is_a_failure() -> None:
    results = judge("count_tokens--count-tokens-404", required=["count_tokens"])
    assert {(r.outcome, r.severity) for r in results} == {("failed", "must")}
    assert all(
        r.message.startswith("required feature count_tokens: the gateway declined it: HTTP 404") for r in results
    )
    assert all(r.gating and r.evidence for r in results)


def test_a_404_is_not_unsupported_when_the_probe_is_not_optional() -> None:
    probe = replace(PROBES_BY_ID["count_tokens"], optional=False)
    result = judge("count_tokens--count-tokens-404", ["count_tokens_matches_schema"], probe=probe)[0]
    assert (result.outcome, "expected HTTP 200, got 404" in result.message) == ("failed", True)


def test_a_404_without_an_error_envelope_is_not_a_clean_decline() -> None:
    def html(recorded: dict[str, Recorded | list[Recorded]]) -> None:
        count = one(recorded["count"])
        recorded["count"] = count.with_header("content-type", "text/html").with_body(b"<h1>Not Found</h1>")

    result = judge("count_tokens--count-tokens-404", ["count_tokens_matches_schema"], edit=html)[0]
    assert (result.outcome, "expected HTTP 200, got 404: <h1>Not Found</h1>" in result.message) == ("failed", True)


def test_a_check_outside_the_probe_is_not_applied() -> None:
    assert judge("messages_basic", ["stream_grammar"]) == []


# ---------------------------------------------------------------- the fixtures and their loader


ALL_FIXTURES = sorted(FIXTURES.rglob("*.txt"))


# Scenarios only the runner tests and the xfail below use.
OTHER_SCENARIOS = ("count_tokens--count-tokens-404", "openai_chat--edit-anthropic-error", "messages_basic")


def test_every_fixture_loads_masks_the_key_and_is_small_and_is_used() -> None:
    scenarios = {c.scenario for c in CONFORMANT + DEVIANT + REPAIRED} | {*CONFORMANT_SCENARIOS, *OTHER_SCENARIOS}
    used: set[Path] = set()
    for scenario in scenarios:
        if scenario in COMPOSED:
            names = [n for v in COMPOSED[scenario].values() for n in ([v] if isinstance(v, str) else v)]
            used |= {FIXTURES / n for n in names}
        else:
            used |= set((FIXTURES / scenario).glob("*.txt"))
    unused = sorted(str(p.relative_to(FIXTURES)) for p in set(ALL_FIXTURES) - used)
    assert not unused, f"fixtures no test uses: {unused}"
    for path in ALL_FIXTURES:
        data = path.read_bytes()
        assert not re.search(rb"sk-(ant|ref)-", data) and TEST_KEY.encode() not in data, f"{path}: an unmasked key"
        load(path)
        assert len(data) < 8192, f"{path}: keep fixtures small"


def test_recorded_request_digests_match_what_the_probes_send() -> None:
    """A fixture answers exactly the request it was captured for: a changed probe request needs a re-capture."""
    recorded = {"json": load(FIXTURES / "messages_basic/json.txt")}
    recorded["json"] = replace(recorded["json"], comments=("probe request: POST /v1/messages sha256:0000000000000000",))
    with Replayer(TARGET) as replay, pytest.raises(AssertionError, match="was recorded for"):
        replay.send_steps(PROBES_BY_ID["messages_basic"], recorded)


def test_a_request_without_a_route_fails_the_replay() -> None:
    with Replayer(TARGET) as replay, pytest.raises(AssertionError, match="no recording was given"):
        replay.send_steps(PROBES_BY_ID["messages_stream"], {"stream": load(FIXTURES / "messages_stream/stream.txt")})


def test_the_loader_reads_the_litellm_capture_format() -> None:
    """Comment blocks, CRLF headers, the capture script's trailer, interim responses, several responses."""
    head = b"### REQUEST: POST /v1/messages\n### RESPONSE (curl -i, raw)\n"
    sse = b"event: message_stop\ndata: {}\n\n"
    chunked = parse(
        head + b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + sse + b"\n### curl exit: 0\n"
    )
    assert [(r.status, r.body, r.curl_exit) for r in chunked] == [(200, sse, 0)]
    assert chunked[0].comments[0] == "REQUEST: POST /v1/messages"

    sized = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}\n### curl exit: 0\n"
    assert [(r.status, r.reason, r.body, r.curl_exit) for r in parse(sized)] == [(400, "Bad Request", b"{}", 0)]

    several = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 301 Moved\ncontent-length: 0\n\n# then\nHTTP/1.1 200 OK\n\nbody"
    assert [(r.status, r.body, r.newline) for r in parse(several)] == [
        (100, b"", b"\r\n"),
        (301, b"", b"\n"),
        (200, b"body", b"\n"),
    ]
    cut = parse(b"### curl exit: 18\nHTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\nevent: ping\n")[0]
    assert cut.cut and cut.body == b"event: ping\n"
    for bad, problem in ((b"garbage", "expected an HTTP status line"), (b"HTTP/1.1 200 OK\r\nx\r\n\r\n", "colon")):
        with pytest.raises(ValueError, match=problem):
            parse(bad)


def test_a_fixture_round_trips_through_its_own_format() -> None:
    for name in ("messages_basic/json.txt", "messages_stream/stream.txt", "litellm/mock__msg_stream.txt"):
        recorded = load(FIXTURES / name)
        again = parse(recorded.to_bytes())[-1]
        assert (again.status, again.headers, again.body) == (recorded.status, recorded.headers, recorded.body)
