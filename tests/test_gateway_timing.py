"""Latency injection accuracy, the rate limiter end to end, and how fast `serve` starts."""

from __future__ import annotations

import itertools
import json
import os
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from conformance.gateway import FAULTS, GatewayConfig, RunningGateway, start_subprocess
from conformance.gateway.faults import HOSTILE_FAULTS

ROOT = Path(__file__).resolve().parents[1]
MODEL = "claude-sonnet-5"
TTFT_MS, ITL_MS = 40.0, 8.0
WORDS = 20


@pytest.fixture(scope="module")
def slow_gateway() -> Iterator[RunningGateway]:
    """A gateway in its own process (so this test process's GIL does not disturb its timers), pinned to one core."""
    cpus = sorted(os.sched_getaffinity(0))
    with start_subprocess(GatewayConfig(port=0, ttft_ms=TTFT_MS, itl_ms=ITL_MS), cpus=cpus[-1:]) as gateway:
        yield gateway


def raw_request(gateway: RunningGateway, body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST /v1/messages HTTP/1.1\r\nhost: gateway\r\nx-api-key: {gateway.api_key}\r\n"
        f"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
    ).encode() + data


def timed_stream(sock: socket.socket, request: bytes) -> tuple[float, float, list[float]]:
    """Send one request on a warm connection; (t_sent, first byte, arrival time of each text delta)."""
    sent = time.perf_counter()
    sock.sendall(request)
    first_byte = 0.0
    deltas: list[float] = []
    received = b""
    while not received.endswith(b"0\r\n\r\n"):
        chunk = sock.recv(65536)
        now = time.perf_counter()
        assert chunk, "connection closed mid-stream"
        first_byte = first_byte or now
        deltas += [now] * chunk.count(b'"text_delta"')
        received += chunk
    return sent, first_byte, deltas


def test_latency_injection_is_accurate(slow_gateway: RunningGateway) -> None:
    text = "Repeat exactly: " + " ".join(f"word{i}" for i in range(WORDS))
    body = {"model": MODEL, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": text}]}
    request = raw_request(slow_gateway, body)
    ttft_errors, itl_errors, spans, ttfbs = [], [], [], []
    with socket.create_connection(("127.0.0.1", slow_gateway.port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        timed_stream(sock, request)  # warm-up
        for _ in range(8):
            sent, first_byte, deltas = timed_stream(sock, request)
            assert len(deltas) == WORDS
            ttfbs.append((first_byte - sent) * 1000)
            ttft_errors.append((deltas[0] - sent) * 1000 - TTFT_MS)
            itl_errors += [(b - a) * 1000 - ITL_MS for a, b in itertools.pairwise(deltas)]
            spans.append((deltas[-1] - deltas[0]) * 1000 - (WORDS - 1) * ITL_MS)
    summary = (
        f"TTFB median {statistics.median(ttfbs):.2f} ms; TTFT error median {statistics.median(ttft_errors):+.2f} ms; "
        f"ITL |error| median {statistics.median(map(abs, itl_errors)):.2f} ms; span drift median "
        f"{statistics.median(spans):+.2f} ms"
    )
    print(summary)
    assert statistics.median(ttfbs) < TTFT_MS / 2, summary  # message_start and ping go out at once
    assert abs(statistics.median(ttft_errors)) < 3, summary
    assert statistics.median(map(abs, itl_errors)) < 3, summary
    assert abs(statistics.median(spans)) < 3, summary  # absolute deadlines: no drift over the stream


def test_non_streaming_waits_for_the_last_token(slow_gateway: RunningGateway) -> None:
    text = "Repeat exactly: " + " ".join(f"word{i}" for i in range(WORDS))
    request = raw_request(
        slow_gateway, {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": text}]}
    )
    errors = []
    with socket.create_connection(("127.0.0.1", slow_gateway.port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(4):
            sent = time.perf_counter()
            sock.sendall(request)
            received = b""
            while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
                received += sock.recv(65536)
            errors.append((time.perf_counter() - sent) * 1000 - (TTFT_MS + (WORDS - 1) * ITL_MS))
    assert abs(statistics.median(errors)) < 3, errors
    assert slow_gateway.stats()["by_status"]["200"] >= 4  # counters over HTTP from the child process


def test_rate_limit_with_an_honest_retry_after(gateway_factory: Callable[..., RunningGateway]) -> None:
    gateway = gateway_factory(rate_limit_rpm=2, rate_limit_window_s=2.0)  # one request per second refills
    headers = {"x-api-key": gateway.api_key, "anthropic-version": "2023-06-01"}
    body = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        first, second, refused = (client.post("/v1/messages", headers=headers, json=body) for _ in range(3))
        assert [first.status_code, second.status_code, refused.status_code] == [200, 200, 429]
        assert [r.headers["anthropic-ratelimit-requests-remaining"] for r in (first, second)] == ["1", "0"]
        assert first.headers["anthropic-ratelimit-requests-limit"] == "2"
        reset = datetime.strptime(refused.headers["anthropic-ratelimit-requests-reset"], "%Y-%m-%dT%H:%M:%SZ")
        assert 0 <= (reset.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds() <= 4
        error = refused.json()
        assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
        assert refused.headers["x-should-retry"] == "true"
        retry_after = int(refused.headers["retry-after"])
        assert retry_after == 1
        peek = client.get("/v1/models", headers=headers)  # not a generation request: reports, does not consume
        assert peek.status_code == 200 and peek.headers["anthropic-ratelimit-requests-remaining"] == "0"
        time.sleep(retry_after)
        assert client.post("/v1/messages", headers=headers, json=body).status_code == 200
    assert gateway.stats()["rate_limited"] == 1


def _serve_command() -> list[str]:
    if (ROOT / "conformance" / "__main__.py").exists() and (ROOT / "conformance" / "cli.py").exists():
        return [sys.executable, "-m", "conformance", "serve"]
    return [sys.executable, "-m", "conformance.gateway.server"]


def test_serve_starts_quickly_and_prints_its_url_and_made_up_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_API_KEY"}
    env["PYTHONPATH"] = str(ROOT)
    started = time.perf_counter()
    process = subprocess.Popen([*_serve_command(), "--port", "0"], stdout=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=10), "no output from serve"
        line = process.stdout.readline().decode()
        found = re.search(r"(http://127\.0\.0\.1:\d+) \(api key: (\S+)\)", line)
        assert found, line
        url, key = found.groups()
        response = httpx.get(f"{url}/v1/models", headers={"x-api-key": key, "anthropic-version": "2023-06-01"})
        elapsed = time.perf_counter() - started
        assert response.status_code == 200
        print(f"serve answered its first request {elapsed:.2f} s after launch")
        assert elapsed < 3.0
    finally:
        process.terminate()
        process.wait(timeout=10)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught so the parent sees how it ended.
    assert process.returncode in (0, -signal.SIGTERM)


def test_fault_list_prints_every_fault() -> None:
    result = subprocess.run(
        [*_serve_command(), "--fault", "list"], capture_output=True, text=True, timeout=30, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [*FAULTS, *HOSTILE_FAULTS]


def test_unknown_fault_is_a_usage_error() -> None:
    result = subprocess.run(
        [*_serve_command(), "--fault", "gremlins"], capture_output=True, text=True, timeout=30, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 2 and "valid faults:" in result.stderr
