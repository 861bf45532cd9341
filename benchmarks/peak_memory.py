"""Peak resident memory of a whole suite run against the worst hostile gateways, next to a conformant one.

    .venv/bin/python benchmarks/peak_memory.py [--total-timeout 5] [--max-examples 3] [--max-response-bytes N]

For each gateway (the reference gateway as is, then with --fault huge-body, gzip-bomb and endless-ping), starts it
in its own process on 127.0.0.1, runs `python -m conformance check --gateway-url URL` in a child process (SDK
probes included) with the given bounds, and reads that child's peak RSS (ru_maxrss, from wait4 on its pid alone,
so the gateway's memory is never counted). Prints one row per gateway: exit status, wall time, requests sent and
peak RSS, and the growth over the conformant run. The figures are in docs/hostile-gateways.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conformance.gateway import GatewayConfig, start_subprocess  # noqa: E402

WORST = ("huge-body", "gzip-bomb", "endless-ping")


def measure(fault: str | None, args: argparse.Namespace, reports: Path) -> dict[str, Any]:
    """One suite run in a child process against a fresh gateway: its exit status, time and peak RSS."""
    config = GatewayConfig(port=0, faults=(fault,) if fault else ())
    name = fault or "conformant"
    with start_subprocess(config) as gateway:
        argv = [
            sys.executable, "-m", "conformance", "check", "--gateway-url", gateway.url,
            "--report-dir", str(reports / name), "--max-examples", str(args.max_examples),
            "--total-timeout", str(args.total_timeout), "--first-byte-timeout", str(args.total_timeout),
            "--idle-timeout", str(args.total_timeout),
        ]  # fmt: skip
        if args.max_response_bytes:
            argv += ["--max-response-bytes", str(args.max_response_bytes)]
        env = {**os.environ, "GATEWAY_API_KEY": gateway.api_key, "PYTHONPATH": str(ROOT)}
        started = time.perf_counter()
        child = subprocess.Popen(argv, env=env, cwd=reports, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # wait4 on this pid: the rusage of the suite's process alone (RUSAGE_CHILDREN would include the gateway).
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
    report = json.loads((reports / name / "conformance.json").read_text(encoding="utf-8"))
    return {
        "gateway": name,
        "exit": child.returncode,
        "wall_s": round(wall, 1),
        "requests": report.get("requests_sent"),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }


def main() -> int:
    """Run the four suites one after another and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total-timeout", type=float, default=5.0, help="per exchange (also first-byte and idle)")
    parser.add_argument("--max-examples", type=int, default=3, help="Hypothesis examples per property")
    parser.add_argument("--max-response-bytes", type=int, default=0, help="the size cap (default: the suite's)")
    parser.add_argument("--faults", nargs="*", default=list(WORST), help="the hostile faults to run")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="peak-memory-") as tmp:
        for fault in [None, *args.faults]:
            rows.append(measure(fault, args, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    base = rows[0]["peak_rss_mb"]
    cap = args.max_response_bytes or 64 * 1024 * 1024
    print(f"\npeak RSS of `check` (size cap {cap / 2**20:g} MiB, total timeout {args.total_timeout:g} s)")
    print(f"{'gateway':<14} {'exit':>4} {'wall s':>7} {'requests':>8} {'peak RSS MB':>11} {'vs conformant':>13}")
    for row in rows:
        print(
            f"{row['gateway']:<14} {row['exit']:>4} {row['wall_s']:>7} {row['requests']:>8} "
            f"{row['peak_rss_mb']:>11.1f} {row['peak_rss_mb'] - base:>+13.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
