"""The harness against hostile and broken gateways: the reference gateway's hostile --fault modes, on real sockets.

Each test points the harness (a real Transport, ConformanceRun and checks) at the reference gateway in one hostile
mode on a loopback port, with small bounds so the file stays quick, and asserts the finding (the transport error
kind and the check that reports it), the time it took against the configured bound, and that the harness survived
(it returned a result; no check crashed). The last tests measure memory in a child process, and run the CLI, the
recorder and a short Locust load test with a unique key, then look for that key in everything they wrote or said.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from conformance.checks.transport import TRANSPORT_CHECKS
from conformance.exchange import Exchange, RequestSpec
from conformance.gateway import GatewayConfig, RunningGateway, start_in_thread, start_subprocess
from conformance.gateway.faults import HOSTILE_FAULTS
from conformance.gateway.hostile import DRIP_INTERVAL_S, gzip_bomb
from conformance.probes import Probe, basic_body, post_messages
from conformance.results import CheckResult
from conformance.runner import ConformanceRun
from conformance.sdk import CALLS
from conformance.target import MASK, Limits, Secret, Target, Timeouts
from conformance.transport import KINDS, Transport, bounded_client, is_bounded
from loadtests.ci import ROOT, child_env, locust_command

TIMEOUTS = Timeouts(connect=1.0, first_byte=1.0, idle=0.5, total=1.5)
# Scheduling slack on a shared two-core machine: a bound is met when the exchange ends by bound + SLACK.
SLACK = 0.4
SMALL = Limits(max_body_bytes=4 * 1024 * 1024)
DEFAULT_LIMITS = Limits()
JSON_CHECKS = ("status_is_success", "content_type_is_json", "message_identity")
STREAM_CHECKS = ("stream_http_status_and_type", "stream_ends_with_message_stop", "stream_data_is_json")
# The faults whose senders are CPU-heavy: in their own process, so they do not slow the harness by the GIL.
IN_PROCESS = frozenset({"huge-body", "gzip-bomb"})


@pytest.fixture(scope="module")
def hostile() -> Iterator[Callable[[str], RunningGateway]]:
    """A reference gateway per hostile fault, started on first use; all stopped together at the end."""
    started: dict[str, RunningGateway] = {}

    def get(fault: str) -> RunningGateway:
        if fault not in started:
            config = GatewayConfig(port=0, faults=(fault,))
            started[fault] = start_subprocess(config) if fault in IN_PROCESS else start_in_thread(config)
        return started[fault]

    yield get
    with ThreadPoolExecutor(max_workers=max(len(started), 1)) as pool:
        list(pool.map(RunningGateway.stop, started.values()))


@dataclass(frozen=True)
class Seen:
    """What the harness made of one hostile answer."""

    exchange: Exchange
    results: dict[str, CheckResult]
    elapsed: float

    @property
    def kind(self) -> str | None:
        return self.exchange.error.kind if self.exchange.error is not None else None

    def failed(self, check_id: str, *fragments: str) -> str:
        """The check's message, asserting it failed and says each fragment."""
        result = self.results[check_id]
        assert result.outcome == "failed", f"{check_id}: {result.outcome} {result.message}"
        for fragment in fragments:
            assert fragment in result.message, f"{check_id}: {fragment!r} not in {result.message!r}"
        return result.message


def harness(
    gateway: RunningGateway,
    *,
    stream: bool,
    checks: tuple[str, ...] = (),
    timeouts: Timeouts = TIMEOUTS,
    limits: Limits = DEFAULT_LIMITS,
) -> Seen:
    """One probe through the real harness, then the transport checks over its exchanges, as the suite applies them."""
    target = Target(gateway.url, Secret(gateway.api_key), timeouts=timeouts, limits=limits)
    role = "stream" if stream else "json"
    checks = checks or (STREAM_CHECKS if stream else JSON_CHECKS)
    probe = Probe("hostile", "messages", "one request", ((role, post_messages(basic_body, stream=stream)),), checks)
    with Transport(target) as transport:
        run = ConformanceRun(target, transport=transport)
        started = time.perf_counter()
        results = run.run_probe(probe)
        elapsed = time.perf_counter() - started
        everything = Probe("transport", "transport", "every exchange", (), TRANSPORT_CHECKS)
        results += run.judge(everything, {f"#{i}": e for i, e in enumerate(run.exchanges)})
    # The harness survived: it returned, and no check crashed on what it was given.
    assert not [r for r in results if r.outcome == "error"], [r.message for r in results if r.outcome == "error"]
    assert len(run.exchanges) == 1
    return Seen(run.exchanges[0], {r.check: r for r in results}, elapsed)


