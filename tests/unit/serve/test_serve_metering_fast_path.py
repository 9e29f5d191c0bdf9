"""The metered hot path: holds taken without waiting, group commit released only after the
log append, and the key cache keyed by the header (real SQLite ledger, real log files)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from shoestring.ledger.db import open_ledger
from shoestring.serve.allowances import Allowances
from shoestring.serve.auth import Authenticator
from shoestring.serve.billing import Billing
from shoestring.serve.keys import KeyStore
from shoestring.serve.ledger_sql import LedgerSql, key_scope
from shoestring.serve.ledger_writer import LedgerWriter
from shoestring.serve.metering import Outcome
from shoestring.serve.plans import load_plans
from shoestring.serve.protocol import ProtocolError
from shoestring.serve.reconciler import Reconciler
from shoestring.serve.usage import utc_now
from shoestring.serve.usage_log import UsageLog, read_records

PLAN = "[t]\nrequests_per_second = {rate}\nburst = {burst}\nprice_per_1000_units_usd = 1.0\n"


class SlowLog(UsageLog):
    """A usage log whose appends wait until the test lets them finish (a slow disk)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.go = threading.Event()
        self.appended = threading.Event()

    def append(self, payload: bytes):
        self.go.wait(10)
        pos = super().append(payload)
        self.appended.set()
        return pos


def metered(tmp: Path, *, rate: float = 1e6, burst: int = 10**6, quota: int | None = None,
            log_cls=UsageLog) -> SimpleNamespace:
    plans_file = tmp / "plans.toml"
    plans_file.write_text(PLAN.format(rate=rate, burst=burst))
    plans = load_plans(plans_file)
    engine = open_ledger(f"sqlite:///{tmp / 'ledger.db'}")
    keys = KeyStore(engine, plans)
    secret, info = keys.create(project="p", plan="t", monthly_quota_units=quota)
    pool = ThreadPoolExecutor(2)
    log = log_cls(tmp / "log", durable=True)
    sql = LedgerSql(engine, log.replica)
    billing = Billing(Authenticator(keys, plans, pool, 60.0, time.perf_counter), pool,
                      clock=time.perf_counter, now=utc_now)
    writer = LedgerWriter(log, sql)
    billing.attach(sql, writer, Allowances(sql, pool))
    return SimpleNamespace(billing=billing, writer=writer, log=log, sql=sql, engine=engine,
                           pool=pool, key_id=info.id,
                           headers={"authorization": f"Bearer {secret}"})


async def reserve(billing: Billing, who, units: int = 1):
    """As Service does: the hold without waiting when possible, else awaited from there."""
    g = billing.reserve_now(who, "m", "1", units, time.perf_counter())
    if g is None or not g.held:
        g = await billing.reserve(who, "m", "1", units, partial=g)
    return g


def test_answers_are_released_only_after_their_group_is_in_the_log(tmp_path):
    m = metered(tmp_path, log_cls=SlowLog)

    async def main():
        m.writer.start(asyncio.get_running_loop())
        who = await m.billing.authenticate(m.headers)
        grants = [await reserve(m.billing, who) for _ in range(5)]
        fut = m.billing.charge_many(grants, [1] * 5, [b"{}"] * 5)
        await asyncio.sleep(0.2)
        assert not fut.done()  # the append (write + sync) has not returned: no answer yet
        m.log.go.set()
        results = await asyncio.wait_for(fut, 10)
        assert m.log.appended.is_set()
        assert [r.outcome for r in results] == [Outcome.charged] * 5
        ids = [r[0] for _, group in read_records(m.log.segments()[-1]) for r in group]
        assert ids == [g.usage_id for g in grants]  # what was answered is in the log, whole

    asyncio.run(main())
    m.writer.close()
    m.log.close()
    m.pool.shutdown()


def test_held_requests_need_no_await_and_a_quota_is_never_exceeded(tmp_path):
    m = metered(tmp_path, quota=25)

    async def main():
        m.writer.start(asyncio.get_running_loop())
        who = await m.billing.authenticate(m.headers)
        first = await reserve(m.billing, who)  # leases a block from the ledger
        later = m.billing.reserve_now(who, "m", "1", 1, time.perf_counter())
        assert later is not None and later.held  # taken from the lease, no coroutine

        async def one():
            try:
                g = await reserve(m.billing, who)
            except ProtocolError as exc:
                assert exc.status == 429
                return None
            await asyncio.sleep(0)
            return g

        rest = [g for g in await asyncio.gather(*(one() for _ in range(60))) if g is not None]
        grants = [first, later, *rest]
        assert len(grants) == 25  # exactly the quota, however the holds were taken
        results = await m.billing.charge_many(grants, [1] * 25, [b"{}"] * 25)
        for g, r in zip(grants, results):
            assert m.billing.answer(g, 1, r, b"{}").status == 200

    asyncio.run(main())
    m.writer.close()
    rec = Reconciler(m.log, LedgerSql(m.engine, m.log.replica))
    rec.recover()
    assert m.sql.used(key_scope(m.key_id), m.billing._period(utc_now())) == 25
    m.log.close()
    m.pool.shutdown()


