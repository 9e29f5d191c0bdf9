"""What every command shares: consoles, --debug, the ledger URL (CLI only)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import click
from rich.console import Console


@dataclass
class CliContext:
    debug: bool = False
    db: str | None = None
    workspace: Path = field(default_factory=Path.cwd)
    # soft_wrap: long messages stay on one line in logs instead of being cut at
    # 80 columns (tables still fit the terminal).
    out: Console = field(default_factory=lambda: Console(soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))
    # True when the CLI owns the interpreter (the console script, not a test runner or a
    # notebook): process-wide settings such as the garbage collector's are then its own.
    own_process: bool = False

    def db_url(self) -> str:
        # Imported here, and from the module without SQLAlchemy (0.25 s of CPU): a
        # `train` on an up-to-date SQLite ledger never imports it, `--help` neither.
        from shoestring.ledger.location import resolve_db_url

        return resolve_db_url(self.db, os.environ, self.workspace)

    def ledger(self, *, create: bool = True):
        """The run ledger; ``create=False`` (read-only commands) never makes an empty one."""
        from shoestring.ledger.runs import RunLedger

        return RunLedger(self.db_url(), create=create)

    def engine(self, *, create: bool = True):
        """An engine on the ledger (serving tables, usage, keys)."""
        from shoestring.ledger.db import open_ledger

        return open_ledger(self.db_url(), create=create)

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]Warning:[/] {message}", highlight=False)


def cli_context(ctx: click.Context) -> CliContext:
    """The command's shared context (created on first use)."""
    return ctx.ensure_object(CliContext)
