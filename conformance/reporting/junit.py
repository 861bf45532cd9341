"""junit.xml: one <testcase> per CheckResult, one <testsuite> per area, for CI test views."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from conformance.reporting.findings import headline, section_label
from conformance.results import CheckResult, RunReport

# Characters XML 1.0 cannot carry at all, not even escaped; a gateway can put any of them in a body.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# CI views show failure text inline; the full evidence is in conformance.json and report.html.
_EVIDENCE_CHARS = 4000


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def testcase_name(result: CheckResult) -> str:
    """The JUnit test name: "check[probe]", or the check id alone when there is no probe."""
    return f"{result.check}[{result.probe}]" if result.probe else result.check


def _failure_text(result: CheckResult) -> str:
    lines = [result.message or "(no message)", "", f"rule: {result.rule}"]
    if result.section:
        lines.append(f"section: {section_label(result.section)}")
    lines.append(f"severity: {result.severity}" + (" (accepted by the baseline)" if result.baselined else ""))
    if result.reproduce:
        lines += ["", "reproduce:", result.reproduce]
    for evidence in result.evidence:
        content = evidence.content
        if len(content) > _EVIDENCE_CHARS:
            content = content[:_EVIDENCE_CHARS] + f"\n… ({len(evidence.content) - _EVIDENCE_CHARS} more characters)"
        lines += ["", f"--- {evidence.title} ({evidence.kind}) ---", content]
    return "\n".join(lines)


def _testcase(parent: ET.Element, result: CheckResult, classname: str) -> None:
    case = ET.SubElement(parent, "testcase", classname=classname, name=_xml_text(testcase_name(result)), time="0")
    properties = ET.SubElement(case, "properties")
    for name, value in (
        ("severity", result.severity),
        ("section", section_label(result.section)),
        ("baselined", "true" if result.baselined else "false"),
        ("gating", "true" if result.gating else "false"),
        ("feature", result.feature),
        ("outcome", result.outcome),
    ):
        ET.SubElement(properties, "property", name=name, value=_xml_text(value))
    message = _xml_text(headline(result.message) or result.outcome)
    if result.outcome in ("failed", "error"):
        tag = "failure" if result.outcome == "failed" else "error"
        prefix = "[accepted by baseline] " if result.baselined else ""
        element = ET.SubElement(case, tag, message=prefix + message, type=result.severity)
        element.text = _xml_text(_failure_text(result))
    elif result.outcome in ("skipped", "unsupported"):
        reason = result.message or ("not applicable" if result.outcome == "skipped" else "declined by the gateway")
        label = "unsupported: " if result.outcome == "unsupported" else ""
        ET.SubElement(case, "skipped", message=_xml_text(label + reason))


def _counts(results: tuple[CheckResult, ...]) -> dict[str, str]:
    return {
        "tests": str(len(results)),
        "failures": str(sum(r.outcome == "failed" for r in results)),
        "errors": str(sum(r.outcome == "error" for r in results)),
        "skipped": str(sum(r.outcome in ("skipped", "unsupported") for r in results)),
    }


def render_junit(report: RunReport) -> str:
    """The report as JUnit XML: a <testsuites> root holding one <testsuite name="conformance.<area>"> per area."""
    root = ET.Element("testsuites", {"name": "gateway-conformance", **_counts(report.results)})
    root.set("time", f"{report.duration_s:.3f}")
    by_area: dict[str, list[CheckResult]] = {}
    for result in report.results:
        by_area.setdefault(result.area, []).append(result)
    for area in sorted(by_area):
        results = tuple(by_area[area])
        classname = _xml_text(f"conformance.{area}")
        suite = ET.SubElement(root, "testsuite", {"name": classname, **_counts(results)})
        suite.set("time", "0")
        suite.set("timestamp", _xml_text(report.started_at))
        properties = ET.SubElement(suite, "properties")
        for name, value in (
            ("gateway_url", report.gateway_url),
            ("model", report.model),
            ("verdict", report.verdict),
            ("tool_version", report.tool_version),
            ("baseline", report.baseline_path or ""),
        ):
            ET.SubElement(properties, "property", name=name, value=_xml_text(value))
        for result in results:
            _testcase(suite, result, classname)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
