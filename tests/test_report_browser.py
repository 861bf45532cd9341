"""report.html in a real headless Chromium: the rendered DOM, that no injected script ran, and a non-blank screenshot.

Skipped when Chromium is not installed, except in CI (the CI environment variable is set), where that is a failure.
$CHROMIUM, when set, names the browser binary instead of `chromium`.
"""

from __future__ import annotations

import contextlib
import html
import os
import shutil
import signal
import struct
import subprocess
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.reporting import write_reports
from conformance.results import CheckResult, Evidence, RunReport

# Would set the title if it ever ran; the page's own title starts with the verdict.
PAYLOAD = "</pre><script>document.title='PWNED'</script>"
PAYLOAD_ATTR = '"><img src=x onerror="document.title=\'PWNED\'">'
VERDICT_RED = (0xB4, 0x23, 0x18)  # --red in the stylesheet, the background of a non-conformant verdict
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
TIMEOUT_S = 30


def _chromium() -> str | None:
    # CHROMIUM names another binary (chromium-browser, google-chrome); set to a bad path it simulates a missing one.
    override = os.environ.get("CHROMIUM")
    if override:
        return shutil.which(override)
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = _chromium()
    if path is None:
        reason = "chromium is not installed (Debian: apt-get install chromium); the browser test needs it"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI is set, so it must not be skipped")
        pytest.skip(reason)
    return path


def _failing_report() -> RunReport:
    sse = (
        "event: message_start\n"
        'data: {"type":"message_start","message":{"id":"msg_1","content":[]}}\n\n'
        "event: content_block_delta\n"
        'data: {"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"' + PAYLOAD + '"}}\n\n'
        "data: [DONE]\n\n"
    )

    def failed(check: str, area: str, severity: str, message: str, *evidence: Evidence) -> CheckResult:
        return CheckResult(
            check=check,
            probe="stream-basic",
            area=area,
            feature="streaming",
            outcome="failed",
            severity=severity,  # type: ignore[arg-type]
            rule=f"The gateway obeys {check}.",
            section="3.2",
            message=message,
            reproduce="curl -sS -N -X POST 'https://gw.test/v1/messages' --data-binary '{}'",
            evidence=evidence,
        )

    passed = [
        CheckResult(f"passing_check_{i}", "basic", "messages", "messages", "passed", "must", "A rule.", "2")
        for i in range(12)
    ]
    return RunReport(
        gateway_url=f"https://gw.test/{PAYLOAD_ATTR}",
        model="claude-test",
        started_at="2026-11-20T14:03:12+00:00",
        duration_s=61.0,
        tool_version="0.1.0",
        requests_sent=57,
        results=(
            failed(
                "block_indices_contiguous",
                "streaming",
                "must",
                f"content_block_delta at event 1 names index 2 {PAYLOAD}",
                Evidence("events", sse, "events"),
            ),
            failed(
                "rate_limit_has_retry_after",
                "errors",
                "must",
                "HTTP 429 without retry-after",
                Evidence("body", '{"error":{"message":"' + PAYLOAD_ATTR + '"}}', "body"),
            ),
            failed(
                "no_done_sentinel", "streaming", "should", "data: [DONE] after the last event", Evidence("events", sse)
            ),
            *passed,
        ),
    )


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    # Chromium forks helpers; a new session lets a timeout take down the whole group, not just the parent.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _end_group(process.pid)
        process.communicate()
        pytest.fail(f"chromium did not finish within {TIMEOUT_S} s: {' '.join(command)}")
    finally:
        # Helpers (zygotes) can outlive the browser by a few seconds; they are ours, in our session: end them.
        _end_group(process.pid)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _end_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("report")
    yield write_reports(_failing_report(), directory)["html"]


def _browser(chromium: str, profile: Path, *extra: str) -> list[str]:
    return [chromium, *FLAGS, f"--user-data-dir={profile}", *extra]


def test_rendered_dom_shows_verdict_and_failures_and_no_injected_script_ran(
    chromium: str, report_page: Path, tmp_path: Path
) -> None:
    done = _run(_browser(chromium, tmp_path / "profile", "--dump-dom", report_page.as_uri()))
    dom = done.stdout
    assert done.returncode == 0 and "</html>" in dom, done.stderr[-2000:]
    title = html.unescape(dom[dom.index("<title>") + 7 : dom.index("</title>")])
    # An executed payload would have replaced the whole title with "PWNED".
    assert title == f"Non-conformant · https://gw.test/{PAYLOAD_ATTR} · gateway conformance"
    assert '<h1 id="verdict">Non-conformant</h1>' in dom
    assert "2 gating failures" in dom
    for check in ("block_indices_contiguous", "rate_limit_has_retry_after", "no_done_sentinel"):
        assert check in dom
    # The payloads are there as text, not as elements.
    assert "&lt;/pre&gt;&lt;script&gt;document.title='PWNED'&lt;/script&gt;" in dom
    assert "<img" not in dom
    assert dom.count("<script") == 1
    # The page's own script did run (the CSP hash matches): it adds a copy button to each curl block.
    assert dom.count('<button type="button" class="copy">Copy</button>') == 3
    assert 'class="ln hl" data-g="▶ #1"' in dom


def _png_pixels(path: Path, max_rows: int) -> tuple[int, int, list[bytes]]:
    """Width, height and the first rows (RGB triples) of an 8-bit RGB/RGBA PNG: enough to see what was drawn."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, idat = 8, b""
    width = height = colour = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
        elif kind == b"IDAT":
            idat += body
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompressobj().decompress(idat, (stride + 1) * max_rows)
    rows, previous = [], bytearray(stride)
    for y in range(min(height, max_rows)):
        filter_type, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - bpp] if x >= bpp else 0
            up = previous[x]
            corner = previous[x - bpp] if x >= bpp else 0
            if filter_type == 1:
                line[x] = (line[x] + left) & 0xFF
            elif filter_type == 2:
                line[x] = (line[x] + up) & 0xFF
            elif filter_type == 3:
                line[x] = (line[x] + ((left + up) >> 1)) & 0xFF
            elif filter_type == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(b"".join(bytes(line[x : x + 3]) for x in range(0, stride, bpp)))
        previous = line
    return width, height, rows


def test_screenshot_is_a_real_scorecard(chromium: str, report_page: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    done = _run(
        _browser(chromium, tmp_path / "profile", f"--screenshot={png}", "--window-size=1280,2000", report_page.as_uri())
    )
    assert png.is_file(), done.stderr[-2000:]
    assert png.stat().st_size > 20_000
    width, height, rows = _png_pixels(png, max_rows=400)
    assert (width, height) == (1280, 2000)
    colours = Counter(row[x : x + 3] for row in rows for x in range(0, len(row), 3))
    assert len(colours) > 50, "the top of the page is (nearly) blank"
    # The verdict banner: a large block of the non-conformant red near the top.
    assert colours[bytes(VERDICT_RED)] > 50_000, colours.most_common(5)
