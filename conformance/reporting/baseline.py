"""The baseline: known, accepted deviations, so a team can gate releases on "no new failures" from day one."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from conformance.errors import HarnessError
from conformance.reporting.files import write_text_atomic
from conformance.reporting.findings import headline, is_failure
from conformance.results import CheckResult, RunReport

BASELINE_FORMAT = "gateway-conformance/baseline@1"
BASELINE_SCHEMA = "report/baseline"

# A check id (no "@", no whitespace), optionally "@" and a probe id (no surrounding whitespace, no line breaks).
_ENTRY_ID = re.compile(r"[^@\s]+(?:@\S(?:[^\r\n]*\S)?)?")
_TOP_KEYS = ("format", "gateway", "created_at", "accepted")
_ENTRY_KEYS = ("id", "reason")
_EXAMPLE = (
    '{"format": "' + BASELINE_FORMAT + '", "gateway": "https://gateway.example", "created_at": "2026-01-31T12:00:00Z", '
    '"accepted": [{"id": "<check id>", "reason": "why it is accepted"}, {"id": "<check id>@<probe id>"}]}'
)
_MAX_PROBLEMS = 10
_REASON_CHARS = 200


@dataclass(frozen=True, slots=True)
class BaselineEntry:
    """One accepted deviation: a check id, or "check_id@probe" for one probe only, and why it is accepted."""

    id: str
    reason: str = ""

    @property
    def check(self) -> str:
        """The check id part of the entry."""
        return self.id.partition("@")[0]

    @property
    def probe(self) -> str | None:
        """The probe the entry is limited to, or None when it covers every probe."""
        _, at, probe = self.id.partition("@")
        return probe if at else None

    def matches(self, result: CheckResult) -> bool:
        """Whether this entry covers the result's check (and probe, when the entry names one)."""
        return result.check == self.check and (self.probe is None or result.probe == self.probe)

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "reason": self.reason} if self.reason else {"id": self.id}


@dataclass(frozen=True, slots=True)
class Baseline:
    """The accepted deviations of one gateway: failures they cover do not fail the gate."""

    accepted: tuple[BaselineEntry, ...] = ()
    gateway: str | None = None
    created_at: str | None = None

    def entry_for(self, result: CheckResult) -> BaselineEntry | None:
        """The entry covering this result, a probe-specific one before a check-wide one; None if none does."""
        matching = [entry for entry in self.accepted if entry.matches(result)]
        matching.sort(key=lambda entry: entry.probe is None)
        return matching[0] if matching else None

    def apply(self, results: Iterable[CheckResult]) -> tuple[CheckResult, ...]:
        """The results with every covered failure or error marked baselined; everything else unchanged."""
        return tuple(
            replace(r, baselined=True) if is_failure(r) and not r.baselined and self.entry_for(r) else r
            for r in results
        )

    def stale(self, results: Iterable[CheckResult]) -> tuple[BaselineEntry, ...]:
        """Entries whose check ran and no longer fails: remove them to tighten the gate."""
        found = tuple(results)
        stale = []
        for entry in self.accepted:
            covered = [r for r in found if entry.matches(r)]
            # A check that was only skipped this run says nothing either way, so it is not called stale.
            judged = any(r.outcome in ("passed", "unsupported") for r in covered)
            if judged and not any(is_failure(r) for r in covered):
                stale.append(entry)
        return tuple(stale)

    def unmatched(self, results: Iterable[CheckResult]) -> tuple[BaselineEntry, ...]:
        """Entries that match no result at all: a typo, a renamed check, or a check this run did not select."""
        found = tuple(results)
        return tuple(entry for entry in self.accepted if not any(entry.matches(r) for r in found))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": BASELINE_FORMAT,
            "gateway": self.gateway,
            "created_at": self.created_at,
            "accepted": [entry.to_json() for entry in self.accepted],
        }

    @classmethod
    def from_json(cls, data: object, *, source: str = "baseline") -> Baseline:
        """A baseline from parsed JSON; HarnessError listing every problem and the valid shape."""
        problems: list[str] = []
        if not isinstance(data, dict):
            _fail(source, [f"the top level is {_json_type(data)}, not an object"])
        unknown = sorted(set(data) - set(_TOP_KEYS))
        if unknown:
            problems.append(f"unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(_TOP_KEYS)}")
        if data.get("format") != BASELINE_FORMAT:
            problems.append(f'"format" is {json.dumps(data.get("format"))}, expected "{BASELINE_FORMAT}"')
        for key in ("gateway", "created_at"):
            if data.get(key) is not None and not isinstance(data[key], str):
                problems.append(f'"{key}" is {_json_type(data[key])}; it must be a string or null')
        raw_entries = data.get("accepted")
        entries: list[BaselineEntry] = []
        if not isinstance(raw_entries, list):
            what = "missing" if "accepted" not in data else _json_type(raw_entries)
            problems.append(f'"accepted" is {what}; it must be a list of {{"id": ..., "reason": ...}} objects')
        else:
            seen: set[str] = set()
            for index, raw in enumerate(raw_entries):
                entry = _entry(raw, f"accepted[{index}]", problems)
                if entry is None:
                    continue
                if entry.id in seen:
                    problems.append(f'accepted[{index}]: "{entry.id}" is listed twice')
                seen.add(entry.id)
                entries.append(entry)
        if problems:
            _fail(source, problems)
        return cls(accepted=tuple(entries), gateway=data.get("gateway"), created_at=data.get("created_at"))


