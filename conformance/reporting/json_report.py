"""conformance.json: the run as data, RunReport.to_json() verbatim, for machines and for later re-rendering."""

from __future__ import annotations

import json

from conformance.results import RunReport

REPORT_SCHEMA = "report/conformance-report"


def render_json(report: RunReport) -> str:
    """The report as pretty JSON: keys in RunReport.to_json()'s fixed order, UTF-8 kept readable, one final newline."""
    # Insertion order (not sort_keys) is already stable run to run and keeps "format" and the verdict at the top.
    # allow_nan=False: a NaN duration would make the file unreadable by strict JSON parsers; fail where it is made.
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
