"""Metering's parts on a real SQLite ledger and real log files: leases, the usage log,
the reconciler, idempotency, shared rate buckets."""

import os
import stat
import threading
import uuid
from datetime import datetime, timezone

import orjson
import pytest
from sqlalchemy import func, select

from shoestring.errors import ShoestringError
from shoestring.ledger.db import open_ledger
from shoestring.serve.ledger_sql import LedgerSql
from shoestring.serve.metering import Outcome, UsageEvent, period_of, seconds_to_next_period
from shoestring.serve.reconciler import Reconciler
from shoestring.serve.tables import LeaseRow, UsageEventRow
from shoestring.serve.usage_log import UsageLog, read_records


def event(when, key="k1", project="p", units=1, cost=10, idem=None, response=None,
          key_leased=False, project_leased=False):
    return UsageEvent(id=uuid.uuid4().hex, key_id=key, project=project, plan="pro", model="m",
                      version="1", units=units, cost_nano_usd=cost, latency_ms=1.0,
                      created_at=when, idempotency_key=idem,
                      request_sha256="h" if idem else None, response_json=response,
                      key_leased=key_leased, project_leased=project_leased)


def count_events(engine, **where):
    q = select(func.count()).select_from(UsageEventRow)
    for k, v in where.items():
        q = q.where(getattr(UsageEventRow, k) == v)
    with engine.connect() as c:
        return c.scalar(q)


@pytest.fixture
def engine(db_url):
    return open_ledger(db_url)


def test_periods_are_utc_months():
    t = datetime(2026, 12, 31, 23, 59, 30, tzinfo=timezone.utc)
    assert period_of(t) == "2026-12"
    assert seconds_to_next_period(t) == 30


def test_leases_never_exceed_a_limit_and_leave_room_for_others(engine):
    a, b = LedgerSql(engine, "a"), LedgerSql(engine, "b")
    # At most half of what is left per grant (at least what is needed).
    assert a.grant("key:k", "2026-05", 10, need=1, want=64, now=0, ttl_s=30) == (5, 10)
    assert b.grant("key:k", "2026-05", 10, need=1, want=64, now=0, ttl_s=30) == (2, 5)
    assert a.grant("key:k", "2026-05", 10, need=3, want=3, now=0, ttl_s=30) == (3, 3)
    assert b.grant("key:k", "2026-05", 10, need=1, want=1, now=0, ttl_s=30) == (0, 0)
    # A replica records 4 of its 8 and gives the rest back: room for the other.
    a.apply([event(datetime(2026, 5, 1, tzinfo=timezone.utc), key="k", units=4,
                   key_leased=True).record()], None)
    assert a.used("key:k", "2026-05") == 4
    a.release_all()
    assert b.grant("key:k", "2026-05", 10, need=4, want=4, now=0, ttl_s=30) == (4, 4)


def test_budget_leases_come_in_whole_requests(engine):
    """A slice smaller than one request would be stranded: grants are whole requests."""
    a = LedgerSql(engine, "a")
    cost = 10**6  # one request
    assert a.grant("project:p", "2026-05", 3 * cost, need=cost, want=64 * cost, now=0,
                   ttl_s=30, step=cost) == (cost, 3 * cost)  # not half of the room (1.5)
    assert a.grant("project:p", "2026-05", 3 * cost, need=cost, want=64 * cost, now=0,
                   ttl_s=30, step=cost) == (cost, 2 * cost)


def test_concurrent_replicas_never_lease_more_than_the_limit(db_url):
    """Four replicas (threads, as four processes would) race for one key's 50 units."""
    open_ledger(db_url)
    granted, errors = [], []

    def replica(name):
        sql = LedgerSql(open_ledger(db_url), name)
        try:
            for _ in range(40):
                n, _room = sql.grant("key:k", "2026-05", 50, need=1, want=3, now=0, ttl_s=30)
                granted.append(n)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(granted) == 50


def test_a_vanished_replicas_expired_lease_is_reclaimed(engine):
    dead, alive = LedgerSql(engine, "dead"), LedgerSql(engine, "alive")
    assert dead.grant("key:k", "2026-05", 10, 5, 5, now=100, ttl_s=30) == (5, 10)
    assert alive.grant("key:k", "2026-05", 10, 6, 6, now=110, ttl_s=30) == (0, 5)
    assert alive.grant("key:k", "2026-05", 10, 6, 6, now=131, ttl_s=30) == (6, 10)  # expired
    # The dead replica's log, recorded late, still counts: its lease is not held negative.
    dead.apply([event(datetime(2026, 5, 1, tzinfo=timezone.utc), key="k", units=2,
                      key_leased=True).record()], None)
    with engine.connect() as c:
        rows = {r.replica: r for r in c.execute(select(LeaseRow))}
    assert rows["dead"].granted == rows["dead"].settled == 2
    assert dead.used("key:k", "2026-05") == 2


