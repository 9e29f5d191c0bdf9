"""Opening the serving ledger: an engine with the serving tables created."""

from __future__ import annotations

import time

from sqlalchemy import Engine, event
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from shoestring.errors import ShoestringError
from shoestring.ledger.db import ensure_tables, make_engine
from shoestring.serve.tables import SERVE_TABLES


def _full_sync(dbapi_conn, _record) -> None:
    # Runs after make_engine's own connect hook (which sets NORMAL). In WAL mode FULL
    # syncs the WAL at every commit, so a committed charge survives a power cut or an OS
    # crash, not only a crash of the server (SQLite docs, "PRAGMA synchronous").
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def open_serve_db(url: str, *, durable: bool = False) -> Engine:
    """An engine for ``url`` whose serving tables exist.

    ``durable`` makes SQLite fsync every commit; PostgreSQL's own settings
    (``fsync``, ``synchronous_commit``, on by default) decide there.

    Two replicas starting together may race to create the tables on
    PostgreSQL (one then sees a duplicate catalog entry); the loser retries
    once the winner's tables are visible.
    """
    engine = make_engine(url)
    if durable and engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _full_sync)
    for attempt in range(5):
        try:
            ensure_tables(engine, list(SERVE_TABLES))
            return engine
        except (IntegrityError, ProgrammingError) as exc:  # concurrent CREATE TABLE
            if attempt == 4:
                raise ShoestringError(f"cannot create the serving tables: {exc.orig}",
                                      hint="check the database permissions") from None
            time.sleep(0.2 * (attempt + 1))
        except OperationalError as exc:
            engine.dispose()
            raise ShoestringError(f"cannot open the usage database {_safe(url)}: {exc.orig}",
                                  hint="check --db / SHOESTRING_DB and that the database "
                                  "server runs") from None
    return engine


def _safe(url: str) -> str:
    """The URL without its password, for messages (secrets are never printed)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL holds no usable secret to hide
        return "<unparsable URL>"
