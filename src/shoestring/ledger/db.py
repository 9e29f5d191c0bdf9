"""Database engine and the declarative base shared by every ledger table."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase

from shoestring.errors import ShoestringError

ENV_VAR = "SHOESTRING_DB"


class Base(DeclarativeBase):
    """Tables of every capability (runs, usage, keys) share this metadata."""


def default_db_url(workspace: Path) -> str:
    """``sqlite:///WORKSPACE/.shoestring/ledger.db``."""
    return f"sqlite:///{(workspace / '.shoestring' / 'ledger.db').resolve()}"


def resolve_db_url(explicit: str | None, environ: Mapping[str, str], workspace: Path) -> str:
    """``--db`` wins, then ``SHOESTRING_DB``, then the workspace's SQLite file."""
    if explicit:
        return explicit
    if environ.get(ENV_VAR):
        return environ[ENV_VAR]
    return default_db_url(workspace)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets readers (e.g. `shoestring runs`) proceed while a run writes;
    # busy_timeout waits for a lock instead of failing at once.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL mode and their folder created."""
    try:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        engine = create_engine(url, future=True, pool_pre_ping=True)
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise ShoestringError(f"cannot use database URL {url!r}: {exc}",
                              hint="use e.g. sqlite:///ledger.db or "
                              "postgresql://user:pass@host/db") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def ensure_tables(engine: Engine, tables: list[Table]) -> None:
    """Create ``tables`` if missing, safely when several processes start at once.

    ``create_all`` checks, then creates: two processes opening a fresh database
    together can both see "missing" and one then fails with "already exists".
    That failure means the table is there, so check again instead of failing.
    """
    for attempt in range(3):
        try:
            Base.metadata.create_all(engine, tables=tables)
            return
        except (OperationalError, ProgrammingError) as exc:
            if "already exists" not in str(exc.orig) or attempt == 2:
                raise
