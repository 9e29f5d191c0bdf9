"""The runs table's two writes on an up-to-date SQLite ledger, with the standard library.

A training run writes its ledger row twice (``running`` at the start, its
outcome at the end). Through SQLAlchemy those writes cost its import, 0.25 s
of CPU, about a tenth of the whole process of a short run
(``bench/train_whole_process.py``). When the ledger is a SQLite file already
at this release's schema, :class:`~shoestring.ledger.runs.RunLedger` writes
the row with :mod:`sqlite3` instead: the same columns and values the ORM
class :class:`~shoestring.ledger.run_table.RunRecord` writes (its client-side
defaults included), under the same connection settings as
:func:`~shoestring.ledger.db.make_engine` (WAL, ``synchronous=NORMAL``, a
10 s busy timeout). ``tests/unit/ledger/test_sqlite_runs.py`` checks that both
paths leave the same row. Any other ledger (PostgreSQL, a new or older SQLite
file that needs migrating) goes through SQLAlchemy.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

# The newest migration (shoestring.ledger.migrations.HEAD, which imports
# SQLAlchemy); tests/unit/ledger/test_sqlite_runs.py checks that they agree.
SCHEMA_HEAD = 4

# Written by a new row: every column of RunRecord. ORM defaults are client-side,
# so they are spelled out here: metrics_json "{}", wall_seconds 0.0.
INSERT = ("INSERT INTO runs (id, name, kind, parent_id, status, stop_reason, model, data, "
          "out_dir, config_json, metrics_json, started_at, finished_at, wall_seconds, "
          "price_per_hour_nano_usd, cost_nano_usd, device, host, pid, error) VALUES "
          "(:id, :name, :kind, :parent_id, :status, NULL, :model, :data, :out_dir, "
          ":config_json, '{}', :started_at, NULL, 0.0, :price_per_hour_nano_usd, "
          ":cost_nano_usd, :device, :host, :pid, NULL)")
REOPEN = ("UPDATE runs SET status = 'running', pid = :pid, host = :host, finished_at = NULL, "
          "stop_reason = NULL, error = NULL WHERE id = :id")
FINISH = ("UPDATE runs SET status = :status, metrics_json = :metrics_json, "
          "wall_seconds = :wall_seconds, cost_nano_usd = :cost_nano_usd, "
          "finished_at = :finished_at, stop_reason = :stop_reason, error = :error "
          "WHERE id = :id")


def up_to_date_file(path: Path | None) -> bool:
    """Whether ``path`` is an existing SQLite ledger at :data:`SCHEMA_HEAD`."""
    if path is None or not path.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.Error:  # not a ledger, no schema_version yet (release 0.1), locked...
        return False
    return row is not None and row[0] == SCHEMA_HEAD


@contextmanager
def _transaction(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, timeout=10, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def start_row(path: Path, fields: dict[str, Any]) -> None:
    """Insert a ``running`` row, or reopen the row of a resumed run with that id."""
    with _transaction(path) as conn:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (fields["id"],)).fetchone():
            conn.execute(REOPEN, {k: fields[k] for k in ("id", "pid", "host")})
        else:
            conn.execute(INSERT, {**fields, "status": "running", "cost_nano_usd": 0})


def finish_row(path: Path, fields: dict[str, Any]) -> bool:
    """Record a run's outcome; False when no row has its id."""
    with _transaction(path) as conn:
        return conn.execute(FINISH, fields).rowcount == 1
