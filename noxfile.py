"""How CI and developers run everything: `nox -s tests lint typecheck conformance`."""

from __future__ import annotations

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]
PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The selftests (offline: recorded transcripts and the reference gateway on loopback)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", "conformance", "loadtests", "tools", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "conformance", "loadtests", "tools", "tests", "benchmarks", "noxfile.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """The conformance check: the embedded reference gateway, or `nox -s conformance -- --gateway-url URL`."""
    session.install("-e", ".")
    session.run("python", "-m", "conformance", "check", *session.posargs)


@nox.session(python=PYTHON)
def benchmarks(session: nox.Session) -> None:
    """Print the throughput and validation-cost figures (a measurement, not a test)."""
    session.install("-e", ".")
    session.run("python", "benchmarks/stream_validation.py")
    session.run("python", "benchmarks/gateway_throughput.py")
    session.run("python", "benchmarks/locust_validation.py")
    session.run("python", "benchmarks/peak_memory.py")


@nox.session(python=PYTHON)
def load(session: nox.Session) -> None:
    """A short bounded load test against the reference gateway: reports under reports/load-<timestamp>/.

    Starts the gateway (a child process on 127.0.0.1), runs a headless Locust for ~12 s with a request budget,
    stops both, and fails when a threshold is breached. `nox -s load -- --scenario mixed --duration 20`.
    """
    session.install("-e", ".")
    session.run("python", "-m", "loadtests.ci", *session.posargs)


@nox.session(python=PYTHON)
def litellm(session: nox.Session) -> None:
    """LiteLLM proxy end to end: the suite, the SDKs and a short load test through it (reports/litellm-<ts>/).

    Installs LiteLLM (pinned) into a venv under ~/.cache/gateway-conformance/litellm the first time (~750 MB),
    starts the reference gateway as its upstream and LiteLLM on 127.0.0.1, and stops everything it started.
    `nox -s litellm -- --skip-load`, `-- --serve` (keep it up for replaying curl lines); see tools/litellm/README.md.
    """
    session.install("-e", ".")
    session.run("python", "tools/litellm/run.py", *session.posargs)
