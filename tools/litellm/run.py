#!/usr/bin/env python3
"""LiteLLM proxy end to end: the conformance suite, an SDK check and a short load test through a real gateway.

    python tools/litellm/run.py [--litellm-port 4400] [--upstream-port 4401] [--skip-load] [--serve] ...

installs LiteLLM proxy (pinned) into a venv in a cache directory outside the repo, starts the project's own
reference gateway as LiteLLM's upstream (plus a second, rate-limited one), starts LiteLLM on 127.0.0.1 with one
OpenAI-translated and one Anthropic-native model in front of it, runs the conformance suite per model, the rate-limit
checks, an official-SDK check and a short headless load test through it, writes everything under
reports/litellm-<UTC timestamp>/, and always stops every process it started (and checks that none is left).
`--serve` starts the same stack and waits for Ctrl-C, so a report's curl lines can be replayed by hand.
See tools/litellm/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from conformance.reporting.files import run_directory as shared_run_directory

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"
LITELLM_VERSION = "1.106.2"
# prisma: without it, a request with no API key crashes LiteLLM's error handler (HTTP 500 text/plain);
# pinned so that a fresh machine gets what this was tested with.
EXTRA_PACKAGES = ("prisma==0.15.0",)
UPSTREAM_MODEL = "claude-sonnet-4-6"  # a model the reference gateway serves
DEFAULT_LITELLM_PORT = 4400
DEFAULT_UPSTREAM_PORT = 4401
DEFAULT_LIMITED_PORT = 4402
LIMITED_RPM = 6  # the rate-limited upstream: 6 requests a minute, so a 429 says retry-after 10
MARKER_ENV = "GATEWAY_CONFORMANCE_LITELLM_RUN"  # every child carries it: how leftovers are found
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
UPSTREAM_KEY_ENV = "REF_GATEWAY_API_KEY"
STATE_FILE = "running.json"  # in the cache dir while a run is live: lets the next run clean up after a crash


# ----------------------------------------------------------------------------------------------------------------
# What LiteLLM serves


@dataclass(frozen=True, slots=True)
class Route:
    """One model LiteLLM serves: the name clients request and how LiteLLM reaches the reference gateway."""

    name: str
    provider: str  # "openai": Anthropic <-> OpenAI translation; "anthropic": LiteLLM's native Anthropic provider
    upstream: str  # "upstream" (the reference gateway) or "limited" (the rate-limited one)
    about: str

    def litellm_params(self, upstream_url: str) -> dict[str, str]:
        """The route's `litellm_params`: the key is read from the environment, never written to the file."""
        base = upstream_url.rstrip("/")
        return {
            "model": f"{self.provider}/{UPSTREAM_MODEL}",
            "api_base": f"{base}/v1" if self.provider == "openai" else base,
            "api_key": f"os.environ/{UPSTREAM_KEY_ENV}",
        }


ROUTES = (
    Route("ref-openai", "openai", "upstream", "/v1/messages translated to chat/completions on the reference gateway"),
    Route("ref-anthropic", "anthropic", "upstream", "LiteLLM's Anthropic provider against the reference gateway"),
    Route("ref-openai-limited", "openai", "limited", "as ref-openai, upstream rate-limited (429 + retry-after)"),
    Route("ref-anthropic-limited", "anthropic", "limited", "as ref-anthropic, upstream rate-limited"),
)
SUITE_ROUTES = tuple(r for r in ROUTES if r.upstream == "upstream")
LIMITED_ROUTES = tuple(r for r in ROUTES if r.upstream == "limited")


def _yaml_scalar(value: object) -> str:
    # JSON scalars are valid YAML flow scalars: strings double-quoted with JSON escapes, true/false, numbers.
    return json.dumps(value)


