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
    session.run("ruff", "check", "conformance", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "conformance", "tests", "benchmarks", "noxfile.py")


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
