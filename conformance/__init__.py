"""Conformance suite, load tests and reference gateway for Anthropic-compatible gateways."""

from __future__ import annotations

__version__ = "0.1.0"
