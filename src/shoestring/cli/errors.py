"""Turning errors into what a person reads, and into exit codes (CLI only)."""

from __future__ import annotations

import sys
import traceback
from typing import Callable, TypeVar

from rich.console import Console

from shoestring.errors import ShoestringError

T = TypeVar("T")

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def report_error(console: Console, exc: BaseException, debug: bool) -> int:
    """Print ``Error: …`` and ``Hint: …`` (traceback only with --debug); return the exit code."""
    if debug:
        console.print("".join(traceback.format_exception(exc)), markup=False, highlight=False)
    if isinstance(exc, ShoestringError):
        console.print(f"[bold red]Error:[/] {exc.message}", highlight=False)
        if exc.hint:
            console.print(f"[bold]Hint:[/] {exc.hint}", highlight=False)
        return EXIT_ERROR
    if isinstance(exc, KeyboardInterrupt):
        console.print("[bold red]Error:[/] interrupted")
        return EXIT_INTERRUPTED
    console.print(f"[bold red]Error:[/] unexpected {type(exc).__name__}: {exc}", highlight=False)
    console.print("[bold]Hint:[/] rerun with --debug for the traceback, and report it if it "
                  "looks like a bug", highlight=False)
    return EXIT_ERROR


def guarded(console: Console, debug: bool, fn: Callable[[], T]) -> T:
    """Run ``fn``; on failure print the error and exit with its code."""
    try:
        return fn()
    except (Exception, KeyboardInterrupt) as exc:
        sys.exit(report_error(console, exc, debug))
