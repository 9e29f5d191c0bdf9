"""The shared SQL ledger's side of metering: usage events, counters, leases, rate buckets.

Replicas share one database (SQLite for one server, PostgreSQL for several);
each holds **leases** on the limited counters it spends from:

* a quota (``key:ID``, units) or budget (``project:NAME``, nano-dollars) per
  month is one counter row with ``used``; each replica has one lease row per
  counter with ``granted`` (units handed to it, cumulative) and ``settled``
  (units its recorded events have added to ``used``). :meth:`LedgerSql.grant`
  hands out at most ``limit - used - Σ(granted - settled)`` in one
  transaction, so ``used`` plus everything still held never exceeds the limit,
  whatever the replicas do with what they hold;
* :meth:`LedgerSql.apply` inserts recorded events, adds them to ``used`` and to
  their leases' ``settled`` in one transaction, with the log position it has
  reached (``serve_log_checkpoints``), so a replay after a crash neither skips
  nor repeats an event;
* a lease whose replica stopped renewing it (``expires_at`` passed) is
  reclaimed by the next grant on its counter; :meth:`LedgerSql.release_all`
  returns a replica's unspent units when it drains or restarts;
* rate limits are token buckets in ``serve_rate_buckets``, refilled by the
  clock; :meth:`LedgerSql.take_tokens` takes a block of tokens at once.

Deadlocks cannot arise: a transaction locks counter rows in one global order
(sorted by scope, then period) before any lease row, and a lease row is only
ever written after its counter row is locked. A transaction aborted anyway
(deadlock, serialization failure, SQLite busy) is retried whole. On
PostgreSQL, READ COMMITTED makes a second writer of a counter row wait for the
first and then read the row anew (PostgreSQL manual, section 13.2.1).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from itertools import chain
from typing import TypeVar

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import DBAPIError, OperationalError

from shoestring.errors import ShoestringError
from shoestring.serve.metering import ChargeResult, Outcome, Stored, UsageEvent
from shoestring.serve.tables import UsageCounterRow as C
from shoestring.serve.usage_log import Position

MAX_ATTEMPTS = 8
T = TypeVar("T")

EVENT_COLS = ("id", "key_id", "project", "plan", "model", "version", "units", "cost_nano_usd",
              "latency_ms", "created_at", "period", "idempotency_key", "request_sha256",
              "response_json")
_MARKS = ", ".join("?" for _ in EVENT_COLS)
# A usage-log record's first fields are its event's row (usage_log.FIELDS).
LOGGED_COLS = 11
# SQLite allows 32,766 parameters per statement (SQLITE_MAX_VARIABLE_NUMBER since 3.32):
# 14 columns x 512 rows stays well below it.
ROWS_PER_INSERT = 512

# The statements as SQL text with positional parameters, run through the driver directly:
# SQLAlchemy's expression layer costs more Python time than these statements take to
# execute, and that time is taken from the event loop (the GIL). SQLite spells a
# parameter ?, psycopg %s.
_SQL = {
    "insert_keyed": f"INSERT INTO serve_usage_events ({', '.join(EVENT_COLS)}) "
                    f"VALUES ({_MARKS}) ON CONFLICT DO NOTHING RETURNING id",
    "stored": "SELECT id, request_sha256, response_json FROM serve_usage_events "
              "WHERE key_id = ? AND idempotency_key = ?",
    # (scope, period)
    "ensure": "INSERT INTO serve_usage_counters (scope, period, used) VALUES (?, ?, 0) "
              "ON CONFLICT DO NOTHING",
    # (n, scope, period)
    "add": "UPDATE serve_usage_counters SET used = used + ? WHERE scope = ? AND period = ?",
    # (scope, period): takes the counter row's lock, reads it
    "lock": "UPDATE serve_usage_counters SET used = used WHERE scope = ? AND period = ? "
            "RETURNING used",
    # (s, s, s, replica, scope, period): a reclaimed lease never goes negative
    "settle": "UPDATE serve_leases SET settled = settled + ?, granted = CASE WHEN "
              "granted < settled + ? THEN settled + ? ELSE granted END "
              "WHERE replica = ? AND scope = ? AND period = ?",
    # (scope, period, now, replica)
    "reclaim": "UPDATE serve_leases SET granted = settled WHERE scope = ? AND period = ? "
               "AND expires_at < ? AND replica <> ? AND granted > settled",
    # (scope, period)
    "held": "SELECT COALESCE(SUM(granted - settled), 0) FROM serve_leases "
            "WHERE scope = ? AND period = ? AND granted > settled",
    # (replica, scope, period, n, expires, n, expires)
    "lease": "INSERT INTO serve_leases (replica, scope, period, granted, settled, expires_at) "
             "VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (replica, scope, period) DO UPDATE SET "
             "granted = serve_leases.granted + ?, expires_at = ?",
    # (expires, replica)
    "renew": "UPDATE serve_leases SET expires_at = ? WHERE replica = ? AND granted > settled",
    # (replica)
    "release": "UPDATE serve_leases SET granted = settled WHERE replica = ? "
               "AND granted > settled",
    # (replica, segment, byte_offset, updated_at)
    "checkpoint": "INSERT INTO serve_log_checkpoints (replica, segment, byte_offset, "
                  "updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (replica) DO UPDATE SET "
                  "segment = excluded.segment, byte_offset = excluded.byte_offset, "
                  "updated_at = excluded.updated_at",
    "read_checkpoint": "SELECT segment, byte_offset FROM serve_log_checkpoints "
                       "WHERE replica = ?",
    # (key_id, burst, now)
    "bucket": "INSERT INTO serve_rate_buckets (key_id, tokens, stamp) VALUES (?, ?, ?) "
              "ON CONFLICT DO NOTHING",
    "lock_bucket": "UPDATE serve_rate_buckets SET stamp = stamp WHERE key_id = ? "
                   "RETURNING tokens, stamp",
    "take": "UPDATE serve_rate_buckets SET tokens = ?, stamp = ? WHERE key_id = ?",
}


def _for_driver(sql: str, dialect: str) -> str:
    return sql.replace("?", "%s") if dialect == "postgresql" else sql


def _retryable(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    # 40P01 deadlock_detected, 40001 serialization_failure (PostgreSQL appendix A);
    # SQLite reports a held write lock as OperationalError "database is locked".
    return bool(exc.connection_invalidated) or sqlstate in ("40P01", "40001") or (
        isinstance(exc, OperationalError) and "locked" in str(exc.orig).lower())


def key_scope(key_id: str) -> str:
    return f"key:{key_id}"


def project_scope(project: str) -> str:
    return f"project:{project}"


class LedgerSql:
    """One replica's transactions on the shared ledger (see the module docstring).

    Each method is one transaction on a connection of its own, so threads may
    call them concurrently.
    """

    def __init__(self, engine: Engine, replica: str, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        name = engine.dialect.name
        if name not in ("postgresql", "sqlite"):
            raise ShoestringError(f"metering does not support the {name!r} database",
                                  hint="use SQLite (one server) or PostgreSQL (replicas)")
        self.engine, self.replica, self._sleep = engine, replica, sleep
        self._dialect = name
        self._sql = {k: _for_driver(v, name) for k, v in _SQL.items()}
        self._insert_cache: dict[int, str] = {}
        self._known: set[tuple[str, str]] = set()  # counter rows known to exist

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        for attempt in range(MAX_ATTEMPTS):
            try:
                with self.engine.connect() as conn, conn.begin():
                    return work(conn)
            except DBAPIError as exc:
                if not _retryable(exc) or attempt == MAX_ATTEMPTS - 1:
                    raise
                self._sleep(0.005 * 2**attempt)
        raise AssertionError("unreachable")

    def _x(self, conn: Connection, name: str, params=()):
        return conn.exec_driver_sql(self._sql[name], params)

    # -- recording events -------------------------------------------------------------------

    def apply(self, records: list[list], reached: Position | None) -> None:
        """Record logged events (:data:`~shoestring.serve.usage_log.FIELDS` order) and the
        log position they reach, in one transaction."""
        # Per event, only C-level work where possible: the first LOGGED_COLS fields of a
        # record are its row (the Idempotency-Key columns stay NULL), and the counters get
        # one sum per (key, project, month, leased flags) rather than one update per event.
        totals: dict[tuple, list[int]] = {}
        for r in records:
            k = (r[1], r[2], r[10], r[11], r[12])
            t = totals.get(k)
            if t is None:
                totals[k] = [r[6], r[7]]
            else:
                t[0] += r[6]
                t[1] += r[7]

        def work(conn: Connection) -> list[tuple[str, str]]:
            self._insert(conn, records, LOGGED_COLS)
            ensured = self._settle(conn, ((key_id, project, period, t[0], t[1], k_leased,
                                           p_leased)
                                          for (key_id, project, period, k_leased, p_leased), t
                                          in totals.items()))
            if reached is not None:
                self._x(conn, "checkpoint", (self.replica, reached.segment, reached.offset,
                                             _stamp()))
            return ensured

        self._known.update(self._transaction(work))

    def commit_keyed(self, events: list[UsageEvent]) -> list[ChargeResult]:
        """Record events that carry an Idempotency-Key, at once: the first of a key is
        charged, any later one (in this group or already recorded) is a duplicate."""
        first_of: dict[tuple[str, str], UsageEvent] = {}
        fresh = []
        for ev in events:
            k = (ev.key_id, ev.idempotency_key)
            if k not in first_of:
                first_of[k] = ev
                fresh.append(ev)

        def work(conn: Connection) -> tuple[dict[str, ChargeResult], list]:
            results, inserted = {}, []
            for ev in fresh:
                if self._x(conn, "insert_keyed", ev.values()).first() is not None:
                    inserted.append(ev)
                    results[ev.id] = ChargeResult(Outcome.charged)
                else:
                    row = self._x(conn, "stored", (ev.key_id, ev.idempotency_key)).first()
                    results[ev.id] = ChargeResult(Outcome.duplicate, stored=None if row is None
                                                  else Stored(row[0], row[1], row[2]))
            ensured = self._settle(conn, ((e.key_id, e.project, e.period, e.units,
                                           e.cost_nano_usd, e.key_leased, e.project_leased)
                                          for e in inserted))
            return results, ensured

        results, ensured = self._transaction(work)
        self._known.update(ensured)
        out = []
        for ev in events:
            if ev.id in results:
                out.append(results[ev.id])
                continue
            first = first_of[(ev.key_id, ev.idempotency_key)]
            res = results[first.id]
            if res.outcome is Outcome.charged:  # the same key twice in one group
                res = ChargeResult(Outcome.duplicate, stored=Stored(
                    first.id, first.request_sha256, first.response_json))
            out.append(res)
        return out

    def _insert(self, conn: Connection, rows: list, width: int = len(EVENT_COLS)) -> None:
        """Insert the first ``width`` fields of each row into the first ``width`` columns."""
        # One multi-row INSERT per chunk rather than executemany: the driver releases and
        # retakes the GIL around every statement step, and each retake waits for the event
        # loop thread, so row-by-row inserts cost the loop far more than the insert itself.
        for i in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[i:i + ROWS_PER_INSERT]
            sql = self._insert_cache.get((len(chunk), width))
            if sql is None:
                marks = "(" + ", ".join("?" for _ in range(width)) + ")"
                sql = self._insert_cache[(len(chunk), width)] = _for_driver(
                    f"INSERT INTO serve_usage_events ({', '.join(EVENT_COLS[:width])}) "
                    "VALUES " + ", ".join(marks for _ in chunk), self._dialect)
            conn.exec_driver_sql(sql, tuple(chain.from_iterable(
                chunk if width == len(chunk[0]) else (row[:width] for row in chunk))))

    def _settle(self, conn: Connection, items: Iterable[tuple]) -> list[tuple[str, str]]:
        """Add (key_id, project, period, units, cost, key_leased, project_leased) to the
        counters and, for leased ones, to this replica's leases: counters first, sorted.
        Returns the counter rows it created (known to exist once committed)."""
        used: dict[tuple[str, str], int] = defaultdict(int)
        leased: dict[tuple[str, str], int] = defaultdict(int)
        for key_id, project, period, units, cost, k_leased, p_leased in items:
            k, p = (key_scope(key_id), period), (project_scope(project), period)
            used[k] += units
            used[p] += cost
            if k_leased:
                leased[k] += units
            if p_leased:
                leased[p] += cost
        ensured = []
        for scope, period in sorted(used):
            if (scope, period) not in self._known:
                self._x(conn, "ensure", (scope, period))
                ensured.append((scope, period))
            self._x(conn, "add", (used[(scope, period)], scope, period))
        for (scope, period), n in sorted(leased.items()):
            self._x(conn, "settle", (n, n, n, self.replica, scope, period))
        return ensured

    def lookup(self, key_id: str, idempotency_key: str) -> Stored | None:
        """The stored response of an earlier request with this Idempotency-Key, if any."""
        with self.engine.connect() as conn:
            row = self._x(conn, "stored", (key_id, idempotency_key)).first()
        return None if row is None else Stored(row[0], row[1], row[2])

    def checkpoint(self) -> Position | None:
        """How far this replica's log has been recorded (None: never)."""
        with self.engine.connect() as conn:
            row = self._x(conn, "read_checkpoint", (self.replica,)).first()
        return None if row is None else Position(int(row[0]), int(row[1]))

    # -- leases -----------------------------------------------------------------------------

    def grant(self, scope: str, period: str, limit: int, need: int, want: int, now: float,
              ttl_s: float, step: int = 1) -> tuple[int, int]:
        """Lease up to ``want`` (at least ``need``) units of a limited counter.

        Beyond ``need``, whole ``step``s (one request's units) are granted, so a
        replica is not left holding a slice too small for any request. Returns
        (units granted, room there was): 0 granted when less than ``need`` is
        left. Expired leases of other replicas are reclaimed first.
        """
        def work(conn: Connection) -> tuple[int, int]:
            self._x(conn, "ensure", (scope, period))  # takes SQLite's write lock first
            used = int(self._x(conn, "lock", (scope, period)).scalar())
            self._x(conn, "reclaim", (scope, period, now, self.replica))
            held = int(self._x(conn, "held", (scope, period)).scalar() or 0)
            room = limit - used - held
            if room < need:
                return 0, max(room, 0)
            # At most half of what is left (at least ``need``): another replica still finds
            # room, and the last units of a limit are shared finely.
            extra = max(0, min(want, room // 2) - need) // step * step
            n = need + extra
            self._x(conn, "lease", (self.replica, scope, period, n, now + ttl_s, n,
                                    now + ttl_s))
            return n, room

        return self._transaction(work)

    def renew(self, now: float, ttl_s: float) -> None:
        """Extend every lease this replica still holds units of."""
        self._transaction(lambda conn: self._x(conn, "renew", (now + ttl_s, self.replica)))

    def release_all(self) -> None:
        """Give back every unspent unit this replica holds (after its log is recorded)."""
        self._transaction(lambda conn: self._x(conn, "release", (self.replica,)))

    def take_tokens(self, key_id: str, rate: float, burst: int, want: int, now: float
                    ) -> tuple[int, float]:
        """Take up to ``want`` tokens of a key's shared bucket (token bucket: at most
        ``burst``, refilled at ``rate`` per second). Returns (tokens, seconds until the
        next token when none was left)."""
        def work(conn: Connection) -> tuple[int, float]:
            self._x(conn, "bucket", (key_id, float(burst), now))
            tokens, stamp = self._x(conn, "lock_bucket", (key_id,)).first()
            available = min(float(burst), tokens + max(0.0, now - stamp) * rate)
            n = min(want, int(math.floor(available)))
            self._x(conn, "take", (available - n, now, key_id))
            return n, 0.0 if n else (1.0 - available) / rate

        return self._transaction(work)

    def used(self, scope: str, period: str) -> int:
        """A counter's value (units for ``key:ID``, nano-USD for ``project:NAME``)."""
        with self.engine.connect() as conn:
            v = conn.scalar(select(C.used).where(C.scope == scope, C.period == period))
        return int(v or 0)


def _stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
