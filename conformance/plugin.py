"""pytest plugin: `pytest --pyargs conformance.suites --gateway-url URL` runs the conformance suite.

Loaded through the pytest11 entry point in every pytest session of this environment; it stays inert
unless the conformance suites are collected.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conformance.errors import HarnessError
from conformance.results import FEATURES
from conformance.target import (
    AUTH_SCHEMES,
    DEFAULT_ANTHROPIC_VERSION,
    DEFAULT_MODEL,
    Limits,
    Target,
    Timeouts,
    key_from_env,
)

if TYPE_CHECKING:
    from conformance.cassette import Recorder
    from conformance.replay import Replayer
    from conformance.runner import ConformanceRun
    from conformance.transport import Transport

_DEFAULT_TIMEOUTS = Timeouts()
_DEFAULT_LIMITS = Limits()
RUN_KEY = pytest.StashKey["ConformanceRun"]()
SUITE_PACKAGE = "conformance.suites"


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gateway-conformance", "Anthropic-compatible gateway conformance")
    group.addoption(
        "--gateway-url",
        default=None,
        help="base URL of the gateway under test, e.g. http://127.0.0.1:8787 (default: $GATEWAY_URL). "
        "The key is read from $GATEWAY_API_KEY, then $ANTHROPIC_API_KEY; it is never a flag.",
    )
    group.addoption(
        "--gateway-auth",
        default="x-api-key",
        choices=AUTH_SCHEMES,
        help="how the key is sent: x-api-key (Anthropic-native, default) or bearer (Authorization: Bearer)",
    )
    group.addoption("--gateway-model", default=DEFAULT_MODEL, help=f"model to request (default: {DEFAULT_MODEL})")
    group.addoption(
        "--anthropic-version",
        default=DEFAULT_ANTHROPIC_VERSION,
        help=f"anthropic-version header to send (default: {DEFAULT_ANTHROPIC_VERSION})",
    )
    group.addoption(
        "--report-dir",
        default=None,
        help="where conformance.json, junit.xml and report.html go (default: reports/conformance-<timestamp>)",
    )
    group.addoption("--checks", default=None, help="comma-separated check ids or areas to run (default: all)")
    group.addoption("--exclude-checks", default=None, help="comma-separated check ids or areas to leave out")
    group.addoption(
        "--require",
        default=None,
        help=f"comma-separated features that must be supported (else unsupported is a failure): {', '.join(FEATURES)}",
    )
    group.addoption("--baseline", default=None, help="baseline file of accepted deviations: only regressions fail")
    group.addoption("--write-baseline", default=None, help="write the deviations of this run to a baseline file")
    group.addoption(
        "--max-examples",
        type=int,
        default=10,
        help="Hypothesis examples per property test (each costs one request; default 10)",
    )
    group.addoption(
        "--probe-rate-limit",
        type=int,
        default=0,
        metavar="N",
        help="send up to N tiny requests to provoke a 429, then check its retry-after is honest (default 0: off)",
    )
    group.addoption(
        "--upstream-mode",
        action="store_true",
        default=False,
        help="the gateway's upstream is the reference gateway: also run the propagation suite, whose requests cue "
        "the upstream to fail (429, 529, cut streams, ...) and check the failures reach the client "
        "(docs/upstream-mode.md)",
    )
    group.addoption("--connect-timeout", type=float, default=_DEFAULT_TIMEOUTS.connect, help="seconds to connect")
    group.addoption(
        "--first-byte-timeout", type=float, default=_DEFAULT_TIMEOUTS.first_byte, help="seconds to first byte"
    )
    group.addoption("--idle-timeout", type=float, default=_DEFAULT_TIMEOUTS.idle, help="seconds of silence mid-body")
    group.addoption("--total-timeout", type=float, default=_DEFAULT_TIMEOUTS.total, help="seconds for a whole exchange")
    group.addoption(
        "--max-response-bytes",
        type=int,
        default=_DEFAULT_LIMITS.max_body_bytes,
        help=f"a response body larger than this is cut off and reported (default {_DEFAULT_LIMITS.max_body_bytes})",
    )
    group.addoption(
        "--max-events",
        type=int,
        default=_DEFAULT_LIMITS.max_events,
        help=f"a stream with more SSE events is cut off and reported (default {_DEFAULT_LIMITS.max_events})",
    )
    group.addoption(
        "--record",
        default=None,
        metavar="DIR",
        help="also write every exchange of the run (the SDKs' too) to DIR/cassette.json: requests, responses, stream "
        "chunks with their arrival times; credentials redacted (docs/cassettes.md)",
    )
    group.addoption(
        "--replay",
        default=None,
        metavar="DIR",
        help="send nothing: answer every request from DIR/cassette.json (or a cassette file) offline, through respx, "
        "with the recorded timing; the target and --max-examples come from the cassette (docs/cassettes.md)",
    )


def _collecting_suites(config: pytest.Config) -> bool:
    args = [str(a) for a in config.args]
    return any(SUITE_PACKAGE in a or os.sep.join(("conformance", "suites")) in a for a in args)


def build_run(config: pytest.Config) -> ConformanceRun:
    """The ConformanceRun described by the command line; pytest.UsageError when it is wrong."""
    from conformance.checks import select_checks
    from conformance.reporting import load_baseline
    from conformance.runner import ConformanceRun

    opt = config.option
    cassettes = config.stash.get(_CASSETTES_KEY, None)
    url = opt.gateway_url or os.environ.get("GATEWAY_URL") or (cassettes.replay_url if cassettes is not None else None)
    if not url:
        raise pytest.UsageError(
            "the conformance suite needs a gateway: pass --gateway-url URL or set GATEWAY_URL "
            "(or run `python -m conformance check` to test the embedded reference gateway)"
        )
    required = _csv(opt.require)
    unknown = [f for f in required if f not in FEATURES]
    if unknown:
        raise pytest.UsageError(f"--require: unknown feature(s) {', '.join(unknown)}; valid: {', '.join(FEATURES)}")
    if opt.max_examples < 0 or opt.probe_rate_limit < 0:
        raise pytest.UsageError("--max-examples and --probe-rate-limit must be 0 or more")
    try:
        target = Target(
            url,
            key_from_env(),
            auth=opt.gateway_auth,
            anthropic_version=opt.anthropic_version,
            model=opt.gateway_model,
            timeouts=Timeouts(opt.connect_timeout, opt.first_byte_timeout, opt.idle_timeout, opt.total_timeout),
            limits=Limits(opt.max_response_bytes, opt.max_events),
        )
        checks = select_checks(_csv(opt.checks), _csv(opt.exclude_checks))
        baseline = load_baseline(Path(opt.baseline)) if opt.baseline else None
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from exc
    target, transport = cassettes.transport_for(target) if cassettes is not None else (target, None)
    return ConformanceRun(target, transport=transport, checks=checks, required=required, baseline=baseline)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: a conformance suite test against --gateway-url")
    if config.option.record or config.option.replay:
        _Cassettes.install(config)
    if _collecting_suites(config) or config.option.gateway_url or config.option.replay:
        config.stash[RUN_KEY] = build_run(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "probe" not in metafunc.fixturenames:
        return
    from conformance.probes import PROBES

    run = metafunc.config.stash.get(RUN_KEY, None)
    probes = run.selected(PROBES) if run is not None else list(PROBES)
    metafunc.parametrize("probe", probes, ids=[p.id for p in probes])


@pytest.fixture(scope="session")
def conformance_run(request: pytest.FixtureRequest) -> ConformanceRun:
    """The run against --gateway-url that every suite test records into."""
    run = request.config.stash.get(RUN_KEY, None)
    if run is None:
        raise pytest.UsageError("pass --gateway-url URL or set GATEWAY_URL to run the conformance suite")
    return run


def _params(item: pytest.Item) -> dict[str, Any]:
    callspec = getattr(item, "callspec", None)
    return dict(callspec.params) if callspec is not None else {}


def planned_requests(config: pytest.Config, items: list[pytest.Item]) -> str:
    """What the run will send, said before it sends anything (every request may cost money)."""
    run = config.stash[RUN_KEY]
    probes = [
        item.callspec.params["probe"] for item in items if hasattr(item, "callspec") and "probe" in item.callspec.params
    ]
    # The propagation suite's probes (--upstream-mode) count too; a placeholder (None when the mode is off, NOTSET
    # when --checks selects no probe of a module) sends nothing.
    probes += [_params(item).get("upstream_probe") for item in items]
    probes = [p for p in probes if hasattr(p, "request_count")]
    probe_requests = sum(p.request_count for p in probes)
    property_checks = {
        "test_valid_requests": "property_valid_requests_served",
        "test_invalid_requests": "property_invalid_requests_rejected",
    }
    properties = sum(
        1
        for item in items
        for prefix, check_id in property_checks.items()
        if item.name.startswith(prefix) and check_id in run.enabled
    )
    examples = properties * config.option.max_examples
    burst = config.option.probe_rate_limit
    total = probe_requests + examples + burst
    key = "key set" if run.target.api_key is not None else "NO KEY (set GATEWAY_API_KEY or ANTHROPIC_API_KEY)"
    return (
        f"gateway {run.target.base_url} · model {run.target.model} · auth {run.target.auth} · {key}\n"
        f"plan: about {total} requests ({probe_requests} for {len(probes)} probes, {examples} property examples"
        f"{f', up to {burst} to provoke a 429' if burst else ''}); 429/529 are retried up to twice; "
        "max_tokens is at most 64, except 2048 for the thinking probes"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    if RUN_KEY not in session.config.stash:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        for line in planned_requests(session.config, session.items).splitlines():
            reporter.write_line(line)


def _report_dir(config: pytest.Config) -> Path:
    if config.option.report_dir:
        return Path(config.option.report_dir)
    from conformance.reporting.files import run_directory

    return run_directory(Path("reports"), "conformance")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    run = config.stash.get(RUN_KEY, None)
    if run is None or not run.results:
        return
    from conformance.reporting import baseline_from_report, write_baseline, write_reports

    report = run.report(baseline_path=config.option.baseline)
    directory = _report_dir(config)
    paths = write_reports(report, directory)
    config.stash[_REPORT_KEY] = (report, paths)
    if config.option.write_baseline:
        write_baseline(baseline_from_report(report), Path(config.option.write_baseline))
    # The gate is the verdict: should/info findings and baselined ones are reported but do not fail the run.
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED if report.gating_failures else pytest.ExitCode.OK


_REPORT_KEY = pytest.StashKey[Any]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    stored = config.stash.get(_REPORT_KEY, None)
    if stored is None:
        return
    from conformance.reporting import render_summary

    report, paths = stored
    color = terminalreporter.isatty() if hasattr(terminalreporter, "isatty") else sys.stdout.isatty()
    terminalreporter.write_sep("=", "gateway conformance")
    terminalreporter.write_line(render_summary(report, color=bool(color)))
    for name, path in paths.items():
        terminalreporter.write_line(f"  {name}: {path}")


_CASSETTES_KEY = pytest.StashKey["_Cassettes"]()
# Run options that decide which requests are sent: a recording keeps them, a replay repeats them (the check
# selection only when the replay's command line gives none: replaying part of a recording is fine).
_REPLAYED_OPTIONS = ("max_examples", "probe_rate_limit", "upstream_mode")
_REPLAYED_SELECTION = ("checks", "exclude_checks")


class _Cassettes:
    """--record / --replay: the session's Recorder or Replayer, registered as a plugin for its hooks."""

    def __init__(self, config: pytest.Config) -> None:
        from contextlib import ExitStack

        self.config = config
        self.record_dir: Path | None = Path(config.option.record) if config.option.record else None
        self.replay_path: Path | None = Path(config.option.replay) if config.option.replay else None
        self.recorder: Recorder | None = None
        self.replayer: Replayer | None = None
        self.written: Path | None = None
        self._stack = ExitStack()

    @classmethod
    def install(cls, config: pytest.Config) -> None:
        """Open the cassette (usage error when it cannot be used) and register the hooks."""
        if config.option.record and config.option.replay:
            raise pytest.UsageError("--record and --replay exclude each other: record a gateway, or replay a cassette")
        cassettes = cls(config)
        if cassettes.replay_path is not None:
            from conformance.cassette import CassetteError
            from conformance.replay import open_replay

            try:
                cassettes.replayer = open_replay(cassettes.replay_path)
            except CassetteError as exc:
                raise pytest.UsageError(str(exc)) from exc
            options = cassettes.replayer.cassette.options if cassettes.replayer.cassette is not None else {}
            for name in _REPLAYED_OPTIONS + _REPLAYED_SELECTION:
                given = getattr(config.option, name, None)
                if name in options and (name in _REPLAYED_OPTIONS or given is None):
                    setattr(config.option, name, options[name])
            cassettes._stack.enter_context(cassettes.replayer.active())
        config.stash[_CASSETTES_KEY] = cassettes
        config.pluginmanager.register(cassettes, "gateway-conformance-cassettes")

    @property
    def replay_url(self) -> str | None:
        """The recorded gateway URL, when replaying."""
        return self.replayer.target.base_url if self.replayer is not None else None

    def transport_for(self, target: Target) -> tuple[Target, Transport]:
        """The target and Transport of the run: the replay's, or a recording one (which records the SDKs too)."""
        if self.replayer is not None:
            return self.replayer.target, self.replayer.transport
        from conformance.cassette import Recorder

        opt = self.config.option
        names = _REPLAYED_OPTIONS + _REPLAYED_SELECTION
        options = {name: getattr(opt, name) for name in names if getattr(opt, name, None) is not None}
        self.recorder = Recorder(target, options=options)
        self._stack.enter_context(self.recorder.sdk_requests())
        return target, self.recorder.transport()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.recorder is not None:
            self.recorder.context = item.nodeid

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and self.replayer is not None:
            cassette = self.replayer.cassette
            assert cassette is not None
            reporter.write_line(
                f"replaying {self.replay_path} ({len(cassette.interactions)} interactions recorded "
                f"{cassette.recorded_at or 'at an unknown time'}): offline, nothing leaves this process"
            )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.recorder is not None and self.record_dir is not None:
            try:
                self.written = self.recorder.write(self.record_dir)
            except HarnessError as exc:
                raise pytest.UsageError(str(exc)) from exc
        if self.replayer is not None and self.replayer.misses:
            # The replay diverged from the recording: a harness problem, not a verdict on the gateway.
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.written is not None and self.recorder is not None:
            terminalreporter.write_line(f"  cassette: {self.written} ({len(self.recorder)} interactions)")
        if self.replayer is not None:
            terminalreporter.write_line(f"  replay: {self.replayer.summary()}")
            for miss in self.replayer.misses[:10]:
                terminalreporter.write_line(f"    {miss}")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self._stack.close()
        if self.replayer is not None:
            self.replayer.close()
