"""report.html: a self-contained scorecard a person can read at a glance, safe to open whatever the gateway sent."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from conformance.reporting.baseline import Baseline, BaselineEntry
from conformance.reporting.findings import FindingGroup, check_rows, group_failures, headline, section_label
from conformance.results import FEATURES, CheckResult, Evidence, RunReport

# Everything that came from the gateway (bodies, events, messages, even the URL the user typed) goes through _text or
# _attr; nothing is ever interpolated raw. The CSP below is the second wall: only this file's own stylesheet and
# script (by hash) may apply, so an escaping bug still cannot run injected script or load anything from outside.

_CSS = """
:root{--ink:#101828;--muted:#5d6b82;--faint:#98a2b3;--line:#e4e7ec;--bg:#f4f5f7;--card:#fff;
--red:#b42318;--red-bg:#fef3f2;--red-line:#fecdca;--green:#067647;--green-bg:#ecfdf3;--green-line:#abefc6;
--amber:#b54708;--amber-bg:#fffaeb;--amber-line:#fedf89;--blue:#175cd3;--blue-bg:#eff8ff;--blue-line:#b2ddff;
--grey:#475467;--grey-bg:#f2f4f7;--grey-line:#d0d5dd;--purple:#6941c6;--purple-bg:#f4f3ff;--purple-line:#d9d6fe;
--mono:ui-monospace,SFMono-Regular,"SF Mono",Menlo,Consolas,"DejaVu Sans Mono","Liberation Mono",monospace;
--sans:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Liberation Sans","DejaVu Sans",sans-serif}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 var(--sans)}
.wrap{max-width:1200px;margin:0 auto;padding:24px 28px 56px}
code,pre{font-family:var(--mono)}
code{font-size:.92em;overflow-wrap:anywhere}
a{color:var(--blue)}
.muted{color:var(--muted)}
.kicker{font-size:12px;font-weight:700;letter-spacing:.08em;text-transform:uppercase;color:var(--muted);margin:0 0 10px}
.verdict{display:flex;gap:22px;align-items:center;padding:26px 30px;border-radius:16px;color:#fff}
.verdict.fail{background:var(--red)}
.verdict.pass{background:var(--green)}
.verdict.empty{background:var(--grey)}
.mark{flex:none;width:72px;height:72px;border-radius:50%;background:rgba(255,255,255,.2);display:grid;
place-items:center;font-size:40px;font-weight:700;line-height:1}
.verdict h1{margin:0;font-size:42px;line-height:1.1;letter-spacing:-.02em}
.verdict p{margin:6px 0 0;font-size:17px}
.verdict .also{font-size:15px;opacity:.92}
.gating-list{margin:10px 0 0;padding:0;list-style:none;display:flex;flex-wrap:wrap;gap:6px}
.gating-list a{color:#fff;background:rgba(0,0,0,.18);border-radius:6px;padding:2px 8px;text-decoration:none;
font:13px/1.5 var(--mono);overflow-wrap:anywhere}
.gating-list a:hover{background:rgba(0,0,0,.3)}
.meta{display:flex;flex-wrap:wrap;gap:1px;margin:16px 0 0;background:var(--line);
border:1px solid var(--line);border-radius:12px;overflow:hidden}
.meta div{flex:1 1 230px;background:var(--card);padding:10px 14px;min-width:0}
.meta .wide{flex:2 1 461px}
.meta dt{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em;font-weight:600}
.meta dd{margin:2px 0 0;font-weight:600;overflow-wrap:anywhere}
nav.toc{position:sticky;top:0;z-index:2;display:flex;flex-wrap:wrap;gap:6px;margin:18px -6px 0;padding:8px 6px;
background:rgba(244,245,247,.94)}
nav.toc a{text-decoration:none;color:var(--ink);background:var(--card);border:1px solid var(--line);border-radius:999px;
padding:3px 12px;font-size:13px;font-weight:600}
nav.toc a b{color:var(--muted);font-weight:600;margin-left:4px}
nav.toc a.hot b{color:var(--red)}
section.block{margin-top:30px}
h2{font-size:21px;margin:0 0 12px;letter-spacing:-.01em}
h2 .count{color:var(--muted);font-weight:500;font-size:15px;margin-left:6px}
h3.area{font-size:15px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:22px 0 4px;
border-bottom:1px solid var(--line);padding-bottom:4px}
.lede{margin:-6px 0 12px;color:var(--muted)}
.stats{display:grid;grid-template-columns:repeat(6,minmax(0,1fr));gap:10px}
.stat{background:var(--card);border:1px solid var(--line);border-top:4px solid var(--grey-line);border-radius:10px;
padding:10px 14px}
.stat b{display:block;font-size:30px;line-height:1.15;font-weight:700}
.stat span{font-size:13px;color:var(--muted);font-weight:600}
.stat.failed{border-top-color:var(--red)}.stat.failed b{color:var(--red)}
.stat.error{border-top-color:var(--purple)}.stat.error b{color:var(--purple)}
.stat.accepted{border-top-color:var(--faint)}
.stat.passed{border-top-color:var(--green)}.stat.passed b{color:var(--green)}
.stat.unsupported{border-top-color:var(--blue)}
.stat.zero b{color:var(--faint)}
.stats+.scroll{margin-top:14px}
svg.bar{display:block;width:100%;height:12px;margin:12px 0 14px;border-radius:6px;background:var(--grey-bg)}
.scroll{overflow-x:auto;border:1px solid var(--line);border-radius:10px;background:var(--card)}
table{width:100%;border-collapse:collapse;font-size:14px}
th,td{padding:8px 12px;text-align:left;border-bottom:1px solid var(--line);vertical-align:top}
tr:last-child td{border-bottom:0}
th{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.num.hot{color:var(--red);font-weight:700}
td.zero{color:var(--faint)}
.badge{display:inline-block;padding:0 9px;border-radius:999px;font-size:12px;font-weight:700;letter-spacing:.03em;
text-transform:uppercase;border:1px solid var(--grey-line);background:var(--grey-bg);color:var(--grey);
line-height:20px;white-space:nowrap}
.b-red{color:var(--red);background:var(--red-bg);border-color:var(--red-line)}
.b-green{color:var(--green);background:var(--green-bg);border-color:var(--green-line)}
.b-amber{color:var(--amber);background:var(--amber-bg);border-color:var(--amber-line)}
.b-blue{color:var(--blue);background:var(--blue-bg);border-color:var(--blue-line)}
.b-purple{color:var(--purple);background:var(--purple-bg);border-color:var(--purple-line)}
.b-solid{color:#fff;background:var(--red);border-color:var(--red)}
.b-dashed{border-style:dashed;background:transparent}
.cap td:first-child{font-weight:600;white-space:nowrap}
.tag{font-size:11px;font-weight:700;color:var(--amber);text-transform:uppercase;letter-spacing:.05em;margin-left:6px}
.finding{background:var(--card);border:1px solid var(--line);border-left:6px solid var(--red);border-radius:10px;
padding:16px 20px;margin:12px 0}
.finding.sev-should{border-left-color:var(--amber)}
.finding.sev-info{border-left-color:var(--blue)}
.finding.accepted{border-left-color:var(--faint);background:#fbfbfc}
.fhead{display:flex;flex-wrap:wrap;align-items:center;gap:8px}
.fhead h4{margin:0 6px 0 2px;font-size:17px;overflow-wrap:anywhere;min-width:0}
.fhead .where{margin-left:auto;color:var(--muted);font-size:13px;font-weight:600;white-space:nowrap}
.rule{margin:8px 0 0;color:var(--muted)}
.rule b{color:var(--ink);font-weight:600}
.reason{margin:8px 0 0;padding:8px 12px;background:var(--grey-bg);border-radius:8px;font-size:14px}
.occ{border-top:1px solid var(--line);margin-top:14px;padding-top:12px}
.probe{font-size:12px;font-weight:700;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.probe code{text-transform:none;letter-spacing:0;color:var(--ink);font-size:13px}
.message{margin:6px 0 10px;font-size:15.5px;font-weight:500;white-space:pre-wrap;overflow-wrap:anywhere}
details.ev{margin:8px 0;border:1px solid var(--line);border-radius:8px;background:#fcfcfd}
details.ev>summary{cursor:pointer;padding:6px 12px;font-size:13px;color:var(--muted);font-weight:600}
details.ev>summary .t{color:var(--ink)}
details.ev>summary .hlnote{color:var(--red)}
pre{margin:0;font-size:12.5px;line-height:1.5;white-space:pre-wrap;overflow-wrap:anywhere;tab-size:4}
pre.ev{position:relative;max-height:30em;overflow:auto;padding:10px 14px;border-top:1px solid var(--line)}
pre.sse{padding-left:0}
.ln{display:block;position:relative;padding-left:5.2em;min-height:1.5em}
.ln::before{content:attr(data-g);position:absolute;left:0;width:4.4em;text-align:right;color:var(--faint);
user-select:none;-webkit-user-select:none}
.ln.hl{background:#fee4e2}
.ln.hl::before{color:var(--red);font-weight:700}
.ln.note{color:var(--muted);font-style:italic}
.cc{color:var(--red);background:var(--red-bg);border:1px solid var(--red-line);border-radius:3px;padding:0 2px;
font-weight:700}
.eol{color:var(--faint)}
.repro{position:relative;margin-top:10px}
.repro-label{font-size:12px;font-weight:700;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);
margin-bottom:4px}
pre.curl{background:#101828;color:#e4e7ec;border-radius:8px;padding:10px 14px;padding-right:76px}
pre.curl .cc{background:#3d1410;border-color:#7a271a;color:#fda29b}
button.copy{position:absolute;right:8px;bottom:8px;font:600 12px var(--sans);color:#fff;background:#344054;
border:1px solid #475467;border-radius:6px;padding:3px 10px;cursor:pointer}
button.copy:hover{background:#475467}
.more{margin-top:10px}
.more>summary{cursor:pointer;color:var(--blue);font-weight:600;font-size:14px}
details.list{background:var(--card);border:1px solid var(--line);border-radius:10px}
details.list>summary{cursor:pointer;padding:10px 16px;font-weight:600}
ul.checks{list-style:none;margin:0;padding:4px 16px 14px;columns:3 300px;column-gap:28px}
ul.checks li{break-inside:avoid;padding:3px 0;font-size:13.5px;overflow-wrap:anywhere}
ul.checks li .muted{font-size:12.5px}
ul.plain{margin:6px 0;padding-left:20px}
.empty-note{background:var(--card);border:1px dashed var(--grey-line);border-radius:10px;padding:14px 18px;
color:var(--muted)}
.all-clear{background:var(--green-bg);border:1px solid var(--green-line);color:var(--green);border-radius:10px;
padding:14px 18px;font-weight:600}
footer{margin-top:40px;color:var(--muted);font-size:13px;border-top:1px solid var(--line);padding-top:12px}
@media (max-width:980px){.stats{grid-template-columns:repeat(3,minmax(0,1fr))}}
@media (max-width:640px){.wrap{padding:12px 12px 40px}.verdict{flex-direction:column;align-items:flex-start;
padding:20px}.mark{width:52px;height:52px;font-size:28px}.verdict h1{font-size:30px}
.stats{grid-template-columns:repeat(2,minmax(0,1fr))}.meta div,.meta .wide{flex-basis:150px}
th,td{padding:7px 8px}.cap thead{display:none}.cap tr{display:grid;grid-template-columns:auto 1fr;
border-bottom:1px solid var(--line)}.cap tr:last-child{border-bottom:0}.cap td{border:0}
.cap td:nth-child(3){grid-column:1/-1;padding-top:0}.cap td.none{display:none}
.fhead .where{margin-left:0;width:100%}.finding{padding:14px}.ln{padding-left:3.6em}.ln::before{width:3em}}
@media print{body{background:#fff;font-size:11pt}.wrap{max-width:none;padding:0}nav.toc,button.copy{display:none}
.verdict,.badge,.stat,.finding,.ln.hl,pre.curl,svg.bar{-webkit-print-color-adjust:exact;print-color-adjust:exact}
pre.ev{max-height:none;overflow:visible}.fhead,.stat,tr{break-inside:avoid}h2,h3{break-after:avoid}
a{color:inherit;text-decoration:none}}
"""

_JS = """
(function () {
  "use strict";
  document.documentElement.className += " js";
  document.querySelectorAll("pre.curl").forEach(function (pre) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    var flash = function (text) {
      button.textContent = text;
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    };
    var select = function () {
      var range = document.createRange();
      range.selectNodeContents(pre);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      flash("Selected");
    };
    button.addEventListener("click", function () {
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(pre.textContent).then(function () { flash("Copied"); }, select);
      } else {
        select();
      }
    });
    pre.parentNode.appendChild(button);
  });
  var reveal = function (pre) {
    var mark = pre.querySelector(".hl");
    if (mark) { pre.scrollTop = Math.max(0, mark.offsetTop - 48); }
  };
  document.querySelectorAll("details.ev").forEach(function (details) {
    var pre = details.querySelector("pre.sse");
    if (!pre) { return; }
    if (details.open) { reveal(pre); }
    details.addEventListener("toggle", function () { if (details.open) { reveal(pre); } });
  });
  var closed = [];
  window.addEventListener("beforeprint", function () {
    closed = Array.prototype.filter.call(document.querySelectorAll("details"), function (d) { return !d.open; });
    closed.forEach(function (d) { d.open = true; });
  });
  window.addEventListener("afterprint", function () {
    closed.forEach(function (d) { d.open = false; });
    closed = [];
  });
})();
"""


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src '{_sha256(_CSS)}'; script-src '{_sha256(_JS)}'; "
    "img-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'"
)

# Evidence is clipped where it is collected; this cap only keeps a pathological report openable.
_MAX_EVIDENCE_CHARS = 200_000
_SHOWN_OCCURRENCES = 3

# Characters that would hide or disguise text: C0/C1 controls, DEL, BOM, zero-width and bidi-override characters,
# and U+FFFD (what undecodable bytes became). Shown as visible marks so evidence cannot look cleaner than it was.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufffd]")
_NAMES = {"\ufeff": "BOM", "\ufffd": "\ufffd", "\x1b": "ESC"}
_LINE = re.compile(r"(\r\n|\r|\n)")
_CLIP_NOTE = re.compile(r"… \(\d+ more characters\)")
# How checks name an event: "event 5", "event #5", "event_index=5", "events[5]" (0-based, as the grammar counts).
_EVENT_REF = re.compile(r"\bevent(?:[ _]?index)?\s*[#=:]?\s*(\d+)\b|\bevents\[(\d+)\]", re.IGNORECASE)

_OUTCOME_BADGE = {
    "failed": ("failed", "b-red"),
    "error": ("error", "b-purple"),
    "passed": ("passed", "b-green"),
    "skipped": ("skipped", ""),
    "unsupported": ("unsupported", "b-blue"),
}
_SEVERITY_BADGE = {"must": "b-red", "should": "b-amber", "info": "b-blue"}
_CAPABILITY_BADGE = {"supported": "b-green", "unsupported": "b-blue", "broken": "b-red", "untested": "b-dashed"}
_SEGMENTS = (
    ("failed", "Failed", "#b42318"),
    ("error", "Errors", "#6941c6"),
    ("accepted", "Accepted", "#98a2b3"),
    ("unsupported", "Unsupported", "#2e90fa"),
    ("skipped", "Skipped", "#d0d5dd"),
    ("passed", "Passed", "#079455"),
)


def _attr(value: object) -> str:
    return html.escape(str(value), quote=True)


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    label = _NAMES.get(char) or (chr(0x2400 + code) if code < 0x20 else f"U+{code:04X}")
    return f'<span class="cc" title="invisible character U+{code:04X}">{html.escape(label)}</span>'


def _text(value: object) -> str:
    """Escaped text with hidden characters made visible: the only way gateway-sourced text enters the page."""
    return _INVISIBLE.sub(_visible, html.escape(str(value), quote=True))


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"


def _badge(label: str, cls: str = "") -> str:
    return f'<span class="badge {cls}">{_text(label)}</span>'


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _when(started_at: str) -> str:
    try:
        moment = datetime.fromisoformat(started_at)
    except ValueError:
        return started_at
    if moment.tzinfo is None:
        return f"{moment:%Y-%m-%d %H:%M:%S}"
    offset = moment.utcoffset()
    zone = "UTC" if offset is not None and not offset else moment.strftime("UTC%z")
    return f"{moment:%Y-%m-%d %H:%M:%S} {zone}"


def mentioned_events(message: str) -> frozenset[int]:
    """Event indices a finding's message points at ("event 5", "events[5]"), to highlight in the evidence."""
    return frozenset(int(a or b) for a, b in _EVENT_REF.findall(message))


def _frames(content: str) -> list[list[tuple[str, str]]]:
    """Lines (text, terminator) grouped into SSE frames; blank lines are frames of their own."""
    parts = _LINE.split(content)
    lines = [(parts[i], parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]
    if lines and lines[-1] == ("", ""):
        lines.pop()
    frames: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in lines:
        if line[0] == "":
            if current:
                frames.append(current)
                current = []
            frames.append([line])
        else:
            current.append(line)
    if current:
        frames.append(current)
    return frames


def _events_block(content: str, highlight: frozenset[int]) -> tuple[str, int, list[int]]:
    """Raw SSE text as numbered frames ("#3" in the gutter = event index 3), the mentioned events highlighted."""
    rows: list[str] = []
    index = 0
    hits: list[int] = []
    for frame in _frames(content):
        text0 = frame[0][0]
        if text0 == "":
            rows.append(_row("", "", frame[0][1]))
            continue
        if len(frame) == 1 and _CLIP_NOTE.fullmatch(text0):
            rows.append(f'<span class="ln note" data-g="">{_text(text0)}</span>')
            continue
        # Comment-only frames are not events (the decoder does not count them), so they get no index.
        is_event = any(not text.startswith(":") for text, _ in frame)
        marked = is_event and index in highlight
        if marked:
            hits.append(index)
        for position, (text, eol) in enumerate(frame):
            gutter = ""
            if position == 0:
                gutter = (f"▶ #{index}" if marked else f"#{index}") if is_event else ":"
            rows.append(_row(text, gutter, eol, marked))
        if is_event:
            index += 1
    return "".join(rows), len(rows), hits


def _row(text: str, gutter: str, eol: str, marked: bool = False) -> str:
    cls = "ln hl" if marked else "ln"
    end = '<span class="eol" title="carriage return">␍</span>' if "\r" in eol else ""
    return f'<span class="{cls}" data-g="{_attr(gutter)}">{_text(text)}{end}</span>'


def _evidence(evidence: Evidence, highlight: frozenset[int], *, open_: bool) -> str:
    content = evidence.content
    clipped = ""
    if len(content) > _MAX_EVIDENCE_CHARS:
        clipped = f"… ({len(content) - _MAX_EVIDENCE_CHARS} more characters, see conformance.json)"
        content = content[:_MAX_EVIDENCE_CHARS]
    note = ""
    if evidence.kind == "events":
        body, lines, hits = _events_block(content, highlight)
        if clipped:
            body += f'<span class="ln note" data-g="">{_text(clipped)}</span>'
        pre = f'<pre class="ev sse">{body}</pre>'
        if hits:
            note = ' · <span class="hlnote">' + ", ".join(f"#{i}" for i in hits) + " highlighted</span>"
    else:
        lines = content.count("\n") + 1
        pre = f'<pre class="ev {_attr(evidence.kind)}">{_text(content + (chr(10) + clipped if clipped else ""))}</pre>'
    is_open = " open" if open_ else ""
    kind = "" if evidence.kind == evidence.title else f" · {_text(evidence.kind)}"
    return (
        f'<details class="ev"{is_open}><summary><span class="t">{_text(evidence.title)}</span>{kind} · '
        f"{_plural(lines, 'line')}{note}</summary>{pre}</details>"
    )


def _occurrence(result: CheckResult, lead_severity: str, *, first: bool, live: bool) -> str:
    parts = ['<div class="occ">']
    parts.append(f'<div class="probe">probe <code>{_text(result.probe or "(none)")}</code>')
    if result.severity != lead_severity:
        parts.append(" " + _badge(result.severity, _SEVERITY_BADGE.get(result.severity, "")))
    if result.outcome != "failed":
        label, cls = _OUTCOME_BADGE.get(result.outcome, (result.outcome, ""))
        parts.append(" " + _badge(label, cls))
    parts.append("</div>")
    parts.append(f'<p class="message">{_text(result.message or "(no message)")}</p>')
    highlight = mentioned_events(result.message)
    for evidence in result.evidence:
        parts.append(_evidence(evidence, highlight, open_=first and live and result.severity == "must"))
    if result.reproduce:
        parts.append('<div class="repro"><div class="repro-label">Reproduce</div>')
        parts.append(f'<pre class="curl">{_text(result.reproduce)}</pre></div>')
    parts.append("</div>")
    return "".join(parts)


def _finding(group: FindingGroup, anchor: str, *, live: bool, baseline: Baseline | None) -> str:
    lead = group.lead
    severity = lead.severity
    cls = f"finding sev-{severity if severity in _SEVERITY_BADGE else 'must'}" + ("" if live else " accepted")
    head = [_badge(severity, _SEVERITY_BADGE.get(severity, ""))]
    if live and any(r.gating for r in group.results):
        head.append(_badge("gating", "b-solid"))
    if not live:
        head.append(_badge("accepted", ""))
    head.append(f"<h4><code>{_text(group.check)}</code></h4>")
    where = section_label(lead.section)
    if where:
        head.append(f'<span class="where">{_text(where)}</span>')
    parts = [f'<article class="{cls}" id="{anchor}"><div class="fhead">{"".join(head)}</div>']
    parts.append(f'<p class="rule"><b>Rule:</b> {_text(lead.rule)}</p>')
    if not live and baseline is not None:
        reasons = {e.reason for r in group.results if (e := baseline.entry_for(r)) is not None and e.reason}
        for reason in sorted(reasons):
            parts.append(f'<p class="reason"><b>Accepted because:</b> {_text(reason)}</p>')
    shown, hidden = group.results[:_SHOWN_OCCURRENCES], group.results[_SHOWN_OCCURRENCES:]
    if len(group.results) > 1:
        parts.append(f'<p class="rule">{_plural(len(group.results), "probe")} affected</p>')
    parts += [_occurrence(r, severity, first=i == 0, live=live) for i, r in enumerate(shown)]
    if hidden:
        parts.append(f'<details class="more"><summary>{_plural(len(hidden), "more probe")}</summary>')
        parts += [_occurrence(r, severity, first=False, live=live) for r in hidden]
        parts.append("</details>")
    parts.append("</article>")
    return "".join(parts)


def _verdict(report: RunReport, live: Sequence[CheckResult], accepted: int, anchors: dict[tuple[str, str], str]) -> str:
    gating = report.gating_failures
    if not report.results:
        cls, mark = "empty", "?"
    elif report.verdict == "non-conformant":
        cls, mark = "fail", "✗"
    else:
        cls, mark = "pass", "✓"
    title = "Non-conformant" if report.verdict == "non-conformant" else "Conformant"
    if gating:
        sub = f"<strong>{_plural(len(gating), 'gating failure')}</strong>: must-level rules broken"
        sub += " and not accepted by the baseline." if report.baseline_path or accepted else "."
    elif not report.results:
        sub = "<strong>No checks ran</strong>, so nothing about this gateway was verified."
    else:
        sub = "<strong>No gating failures</strong>: every must-level rule that was checked holds."
    also = []
    by_severity = {s: sum(r.severity == s for r in live) for s in ("must", "should", "info")}
    if by_severity["should"] or by_severity["info"]:
        also.append(
            f"{by_severity['should']} should-level and {by_severity['info']} info "
            f"{'finding' if by_severity['should'] + by_severity['info'] == 1 else 'findings'} to review"
        )
    if accepted:
        also.append(f"{_plural(accepted, 'failure')} accepted by the baseline")
    parts = [f'<section class="verdict {cls}" aria-label="verdict"><div class="mark">{mark}</div><div>']
    parts.append(f'<h1 id="verdict">{title}</h1><p>{sub}</p>')
    if also:
        sentence = "; ".join(also)
        parts.append(f'<p class="also">{_text(sentence[:1].upper() + sentence[1:])}.</p>')
    if gating:
        seen: dict[tuple[str, str], None] = dict.fromkeys((r.area, r.check) for r in gating)
        links = "".join(f'<li><a href="#{anchors[key]}">{_text(key[1])}</a></li>' for key in seen)
        parts.append(f'<ul class="gating-list" aria-label="gating failures">{links}</ul>')
    parts.append("</div></section>")
    return "".join(parts)


def _meta(report: RunReport) -> str:
    items = [
        ("Gateway", f"<code>{_text(report.gateway_url)}</code>", True),
        ("Model", f"<code>{_text(report.model)}</code>", False),
        ("Started", _text(_when(report.started_at)), False),
        ("Duration", _text(_duration(report.duration_s)), False),
        ("Requests sent", f"{report.requests_sent:,}", False),
        ("Tool version", _text(report.tool_version), False),
    ]
    if report.required:
        items.append(("Required features", _text(", ".join(report.required)), False))
    if report.baseline_path:
        items.append(("Baseline", f"<code>{_text(report.baseline_path)}</code>", True))
    wide_class = ' class="wide"'
    cells = "".join(
        f"<div{wide_class if wide else ''}><dt>{label}</dt><dd>{value}</dd></div>" for label, value, wide in items
    )
    return f'<dl class="meta">{cells}</dl>'


def _partition(results: Iterable[CheckResult]) -> dict[str, int]:
    """Counts that add up to the total: accepted failures are counted apart from live ones."""
    tally = {key: 0 for key, _, _ in _SEGMENTS}
    for result in results:
        key = "accepted" if result.baselined and result.outcome in ("failed", "error") else result.outcome
        tally[key] = tally.get(key, 0) + 1
    return tally


def _overview(report: RunReport) -> str:
    tally = _partition(report.results)
    total = len(report.results)
    cards = "".join(
        f'<div class="stat {key}{" zero" if not tally[key] else ""}"><b>{tally[key]:,}</b><span>{label}</span></div>'
        for key, label, _ in _SEGMENTS
    )
    bar = ""
    if total:
        x = 0.0
        rects = []
        for key, label, colour in _SEGMENTS:
            if tally[key]:
                width = 1000 * tally[key] / total
                rects.append(
                    f'<rect x="{x:.2f}" y="0" width="{width:.2f}" height="12" fill="{colour}">'
                    f"<title>{label}: {tally[key]}</title></rect>"
                )
                x += width
        summary = ", ".join(f"{tally[k]} {label.lower()}" for k, label, _ in _SEGMENTS if tally[k])
        bar = (
            f'<svg class="bar" viewBox="0 0 1000 12" preserveAspectRatio="none" role="img" '
            f'aria-label="{_attr(summary)}">{"".join(rects)}</svg>'
        )
    checks = len({r.check for r in report.results})
    probes = len({r.probe for r in report.results})
    lede = (
        f"{_plural(total, 'result')}: {_plural(checks, 'check')} applied to {_plural(probes, 'probe')}. "
        "Counts add up to the total; accepted failures are counted apart from new ones."
    )
    return (
        f'<section class="block" id="overview"><h2>Overview</h2><p class="lede">{lede}</p>'
        f'<div class="stats">{cards}</div>{bar}{_severity_table(report)}</section>'
    )


def _severity_table(report: RunReport) -> str:
    head = "".join(f'<th class="num">{label}</th>' for _, label, _ in _SEGMENTS)
    rows = []
    for severity in ("must", "should", "info"):
        tally = _partition(r for r in report.results if r.severity == severity)
        cells = []
        for key, _, _ in _SEGMENTS:
            value = tally[key]
            hot = " hot" if value and key in ("failed", "error") and severity == "must" else ""
            cells.append(f'<td class="num{hot}{" zero" if not value else ""}">{value:,}</td>')
        rows.append(
            f"<tr><td>{_badge(severity, _SEVERITY_BADGE[severity])}</td>{''.join(cells)}"
            f'<td class="num">{sum(tally.values()):,}</td></tr>'
        )
    return (
        f'<div class="scroll"><table class="sev"><thead><tr><th>Severity</th>{head}<th class="num">Total</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _capabilities(report: RunReport) -> str:
    known = {c.feature: c for c in report.capabilities}
    order = [f for f in FEATURES if f in known] + [f for f in known if f not in FEATURES]
    rows = []
    for feature in order:
        cap = known[feature]
        required = '<span class="tag">required</span>' if feature in report.required else ""
        rows.append(
            f"<tr><td><code>{_text(feature)}</code>{required}</td>"
            f"<td>{_badge(cap.status, _CAPABILITY_BADGE.get(cap.status, ''))}</td>"
            f'<td class="muted{"" if cap.note else " none"}">{_text(cap.note) or "—"}</td></tr>'
        )
    return (
        '<section class="block" id="capabilities"><h2>Capabilities</h2>'
        '<p class="lede">What the gateway offers, judged from the checks that ran. '
        "Unsupported means it declined cleanly with a 4xx; broken means must-level findings.</p>"
        '<div class="scroll"><table class="cap"><thead><tr><th>Feature</th><th>Status</th><th>Note</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _findings(
    report: RunReport, areas: Sequence[tuple[str, Sequence[FindingGroup]]], anchors: dict[tuple[str, str], str]
) -> tuple[str, int]:
    count = sum(len(groups) for _, groups in areas)
    parts = [
        f'<section class="block" id="findings"><h2>Findings<span class="count">{_plural(count, "check")}</span></h2>'
    ]
    if not areas:
        parts.append(
            '<p class="all-clear">No failures: every check that ran passed, was skipped, or was accepted.</p>'
            if report.results
            else '<p class="empty-note">No checks ran.</p>'
        )
    else:
        parts.append(
            '<p class="lede">Grouped by area; must before should before info. '
            "In event evidence the gutter shows each event's index (#0 is the first event); "
            "events a finding names are highlighted.</p>"
        )
    for area, groups in areas:
        parts.append(
            f'<h3 class="area">{_text(area)} <span class="count">· {_plural(len(groups), "check")}</span></h3>'
        )
        parts += [_finding(g, anchors[(g.area, g.check)], live=True, baseline=None) for g in groups]
    parts.append("</section>")
    return "".join(parts), count


def _accepted(report: RunReport, baseline: Baseline | None) -> tuple[str, int]:
    areas = group_failures(report.results, baselined=True)
    count = sum(len(groups) for _, groups in areas)
    stale: tuple[BaselineEntry, ...] = baseline.stale(report.results) if baseline else ()
    unmatched: tuple[BaselineEntry, ...] = baseline.unmatched(report.results) if baseline else ()
    if not areas and not stale and not unmatched:
        return "", 0
    parts = [
        '<section class="block" id="accepted">'
        f'<h2>Accepted by the baseline<span class="count">{_plural(count, "check")}</span></h2>'
        '<p class="lede">Known deviations listed in the baseline. They still fail their rules, '
        "but they do not fail the gate.</p>"
    ]
    groups_in_order = [g for _, groups in areas for g in groups]
    for area, groups in areas:
        parts.append(f'<h3 class="area">{_text(area)}</h3>')
        parts += [_finding(g, f"accepted-{groups_in_order.index(g)}", live=False, baseline=baseline) for g in groups]
    for entries, what in (
        (stale, "Stale baseline entries: these checks ran and no longer fail; remove them to tighten the gate."),
        (
            unmatched,
            "Unmatched baseline entries: no check in this run has these ids "
            "(a typo, a renamed check, or a check this run did not select).",
        ),
    ):
        if entries:
            items = "".join(
                f"<li><code>{_text(e.id)}</code>"
                + (f' <span class="muted">{_text(e.reason)}</span>' if e.reason else "")
                + "</li>"
                for e in entries
            )
            parts.append(f"<p><b>{what}</b></p>")
            parts.append(f'<ul class="plain">{items}</ul>')
    parts.append("</section>")
    return "".join(parts), count


def _rest(report: RunReport) -> tuple[str, int, int]:
    passed, not_run = [], []
    for row in sorted(check_rows(report.results), key=lambda r: (r.worst.area, r.check)):
        outcome = row.worst.outcome
        if outcome == "passed":
            n = sum(r.outcome == "passed" for r in row.results)
            passed.append(
                f"<li><code>{_text(row.check)}</code> "
                f'<span class="muted">{_text(row.worst.area)} · {_plural(n, "probe")}</span></li>'
            )
        elif outcome in ("skipped", "unsupported"):
            label, cls = _OUTCOME_BADGE[outcome]
            why = headline(row.worst.message)
            not_run.append(
                f"<li>{_badge(label, cls)} <code>{_text(row.check)}</code> "
                f'<span class="muted">{_text(row.worst.area)}{" · " + _text(why) if why else ""}</span></li>'
            )
    parts = []
    if passed:
        parts.append(
            f'<section class="block" id="passed"><h2>Passed<span class="count">{_plural(len(passed), "check")}'
            f'</span></h2><details class="list"><summary>Show the {_plural(len(passed), "passed check")}</summary>'
            f'<ul class="checks">{"".join(passed)}</ul></details></section>'
        )
    if not_run:
        parts.append(
            f'<section class="block" id="not-run"><h2>Not applicable or unsupported<span class="count">'
            f'{_plural(len(not_run), "check")}</span></h2><details class="list"><summary>Show the '
            f"{_plural(len(not_run), 'check')} that did not apply or that the gateway declined</summary>"
            f'<ul class="checks">{"".join(not_run)}</ul></details></section>'
        )
    return "".join(parts), len(passed), len(not_run)


def render_html(report: RunReport, *, baseline: Baseline | None = None) -> str:
    """The scorecard as one self-contained HTML page (inline CSS and JS, no external resources)."""
    live = [r for r in report.results if r.outcome in ("failed", "error") and not r.baselined]
    accepted_results = sum(r.outcome in ("failed", "error") and r.baselined for r in report.results)
    live_areas = group_failures(report.results, baselined=False)
    # Anchors by position, not by check id: ids come from the report and need not be valid or unique HTML ids.
    anchors = {(g.area, g.check): f"finding-{n}" for n, g in enumerate(g for _, gs in live_areas for g in gs)}
    findings, n_findings = _findings(report, live_areas, anchors)
    accepted, n_accepted = _accepted(report, baseline)
    rest, n_passed, n_not_run = _rest(report)
    toc: list[tuple[str, str, int | None, bool]] = [
        ("#overview", "Overview", None, False),
        ("#capabilities", "Capabilities", None, False),
    ]
    toc.append(("#findings", "Findings", n_findings, bool(report.gating_failures)))
    if accepted:
        toc.append(("#accepted", "Accepted", n_accepted, False))
    if n_passed:
        toc.append(("#passed", "Passed", n_passed, False))
    if n_not_run:
        toc.append(("#not-run", "Not applicable", n_not_run, False))
    hot_class = ' class="hot"'
    nav = "".join(
        f'<a href="{href}"{hot_class if hot else ""}>{label}{"" if count is None else f"<b>{count}</b>"}</a>'
        for href, label, count, hot in toc
    )
    title = f"{'Non-conformant' if report.verdict == 'non-conformant' else 'Conformant'} · {report.gateway_url}"
    return "".join(
        [
            "<!DOCTYPE html>\n",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta http-equiv="Content-Security-Policy" content="{_attr(CONTENT_SECURITY_POLICY)}">',
            '<meta name="color-scheme" content="light"><meta name="referrer" content="no-referrer">',
            f"<title>{_text(title)} · gateway conformance</title>",
            f"<style>{_CSS}</style></head>",
            '<body><div class="wrap"><p class="kicker">Gateway conformance report</p>',
            _verdict(report, live, accepted_results, anchors),
            _meta(report),
            f'<nav class="toc" aria-label="sections">{nav}</nav>',
            "<main>",
            _overview(report),
            _capabilities(report),
            findings,
            accepted,
            rest,
            "</main>",
            f"<footer>Generated by gateway-conformance {_text(report.tool_version)}. "
            "The same data is in <code>conformance.json</code> (format gateway-conformance/report@1) "
            "and <code>junit.xml</code> next to this file.</footer>",
            f"</div><script>{_JS}</script></body></html>\n",
        ]
    )
