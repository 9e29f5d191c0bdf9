"""Where the ledger lives: its URL and, for SQLite, its file (no SQLAlchemy here).

Training resolves the ledger URL on its main path and, for an up-to-date
SQLite ledger, writes its run row with the standard library alone
(:mod:`shoestring.ledger.sqlite_runs`); importing SQLAlchemy costs 0.25 s of
CPU, a tenth of a short training run's whole process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV_VAR = "SHOESTRING_DB"
SQLITE_PREFIX = "sqlite:///"


def default_db_url(workspace: Path) -> str:
    """``sqlite:///WORKSPACE/.shoestring/ledger.db``."""
    return f"{SQLITE_PREFIX}{(workspace / '.shoestring' / 'ledger.db').resolve()}"


def resolve_db_url(explicit: str | None, environ: Mapping[str, str], workspace: Path) -> str:
    """``--db`` wins, then ``SHOESTRING_DB``, then the workspace's SQLite file."""
    if explicit:
        return explicit
    if environ.get(ENV_VAR):
        return environ[ENV_VAR]
    return default_db_url(workspace)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, or None (another database, or in memory)."""
    if url.startswith(SQLITE_PREFIX) and url not in (SQLITE_PREFIX, f"{SQLITE_PREFIX}:memory:"):
        return Path(url[len(SQLITE_PREFIX):])
    return None


def create_private(path: Path) -> None:
    """Create the ledger file readable by its owner only (0600), if it does not exist.

    The ledger holds API key hashes and stored responses. SQLite creates a new
    database 0644 (minus the umask) and its -wal and -shm files with the
    database file's own permissions (SQLite docs, "Temporary Files Used By
    SQLite" and unixOpen's findCreateFileMode), so creating the file first
    makes all three private.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
