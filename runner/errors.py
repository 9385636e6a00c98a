"""The one error type a user ever sees, and the source locations it points at."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable

# A KeyboardInterrupt raised for SIGTERM carries this text, so the command line can exit 143 (not Ctrl-C's 130).
SIGTERM_MESSAGE = "SIGTERM"


class InterruptedWhenComplete(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (its text says which) that came once the run was complete: it ended FINISHED, nothing lost."""


@dataclass(frozen=True)
class Location:
    """A place in a YAML file (1-based line and column), or a pseudo-file such as `--set`."""

    file: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


class XrunError(Exception):
    """A problem with the user's input or environment: printed as one line, exit code 2, no traceback.

    Formatted as `FILE:LINE:COL: path.to.key: what is wrong; what to do`.
    """

    exit_code = 2

    def __init__(self, message: str, *, where: Location | str | None = None,
                 path: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.path = path
        self.hint = hint
        self.others: list[XrunError] = []
        super().__init__(self.line())

    @classmethod
    def group(cls, errors: list["XrunError"]) -> "XrunError":
        """One error that reports several problems, one line each, the first one first."""
        first = errors[0]
        first.others = list(errors[1:])
        return first

    def line(self) -> str:
        parts = [str(p) for p in (self.where, self.path) if p]
        text = self.message if not self.hint else f"{self.message}; {self.hint}"
        return ": ".join(parts + [text])

    def format(self) -> str:
        return "\n".join([self.line()] + [e.line() for e in self.others])

    def __str__(self) -> str:
        return self.format()


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a near-miss name, case-insensitively, or None."""
    choices = list(choices)
    by_lower = {c.lower(): c for c in choices}
    if word.lower() in by_lower:
        return f"did you mean '{by_lower[word.lower()]}'?"
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"did you mean '{by_lower[close[0]]}'?" if close else None