def test_a_request_continued_after_a_partial_hold_takes_one_rate_token(tmp_path):
    # A request that took its rate token without waiting, then had to await a quota lease,
    # goes on from there: it must not take a second token.
    m = metered(tmp_path, quota=1000)
    allowances = m.billing.allowances
    token_leases = []
    real = m.sql.take_tokens
    m.sql.take_tokens = lambda *a: token_leases.append(a) or real(*a)  # a spy: still real

    async def main():
        who = await m.billing.authenticate(m.headers)
        first = await reserve(m.billing, who)  # leases tokens and a block of the quota
        assert first.held and len(token_leases) == 1
        scope = key_scope(m.key_id)
        left = allowances._units[(scope, first.period)].available
        assert left > 0 and allowances.take_now(scope, first.period, left)  # spend the block
        allowances._tokens[m.key_id].available = 1  # exactly one token held here
        g = m.billing.reserve_now(who, "m", "1", 1, time.perf_counter())
        assert g.token and not g.key_leased and not g.held  # token taken, quota not
        assert allowances._tokens[m.key_id].available == 0
        g = await m.billing.reserve(who, "m", "1", 1, partial=g)
        assert g.held and g.key_leased
        assert len(token_leases) == 1  # no second token asked of the ledger
        assert allowances._tokens[m.key_id].available == 0

    asyncio.run(main())
    m.log.close()
    m.pool.shutdown()


def test_the_key_cache_answers_from_the_header_and_still_refuses_bad_ones(tmp_path):
    m = metered(tmp_path)

    async def main():
        auth = m.billing.auth
        assert auth.cached(m.headers["authorization"]) is None  # not looked up yet
        who = await auth.authenticate(m.headers["authorization"])
        assert auth.cached(m.headers["authorization"]) == who
        for bad in (None, "", "Basic abc", "Bearer "):
            with pytest.raises(ProtocolError) as err:
                auth.cached(bad)
            assert err.value.status == 401
        with pytest.raises(ProtocolError) as err:
            await auth.authenticate("Bearer ss_not-a-key")
        assert err.value.status == 401
        with pytest.raises(ProtocolError):  # the miss is cached too, and still refused
            auth.cached("Bearer ss_not-a-key")

    asyncio.run(main())
    m.log.close()
    m.pool.shutdown()


def test_the_billing_month_changes_exactly_at_midnight_utc(tmp_path):
    from datetime import datetime, timedelta, timezone

    m = metered(tmp_path)
    end = datetime(2026, 12, 1, tzinfo=timezone.utc)
    tick = timedelta(microseconds=1)
    assert m.billing._period(end - tick) == "2026-11"
    assert m.billing._period(end) == "2026-12"
    assert m.billing._period(end - tick) == "2026-11"  # a clock stepping back
    new_year = datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert m.billing._period(new_year - tick) == "2026-12"
    assert m.billing._period(new_year) == "2027-01"
    # Another time zone: the month is UTC's.
    assert m.billing._period(datetime(2027, 1, 31, 23, 30, tzinfo=timezone(
        timedelta(hours=-5)))) == "2027-02"
    m.log.close()
    m.pool.shutdown()


def test_a_batch_is_written_to_the_log_where_it_ran_before_charge_batch_returns(tmp_path):
    """The requests without an Idempotency-Key are charged on the calling thread, in one log
    record, with no group handed to the writer thread (no wake-up of the event loop)."""
    m = metered(tmp_path)

    async def main():
        m.writer.start(asyncio.get_running_loop())
        who = await m.billing.authenticate(m.headers)
        grants = [await reserve(m.billing, who) for _ in range(7)]
        appended_on: list[str] = []
        real = m.log.append
        m.log.append = lambda p: appended_on.append(threading.current_thread().name) or real(p)
        results, keyed = await asyncio.to_thread(  # as on the inference thread
            m.billing.charge_batch, grants, [1] * 7, [b"{}"] * 7)
        assert keyed is None and [r.outcome for r in results] == [Outcome.charged] * 7
        assert len(appended_on) == 1 and appended_on[0] != "ss-ledger"
        records = [group for _, group in read_records(m.log.segments()[-1])]
        assert [[r[0] for r in g] for g in records] == [[g.usage_id for g in grants]]
        assert m.writer.groups == 0
        for g, r in zip(grants, results):
            assert m.billing.answer(g, 1, r, b"{}").status == 200

    asyncio.run(main())
    m.writer.close()
    m.log.close()
    m.pool.shutdown()


def test_a_failed_log_write_charges_nobody_and_keyed_requests_still_go_to_the_ledger(
        tmp_path):
    m = metered(tmp_path, quota=10)

    async def main():
        m.writer.start(asyncio.get_running_loop())
        who = await m.billing.authenticate(m.headers)
        plain = [await reserve(m.billing, who) for _ in range(3)]
        keyed = await m.billing.reserve(who, "m", "1", 1, idempotency_key="k1",
                                        request_digest="d1")
        grants = [plain[0], keyed, *plain[1:]]

        def full(_payload):
            raise OSError(28, "No space left on device")

        m.log.append = full
        scope = key_scope(m.key_id)
        units = m.billing.allowances._units[(scope, keyed.period)]
        before = units.available
        results, future = m.billing.charge_batch(grants, [1] * 4, [b"{}"] * 4)
        assert [r and r.outcome for r in results] == [
            Outcome.unrecorded, None, Outcome.unrecorded, Outcome.unrecorded]
        assert future is not None  # the keyed one went to the writer (the SQL ledger)
        (keyed_result,) = await asyncio.wait_for(future, 10)
        assert keyed_result.outcome is Outcome.charged
        replies = [m.billing.answer(g, 1, r or keyed_result, b"{}")
                   for g, r in zip(grants, results)]
        assert [getattr(r, "status", None) for r in replies] == [503, 200, 503, 503]
        assert units.available == before + 3  # the unrecorded units are free again

    asyncio.run(main())
    m.writer.close()
    del m.log.append  # the real one again, to read what was written
    assert [r for p in m.log.segments() for _, g in read_records(p) for r in g] == []
    rec = Reconciler(m.log, LedgerSql(m.engine, m.log.replica))
    rec.recover()
    assert m.sql.used(key_scope(m.key_id), m.billing._period(utc_now())) == 1
    m.log.close()
    m.pool.shutdown()
