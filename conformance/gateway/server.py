"""The `serve` command line of the reference gateway (`python -m conformance serve`, or this module directly)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from conformance.errors import HarnessError
from conformance.gateway.config import (
    DEFAULT_HOST,
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_PORT,
    MAX_BODY_BYTES,
    GatewayConfig,
)
from conformance.gateway.faults import describe_faults, describe_hostile_faults
from conformance.gateway.runner import bind, gateway_url, uvicorn_server

__all__ = ["add_arguments", "config_from_args", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m conformance serve`."""
    group = parser.add_argument_group("reference gateway")
    group.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    group.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port; 0 picks a free one (default {DEFAULT_PORT})"
    )
    group.add_argument(
        "--api-key",
        default=None,
        help="the key clients must send (x-api-key or Authorization: Bearer); default $GATEWAY_API_KEY, "
        "else one is made up and printed",
    )
    group.add_argument("--ttft-ms", type=float, default=0.0, help="time from request to first content delta (ms)")
    group.add_argument("--itl-ms", type=float, default=0.0, help="time between consecutive content deltas (ms)")
    group.add_argument(
        "--rate-limit-rpm", type=int, default=None, help="requests per window per key; over it: 429 with retry-after"
    )
    group.add_argument(
        "--rate-limit-window",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="the rate limiter's window (default 60)",
    )
    group.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME",
        help="serve a protocol.md section 7 deviation or a hostile behaviour (repeatable); `--fault list` lists them",
    )
    group.add_argument("--list-faults", action="store_true", help="list the fault names and exit")
    group.add_argument(
        "--fault-every",
        type=int,
        default=2,
        metavar="N",
        help="429 faults without a rate limit: refuse every Nth request",
    )
    group.add_argument("--cut-after-events", type=int, default=4, metavar="N", help="stream-cut: events before the cut")
    group.add_argument("--model", action="append", default=[], metavar="NAME", help="serve an extra model name")
    group.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES, help="request body limit (413 above)")
    group.add_argument("--organization-id", default=DEFAULT_ORGANIZATION_ID, help="anthropic-organization-id")
    group.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level",
    )


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    """The GatewayConfig the parsed options describe (key from --api-key, then $GATEWAY_API_KEY)."""
    api_key = args.api_key or os.environ.get("GATEWAY_API_KEY") or None
    return GatewayConfig(
        host=args.host,
        port=args.port,
        api_key=api_key,
        ttft_ms=args.ttft_ms,
        itl_ms=args.itl_ms,
        rate_limit_rpm=args.rate_limit_rpm,
        rate_limit_window_s=args.rate_limit_window,
        faults=tuple(args.fault),
        fault_every=args.fault_every,
        cut_after_events=args.cut_after_events,
        extra_models=tuple(args.model),
        max_body_bytes=args.max_body_bytes,
        organization_id=args.organization_id,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; prints one line with the URL (and the key when it made one up)."""
    if args.list_faults or "list" in args.fault:
        print(describe_faults())
        print(describe_hostile_faults())
        return 0
    try:
        config, made_up = config_from_args(args).with_key()
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind(config.host, config.port)
    except OSError as exc:
        print(f"error: cannot listen on {config.host}:{config.port}: {exc.strerror}", file=sys.stderr)
        return 1
    server = uvicorn_server(config, log_level=args.log_level)
    line = f"reference gateway listening on {gateway_url(config.host, sock.getsockname()[1])}"
    if made_up:
        line += f" (api key: {config.api_key})"
    if config.faults:
        line += f" (faults: {', '.join(config.faults)})"
    print(line, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: `python -m conformance.gateway.server [options]`."""
    parser = argparse.ArgumentParser(prog="python -m conformance.gateway.server", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
