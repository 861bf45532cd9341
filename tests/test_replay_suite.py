"""Record and replay through the front-ends: the pytest plugin (--record, --replay) and `python -m conformance`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anthropic  # noqa: F401 - see below
import httpx2  # noqa: F401
import openai  # noqa: F401
import pytest

from conformance.cassette import Cassette, read_cassette, write_cassette
from conformance.gateway import RunningGateway
from conformance.replay import request_key

# The SDKs and httpx2 are imported above, in this process, so that the in-process pytest sessions below share them: a
# module first imported inside one is dropped when it ends (and imported again, slowly, by the next), while
# conformance.transport caches classes made from the httpx2 it saw first.
SUITE = ["-p", "no:locust", "-p", "no:cacheprovider", "--pyargs", "conformance.suites"]
# What differs between two runs of the same thing: when, and how long.
RUN_FIELDS = ("started_at", "duration_s")


def report(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "conformance.json").read_text())
    return data


def same_report(live: dict[str, Any], replay: dict[str, Any]) -> None:
    assert {k: v for k, v in replay.items() if k not in RUN_FIELDS} == {
        k: v for k, v in live.items() if k not in RUN_FIELDS
    }


def test_recording_the_reference_gateway_and_replaying_it_gives_the_same_report(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, reference_gateway: RunningGateway
) -> None:
    tape, live_dir, replay_dir = pytester.path / "tape", pytester.path / "live", pytester.path / "replay"
    monkeypatch.setenv("GATEWAY_API_KEY", reference_gateway.api_key)
    live = pytester.runpytest(
        *SUITE, "--gateway-url", reference_gateway.url, "--max-examples", "3", "--report-dir", str(live_dir),
        "--record", str(tape),
    )  # fmt: skip
    assert live.ret == pytest.ExitCode.OK, live.stdout.str()
    live.stdout.fnmatch_lines(["*cassette: *cassette.json (* interactions)"])
    cassette = read_cassette(tape)
    assert cassette.options["max_examples"] == 3
    assert {i.via for i in cassette.interactions} == {"transport", "sdk"}
    assert any(i.test.endswith("test_valid_requests_are_served") for i in cassette.interactions)
    for file in [tape / "cassette.json", *live_dir.iterdir()]:
        assert reference_gateway.api_key not in file.read_text(), file

    # Offline: no gateway, no key, not even the option that made the property tests send 3 examples each.
    monkeypatch.delenv("GATEWAY_API_KEY")
    replay = pytester.runpytest(*SUITE, "--replay", str(tape), "--report-dir", str(replay_dir))
    assert replay.ret == pytest.ExitCode.OK, replay.stdout.str()
    replay.stdout.fnmatch_lines(["replaying *: offline, nothing leaves this process", "*replay: replayed * offline"])
    # Every recorded request was asked for again, and nothing else: the derandomized property tests sent the same.
    assert "no recording" not in replay.stdout.str() and "not asked for" not in replay.stdout.str()
    same_report(report(live_dir), report(replay_dir))


def test_a_replay_that_sends_what_was_not_recorded_is_a_harness_error(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    reference = read_cassette(
        Path(__file__).parent.parent / "conformance" / "fixtures" / "cassettes" / "reference.json"
    )
    plain = reference.interactions[0]
    kept = tuple(i for i in reference.interactions if request_key(i.request) != request_key(plain.request))
    write_cassette(Cassette(reference.target, kept, options={"max_examples": 0}), tmp_path)
    result = pytester.runpytest(*SUITE, "--replay", str(tmp_path), "--checks", "message_identity")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR, result.stdout.str()
    result.stdout.fnmatch_lines(["*had no recording*", "*replay: no recorded response for POST /v1/messages*"])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--record", "a", "--replay", "b"), "exclude each other"),
        (("--replay", "no-such-dir"), "no cassette at"),
    ],
    ids=["both", "missing"],
)
def test_plugin_usage_errors(pytester: pytest.Pytester, args: tuple[str, ...], fragment: str) -> None:
    result = pytester.runpytest(*SUITE, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert fragment in result.stderr.str()


def conformance(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conformance", *args], cwd=cwd, capture_output=True, text=True, timeout=180
    )


def test_the_record_command_and_check_replay(tmp_path: Path) -> None:
    recorded = conformance(
        "record", "--out", "tape", "--fault", "stream-cut", "--checks", "stream_ends_with_message_stop",
        "--max-examples", "0", "--report-dir", "live", cwd=tmp_path,
    )  # fmt: skip
    assert recorded.returncode == 1, recorded.stdout + recorded.stderr  # non-conformant: the stream is cut
    assert (tmp_path / "tape" / "cassette.json").is_file()
    replayed = conformance("check", "--replay", "tape", "--report-dir", "replay", cwd=tmp_path)
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "Replaying tape:" in replayed.stdout
    same_report(report(tmp_path / "live"), report(tmp_path / "replay"))
    assert any(
        c["id"] == "stream_ends_with_message_stop" and c["outcome"] == "failed"
        for c in report(tmp_path / "replay")["checks"]
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("check", "--replay", "missing"), "no cassette at"),
        (("check", "--replay", "x", "--gateway-url", "http://127.0.0.1:9"), "do not combine it"),
        (("record",), "--out"),
    ],
    ids=["missing-cassette", "replay-with-url", "record-without-out"],
)
def test_cli_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    result = conformance(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr
