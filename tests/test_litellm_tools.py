"""The LiteLLM launcher's pure parts (tools/litellm/run.py): config, environment, ports, cleanup, report reading.

The end-to-end run (a 750 MB install and a few minutes) is `nox -s litellm`, not part of these tests.
"""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

LAUNCHER = Path(__file__).resolve().parents[1] / "tools" / "litellm" / "run.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("litellm_launcher", LAUNCHER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


run = _load()
URLS = {"upstream": "http://127.0.0.1:4401", "limited": "http://127.0.0.1:4402"}


def _flow_mapping(line: str) -> dict[str, object]:
    """`litellm_params: {model: "x", api_base: "y"}` -> dict (the generator writes JSON scalars)."""
    inner = line.split(":", 1)[1].strip()
    return json.loads(re.sub(r"([{,]\s*)(\w+):", r'\1"\2":', inner))


def test_config_routes_reach_the_reference_gateway() -> None:
    text = run.litellm_config(run.ROUTES, URLS)
    names = re.findall(r'- model_name: "([^"]+)"', text)
    assert names == [r.name for r in run.ROUTES]
    params = [_flow_mapping(line) for line in text.splitlines() if "litellm_params:" in line]
    by_name = dict(zip(names, params, strict=True))
    assert by_name["ref-openai"] == {
        "model": "openai/claude-sonnet-4-6",
        "api_base": "http://127.0.0.1:4401/v1",
        "api_key": "os.environ/REF_GATEWAY_API_KEY",
    }
    assert by_name["ref-anthropic"] == {
        "model": "anthropic/claude-sonnet-4-6",
        "api_base": "http://127.0.0.1:4401",
        "api_key": "os.environ/REF_GATEWAY_API_KEY",
    }
    assert by_name["ref-anthropic-limited"]["api_base"] == "http://127.0.0.1:4402"
    assert by_name["ref-openai-limited"]["api_base"] == "http://127.0.0.1:4402/v1"


def test_config_keeps_the_closed_network_settings_and_no_secret() -> None:
    text = run.litellm_config(run.ROUTES, URLS)
    for setting in (
        "telemetry: false",
        "num_retries: 0",
        "use_chat_completions_url_for_anthropic_messages: true",
        "disable_cooldowns: true",
        'master_key: "os.environ/LITELLM_MASTER_KEY"',
    ):
        assert setting in text
    assert "sk-" not in text  # keys come from the environment only
    for line in text.splitlines():  # every value line is a well-formed flow mapping or scalar
        if "litellm_params:" in line:
            _flow_mapping(line)


def test_environment_keeps_litellm_off_the_network() -> None:
    base = {"PATH": "/bin", "HTTPS_PROXY": "http://corp:3128", "no_proxy": "*", "HOME": "/h"}
    env = run.litellm_env(
        base, master_key="sk-m", upstream_key="sk-u", marker="abc", egress_proxy="http://127.0.0.1:9999"
    )
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        assert env[name] == "http://127.0.0.1:9999"
    assert env["NO_PROXY"] == env["no_proxy"] == "127.0.0.1,localhost,::1"
    assert env["AIOHTTP_TRUST_ENV"] == "True"
    assert env["LITELLM_MASTER_KEY"] == "sk-m" and env["REF_GATEWAY_API_KEY"] == "sk-u"
    assert env[run.MARKER_ENV] == "abc"
    assert env["PATH"] == "/bin" and env["HOME"] == "/h"
    assert base["HTTPS_PROXY"] == "http://corp:3128"  # the caller's mapping is left alone


def test_resolve_ports_picks_free_distinct_ports_for_zero() -> None:
    ports = run.resolve_ports({"litellm": 0, "upstream": 0, "limited": 0})
    assert len(set(ports.values())) == 3
    assert all(1024 <= p <= 65535 for p in ports.values())


def test_resolve_ports_keeps_free_fixed_ports() -> None:
    ports = run.resolve_ports({"litellm": 4400, "upstream": 0}, is_free=lambda port: True)
    assert ports["litellm"] == 4400 and ports["upstream"] not in (0, 4400)


def test_resolve_ports_names_the_busy_port_and_its_flag() -> None:
    with pytest.raises(run.PortBusy, match=r"upstream port 4401 .* --upstream-port"):
        run.resolve_ports({"litellm": 4400, "upstream": 4401}, is_free=lambda port: port != 4401)
    with pytest.raises(run.PortBusy, match="also asked for"):
        run.resolve_ports({"litellm": 4400, "upstream": 4400}, is_free=lambda port: True)
    with pytest.raises(run.PortBusy, match="not a TCP port"):
        run.resolve_ports({"litellm": 70000})


def test_port_is_free_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not run.port_is_free(sock.getsockname()[1])
    assert run.port_is_free(run.free_port())


@pytest.fixture
def marker() -> Iterator[str]:
    value = f"test-{time.monotonic_ns()}"
    yield value
    run.kill_marked(value, grace=1)  # whatever a failing test left behind


def _marked_env(marker: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", run.MARKER_ENV: marker}


def test_marked_processes_finds_only_the_marked_ones(marker: str) -> None:
    marked = subprocess.Popen(["sleep", "30"], env=_marked_env(marker))
    other = subprocess.Popen(["sleep", "30"], env={"PATH": "/usr/bin:/bin", run.MARKER_ENV: marker + "-other"})
    try:
        found = run.marked_processes(marker)
        assert [pid for pid, _ in found] == [marked.pid]
        assert "sleep 30" in found[0][1]
        assert [pid for pid, _ in run.kill_marked(marker, grace=2)] == [marked.pid]
        marked.wait(timeout=5)
        assert run.marked_processes(marker) == []
        assert other.poll() is None  # never touched
    finally:
        for proc in (marked, other):
            proc.kill()
            proc.wait()


def test_child_stop_ends_its_whole_process_group(marker: str, tmp_path: Path) -> None:
    # The child starts a grandchild in the background, as LiteLLM's server may; both must go.
    child = run.Child("shell", ["sh", "-c", "sleep 30 & sleep 30"], env=_marked_env(marker), log=tmp_path / "c.log")
    deadline = time.monotonic() + 5
    while len(run.marked_processes(marker)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(run.marked_processes(marker)) >= 2  # the shell (unless it exec'd) and its two sleeps
    child.stop(grace=5)
    assert not child.alive()
    deadline = time.monotonic() + 5
    while run.marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.marked_processes(marker) == []


def test_run_streamed_masks_secrets_and_kills_on_timeout(marker: str, tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    code = run.run_streamed(
        ["sh", "-c", "echo key=sk-secret-1; sleep 30 & sleep 30"],
        env=_marked_env(marker),
        log=log,
        timeout=1.0,
        secrets_=["sk-secret-1"],
        echo=None,
        cwd=tmp_path,
    )
    assert code == -9
    assert log.read_text() == "key=***\n"
    deadline = time.monotonic() + 5
    while run.marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.marked_processes(marker) == []


def test_run_streamed_returns_the_exit_status(tmp_path: Path) -> None:
    code = run.run_streamed(
        ["sh", "-c", "exit 3"], env={"PATH": "/usr/bin:/bin"}, log=tmp_path / "l", timeout=10, secrets_=[], echo=None
    )
    assert code == 3


def test_clean_stale_stops_what_a_killed_run_left(marker: str, tmp_path: Path) -> None:
    orphan = subprocess.Popen(["sleep", "30"], env=_marked_env(marker))
    (tmp_path / run.STATE_FILE).write_text(json.dumps({"marker": marker, "pid": 1}))
    messages: list[str] = []
    try:
        run.clean_stale(tmp_path, log=messages.append)
        orphan.wait(timeout=5)
        assert not (tmp_path / run.STATE_FILE).exists()
        assert messages and str(orphan.pid) in messages[0]
    finally:
        orphan.kill()
        orphan.wait()


def test_egress_sentinel_refuses_and_records() -> None:
    sentinel = run.EgressSentinel()
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": sentinel.url}))
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open("http://example.invalid/model_prices.json", timeout=5)
        assert refused.value.code == 403
        assert sentinel.attempts == ["GET http://example.invalid/model_prices.json HTTP/1.1"]
    finally:
        sentinel.close()


def _result(check: str, probe: str, outcome: str, severity: str = "must") -> dict[str, object]:
    return {
        "id": check,
        "probe": probe,
        "outcome": outcome,
        "severity": severity,
        "section": "4.2",
        "message": f"{check} on {probe}",
        "reproduce": f"curl {probe}",
    }


def test_suite_findings_groups_failures_by_check() -> None:
    report = {
        "checks": [
            _result("error_has_request_id", "a", "failed", "should"),
            _result("error_has_request_id", "b", "failed", "should"),
            _result("error_has_request_id", "c", "passed", "should"),
            _result("error_status_expected", "b", "failed"),
            _result("content_is_array", "a", "passed"),
            _result("message_id_has_msg_prefix", "a", "failed", "info"),
        ]
    }
    rows = run.suite_findings(report)
    assert [r["id"] for r in rows] == ["error_status_expected", "error_has_request_id", "message_id_has_msg_prefix"]
    assert rows[1]["probes"] == ["a", "b"] and rows[1]["of"] == 3
    assert rows[0]["reproduce"] == "curl b"


def test_summary_says_what_ran_what_it_found_and_what_is_left() -> None:
    summary = run.summary_markdown(
        {
            "litellm_version": "1.106.2",
            "started_at": "2026-01-01T00:00:00+00:00",
            "urls": {"litellm": "http://127.0.0.1:4400", **URLS},
            "wall_s": 12.5,
            "steps": [
                {"name": "suite ref-openai", "result": "non-conformant", "exit": 1, "seconds": 3.0, "where": "x"}
            ],
            "findings": {
                "ref-openai": run.suite_findings({"checks": [_result("error_status_expected", "b", "failed")]})
            },
            "egress_attempts": ["CONNECT raw.githubusercontent.com:443 HTTP/1.1"],
            "leftovers": [],
        }
    )
    assert "| suite ref-openai | non-conformant | 1 | 3.0 | x |" in summary
    assert "| error_status_expected | must | §4.2 | 1/1 | error_status_expected on b |" in summary
    assert "CONNECT raw.githubusercontent.com:443" in summary
    assert summary.rstrip().endswith("None.")


def test_suite_command_records_and_adds_upstream_mode_when_available(tmp_path: Path) -> None:
    url = "http://127.0.0.1:4400"
    both = run.SuiteFeatures(record=True, upstream_mode=True)
    argv = run.suite_command(both, url, "ref-openai", tmp_path, upstream_mode=True, extra=["--max-examples", "3"])
    assert argv[:3] == [sys.executable, "-m", "conformance"]
    assert argv[3:6] == ["record", "--out", str(tmp_path / "cassette")]
    assert argv[argv.index("--gateway-url") + 1] == url and argv[argv.index("--gateway-model") + 1] == "ref-openai"
    assert argv[argv.index("--report-dir") + 1] == str(tmp_path)
    assert argv[-3:] == ["--max-examples", "3", "--upstream-mode"]
    limited = run.suite_command(both, url, "ref-openai-limited", tmp_path, upstream_mode=False)
    assert "--upstream-mode" not in limited
    plain = run.suite_command(run.SuiteFeatures(), url, "ref-openai", tmp_path, upstream_mode=True)
    assert plain[3] == "check" and "--out" not in plain and "--upstream-mode" not in plain


def test_recorded_litellm_traffic_replays_offline_to_its_findings() -> None:
    fixtures = pytest.importorskip("conformance.fixtures")
    entries = {e.name: e for e in fixtures.load_index() if e.name.startswith("litellm-")}
    if not entries:
        pytest.skip("no LiteLLM entries in the corpus index (tools/litellm/record_fixture.py --write-index)")
    # docs/litellm-findings.md: what each route's recording must still show when replayed without a network
    expected = {
        "litellm-ref-openai": {"stream_message_start_usage", "stop_sequence_honoured", "error_status_expected"},
        "litellm-ref-anthropic": {"error_status_expected", "model_matches_schema", "openai_stream_usage_chunk"},
    }
    for name, checks in expected.items():
        outcome = fixtures.replay_entry(entries[name])
        assert outcome.problems() == [], name
        assert outcome.report.verdict == "non-conformant"
        assert checks <= outcome.failed, name
