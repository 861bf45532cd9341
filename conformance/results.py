"""What a conformance run found: one CheckResult per check applied to a probe, and the run around them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Outcome = Literal["passed", "failed", "skipped", "unsupported", "error"]
Severity = Literal["must", "should", "info"]
CapabilityStatus = Literal["supported", "unsupported", "broken", "untested"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
SEVERITIES: tuple[str, ...] = get_args(Severity)

# The features a gateway may or may not offer; the scorecard's capability matrix has one row each.
FEATURES: tuple[str, ...] = (
    "messages",
    "streaming",
    "tools",
    "thinking",
    "vision",
    "count_tokens",
    "models",
    "openai",
)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Something a person needs to see to believe a finding: events, a body, headers."""

    title: str
    content: str
    kind: Literal["events", "body", "headers", "text"] = "text"

    def to_json(self) -> dict[str, str]:
        return {"title": self.title, "kind": self.kind, "content": self.content}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evidence:
        return cls(title=data["title"], content=data["content"], kind=data.get("kind", "text"))


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check applied to one probe's exchange(s)."""

    check: str
    probe: str
    area: str
    feature: str
    outcome: Outcome
    severity: Severity
    rule: str
    section: str
    message: str = ""
    reproduce: str | None = None
    evidence: tuple[Evidence, ...] = ()
    baselined: bool = False

    @property
    def gating(self) -> bool:
        """True when this result fails the gate: a must-level failure or error not in the baseline."""
        return self.outcome in ("failed", "error") and self.severity == "must" and not self.baselined

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.check,
            "probe": self.probe,
            "area": self.area,
            "feature": self.feature,
            "outcome": self.outcome,
            "severity": self.severity,
            "rule": self.rule,
            "section": self.section,
            "message": self.message,
            "reproduce": self.reproduce,
            "evidence": [e.to_json() for e in self.evidence],
            "baselined": self.baselined,
            "gating": self.gating,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            check=data["id"],
            probe=data["probe"],
            area=data["area"],
            feature=data["feature"],
            outcome=data["outcome"],
            severity=data["severity"],
            rule=data["rule"],
            section=data["section"],
            message=data.get("message", ""),
            reproduce=data.get("reproduce"),
            evidence=tuple(Evidence.from_json(e) for e in data.get("evidence", ())),
            baselined=bool(data.get("baselined", False)),
        )


@dataclass(frozen=True, slots=True)
class Capability:
    """Whether the gateway offers a feature: supported, unsupported (a clean 4xx), broken, or untested."""

    feature: str
    status: CapabilityStatus
    note: str = ""

    def to_json(self) -> dict[str, str]:
        return {"feature": self.feature, "status": self.status, "note": self.note}


def capabilities_from(results: Iterable[CheckResult], required: Iterable[str] = ()) -> tuple[Capability, ...]:
    """The capability matrix derived from the results (never re-judged: only outcomes are read)."""
    by_feature: dict[str, list[CheckResult]] = {}
    for result in results:
        by_feature.setdefault(result.feature, []).append(result)
    required_set = set(required)
    rows = []
    for feature in FEATURES:
        found = by_feature.get(feature, [])
        failed = [r for r in found if r.outcome in ("failed", "error") and r.severity == "must"]
        if not found or all(r.outcome == "skipped" for r in found):
            rows.append(Capability(feature, "untested"))
        elif failed:
            rows.append(Capability(feature, "broken", f"{len(failed)} must-level finding(s)"))
        elif any(r.outcome == "unsupported" for r in found):
            note = "required by --require" if feature in required_set else "answered with a clean 4xx"
            rows.append(Capability(feature, "unsupported", note))
        else:
            rows.append(Capability(feature, "supported"))
    return tuple(rows)


@dataclass(frozen=True, slots=True)
class RunReport:
    """A whole run: where, when, how many requests, every result, and the verdict."""

    gateway_url: str
    model: str
    started_at: str
    duration_s: float
    tool_version: str
    requests_sent: int
    results: tuple[CheckResult, ...]
    required: tuple[str, ...] = ()
    baseline_path: str | None = None
    capabilities: tuple[Capability, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.capabilities:
            object.__setattr__(self, "capabilities", capabilities_from(self.results, self.required))

    @property
    def gating_failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.gating)

    @property
    def verdict(self) -> Literal["conformant", "non-conformant"]:
        return "non-conformant" if self.gating_failures else "conformant"

    def counts(self) -> dict[str, int]:
        """How many results had each outcome."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for result in self.results:
            counts[result.outcome] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "gateway-conformance/report@1",
            "gateway_url": self.gateway_url,
            "model": self.model,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "tool_version": self.tool_version,
            "requests_sent": self.requests_sent,
            "verdict": self.verdict,
            "required": list(self.required),
            "baseline": self.baseline_path,
            "counts": self.counts(),
            "capabilities": [c.to_json() for c in self.capabilities],
            "checks": [r.to_json() for r in self.results],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunReport:
        return cls(
            gateway_url=data["gateway_url"],
            model=data["model"],
            started_at=data["started_at"],
            duration_s=float(data["duration_s"]),
            tool_version=data["tool_version"],
            requests_sent=int(data["requests_sent"]),
            results=tuple(CheckResult.from_json(r) for r in data["checks"]),
            required=tuple(data.get("required", ())),
            baseline_path=data.get("baseline"),
        )
