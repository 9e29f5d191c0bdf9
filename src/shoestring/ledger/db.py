"""The one way into the ledger database: :func:`open_ledger`.

Every capability (runs, serving, the planner's calibrations) opens the ledger
through :func:`open_ledger`, which brings its schema to the version this
Shoestring expects (:mod:`shoestring.ledger.migrations`) before handing out
the engine. SQLite in the workspace by default; any SQLAlchemy URL
(PostgreSQL for a team) through ``--db`` or ``SHOESTRING_DB``.
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import DeclarativeBase

from shoestring.errors import ShoestringError
from shoestring.ledger.location import (  # noqa: F401  (this module's public names)
    ENV_VAR,
    SQLITE_PREFIX,
    create_private,
    default_db_url,
    resolve_db_url,
    sqlite_path,
)


class Base(DeclarativeBase):
    """The ORM tables of every capability (runs, usage, keys, calibrations) share this
    metadata; :mod:`shoestring.ledger.migrations` creates and upgrades them."""


class LedgerMissing(ShoestringError):
    """A read-only command found no ledger where it looked (and did not create one)."""


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