def test_idempotency_keys_charge_once_across_and_within_groups(engine, may_2026):
    sql = LedgerSql(engine, "r")
    first = event(may_2026, idem="retry-1", response='{"ok": 1}')
    assert sql.commit_keyed([first])[0].outcome is Outcome.charged
    again = event(may_2026, idem="retry-1", response='{"ok": 2}')
    res = sql.commit_keyed([again])[0]
    assert res.outcome is Outcome.duplicate
    assert res.stored.event_id == first.id and res.stored.response_json == '{"ok": 1}'
    twins = [event(may_2026, idem="retry-2", response='{"n": 1}'),
             event(may_2026, idem="retry-2", response='{"n": 2}')]
    out = sql.commit_keyed(twins)
    assert [r.outcome for r in out] == [Outcome.charged, Outcome.duplicate]
    assert out[1].stored.event_id == twins[0].id
    assert count_events(engine) == 2 and sql.used("key:k1", "2026-05") == 2
    assert sql.lookup("k1", "retry-1").event_id == first.id
    assert sql.lookup("k1", "never") is None
    # The same Idempotency-Key under another API key is another request.
    assert sql.commit_keyed([event(may_2026, key="k2", idem="retry-1")])[0].outcome \
        is Outcome.charged


def test_rate_buckets_are_shared_by_replicas(engine):
    a, b = LedgerSql(engine, "a"), LedgerSql(engine, "b")
    assert a.take_tokens("k", rate=2.0, burst=4, want=3, now=0.0) == (3, 0.0)
    assert b.take_tokens("k", rate=2.0, burst=4, want=3, now=0.0) == (1, 0.0)
    n, wait = a.take_tokens("k", rate=2.0, burst=4, want=1, now=0.25)  # half a token
    assert n == 0 and wait == pytest.approx(0.25)
    assert b.take_tokens("k", rate=2.0, burst=4, want=9, now=10.0) == (4, 0.0)  # burst caps


def test_the_usage_log_is_private_locked_and_ignores_torn_records(tmp_path, may_2026):
    log = UsageLog(tmp_path / "log")
    with pytest.raises(ShoestringError, match="in use by another server"):
        UsageLog(tmp_path / "log")
    evs = [event(may_2026) for _ in range(3)]
    end = log.append(orjson.dumps([e.record() for e in evs]))
    (segment,) = log.segments()
    assert stat.S_IMODE(segment.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "log").stat().st_mode) == 0o700
    with open(segment, "ab") as f:  # a crash in the middle of the next write
        f.write(b"\x40\x00\x00\x00garbage")
    (got,) = list(read_records(segment))  # one group commit, one record
    assert [fields[0] for fields in got[1]] == [e.id for e in evs]
    assert got[0] == end.offset
    log.close()
    UsageLog(tmp_path / "log").close()  # the lock is released with the log


def test_a_log_of_one_usage_record_per_log_record_is_still_read(tmp_path, may_2026):
    """Logs written before group records (one event each) replay after an upgrade."""
    log = UsageLog(tmp_path / "log")
    evs = [event(may_2026) for _ in range(2)]
    for e in evs:  # the earlier layout: each payload is one event's fields
        log.append(orjson.dumps(e.record()))
    log.append(orjson.dumps([e.record() for e in evs]))  # then a group
    (segment,) = log.segments()
    got = [fields[0] for _, group in read_records(segment) for fields in group]
    assert got == [e.id for e in evs] * 2
    log.close()


def test_a_crash_after_logging_is_recorded_once_at_the_next_start(tmp_path, engine, may_2026):
    """The log of a killed server is replayed into the ledger exactly once."""
    log = UsageLog(tmp_path / "log")
    sql = LedgerSql(engine, log.replica)
    assert sql.grant("key:k1", "2026-05", 100, 10, 10, now=0, ttl_s=1e9)[0] == 10
    first = [event(may_2026, key_leased=True) for _ in range(4)]
    log.append(orjson.dumps([e.record() for e in first]))
    rec = Reconciler(log, sql)
    assert rec.recover() == 4  # recorded while serving would go the same way
    second = [event(may_2026, key_leased=True) for _ in range(3)]
    log.append(orjson.dumps([e.record() for e in second]))
    log.close()  # killed: the reconciler never saw these three
    again = UsageLog(tmp_path / "log")
    assert again.replica == log.replica
    rec = Reconciler(again, LedgerSql(engine, again.replica))
    assert rec.recover() == 3
    assert Reconciler(again, LedgerSql(engine, again.replica)).recover() == 0  # never twice
    assert count_events(engine) == 7 and sql.used("key:k1", "2026-05") == 7
    with engine.connect() as c:  # every unspent unit of the lease was given back
        lease = c.execute(select(LeaseRow)).one()
    assert lease.granted == lease.settled == 7
    assert [p.name for p in again.segments()] == ["usage-00000002.log"]  # recorded ones gone
    again.close()


def test_the_reconciler_thread_records_while_serving(tmp_path, engine, may_2026):
    log = UsageLog(tmp_path / "log", durable=False)
    sql = LedgerSql(engine, log.replica)
    rec = Reconciler(log, sql, interval_s=0.01)
    rec.recover()
    rec.start()
    for _ in range(5):
        log.append(orjson.dumps([event(may_2026).record() for _ in range(100)]))
    assert rec.flush(10)
    assert count_events(engine) == 500
    rec.close()
    log.close()
    assert os.listdir(tmp_path / "log")  # the log stays, emptied of recorded segments
