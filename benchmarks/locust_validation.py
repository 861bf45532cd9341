"""How many streamed requests/s ONE Locust process sustains against the reference gateway, validating or not.

    .venv/bin/python benchmarks/locust_validation.py [--profile both] [--cycles 24] [--users 32] [--reply-words 10]

The gateway runs in a child process pinned to one CPU; Locust runs headless in another child pinned to the other
CPU, its users sending streaming /v1/messages requests back to back (closed loop), so Locust's CPU is the
bottleneck. One Locust process judges the responses in turns of half a second (benchmarks/
interleaved_locustfile.py), `--cycles` times over:

  full        every event through the suite's StreamReader: SSE framing, JSON, grammar, JSON Schema
  grammar     the same without the JSON Schemas
  off         bytes only (no decoding: no TTFT, no verdict beyond the HTTP status and a complete body)
  full + rows full, plus the metric rows (TTFB/TTFT/ITL request events in Locust's table), which the three
              above leave out so that only validation differs

Turns a second apart see the same machine; separate runs minutes apart do not (this shared machine's speed
drifts by a third over seconds, and it made earlier versions of this benchmark, which ran the modes one after
the other, swing by 20 points from one invocation to the next). Per mode: the rate measured, and the rate one
fully busy Locust process sustains (requests per second of Locust CPU, from the process's own CPU time in the
mode's turns): the capacity figure, since when validation is off the gateway's core may saturate first.

Two delivery profiles, because what judging costs relative to the rest depends on how the bytes arrive:

  coalesced   no injected latency: the gateway writes a whole reply at once and Locust reads it in one recv,
              the cheapest possible request, so judging weighs the most (the worst case for the ratio)
  streamed    the gateway waits 1 ms between tokens (`--itl-ms 1`, twice the users): replies arrive over
              time, as a model's do, and Locust reads each in a few recvs

Two costs are printed per profile: schema validation (full vs grammar) and all of the judging (full vs off), from
all turns together, with the middle half of the cycles' own costs. The aim is under 20 % of the sustained rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance.gateway import GatewayConfig, start_subprocess
from loadtests.ci import run_locust

LOCUSTFILE = Path(__file__).resolve().with_name("interleaved_locustfile.py")
MODES = ("full", "grammar", "off", "full + rows")  # as benchmarks/interleaved_locustfile.py names them
PHASE_S = 0.5
WARMUP_S = 2.0
PROFILES: dict[str, tuple[float, int]] = {"coalesced": (0.0, 1), "streamed": (1.0, 2)}  # (ITL ms, users x)


def measure(profile: str, options: argparse.Namespace, tmp: Path) -> list[dict[str, dict[str, float]]]:
    """One Locust process against a gateway of the profile, taking turns; the turns of every cycle."""
    itl_ms, users_factor = PROFILES[profile]
    users = options.users * users_factor
    cpus = sorted(os.sched_getaffinity(0))
    gateway_cpu, locust_cpus = cpus[-1], cpus[:-1] or cpus
    duration = WARMUP_S + options.cycles * len(MODES) * PHASE_S + 1
    out = tmp / f"{profile}-turns.json"
    with start_subprocess(GatewayConfig(port=0, itl_ms=itl_ms), cpus=[gateway_cpu]) as gw:
        print(
            f"[{profile}] reference gateway (ITL {itl_ms:g} ms) on CPU {gateway_cpu}, Locust on CPU(s) {locust_cpus}; "
            f"{users} users back to back; {options.reply_words}-token streamed replies; "
            f"{options.cycles} cycles of {len(MODES)} turns of {PHASE_S:g} s",
            flush=True,
        )
        run = run_locust(
            gw.url,
            gw.api_key,
            [
                *f"--headless --only-summary --loglevel WARNING -u {users} -r {users} -t {duration:.0f}s".split(),
                *f"--scenario latency --user-rps 0 --max-requests {10**8} --validation full".split(),
                *f"--reply-words {options.reply_words} --max-fail-ratio 1".split(),
            ],
            report_prefix=tmp / profile,
            timeout=duration + 60,
            cpus=locust_cpus,
            extra_env={"BENCH_OUT": str(out), "BENCH_PHASE_S": str(PHASE_S), "BENCH_WARMUP_S": str(WARMUP_S)},
            locustfile=LOCUSTFILE,
        )
        stats = gw.stats()
    failed = run.report.get("summary", {}).get("failed")
    print(
        f"  Locust exit {run.returncode}, failed requests {failed}; gateway counters: requests {stats['requests']}, "
        f"streams {stats['streams']}, by_status {stats['by_status']}",
        flush=True,
    )
    if run.returncode not in (0, 1) or not out.exists():
        print(f"  Locust failed\n{run.output[-2000:]}", flush=True)
        return []
    cycles: list[dict[str, dict[str, float]]] = json.loads(out.read_text(encoding="utf-8"))["cycles"]
    return cycles


def _capacity(turns: list[dict[str, float]]) -> float:
    cpu = sum(t["cpu_s"] for t in turns)
    return sum(t["requests"] for t in turns) / cpu if cpu else 0.0


def report(profile: str, cycles: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Print one profile's table and its two costs; return the figures."""
    print(f"\n[{profile}] {len(cycles)} cycles")
    if not cycles:
        return {}
    print(f"{'mode':<14}{'measured/s':>11}{'Locust CPU':>11}{'sustained/s':>12}")
    capacity: dict[str, float] = {}
    for mode in MODES:
        turns = [cycle[mode] for cycle in cycles]
        wall = sum(t["wall_s"] for t in turns)
        cpu = sum(t["cpu_s"] for t in turns)
        requests = sum(t["requests"] for t in turns)
        capacity[mode] = _capacity(turns)
        print(f"{mode:<14}{requests / wall:>11.0f}{100 * cpu / wall:>10.0f}%{capacity[mode]:>12.0f}")
    costs: dict[str, float] = {}
    for label, without in (("schema validation (full vs grammar)", "grammar"), ("all judging (full vs off)", "off")):
        cost = 1 - capacity["full"] / capacity[without] if capacity[without] else float("nan")
        own = [1 - _capacity([c["full"]]) / _capacity([c[without]]) for c in cycles if _capacity([c[without]])]
        low, _, high = statistics.quantiles(own, n=4) if len(own) >= 2 else (cost, cost, cost)
        verdict = "within" if cost < 0.20 else "OVER"
        print(
            f"cost of {label}: {cost:.1%} of the sustained rate (cycles' own: middle half {low:.1%} to "
            f"{high:.1%}): {verdict} the 20 % aim"
        )
        costs[without] = cost
    return {"capacity": capacity, "costs": costs}


def main() -> None:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=[*PROFILES, "both"], default="both", help="delivery (default both)")
    parser.add_argument("--cycles", type=int, default=24, help="cycles of turns, 2 s each (default 24)")
    parser.add_argument("--users", type=int, default=32, help="Locust users (default 32; twice that streamed)")
    parser.add_argument("--reply-words", type=int, default=10, help="tokens per reply (default 10)")
    options = parser.parse_args()
    if options.cycles < 1:
        parser.error("--cycles must be at least 1")
    profiles = list(PROFILES) if options.profile == "both" else [options.profile]
    results: dict[str, list[dict[str, dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for profile in profiles:
            results[profile] = measure(profile, options, Path(tmp))
    for profile in profiles:
        report(profile, results[profile])
    print("(sustained/s: streamed requests per second of one fully busy Locust process)")


if __name__ == "__main__":
    main()
