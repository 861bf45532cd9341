"""The Locust front-end, wired through events only: options, run setup, distribution, web UI, report and gate.

Import this module from a locustfile (loadtests/locustfile.py does). What each Locust process does:

    local    builds the LoadRun, records, reports, gates
    worker   builds the LoadRun with its share of the budgets, ships its metrics to the master every report
             (report_to_master), relays "first 429" and "done" to the master
    master   splits the budgets among workers (test_start), merges their metrics (worker_report), broadcasts
             the ratelimit phase, ends the run when every worker has spent its share, reports and gates

The gate is a `quitting` listener that sets environment.process_exit_code: 1 on a breached threshold.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from conformance.errors import HarnessError
from conformance.target import Target, key_from_env, mask_secrets
from loadtests import webui
from loadtests.budget import split
from loadtests.metrics import Metrics
from loadtests.reports import console_text, write_reports
from loadtests.run import LoadRun
from loadtests.settings import DEFAULT_RUN_TIME_S, LoadSettings, add_arguments, settings_from_options
from loadtests.thresholds import evaluate, ratelimit_verdict
from loadtests.users import GatewayUser, current_run, install_run

__all__ = ["Control", "control"]

log = logging.getLogger("loadtests")

MSG_SHARE = "llm-share"  # master -> worker: {"requests", "tokens", "prober"}
MSG_PHASE = "llm-phase"  # master -> worker: {"phase"}
MSG_LIMITED = "llm-limited"  # worker -> master: {"rps"}
MSG_FINISHED = "llm-finished"  # worker -> master: {"reason"}


class Control:
    """What the plugin keeps per Locust environment."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.metrics = Metrics()  # local: everything; master: merged from workers; worker: since the last report
        self.cumulative = Metrics()  # worker: everything it has shipped (for its own report)
        self.settings: LoadSettings | None = None
        self.cost: dict[str, Any] = {}
        self.started_wall: str | None = None
        self.t_start: float | None = None
        self.t_stop: float | None = None
        self.cpu_start: float | None = None
        self.cpu_stop: float | None = None
        self.share: tuple[int, int | None, bool] | None = None  # worker: (requests, tokens, may probe)
        self.expected_workers: set[str] = set()
        self.finished_workers: set[str] = set()
        self.ending = False
        self.key = key_from_env()

    @property
    def role(self) -> str:
        """local, master or worker."""
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            return "master"
        if isinstance(runner, WorkerRunner):
            return "worker"
        return "local"

    def cpu_seconds(self) -> float | None:
        """CPU time this process spent from test start to test stop (the harness's own cost)."""
        if self.cpu_start is None:
            return None
        return (self.cpu_stop if self.cpu_stop is not None else time.process_time()) - self.cpu_start

    def duration(self) -> float | None:
        """Seconds from test start to test stop (or to now while running)."""
        if self.t_start is None:
            return None
        return (self.t_stop or time.perf_counter()) - self.t_start

    def report(self, *, final: bool = False, metrics: Metrics | None = None) -> dict[str, Any]:
        """The report of the run so far (of `metrics`, default this process's); with final, the gate's verdict."""
        settings = self.settings or settings_from_options(self.environment.parsed_options)
        metrics = self.metrics if metrics is None else metrics
        duration = self.duration()
        summary = metrics.summary(duration_s=duration)
        report: dict[str, Any] = {
            "scenario": settings.scenario.name,
            "host": self.environment.host,
            "role": self.role,
            "started_at": self.started_wall,
            "duration_s": None if duration is None else round(duration, 3),
            "process_cpu_s": None if (cpu := self.cpu_seconds()) is None else round(cpu, 3),
            **self.cost,
            "thresholds": settings.thresholds.as_dict(),
            "summary": summary,
        }
        if self.role == "master":
            report["workers"] = len(self.expected_workers)
        if settings.scenario.ramps:
            verdict, problems = ratelimit_verdict(summary["rate_limit"])
            report["ratelimit_verdict"] = verdict
            report["ratelimit_problems"] = problems
        if final:
            breaches = evaluate(summary, settings.thresholds, scenario=settings.scenario.name)
            report["breaches"] = [b.as_dict() for b in breaches]
            report["passed"] = not breaches
            stats = self.environment.runner.stats.total
            report["locust"] = {"requests": stats.num_requests, "failures": stats.num_failures}
        else:
            report["breaches"] = None
        return report

    def mask(self, text: str) -> str:
        """Text with the key masked."""
        return mask_secrets(text, [self.key])

    # ------------------------------------------------------------------ ending the run

    def end_run(self, reason: str) -> None:
        """Stop the test (and quit, in headless runs) from a greenlet of its own."""
        if self.ending:
            return
        self.ending = True
        log.info("LLM load test: %s, ending the run", reason)
        environment = self.environment
        options = environment.parsed_options
        runner = environment.runner
        if environment.web_ui is None or options is None or getattr(options, "headless", False):
            gevent.spawn(runner.quit)
            return
        gevent.spawn(runner.stop)
        autoquit = getattr(options, "autoquit", -1)
        if getattr(options, "autostart", False) and autoquit is not None and autoquit >= 0:

            def quit_all() -> None:
                runner.quit()
                environment.web_ui.stop()

            gevent.spawn_later(autoquit, quit_all)

    def on_finished(self, reason: str) -> None:
        """A LoadRun in this process is done."""
        if self.role == "worker":
            self.environment.runner.send_message(MSG_FINISHED, {"reason": reason})
        else:
            self.end_run("request/token budget spent" if reason == "budget" else reason)

    def on_limited(self, rps: float) -> None:
        """The ramp met its first 429 in this process."""
        if self.role == "worker":
            self.environment.runner.send_message(MSG_LIMITED, {"rps": rps})


