"""The table printed at the end of a terminal run: one line per check, the capabilities, the verdict, the files."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

from conformance.reporting.baseline import BaselineEntry
from conformance.reporting.findings import CheckRow, check_rows, headline, importance, is_failure
from conformance.results import FEATURES, RunReport

WIDTH = 120
_CHECK_MAX = 48
_AREA_MAX = 12
_MESSAGE_MIN = 24

_RESET = "\x1b[0m"
_STYLES = {
    "FAIL": "\x1b[1;31m",
    "ERROR": "\x1b[1;35m",
    "ACCEPTED": "\x1b[33m",
    "UNSUPP": "\x1b[36m",
    "SKIP": "\x1b[2m",
    "PASS": "\x1b[32m",
    "must": "\x1b[1m",
    "supported": "\x1b[32m",
    "unsupported": "\x1b[36m",
    "broken": "\x1b[1;31m",
    "untested": "\x1b[2m",
    "conformant": "\x1b[1;42;97m",
    "non-conformant": "\x1b[1;41;97m",
    "dim": "\x1b[2m",
}
_LABELS = {"failed": "FAIL", "error": "ERROR", "passed": "PASS", "skipped": "SKIP", "unsupported": "UNSUPP"}
# A gateway's text must not drive the terminal: escape sequences, other controls and bidi overrides are replaced.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _clean(text: str) -> str:
    return _UNPRINTABLE.sub("\ufffd", text)


def _char_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Columns the text takes in a terminal (wide East Asian characters count two, combining marks none)."""
    return sum(_char_width(char) for char in text)


def _fit(text: str, width: int) -> str:
    """The text cut (with "…") or padded to exactly `width` columns."""
    if display_width(text) <= width:
        return text + " " * (width - display_width(text))
    out, used = [], 0
    for char in text:
        w = _char_width(char)
        if used + w > width - 1:
            break
        out.append(char)
        used += w
    return "".join(out) + "…" + " " * (width - 1 - used)


class _Painter:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, style: str) -> str:
        code = _STYLES.get(style)
        return f"{code}{text}{_RESET}" if self.color and code else text


def _row_order(row: CheckRow) -> tuple[int, int, int, str, str]:
    group, severity, outcome = importance(row.worst)
    return (-group, -severity, -outcome, row.worst.area, row.check)


def _label(row: CheckRow) -> str:
    worst = row.worst
    if is_failure(worst) and worst.baselined:
        return "ACCEPTED"
    return _LABELS.get(worst.outcome, worst.outcome.upper())


def _message(row: CheckRow) -> str:
    worst = row.worst
    text = headline(worst.message)
    failing = [r for r in row.results if is_failure(r)]
    if len(row.results) > 1 and failing:
        text = f"({len(failing)}/{len(row.results)} probes) {text}"
    return _clean(text)


def render_summary(
    report: RunReport,
    *,
    color: bool,
    report_files: Mapping[str, Path] | None = None,
    stale: Sequence[BaselineEntry] = (),
) -> str:
    """The end-of-run table (one line per check id, worst last), the capabilities and the verdict, in 120 columns."""
    paint = _Painter(color)
    # Worst last: the lines a person sees without scrolling are the ones next to the verdict.
    rows = sorted(check_rows(report.results), key=_row_order)
    check_width = min(max((display_width(_clean(r.check)) for r in rows), default=5), _CHECK_MAX)
    check_width = max(check_width, len("CHECK"))
    fixed = 8 + 1 + 6 + 1 + _AREA_MAX + 1 + check_width + 1
    message_width = max(WIDTH - fixed, _MESSAGE_MIN)
    if fixed + message_width > WIDTH:
        check_width -= fixed + message_width - WIDTH
    lines: list[str] = []
    if rows:
        header = f"{'OUTCOME':<8} {'SEV':<6} {_fit('AREA', _AREA_MAX)} {_fit('CHECK', check_width)} MESSAGE"
        lines.append(paint(header, "dim"))
    for row in rows:
        label = _label(row)
        severity = row.worst.severity
        cells = [
            paint(_fit(label, 8), label),
            paint(_fit(severity, 6), severity),
            _fit(_clean(row.worst.area), _AREA_MAX),
            _fit(_clean(row.check), check_width),
            _fit(_message(row), message_width).rstrip(),
        ]
        lines.append(" ".join(cells).rstrip())
    if rows:
        lines.append("")
    lines.append(paint("Capabilities", "dim"))
    known = {c.feature: c for c in report.capabilities}
    for feature in [f for f in FEATURES if f in known] + [f for f in known if f not in FEATURES]:
        cap = known[feature]
        required = " (required)" if feature in report.required else ""
        note = _fit(_clean(cap.note + required), WIDTH - 28).rstrip()
        lines.append(f"  {_fit(_clean(feature), 13)} {paint(_fit(cap.status, 11), cap.status)} {note}".rstrip())
    lines.append("")
    lines.extend(_verdict_lines(report, paint))
    if stale:
        ids = ", ".join(_clean(e.id) for e in stale)
        lines.append(
            _fit(f"Baseline: {len(stale)} accepted deviation(s) no longer fail, remove them: {ids}", WIDTH).rstrip()
        )
    if report_files:
        main = report_files.get("html") or next(iter(report_files.values()))
        others = ", ".join(p.name for p in report_files.values() if p != main)
        lines.append(f"Reports: {main}" + (f"  (also {others})" if others else ""))
    return "\n".join(lines) + "\n"


def _verdict_lines(report: RunReport, paint: _Painter) -> list[str]:
    gating = len(report.gating_failures)
    counts = report.counts()
    accepted = sum(is_failure(r) and r.baselined for r in report.results)
    verdict = report.verdict.upper()
    if gating:
        detail = f"{gating} gating failure{'s' if gating != 1 else ''} (must-level, not in the baseline)"
    elif report.results:
        detail = "no gating failures"
    else:
        detail = "no checks ran"
    tally = ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "error", "unsupported", "skipped") if counts[k])
    if accepted:
        tally += f" ({accepted} accepted by the baseline)"
    first = f"{paint(f' {verdict} ', report.verdict)} {detail}"
    second = f"{tally or 'no results'}; {report.requests_sent} requests in {report.duration_s:.1f} s"
    return [first, _fit(_clean(second), WIDTH).rstrip()]
