"""Checks that run in the parent before a job does any work: a mistake costs one line, not a sweep."""

from __future__ import annotations

from typing import Any

from harness.config import validate


def preflight(cfg: Any) -> None:
    """Raise ConfigError (field, value given, what is allowed) for input that cannot work."""
    validate(cfg)