_CONTROLS: dict[int, Control] = {}


def control(environment: Any) -> Control:
    """The plugin's state for this environment."""
    found = _CONTROLS.get(id(environment))
    if found is None:
        found = _CONTROLS[id(environment)] = Control(environment)
    return found


def _usage_error(message: str) -> None:
    sys.stderr.write(f"loadtests: {message}\n")
    sys.exit(2)


# ---------------------------------------------------------------------- listeners


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_kw: Any) -> None:
    add_arguments(parser)


@events.init.add_listener
def _on_init(environment: Any, runner: Any = None, web_ui: Any = None, **_kw: Any) -> None:
    ctl = control(environment)
    options = environment.parsed_options
    if ctl.role != "worker":
        try:
            ctl.settings = settings_from_options(options)
            if environment.host:
                Target(environment.host, ctl.key)
        except HarnessError as exc:
            _usage_error(str(exc))
        if options is not None and getattr(options, "run_time", None) is None:
            # Every run is bounded in time as well as in requests.
            options.run_time = DEFAULT_RUN_TIME_S
            log.info("LLM load test: no --run-time given, bounded at %s s", DEFAULT_RUN_TIME_S)
        if ctl.key is None:
            log.warning("LLM load test: neither GATEWAY_API_KEY nor ANTHROPIC_API_KEY is set; requests carry no key")
    if isinstance(runner, WorkerRunner):
        runner.register_message(MSG_SHARE, _on_share)
        runner.register_message(MSG_PHASE, _on_phase)
    elif isinstance(runner, MasterRunner):
        runner.register_message(MSG_LIMITED, _on_limited)
        runner.register_message(MSG_FINISHED, _on_worker_finished)
    if web_ui is not None:
        webui.install(web_ui, lambda: _masked(ctl, ctl.report()))


def _masked(ctl: Control, report: dict[str, Any]) -> dict[str, Any]:
    """The report with the key masked anywhere in it (a gateway may echo it in an error message)."""
    if ctl.key is None:
        return report
    masked: dict[str, Any] = json.loads(ctl.mask(json.dumps(report, default=str)))
    return masked


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    ctl = control(environment)
    try:
        settings = settings_from_options(environment.parsed_options)
        target = Target(environment.host or "http://127.0.0.1", ctl.key, auth=settings.auth, model=settings.model)
    except HarnessError as exc:
        log.error("LLM load test: %s", exc)
        gevent.spawn(environment.runner.quit)
        return
    ctl.settings = settings
    ctl.metrics.reset()
    ctl.cumulative.reset()
    ctl.finished_workers.clear()
    ctl.ending = False
    ctl.t_start = time.perf_counter()
    ctl.t_stop = None
    ctl.cpu_start = time.process_time()
    ctl.cpu_stop = None
    ctl.started_wall = datetime.now(UTC).isoformat(timespec="seconds")
    for user_class in environment.user_classes:
        if issubclass(user_class, GatewayUser):
            user_class.connection_timeout = settings.connect_timeout
            user_class.network_timeout = settings.idle_timeout
    if ctl.role == "master":
        runner = environment.runner
        workers = sorted(c.id for c in runner.clients.ready + runner.clients.running + runner.clients.spawning)
        ctl.expected_workers = set(workers)
        for index, client_id in enumerate(workers):
            runner.send_message(
                MSG_SHARE,
                {
                    "requests": split(settings.max_requests, len(workers), index),
                    "tokens": split(settings.token_budget, len(workers), index),
                    "prober": index == 0,
                },
                client_id,
            )
        run = LoadRun(settings, target, metrics=ctl.metrics)
    else:
        share = ctl.share if ctl.role == "worker" else None
        run = LoadRun(
            settings,
            target,
            metrics=ctl.metrics,
            request_share=share[0] if share else None,
            token_share=share[1] if share else None,
            may_probe=share[2] if share else True,
            on_limited=ctl.on_limited,
            on_finished=ctl.on_finished,
        )
        install_run(environment, run)
    ctl.cost = run.describe()
    if ctl.role != "worker":
        print(f"LLM load test '{settings.scenario.name}': {run.cost.describe()}", flush=True)


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kw: Any) -> None:
    ctl = control(environment)
    if ctl.t_start is not None and ctl.t_stop is None:
        ctl.t_stop = time.perf_counter()
        ctl.cpu_stop = time.process_time()


