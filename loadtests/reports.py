"""The run's report as JSON, CSV, HTML and console text; every output passes through the secret mask."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from conformance.target import Secret, mask_secrets
from loadtests.metrics import HISTOGRAMS, PERCENTILES

__all__ = ["console_text", "csv_text", "failure_rows", "html_page", "latency_rows", "write_reports"]

_STAT_COLUMNS = ("count", "mean", "min", *(f"p{round(q * 100)}" for q in PERCENTILES), "max")


def latency_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per metric: name, unit and count/mean/min/percentiles/max."""
    rows = []
    latency: Mapping[str, Mapping[str, Any]] = summary.get("latency_ms", {})
    per_stream = summary.get("tokens", {}).get("output_per_s_per_stream", {})
    for name, (label, unit) in HISTOGRAMS.items():
        stats = per_stream if name == "tokens_per_s" else latency.get(name, {})
        rows.append({"metric": label, "unit": unit, **{c: stats.get(c) for c in _STAT_COLUMNS}})
    return rows


def failure_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per failure kind, then one per truncation cause, with counts and shares of requests."""
    requests = summary.get("requests") or 0
    failed = summary.get("failed") or 0
    rows = [{"kind": "all failed requests", "count": failed, "share": _share(failed, requests)}]
    for kind, n in summary.get("failures", {}).items():
        rows.append({"kind": kind, "count": n, "share": _share(n, requests)})
    streams = summary.get("streams", {})
    total = streams.get("total") or 0
    for cause, n in streams.get("truncated", {}).items():
        rows.append({"kind": f"streams truncated by {cause}", "count": n, "share": _share(n, total)})
    for grade, n in summary.get("rate_limit", {}).get("retry_after", {}).items():
        rows.append({"kind": f"429 retry-after {grade}", "count": n, "share": None})
    for verdict, n in summary.get("rate_limit", {}).get("honesty", {}).items():
        rows.append({"kind": f"retry-after honesty {verdict}", "count": n, "share": None})
    return rows


def _share(n: int, of: int) -> str | None:
    return f"{n / of:.2%}" if of else None


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def console_text(report: Mapping[str, Any]) -> str:
    """The summary and the gate's verdict as a few aligned lines for the terminal."""
    summary = report["summary"]
    lines = [
        f"LLM load test '{report.get('scenario')}' against {report.get('host')}: {summary.get('requests')} requests "
        f"({summary.get('failed')} failed, {summary.get('attempts')} sent) in {_fmt(report.get('duration_s'))} s",
        f"{'metric':<16}{'unit':>6}" + "".join(f"{c:>10}" for c in _STAT_COLUMNS),
    ]
    for row in latency_rows(summary):
        lines.append(f"{row['metric']:<16}{row['unit']:>6}" + "".join(f"{_fmt(row[c]):>10}" for c in _STAT_COLUMNS))
    for row in failure_rows(summary):
        if row["count"]:
            share = f" ({row['share']})" if row["share"] else ""
            lines.append(f"  {row['kind']}: {row['count']}{share}")
    examples = summary.get("failure_examples", {})
    if examples:
        lines.append("first failure of each kind, and how to reproduce the request:")
        for kind, example in list(examples.items())[:8]:
            lines.append(f"  {kind}: {example.get('detail', '')}")
            lines.append(f"    {example.get('curl', '')}")
    rate_limit = summary.get("rate_limit", {})
    if rate_limit.get("responses_429"):
        lines.append(
            f"  429 answers: {rate_limit['responses_429']} on {rate_limit.get('requests_hit')} requests; "
            f"first at {rate_limit.get('first_429_at_user_rps')} req/s per user"
        )
    if report.get("ratelimit_verdict"):
        lines.append(f"  retry-after verdict: {report['ratelimit_verdict']}")
    breaches = report.get("breaches") or []
    if breaches:
        lines.append(f"GATE FAILED ({len(breaches)} threshold(s) breached):")
        lines += [f"  - {b['message']}" for b in breaches]
    else:
        lines.append("gate passed: " + ", ".join(f"{k}={v}" for k, v in report.get("thresholds", {}).items()))
    return "\n".join(lines)


