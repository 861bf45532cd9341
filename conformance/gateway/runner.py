"""Starting the reference gateway in a background thread or a child process, and the handle to stop it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from conformance.errors import HarnessError
from conformance.gateway.config import GatewayConfig

__all__ = ["RunningGateway", "bind", "gateway_url", "start_in_thread", "start_subprocess", "uvicorn_server"]

_URL = re.compile(r"https?://\S+")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def gateway_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; binding here (not in uvicorn) is what lets port 0 report the real port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def uvicorn_server(config: GatewayConfig, *, log_level: str = "warning", configure_logging: bool = True) -> Any:
    """A uvicorn Server (httptools, uvloop, no access log) around a GatewayApp for this config."""
    import uvicorn

    from conformance.gateway.app import GatewayApp

    settings: dict[str, Any] = {
        "http": "httptools",
        "loop": "uvloop",
        "lifespan": "off",
        "access_log": False,
        "server_header": False,
        "log_level": log_level,
        "timeout_graceful_shutdown": 2,
        "backlog": 2048,
    }
    if not configure_logging:
        # In a host process (tests), leave its logging configuration alone.
        settings["log_config"] = None
    return uvicorn.Server(uvicorn.Config(GatewayApp(config), **settings))


class RunningGateway:
    """A started reference gateway: its URL and key, its counters, and how to stop it (also a context manager)."""

    def __init__(
        self,
        config: GatewayConfig,
        url: str,
        *,
        server: Any = None,
        thread: threading.Thread | None = None,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.config = config
        self.url = url
        self.api_key: str = config.api_key or ""
        self._server = server
        self._thread = thread
        self._process = process

    @property
    def pid(self) -> int | None:
        """The child process id when started with start_subprocess, else None."""
        return self._process.pid if self._process is not None else None

    @property
    def port(self) -> int:
        """The port actually listened on."""
        return int(self.url.rsplit(":", 1)[1])

    def stats(self) -> dict[str, Any]:
        """The gateway's counters, as GET /_reference/stats returns them."""
        if self._server is not None:
            app = self._server.config.app
            snapshot: dict[str, Any] = app.stats.snapshot(self.config.faults)
            return snapshot
        with urllib.request.urlopen(f"{self.url}/_reference/stats", timeout=5) as response:
            loaded: dict[str, Any] = json.loads(response.read())
            return loaded

    def stop(self) -> None:
        """Stop serving and wait for the server to exit."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._thread = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=5)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None

    def __enter__(self) -> RunningGateway:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        mode = "thread" if self._server is not None else "process" if self._process is not None else "stopped"
        return f"RunningGateway(url={self.url!r}, mode={mode!r}, faults={self.config.faults!r})"


def start_in_thread(config: GatewayConfig | None = None, *, startup_timeout: float = 10.0) -> RunningGateway:
    """Serve in a background thread of this process (its own uvloop loop); returns once it accepts connections."""
    import uvloop

    config, _ = (config or GatewayConfig(port=0)).with_key()
    sock = bind(config.host, config.port)
    server = uvicorn_server(config, configure_logging=False)
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported to the starting thread below
            failure.append(exc)
        finally:
            sock.close()

    thread = threading.Thread(target=serve, name=f"reference-gateway:{sock.getsockname()[1]}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if failure or not thread.is_alive():
            raise HarnessError(f"the reference gateway did not start: {failure[0] if failure else 'thread exited'}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise HarnessError(f"the reference gateway did not start within {startup_timeout} s")
        time.sleep(0.005)
    return RunningGateway(config, gateway_url(config.host, sock.getsockname()[1]), server=server, thread=thread)


def _argv(config: GatewayConfig) -> list[str]:
    argv = [
        "--host", config.host,
        "--port", str(config.port),
        "--ttft-ms", repr(config.ttft_ms),
        "--itl-ms", repr(config.itl_ms),
        "--rate-limit-window", repr(config.rate_limit_window_s),
        "--fault-every", str(config.fault_every),
        "--cut-after-events", str(config.cut_after_events),
        "--max-body-bytes", str(config.max_body_bytes),
        "--organization-id", config.organization_id,
    ]  # fmt: skip
    if config.rate_limit_rpm is not None:
        argv += ["--rate-limit-rpm", str(config.rate_limit_rpm)]
    for fault in config.faults:
        argv += ["--fault", fault]
    for model in config.extra_models:
        argv += ["--model", model]
    return argv


def start_subprocess(
    config: GatewayConfig | None = None,
    *,
    cpus: Iterable[int] | None = None,
    startup_timeout: float = 15.0,
) -> RunningGateway:
    """Serve from a child process (optionally pinned to `cpus`), so the gateway has a core of its own."""
    config, _ = (config or GatewayConfig(port=0)).with_key()
    assert config.api_key is not None
    env = dict(os.environ)
    env["GATEWAY_API_KEY"] = config.api_key  # the environment, not argv: argv is visible to every local user
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
    pinned = tuple(cpus) if cpus is not None else None

    def pin() -> None:
        if pinned:
            os.sched_setaffinity(0, pinned)

    process = subprocess.Popen(
        [sys.executable, "-m", "conformance.gateway.server", *_argv(config)],
        stdout=subprocess.PIPE,
        env=env,
        preexec_fn=pin if pinned else None,
    )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=startup_timeout)
    line = process.stdout.readline().decode() if ready else ""
    found = _URL.search(line)
    if found is None:
        process.kill()
        process.wait()
        raise HarnessError(f"the reference gateway process did not start (said {line.strip()!r})")
    return RunningGateway(config, found.group(0), process=process)
