"""The load tests' plain modules: histograms, metrics merging, verdicts, pacing, budgets, retry-after, the gate.

None of these import Locust (which monkey-patches the process on import); the Locust runs themselves are in
test_loadtests_runs.py, each in a child process.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from conformance.errors import HarnessError
from conformance.stream import StreamReader
from conformance.target import Secret, Target
from loadtests.budget import Budget, CostEstimate, split
from loadtests.metrics import Histogram, Metrics, Sample, truncation_cause
from loadtests.outcomes import GatewayFailure, body_validator, judge_body, judge_status, judge_stream
from loadtests.pacing import Pacer, ramp
from loadtests.ratelimits import grade_retry_after, sdk_delay
from loadtests.reports import console_text, write_reports
from loadtests.run import LoadRun, prepare_requests, reply_text
from loadtests.settings import SCENARIOS, LoadSettings, Thresholds, add_arguments, settings_from_options
from loadtests.thresholds import evaluate, ratelimit_verdict

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPTS = ROOT / "tests" / "transcripts"
KEY = "sk-test-load-secret-0123456789"


def headers(values: dict[str, str]):  # type: ignore[no-untyped-def]
    """A header lookup like WireResponse.header."""
    return lambda name: values.get(name)


# ---------------------------------------------------------------------------- histogram


def test_histogram_percentiles_are_within_a_tenth_of_a_percent_of_the_exact_ones() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(4.0, 0.6) for _ in range(20_000)]
    histogram = Histogram()
    histogram.add_many(values)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.95, 0.99, 1.0):
        exact = ordered[max(1, math.ceil(q * len(values))) - 1]
        estimate = histogram.percentile(q)
        assert estimate is not None
        assert abs(estimate - exact) <= 0.001 * exact + 1e-9, (q, exact, estimate)
    assert histogram.count == len(values)
    assert histogram.mean == pytest.approx(sum(values) / len(values))
    assert histogram.minimum == min(values) and histogram.maximum == max(values)


def test_histogram_zero_bucket_and_empty() -> None:
    histogram = Histogram()
    assert histogram.percentile(0.5) is None
    assert histogram.describe()["p50"] is None
    histogram.add_many([0.0, 0.0, 0.0, 10.0])
    assert histogram.percentile(0.5) == 0.0
    assert histogram.percentile(1.0) == pytest.approx(10.0, rel=0.001)
    with pytest.raises(ValueError):
        histogram.percentile(0)


def test_merged_histograms_equal_one_histogram_of_all_samples() -> None:
    rng = random.Random(3)
    a_values = [rng.uniform(1, 100) for _ in range(500)]
    b_values = [rng.uniform(50, 500) for _ in range(700)]
    a, b, both = Histogram(), Histogram(), Histogram()
    a.add_many(a_values)
    b.add_many(b_values)
    both.add_many(a_values + b_values)
    merged = Histogram.from_wire(json.loads(json.dumps(a.to_wire())))
    merged.merge(Histogram.from_wire(b.to_wire()))
    assert merged.buckets == both.buckets
    assert (merged.count, merged.minimum, merged.maximum) == (both.count, both.minimum, both.maximum)
    assert merged.total == pytest.approx(both.total)
    assert merged.describe() == both.describe()


# ---------------------------------------------------------------------------- metrics


def sample(**fields: object) -> Sample:
    base: dict[str, object] = {"kind": "anthropic-stream", "ttfb_ms": 2.0, "ttft_ms": 80.0, "e2e_ms": 215.0}
    base.update(fields)
    return Sample(**base)  # type: ignore[arg-type]


def test_metrics_count_failures_truncation_and_tokens() -> None:
    metrics = Metrics()
    metrics.record(sample(stream=True, gaps_s=(0.015, 0.015), output_tokens=10, input_tokens=19))
    metrics.record(sample(stream=True, failure="stream-truncated: reset", truncated="reset", gaps_s=(0.015,)))
    metrics.record(sample(stream=True, failure="in-band-error: overloaded_error"))
    metrics.record(sample(kind="openai", failure="http-429: requests", rate_limited=2, waited_ms=1500.0))
    summary = metrics.summary(duration_s=2.0)
    assert summary["requests"] == 4 and summary["failed"] == 3
    assert summary["failures"] == {
        "http-429: requests": 1,
        "in-band-error: overloaded_error": 1,
        "stream-truncated: reset": 1,
    }
    assert summary["streams"] == {
        "total": 3,
        "complete": 1,
        "truncated": {"eof": 0, "reset": 1, "timeout": 0},
        "truncated_total": 1,
        "truncated_ratio": pytest.approx(1 / 3, abs=1e-6),
    }
    assert summary["latency_ms"]["itl"]["count"] == 3
    assert summary["tokens"]["output"] == 10 and summary["tokens"]["input"] == 19
    # 10 tokens over the 135 ms after the first one.
    assert summary["tokens"]["output_per_s_per_stream"]["p50"] == pytest.approx(10 / 0.135, rel=0.002)
    assert summary["rate_limit"]["responses_429"] == 2 and summary["rate_limit"]["requests_hit"] == 1
    assert summary["rate_limit"]["waited_ms"]["p50"] == pytest.approx(1500.0, rel=0.001)
    assert summary["by_kind"] == {
        "anthropic-stream": {"requests": 3, "failed": 2},
        "openai": {"requests": 1, "failed": 1},
    }


def test_worker_snapshots_merged_on_the_master_equal_the_sum_over_workers() -> None:
    rng = random.Random(11)
    workers = [Metrics(), Metrics()]
    everything = Metrics()
    for i in range(300):
        s = sample(ttft_ms=rng.uniform(70, 120), gaps_s=(rng.uniform(0.010, 0.020),), stream=True, output_tokens=5)
        workers[i % 2].record(s)
        everything.record(s)
    workers[0].grade_retry_after("present")
    everything.grade_retry_after("present")
    workers[1].record(sample(failure="schema-violation", detail="first", curl="curl one"))
    everything.record(sample(failure="schema-violation", detail="first", curl="curl one"))
    workers[0].record(sample(failure="schema-violation", detail="second", curl="curl two"))
    everything.record(sample(failure="schema-violation", detail="second", curl="curl two"))
    master = Metrics()
    for worker in reversed(workers):
        # Shipped in two reports, as a worker does every few seconds.
        master.merge_wire(json.loads(json.dumps(worker.take())))
        assert worker.requests == 0
        master.merge_wire(worker.take())
    assert master.summary(duration_s=1.0) == everything.summary(duration_s=1.0)
    assert master.summary()["failure_examples"] == {"schema-violation": {"detail": "first", "curl": "curl one"}}


def test_truncation_cause_families() -> None:
    assert truncation_cause("eof") == "eof"
    assert truncation_cause("reset") == "reset"
    assert truncation_cause("timeout-idle") == "timeout"
    assert truncation_cause("timeout-total") == "timeout"


# ---------------------------------------------------------------------------- verdicts


def read_transcript(name: str, *, cause: str = "eof") -> tuple[str, object]:
    index = json.loads((TRANSCRIPTS / "index.json").read_text())
    flavour = index[name]["flavour"]
    reader = StreamReader(flavour, t_start=0.0, keep_events=False, expect_usage=False)
    data = (TRANSCRIPTS / name).read_bytes()
    reader.feed(data, 0.01)
    return flavour, reader.close(0.02, cause=cause)


TRANSCRIPT_INDEX = json.loads((TRANSCRIPTS / "index.json").read_text())


@pytest.mark.parametrize("name", sorted(TRANSCRIPT_INDEX))
def test_every_recorded_transcript_gets_the_verdict_its_grammar_findings_imply(name: str) -> None:
    expected = TRANSCRIPT_INDEX[name]
    _flavour, result = read_transcript(name)
    outcome = judge_stream(result)  # type: ignore[arg-type]
    if expected["errored"]:
        assert outcome.failure is not None and outcome.failure.startswith("in-band-error: ")
    elif not expected["complete"]:
        assert outcome.failure == "stream-truncated: eof"
        assert outcome.truncated == "eof"
    elif any(v.severity == "must" for v in result.violations):  # type: ignore[attr-defined]
        assert outcome.failure is not None
        assert outcome.failure == "schema-violation" or outcome.failure.startswith("grammar: ")
    else:
        assert outcome.ok, outcome


def test_stream_verdict_names() -> None:
    assert judge_stream(read_transcript("anthropic/basic.sse")[1]).ok  # type: ignore[arg-type]
    outcome = judge_stream(read_transcript("anthropic/error_overloaded.sse")[1])  # type: ignore[arg-type]
    assert outcome.failure == "in-band-error: overloaded_error"
    outcome = judge_stream(read_transcript("anthropic-deviations/03_cut_mid_block.sse", cause="reset")[1])  # type: ignore[arg-type]
    assert (outcome.failure, outcome.truncated) == ("stream-truncated: reset", "reset")
    outcome = judge_stream(read_transcript("openai-deviations/20_no_done.sse", cause="timeout-idle")[1])  # type: ignore[arg-type]
    assert outcome.failure == "stream-truncated: timeout"
    outcome = judge_stream(read_transcript("openai/basic.sse")[1])  # type: ignore[arg-type]
    assert outcome.ok
    failure = GatewayFailure("stream-truncated: eof", "ended by eof after 5 events")
    assert repr(failure) == "stream-truncated: eof"  # Locust groups its failure table by repr
    assert "ended by eof" in str(failure)


def sse(*payloads: dict[str, object]) -> bytes:
    """An Anthropic event stream of these payloads, each named after its type."""
    return b"".join(f"event: {p['type']}\ndata: {json.dumps(p)}\n\n".encode() for p in payloads)


def test_schema_violation_in_a_stream_is_a_failure() -> None:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "m"}
    message |= {"stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": "many", "output_tokens": 1}}
    stream = sse(
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 1},
        },
        {"type": "message_stop"},
    )
    reader = StreamReader("anthropic", t_start=0.0, keep_events=False)
    reader.feed(stream, 0.001)
    outcome = judge_stream(reader.close(0.002))
    assert outcome.failure == "schema-violation"
    assert "input_tokens" in outcome.detail


def test_non_streaming_and_error_verdicts_mask_the_key() -> None:
    good = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "hi"}],
        "model": "m",
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    outcome = judge_body("anthropic", json.dumps(good).encode(), validator=body_validator("anthropic"))
    assert outcome.ok and (outcome.output_tokens, outcome.input_tokens) == (1, 3)
    bad = dict(good, content="hi")
    outcome = judge_body("anthropic", json.dumps(bad).encode(), validator=body_validator("anthropic"))
    assert outcome.failure == "schema-violation"
    assert judge_body("openai", b"<html>", validator=None).failure == "body-not-json"
    envelope = {"type": "error", "error": {"type": "rate_limit_error", "message": f"slow down {KEY}"}}
    outcome = judge_status("anthropic", 429, json.dumps(envelope).encode(), secrets=(Secret(KEY),))
    assert outcome.failure == "http-429: rate_limit_error"
    assert KEY not in outcome.detail and "***" in outcome.detail
    assert judge_status("openai", 500, b"oops").failure == "http-500: not-json"
    openai_429 = {"error": {"message": "slow", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
    assert judge_status("openai", 429, json.dumps(openai_429).encode()).failure == "http-429: rate_limit_exceeded"


# ---------------------------------------------------------------------------- pacing


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_open_pacing_counts_latency_from_the_scheduled_send() -> None:
    clock = FakeClock()
    pacer = Pacer(2.0, open_loop=True, clock=clock)  # a send every 0.5 s
    assert pacer.delay() == 0.0
    assert pacer.take() == 100.0
    assert pacer.delay() == pytest.approx(0.5)
    clock.now = 101.7  # the previous request took 1.7 s: sends at 100.5, 101.0, 101.5 are overdue
    assert pacer.delay() == 0.0
    assert pacer.take() == 100.5  # latency counts from when it should have gone out
    assert pacer.take() == 101.0
    assert pacer.take() == 101.5
    assert pacer.delay() == pytest.approx(0.3)


def test_closed_pacing_and_back_to_back_and_ramp() -> None:
    clock = FakeClock()
    pacer = Pacer(2.0, open_loop=False, clock=clock)
    assert pacer.take() == 100.0
    clock.now = 101.7
    assert pacer.take() == 101.7  # constant throughput: latency from the actual send
    assert pacer.delay() == pytest.approx(0.5)
    assert Pacer(0.0, clock=clock).delay() == 0.0
    rate = ramp(1.0, 0.5, 3.0)
    assert [rate(t) for t in (0, 2, 10)] == [1.0, 2.0, 3.0]
    phased = Pacer(2.0, phase=0.5, clock=clock)
    assert phased.delay() == pytest.approx(0.25)


# ---------------------------------------------------------------------------- budget


def test_budget_reserves_the_worst_case_and_settles_with_usage() -> None:
    spent: list[bool] = []
    budget = Budget(10, token_budget=200, on_spent=lambda: spent.append(True))
    assert budget.acquire(80) and budget.acquire(80)
    assert not budget.acquire(80)  # 40 tokens left: a third worst case would not fit
    assert budget.spent and not spent  # two requests are still in flight
    budget.settle(80, 30)
    assert not spent
    budget.settle(80, None)  # unknown usage keeps the whole reservation
    assert spent == [True]
    assert budget.tokens_used == 110
    assert not budget.acquire(1)
    assert spent == [True]  # announced once


def test_request_budget_and_split() -> None:
    budget = Budget(2)
    assert budget.acquire(0) and budget.acquire(0) and not budget.acquire(0)
    assert [split(201, 2, i) for i in range(2)] == [101, 100]
    assert sum(split(1000, 7, i) or 0 for i in range(7)) == 1000
    assert split(None, 3, 1) is None
    cost = CostEstimate(max_requests=100, max_tokens=64, prompt_tokens=19, token_budget=5000)
    assert cost.worst_case_tokens == 5000
    assert "100 requests x (64 max_tokens + ~19 prompt tokens) = 8300 tokens" in cost.describe()


# ---------------------------------------------------------------------------- retry-after


def test_retry_after_grades() -> None:
    assert grade_retry_after(headers({"retry-after": "7"})).grade == "present"
    assert grade_retry_after(headers({})).grade == "missing"
    assert grade_retry_after(headers({"retry-after": "soon"})).grade == "malformed"
    assert grade_retry_after(headers({"retry-after": "120"})).grade == "out-of-range"
    assert grade_retry_after(headers({"retry-after": "0"})).grade == "out-of-range"
    when = datetime(2030, 1, 1, tzinfo=UTC)
    date = format_datetime(when + timedelta(seconds=30), usegmt=True)
    graded = grade_retry_after(headers({"retry-after": date}), now=when.timestamp())
    assert graded.grade == "present" and graded.seconds == pytest.approx(30)
    missing = grade_retry_after(headers({"x-should-retry": "true"}))
    assert "x-should-retry: true" in missing.describe()


def test_sdk_delay_follows_the_python_sdk() -> None:
    assert sdk_delay(headers({"retry-after-ms": "250"}), 0) == pytest.approx(0.25)
    assert sdk_delay(headers({"retry-after": "3"}), 0) == 3.0
    # Not honoured (absent, or over 60 s): min(0.5 * 2^n, 8) * (1 - 0.25 * random)
    assert sdk_delay(headers({}), 0, rand=lambda: 0.0) == 0.5
    assert sdk_delay(headers({"retry-after": "600"}), 2, rand=lambda: 1.0) == pytest.approx(1.5)
    assert sdk_delay(headers({}), 10, rand=lambda: 0.0) == 8.0


# ---------------------------------------------------------------------------- gate


def summary_with(**overrides: object) -> dict[str, object]:
    metrics = Metrics()
    for _ in range(99):
        metrics.record(sample(stream=True, gaps_s=(0.015,)))
    metrics.record(sample(stream=True, failure="stream-truncated: eof", truncated="eof"))
    summary = metrics.summary(duration_s=1.0)
    summary.update(overrides)
    return summary


def test_gate_breaches() -> None:
    summary = summary_with()
    assert evaluate(summary, Thresholds(max_fail_ratio=0.02, max_truncated_ratio=0.02), scenario="latency") == []
    names = {b.name for b in evaluate(summary, Thresholds(), scenario="latency")}
    assert names == {"truncated_ratio"}  # 1 % failed is within the default 0.01
    strict = Thresholds(max_fail_ratio=0.0, max_p95_ttft_ms=50, max_p95_itl_ms=20, max_truncated_ratio=0.0)
    breaches = {b.name: b for b in evaluate(summary, strict, scenario="latency")}
    assert set(breaches) == {"fail_ratio", "p95_ttft_ms", "truncated_ratio"}
    assert "stream-truncated: eof x1" in breaches["fail_ratio"].message
    assert evaluate({"requests": 0}, Thresholds(), scenario="latency")[0].name == "requests"


def test_ratelimit_gate_ignores_429s_but_grades_retry_after() -> None:
    metrics = Metrics()
    for _ in range(10):
        metrics.record(sample())
    metrics.record(sample(failure="http-429: rate_limit_error", rate_limited=1))
    metrics.grade_retry_after("present")
    metrics.grade_honesty("passed")
    summary = metrics.summary(duration_s=1.0)
    assert evaluate(summary, Thresholds(max_fail_ratio=0.0), scenario="ratelimit") == []
    assert ratelimit_verdict(summary["rate_limit"]) == ("honest", [])
    metrics.grade_retry_after("missing")
    metrics.grade_honesty("failed")
    verdict, problems = ratelimit_verdict(metrics.summary()["rate_limit"])
    assert verdict == "failing" and len(problems) == 2
    assert ratelimit_verdict({"responses_429": 0})[0] == "no-429"


# ---------------------------------------------------------------------------- settings and requests


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_settings_from_options_and_scenario_defaults() -> None:
    settings = settings_from_options(parse("--scenario", "termination"))
    assert settings.mix == SCENARIOS["termination"].mix and settings.sdk_retries == 2
    assert settings_from_options(parse("--scenario", "ratelimit")).sdk_retries == 0
    settings = settings_from_options(parse("--mix", "openai=2,anthropic-stream", "--retries-429", "0"))
    assert settings.mix == (("openai", 2.0), ("anthropic-stream", 1.0)) and settings.sdk_retries == 0
    namespace = parse()
    namespace.csv_prefix = "reports/x/locust"
    assert settings_from_options(namespace).report_prefix == "reports/x/locust_llm"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--mix", "anthropic-strem=1"), "valid kinds"),
        (("--mix", "openai=x"), "must be a number"),
        (("--max-requests", "0"), "bounded"),
        (("--user-rps", "-1"), "user-rps"),
        (("--max-fail-ratio", "2"), "ratio"),
        (("--scenario", "ratelimit", "--user-rps", "0"), "ramps"),
    ],
)
def test_invalid_settings_are_usage_errors(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(HarnessError, match=message):
        settings_from_options(parse(*argv))


def test_prepared_requests_carry_the_key_only_in_headers() -> None:
    target = Target("http://127.0.0.1:9", Secret(KEY))
    settings = LoadSettings(scenario=SCENARIOS["mixed"], reply_words=5, max_tokens=32)
    prepared = prepare_requests(settings, target)
    assert set(prepared) == {"anthropic-stream", "anthropic", "openai-stream", "openai"}
    assert prepared["anthropic-stream"].headers["x-api-key"] == KEY
    assert prepared["openai"].headers["authorization"] == f"Bearer {KEY}"
    for request in prepared.values():
        assert KEY.encode() not in request.body
        assert reply_text(5).encode() in request.body
        assert request.reserve_tokens == request.prompt_tokens + 32
    assert b'"stream_options":{"include_usage":true}' in prepared["openai-stream"].body
    assert '-H "x-api-key: $GATEWAY_API_KEY"' in prepared["anthropic"].curl
    assert '-H "authorization: Bearer $GATEWAY_API_KEY"' in prepared["openai-stream"].curl
    assert all(KEY not in request.curl for request in prepared.values())
    assert KEY not in repr(target)
    run = LoadRun(settings, target, request_share=7)
    assert run.budget.requests_left == 7 and "cost guard" in run.cost.describe()


def test_written_reports_mask_the_key(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.record(sample(failure=f"http-401: authentication_error {KEY}"))
    report = {
        "scenario": "latency",
        "host": "http://127.0.0.1:9",
        "duration_s": 1.0,
        "thresholds": Thresholds().as_dict(),
        "summary": metrics.summary(duration_s=1.0),
        "breaches": [],
    }
    paths = write_reports(report, tmp_path / "llm", secrets=[Secret(KEY)])
    assert [p.suffix for p in paths] == [".json", ".csv", ".html"]
    for path in paths:
        text = path.read_text()
        assert KEY not in text and "***" in text
    assert "TTFT" in (tmp_path / "llm.csv").read_text()
    assert "gate passed" in console_text(report)


def test_plain_modules_do_not_import_locust_or_gevent() -> None:
    code = (
        "import sys\n"
        "import loadtests.settings, loadtests.metrics, loadtests.outcomes, loadtests.pacing, loadtests.budget\n"
        "import loadtests.ratelimits, loadtests.thresholds, loadtests.reports, loadtests.run, loadtests.ci\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent', 'geventhttpclient')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)
