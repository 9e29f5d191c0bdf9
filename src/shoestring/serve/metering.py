"""Exactly-once metering: usage events and quota charges in one transaction.

:meth:`Meter.charge` takes a group of finished requests and, in ONE database
transaction, (1) inserts their usage events, skipping any whose
``(key, Idempotency-Key)`` is already recorded, and (2) adds their units and
cost to the key's and project's monthly counters with a conditional
``UPDATE … WHERE used + n <= limit``. Events that would exceed a limit are
removed again before the commit. The caller sends a 200 only for events whose
outcome is ``charged`` (or a replay of a stored response), so every 200 is in
the ledger once, and a crash before the commit loses the charge together with
the response.

Deadlocks cannot arise between replicas: every transaction locks counter rows
in one global order (projects by name, then each project's keys by id, after
its project). Within a key, events are charged in arrival order; across keys
of one group, in that lock order. A transaction aborted anyway (deadlock, serialization failure,
SQLite busy) is retried whole, which is safe because nothing was committed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import DBAPIError, OperationalError

from shoestring.errors import ShoestringError
from shoestring.serve.tables import UsageCounterRow as C
from shoestring.serve.tables import UsageEventRow as E

MAX_ATTEMPTS = 8


def period_of(t: datetime) -> str:
    """The billing period (UTC calendar month) of a time: ``YYYY-MM``."""
    t = t.astimezone(timezone.utc)
    return f"{t.year:04d}-{t.month:02d}"


def seconds_to_next_period(t: datetime) -> int:
    """Whole seconds until the next UTC month starts (for ``Retry-After``)."""
    t = t.astimezone(timezone.utc)
    nxt = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=timezone.utc)
    return max(1, int((nxt - t).total_seconds() + 0.999))


class Outcome(str, Enum):
    charged = "charged"
    duplicate = "duplicate"          # the Idempotency-Key was seen: replay, no charge
    quota_exceeded = "quota_exceeded"
    budget_exceeded = "budget_exceeded"


@dataclass
class UsageEvent:
    """A finished request to be charged. Limits travel with it (None: unlimited)."""

    id: str
    key_id: str
    project: str
    plan: str
    model: str
    version: str
    units: int
    cost_nano_usd: int
    latency_ms: float
    created_at: datetime
    key_quota: int | None = None
    project_budget_nano_usd: int | None = None
    idempotency_key: str | None = None
    request_sha256: str | None = None
    response_json: str | None = None
    period: str = field(init=False)

    def __post_init__(self) -> None:
        self.period = period_of(self.created_at)

    def values(self) -> tuple:
        """The event's table row in ``_EVENT_COLS`` order (``created_at`` as ISO 8601 UTC)."""
        return (self.id, self.key_id, self.project, self.plan, self.model, self.version,
                self.units, self.cost_nano_usd, self.latency_ms,
                self.created_at.astimezone(timezone.utc).isoformat(timespec="microseconds"),
                self.period, self.idempotency_key, self.request_sha256, self.response_json)


@dataclass(frozen=True)
class Stored:
    """What a recorded idempotent request returned."""

    event_id: str
    request_sha256: str | None
    response_json: str | None


@dataclass
class ChargeResult:
    outcome: Outcome
    stored: Stored | None = None          # for duplicates
    key_used: int | None = None           # the key's counter after this group, when known
    retry_after_s: int = 0


@dataclass
class _Group:
    """Events of one key in one period, in arrival order."""

    project: str
    key_id: str
    period: str
    events: list[UsageEvent] = field(default_factory=list)


def _check_dialect(engine: Engine) -> str:
    name = engine.dialect.name
    if name not in ("postgresql", "sqlite"):
        raise ShoestringError(f"metering does not support the {name!r} database",
                              hint="use SQLite (one server) or PostgreSQL (several replicas)")
    return name