def litellm_config(routes: Sequence[Route], upstream_urls: Mapping[str, str]) -> str:
    """LiteLLM's config.yaml: the routes, and the settings it needs on a closed network. Holds no secret."""
    lines = [
        "# Written by tools/litellm/run.py: LiteLLM proxy on 127.0.0.1 in front of the project's reference gateway.",
        f"# Keys come from the environment ({MASTER_KEY_ENV}, {UPSTREAM_KEY_ENV}): none is written here.",
        "model_list:",
    ]
    for route in routes:
        params = ", ".join(
            f"{k}: {_yaml_scalar(v)}" for k, v in route.litellm_params(upstream_urls[route.upstream]).items()
        )
        lines += [
            f"  # {route.about}",
            f"  - model_name: {_yaml_scalar(route.name)}",
            f"    litellm_params: {{{params}}}",
        ]
    lines += [
        "general_settings:",
        f"  master_key: {_yaml_scalar('os.environ/' + MASTER_KEY_ENV)}",
        "litellm_settings:",
        "  telemetry: false",
        "  # the suite judges LiteLLM's own answers: no retries behind its back",
        "  num_retries: 0",
        "  # without this, openai/* models are bridged to the OpenAI *Responses* API (POST /v1/responses)",
        "  use_chat_completions_url_for_anthropic_messages: true",
        "router_settings:",
        "  # without this, one failed upstream call puts the model in a cooldown and later requests get",
        '  # 429 "No deployments available" for a few seconds',
        "  disable_cooldowns: true",
        "",
    ]
    return "\n".join(lines)


def litellm_env(
    base: Mapping[str, str], *, master_key: str, upstream_key: str, marker: str, egress_proxy: str
) -> dict[str, str]:
    """LiteLLM's environment: keys, the run marker, and everything that keeps it off the network."""
    env = {k: v for k, v in base.items() if not _is_proxy_var(k)}
    env.update(
        {
            MASTER_KEY_ENV: master_key,
            UPSTREAM_KEY_ENV: upstream_key,
            MARKER_ENV: marker,
            # the model cost map is otherwise fetched from raw.githubusercontent.com at import
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            # any HTTP(S) request for a non-loopback address goes to the egress sentinel, which refuses and records it
            "HTTP_PROXY": egress_proxy,
            "HTTPS_PROXY": egress_proxy,
            "ALL_PROXY": egress_proxy,
            "http_proxy": egress_proxy,
            "https_proxy": egress_proxy,
            "all_proxy": egress_proxy,
            "NO_PROXY": "127.0.0.1,localhost,::1",
            "no_proxy": "127.0.0.1,localhost,::1",
            "AIOHTTP_TRUST_ENV": "True",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "NO_COLOR": "1",
        }
    )
    return env


def _is_proxy_var(name: str) -> bool:
    return name.lower() in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


# ----------------------------------------------------------------------------------------------------------------
# Ports


