"""What every command shares: consoles, --debug, the ledger URL (CLI only)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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

    def db_url(self) -> str:
        # Imported here: the ledger's SQLAlchemy costs 0.3 s that `train` pays on a
        # worker thread, and `--help` not at all.
        from shoestring.ledger.db import resolve_db_url

        return resolve_db_url(self.db, os.environ, self.workspace)

    def ledger(self):
        from shoestring.ledger.runs import RunLedger

        return RunLedger(self.db_url())