def _retryable(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    # 40P01 deadlock_detected, 40001 serialization_failure (PostgreSQL appendix A);
    # SQLite reports a held write lock as OperationalError "database is locked".
    return bool(exc.connection_invalidated) or sqlstate in ("40P01", "40001") or (
        isinstance(exc, OperationalError) and "locked" in str(exc.orig).lower())


_EVENT_COLS = ("id", "key_id", "project", "plan", "model", "version", "units", "cost_nano_usd",
               "latency_ms", "created_at", "period", "idempotency_key", "request_sha256",
               "response_json")

# The hot statements as SQL text with positional parameters, run through the driver
# directly: SQLAlchemy's expression layer costs more Python time than these statements
# take to execute, and that time is taken from the event loop (the GIL). SQLite spells
# a parameter ?, psycopg %s.
_MARKS = ", ".join("?" for _ in _EVENT_COLS)
# SQLite allows 32,766 parameters per statement (SQLITE_MAX_VARIABLE_NUMBER since 3.32):
# 14 columns x 512 rows stays well below it.
_ROWS_PER_INSERT = 512
_SQL = {
    "insert_keyed": f"INSERT INTO {E.__tablename__} ({', '.join(_EVENT_COLS)}) "
                    f"VALUES ({_MARKS}) ON CONFLICT DO NOTHING RETURNING id",
    # (key_id, idempotency_key)
    "stored": f"SELECT id, request_sha256, response_json FROM {E.__tablename__} "
              "WHERE key_id = ? AND idempotency_key = ?",
    "delete": f"DELETE FROM {E.__tablename__} WHERE id = ?",
    # (scope, period)
    "ensure": f"INSERT INTO {C.__tablename__} (scope, period, used) VALUES (?, ?, 0) "
              "ON CONFLICT DO NOTHING",
    # (n, scope, period)
    "add": f"UPDATE {C.__tablename__} SET used = used + ? WHERE scope = ? AND period = ? "
           "RETURNING used",
    # (n, scope, period, n, limit)
    "add_limited": f"UPDATE {C.__tablename__} SET used = used + ? "
                   "WHERE scope = ? AND period = ? AND used + ? <= ? RETURNING used",
}


def _for_driver(sql: str, dialect: str) -> str:
    return sql.replace("?", "%s") if dialect == "postgresql" else sql


class Meter:
    """Charges usage events exactly once; see the module docstring.

    :meth:`charge` keeps one connection of its own and is meant for one thread
    (the group-commit writer); :meth:`lookup` may be called from any thread.

    >>> import dataclasses
    >>> from shoestring.ledger.db import open_ledger
    >>> m = Meter(open_ledger("sqlite:///:memory:"))
    >>> ev = UsageEvent(id="e1", key_id="k", project="p", plan="free", model="m", version="1",
    ...                 units=1, cost_nano_usd=0, latency_ms=1.0, key_quota=1,
    ...                 created_at=datetime(2026, 5, 1, tzinfo=timezone.utc))
    >>> e2 = dataclasses.replace(ev, id="e2")
    >>> [r.outcome.value for r in m.charge([ev, e2])]
    ['charged', 'quota_exceeded']
    """

    def __init__(self, engine: Engine, sleep=time.sleep) -> None:
        self.engine = engine
        self._sleep = sleep
        dialect = self._dialect = _check_dialect(engine)
        self._sql = {k: _for_driver(v, dialect) for k, v in _SQL.items()}
        self._insert_cache: dict[int, str] = {}
        self._known: set[tuple[str, str]] = set()  # counter rows known to exist
        self._ensured: list[tuple[str, str]] = []
        self._conn: Connection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def charge(self, events: list[UsageEvent]) -> list[ChargeResult]:
        """Charge ``events`` in one transaction; one result per event, in order."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                return self._charge_once(events)
            except DBAPIError as exc:
                self.close()  # a fresh connection for the retry
                if not _retryable(exc) or attempt == MAX_ATTEMPTS - 1:
                    raise
                self._sleep(0.005 * 2**attempt)
        raise AssertionError("unreachable")

    def lookup(self, key_id: str, idempotency_key: str) -> Stored | None:
        """The stored response of an earlier request with this Idempotency-Key, if any."""
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql(self._sql["stored"], (key_id, idempotency_key)).first()
        return None if row is None else Stored(row[0], row[1], row[2])

    # -- one transaction -------------------------------------------------------------------

    def _charge_once(self, events: list[UsageEvent]) -> list[ChargeResult]:
        results: dict[str, ChargeResult] = {}
        first_of: dict[tuple[str, str], UsageEvent] = {}
        fresh: list[UsageEvent] = []
        for ev in events:  # the same Idempotency-Key twice in one group: the first counts
            k = (ev.key_id, ev.idempotency_key)
            if ev.idempotency_key is not None and k in first_of:
                continue
            if ev.idempotency_key is not None:
                first_of[k] = ev
            fresh.append(ev)
        if self._conn is None:
            self._conn = self.engine.connect()
        conn, self._ensured = self._conn, []
        with conn.begin():
            inserted = self._insert_events(conn, fresh)
            for ev in fresh:
                if ev.id not in inserted:
                    results[ev.id] = ChargeResult(Outcome.duplicate, stored=self._stored(conn, ev))
            rejected = self._charge_counters(conn, [ev for ev in fresh if ev.id in inserted],
                                             results)
            if rejected:
                conn.exec_driver_sql(self._sql["delete"], [(i,) for i in rejected])
        self._known.update(self._ensured)
        out = []
        for ev in events:
            if ev.id in results:
                out.append(results[ev.id])
                continue
            first = first_of[(ev.key_id, ev.idempotency_key)]
            res = results[first.id]
            if res.outcome is Outcome.charged:
                res = ChargeResult(Outcome.duplicate, stored=Stored(
                    first.id, first.request_sha256, first.response_json))
            out.append(res)
        return out

    def _insert_events(self, conn: Connection, events: list[UsageEvent]) -> set[str]:
        # Without an Idempotency-Key an event cannot collide (its id is a fresh UUID), so a
        # plain executemany suffices; keyed events need ON CONFLICT to learn which were new.
        plain, inserted = [], set()
        for ev in events:
            row = ev.values()
            if ev.idempotency_key is None:
                plain.append(row)
                inserted.add(ev.id)
            elif conn.exec_driver_sql(self._sql["insert_keyed"], row).first() is not None:
                inserted.add(ev.id)
        # One multi-row INSERT per chunk rather than executemany: the driver releases and
        # retakes the GIL around every statement step, and each retake waits for the event
        # loop thread, so row-by-row inserts cost the loop far more than the insert itself.
        for i in range(0, len(plain), _ROWS_PER_INSERT):
            chunk = plain[i:i + _ROWS_PER_INSERT]
            conn.exec_driver_sql(self._insert_rows(len(chunk)),
                                 tuple(v for row in chunk for v in row))
        return inserted

    def _insert_rows(self, n: int) -> str:
        sql = self._insert_cache.get(n)
        if sql is None:
            sql = self._insert_cache[n] = _for_driver(
                f"INSERT INTO {E.__tablename__} ({', '.join(_EVENT_COLS)}) VALUES "
                + ", ".join(f"({_MARKS})" for _ in range(n)), self._dialect)
        return sql

    def _stored(self, conn: Connection, ev: UsageEvent) -> Stored | None:
        row = conn.exec_driver_sql(self._sql["stored"],
                                   (ev.key_id, ev.idempotency_key)).first()
        return None if row is None else Stored(row[0], row[1], row[2])

    def _charge_counters(self, conn: Connection, events: list[UsageEvent],
                         results: dict[str, ChargeResult]) -> list[str]:
        """Charge counters in the global lock order; return the ids of rejected events."""
        groups: dict[tuple[str, str, str], _Group] = {}
        for ev in events:
            k = (ev.project, ev.period, ev.key_id)
            groups.setdefault(k, _Group(ev.project, ev.key_id, ev.period)).events.append(ev)
        by_project: dict[tuple[str, str], list[_Group]] = defaultdict(list)
        for k in sorted(groups):
            by_project[(k[0], k[1])].append(groups[k])
        rejected: list[str] = []
        for (project, period), key_groups in sorted(by_project.items()):
            pscope = f"project:{project}"
            self._ensure(conn, pscope, period)
            for g in key_groups:
                kscope = f"key:{g.key_id}"
                self._ensure(conn, kscope, period)
                rejected += self._charge_group(conn, g, pscope, kscope, results)
        return rejected

    def _charge_group(self, conn: Connection, g: _Group, pscope: str, kscope: str,
                      results: dict[str, ChargeResult]) -> list[str]:
        # Common case first: the whole group fits, two UPDATEs for all its events.
        budget, quota = g.events[-1].project_budget_nano_usd, g.events[-1].key_quota
        cost, units = sum(e.cost_nano_usd for e in g.events), sum(e.units for e in g.events)
        if self._add(conn, pscope, g.period, cost, budget) is not None:
            used = self._add(conn, kscope, g.period, units, quota)
            if used is not None:
                for ev in g.events:
                    results[ev.id] = ChargeResult(Outcome.charged, key_used=used)
                return []
            self._add(conn, pscope, g.period, -cost, None)
        # Near a limit: event by event, in arrival order, so exactly the first ones fit.
        rejected = []
        for ev in g.events:
            retry = seconds_to_next_period(ev.created_at)
            if self._add(conn, pscope, g.period, ev.cost_nano_usd, budget) is None:
                results[ev.id] = ChargeResult(Outcome.budget_exceeded, retry_after_s=retry)
                rejected.append(ev.id)
                continue
            used = self._add(conn, kscope, g.period, ev.units, quota)
            if used is None:
                self._add(conn, pscope, g.period, -ev.cost_nano_usd, None)
                results[ev.id] = ChargeResult(Outcome.quota_exceeded, key_used=quota,
                                              retry_after_s=retry)
                rejected.append(ev.id)
            else:
                results[ev.id] = ChargeResult(Outcome.charged, key_used=used)
        return rejected

    def _ensure(self, conn: Connection, scope: str, period: str) -> None:
        # A counter row, once committed, stays: only rows this process has not seen
        # committed need the INSERT (remembered after the commit, in _charge_once).
        if (scope, period) not in self._known:
            conn.exec_driver_sql(self._sql["ensure"], (scope, period))
            self._ensured.append((scope, period))

    def _add(self, conn: Connection, scope: str, period: str, n: int,
             limit: int | None) -> int | None:
        """Add ``n`` if the total stays within ``limit``; the new total, or None if refused."""
        if limit is None:
            row = conn.exec_driver_sql(self._sql["add"], (n, scope, period))
        else:
            row = conn.exec_driver_sql(self._sql["add_limited"], (n, scope, period, n, limit))
        row = row.first()
        return None if row is None else int(row[0])

    def used(self, scope: str, period: str) -> int:
        """A counter's value (units for ``key:ID``, nano-USD for ``project:NAME``)."""
        with self.engine.connect() as conn:
            v = conn.scalar(select(C.used).where(C.scope == scope, C.period == period))
        return int(v or 0)
