"""The harness's own error root: misconfiguration, never a gateway finding."""

from __future__ import annotations


class HarnessError(Exception):
    """The harness was misconfigured; front-ends turn this into a usage error that lists what is valid."""
