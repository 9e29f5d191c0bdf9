import dataclasses
import threading
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from shoestring.ledger.db import open_ledger
from shoestring.serve.metering import Meter, Outcome, UsageEvent, period_of, seconds_to_next_period
from shoestring.serve.tables import UsageEventRow


def event(when, key="k1", project="p", units=1, cost=10, quota=None, budget=None, idem=None,
          response=None):
    return UsageEvent(id=uuid.uuid4().hex, key_id=key, project=project, plan="pro", model="m",
                      version="1", units=units, cost_nano_usd=cost, latency_ms=1.0,
                      created_at=when, key_quota=quota, project_budget_nano_usd=budget,
                      idempotency_key=idem, request_sha256="h" if idem else None,
                      response_json=response)


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


def test_a_quota_admits_exactly_its_units_in_arrival_order(engine, may_2026):
    m = Meter(engine)
    evs = [event(may_2026, quota=5, units=2) for _ in range(4)]  # 2+2 fit, then 2 > 1 left
    out = m.charge(evs)
    assert [r.outcome for r in out] == [Outcome.charged, Outcome.charged,
                                         Outcome.quota_exceeded, Outcome.quota_exceeded]
    one = m.charge([event(may_2026, quota=5, units=1)])  # the last unit still fits
    assert one[0].outcome is Outcome.charged and one[0].key_used == 5
    assert m.used("key:k1", "2026-05") == 5
    assert count_events(engine) == 3  # refused events leave no row


def test_quotas_are_per_month(engine, may_2026):
    m = Meter(engine)
    assert m.charge([event(may_2026, quota=1)])[0].outcome is Outcome.charged
    assert m.charge([event(may_2026, quota=1)])[0].outcome is Outcome.quota_exceeded
    june = datetime(2026, 6, 1, tzinfo=timezone.utc)
    assert m.charge([event(june, quota=1)])[0].outcome is Outcome.charged


def test_a_project_budget_caps_all_its_keys(engine, may_2026):
    m = Meter(engine)
    out = m.charge([event(may_2026, key=k, cost=40, budget=100) for k in ("b", "a", "a")])
    # Within one commit, keys are charged in lock order (by id): a, a, then b is refused.
    assert [r.outcome for r in out] == [Outcome.budget_exceeded, Outcome.charged,
                                         Outcome.charged]
    assert m.used("project:p", "2026-05") == 80
    assert m.used("key:b", "2026-05") == 0  # the refused event charged nothing
    assert m.charge([event(may_2026, key="c", cost=20, budget=100)])[0].outcome \
        is Outcome.charged  # exactly the budget
    assert m.charge([event(may_2026, key="c", cost=1, budget=100)])[0].outcome \
        is Outcome.budget_exceeded


def test_idempotency_keys_charge_once_across_and_within_groups(engine, may_2026):
    m = Meter(engine)
    first = event(may_2026, idem="retry-1", response='{"ok": 1}')
    assert m.charge([first])[0].outcome is Outcome.charged
    again = dataclasses.replace(first, id=uuid.uuid4().hex, response_json='{"ok": 2}')
    res = m.charge([again])[0]
    assert res.outcome is Outcome.duplicate
    assert res.stored.event_id == first.id and res.stored.response_json == '{"ok": 1}'
    twins = [event(may_2026, idem="retry-2", response='{"n": 1}'),
             event(may_2026, idem="retry-2", response='{"n": 2}')]
    out = m.charge(twins)
    assert [r.outcome for r in out] == [Outcome.charged, Outcome.duplicate]
    assert out[1].stored.event_id == twins[0].id
    assert count_events(engine) == 2 and m.used("key:k1", "2026-05") == 2
    assert m.lookup("k1", "retry-1").event_id == first.id
    assert m.lookup("k1", "never") is None
    # The same Idempotency-Key under another API key is another request.
    other = event(may_2026, key="k2", idem="retry-1")
    assert m.charge([other])[0].outcome is Outcome.charged


def test_concurrent_meters_never_exceed_a_quota(db_url, may_2026):
    """Four writers (as four replicas would) race for one key's 50 units on SQLite."""
    quota, results, errors = 50, [], []

    def writer():
        m = Meter(open_ledger(db_url))
        try:
            for _ in range(10):
                results.extend(r.outcome for r in m.charge(
                    [event(may_2026, quota=quota) for _ in range(3)]))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    open_ledger(db_url)  # tables first, as a deployment would
    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results.count(Outcome.charged) == quota
    assert len(results) == 120
    assert Meter(open_ledger(db_url)).used("key:k1", "2026-05") == quota
