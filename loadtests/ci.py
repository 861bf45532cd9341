"""Run Locust as a bounded child process against a reference gateway it starts itself: for CI, tests and benchmarks.

    python -m loadtests.ci [--scenario latency] [--users 20] [--duration 12] [--max-requests 1500] [-- LOCUST ARGS]

starts the reference gateway (a child process on 127.0.0.1, with a little latency so TTFT and ITL mean
something), runs a headless Locust against it, writes everything under reports/load-<timestamp>/ (Locust's CSV
and HTML, the LLM report as JSON/CSV/HTML, the log, the gateway's counters), stops what it started, and exits
with Locust's exit code: non-zero when a threshold is breached. Plain Python: Locust runs in the child only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.gateway import GatewayConfig, start_subprocess
from conformance.reporting.files import run_directory as shared_run_directory
from conformance.target import mask_secrets

__all__ = ["LOCUSTFILE", "LocustRun", "child_env", "locust_command", "main", "run_directory", "run_locust"]

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")


@dataclass(frozen=True, slots=True)
class LocustRun:
    """What a Locust child process left behind."""

    returncode: int
    output: str  # stdout and stderr, key masked
    report: dict[str, Any] = field(default_factory=dict)  # the LLM report (PREFIX.json), {} when none
    elapsed_s: float = 0.0


def locust_command(host: str, *args: str, locustfile: Path = LOCUSTFILE) -> list[str]:
    """The argv of a Locust process using the load-test locustfile."""
    return [sys.executable, "-m", "locust", "-f", str(locustfile), "-H", host, *args]


def child_env(key: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a Locust child: the key in GATEWAY_API_KEY (never argv), the repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_API_KEY", "ANTHROPIC_API_KEY")}
    if key is not None:
        env["GATEWAY_API_KEY"] = key
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def run_locust(
    host: str,
    key: str | None,
    args: Sequence[str],
    *,
    report_prefix: str | Path | None = None,
    timeout: float = 120.0,
    cpus: Iterable[int] | None = None,
    extra_env: dict[str, str] | None = None,
    locustfile: Path = LOCUSTFILE,
) -> LocustRun:
    """Run a Locust child to completion (killed after `timeout` s); its output masked, its LLM report loaded."""
    argv = locust_command(host, *args, locustfile=locustfile)
    if report_prefix is not None:
        argv += ["--llm-report", str(report_prefix)]
    pinned = tuple(cpus) if cpus is not None else None

    def pin() -> None:
        if pinned:
            os.sched_setaffinity(0, pinned)

    started = time.perf_counter()
    try:
        completed = subprocess.run(
            argv,
            env=child_env(key, extra_env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=pin if pinned else None,
        )
        returncode, output = completed.returncode, completed.stdout + completed.stderr
    except subprocess.TimeoutExpired as exc:
        returncode = -9
        output = _text(exc.stdout) + _text(exc.stderr) + f"\n[killed after {timeout} s]"
    elapsed = time.perf_counter() - started
    output = mask_secrets(output, [key])
    report: dict[str, Any] = {}
    if report_prefix is not None:
        path = Path(f"{report_prefix}.json")
        if path.exists():
            report = json.loads(path.read_text(encoding="utf-8"))
    return LocustRun(returncode, output, report, elapsed)


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def run_directory(parent: Path) -> Path:
    """A new reports/load-<UTC timestamp>[-n]/ directory (never one another run is using)."""
    return shared_run_directory(parent, "load")


def main(argv: Sequence[str] | None = None) -> int:
    """The nox `load` session: a short bounded load test against the reference gateway; the gate's exit code."""
    parser = argparse.ArgumentParser(prog="python -m loadtests.ci", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="latency", help="latency, ratelimit, termination or mixed")
    parser.add_argument("--users", type=int, default=20, help="Locust users (default 20)")
    parser.add_argument("--user-rps", type=float, default=2.0, help="requests/s per user (default 2)")
    parser.add_argument("--duration", type=int, default=12, help="seconds of load (default 12)")
    parser.add_argument("--max-requests", type=int, default=1500, help="request budget (default 1500)")
    parser.add_argument("--ttft-ms", type=float, default=20.0, help="the gateway's injected TTFT (default 20)")
    parser.add_argument("--itl-ms", type=float, default=5.0, help="the gateway's injected ITL (default 5)")
    parser.add_argument("--max-p95-ttft-ms", type=float, default=250.0, help="gate (default 250)")
    parser.add_argument("--max-p95-itl-ms", type=float, default=60.0, help="gate (default 60)")
    parser.add_argument("--fault", action="append", default=[], help="a gateway --fault (to see the gate fail)")
    parser.add_argument("--reports", default=str(ROOT / "reports"), help="parent of the run directory")
    parser.add_argument("locust_args", nargs="*", help="extra Locust arguments (after --)")
    options = parser.parse_args(argv)

    out = run_directory(Path(options.reports))
    config = GatewayConfig(port=0, ttft_ms=options.ttft_ms, itl_ms=options.itl_ms, faults=tuple(options.fault))
    with start_subprocess(config) as gateway:
        print(f"reference gateway {gateway.url} (pid {gateway.pid}); reports in {out}", flush=True)
        run = run_locust(
            gateway.url,
            gateway.api_key,
            [
                *f"--headless --only-summary -u {options.users} -r {options.users} -t {options.duration}s".split(),
                *f"--scenario {options.scenario} --user-rps {options.user_rps}".split(),
                *f"--max-requests {options.max_requests}".split(),
                *f"--max-p95-ttft-ms {options.max_p95_ttft_ms} --max-p95-itl-ms {options.max_p95_itl_ms}".split(),
                *["--csv", str(out / "locust"), "--html", str(out / "locust.html")],
                *options.locust_args,
            ],
            report_prefix=out / "llm",
            timeout=options.duration + 90,
        )
        stats = gateway.stats()
    (out / "locust.log").write_text(run.output, encoding="utf-8")
    (out / "gateway-stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    tail = run.output.strip().splitlines()
    start = next((i for i, line in enumerate(tail) if line.startswith("LLM load test")), max(len(tail) - 30, 0))
    print("\n".join(tail[start:]), flush=True)
    print(f"locust exit code {run.returncode}; gateway served {stats.get('requests')} requests", flush=True)
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
