"""`python -m conformance serve|check|checks`: the reference gateway, the conformance check, the check list."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from conformance import __version__
from conformance.results import FEATURES
from conformance.target import AUTH_SCHEMES, DEFAULT_ANTHROPIC_VERSION, DEFAULT_MODEL

EXIT_OK, EXIT_NONCONFORMANT, EXIT_USAGE, EXIT_HARNESS = 0, 1, 2, 3
SUITES_DIR = Path(__file__).parent / "suites"


# The plugin's bound options, passed through by `check` when given (flag, type, help).
_BOUNDS: tuple[tuple[str, type, str], ...] = (
    ("--connect-timeout", float, "seconds to connect (default 10)"),
    ("--first-byte-timeout", float, "seconds from the request to the end of the response headers (default 120)"),
    ("--idle-timeout", float, "seconds without a complete SSE frame (without a byte, for other bodies) (default 60)"),
    ("--total-timeout", float, "seconds for a whole exchange (default 600)"),
    ("--max-response-bytes", int, "a larger response body is cut off and reported (default 64 MiB)"),
    ("--max-events", int, "a stream with more SSE events is cut off and reported (default 100000)"),
)


def build_parser() -> argparse.ArgumentParser:
    """The command line, with every option documented."""
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Conformance suite, load tests and reference gateway for Anthropic-compatible LLM gateways.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the embedded reference gateway on loopback")
    from conformance.gateway.server import add_arguments

    add_arguments(serve)

    check = commands.add_parser(
        "check",
        help="run the conformance suite against a gateway (default: the embedded reference gateway)",
        description="Run the conformance suite. Without --gateway-url it starts the embedded reference gateway on a "
        "free loopback port and checks that. The key comes from GATEWAY_API_KEY, then ANTHROPIC_API_KEY. "
        "Exit status: 0 conformant, 1 non-conformant (a must-level failure not in the baseline), 2 usage error, "
        "3 harness error.",
    )
    check.add_argument(
        "--gateway-url", help="base URL of the gateway under test (default: $GATEWAY_URL, else embedded)"
    )
    check.add_argument("--gateway-model", default=DEFAULT_MODEL, help=f"model to request (default: {DEFAULT_MODEL})")
    check.add_argument("--gateway-auth", choices=AUTH_SCHEMES, default="x-api-key", help="how the key is sent")
    check.add_argument("--anthropic-version", default=DEFAULT_ANTHROPIC_VERSION, help="anthropic-version to send")
    check.add_argument("--report-dir", help="where the reports go (default: reports/conformance-<timestamp>)")
    check.add_argument("--require", help=f"features that must be supported, comma-separated: {', '.join(FEATURES)}")
    check.add_argument("--checks", help="only these check ids or areas, comma-separated")
    check.add_argument("--exclude-checks", help="leave out these check ids or areas, comma-separated")
    check.add_argument("--baseline", help="baseline file of accepted deviations: only regressions fail the gate")
    check.add_argument("--write-baseline", help="write this run's deviations to a baseline file")
    check.add_argument("--max-examples", type=int, default=10, help="Hypothesis examples per property (default 10)")
    check.add_argument(
        "--probe-rate-limit",
        type=int,
        default=0,
        metavar="N",
        help="send up to N tiny requests to provoke a 429 and check its retry-after is honest (default: off)",
    )
    check.add_argument(
        "--rate-limit-rpm",
        type=int,
        default=0,
        help="with the embedded gateway only: its requests-per-minute limit (see `serve --rate-limit-rpm`)",
    )
    check.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME",
        help="with the embedded gateway only: serve this deviation (see `serve --fault list`), to see a failing report",
    )
    check.add_argument(
        "--upstream-mode",
        action="store_true",
        help="the gateway's upstream is the reference gateway (`serve`): also check that upstream failures "
        "(429 retry-after, 529, cut streams, usage, pacing) reach the client intact; see docs/upstream-mode.md",
    )
    bounds = check.add_argument_group(
        "bounds", "what one exchange may take (docs/hostile-gateways.md); the defaults suit LLM streams"
    )
    for flag, kind, what in _BOUNDS:
        bounds.add_argument(flag, type=kind, default=None, help=what)
    check.add_argument("-v", "--verbose", action="store_true", help="one line per test instead of progress dots")
    check.add_argument(
        "--record",
        metavar="DIR",
        help="also write every exchange (the SDKs' too) to DIR/cassette.json, credentials redacted (docs/cassettes.md)",
    )
    check.add_argument(
        "--replay",
        metavar="DIR",
        help="send nothing: answer every request from DIR/cassette.json (or a cassette file) offline with the "
        "recorded timing; the gateway, model, auth and --max-examples come from the cassette",
    )

    record = commands.add_parser(
        "record",
        parents=[check],
        conflict_handler="resolve",
        help="run the suite like `check` and keep every exchange as a cassette (replay it with `check --replay DIR`)",
        description="Run the conformance suite like `check` (against --gateway-url, or the embedded reference "
        "gateway with its --fault options) and write every exchange to DIR/cassette.json: requests, responses, "
        "stream chunks with their arrival times. The key is redacted everywhere (docs/cassettes.md). Exit status "
        "as for `check`.",
    )
    record.add_argument("--out", required=True, metavar="DIR", help="where the cassette goes (DIR/cassette.json)")
    record.add_argument("--record", help=argparse.SUPPRESS)
    record.add_argument("--replay", help=argparse.SUPPRESS)

    commands.add_parser("checks", help="list every registered check with its severity, area and rule")
    return parser


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _pytest_args(args: argparse.Namespace, url: str) -> list[str]:
    argv = [
        "--pyargs",
        "conformance.suites",
        "-c",
        str(SUITES_DIR / "pytest.ini"),
        "--rootdir",
        str(SUITES_DIR),
        "-p",
        "no:locust",
        "-p",
        "no:cacheprovider",
        # The CLI imported the package before pytest started, so pytest cannot rewrite it: that is expected.
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        "--gateway-url",
        url,
        "--gateway-model",
        args.gateway_model,
        "--gateway-auth",
        args.gateway_auth,
        "--anthropic-version",
        args.anthropic_version,
        "--max-examples",
        str(args.max_examples),
        "--probe-rate-limit",
        str(args.probe_rate_limit),
    ]
    for name in ("report_dir", "require", "checks", "exclude_checks", "baseline", "write_baseline"):
        value = getattr(args, name)
        if value:
            argv += [
                "--" + name.replace("_", "-"),
                str(Path(value).resolve()) if "dir" in name or "baseline" in name else value,
            ]
    if args.upstream_mode:
        argv.append("--upstream-mode")
    for name in ("record", "replay"):
        value = getattr(args, name, None)
        if value:
            argv += ["--" + name, str(Path(value).resolve())]
    for flag, _, _ in _BOUNDS:
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            argv += [flag, str(value)]
    argv.append("-v" if args.verbose else "-q")
    return argv


def _exit_code(code: int) -> int:
    import pytest

    mapping: dict[int, int] = {
        int(pytest.ExitCode.OK): EXIT_OK,
        int(pytest.ExitCode.TESTS_FAILED): EXIT_NONCONFORMANT,
        int(pytest.ExitCode.USAGE_ERROR): EXIT_USAGE,
        int(pytest.ExitCode.NO_TESTS_COLLECTED): EXIT_USAGE,
    }
    return mapping.get(int(code), EXIT_HARNESS)


def run_check(args: argparse.Namespace) -> int:
    """Run the suite in this process against the given URL, or against an embedded reference gateway."""
    import pytest

    if args.max_examples < 0:
        print("error: --max-examples must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    if not args.report_dir:
        from conformance.reporting.files import run_directory

        args.report_dir = str(run_directory(Path("reports"), "conformance"))
    if args.replay:
        return _run_replay(args)
    url = args.gateway_url or os.environ.get("GATEWAY_URL")
    if url:
        if args.fault or args.rate_limit_rpm:
            print(
                "error: --fault and --rate-limit-rpm only apply to the embedded reference gateway (omit --gateway-url)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        return _exit_code(pytest.main(_pytest_args(args, url)))

    from conformance.errors import HarnessError
    from conformance.gateway import GatewayConfig, start_in_thread

    key = "sk-ref-" + secrets.token_urlsafe(24)
    try:
        config = GatewayConfig(
            host="127.0.0.1", port=0, api_key=key, faults=tuple(args.fault), rate_limit_rpm=args.rate_limit_rpm or None
        )
    except (HarnessError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with start_in_thread(config) as gateway:
        faults = f" serving fault(s) {', '.join(args.fault)}" if args.fault else ""
        print(f"Embedded reference gateway at {gateway.url}{faults}", flush=True)
        with _environ(GATEWAY_API_KEY=key):
            return _exit_code(pytest.main(_pytest_args(args, gateway.url)))


def _run_replay(args: argparse.Namespace) -> int:
    """`check --replay DIR`: the suite answered offline from a cassette (nothing is sent, nothing is started)."""
    import pytest

    from conformance.cassette import CassetteError, read_cassette

    if args.record or args.gateway_url or args.fault or args.rate_limit_rpm:
        print(
            "error: --replay answers from the cassette: do not combine it with --gateway-url, --record, --fault "
            "or --rate-limit-rpm",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        cassette = read_cassette(args.replay)
    except CassetteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    origin = cassette.target.base_url
    print(f"Replaying {args.replay}: {len(cassette.interactions)} interactions recorded from {origin}", flush=True)
    return _exit_code(pytest.main(_pytest_args(args, cassette.target.base_url)))


def list_checks() -> int:
    """Print the registered checks."""
    from conformance.checks import CHECKS, load_all

    load_all()
    width = max(len(c) for c in CHECKS)
    for check in sorted(CHECKS.values(), key=lambda c: (c.area, c.id)):
        print(f"{check.id:<{width}}  {check.severity:<6}  {check.area:<12}  §{check.section:<5} {check.rule}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m conformance`."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from conformance.gateway.server import run

        return run(args)
    if args.command == "check":
        return run_check(args)
    if args.command == "record":
        args.record = args.out
        return run_check(args)
    return list_checks()
