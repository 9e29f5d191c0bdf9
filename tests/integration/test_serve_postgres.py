"""Two `shoestring serve` replicas sharing one real PostgreSQL never overshoot a quota.

Needs SHOESTRING_TEST_PG_URL (``make test`` starts a throw-away PostgreSQL on
127.0.0.1 with scripts/ci-postgres.sh and exports it). Without it the tests
skip, except in CI (CI=true), where a missing PostgreSQL is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shoestring.ledger.db import open_ledger
from shoestring.serve.keys import KeyStore
from shoestring.serve.ledger_sql import LedgerSql
from shoestring.serve.loadgen import Request, run_closed_loop
from shoestring.serve.metering import period_of
from shoestring.serve.plans import load_plans
from shoestring.serve.process import ServerProcess
from shoestring.serve.tables import UsageEventRow as E
from shoestring.serve.usage import utc_now

pytestmark = pytest.mark.postgres

PLANS = """
[bulk]
requests_per_second = 100000
burst = 100000
price_per_1000_units_usd = 1.0
[slow]
requests_per_second = 5
burst = 10
price_per_1000_units_usd = 0
"""


@pytest.fixture(scope="module")
def pg_url():
    """A fresh database on the test PostgreSQL server, dropped afterwards."""
    base = os.environ.get("SHOESTRING_TEST_PG_URL")
    if not base:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but SHOESTRING_TEST_PG_URL is not set: scripts/ci-postgres.sh "
                        "should have started PostgreSQL")
        pytest.skip("no PostgreSQL: set SHOESTRING_TEST_PG_URL (make test starts one with "
                    "scripts/ci-postgres.sh)")
    import psycopg

    name = f"shoestring_serve_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.rsplit("/", 1)[0] + "/" + name
    yield url
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def run_dir(digits_run_dir: Path) -> Path:
    return digits_run_dir


@pytest.fixture(scope="module")
def plans_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("plans") / "plans.toml"
    p.write_text(PLANS)
    return p


BODY = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                               "data": [1.0] * 64}]}).encode()


def req(secret: str, idem: str | None = None) -> Request:
    h = [("Authorization", f"Bearer {secret}")] + ([("Idempotency-Key", idem)] if idem else [])
    return Request("/v2/models/digits/infer", BODY, tuple(h))


async def both(servers, loads, concurrency):
    """Run one load per server at the same time."""
    return await asyncio.gather(*(
        run_closed_loop(*srv.host_port, reqs, concurrency, keep_bodies=True)
        for srv, reqs in zip(servers, loads)))


@pytest.fixture(scope="module")
def replicas(pg_url, run_dir, plans_file, tmp_path_factory):
    """Two server processes sharing the one PostgreSQL database, each with its own log."""
    open_ledger(pg_url)  # tables once, as a deployment's migration step would
    args = ["--db", pg_url, "serve", str(run_dir), "--port", "0", "--plans", str(plans_file),
            "--key-cache-seconds", "0", "--usage-log"]
    logs = [tmp_path_factory.mktemp(f"replica-{n}") / "usage-log" for n in "ab"]
    with ServerProcess([*args, str(logs[0])]) as a, ServerProcess([*args, str(logs[1])]) as b:
        yield a, b


def eventually(fetch, done, timeout_s: float = 20.0):
    """``fetch()`` until ``done(value)``: usage reaches the ledger in the background."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_two_replicas_on_one_postgres_never_exceed_a_quota(pg_url, replicas, plans_file):
    store = KeyStore(open_ledger(pg_url), load_plans(plans_file))
    # Three keys in two projects (one with a budget), so the two replicas' group commits
    # lock several counter rows at once: this also exercises the deadlock-free lock order.
    created = [store.create(project=p, plan="bulk", monthly_quota_units=q)
               for p, q in (("red", 150), ("red", 90), ("blue", None))]
    (s1, k1), (s2, k2), (s3, k3) = [(secret, info.id) for secret, info in created]
    store.set_budget("blue", 0.2)  # $1/1000 units: 200 units
    loads = [[req((s1, s2, s3)[i % 3]) for i in range(600)] for _ in range(2)]
    ra, rb = asyncio.run(both(replicas, loads, 16))
    results = [(r, loads[0][r.index]) for r in ra] + [(r, loads[1][r.index]) for r in rb]
    secret_of = {s1: k1, s2: k2, s3: k3}
    ok = Counter(secret_of[q.headers[0][1].split()[1]] for r, q in results if r.status == 200)
    statuses = Counter(r.status for r, _ in results)
    assert set(statuses) <= {200, 429}, statuses
    # 400 requests per key were sent across both replicas; each limit is met exactly.
    assert ok == {k1: 150, k2: 90, k3: 200}, ok
    engine = open_ledger(pg_url)

    def charged_per_key():
        with engine.connect() as c:
            return Counter(dict(c.execute(select(E.key_id, func.count())
                                          .group_by(E.key_id)).all()))

    charged = eventually(charged_per_key, lambda got: got == ok)
    assert charged == ok
    month = period_of(utc_now())
    meter = LedgerSql(engine, "reader")
    assert (meter.used(f"key:{k1}", month), meter.used(f"key:{k2}", month)) == (150, 90)
    assert meter.used("project:blue", month) == 200 * 10**6  # $0.2 in nano-dollars
    print(f"\nPostgreSQL, 2 replicas x 600 requests: 200s per key {dict(ok)} "
          f"(quotas 150, 90; budget 200 units), ledger {dict(charged)}, 429s {statuses[429]}")


def test_an_idempotent_request_sent_to_both_replicas_is_charged_once(pg_url, replicas,
                                                                       plans_file):
    store = KeyStore(open_ledger(pg_url), load_plans(plans_file))
    secret, info = store.create(project="green", plan="bulk")
    loads = [[req(secret, f"pay-{i % 25}") for i in range(100)] for _ in range(2)]
    ra, rb = asyncio.run(both(replicas, loads, 8))
    assert all(r.status == 200 for r in ra + rb)
    ids: dict[str, set[str]] = {}
    for rs, load in ((ra, loads[0]), (rb, loads[1])):
        for r in rs:
            ids.setdefault(load[r.index].headers[1][1], set()).add(
                json.loads(r.body)["parameters"]["usage_id"])
    assert len(ids) == 25 and all(len(v) == 1 for v in ids.values())
    with open_ledger(pg_url).connect() as c:
        n = c.scalar(select(func.count()).select_from(E).where(E.key_id == info.id))
    assert n == 25


def test_a_rate_limit_holds_across_both_replicas(pg_url, replicas, plans_file):
    """A key's token bucket is shared: the replicas together admit at most burst + rate × t
    (each alone would admit that much: twice as many in all)."""
    secret, _ = KeyStore(open_ledger(pg_url), load_plans(plans_file)).create(project="slow",
                                                                           plan="slow")
    loads = [[req(secret) for _ in range(60)] for _ in range(2)]
    t0 = time.monotonic()
    ra, rb = asyncio.run(both(replicas, loads, 4))
    elapsed = time.monotonic() - t0
    statuses = Counter(r.status for r in ra + rb)
    assert set(statuses) <= {200, 429}
    ok = statuses[200]
    print(f"\nrate 5/s, burst 10, 120 requests over 2 replicas in {elapsed:.2f} s: {ok} admitted "
          f"(a global bucket allows at most {10 + 5 * elapsed:.1f})")
    assert 5 <= ok <= 10 + 5 * elapsed + 1
