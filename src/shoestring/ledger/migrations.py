"""The ledger's schema history: numbered migrations that upgrade any older ledger in place.

The database records which migrations it has had in ``schema_version`` (one
row per migration: number, description, when). :func:`migrate` applies the
missing ones in order, each inside one transaction that holds the database's
write lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so
several processes opening an old ledger together upgrade it once.

A ledger of release 0.1 has no ``schema_version`` table; it counts as version
0, and migration 1 creates whichever of release 0.1's tables it lacks (that
release created each capability's tables on first use).

Migrations are frozen history: they name columns and types themselves and
never import the ORM classes, which describe only the newest schema
(``tests/unit/ledger/test_migrations.py`` checks that the two agree).

To change the schema: add a :class:`Migration` with the next number at the
end of :data:`MIGRATIONS`, change the ORM class to match, and run the tests
(they upgrade the release-0.1 fixtures on SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import (BigInteger, Column, Connection, Engine, Float, Index, Integer, MetaData,
                        String, Table, Text, UniqueConstraint, column, func, inspect, select,
                        table, text)
from sqlalchemy.schema import CreateColumn

from shoestring.errors import ShoestringError
from shoestring.ledger.money import usd_to_nano

# Any constant works; it only has to be the same in every Shoestring process.
PG_LOCK_KEY = 0x5E0E_5771


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    upgrade: Callable[[Connection], None]


_meta = MetaData()
SCHEMA_VERSION = Table(
    "schema_version", _meta,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied_at", String(40), nullable=False),
)


# --- 1: release 0.1's tables, exactly as that release created them -------------------------

def _release_0_1_tables() -> list[Table]:
    m = MetaData()
    runs = Table(
        "runs", m,
        Column("id", String(36), primary_key=True),
        Column("name", String(200), nullable=False, index=True),
        Column("kind", String(32), nullable=False),
        Column("status", String(32), nullable=False, index=True),
        Column("model", String(200), nullable=False),
        Column("data", String(500), nullable=False),
        Column("out_dir", String(1000), nullable=False),
        Column("config_json", Text, nullable=False),
        Column("metrics_json", Text, nullable=False),
        Column("started_at", String(40), nullable=False),
        Column("finished_at", String(40)),
        Column("wall_seconds", Float, nullable=False),
        Column("cost_usd", Float, nullable=False),
        Column("device", String(100), nullable=False),
        Column("host", String(255), nullable=False),
        Column("pid", Integer, nullable=False),
        Column("error", Text),
    )
    keys = Table(
        "serve_api_keys", m,
        Column("id", String(32), primary_key=True),
        Column("key_hash", String(64), nullable=False),
        Column("prefix", String(16), nullable=False),
        Column("project", String(200), nullable=False, index=True),
        Column("plan", String(100), nullable=False),
        Column("label", String(200), nullable=False),
        Column("monthly_quota_units", BigInteger),
        Column("created_at", String(40), nullable=False),
        Column("revoked_at", String(40)),
        UniqueConstraint("key_hash"),
    )
    projects = Table(
        "serve_projects", m,
        Column("name", String(200), primary_key=True),
        Column("monthly_budget_nano_usd", BigInteger),
        Column("created_at", String(40), nullable=False),
    )
    events = Table(
        "serve_usage_events", m,
        Column("id", String(36), primary_key=True),
        Column("key_id", String(32), nullable=False),
        Column("project", String(200), nullable=False),
        Column("plan", String(100), nullable=False),
        Column("model", String(200), nullable=False),
        Column("version", String(100), nullable=False),
        Column("units", Integer, nullable=False),
        Column("cost_nano_usd", BigInteger, nullable=False),
        Column("latency_ms", Float, nullable=False),
        Column("created_at", String(40), nullable=False),
        Column("period", String(7), nullable=False),
        Column("idempotency_key", String(200)),
        Column("request_sha256", String(64)),
        Column("response_json", Text),
    )
    Index("uq_serve_usage_idempotency", events.c.key_id, events.c.idempotency_key, unique=True,
          sqlite_where=text("idempotency_key IS NOT NULL"),
          postgresql_where=text("idempotency_key IS NOT NULL"))
    Index("ix_serve_usage_project_period", events.c.project, events.c.period)
    counters = Table(
        "serve_usage_counters", m,
        Column("scope", String(250), primary_key=True),
        Column("period", String(7), primary_key=True),
        Column("used", BigInteger, nullable=False),
    )
    calibrations = Table(
        "plan_calibrations", m,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("created_at", String(40), nullable=False),
        Column("host", String(255), nullable=False),
        Column("device", String(100), nullable=False, index=True),
        Column("model", String(200), nullable=False, index=True),
        Column("dtype", String(16), nullable=False),
        Column("batch", Integer, nullable=False),
        Column("seq_len", Integer, nullable=False),
        Column("threads", Integer, nullable=False),
        Column("flops_per_step", Float, nullable=False),
        Column("seconds_per_step", Float, nullable=False),
    )
    return [runs, keys, projects, events, counters, calibrations]


def _release_0_1_baseline(conn: Connection) -> None:
    for t in _release_0_1_tables():
        t.create(conn, checkfirst=True)


# --- 2: runs get a kind's lineage, a stop reason, and money as integers ---------------------

def add_column(conn: Connection, table: str, column: Column) -> None:
    """``ALTER TABLE … ADD COLUMN`` in the connection's dialect."""
    ddl = CreateColumn(column).compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {ddl}")


