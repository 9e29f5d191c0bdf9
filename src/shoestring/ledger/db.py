"""The one way into the ledger database: :func:`open_ledger`.

Every capability (runs, serving, the planner's calibrations) opens the ledger
through :func:`open_ledger`, which brings its schema to the version this
Shoestring expects (:mod:`shoestring.ledger.migrations`) before handing out
the engine. SQLite in the workspace by default; any SQLAlchemy URL
(PostgreSQL for a team) through ``--db`` or ``SHOESTRING_DB``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import DeclarativeBase

from shoestring.errors import ShoestringError

ENV_VAR = "SHOESTRING_DB"
SQLITE_PREFIX = "sqlite:///"


class Base(DeclarativeBase):
    """The ORM tables of every capability (runs, usage, keys, calibrations) share this
    metadata; :mod:`shoestring.ledger.migrations` creates and upgrades them."""


class LedgerMissing(ShoestringError):
    """A read-only command found no ledger where it looked (and did not create one)."""


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


def safe_url(url: str) -> str:
    """The URL without its password, for messages (secrets are never printed)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL holds no usable secret to hide
        return "<unparsable URL>"


def _sqlite_pragmas(synchronous: str):
    def on_connect(dbapi_conn, _record) -> None:
        # WAL lets readers (e.g. `shoestring runs`) proceed while a run writes;
        # busy_timeout waits for a lock instead of failing at once. FULL syncs
        # the WAL at every commit, so a committed charge survives a power cut,
        # not only a crash of the process (SQLite docs, "PRAGMA synchronous").
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()
    return on_connect


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


def make_engine(url: str, *, durable: bool = False) -> Engine:
    """An engine for ``url`` (no schema work; use :func:`open_ledger`)."""
    try:
        path = sqlite_path(url)
        if path is not None:
            create_private(path)
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        engine = create_engine(url, future=True, pool_pre_ping=True)
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise ShoestringError(f"cannot use database URL {safe_url(url)!r}: {exc}",
                              hint="use e.g. sqlite:///ledger.db or "
                              "postgresql://user:pass@host/db") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas("FULL" if durable else "NORMAL"))
    return engine


def open_ledger(url: str, *, durable: bool = False, create: bool = True) -> Engine:
    """An engine on the ledger at ``url``, its schema upgraded to this release's version.

    ``durable`` makes SQLite fsync every commit (serving turns it on; for
    PostgreSQL its own ``fsync``/``synchronous_commit`` settings decide).
    ``create=False`` is for read-only commands: a SQLite ledger that does not
    exist yet raises :class:`LedgerMissing` instead of being created empty.
    An existing ledger of any earlier release is upgraded in place, once,
    under a lock, so processes starting together do not race.

    >>> engine = open_ledger("sqlite:///:memory:")
    >>> from shoestring.ledger.migrations import current_version, HEAD
    >>> current_version(engine) == HEAD
    True
    """
    from shoestring.ledger.migrations import migrate

    path = sqlite_path(url)
    if not create and path is not None and not path.exists():
        raise LedgerMissing(f"no ledger at '{path}'",
                            hint="run this command where you trained or served (the ledger "
                            "is ./.shoestring/ledger.db), or point --db / SHOESTRING_DB at it")
    engine = make_engine(url, durable=durable)
    try:
        migrate(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise ShoestringError(f"cannot open the ledger database {safe_url(url)}: {exc.orig}",
                              hint="check --db / SHOESTRING_DB, that the database server runs "
                              "and that you may create tables in it") from None
    except BaseException:
        engine.dispose()
        raise
    return engine
