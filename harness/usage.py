"""What every command line shares: the one-line usage error, a parser that raises it, "did you mean".

A mistake on the command line is one line on stderr and exit status 2, never a traceback; each
subcommand prints the message in its own words, but all of them raise and catch `UsageError`.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable
from typing import Any


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
