"""The web UI extension: two extra tabs in Locust's UI (latency percentiles, failures by kind) and /llm pages.

Locust's React UI shows `extended_tabs` from its template args, each a table whose rows arrive in the
`extended_stats` field of its /stats/requests poll; an after_request hook adds them. /llm is a plain page with
the same numbers, /llm/summary.json and /llm/csv the raw report. Nothing here ever sees the key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, request

from loadtests.reports import csv_text, failure_rows, html_page, latency_rows

__all__ = ["FAILURES_TAB", "LATENCY_TAB", "install"]

LATENCY_TAB = "llm-latency"
FAILURES_TAB = "llm-failures"
_LATENCY_COLUMNS = ("metric", "unit", "count", "mean", "min", "p50", "p90", "p95", "p99", "max")
_FAILURE_COLUMNS = ("kind", "count", "share")


def _rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    summary = report["summary"]
    latency = [{c: _cell(row.get(c)) for c in _LATENCY_COLUMNS} for row in latency_rows(summary)]
    failures = [{c: _cell(row.get(c)) for c in _FAILURE_COLUMNS} for row in failure_rows(summary)]
    return [{"key": LATENCY_TAB, "data": latency}, {"key": FAILURES_TAB, "data": failures}]


def _cell(value: object) -> object:
    return "" if value is None else value


def install(web_ui: Any, report: Callable[[], Mapping[str, Any]]) -> None:
    """Add the LLM tabs and routes to a Locust WebUI; `report()` returns the live report (masked)."""
    args = web_ui.template_args
    args["extended_tabs"] = [
        {"title": "LLM latency", "key": LATENCY_TAB},
        {"title": "LLM failures", "key": FAILURES_TAB},
    ]
    args["extended_tables"] = [
        {"key": LATENCY_TAB, "structure": [{"key": c, "title": c} for c in _LATENCY_COLUMNS]},
        {"key": FAILURES_TAB, "structure": [{"key": c, "title": c} for c in _FAILURE_COLUMNS]},
    ]
    args["extended_csv_files"] = [
        {"href": "./llm/csv", "title": "Download LLM metrics CSV"},
        {"href": "./llm/summary.json", "title": "Download LLM summary JSON"},
    ]
    app = web_ui.app
    guard = web_ui.auth_required_if_enabled

    @app.after_request
    def add_llm_rows(response: Response) -> Response:
        if not request.path.endswith("/stats/requests") or response.status_code != 200 or not response.is_json:
            return response
        data = response.get_json()
        if isinstance(data, dict):
            data["extended_stats"] = _rows(report())
            response.set_data(json.dumps(data))
        return response

    @app.route("/llm")
    @guard
    def llm_page() -> Response:
        return Response(html_page(report(), refresh_s=2), mimetype="text/html")

    @app.route("/llm/summary.json")
    @guard
    def llm_summary() -> Response:
        return Response(json.dumps(report(), indent=2, default=str), mimetype="application/json")

    @app.route("/llm/csv")
    @guard
    def llm_csv() -> Response:
        return Response(
            csv_text(report()),
            mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=llm_metrics.csv"},
        )