def within(seen: Seen, bound: float) -> None:
    """The exchange ended at its bound (not before it, and not an idle timeout later)."""
    assert bound - 0.05 <= seen.elapsed <= bound + SLACK, f"took {seen.elapsed:.2f} s for a bound of {bound} s"


def quick(seen: Seen) -> None:
    """The exchange ended long before any timeout."""
    assert seen.elapsed < TIMEOUTS.first_byte, f"took {seen.elapsed:.2f} s"


# ---------------------------------------------------------------- bounded time


def test_a_drip_is_cut_at_the_total_timeout_not_an_idle_timeout_later(hostile: Callable[[str], RunningGateway]) -> None:
    """One byte every 0.2 s never trips the 0.5 s idle timeout; the total (1.5 s) ends it, on time."""
    assert TIMEOUTS.idle > DRIP_INTERVAL_S
    seen = harness(hostile("drip"), stream=False)
    assert seen.kind == "timeout-total" and 0 < len(seen.exchange.body) < 20
    within(seen, TIMEOUTS.total)
    seen.failed("response_within_bounds", "timeout-total", "total timeout (1.5 s)")
    seen.failed("message_identity", "not JSON")


def test_a_dripped_stream_is_cut_when_no_frame_completes_within_the_idle_timeout(
    hostile: Callable[[str], RunningGateway],
) -> None:
    seen = harness(hostile("drip"), stream=True)
    assert seen.kind == "timeout-idle"
    within(seen, TIMEOUTS.idle)
    seen.failed("response_within_bounds", "timeout-idle", "idle timeout (0.5 s)")
    seen.failed("stream_ends_with_message_stop", "stream-truncated", "timeout-idle")


def test_headers_dripped_one_byte_at_a_time_hit_the_first_byte_timeout(
    hostile: Callable[[str], RunningGateway],
) -> None:
    seen = harness(hostile("drip-headers"), stream=False)
    assert (seen.kind, seen.exchange.status) == ("timeout-first-byte", None)
    within(seen, TIMEOUTS.first_byte)
    seen.failed("response_within_bounds", "timeout-first-byte", "first-byte timeout (1 s)")
    seen.failed("status_is_success", "no response (timeout-first-byte")


def test_a_gateway_that_never_answers_hits_the_first_byte_timeout(hostile: Callable[[str], RunningGateway]) -> None:
    seen = harness(hostile("never-answer"), stream=True)
    assert seen.kind == "timeout-first-byte"
    within(seen, TIMEOUTS.first_byte)
    seen.failed("response_within_bounds", "timeout-first-byte", "(1 s)")


def test_endless_pings_are_cut_at_the_total_timeout(hostile: Callable[[str], RunningGateway]) -> None:
    seen = harness(hostile("endless-ping"), stream=True)
    assert seen.kind == "timeout-total"
    within(seen, TIMEOUTS.total)
    stream = seen.exchange.stream
    assert stream is not None and stream.event_count > 20 and not stream.complete
    seen.failed("response_within_bounds", "timeout-total", "(1.5 s)")
    seen.failed("stream_ends_with_message_stop", "stream-truncated")


def test_endless_pings_are_cut_at_the_maximum_number_of_events(hostile: Callable[[str], RunningGateway]) -> None:
    seen = harness(hostile("endless-ping"), stream=True, limits=Limits(max_events=40))
    assert seen.kind == "too-many-events"
    stream = seen.exchange.stream
    assert stream is not None and 40 < stream.event_count <= 45
    assert seen.elapsed < TIMEOUTS.total
    seen.failed("response_within_bounds", "too-many-events", "40 events")


