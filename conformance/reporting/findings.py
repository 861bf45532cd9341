"""Results the way a reader wants them: one row per check id, worst outcome first, must before should before info."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from conformance.results import CheckResult

FAILING: tuple[str, ...] = ("failed", "error")
SEVERITY_RANK: dict[str, int] = {"must": 0, "should": 1, "info": 2}

# Results that did not fail, least interesting last: "skipped" after "passed", because a check that passed on some
# probes and did not apply to others passed.
_QUIET_RANK: dict[str, int] = {"unsupported": 2, "passed": 3, "skipped": 4}


def is_failure(result: CheckResult) -> bool:
    """True for a failed or errored result, baselined or not."""
    return result.outcome in FAILING


def importance(result: CheckResult) -> tuple[int, int, int]:
    """A sort key, most important first: live failures (must, should, info), accepted ones, then the rest."""
    if is_failure(result):
        # "failed" (the gateway broke a rule) before "error" (a check crashed and could not judge).
        severity = SEVERITY_RANK.get(result.severity, len(SEVERITY_RANK))
        return (1 if result.baselined else 0, severity, 0 if result.outcome == "failed" else 1)
    return (_QUIET_RANK.get(result.outcome, len(_QUIET_RANK) + 2), 0, 0)


def headline(text: str) -> str:
    """The first non-blank line of a message, for places that show one line."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def section_label(section: str) -> str:
    """How a rule's source is cited: "3.2" -> "protocol.md §3.2"; an empty section stays empty."""
    text = section.strip()
    if not text or text.startswith("protocol.md"):
        return text
    return f"protocol.md §{text.lstrip('§').strip()}"


@dataclass(frozen=True, slots=True)
class CheckRow:
    """Every result of one check id, and the worst of them, which speaks for the row."""

    check: str
    results: tuple[CheckResult, ...]

    @property
    def worst(self) -> CheckResult:
        """The result that decides the row's outcome, severity and message."""
        return min(self.results, key=importance)

    @property
    def failing(self) -> tuple[CheckResult, ...]:
        """The results that failed or errored, baselined or not."""
        return tuple(r for r in self.results if is_failure(r))


def check_rows(results: Iterable[CheckResult]) -> tuple[CheckRow, ...]:
    """The results grouped by check id, in first-seen order."""
    grouped: dict[str, list[CheckResult]] = {}
    for result in results:
        grouped.setdefault(result.check, []).append(result)
    return tuple(CheckRow(check, tuple(found)) for check, found in grouped.items())


@dataclass(frozen=True, slots=True)
class FindingGroup:
    """The failing results of one check id within one area (one card in the report)."""

    area: str
    check: str
    results: tuple[CheckResult, ...]

    @property
    def lead(self) -> CheckResult:
        """The most severe of the group's results: its rule, section and severity head the card."""
        return min(self.results, key=importance)


def group_failures(
    results: Iterable[CheckResult], *, baselined: bool
) -> tuple[tuple[str, tuple[FindingGroup, ...]], ...]:
    """Failing results by area, then by check id: must before should before info, the worst area first."""
    by_key: dict[tuple[str, str], list[CheckResult]] = {}
    for result in results:
        if is_failure(result) and result.baselined == baselined:
            by_key.setdefault((result.area, result.check), []).append(result)
    groups = [
        FindingGroup(area, check, tuple(sorted(found, key=importance))) for (area, check), found in by_key.items()
    ]
    by_area: dict[str, list[FindingGroup]] = {}
    for group in groups:
        by_area.setdefault(group.area, []).append(group)
    ordered = []
    for area, found in by_area.items():
        found.sort(key=lambda g: (importance(g.lead), g.check))
        ordered.append((area, tuple(found)))
    ordered.sort(key=lambda item: (importance(item[1][0].lead), item[0]))
    return tuple(ordered)
