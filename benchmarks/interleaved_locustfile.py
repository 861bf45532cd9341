"""Locust file for benchmarks/locust_validation.py: the load tests' users, the validation mode switched in turns.

One Locust process runs the load tests' users against the target and, after a warm-up, switches how they judge
responses every BENCH_PHASE_S seconds (default 0.5), in turns: full validation, grammar only, bytes only, full
with metric rows. It counts, per turn, the requests that finished and the CPU time the process spent, and
writes them to the JSON file BENCH_OUT at the end of every cycle. Turns a second apart see the same machine:
on a shared one, whose speed drifts by a third over seconds, runs minutes apart do not.

Start Locust with `--validation full` (the users prepare the body validators then).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import gevent
from locust import events

import loadtests.plugin  # noqa: F401  (registers the options, listeners and gate)
from loadtests.users import GatewayUser, current_run

__all__ = ["MODES", "GatewayUser"]

MODES: dict[str, dict[str, Any]] = {
    "full": {"validation": "full", "metric_rows": False},
    "grammar": {"validation": "grammar", "metric_rows": False},
    "off": {"validation": "off", "metric_rows": False},
    "full + rows": {"validation": "full", "metric_rows": True},
}
PHASE_S = float(os.environ.get("BENCH_PHASE_S", "0.5"))
WARMUP_S = float(os.environ.get("BENCH_WARMUP_S", "2"))


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    out = os.environ.get("BENCH_OUT")
    if out:
        gevent.spawn(_take_turns, environment, Path(out))


def _take_turns(environment: Any, out: Path) -> None:
    gevent.sleep(WARMUP_S)
    run = current_run(environment)
    if run is None:
        return
    base = run.settings
    cycles: list[dict[str, dict[str, float]]] = []
    while run.phase != "done":
        cycle: dict[str, dict[str, float]] = {}
        for mode, changes in MODES.items():
            run.settings = dataclasses.replace(base, **changes)
            cpu, wall, requests = time.process_time(), time.perf_counter(), run.metrics.requests
            gevent.sleep(PHASE_S)
            cycle[mode] = {
                "requests": run.metrics.requests - requests,
                "cpu_s": time.process_time() - cpu,
                "wall_s": time.perf_counter() - wall,
            }
        cycles.append(cycle)
        out.write_text(json.dumps({"phase_s": PHASE_S, "cycles": cycles}), encoding="utf-8")