def csv_text(report: Mapping[str, Any]) -> str:
    """Latency rows, then failure/truncation rows, as CSV."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "name", "unit", *_STAT_COLUMNS, "share"])
    summary = report["summary"]
    for row in latency_rows(summary):
        writer.writerow(["latency", row["metric"], row["unit"], *(_csv(row[c]) for c in _STAT_COLUMNS), ""])
    for row in failure_rows(summary):
        writer.writerow(["failures", row["kind"], "", row["count"], *[""] * (len(_STAT_COLUMNS) - 1), row["share"]])
    for breach in report.get("breaches") or []:
        writer.writerow(["breach", breach["name"], "", "", *[""] * (len(_STAT_COLUMNS) - 1), breach["message"]])
    return out.getvalue()


def _csv(value: object) -> str:
    return "" if value is None else str(value)


def _table(headers: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(report: Mapping[str, Any], *, refresh_s: int | None = None) -> str:
    """A self-contained HTML page of the report (the web UI's /llm page and the written .html)."""
    summary = report["summary"]
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    latency = _table(
        ["metric", "unit", *_STAT_COLUMNS],
        ([r["metric"], r["unit"], *(r[c] for c in _STAT_COLUMNS)] for r in latency_rows(summary)),
    )
    failures = _table(["kind", "count", "share"], ([r["kind"], r["count"], r["share"]] for r in failure_rows(summary)))
    examples = "".join(
        f"<h3>{html.escape(kind)}</h3><p>{html.escape(example.get('detail', ''))}</p>"
        f"<pre>{html.escape(example.get('curl', ''))}</pre>"
        for kind, example in summary.get("failure_examples", {}).items()
    )
    breaches = report.get("breaches")
    if breaches is None:
        gate = "<p>gate: evaluated when the run ends</p>"
    elif breaches:
        gate = (
            "<p class='bad'>gate FAILED</p><ul>"
            + "".join(f"<li>{html.escape(b['message'])}</li>" for b in breaches)
            + "</ul>"
        )
    else:
        gate = "<p class='good'>gate passed</p>"
    facts = _table(
        ["requests", "failed", "sent (with retries)", "streams", "truncated", "output tokens", "429 answers"],
        [
            [
                summary.get("requests"),
                summary.get("failed"),
                summary.get("attempts"),
                summary.get("streams", {}).get("total"),
                summary.get("streams", {}).get("truncated_total"),
                summary.get("tokens", {}).get("output"),
                summary.get("rate_limit", {}).get("responses_429"),
            ]
        ],
    )
    title = f"LLM load test: {report.get('scenario')}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'>{refresh}<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:6px}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}"
        "td:first-child{text-align:left}"
        ".bad{color:#b00;font-weight:bold}.good{color:#070;font-weight:bold}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>target {html.escape(str(report.get('host')))}, "
        f"{html.escape(_fmt(report.get('duration_s')))} s</p>{facts}<h2>Latency</h2>{latency}"
        f"<h2>Failures by kind</h2>{failures}{examples}<h2>Gate</h2>{gate}</body></html>"
    )


def write_reports(
    report: Mapping[str, Any], prefix: str | Path, *, secrets: Iterable[Secret | str | None]
) -> list[Path]:
    """Write PREFIX.json, PREFIX.csv and PREFIX.html (masked); returns the paths."""
    base = Path(prefix)
    base.parent.mkdir(parents=True, exist_ok=True)
    hidden = list(secrets)
    written = []
    for suffix, text in (
        (".json", json.dumps(report, indent=2, sort_keys=False, default=str)),
        (".csv", csv_text(report)),
        (".html", html_page(report)),
    ):
        path = base.with_name(base.name + suffix)
        path.write_text(mask_secrets(text, hidden), encoding="utf-8")
        written.append(path)
    return written
