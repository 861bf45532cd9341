"""Named checks over exchanges; importing this package registers all of them."""

from __future__ import annotations

from conformance.checks.context import CheckContext
from conformance.checks.registry import CHECKS, Check, check, load_all, select_checks

__all__ = ["CHECKS", "Check", "CheckContext", "check", "load_all", "select_checks"]
