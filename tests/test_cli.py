"""`python -m conformance`: the main job against the embedded gateway, exit statuses, usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def conformance(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conformance", *args], cwd=cwd, capture_output=True, text=True, timeout=180
    )


def test_check_without_url_passes_against_the_embedded_gateway(tmp_path: Path) -> None:
    result = conformance("check", "--max-examples", "2", "--report-dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Embedded reference gateway at http://127.0.0.1:" in result.stdout
    assert "CONFORMANT" in result.stdout
    report = json.loads((tmp_path / "out" / "conformance.json").read_text())
    assert report["verdict"] == "conformant"
    assert all(c["outcome"] in ("passed", "skipped") for c in report["checks"]), [
        c for c in report["checks"] if c["outcome"] not in ("passed", "skipped")
    ]


def test_check_against_a_fault_exits_1_with_a_specific_report(tmp_path: Path) -> None:
    result = conformance(
        "check", "--max-examples", "2", "--report-dir", "out", "--fault", "noncontiguous-indices", cwd=tmp_path
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((tmp_path / "out" / "conformance.json").read_text())
    failed = {c["id"] for c in report["checks"] if c["outcome"] == "failed"}
    assert "stream_block_indices_contiguous" in failed
    assert "NON-CONFORMANT" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("check", "--gateway-auth", "cookie"), "invalid choice"),
        (("check", "--fault", "no-such-fault"), "no-such-fault"),
        (("check", "--gateway-url", "http://127.0.0.1:9", "--fault", "stream-cut"), "only apply"),
        (("check", "--max-examples", "-1"), "--max-examples"),
        (("frobnicate",), "invalid choice"),
    ],
    ids=["bad-auth", "bad-fault", "fault-with-url", "negative-examples", "bad-command"],
)
def test_usage_errors_exit_2_and_say_what_is_valid(tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    result = conformance(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_checks_lists_every_registered_check(tmp_path: Path) -> None:
    from conformance.checks import CHECKS, load_all

    load_all()
    result = conformance("checks", cwd=tmp_path)
    assert result.returncode == 0
    for check_id in CHECKS:
        assert check_id in result.stdout
