"""Locust runs against the reference gateway: each Locust is a child process (Locust monkey-patches on import).

Every run is bounded by a request budget (so it ends with nothing in flight and the gateway's counters can be
compared exactly) and by a run time. Independent runs go side by side to keep the file quick on two cores;
the latency measurement runs alone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conformance.gateway import GatewayConfig, RunningGateway, start_subprocess
from loadtests.ci import ROOT, LocustRun, child_env, locust_command, run_locust

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    """A free loopback port (for Locust's master and web UI, which bind their own)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def headless(*extra: str, users: int = 8, run_time: int = 30) -> list[str]:
    """Common arguments of a bounded headless run."""
    return ["--headless", "--only-summary", "-u", str(users), "-r", str(users), "-t", f"{run_time}s", *extra]


def assert_no_key(key: str, *texts: str, paths: tuple[Path, ...] = ()) -> None:
    """The key appears in none of the outputs or files."""
    for text in texts:
        assert key not in text
    for path in paths:
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            assert key.encode() not in file.read_bytes(), file


def with_gateway(config: GatewayConfig, body: Callable[[RunningGateway], Any]) -> tuple[Any, dict[str, Any]]:
    """Run body against a fresh gateway process; (its result, the gateway's counters once it is idle)."""
    with start_subprocess(config) as gateway:
        result = body(gateway)
        return result, settled_stats(gateway)


def settled_stats(gateway: RunningGateway, timeout: float = 5.0) -> dict[str, Any]:
    """The gateway's counters once every stream it started has ended (a paced one notices a hang-up late)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = gateway.stats()
        ended = stats["streams_completed"] + stats["streams_truncated"] + stats["streams_disconnected"]
        if ended >= stats["streams"] or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


# ---------------------------------------------------------------------------- latency (alone)


def test_measured_ttft_and_itl_match_the_injected_delays(tmp_path: Path) -> None:
    """50 users; median TTFT and ITL within 2 ms of the injected delay plus the overhead measured at zero delay."""
    latency = ["--scenario", "latency", "--user-rps", "1", "--max-requests", "250", "--max-p95-ttft-ms", "1000"]
    args = headless(*latency, users=50, run_time=40)
    measured: dict[str, dict[str, Any]] = {}
    for name, ttft, itl in (("zero", 0.0, 0.0), ("injected", 80.0, 15.0)):
        config = GatewayConfig(port=0, ttft_ms=ttft, itl_ms=itl)
        run, stats = with_gateway(
            config, lambda gw, n=name: run_locust(gw.url, gw.api_key, args, report_prefix=tmp_path / n, timeout=90)
        )
        assert run.returncode == 0, run.output[-3000:]
        summary = run.report["summary"]
        assert summary["requests"] == 250 == stats["requests"]
        assert summary["failed"] == 0
        measured[name] = summary["latency_ms"]
    overhead_ttft = measured["zero"]["ttft"]["p50"]
    overhead_itl = measured["zero"]["itl"]["p50"]
    ttft = measured["injected"]["ttft"]["p50"]
    itl = measured["injected"]["itl"]["p50"]
    figures = (
        f"TTFT p50 {ttft:.2f} ms (injected 80 + overhead {overhead_ttft:.2f}); "
        f"ITL p50 {itl:.2f} ms (injected 15 + overhead {overhead_itl:.2f})"
    )
    print(figures)
    assert abs(ttft - (80.0 + overhead_ttft)) <= 2.0, figures
    assert abs(itl - (15.0 + overhead_itl)) <= 2.0, figures


# ---------------------------------------------------------------------------- side-by-side batch


TERMINATION_FAULTS = ("stream-cut", "missing-message-stop", "done-instead-of-stop", "missing-done")


@pytest.fixture(scope="module")
def batch() -> Iterator[dict[str, tuple[LocustRun, dict[str, Any]]]]:
    """Several independent bounded runs, each against its own gateway, run side by side."""
    work = Path(tempfile.mkdtemp(prefix="loadtests-batch-"))
    jobs: dict[str, tuple[GatewayConfig, list[str]]] = {}
    termination = ["--scenario", "termination", "--user-rps", "4", "--max-requests", "40"]
    for fault in TERMINATION_FAULTS:
        jobs[fault] = (GatewayConfig(port=0, faults=(fault,)), headless(*termination, users=6))
    # A gateway slower than the idle timeout: every stream is cut by the client's timeout.
    jobs["timeout"] = (
        GatewayConfig(port=0, ttft_ms=1500),
        headless(
            "--scenario", "termination", "--user-rps", "2", "--max-requests", "6", "--idle-timeout", "0.4", users=3
        ),
    )
    ramp = ["--scenario", "ratelimit", "--user-rps", "1", "--ramp-step", "1", "--max-requests", "400"]
    jobs["ratelimit-honest"] = (
        GatewayConfig(port=0, rate_limit_rpm=20, rate_limit_window_s=10),
        headless(*ramp, users=5),
    )
    jobs["ratelimit-no-retry-after"] = (GatewayConfig(port=0, faults=("429-no-retry-after",)), headless(*ramp, users=5))
    jobs["sdk-retries"] = (
        GatewayConfig(port=0, rate_limit_rpm=12, rate_limit_window_s=2),
        headless("--scenario", "mixed", "--user-rps", "4", "--max-requests", "60", "--max-fail-ratio", "1", users=4),
    )
    jobs["token-budget"] = (
        GatewayConfig(port=0),
        headless("--scenario", "mixed", "--user-rps", "5", "--token-budget", "1000", "--max-requests", "500", users=4),
    )

    def run(name: str) -> tuple[LocustRun, dict[str, Any]]:
        config, args = jobs[name]
        return with_gateway(
            config, lambda gw: run_locust(gw.url, gw.api_key, args, report_prefix=work / name, timeout=90)
        )

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = dict(zip(jobs, pool.map(run, jobs), strict=True))
    yield results
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("fault", TERMINATION_FAULTS)
def test_truncated_streams_equal_what_the_gateway_served(
    batch: dict[str, tuple[LocustRun, dict[str, Any]]], fault: str
) -> None:
    run, stats = batch[fault]
    summary = run.report["summary"]
    assert summary["requests"] == 40 == stats["requests"], run.output[-3000:]
    streams = summary["streams"]
    assert streams["truncated_total"] == stats["streams_truncated"] > 0
    cause = "reset" if fault == "stream-cut" else "eof"
    assert streams["truncated"][cause] == streams["truncated_total"]
    assert summary["failures"][f"stream-truncated: {cause}"] == streams["truncated_total"]
    # A truncated stream is a failed request, and the gate says so.
    assert run.returncode == 1
    assert any(b["name"] == "truncated_ratio" for b in run.report["breaches"])


def test_streams_cut_by_the_idle_timeout_are_counted_as_timeouts(
    batch: dict[str, tuple[LocustRun, dict[str, Any]]],
) -> None:
    run, stats = batch["timeout"]
    streams = run.report["summary"]["streams"]
    assert streams["truncated"] == {"eof": 0, "reset": 0, "timeout": 6}, run.output[-3000:]
    # The gateway's counter for this case is streams_disconnected: the client hung up mid-stream.
    assert stats["streams_disconnected"] == 6 and stats["streams_truncated"] == 0


def test_ratelimit_scenario_finds_an_honest_retry_after(batch: dict[str, tuple[LocustRun, dict[str, Any]]]) -> None:
    run, stats = batch["ratelimit-honest"]
    report = run.report
    rate_limit = report["summary"]["rate_limit"]
    assert report["ratelimit_verdict"] == "honest", run.output[-3000:]
    assert rate_limit["honesty"] == {"passed": 3}
    assert rate_limit["retry_after"] == {"present": rate_limit["responses_429"]}
    assert rate_limit["responses_429"] == stats["rate_limited"] > 0
    assert rate_limit["first_429_at_user_rps"] is not None
    assert rate_limit["waited_ms"]["min"] >= 1000.0  # the gateway advertised 1 s; it was waited out in full
    assert run.returncode == 0 and report["breaches"] == []


def test_ratelimit_scenario_reports_a_missing_retry_after(batch: dict[str, tuple[LocustRun, dict[str, Any]]]) -> None:
    run, stats = batch["ratelimit-no-retry-after"]
    report = run.report
    rate_limit = report["summary"]["rate_limit"]
    assert report["ratelimit_verdict"] == "failing"
    assert rate_limit["retry_after"] == {"missing": rate_limit["responses_429"]}
    assert rate_limit["responses_429"] == stats["rate_limited"] > 0
    assert rate_limit["honesty"].get("untestable", 0) >= 1 and "passed" not in rate_limit["honesty"]
    assert any("had no retry-after" in p for p in report["ratelimit_problems"])
    assert run.returncode == 1


def test_429s_are_retried_like_the_sdks_and_their_waits_measured(
    batch: dict[str, tuple[LocustRun, dict[str, Any]]],
) -> None:
    run, stats = batch["sdk-retries"]
    summary = run.report["summary"]
    rate_limit = summary["rate_limit"]
    assert rate_limit["responses_429"] == stats["rate_limited"] > 0, run.output[-3000:]
    assert rate_limit["requests_hit"] > 0
    assert rate_limit["waited_ms"]["count"] > 0 and rate_limit["waited_ms"]["p50"] >= 900.0
    assert summary["attempts"] == stats["requests"] == 60  # the budget counts every attempt
    assert rate_limit["retry_after"]["present"] == rate_limit["responses_429"]


def summary_reserve(run: LocustRun) -> int:
    cost = run.report["cost"]
    return int(cost["max_tokens_per_request"] + cost["prompt_tokens_per_request"])


def test_token_budget_stops_the_run_before_it_is_exceeded(batch: dict[str, tuple[LocustRun, dict[str, Any]]]) -> None:
    run, stats = batch["token-budget"]
    summary = run.report["summary"]
    used = summary["tokens"]["input"] + summary["tokens"]["output"]
    # Spent means the next worst case (prompt + max_tokens) would not fit; the 4 users' reservations in flight
    # then settle at their (lower) real usage.
    assert 1000 - 4 * summary_reserve(run) <= used <= 1000, run.output[-3000:]
    assert summary["requests"] == stats["requests"] < 500
    assert "token budget 1000" in run.output and "cost guard: at most 500 requests" in run.output
    assert run.returncode == 0


# ---------------------------------------------------------------------------- distributed


def test_master_and_two_workers_aggregate_the_custom_metrics(tmp_path: Path) -> None:
    port = free_port()
    with start_subprocess(GatewayConfig(port=0, ttft_ms=20, itl_ms=5)) as gateway:
        env = child_env(gateway.api_key)
        prefix = tmp_path / "dist"
        master = subprocess.Popen(
            locust_command(
                gateway.url,
                *f"--master --master-bind-host 127.0.0.1 --master-bind-port {port} --expect-workers 2".split(),
                *["--expect-workers-max-wait", "30", "--llm-report"],
                str(prefix),
                *headless("--scenario", "mixed", "--user-rps", "8", "--max-requests", "121", users=10),
            ),
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        workers = [
            subprocess.Popen(
                [
                    *[sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py")],
                    *f"--worker --master-host 127.0.0.1 --master-port {port}".split(),
                ],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            output, _ = master.communicate(timeout=90)
            worker_output = [w.communicate(timeout=30)[0] for w in workers]
        finally:
            for process in (master, *workers):
                if process.poll() is None:
                    process.kill()
                    process.wait()
        stats = gateway.stats()
    assert master.returncode == 0, output[-3000:]
    assert all(w.returncode == 0 for w in workers), worker_output
    report = json.loads(prefix.with_suffix(".json").read_text())
    parts = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("dist.worker-*.json"))]
    assert report["workers"] == 2 and len(parts) == 2
    summary = report["summary"]
    # The budget was split between the workers and every request is accounted for, on both sides.
    assert summary["requests"] == 121 == stats["requests"]
    assert summary["requests"] == sum(p["summary"]["requests"] for p in parts)
    assert sorted(p["summary"]["requests"] for p in parts) == [60, 61]
    for name in ("ttfb", "ttft", "itl", "e2e"):
        assert summary["latency_ms"][name]["count"] == sum(p["summary"]["latency_ms"][name]["count"] for p in parts)
    for field in ("failures", "by_kind"):
        assert summary[field] == _sum_dicts([p["summary"][field] for p in parts])
    assert summary["tokens"]["output"] == sum(p["summary"]["tokens"]["output"] for p in parts)
    assert report["locust"]["requests"] >= 121  # Locust's own table: requests plus TTFB/TTFT/ITL rows
    ttft = summary["latency_ms"]["ttft"]
    assert 20.0 <= ttft["p50"] <= ttft["p95"] <= ttft["max"] < 1000.0
    lows = [p["summary"]["latency_ms"]["ttft"]["p50"] for p in parts]
    assert min(lows) - 1.0 <= ttft["p50"] <= max(lows) + 1.0
    assert_no_key(gateway.api_key, output, *worker_output, paths=(tmp_path,))


def _sum_dicts(dicts: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for d in dicts:
        for key, value in d.items():
            if isinstance(value, dict):
                total[key] = _sum_dicts([total.get(key, {}), value])
            else:
                total[key] = total.get(key, 0) + value
    return total


# ---------------------------------------------------------------------------- web UI


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: the web UI test needs a headless browser")
def test_web_ui_shows_the_llm_tabs_with_numbers(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    web_port = free_port()
    with start_subprocess(GatewayConfig(port=0, ttft_ms=30, itl_ms=5, faults=("missing-done",))) as gateway:
        process = subprocess.Popen(
            locust_command(
                gateway.url,
                *f"--web-host 127.0.0.1 --web-port {web_port} --autostart --autoquit 1 -u 6 -r 6 -t 25s".split(),
                *["--scenario", "termination", "--user-rps", "3", "--max-requests", "1000"],
            ),
            env=child_env(gateway.api_key),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{web_port}"
        try:
            deadline = time.monotonic() + 30
            summary: dict[str, Any] = {}
            while time.monotonic() < deadline:
                try:
                    summary = _get_json(f"{base}/llm/summary.json")["summary"]
                except OSError:
                    summary = {}
                if summary.get("requests", 0) >= 10 and summary["streams"]["truncated_total"]:
                    break
                time.sleep(0.3)
            assert summary.get("requests", 0) >= 10
            pages = {}
            for tab in ("llm-latency", "llm-failures"):
                shot = tmp_path / f"{tab}.png"
                common = [
                    CHROMIUM,
                    *["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"],
                    *["--disable-background-networking", "--disable-component-update", "--disable-sync"],
                    *["--window-size=1400,900", "--virtual-time-budget=5000"],
                    f"--user-data-dir={tmp_path / ('profile-' + tab)}",
                ]
                dom = subprocess.run(
                    [*common, "--dump-dom", f"{base}/?tab={tab}"], capture_output=True, text=True, timeout=60
                ).stdout
                pages[tab] = dom
                if tab == "llm-latency":
                    url = f"{base}/?tab={tab}"
                    subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, timeout=60)
                    assert shot.exists() and shot.stat().st_size > 10_000
            stats_json = urllib.request.urlopen(f"{base}/stats/requests", timeout=5).read().decode()
            llm_page = urllib.request.urlopen(f"{base}/llm", timeout=5).read().decode()
        finally:
            process.terminate()
            output, _ = process.communicate(timeout=30)
    latency, failures = pages["llm-latency"], pages["llm-failures"]
    assert "LLM latency" in latency and "LLM failures" in latency
    cells = _cells(latency)
    ttft_row = cells[cells.index("TTFT") : cells.index("TTFT") + 10]
    assert ttft_row[1] == "ms" and int(ttft_row[2]) >= 10 and 25.0 < float(ttft_row[5]) < 500.0, ttft_row
    fcells = _cells(failures)
    assert "stream-truncated: eof" in fcells
    assert int(fcells[fcells.index("streams truncated by eof") + 1]) > 0
    assert "extended_stats" in stats_json and "TTFT" in llm_page
    assert_no_key(gateway.api_key, latency, failures, stats_json, llm_page, output)


def _cells(dom: str) -> list[str]:
    import re

    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", dom)]


# ---------------------------------------------------------------------------- CI runner (the nox `load` session)


def test_ci_runner_writes_reports_and_gates(tmp_path: Path) -> None:
    def ci(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "loadtests.ci", "--duration", "3", "--users", "6", "--max-requests", "120", *argv],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=2) as pool:
        good, bad = pool.map(
            lambda args: ci(*args),
            [
                ("--reports", str(tmp_path / "good")),
                ("--reports", str(tmp_path / "bad"), "--fault", "missing-message-stop"),
            ],
        )
    assert good.returncode == 0, good.stdout + good.stderr
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "GATE FAILED" in bad.stdout and "streams ended without their end marker" in bad.stdout
    runs = sorted(tmp_path.glob("*/load-*"))
    assert len(runs) == 2, list(tmp_path.rglob("*"))
    for run_dir in runs:
        names = {p.name for p in run_dir.iterdir()}
        assert {"llm.json", "llm.csv", "llm.html", "locust_stats.csv", "locust.html", "gateway-stats.json"} <= names
        report = json.loads((run_dir / "llm.json").read_text())
        assert report["summary"]["requests"] > 0 and "passed" in report
        assert report["cost"]["max_requests"] == 120
