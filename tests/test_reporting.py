"""Selftests of conformance.reporting: conformance.json, junit.xml, report.html, the baseline gate, the summary."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conformance import schemas
from conformance.errors import HarnessError
from conformance.reporting import (
    BASELINE_FORMAT,
    Baseline,
    BaselineEntry,
    baseline_from_report,
    load_baseline,
    render_html,
    render_json,
    render_junit,
    render_summary,
    write_baseline,
    write_reports,
)
from conformance.reporting.findings import check_rows, group_failures, section_label
from conformance.reporting.html import CONTENT_SECURITY_POLICY, mentioned_events
from conformance.reporting.summary import WIDTH, display_width
from conformance.results import FEATURES, CheckResult, Evidence, RunReport

HOSTILE = "</pre><script>alert(1)</script>"
HOSTILE_ATTR = '"><img src=x onerror=alert(2)>'
CURL = "curl -sS -i -N -X POST 'https://gw.test/v1/messages' -H \"x-api-key: $GATEWAY_API_KEY\" --data-binary '{}'"
SSE = (
    "event: message_start\n"
    'data: {"type":"message_start","message":{"id":"msg_1","content":[]}}\n\n'
    ": keep-alive\n\n"
    "event: content_block_delta\n"
    'data: {"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":"' + HOSTILE + '"}}\n\n'
    "data: [DONE]\n\n"
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def result(check: str = "a_check", probe: str = "basic", outcome: str = "passed", **changes: Any) -> CheckResult:
    """A CheckResult with plausible defaults."""
    fields: dict[str, Any] = {
        "check": check,
        "probe": probe,
        "area": "messages",
        "feature": "messages",
        "outcome": outcome,
        "severity": "must",
        "rule": f"The gateway satisfies {check}.",
        "section": "2",
    }
    if outcome in ("failed", "error"):
        fields["reproduce"] = CURL
    fields.update(changes)
    return CheckResult(**fields)


def run(results: list[CheckResult] | tuple[CheckResult, ...], **changes: Any) -> RunReport:
    """A RunReport around the results."""
    fields: dict[str, Any] = {
        "gateway_url": "https://gw.test/anthropic",
        "model": "claude-test",
        "started_at": "2026-11-20T14:03:12+00:00",
        "duration_s": 12.5,
        "tool_version": "0.1.0",
        "requests_sent": 42,
        "results": tuple(results),
    }
    fields.update(changes)
    return RunReport(**fields)


def conformant_report() -> RunReport:
    return run(
        [
            result("message_has_id", "basic"),
            result("message_has_id", "long"),
            result("stream_ends_with_message_stop", "stream", area="streaming", feature="streaming", section="3.2"),
            result("tool_use_input_object", "tools", area="tools", feature="tools"),
            result("thinking_signature_present", "think", "unsupported", feature="thinking", message="declined: 400"),
            result("vision_accepts_image", "vision", "skipped", feature="vision", message="no image probe"),
            result("unknown_fields_reported", "basic", severity="info", section="8"),
        ]
    )


def failing_report() -> RunReport:
    return run(
        [
            result("message_has_id", "basic"),
            result(
                "block_indices_contiguous",
                "stream",
                "failed",
                area="streaming",
                feature="streaming",
                section="3.2",
                message=f"content_block_delta at event 2 names index 3 {HOSTILE}",
                evidence=(
                    Evidence("response headers", "HTTP 200\ncontent-type: text/event-stream", "headers"),
                    Evidence("events", SSE, "events"),
                ),
            ),
            result(
                "no_done_sentinel",
                "stream",
                "failed",
                area="streaming",
                feature="streaming",
                severity="should",
                section="3.2",
                message="data: [DONE] after message_stop",
                evidence=(Evidence("events", SSE, "events"),),
            ),
            result(
                "rate_limit_has_retry_after",
                "rate-limit",
                "failed",
                area="errors",
                section="4.3",
                message="HTTP 429 without retry-after",
                evidence=(Evidence("body", '{"error":{"message":"' + HOSTILE_ATTR + '"}}', "body"),),
            ),
            result(
                "count_tokens_shape",
                "count",
                "error",
                area="count_tokens",
                feature="count_tokens",
                message="check crashed: KeyError: 'input_tokens'",
                evidence=(Evidence("traceback", "Traceback (most recent call last):\nKeyError", "text"),),
            ),
            result("usage_is_cumulative", "stream", "failed", severity="info", message="usage shrank", section="3.1"),
            result("vision_accepts_image", "vision", "skipped", feature="vision", message="no image probe"),
            result("thinking_signature_present", "think", "unsupported", feature="thinking", message="declined"),
        ],
        required=("streaming",),
    )


def baselined_report() -> RunReport:
    base = failing_report()
    baseline = Baseline(
        accepted=(
            BaselineEntry("block_indices_contiguous", "upstream bug GW-1"),
            BaselineEntry("rate_limit_has_retry_after@rate-limit"),
            BaselineEntry("count_tokens_shape"),
        )
    )
    return dataclasses.replace(base, results=baseline.apply(base.results), baseline_path="ci/baseline.json")


def empty_report() -> RunReport:
    return run([], requests_sent=0, duration_s=0.0)


REPORTS = {
    "conformant": conformant_report,
    "failing": failing_report,
    "baselined": baselined_report,
    "empty": empty_report,
}


@pytest.fixture(params=sorted(REPORTS))
def any_report(request: pytest.FixtureRequest) -> RunReport:
    return REPORTS[request.param]()


# --- conformance.json ---------------------------------------------------------------------------------------------


def test_write_reports_writes_the_three_files(tmp_path: Path) -> None:
    files = write_reports(failing_report(), tmp_path / "run-1")
    assert set(files) == {"json", "junit", "html"}
    assert {p.name for p in files.values()} == {"conformance.json", "junit.xml", "report.html"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in files.values())
    assert sorted(p.name for p in (tmp_path / "run-1").iterdir()) == ["conformance.json", "junit.xml", "report.html"]


def test_conformance_json_validates_against_the_schema(any_report: RunReport, tmp_path: Path) -> None:
    data = json.loads(write_reports(any_report, tmp_path)["json"].read_text(encoding="utf-8"))
    errors = list(schemas.reference_validator("report/conformance-report").iter_errors(data))
    assert not errors, [e.message for e in errors]
    assert schemas.validator("report/conformance-report").is_valid(data)


def test_conformance_json_round_trips(any_report: RunReport, tmp_path: Path) -> None:
    text = write_reports(any_report, tmp_path)["json"].read_text(encoding="utf-8")
    again = RunReport.from_json(json.loads(text))
    assert again == any_report
    assert render_json(again) == text


def test_conformance_json_is_pretty_and_stable() -> None:
    text = render_json(failing_report())
    assert text == render_json(failing_report())
    assert text.startswith('{\n  "format": "gateway-conformance/report@1",\n')
    assert text.endswith("}\n")
    assert HOSTILE in json.loads(text)["checks"][1]["message"]


@pytest.mark.parametrize(
    ("mutation", "where"),
    [
        (lambda d: d.update(verdict="conformant"), "verdict contradicts a gating check"),
        (lambda d: d["checks"][1].update(gating=False), "a must failure that is not gating"),
        (lambda d: d["checks"][0].update(outcome="flaky"), "unknown outcome"),
        (lambda d: d.pop("counts"), "missing counts"),
        (lambda d: d["checks"][1]["evidence"][0].update(kind="video"), "unknown evidence kind"),
        (lambda d: d.update(surprise=1), "unknown top-level field"),
    ],
)
def test_the_report_schema_rejects_inconsistent_reports(mutation: Any, where: str) -> None:
    data = failing_report().to_json()
    mutation(data)
    assert not schemas.reference_validator("report/conformance-report").is_valid(data), where


def test_the_report_schema_lists_every_feature() -> None:
    document = schemas.schema("report/conformance-report")
    assert tuple(document["$defs"]["capability"]["properties"]["feature"]["enum"]) == FEATURES
    assert document["$id"] == "https://schemas.gateway-conformance.invalid/report/conformance-report.json"
    validator = schemas.reference_validator("report/conformance-report")
    validator.check_schema(document)
    validator.check_schema(schemas.schema("report/baseline"))


# --- junit.xml ----------------------------------------------------------------------------------------------------


def _suites(report: RunReport) -> ET.Element:
    return ET.fromstring(render_junit(report).encode("utf-8"))


def test_junit_counts_are_right() -> None:
    root = _suites(failing_report())
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("8", "4", "1", "2")
    for suite in root.iter("testsuite"):
        cases = suite.findall("testcase")
        assert suite.get("tests") == str(len(cases))
        assert suite.get("failures") == str(sum(c.find("failure") is not None for c in cases))
        assert suite.get("errors") == str(sum(c.find("error") is not None for c in cases))
        assert suite.get("skipped") == str(sum(c.find("skipped") is not None for c in cases))
    assert sorted(s.get("name") or "" for s in root.iter("testsuite")) == [
        "conformance.count_tokens",
        "conformance.errors",
        "conformance.messages",
        "conformance.streaming",
    ]


def test_junit_testcases_carry_message_curl_and_properties() -> None:
    root = _suites(failing_report())
    cases = {c.get("name"): c for c in root.iter("testcase")}
    case = cases["block_indices_contiguous[stream]"]
    assert case.get("classname") == "conformance.streaming"
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == f"content_block_delta at event 2 names index 3 {HOSTILE}"
    assert failure.get("type") == "must"
    assert CURL in (failure.text or "")
    assert "event: content_block_delta" in (failure.text or "")
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["severity"] == "must"
    assert properties["section"] == "protocol.md §3.2"
    assert properties["baselined"] == "false"
    error = cases["count_tokens_shape[count]"].find("error")
    assert error is not None and "KeyError" in (error.get("message") or "")
    skipped = cases["vision_accepts_image[vision]"].find("skipped")
    assert skipped is not None and skipped.get("message") == "no image probe"
    unsupported = cases["thinking_signature_present[think]"].find("skipped")
    assert unsupported is not None and unsupported.get("message") == "unsupported: declined"
    passed = cases["message_has_id[basic]"]
    assert [child.tag for child in passed] == ["properties"]


def test_junit_marks_baselined_failures() -> None:
    cases = {c.get("name"): c for c in _suites(baselined_report()).iter("testcase")}
    case = cases["block_indices_contiguous[stream]"]
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["baselined"] == "true"
    assert properties["gating"] == "false"
    failure = case.find("failure")
    assert failure is not None and (failure.get("message") or "").startswith("[accepted by baseline]")


def test_junit_survives_characters_xml_cannot_carry() -> None:
    nasty = result("x", "p", "failed", message="nul \x00 esc \x1b bell \x07 end", evidence=(Evidence("b", "\x01\x02"),))
    root = _suites(run([nasty]))
    failure = root.find(".//failure")
    assert failure is not None
    assert failure.get("message") == "nul \\x00 esc \\x1b bell \\x07 end"


def test_junit_of_an_empty_run() -> None:
    root = _suites(empty_report())
    assert root.get("tests") == "0" and root.findall("testsuite") == []


# --- report.html --------------------------------------------------------------------------------------------------


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser


def test_html_shows_the_verdict_and_run_facts() -> None:
    page = render_html(failing_report())
    assert '<h1 id="verdict">Non-conformant</h1>' in page
    assert "<strong>3 gating failures</strong>" in page
    for fact in ("https://gw.test/anthropic", "claude-test", "2026-11-20 14:03:12 UTC", "12.5 s", "42"):
        assert fact in page
    conformant = render_html(conformant_report())
    assert '<h1 id="verdict">Conformant</h1>' in conformant and "No gating failures" in conformant


def test_html_shows_every_failure_with_its_evidence_and_curl() -> None:
    report = failing_report()
    page = render_html(report)
    text = "".join(_parse(page).text)
    for r in report.results:
        if r.outcome in ("failed", "error"):
            assert r.check in text
            assert r.message in text
            assert section_label(r.section) in text
            for evidence in r.evidence:
                assert evidence.title in text
        assert CURL in text
    # The events block keeps every frame, numbered by event index, and highlights the event the message names.
    assert 'data-g="#2"' in page and 'data-g="▶ #2"' in page and 'data-g=":"' in page
    assert "data: [DONE]" in text


def test_html_orders_must_before_should_before_info_and_sets_accepted_apart() -> None:
    page = render_html(
        baselined_report(), baseline=Baseline(accepted=(BaselineEntry("block_indices_contiguous", "GW-1"),))
    )
    findings = page.index('id="findings"')
    accepted = page.index('id="accepted"')
    assert findings < page.index("no_done_sentinel") < page.index("usage_is_cumulative") < accepted
    accepted_part = page[accepted:]
    for check in ("block_indices_contiguous", "rate_limit_has_retry_after", "count_tokens_shape"):
        assert check in accepted_part
    assert "Accepted because:</b> GW-1" in accepted_part
    assert '<h1 id="verdict">Conformant</h1>' in page
    assert "3 failures accepted by the baseline" in page


def test_html_lists_passed_and_not_applicable_checks_collapsed() -> None:
    page = render_html(conformant_report())
    passed = page[page.index('id="passed"') :]
    assert passed.index("<details") < passed.index("message_has_id")
    assert "2 probes" in passed
    assert "vision_accepts_image" in page[page.index('id="not-run"') :]


def test_html_capability_matrix_has_every_feature() -> None:
    report = failing_report()
    page = render_html(report)
    matrix = page[page.index('id="capabilities"') : page.index('id="findings"')]
    statuses = {c.feature: c.status for c in report.capabilities}
    assert statuses["streaming"] == "broken" and statuses["thinking"] == "unsupported"
    for feature in FEATURES:
        row = re.search(rf"<tr><td><code>{feature}</code>.*?</tr>", matrix)
        assert row is not None, feature
        assert f">{statuses[feature]}</span>" in row.group()
    assert "required" in matrix


def test_html_escapes_everything_from_the_gateway() -> None:
    hostile = failing_report()
    hostile = dataclasses.replace(
        hostile,
        gateway_url=f"https://gw.test/{HOSTILE_ATTR}",
        model=HOSTILE,
        results=(
            *hostile.results,
            result(HOSTILE, HOSTILE_ATTR, "failed", area=HOSTILE, rule=HOSTILE, section=HOSTILE, reproduce=HOSTILE),
            result("a", "b", "failed", evidence=(Evidence(HOSTILE, HOSTILE, "events"), Evidence(HOSTILE_ATTR, "x"))),
        ),
    )
    page = render_html(hostile, baseline=Baseline(accepted=(BaselineEntry("zzz", HOSTILE),)))
    assert "<script>alert" not in page
    assert "<img" not in page
    assert "onerror=" not in page.replace("onerror=alert(2)&gt;", "")
    tags = _parse(page).tags
    assert [t for t, _ in tags if t in ("script", "img", "iframe", "object", "embed", "link", "base", "form")] == [
        "script"
    ]
    assert not [name for _, attrs in tags for name in attrs if name.startswith("on")]
    assert HOSTILE in "".join(_parse(page).text)


def test_html_makes_hidden_characters_visible() -> None:
    page = render_html(run([result("x", "p", "failed", message="red \x1b[31m bidi \u202e bom \ufeff")]))
    assert "\x1b" not in page and "\u202e" not in page and "\ufeff" not in page
    assert 'title="invisible character U+001B">ESC<' in page
    assert "U+202E" in page and ">BOM<" in page


def test_html_is_self_contained_and_locked_down_by_csp() -> None:
    page = render_html(failing_report())
    tags = _parse(page).tags
    for _, attrs in tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (name, value)
    assert "@import" not in page and "url(" not in page
    style = page[page.index("<style>") + 7 : page.index("</style>")]
    script = page[page.index("<script>") + 8 : page.index("</script>")]

    def digest(text: str) -> str:
        return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    assert f"style-src '{digest(style)}'" in CONTENT_SECURITY_POLICY
    assert f"script-src '{digest(script)}'" in CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert ("meta", {"http-equiv": "Content-Security-Policy", "content": CONTENT_SECURITY_POLICY}) in tags
    assert "@media print" in style and "max-width:640px" in style


def test_html_of_an_empty_run_says_nothing_was_checked() -> None:
    page = render_html(empty_report())
    assert '<h1 id="verdict">Conformant</h1>' in page
    assert "No checks ran" in page
    assert 'class="verdict empty"' in page


def test_mentioned_events() -> None:
    assert mentioned_events("content_block_delta at event 5 for index 2") == {5}
    assert mentioned_events("events[3] and event #7, event_index=9") == {3, 7, 9}
    assert mentioned_events("expected event: message_stop") == frozenset()


def test_grouping_helpers() -> None:
    report = failing_report()
    areas = group_failures(report.results, baselined=False)
    # Must before should before info across areas too; a failure before an error of the same severity.
    assert [area for area, _ in areas] == ["errors", "streaming", "count_tokens", "messages"]
    streaming = dict(areas)["streaming"]
    assert [g.check for g in streaming] == ["block_indices_contiguous", "no_done_sentinel"]
    rows = {row.check: row for row in check_rows(report.results)}
    assert rows["block_indices_contiguous"].worst.outcome == "failed"
    mixed = check_rows([result("c", "p1"), result("c", "p2", "skipped"), result("c", "p3", "failed", baselined=True)])
    assert mixed[0].worst.probe == "p3"
    assert check_rows([result("c", "p1"), result("c", "p2", "skipped")])[0].worst.outcome == "passed"
    assert section_label("3.2") == "protocol.md §3.2" and section_label("") == ""


# --- the baseline gate --------------------------------------------------------------------------------------------


def test_baseline_apply_marks_only_matching_failures() -> None:
    report = failing_report()
    baseline = Baseline(
        accepted=(
            BaselineEntry("block_indices_contiguous"),
            BaselineEntry("message_has_id"),
            BaselineEntry("rate_limit_has_retry_after@other-probe"),
        )
    )
    applied = baseline.apply(report.results)
    by_check = {r.check: r for r in applied}
    assert by_check["block_indices_contiguous"].baselined
    assert not by_check["block_indices_contiguous"].gating
    assert by_check["message_has_id"] == next(r for r in report.results if r.check == "message_has_id")
    assert not by_check["rate_limit_has_retry_after"].baselined
    assert [r.check for r in applied] == [r.check for r in report.results]


def test_the_gate_opens_when_every_gating_failure_is_baselined() -> None:
    assert failing_report().verdict == "non-conformant"
    report = baselined_report()
    assert report.verdict == "conformant"
    assert report.gating_failures == ()
    assert sum(r.baselined for r in report.results) == 3


def test_a_probe_entry_covers_that_probe_only() -> None:
    results = (result("c", "p1", "failed"), result("c", "p2", "failed"))
    applied = Baseline(accepted=(BaselineEntry("c@p1"),)).apply(results)
    assert [r.baselined for r in applied] == [True, False]
    assert run(applied).verdict == "non-conformant"


def test_stale_and_unmatched_entries() -> None:
    results = (
        result("fixed", "p1"),
        result("still_broken", "p1", "failed"),
        result("only_skipped", "p1", "skipped"),
        result("half", "p1"),
        result("half", "p2", "failed"),
    )
    baseline = Baseline(
        accepted=tuple(
            BaselineEntry(i) for i in ("fixed", "still_broken", "only_skipped", "half@p1", "half@p2", "renamed_check")
        )
    )
    assert [e.id for e in baseline.stale(results)] == ["fixed", "half@p1"]
    assert [e.id for e in baseline.unmatched(results)] == ["renamed_check"]


def test_baseline_round_trips_through_a_file(tmp_path: Path) -> None:
    report = failing_report()
    baseline = baseline_from_report(report, created_at="2026-11-20T15:00:00Z")
    path = write_baseline(baseline, tmp_path / "ci" / "baseline.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == BASELINE_FORMAT and data["gateway"] == "https://gw.test/anthropic"
    assert schemas.reference_validator("report/baseline").is_valid(data)
    assert load_baseline(path) == baseline
    assert [p.name for p in path.parent.iterdir()] == ["baseline.json"]
    applied = run(load_baseline(path).apply(report.results))
    assert applied.verdict == "conformant"
    assert all(r.baselined for r in applied.results if r.outcome in ("failed", "error"))


def test_baseline_from_report_accepts_todays_state_precisely() -> None:
    report = run(
        [
            result("everywhere", "p1", "failed", message="broken\nsecond line"),
            result("everywhere", "p2", "error"),
            result("somewhere", "p1"),
            result("somewhere", "p2", "failed", severity="should"),
            result("fine", "p1"),
        ]
    )
    previous = Baseline(accepted=(BaselineEntry("everywhere", "known since 1.0"),))
    baseline = baseline_from_report(report, created_at="t", previous=previous)
    assert baseline.accepted == (
        BaselineEntry("everywhere", "known since 1.0"),
        BaselineEntry("somewhere@p2", "should: failed"),
    )
    assert baseline_from_report(run([result("x", "p", "failed", message="broken\nmore")])).accepted[0].reason == (
        "must: broken"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", baseline_from_report(report).created_at or "")


def _write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "baseline.json"
    path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 2"),
        ("[]", "the top level is a list, not an object"),
        ('{"accepted": []}', '"format" is null, expected "gateway-conformance/baseline@1"'),
        (f'{{"format": "{BASELINE_FORMAT}"}}', '"accepted" is missing'),
        (f'{{"format": "{BASELINE_FORMAT}", "accepted": {{}}}}', '"accepted" is an object; it must be a list'),
        (f'{{"format": "{BASELINE_FORMAT}", "accepted": ["x"]}}', "accepted[0] is a string; it must be an object"),
        (f'{{"format": "{BASELINE_FORMAT}", "accepted": [{{"reason": "r"}}]}}', 'accepted[0]: "id" is missing'),
        (f'{{"format": "{BASELINE_FORMAT}", "accepted": [{{"id": "a b"}}]}}', 'accepted[0]: "id" is "a b"'),
        (f'{{"format": "{BASELINE_FORMAT}", "accepted": [{{"id": "a@"}}]}}', '"<check id>@<probe id>"'),
        (f'{{"format": "{BASELINE_FORMAT}", "accepted": [{{"id": "a", "why": 1}}]}}', "unknown key(s) 'why'"),
        (f'{{"format": "{BASELINE_FORMAT}", "accepted": [{{"id": "a", "reason": 3}}]}}', '"reason" is a number'),
        (f'{{"format": "{BASELINE_FORMAT}", "accepted": [{{"id": "a"}}, {{"id": "a"}}]}}', '"a" is listed twice'),
        (f'{{"format": "{BASELINE_FORMAT}", "accepted": [], "gateway": 1}}', '"gateway" is a number'),
        (f'{{"format": "{BASELINE_FORMAT}", "accepted": [], "extra": 1}}', "unknown key(s) 'extra'"),
    ],
)
def test_a_malformed_baseline_is_a_harness_error_that_says_what_is_wrong(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(HarnessError) as caught:
        load_baseline(path)
    message = str(caught.value)
    assert expected in message
    assert str(path) in message
    assert BASELINE_FORMAT in message  # what is valid
    if content.startswith("{") and content != "{not json":
        # The schema is the documented contract: it must reject what the loader rejects.
        assert not schemas.reference_validator("report/baseline").is_valid(json.loads(content))


def test_a_missing_baseline_is_a_harness_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"baseline file not found: .*nope\.json.*accepted"):
        load_baseline(tmp_path / "nope.json")
    with pytest.raises(HarnessError, match="is a directory"):
        load_baseline(tmp_path)


@pytest.mark.parametrize("entry_id", ["check_a", "check_a@probe-1", "check.a@probe with spaces", "c@p@q"])
def test_valid_entry_ids_pass_the_loader_and_the_schema(tmp_path: Path, entry_id: str) -> None:
    data = {"format": BASELINE_FORMAT, "accepted": [{"id": entry_id, "reason": "r"}]}
    assert load_baseline(_write(tmp_path, json.dumps(data))).accepted == (BaselineEntry(entry_id, "r"),)
    assert schemas.reference_validator("report/baseline").is_valid(data)


def test_a_baseline_with_a_bom_and_no_optional_fields_loads(tmp_path: Path) -> None:
    path = _write(tmp_path, "\ufeff" + json.dumps({"format": BASELINE_FORMAT, "accepted": [{"id": "a@p"}]}))
    baseline = load_baseline(path)
    assert baseline.accepted[0].check == "a" and baseline.accepted[0].probe == "p"
    assert baseline.gateway is None and baseline.created_at is None


# --- the terminal summary -----------------------------------------------------------------------------------------


def _long_report() -> RunReport:
    return run(
        [
            *failing_report().results,
            result("a_check_id_that_is_really_much_longer_than_anyone_would_ever_want_to_type", "p", "failed"),
            result("wide", "p", "failed", message="全角文字のメッセージ" * 20, area="an_area_name_that_is_long"),
            result("ansi", "p", "failed", message="\x1b[2J\x1b[31mcleared your screen\x07 \u202etxet"),
        ],
        required=("streaming",),
    )


@pytest.mark.parametrize("color", [False, True])
def test_summary_fits_in_120_columns(color: bool) -> None:
    text = render_summary(_long_report(), color=color, report_files={"html": Path("reports/run/report.html")})
    for line in text.splitlines():
        assert display_width(ANSI.sub("", line)) <= WIDTH, line


def test_summary_without_color_has_no_escape_sequences_even_from_the_gateway() -> None:
    text = render_summary(_long_report(), color=False)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "cleared your screen" in text
    coloured = render_summary(_long_report(), color=True)
    assert "\x1b[" in coloured
    assert "\x1b[2J" not in coloured


def test_summary_lines_checks_capabilities_verdict_and_files() -> None:
    report = failing_report()
    files = {
        "html": Path("reports/run-1/report.html"),
        "json": Path("reports/run-1/conformance.json"),
        "junit": Path("reports/run-1/junit.xml"),
    }
    text = render_summary(report, color=False, report_files=files, stale=(BaselineEntry("old_one"),))
    lines = text.splitlines()
    checks = {r.check for r in report.results}
    table = [line for line in lines if line.split(" ")[0] in ("FAIL", "ERROR", "PASS", "SKIP", "UNSUPP", "ACCEPTED")]
    assert len(table) == len(checks)
    assert table[-1].startswith("FAIL") and "must" in table[-1]
    assert table[0].startswith("SKIP")
    row = next(line for line in table if "block_indices_contiguous" in line)
    assert row.split()[:3] == ["FAIL", "must", "streaming"]
    for feature in FEATURES:
        assert any(line.strip().startswith(feature) for line in lines), feature
    assert any("NON-CONFORMANT" in line and "3 gating failures" in line for line in lines)
    assert "Reports: reports/run-1/report.html  (also conformance.json, junit.xml)" in lines
    assert any("old_one" in line for line in lines)


def test_summary_aggregates_probes_worst_outcome_wins() -> None:
    report = run([result("c", "p1"), result("c", "p2", "failed", message="bad"), result("c", "p3", "skipped")])
    table = [line for line in render_summary(report, color=False).splitlines() if " c " in line]
    assert len(table) == 1
    assert table[0].startswith("FAIL") and "(1/3 probes) bad" in table[0]


def test_summary_of_an_empty_run() -> None:
    text = render_summary(empty_report(), color=False)
    assert "CONFORMANT  no checks ran" in text
    assert "OUTCOME" not in text