class PortBusy(Exception):
    """A requested port is already taken on 127.0.0.1."""


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether host:port can be listened on right now (SO_REUSEADDR, as the servers bind: TIME_WAIT is no obstacle)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A port the kernel says is free (it may be taken again before it is used: a tiny race, reported clearly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def resolve_ports(requested: Mapping[str, int], *, is_free: Callable[[int], bool] = port_is_free) -> dict[str, int]:
    """Each name's port: 0 picks a free one; a fixed port must be free and distinct, else PortBusy says which."""
    resolved: dict[str, int] = {}
    for name, port in requested.items():
        if not 0 <= port <= 65535:
            raise PortBusy(f"{name} port {port} is not a TCP port")
        if port and port in resolved.values():
            raise PortBusy(f"{name} port {port} is also asked for by another process of this run")
        if port and not is_free(port):
            raise PortBusy(
                f"{name} port {port} on {LOOPBACK} is in use (another run, or something else): "
                f"pass --{name}-port N (0 picks a free port)"
            )
        resolved[name] = port
    for name, port in resolved.items():
        if port == 0:
            chosen = free_port()
            while chosen in resolved.values():
                chosen = free_port()
            resolved[name] = chosen
    return resolved


# ----------------------------------------------------------------------------------------------------------------
# Processes: each child in its own session (process group), marked, stopped by group, leftovers looked for


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM if the launcher dies (even by SIGKILL), so a crash leaves nothing running.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def marked_processes(marker: str, *, proc: Path = Path("/proc"), exclude: Iterable[int] = ()) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose environment carries MARKER_ENV=marker (only ours can)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    skip = {os.getpid(), *exclude}
    found: list[tuple[int, str]] = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if needle not in environ.split(b"\0"):
                continue
            state = _proc_state(entry)
            if state == "Z":  # a zombie holds nothing; its parent (a child of ours) reaps it
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found.append((int(entry.name), cmdline))
    return found


def _proc_state(entry: Path) -> str:
    stat = (entry / "stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def kill_marked(marker: str, *, grace: float = 5.0) -> list[tuple[int, str]]:
    """SIGTERM, then SIGKILL, every process carrying the marker; returns those that were found."""
    found = marked_processes(marker)
    for pid, _ in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and marked_processes(marker):
        time.sleep(0.1)
    for pid, _ in marked_processes(marker):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return found


class Child:
    """A child process in its own session, its output in a log file; stop() ends its whole process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM to the group, wait `grace` s, then SIGKILL the group; returns the exit status."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # The leader is gone; anything it left in its group (its own children) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()
        return self.proc.returncode


def run_streamed(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    timeout: float,
    secrets_: Sequence[str],
    echo: TextIO | None = sys.stdout,
    cwd: Path = ROOT,
) -> int:
    """Run a child to completion in its own session; its output (secrets masked) to the log and the console.

    After `timeout` s its whole process group is killed and -9 is returned.
    """
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    timed_out = threading.Event()

    def watchdog() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, watchdog)
    timer.daemon = True
    timer.start()
    assert proc.stdout is not None
    try:
        with log.open("w", encoding="utf-8") as out:
            for raw in proc.stdout:
                line = mask(raw.decode("utf-8", errors="replace"), secrets_)
                out.write(line)
                if echo is not None:
                    echo.write(line)
                    echo.flush()
        proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        timer.cancel()
        proc.stdout.close()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group
    return -9 if timed_out.is_set() else proc.returncode


def mask(text: str, secrets_: Iterable[str]) -> str:
    """Every secret replaced by ***."""
    for secret in secrets_:
        if secret:
            text = text.replace(secret, "***")
    return text


def wait_http(url: str, *, timeout: float, child: Child | None = None, want: int = 200) -> None:
    """Poll url until it answers `want`; fails early when the child has exited."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"{child.name} exited with status {child.proc.returncode} (log: {child.log_path})")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == want:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer {want} within {timeout:.0f} s (last: {last})")


# ----------------------------------------------------------------------------------------------------------------
# The egress sentinel: LiteLLM's HTTP(S) proxy, which forwards nothing


class EgressSentinel:
    """A loopback HTTP proxy that refuses everything (403) and records what was asked of it.

    LiteLLM gets it as HTTP(S)_PROXY with NO_PROXY=127.0.0.1, so a request it would send to any other
    address (a cost map, telemetry, a real provider) ends here instead of leaving the machine, and is reported.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.url = f"http://{LOOPBACK}:{self._sock.getsockname()[1]}"
        self.attempts: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="egress-sentinel", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                with contextlib.suppress(OSError):
                    while b"\r\n" not in data and len(data) < 8192:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                first = data.split(b"\r\n", 1)[0].decode("latin-1", errors="replace")[:300]
                self.attempts.append(first or "(connection without a request line)")
                with contextlib.suppress(OSError):
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


# ----------------------------------------------------------------------------------------------------------------
# Installing LiteLLM


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """$XDG_CACHE_HOME (or ~/.cache)/gateway-conformance/litellm."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gateway-conformance" / "litellm"


def installed_version(venv: Path) -> str | None:
    """The litellm version installed in venv (read from its metadata: importing litellm would hit the network)."""
    python = venv / "bin" / "python"
    if not (python.exists() and (venv / "bin" / "litellm").exists()):
        return None
    probe = (
        "import importlib.metadata as m, importlib.util as u\n"
        "assert u.find_spec('prisma') is not None\n"
        "print(m.version('litellm'))"
    )
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_litellm(cache: Path, version: str, *, log: Callable[[str], None] = print) -> Path:
    """The litellm executable of a venv holding litellm[proxy]==version (+ prisma); installed when missing."""
    venv = cache / version / "venv"
    if installed_version(venv) == version:
        return venv / "bin" / "litellm"
    if venv.exists():
        shutil.rmtree(venv)  # a half-finished or different install
    venv.parent.mkdir(parents=True, exist_ok=True)
    log(f"installing litellm[proxy]=={version} into {venv} (about 1-2 minutes and 750 MB, once)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, f"litellm[proxy]=={version}", *EXTRA_PACKAGES], check=True)
    found = installed_version(venv)
    if found != version:
        raise RuntimeError(f"installed litellm is {found!r}, expected {version}")
    return venv / "bin" / "litellm"


# ----------------------------------------------------------------------------------------------------------------
# Reading the reports


def suite_findings(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per failing check id of a conformance.json: severity, section, probes, first message and curl."""
    rows: dict[str, dict[str, Any]] = {}
    ran: dict[str, int] = {}
    for result in report.get("checks", []):
        ran[result["id"]] = ran.get(result["id"], 0) + 1
        if result["outcome"] not in ("failed", "error"):
            continue
        row = rows.setdefault(
            result["id"],
            {
                "id": result["id"],
                "severity": result["severity"],
                "section": result["section"],
                "outcome": result["outcome"],
                "probes": [],
                "message": result["message"],
                "reproduce": result.get("reproduce") or "",
            },
        )
        row["probes"].append(result["probe"])
    order = {"must": 0, "should": 1, "info": 2}
    for check_id, row in rows.items():
        row["of"] = ran[check_id]
    return sorted(rows.values(), key=lambda r: (order.get(r["severity"], 3), r["id"]))


def summary_markdown(run: Mapping[str, Any]) -> str:
    """The human summary of a run: steps, findings per model, egress and leftovers."""
    urls = run["urls"]
    out = [
        f"# LiteLLM {run['litellm_version']} through the conformance suite ({run['started_at']})",
        "",
        f"LiteLLM on {urls.get('litellm', '?')}, reference gateway upstream on {urls.get('upstream', '?')}"
        f" (rate-limited upstream: {urls.get('limited', '?')}); wall time {run.get('wall_s', '?')} s.",
        "",
        "| step | result | exit | seconds | where |",
        "|---|---|---|---|---|",
    ]
    for step in run["steps"]:
        cells = [step.get(k) for k in ("name", "result", "exit", "seconds", "where")]
        out.append("| " + " | ".join("" if c is None else str(c).replace("|", "\\|") for c in cells) + " |")
    for model, findings in run.get("findings", {}).items():
        out += [
            "",
            f"## {model}",
            "",
            "| check | severity | section | probes | first message |",
            "|---|---|---|---|---|",
        ]
        for row in findings:
            message = row["message"].splitlines()[0][:140].replace("|", "\\|") if row["message"] else ""
            probes = f"{len(row['probes'])}/{row['of']}"
            out.append(f"| {row['id']} | {row['severity']} | §{row['section']} | {probes} | {message} |")
        if not findings:
            out.append("| (none) | | | | |")
    out += ["", "## Egress", ""]
    attempts = run.get("egress_attempts", [])
    out.append(
        "LiteLLM asked for no non-loopback address."
        if not attempts
        else "LiteLLM tried to reach (refused by the sentinel):\n" + "\n".join(f"- `{a}`" for a in attempts)
    )
    out += ["", "## Processes left behind", ""]
    left = run.get("leftovers", [])
    out.append("None." if not left else "\n".join(f"- pid {pid}: `{cmd}`" for pid, cmd in left))
    out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------------------
# The run


@dataclass
class Step:
    name: str
    result: str = "not run"
    exit: int | None = None
    seconds: float | None = None
    where: str = ""


@dataclass
class Stack:
    """What a run started, so that `finally` can stop all of it."""

    marker: str
    children: list[Child] = field(default_factory=list)
    sentinel: EgressSentinel | None = None

    def stop(self) -> list[tuple[int, str]]:
        for child in reversed(self.children):
            child.stop()
        if self.sentinel is not None:
            self.sentinel.close()
        time.sleep(0.2)
        leftovers = kill_marked(self.marker)  # anything that escaped its group
        return leftovers


class Interrupted(BaseException):
    """SIGTERM/SIGHUP: unwind through every `finally`, as Ctrl-C does."""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def run_directory(parent: Path) -> Path:
    """A new reports/litellm-<UTC timestamp>[-n]/."""
    return shared_run_directory(parent, "litellm")


def clean_stale(cache: Path, *, log: Callable[[str], None] = print) -> None:
    """Stop what a previous run that was killed before its cleanup left running (found by its marker)."""
    state = cache / STATE_FILE
    if not state.exists():
        return
    with contextlib.suppress(OSError, ValueError, KeyError):
        marker = json.loads(state.read_text())["marker"]
        for pid, cmd in kill_marked(marker):
            log(f"stopped pid {pid} left by an earlier run: {cmd[:120]}")
    state.unlink(missing_ok=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python tools/litellm/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--litellm-version", default=LITELLM_VERSION, help=f"default {LITELLM_VERSION}")
    parser.add_argument("--cache-dir", type=Path, help="where the LiteLLM venv lives (default: %(default)s)")
    parser.add_argument("--reports", type=Path, default=ROOT / "reports", help="parent of the run directory")
    parser.add_argument("--litellm-port", type=int, default=DEFAULT_LITELLM_PORT, help="0 picks a free port")
    parser.add_argument("--upstream-port", type=int, default=DEFAULT_UPSTREAM_PORT, help="the reference gateway")
    parser.add_argument("--limited-port", type=int, default=DEFAULT_LIMITED_PORT, help="the rate-limited one")
    parser.add_argument(
        "--models",
        help="suite models, comma-separated (default: all of " + ", ".join(r.name for r in SUITE_ROUTES) + ")",
    )
    parser.add_argument("--upstream-ttft-ms", type=float, default=20.0, help="the upstream's TTFT (default 20)")
    parser.add_argument("--upstream-itl-ms", type=float, default=5.0, help="the upstream's ITL (default 5)")
    parser.add_argument("--max-examples", type=int, default=10, help="Hypothesis examples per property")
    parser.add_argument("--skip-ratelimit", action="store_true", help="leave out the rate-limit step")
    parser.add_argument("--skip-sdk", action="store_true", help="leave out the official-SDK step")
    parser.add_argument("--skip-load", action="store_true", help="leave out the load test")
    parser.add_argument("--load-seconds", type=int, default=8, help="load test duration per model (default 8)")
    parser.add_argument("--startup-timeout", type=float, default=180.0, help="seconds LiteLLM gets to start")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a model is non-conformant")
    parser.add_argument("--serve", action="store_true", help="start the stack, print how to reach it, wait for Ctrl-C")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    cache = args.cache_dir or cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    clean_stale(cache)
    models = [r for r in SUITE_ROUTES if not args.models or r.name in args.models.split(",")]
    if args.models and len(models) != len(args.models.split(",")):
        print(f"error: --models takes {', '.join(r.name for r in SUITE_ROUTES)}", file=sys.stderr)
        return 2
    try:
        ports = resolve_ports(
            {"litellm": args.litellm_port, "upstream": args.upstream_port, "limited": args.limited_port}
        )
    except PortBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    out = run_directory(args.reports)
    marker = secrets.token_hex(12)
    master_key = os.environ.get(MASTER_KEY_ENV) or f"sk-litellm-{secrets.token_urlsafe(18)}"
    if not master_key.startswith("sk-"):
        print(f"error: ${MASTER_KEY_ENV} must start with sk- (LiteLLM requires it)", file=sys.stderr)
        return 2
    upstream_key = os.environ.get(UPSTREAM_KEY_ENV) or f"sk-ref-{secrets.token_urlsafe(24)}"
    hidden = (master_key, upstream_key)
    urls = {name: f"http://{LOOPBACK}:{port}" for name, port in ports.items()}
    run: dict[str, Any] = {
        "format": "gateway-conformance/litellm-run@1",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "litellm_version": args.litellm_version,
        "extra_packages": list(EXTRA_PACKAGES),
        "urls": urls,
        "routes": [asdict(r) for r in ROUTES],
        "steps": [],
        "findings": {},
        "verdicts": {},
    }
    steps: list[Step] = []
    print(f"reports in {out}", flush=True)

    stack = Stack(marker)
    (cache / STATE_FILE).write_text(json.dumps({"marker": marker, "pid": os.getpid()}))
    # SIGINT too: a launcher started in the background of a script inherits SIGINT ignored, and Ctrl-C, a
    # SIGTERM from CI or a closed terminal must all unwind through the cleanup below.
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    status = 0
    try:
        step = Step("install", where=str(cache / args.litellm_version / "venv"))
        steps.append(step)
        t0 = time.monotonic()
        litellm = ensure_litellm(cache, args.litellm_version)
        step.result, step.seconds = "ok", round(time.monotonic() - t0, 1)

        base_env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_API_KEY", "ANTHROPIC_API_KEY")}
        base_env[MARKER_ENV] = marker
        base_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), base_env.get("PYTHONPATH")]))
        stack.sentinel = EgressSentinel()

        step = Step("start", where=out.name)
        steps.append(step)
        t0 = time.monotonic()
        gateway_env = {**base_env, "GATEWAY_API_KEY": upstream_key}  # the key in the environment, never argv
        latency = ["--ttft-ms", str(args.upstream_ttft_ms), "--itl-ms", str(args.upstream_itl_ms)]
        for name, extra in (("upstream", latency), ("limited", ["--rate-limit-rpm", str(LIMITED_RPM)])):
            serve = [
                sys.executable,
                "-m",
                "conformance",
                "serve",
                "--host",
                LOOPBACK,
                "--port",
                str(ports[name]),
                *extra,
            ]
            stack.children.append(
                Child(f"reference gateway ({name})", serve, env=gateway_env, log=out / f"{name}.log", cwd=ROOT)
            )
        for child, name in zip(stack.children, ("upstream", "limited"), strict=True):
            wait_http(f"{urls[name]}/_reference/stats", timeout=30, child=child)
        config = out / "litellm-config.yaml"
        config.write_text(litellm_config(ROUTES, urls))
        env = litellm_env(
            base_env, master_key=master_key, upstream_key=upstream_key, marker=marker, egress_proxy=stack.sentinel.url
        )
        workdir = out / "litellm-workdir"
        workdir.mkdir()
        command = [str(litellm), "--config", str(config), "--host", LOOPBACK, "--port", str(ports["litellm"])]
        proxy = Child("litellm", command, env=env, log=out / "litellm.log", cwd=workdir)
        stack.children.append(proxy)
        wait_http(f"{urls['litellm']}/health/liveliness", timeout=args.startup_timeout, child=proxy)
        step.result, step.seconds = "ok", round(time.monotonic() - t0, 1)
        print(f"LiteLLM {args.litellm_version} ready on {urls['litellm']} in {step.seconds} s", flush=True)

        client_env = {**base_env, "GATEWAY_API_KEY": master_key}
        if args.serve:
            serve_until_interrupted(urls, master_key, os.environ.get(MASTER_KEY_ENV) is None)
            return 0

        features = suite_features(client_env)
        run["suite_features"] = asdict(features)
        for route in models:
            where = out / route.name
            extra = ["--max-examples", str(args.max_examples)]
            argv = suite_command(features, urls["litellm"], route.name, where, upstream_mode=True, extra=extra)
            steps.append(suite_step(route, where, argv, client_env, hidden, run))
        if not args.skip_ratelimit:
            for route in LIMITED_ROUTES:
                where = out / route.name
                extra = ["--checks", "ratelimit", "--probe-rate-limit", str(LIMITED_RPM * 3)]
                argv = suite_command(features, urls["litellm"], route.name, where, upstream_mode=False, extra=extra)
                steps.append(suite_step(route, where, argv, client_env, hidden, run, kind="rate limits"))
        if not args.skip_sdk:
            steps.append(sdk_step(models, urls["litellm"], out, client_env, hidden))
        if not args.skip_load:
            for route in models:
                steps.append(load_step(route, urls["litellm"], out, client_env, hidden, args.load_seconds))
    except (Interrupted, KeyboardInterrupt) as exc:
        if args.serve:
            steps.append(Step("serve", f"stopped by {exc or 'Ctrl-C'}"))
        else:
            print(f"\ninterrupted ({exc or 'Ctrl-C'}): stopping everything", file=sys.stderr, flush=True)
            steps.append(Step("interrupted", "stopped"))
            status = 130
    except Exception as exc:  # a step that could not run: stop everything, report, fail
        print(f"error: {mask(str(exc), hidden)}", file=sys.stderr, flush=True)
        steps.append(Step("error", mask(str(exc), hidden)[:300]))
        status = 3
    finally:
        # Nothing may cut the cleanup short: a second Ctrl-C or a SIGTERM waits until it is done.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            escaped = stack.stop()
            for log in (out / "litellm.log", out / "upstream.log", out / "limited.log"):
                if log.exists():
                    log.write_text(mask(log.read_text(errors="replace"), hidden))
            remaining = marked_processes(marker)
            if not remaining:
                (cache / STATE_FILE).unlink(missing_ok=True)
            run["steps"] = [asdict(s) for s in steps]
            run["egress_attempts"] = stack.sentinel.attempts if stack.sentinel else []
            run["escaped_their_group"] = escaped
            run["leftovers"] = remaining
            run["wall_s"] = round(time.monotonic() - started, 1)
            (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
            (out / "summary.md").write_text(summary_markdown(run))
            print("\n" + summary_markdown(run), flush=True)
            if remaining:
                print(f"error: {len(remaining)} process(es) left behind", file=sys.stderr)
                status = status or 3
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if status:
        return status
    if any(s.result in ("failed", "error") for s in steps):
        return 3
    if args.strict and any(v != "conformant" for v in run["verdicts"].values()):
        return 1
    return 0


def serve_until_interrupted(urls: Mapping[str, str], master_key: str, made_up: bool) -> None:
    """--serve: print how to reach the stack, then wait for Ctrl-C (or SIGTERM)."""
    print(f"\nLiteLLM proxy: {urls['litellm']}  models: {', '.join(r.name for r in ROUTES)}")
    if made_up:
        print(f"export GATEWAY_API_KEY={master_key}   # made up for this run (set ${MASTER_KEY_ENV} to choose it)")
    else:
        print(f"export GATEWAY_API_KEY=${MASTER_KEY_ENV}")
    print(
        "Replay a report's curl line, or: python -m conformance check --gateway-url "
        f"{urls['litellm']} --gateway-model ref-openai\nCtrl-C stops everything.",
        flush=True,
    )
    while True:
        time.sleep(3600)


@dataclass(frozen=True, slots=True)
class SuiteFeatures:
    """What this checkout's `python -m conformance` offers beyond `check` (newer features are used when present)."""

    record: bool = False  # `record --out DIR`: the run also leaves a cassette
    upstream_mode: bool = False  # `--upstream-mode`: the upstream-propagation probes (upstream = reference gateway)


def suite_features(env: Mapping[str, str]) -> SuiteFeatures:
    """Ask the CLI itself what it supports."""
    record = subprocess.run(
        [sys.executable, "-m", "conformance", "record", "--help"],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    check = subprocess.run(
        [sys.executable, "-m", "conformance", "check", "--help"],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return SuiteFeatures(record=record.returncode == 0, upstream_mode="--upstream-mode" in check.stdout)


def suite_command(
    features: SuiteFeatures, url: str, model: str, where: Path, *, upstream_mode: bool, extra: Sequence[str] = ()
) -> list[str]:
    """The argv of one suite run: `record` (reports + cassette) when available, else `check`."""
    command = ["record", "--out", str(where / "cassette")] if features.record else ["check"]
    argv = [sys.executable, "-m", "conformance", *command, "--gateway-url", url, "--gateway-model", model,
            "--report-dir", str(where), *extra]  # fmt: skip
    if upstream_mode and features.upstream_mode:
        argv.append("--upstream-mode")
    return argv


def suite_step(
    route: Route,
    where: Path,
    argv: Sequence[str],
    env: Mapping[str, str],
    hidden: Sequence[str],
    run: dict[str, Any],
    *,
    kind: str = "suite",
    timeout: float = 900,
) -> Step:
    """One suite run against one model; its reports (and cassette) in `where`."""
    step = Step(f"{kind} {route.name}", where=where.name)
    print(f"\n=== {kind}: {route.name} ({route.about})", flush=True)
    t0 = time.monotonic()
    where.mkdir()
    code = run_streamed(argv, env=env, log=where / "check.log", timeout=timeout, secrets_=hidden)
    step.exit, step.seconds = code, round(time.monotonic() - t0, 1)
    report = where / "conformance.json"
    if code in (0, 1) and report.exists():
        data = json.loads(report.read_text())
        run["verdicts"][route.name] = data["verdict"]
        run["findings"][route.name] = suite_findings(data)
        step.result = data["verdict"]
    else:
        step.result = "failed"
    return step


def sdk_step(routes: Sequence[Route], url: str, out: Path, env: Mapping[str, str], hidden: Sequence[str]) -> Step:
    """tools/litellm/sdk_check.py: what the official SDKs make of each finding (out/sdk.json, out/sdk.txt)."""
    step = Step("sdk check", where="sdk.json")
    models = ",".join(r.name for r in routes)
    limited = ",".join(r.name for r in LIMITED_ROUTES)
    argv = [sys.executable, str(HERE / "sdk_check.py"), "--base-url", url, "--models", models,
            "--limited-models", limited, "--out", str(out / "sdk.json")]  # fmt: skip
    print("\n=== official SDKs", flush=True)
    t0 = time.monotonic()
    code = run_streamed(argv, env=env, log=out / "sdk.txt", timeout=300, secrets_=hidden)
    step.exit, step.seconds = code, round(time.monotonic() - t0, 1)
    step.result = "ok" if code == 0 and (out / "sdk.json").exists() else "failed"
    return step


def load_step(route: Route, url: str, out: Path, env: Mapping[str, str], hidden: Sequence[str], seconds: int) -> Step:
    """A short headless Locust run (docs/loadtests.md, scenario mixed) against one model: out/<model>/load/."""
    where = out / route.name / "load"
    step = Step(f"load {route.name}", where=str(where.relative_to(out)))
    locustfile = ROOT / "loadtests" / "locustfile.py"
    if not locustfile.exists():
        step.result = "skipped: loadtests/locustfile.py not present"
        return step
    where.mkdir(parents=True)
    argv = [sys.executable, "-m", "locust", "-f", str(locustfile), "-H", url, "--headless", "--only-summary",
            "-u", "4", "-r", "4", "-t", f"{seconds}s", "--scenario", "mixed", "--user-rps", "2",
            "--max-requests", "300", "--model", route.name,
            "--csv", str(where / "locust"), "--html", str(where / "locust.html"),
            "--llm-report", str(where / "llm")]  # fmt: skip
    print(f"\n=== load test: {route.name} ({seconds} s, mixed)", flush=True)
    t0 = time.monotonic()
    code = run_streamed(argv, env=env, log=where / "locust.log", timeout=seconds + 120, secrets_=hidden, echo=None)
    step.exit, step.seconds = code, round(time.monotonic() - t0, 1)
    report = where / "llm.json"
    if code in (0, 1) and report.exists():
        step.result = "gate passed" if code == 0 else "gate breached"
        tail = (where / "locust.log").read_text(errors="replace").strip().splitlines()
        begin = next((i for i, line in enumerate(tail) if line.startswith("LLM load test")), max(len(tail) - 30, 0))
        print("\n".join(tail[begin:]), flush=True)
    else:
        step.result = "failed"
        print((where / "locust.log").read_text(errors="replace")[-3000:], flush=True)
    return step


if __name__ == "__main__":
    raise SystemExit(main())
