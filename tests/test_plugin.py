"""The pytest plugin, run with pytester against real reference gateways on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.gateway import RunningGateway
from tests.conftest import GatewayFactory

SUITE = ["-p", "no:locust", "-p", "no:cacheprovider", "--pyargs", "conformance.suites", "--max-examples", "2"]


def run_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, gateway: RunningGateway, *args: str
) -> tuple[pytest.RunResult, dict]:  # type: ignore[type-arg]
    report_dir = pytester.path / "report"
    monkeypatch.setenv("GATEWAY_API_KEY", gateway.api_key)
    result = pytester.runpytest(*SUITE, "--gateway-url", gateway.url, "--report-dir", str(report_dir), *args)
    report = (
        json.loads((report_dir / "conformance.json").read_text()) if (report_dir / "conformance.json").exists() else {}
    )
    return result, report


def failed_checks(report: dict) -> set[str]:  # type: ignore[type-arg]
    return {c["id"] for c in report["checks"] if c["outcome"] in ("failed", "error")}


def test_conformant_gateway_passes_and_writes_every_report(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, reference_gateway: RunningGateway
) -> None:
    result, report = run_suite(pytester, monkeypatch, reference_gateway)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert report["verdict"] == "conformant"
    assert failed_checks(report) == set()
    assert report["requests_sent"] > 30
    assert (pytester.path / "report" / "junit.xml").exists()
    assert (pytester.path / "report" / "report.html").exists()
    result.stdout.fnmatch_lines(["*CONFORMANT*"])


def test_deviant_gateway_fails_with_the_specific_check(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(faults=("missing-message-stop",))
    result, report = run_suite(pytester, monkeypatch, gateway)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert report["verdict"] == "non-conformant"
    assert "stream_ends_with_message_stop" in failed_checks(report)
    finding = next(
        c for c in report["checks"] if c["id"] == "stream_ends_with_message_stop" and c["outcome"] == "failed"
    )
    assert "message_stop" in finding["message"]
    assert finding["reproduce"].startswith("curl ")
    assert finding["section"] == "3.2"


def test_baseline_accepts_known_deviations_and_gates_only_regressions(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(faults=("extra-done",))
    baseline = pytester.path / "baseline.json"
    first, _ = run_suite(pytester, monkeypatch, gateway, "--write-baseline", str(baseline))
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    accepted = {entry["id"].split("@")[0] for entry in json.loads(baseline.read_text())["accepted"]}
    assert "stream_has_no_done_sentinel" in accepted
    second, report = run_suite(pytester, monkeypatch, gateway, "--baseline", str(baseline))
    assert second.ret == pytest.ExitCode.OK, second.stdout.str()
    assert report["verdict"] == "conformant"
    assert any(c["baselined"] for c in report["checks"])


def test_a_gateway_that_accepts_any_key_is_a_must_failure(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(faults=("no-auth",))
    result, report = run_suite(pytester, monkeypatch, gateway, "--checks", "auth")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "gateway_requires_key" in failed_checks(report)


def test_the_key_never_appears_in_output_or_reports(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, gateway_factory: GatewayFactory
) -> None:
    key = "sk-unique-conformance-key-7f3a9c2e41d8"
    gateway = gateway_factory(api_key=key, faults=("stream-cut",))
    result, _ = run_suite(pytester, monkeypatch, gateway)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert key not in result.stdout.str() + result.stderr.str()
    for path in (pytester.path / "report").rglob("*"):
        if path.is_file():
            assert key not in path.read_text(errors="replace"), path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "*--gateway-url*"),
        (("--gateway-url", "ftp://x"), "*http:// or https://*"),
        (("--gateway-url", "http://127.0.0.1:9", "--require", "teleport"), "*unknown feature*teleport*valid*"),
        (("--gateway-url", "http://127.0.0.1:9", "--checks", "nope"), "*unknown check or area*nope*"),
        (("--gateway-url", "http://127.0.0.1:9", "--baseline", "missing.json"), "*baseline*"),
    ],
    ids=["no-url", "bad-scheme", "bad-feature", "bad-check", "missing-baseline"],
)
def test_misconfiguration_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], message: str
) -> None:
    monkeypatch.delenv("GATEWAY_URL", raising=False)
    result = pytester.runpytest(*SUITE, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_the_plugin_is_inert_in_other_test_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    assert True\n")
    result = pytester.runpytest("-p", "no:locust")
    result.assert_outcomes(passed=1)


def test_unreachable_gateway_is_reported_not_crashed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_API_KEY", "k")
    report_dir = pytester.path / "r"
    result = pytester.runpytest(
        *SUITE,
        "--gateway-url",
        "http://127.0.0.1:9",
        "--report-dir",
        str(report_dir),
        "--connect-timeout",
        "1",
        "--checks",
        "messages",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads(Path(report_dir / "conformance.json").read_text())
    status = next(c for c in report["checks"] if c["id"] == "status_is_success")
    assert status["outcome"] == "failed"
    assert "no response" in status["message"]
    assert "Traceback" not in result.stdout.str()