# ---------------------------------------------------------------- bounded memory


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_200_mb_answer_is_cut_at_the_size_cap(hostile: Callable[[str], RunningGateway], stream: bool) -> None:
    seen = harness(hostile("huge-body"), stream=stream, limits=SMALL, timeouts=replace(TIMEOUTS, total=5.0))
    assert seen.kind == "too-large" and seen.exchange.body_truncated
    quick(seen)
    # Cut off, then trimmed: a run against such a gateway keeps one capped body at a time, not one per request.
    assert len(seen.exchange.body) <= 1 << 20
    if stream:
        assert seen.exchange.stream is not None
        assert sum(len(e.raw) for e in seen.exchange.stream.events) <= 1 << 20
    seen.failed("response_within_bounds", "too-large", f"{SMALL.max_body_bytes} bytes")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_gzip_bomb_is_cut_at_the_size_cap_while_it_inflates(
    hostile: Callable[[str], RunningGateway], stream: bool
) -> None:
    head, block, count, tail = gzip_bomb(b"[", b"]", 8 << 20)
    assert len(head) + len(block) * count + len(tail) < (8 << 20) // 1000  # 1 KB on the wire per MB inflated
    inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)  # a real gzip stream: its CRC and length check out
    assert len(inflate.decompress(head + block * count + tail)) == 2 + (8 << 20) and inflate.eof
    seen = harness(hostile("gzip-bomb"), stream=stream, limits=SMALL, timeouts=replace(TIMEOUTS, total=5.0))
    assert seen.kind in ("too-large", "timeout-idle") and seen.exchange.body_truncated
    if not stream:
        # A stream of spaces never completes a frame, so its idle bound may come first; a body must hit the cap.
        assert seen.kind == "too-large"
    quick(seen)
    assert sum(n for _, n in seen.exchange.chunks) <= SMALL.max_body_bytes
    seen.failed("response_within_bounds", seen.kind or "?")


