"""One-line errors: a configuration mistake, a usage mistake, the checks that raise them, "did you mean".

A mistake on the command line is one line on stderr and exit status 2, never a traceback; each
subcommand prints the message in its own words, but all of them raise and catch `UsageError`.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A user mistake in configuration; its message is the one line the CLI prints."""


class UsageError(ValueError):
    """A bad command line, or a name not in the store: shown as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def did_you_mean(value: Any, allowed: Iterable[Any]) -> str:
    """ " Did you mean 'x'?" for the closest allowed value (difflib), or "" when none is close."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


RUN_NAME = re.compile(r"[\w.-]+")


def check_choice(field_name: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{field_name}: {value!r} is not allowed; choose one of {', '.join(map(str, allowed))}."
            + did_you_mean(value, allowed)
        )


def check_positive_int(field_name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{field_name}: {value!r} is not allowed; it must be a whole number > 0.")


def check_name(field_name: str, value: Any, what: str) -> None:
    """Names that become folder or file names: no path separators, not hidden, not empty."""
    if not isinstance(value, str) or not RUN_NAME.fullmatch(value) or value.startswith("."):
        raise ConfigError(
            f"{field_name}: {value!r} is not allowed; {what} names a folder, so use letters, digits, '_', '-' and '.' "
            "(not first), e.g. 2024-06-icelake."
        )


def check_non_negative(field_name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{field_name}: {value!r} is not allowed; it must be a number >= 0.")