def _runs_v2(conn: Connection) -> None:
    add_column(conn, "runs", Column("parent_id", String(36)))
    conn.exec_driver_sql("CREATE INDEX ix_runs_parent_id ON runs (parent_id)")
    add_column(conn, "runs", Column("stop_reason", Text))
    add_column(conn, "runs", Column("price_per_hour_nano_usd", BigInteger))
    add_column(conn, "runs", Column("cost_nano_usd", BigInteger, nullable=False,
                                    server_default="0"))
    # Round half away from zero (SQL ROUND) on the stored float: what the row meant.
    conn.exec_driver_sql("UPDATE runs SET cost_nano_usd = "
                         "CAST(ROUND(cost_usd * 1000000000) AS BIGINT)")
    conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN cost_usd")
    # Release 0.1 kept the stop reason and the price only in the summary JSON.
    runs = table("runs", column("id"), column("metrics_json"), column("stop_reason"),
                 column("price_per_hour_nano_usd"))
    for run_id, metrics_json in conn.execute(select(runs.c.id, runs.c.metrics_json)).all():
        try:
            summary = json.loads(metrics_json or "{}")
        except ValueError:
            continue
        values = {}
        if isinstance(summary.get("stop_reason"), str):
            values["stop_reason"] = summary["stop_reason"]
        if isinstance(summary.get("price_per_hour"), (int, float)):
            values["price_per_hour_nano_usd"] = usd_to_nano(summary["price_per_hour"])
        if values:
            conn.execute(runs.update().where(runs.c.id == run_id).values(**values))


# --- 3: serving's leases, shared rate buckets and usage-log checkpoints ---------------------

def _serve_leases(conn: Connection) -> None:
    m = MetaData()
    Table("serve_leases", m,
          Column("replica", String(32), primary_key=True),
          Column("scope", String(250), primary_key=True),
          Column("period", String(7), primary_key=True),
          Column("granted", BigInteger, nullable=False),
          Column("settled", BigInteger, nullable=False),
          Column("expires_at", Float, nullable=False))
    Table("serve_rate_buckets", m,
          Column("key_id", String(32), primary_key=True),
          Column("tokens", Float, nullable=False),
          Column("stamp", Float, nullable=False))
    Table("serve_log_checkpoints", m,
          Column("replica", String(32), primary_key=True),
          Column("segment", Integer, nullable=False),
          Column("byte_offset", BigInteger, nullable=False),
          Column("updated_at", String(40), nullable=False))
    m.create_all(conn)


# --- 4: the dashboard's admin tokens ---------------------------------------------------------

def _ui_admin_tokens(conn: Connection) -> None:
    m = MetaData()
    Table("ui_admin_tokens", m,
          Column("id", String(32), primary_key=True),
          Column("token_hash", String(64), nullable=False),
          Column("prefix", String(16), nullable=False),
          Column("label", String(200), nullable=False),
          Column("created_at", String(40), nullable=False),
          Column("revoked_at", String(40)),
          UniqueConstraint("token_hash"))
    m.create_all(conn)


MIGRATIONS: list[Migration] = [
    Migration(1, "release 0.1 tables: runs, serve keys/projects/usage/counters, "
              "plan calibrations", _release_0_1_baseline),
    Migration(2, "runs: parent_id, stop_reason, price and cost in integer nano-dollars",
              _runs_v2),
    Migration(3, "serve: quota leases, shared rate buckets, usage-log checkpoints",
              _serve_leases),
    Migration(4, "ui: the dashboard's admin tokens (hashed)", _ui_admin_tokens),
]
HEAD = MIGRATIONS[-1].version


def _read_version(conn: Connection) -> int:
    if not inspect(conn).has_table(SCHEMA_VERSION.name):
        return 0
    return int(conn.scalar(select(func.max(SCHEMA_VERSION.c.version))) or 0)


def current_version(engine: Engine) -> int:
    """The newest migration the ledger at ``engine`` has had (0: none, release 0.1 or empty)."""
    with engine.connect() as conn:
        return _read_version(conn)


def _lock(conn: Connection) -> None:
    """Take the database's write lock for the rest of this transaction."""
    if conn.dialect.name == "sqlite":
        # pysqlite starts no transaction before DDL by itself; BEGIN IMMEDIATE takes
        # the write lock now, so a second process waits (busy_timeout) and then
        # sees the finished upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})


def migrate(engine: Engine, *, now: Callable[[], datetime] | None = None) -> list[int]:
    """Apply the migrations the ledger lacks; return their numbers (empty when up to date)."""
    version = current_version(engine)
    if version > HEAD:
        raise ShoestringError(f"the ledger has schema version {version}, newer than this "
                              f"Shoestring's {HEAD}",
                              hint="upgrade Shoestring (pip install -U shoestring) to use it")
    if version == HEAD:
        return []
    applied = []
    with engine.connect() as conn:
        _lock(conn)
        version = _read_version(conn)  # another process may have upgraded meanwhile
        SCHEMA_VERSION.create(conn, checkfirst=True)
        for m in MIGRATIONS:
            if m.version <= version:
                continue
            m.upgrade(conn)
            stamp = (now or (lambda: datetime.now(timezone.utc)))()
            conn.execute(SCHEMA_VERSION.insert().values(
                version=m.version, description=m.description,
                applied_at=stamp.isoformat(timespec="seconds")))
            applied.append(m.version)
        conn.commit()
    return applied


def history(engine: Engine) -> list[dict]:
    """The migrations the ledger has had, oldest first."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(SCHEMA_VERSION.name):
            return []
        rows = conn.execute(select(SCHEMA_VERSION).order_by(SCHEMA_VERSION.c.version))
        return [dict(r._mapping) for r in rows]