def test_peak_memory_of_the_worst_answers_stays_under_the_documented_cap(
    hostile: Callable[[str], RunningGateway], tmp_path: Path
) -> None:
    """In a child process: per exchange, resident memory grows by less than 6 x the size cap (docs)."""
    cap = 16 * 1024 * 1024
    script = tmp_path / "peak.py"
    script.write_text(_PEAK_SCRIPT, encoding="utf-8")
    gateways = {name: (hostile(name).url, hostile(name).api_key) for name in ("huge-body", "gzip-bomb", "endless-ping")}
    done = subprocess.run(
        [sys.executable, str(script), str(cap)],
        input=json.dumps(gateways),  # keys on stdin, never in argv
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["kinds"] == ["too-large", "too-large", "too-large", "timeout-total"], report
    assert report["growth_mb"] < 6 * cap / 2**20, report


_PEAK_SCRIPT = """
import json, resource, sys
from conformance.probes import basic_body
from conformance.exchange import RequestSpec
from conformance.target import Limits, Secret, Target, Timeouts
from conformance.transport import Transport

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

cap, gateways = int(sys.argv[1]), json.load(sys.stdin)
kinds, before = [], None
for fault, stream in (("huge-body", True), ("huge-body", False), ("gzip-bomb", False), ("endless-ping", True)):
    url, key = gateways[fault]
    target = Target(url, Secret(key), timeouts=Timeouts(total=2.0), limits=Limits(cap))
    with Transport(target) as transport:
        body = {**basic_body(target), "stream": True} if stream else basic_body(target)
        if before is None:
            transport.send(RequestSpec("GET", "/v1/models"))
            before = peak()
        kinds.append(transport.send(RequestSpec("POST", "/v1/messages", json=body, stream=stream)).error.kind)
print(json.dumps({"kinds": kinds, "before_mb": before, "after_mb": peak(), "growth_mb": peak() - before}))
"""


# ---------------------------------------------------------------- bad bytes


def test_invalid_utf8_in_a_json_body_is_a_not_json_finding(hostile: Callable[[str], RunningGateway]) -> None:
    seen = harness(hostile("invalid-utf8"), stream=False)
    assert seen.kind is None and seen.exchange.status == 200
    quick(seen)
    seen.failed("message_identity", "not JSON", "'utf-8' codec can't decode byte 0xff")


def test_invalid_utf8_in_a_stream_is_an_invalid_utf8_finding(hostile: Callable[[str], RunningGateway]) -> None:
    seen = harness(hostile("invalid-utf8"), stream=True)
    quick(seen)
    seen.failed("stream_data_is_json", "invalid-utf8")


def test_an_html_error_page_is_a_status_finding_and_the_key_it_echoes_is_masked(
    hostile: Callable[[str], RunningGateway],
) -> None:
    gateway = hostile("html-error-page")
    echoed = httpx.post(f"{gateway.url}/v1/messages", headers={"x-api-key": gateway.api_key}, timeout=5).text
    assert gateway.api_key in echoed  # the page does repeat the key: masking is what keeps it out of the report
    seen = harness(gateway, stream=False)
    quick(seen)
    message = seen.failed("status_is_success", "expected HTTP 200, got 502: <html>")
    shown = message + "".join(e.content for r in seen.results.values() for e in r.evidence)
    assert gateway.api_key not in shown and MASK in shown


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_plain_text_where_json_is_due_is_a_not_json_finding(
    hostile: Callable[[str], RunningGateway], stream: bool
) -> None:
    seen = harness(hostile("non-json-body"), stream=stream)
    quick(seen)
    if stream:
        seen.failed("stream_data_is_json", "data-not-json")
    else:
        seen.failed("message_identity", "not JSON")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_tcp_reset_mid_body_is_a_reset_finding(hostile: Callable[[str], RunningGateway], stream: bool) -> None:
    seen = harness(hostile("tcp-reset"), stream=stream)
    assert (seen.kind, seen.exchange.status) == ("reset", 200) and seen.exchange.body
    quick(seen)
    seen.failed("response_within_bounds", "reset")
    if stream:
        assert seen.exchange.stream is not None and seen.exchange.stream.end_cause == "reset"
        seen.failed("stream_ends_with_message_stop", "stream-truncated")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_chunked_body_cut_mid_chunk_is_a_truncated_chunked_finding(
    hostile: Callable[[str], RunningGateway], stream: bool
) -> None:
    seen = harness(hostile("truncated-chunked"), stream=stream)
    assert seen.kind == "truncated-chunked"
    quick(seen)
    seen.failed("response_within_bounds", "truncated-chunked", "incomplete chunked read")


def test_bytes_that_are_not_http_are_a_protocol_error(hostile: Callable[[str], RunningGateway]) -> None:
    seen = harness(hostile("not-http"), stream=False)
    assert (seen.kind, seen.exchange.status) == ("protocol-error", None)
    quick(seen)
    seen.failed("response_within_bounds", "protocol-error", "illegal status line")


# ---------------------------------------------------------------- redirects


def _recorded(gateway: RunningGateway) -> dict[str, object]:
    with urllib.request.urlopen(f"{gateway.url}/_reference/hostile", timeout=5) as response:
        found: dict[str, object] = json.loads(response.read())
        return found


def test_a_cross_origin_redirect_is_reported_and_never_followed(hostile: Callable[[str], RunningGateway]) -> None:
    gateway = hostile("redirect-cross-origin")
    seen = harness(gateway, stream=False)
    assert (seen.kind, seen.exchange.status) == ("redirect-cross-origin", 307)
    quick(seen)
    seen.failed("no_cross_origin_redirect", "redirects to http://127.0.0.2:", "not followed")
    assert seen.results["response_within_bounds"].outcome == "passed"
    # The official SDKs' steps run on the harness's client too: they see the 307 and stop there.
    outcome = CALLS["anthropic_messages_create"].execute(Target(gateway.url, Secret(gateway.api_key)))
    assert not outcome.ok
    recorded = _recorded(gateway)
    assert (recorded["received_requests"], recorded["received_key"]) == (0, False), recorded


def test_the_recording_server_would_catch_a_client_that_follows(hostile: Callable[[str], RunningGateway]) -> None:
    """The control: a client that follows redirects (httpx keeps x-api-key across origins) hands over the key."""
    gateway = hostile("redirect-cross-origin")
    before = _recorded(gateway)["received_requests"]
    assert isinstance(before, int)
    with httpx.Client(follow_redirects=True, timeout=5) as client:
        client.post(f"{gateway.url}/v1/messages", headers={"x-api-key": gateway.api_key}, json=basic_body(TARGET))
    recorded = _recorded(gateway)
    assert recorded["received_requests"] == before + 1 and recorded["received_key"] is True


TARGET = Target("http://127.0.0.1:9", Secret("sk-not-used"))


# ---------------------------------------------------------------- the official SDKs' steps are bounded too


def test_sdk_steps_are_held_to_the_same_bounds(hostile: Callable[[str], RunningGateway]) -> None:
    target = Target(hostile("endless-ping").url, Secret(hostile("endless-ping").api_key), timeouts=TIMEOUTS)
    started = time.perf_counter()
    outcome = CALLS["anthropic_messages_stream"].execute(target)
    elapsed = time.perf_counter() - started
    assert not outcome.ok and outcome.error_type in ("APITimeoutError", "ReadTimeout"), outcome.summary
    assert elapsed <= TIMEOUTS.total + SLACK
    huge = hostile("huge-body")
    small = Target(huge.url, Secret(huge.api_key), timeouts=replace(TIMEOUTS, total=5.0), limits=SMALL)
    started = time.perf_counter()
    outcome = CALLS["anthropic_messages_create"].execute(small)
    assert not outcome.ok and time.perf_counter() - started < 2.0, outcome.summary


# ---------------------------------------------------------------- the registry and the client


def test_every_hostile_fault_has_a_test_here() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    untested = [name for name in HOSTILE_FAULTS if f'hostile("{name}")' not in source]
    assert not untested, untested
    assert {"timeout-total", "too-large", "reset", "truncated-chunked", "redirect-cross-origin"} <= set(KINDS)


def test_the_harness_client_keeps_its_deadlines_through_httpx() -> None:
    """The deadlines live in a wrapped httpcore backend: an httpx upgrade that moves it must fail here, loudly."""
    with bounded_client(TIMEOUTS) as client:
        assert is_bounded(client)


def test_a_replayed_timeout_keeps_its_recorded_kind() -> None:
    """A replay raises the recorded exception with `.kind`; the Transport reports that kind, not a guess."""

    def handler(request: httpx.Request) -> httpx.Response:
        exc = httpx.ReadTimeout("replayed", request=request)
        exc.kind = "timeout-total"  # type: ignore[attr-defined]
        raise exc

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        exchange = Transport(TARGET, client=client).send(RequestSpec("GET", "/v1/models"))
    assert exchange.error is not None and exchange.error.kind == "timeout-total"
    assert "(600 s)" in exchange.error.message


# ---------------------------------------------------------------- secrets


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_the_key_appears_nowhere_the_harness_writes_or_prints(tmp_path: Path) -> None:
    """A unique key through `check`, `record` and a short Locust run (web UI included) against a gateway that echoes
    the key in every answer: not one occurrence in any file written, any line printed, or any UI response."""
    key = f"sk-hostile-{secrets.token_hex(16)}"
    config = GatewayConfig(port=0, api_key=key, faults=("html-error-page",))
    with start_subprocess(config) as gateway:
        env = {**child_env(key), "PYTHONPATH": str(ROOT)}
        cli = [sys.executable, "-m", "conformance"]
        common = ["--gateway-url", gateway.url, "--max-examples", "1", "-v"]
        runs = {
            "check": [*cli, "check", *common, "--report-dir", str(tmp_path / "check")],
            "record": [
                *cli,
                "record",
                *common,
                "--out",
                str(tmp_path / "cassette"),
                "--report-dir",
                str(tmp_path / "r"),
            ],
        }
        web_port = _free_port()
        locust = locust_command(
            gateway.url,
            *f"--web-host 127.0.0.1 --web-port {web_port} --autostart --autoquit 1 -u 2 -r 2 -t 4s".split(),
            *["--scenario", "mixed", "--user-rps", "4", "--max-requests", "40", "--max-fail-ratio", "1"],
            *["--csv", str(tmp_path / "locust"), "--html", str(tmp_path / "locust.html")],
            *["--llm-report", str(tmp_path / "llm")],
        )

        def run(argv: list[str]) -> str:
            done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
            return f"[exit {done.returncode}]\n{done.stdout}\n{done.stderr}"

        with ThreadPoolExecutor(max_workers=3) as pool:
            jobs = {name: pool.submit(run, argv) for name, argv in runs.items()}
            jobs["locust"] = pool.submit(run, locust)
            ui = _poll_web_ui(web_port)
            printed = {name: job.result() for name, job in jobs.items()}
    assert printed["check"].startswith("[exit 1]"), printed["check"][-2000:]  # non-conformant, not a harness error
    assert printed["record"].startswith("[exit 1]"), printed["record"][-2000:]
    assert "[exit " in printed["locust"]
    written = _files(tmp_path)
    names = {p.name for p in written}
    assert {"conformance.json", "junit.xml", "report.html", "cassette.json", "locust.html", "llm.json"} <= names, names
    assert ui, "the Locust web UI never answered"
    for name, text in [*printed.items(), *ui.items()]:
        assert key not in text, f"the key is in {name}"
    leaked = [str(p) for p in written if key.encode() in p.read_bytes()]
    assert not leaked, leaked
    # The echo was real: the reports show what the gateway sent back, masked.
    assert MASK in (tmp_path / "check" / "conformance.json").read_text(encoding="utf-8")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _poll_web_ui(port: int) -> dict[str, str]:
    """Everything the Locust web UI served while the run lasted (its stats poll and the LLM pages)."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 20
    paths = ("/stats/requests", "/llm/summary.json", "/llm", "/llm/csv", "/")
    while time.monotonic() < deadline:
        for path in paths:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                    seen[f"web UI {path} @{len(seen)}"] = response.read().decode("utf-8", "replace")
            except OSError:
                continue
        if any(re.search(r'"num_requests": ?[1-9]', text) for text in seen.values()):
            return seen
        time.sleep(0.3)
    return seen
