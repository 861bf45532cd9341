"""Reports of a conformance run: conformance.json, junit.xml, report.html, the terminal summary, and the baseline."""

from __future__ import annotations

from pathlib import Path

from conformance.reporting.baseline import (
    BASELINE_FORMAT,
    Baseline,
    BaselineEntry,
    baseline_from_report,
    load_baseline,
    write_baseline,
)
from conformance.reporting.files import write_text_atomic
from conformance.reporting.html import render_html
from conformance.reporting.json_report import render_json
from conformance.reporting.junit import render_junit
from conformance.reporting.summary import render_summary
from conformance.results import RunReport

__all__ = [
    "BASELINE_FORMAT",
    "REPORT_FILES",
    "Baseline",
    "BaselineEntry",
    "baseline_from_report",
    "load_baseline",
    "render_html",
    "render_json",
    "render_junit",
    "render_summary",
    "write_baseline",
    "write_reports",
]

# Key -> file name in the report directory; the keys are what write_reports returns.
REPORT_FILES: dict[str, str] = {"json": "conformance.json", "junit": "junit.xml", "html": "report.html"}


def write_reports(report: RunReport, directory: Path, *, baseline: Baseline | None = None) -> dict[str, Path]:
    """Write conformance.json, junit.xml and report.html into the directory (created if needed); returns their paths."""
    # JSON first: it is the record of the run, the other two are views of it.
    rendered = {
        "json": render_json(report),
        "junit": render_junit(report),
        "html": render_html(report, baseline=baseline),
    }
    return {key: write_text_atomic(Path(directory) / REPORT_FILES[key], text) for key, text in rendered.items()}
