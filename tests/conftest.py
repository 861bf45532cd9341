"""Shared fixtures: the reference gateway on a free loopback port, once per session or made to order."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from conformance.gateway import GatewayConfig, RunningGateway, start_in_thread

GatewayFactory = Callable[..., RunningGateway]


@pytest.fixture(scope="session")
def reference_gateway() -> Iterator[RunningGateway]:
    """A conformant reference gateway (no latency, no faults, no rate limit) shared by the whole session."""
    with start_in_thread(GatewayConfig(port=0)) as gateway:
        yield gateway


@pytest.fixture
def gateway_factory() -> Iterator[GatewayFactory]:
    """Start gateways with custom options, e.g. `gateway_factory(faults=("stream-cut",), ttft_ms=20)`; stopped after."""
    started: list[RunningGateway] = []

    def start(**options: Any) -> RunningGateway:
        options.setdefault("port", 0)
        gateway = start_in_thread(GatewayConfig(**options))
        started.append(gateway)
        return gateway

    yield start
    # In parallel: each stop waits for uvicorn's exit tick (~0.1 s).
    with ThreadPoolExecutor(max_workers=max(len(started), 1)) as pool:
        list(pool.map(RunningGateway.stop, started))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection or resolve a name fails the test: for the offline selftests."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"an offline test tried to reach the network: {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
