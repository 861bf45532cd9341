"""The check registry: small named functions, each with a severity, an area and the rule it enforces."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conformance.errors import HarnessError
from conformance.results import SEVERITIES, Severity

if TYPE_CHECKING:
    from conformance.checks.context import CheckContext

CheckFunction = Callable[["CheckContext"], None]


@dataclass(frozen=True, slots=True)
class Check:
    """A registered check: its id is the function's name, its rule the docstring's first line."""

    id: str
    severity: Severity
    area: str
    section: str
    rule: str
    func: CheckFunction


CHECKS: dict[str, Check] = {}


def check(*, severity: Severity, area: str, section: str) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check function under its own name."""
    if severity not in SEVERITIES:
        raise HarnessError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")

    def register(func: CheckFunction) -> CheckFunction:
        doc = (func.__doc__ or "").strip().splitlines()
        if not doc:
            raise HarnessError(f"check {func.__name__} needs a one-line docstring stating its rule")
        if func.__name__ in CHECKS:
            raise HarnessError(f"check {func.__name__} is registered twice")
        CHECKS[func.__name__] = Check(func.__name__, severity, area, section, doc[0], func)
        return func

    return register


def select_checks(include: Iterable[str] = (), exclude: Iterable[str] = ()) -> frozenset[str]:
    """Check ids to run; names may be check ids or areas. Unknown names are a usage error listing what is valid."""
    load_all()
    include, exclude = list(include), list(exclude)
    areas = {c.area for c in CHECKS.values()}
    for name in [*include, *exclude]:
        if name not in CHECKS and name not in areas:
            valid = ", ".join(sorted(areas)) + "; or a check id (see `python -m conformance checks`)"
            raise HarnessError(f"unknown check or area {name!r}; valid areas: {valid}")

    def matches(c: Check, names: list[str]) -> bool:
        return c.id in names or c.area in names

    chosen = {c.id for c in CHECKS.values() if not include or matches(c, include)}
    return frozenset(cid for cid in chosen if not matches(CHECKS[cid], exclude))


def load_all() -> None:
    """Import every check module so that their checks are registered."""
    from conformance.checks import (  # noqa: F401
        compat,
        errors,
        messages,
        models,
        openai,
        propagation,
        properties,
        ratelimit,
        semantics,
        streaming,
        transport,
    )