@events.reset_stats.add_listener
def _on_reset_stats(**_kw: Any) -> None:
    for ctl in _CONTROLS.values():
        if ctl.role != "worker":
            ctl.metrics.reset()


@events.report_to_master.add_listener
def _on_report_to_master(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
    for ctl in _CONTROLS.values():
        if ctl.role == "worker":
            shipped = ctl.metrics.take()
            ctl.cumulative.merge_wire(shipped)
            data["llm"] = shipped


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
    shipped = data.get("llm")
    if not shipped:
        return
    for ctl in _CONTROLS.values():
        if ctl.role == "master":
            ctl.metrics.merge_wire(shipped)


def _on_share(environment: Any, msg: Any, **_kw: Any) -> None:
    ctl = control(environment)
    data = msg.data or {}
    ctl.share = (int(data["requests"]), data.get("tokens"), bool(data.get("prober")))
    run = current_run(environment)
    if run is not None:
        run.set_share(ctl.share[0], ctl.share[1])
        run.may_probe = ctl.share[2] and run.settings.scenario.ramps


def _on_phase(environment: Any, msg: Any, **_kw: Any) -> None:
    run = current_run(environment)
    if run is not None:
        run.enter_phase((msg.data or {}).get("phase", "run"))


def _on_limited(environment: Any, msg: Any, **_kw: Any) -> None:
    environment.runner.send_message(MSG_PHASE, {"phase": "probe"})


def _on_worker_finished(environment: Any, msg: Any, **_kw: Any) -> None:
    ctl = control(environment)
    reason = (msg.data or {}).get("reason", "budget")
    if reason != "budget":
        ctl.end_run(reason)
        return
    ctl.finished_workers.add(msg.node_id)
    if ctl.expected_workers and ctl.expected_workers <= ctl.finished_workers:
        ctl.end_run("request/token budget spent on every worker")


@events.quitting.add_listener
def _on_quitting(environment: Any, **_kw: Any) -> None:
    ctl = control(environment)
    if ctl.t_start is not None and ctl.t_stop is None:
        ctl.t_stop = time.perf_counter()
        ctl.cpu_stop = time.process_time()
    settings = ctl.settings
    if settings is None:
        return
    if ctl.role == "worker":
        if settings.report_prefix:
            index = getattr(environment.runner, "worker_index", -1)
            total = Metrics()
            total.merge_wire(ctl.cumulative.to_wire())
            total.merge_wire(ctl.metrics.to_wire())
            report = _masked(ctl, ctl.report(metrics=total))
            write_reports(report, f"{settings.report_prefix}.worker-{index}", secrets=[ctl.key])
        return
    report = _masked(ctl, ctl.report(final=True))
    print(ctl.mask(console_text(report)), flush=True)
    if settings.report_prefix:
        paths = write_reports(report, settings.report_prefix, secrets=[ctl.key])
        print("LLM reports: " + ", ".join(str(p) for p in paths), flush=True)
    runner = environment.runner
    if report["breaches"]:
        environment.process_exit_code = 1
    elif not runner.exceptions:
        # 429s in the ratelimit scenario or expected failures would make Locust exit 1: the gate decides.
        environment.process_exit_code = 0
