"""Throughput of the reference gateway on ONE core, driven by a raw-socket asyncio client on the other core(s).

    .venv/bin/python benchmarks/gateway_throughput.py [--duration 4] [--connections 50] [--tokens 20]

The gateway runs in a child process pinned to one CPU; this process pins itself to the remaining CPUs and
keeps 50 keep-alive connections busy with prebuilt requests (one write per request, TCP_NODELAY), so the
client is not the bottleneck: the gateway's CPU use is reported next to each figure to show it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance.gateway import GatewayConfig, RunningGateway, start_subprocess

MODEL = "claude-sonnet-5"


@dataclass(frozen=True, slots=True)
class Result:
    """One measured mode."""

    mode: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: tuple[float, ...]
    gateway_cpu: float  # share of one core the gateway used
    client_cpu: float  # share of one core this process used

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds

    def line(self) -> str:
        """One human-readable line."""
        ordered = sorted(self.latencies_ms)
        p50 = statistics.median(ordered) if ordered else float("nan")
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
        return (
            f"{self.mode:<14} {self.rps:>9.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   "
            f"errors {self.errors}   gateway CPU {self.gateway_cpu:4.0%}   client CPU {self.client_cpu:4.0%}"
        )


class _Connection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection that sends one prebuilt request at a time and detects the response end."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.done: asyncio.Future[bytes] | None = None
        self.expected = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.expected < 0:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.buffer[:head_end]).lower()
            marker = head.find(b"content-length: ")
            if marker >= 0:
                end = head.find(b"\r\n", marker)
                self.expected = head_end + 4 + int(head[marker + 16 : end if end > 0 else None])
            else:
                self.expected = 0  # chunked: complete at the terminating chunk
        complete = len(self.buffer) >= self.expected if self.expected > 0 else self.buffer.endswith(b"\r\n0\r\n\r\n")
        if complete and self.done is not None and not self.done.done():
            self.done.set_result(bytes(self.buffer))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection lost"))

    async def roundtrip(self, request: bytes) -> bytes:
        """Send the request and return the whole raw response."""
        assert self.transport is not None
        self.buffer = bytearray()
        self.expected = -1
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.done


def _request(gateway: RunningGateway, body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {gateway.api_key}\r\n"
        f"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
    ).encode() + data


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(gateway: RunningGateway, request: bytes, mode: str, *, connections: int, duration: float) -> Result:
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(_Connection, "127.0.0.1", gateway.port)
        conns.append(protocol)
    latencies: list[float] = []
    counters = {"ok": 0, "errors": 0}
    measuring = False
    stop_at = 0.0

    async def worker(conn: _Connection) -> None:
        while True:
            started = time.perf_counter()
            if stop_at and started >= stop_at:
                return
            response = await conn.roundtrip(request)
            finished = time.perf_counter()
            if not measuring:
                continue
            if response.startswith(b"HTTP/1.1 200") and (b"message_stop" in response or b'"usage"' in response):
                counters["ok"] += 1
                latencies.append((finished - started) * 1000)
            else:
                counters["errors"] += 1

    tasks = [asyncio.ensure_future(worker(conn)) for conn in conns]
    await asyncio.sleep(0.5)  # warm-up: connections open, caches hot
    assert gateway.pid is not None
    cpu_before, client_before = _cpu_seconds(gateway.pid), time.process_time()
    measuring = True
    began = time.perf_counter()
    stop_at = began + duration
    await asyncio.sleep(duration)
    elapsed = time.perf_counter() - began
    measuring = False
    gateway_cpu = (_cpu_seconds(gateway.pid) - cpu_before) / elapsed
    client_cpu = (time.process_time() - client_before) / elapsed
    await asyncio.gather(*tasks)
    for conn in conns:
        assert conn.transport is not None
        conn.transport.close()
    return Result(mode, counters["ok"], counters["errors"], elapsed, tuple(latencies), gateway_cpu, client_cpu)


def main() -> int:
    """Run both modes and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds measured per mode (after 0.5 s warm-up)")
    parser.add_argument("--connections", type=int, default=50, help="concurrent keep-alive connections")
    parser.add_argument("--tokens", type=int, default=20, help="reply length in tokens")
    args = parser.parse_args()

    cpus = sorted(os.sched_getaffinity(0))
    gateway_cpu = cpus[-1]
    client_cpus = cpus[:-1] or cpus
    if len(cpus) < 2:
        print("warning: one CPU only: client and gateway share it, figures are a lower bound", file=sys.stderr)
    os.sched_setaffinity(0, client_cpus)

    text = "Repeat exactly: " + " ".join(f"word{i}" for i in range(args.tokens))
    body: dict[str, object] = {"model": MODEL, "max_tokens": 1024, "messages": [{"role": "user", "content": text}]}
    with start_subprocess(GatewayConfig(port=0), cpus=[gateway_cpu]) as gateway:
        print(
            f"reference gateway pid {gateway.pid} on CPU {gateway_cpu}; client on CPU(s) {client_cpus}; "
            f"{args.connections} connections; {args.tokens}-token replies; {args.duration:g} s per mode"
        )
        results = []
        for mode, stream in (("non-streaming", False), ("streaming", True)):
            request = _request(gateway, {**body, "stream": stream})
            results.append(
                uvloop.run(_drive(gateway, request, mode, connections=args.connections, duration=args.duration))
            )
            print(results[-1].line(), flush=True)
        stats = gateway.stats()
    print(f"gateway counters: requests {stats['requests']}, streams {stats['streams']}, by_status {stats['by_status']}")
    return 0 if all(result.errors == 0 for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
