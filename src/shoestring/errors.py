"""The one error type of Shoestring.

Every failure a person can fix is a :class:`ShoestringError` that carries what
failed (with the bad value) and a hint saying how to fix it. The library never
prints or exits; only :mod:`shoestring.cli` turns an error into ``Error: …`` /
``Hint: …`` and a non-zero exit code.
"""

from __future__ import annotations


class ShoestringError(Exception):
    """A failure with a message for people and an optional hint for the fix.

    >>> err = ShoestringError("data file 'x.csv' is empty", hint="check the path")
    >>> str(err)
    "data file 'x.csv' is empty"
    >>> err.hint
    'check the path'
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(ShoestringError):
    """One or more configuration problems, all reported together."""

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = f"invalid configuration: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"invalid configuration ({len(self.problems)} problems):\n{lines}"
        super().__init__(message, hint)


class DataError(ShoestringError):
    """Bad input data: names the file, line or field and what is wrong."""
