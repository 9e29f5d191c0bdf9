"""The versioned ledger on a real PostgreSQL: a new one has the ORM's schema, and a ledger
release 0.1 wrote (restored from its pg_dump) upgrades in place, once, even when several
processes open it together."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fixture_db import RELEASE_0_1, fresh_pg_database, restore_pg_dump
from ledger_schema import schema_differences
from sqlalchemy import text

from shoestring.ledger.db import open_ledger
from shoestring.ledger.migrations import HEAD, current_version, history
from shoestring.ledger.runs import RunLedger

pytestmark = pytest.mark.postgres

OPEN_AND_REPORT = """
import sys
from shoestring.ledger.db import open_ledger
from shoestring.ledger.migrations import current_version
print(current_version(open_ledger(sys.argv[1])))
"""


def test_a_new_postgres_ledger_has_exactly_the_orm_schema():
    with fresh_pg_database("shoestring_ledger") as url:
        engine = open_ledger(url)
        try:
            assert current_version(engine) == HEAD
            assert schema_differences(engine) == []
        finally:
            engine.dispose()


def test_a_release_0_1_postgres_ledger_upgrades_once_under_concurrent_opens():
    with fresh_pg_database("shoestring_ledger") as url:
        restore_pg_dump(url, RELEASE_0_1 / "ledger-postgres.sql")
        procs = [subprocess.Popen([sys.executable, "-c", OPEN_AND_REPORT, url],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
        assert [o.strip() for o, _ in outs] == [str(HEAD)] * 4
        engine = open_ledger(url)
        try:
            assert [h["version"] for h in history(engine)] == list(range(1, HEAD + 1))
            assert schema_differences(engine) == []
            with engine.connect() as c:
                row = c.execute(text("SELECT name, kind, cost_nano_usd, stop_reason FROM runs"))
                assert [tuple(r) for r in row] == [("pg-run", "train", 900_000, None)]
                assert c.scalar(text("SELECT sum(cost_nano_usd) FROM serve_usage_events")) \
                    == 1_000 * (1 + 2 + 3 + 1 + 2)
        finally:
            engine.dispose()
        ledger = RunLedger(url)
        try:
            rid = ledger.start(name="after", model="m", data="d", out_dir="x", config={},
                               kind="compress", parent_id="pg-run-id")
            ledger.finish(rid, status="finished", metrics={}, wall_seconds=2.0,
                          cost_nano_usd=123, stop_reason="done")
            assert (ledger.get(rid).cost_nano_usd, ledger.get(rid).parent_id) == (123, "pg-run-id")
        finally:
            ledger.close()
