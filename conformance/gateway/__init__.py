"""The reference gateway: a faithful, deterministic local implementation of the protocol (docs/reference-gateway.md)."""

from __future__ import annotations

from conformance.gateway.config import GatewayConfig
from conformance.gateway.faults import FAULTS, Fault
from conformance.gateway.runner import RunningGateway, start_in_thread, start_subprocess

__all__ = ["FAULTS", "Fault", "GatewayConfig", "RunningGateway", "start_in_thread", "start_subprocess"]