def _entry(raw: object, where: str, problems: list[str]) -> BaselineEntry | None:
    if not isinstance(raw, dict):
        problems.append(f'{where} is {_json_type(raw)}; it must be an object like {{"id": "<check id>"}}')
        return None
    unknown = sorted(set(raw) - set(_ENTRY_KEYS))
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: id, reason")
    entry_id = raw.get("id")
    reason = raw.get("reason", "")
    ok = True
    if not isinstance(entry_id, str) or not _ENTRY_ID.fullmatch(entry_id):
        shown = "missing" if "id" not in raw else json.dumps(entry_id, ensure_ascii=False)
        problems.append(f'{where}: "id" is {shown}; it must be "<check id>" or "<check id>@<probe id>"')
        ok = False
    if not isinstance(reason, str):
        problems.append(f'{where}: "reason" is {_json_type(reason)}; it must be a string')
        ok = False
    return BaselineEntry(entry_id, reason) if ok and isinstance(entry_id, str) and isinstance(reason, str) else None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _fail(source: str, problems: list[str]) -> NoReturn:
    shown = problems[:_MAX_PROBLEMS]
    more = len(problems) - len(shown)
    lines = [f"invalid baseline {source}:", *(f"  - {p}" for p in shown)]
    if more:
        lines.append(f"  ... and {more} more")
    lines.append(f"a valid baseline looks like: {_EXAMPLE}")
    raise HarnessError("\n".join(lines))


def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    """The baseline in this file; HarnessError saying what is wrong (and what is valid) if it is missing or bad."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise HarnessError(
            f"baseline file not found: {file}. Check the path, or create one that accepts today's failures "
            f"(write_baseline(baseline_from_report(report), path)). Expected content: {_EXAMPLE}"
        ) from None
    except IsADirectoryError:
        raise HarnessError(f"baseline path {file} is a directory; it must be a JSON file") from None
    except UnicodeDecodeError as exc:
        raise HarnessError(f"baseline file {file} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise HarnessError(f"cannot read baseline file {file}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessError(
            f"baseline file {file} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}. "
            f"Expected content: {_EXAMPLE}"
        ) from exc
    return Baseline.from_json(data, source=str(file))


def baseline_from_report(
    report: RunReport, *, created_at: str | None = None, previous: Baseline | None = None
) -> Baseline:
    """A baseline accepting every failure of this run ("accept today's state"), keeping reasons from `previous`."""
    by_check: dict[str, list[CheckResult]] = {}
    for result in report.results:
        by_check.setdefault(result.check, []).append(result)
    old_reasons: Mapping[str, str] = {e.id: e.reason for e in previous.accepted} if previous else {}
    entries = []
    for check, results in by_check.items():
        failing = [r for r in results if is_failure(r)]
        if not failing:
            continue
        # A check that failed everywhere it ran is accepted as a whole; one that failed on some probes only is
        # accepted probe by probe, so the same check breaking on another probe still fails the gate.
        if len(failing) == len(results):
            targets = [(check, failing[0])]
        else:
            targets = [(f"{check}@{r.probe}", r) for r in failing]
        for entry_id, result in targets:
            reason = old_reasons.get(entry_id) or _observed(result)
            entries.append(BaselineEntry(entry_id, reason))
    entries.sort(key=lambda entry: entry.id)
    stamp = created_at or datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return Baseline(accepted=tuple(entries), gateway=report.gateway_url, created_at=stamp)


def _observed(result: CheckResult) -> str:
    text = f"{result.severity}: {headline(result.message) or result.outcome}"
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def write_baseline(baseline: Baseline, path: str | os.PathLike[str]) -> Path:
    """Write the baseline as pretty JSON (atomically, so CI never sees half a file); returns the path."""
    return write_text_atomic(Path(path), json.dumps(baseline.to_json(), indent=2, ensure_ascii=False) + "\n")
