"""The runs rows written with sqlite3 (training's fast path) equal those the ORM writes."""

import sqlite3
import subprocess
import sys

import pytest

from shoestring.errors import ShoestringError
from shoestring.ledger import sqlite_runs
from shoestring.ledger.db import open_ledger
from shoestring.ledger.migrations import HEAD
from shoestring.ledger.runs import RunLedger

RUN = {"name": "r", "model": "seed-mlp", "data": "fashion-mnist", "out_dir": "/runs/r",
       "config": {"train": {"epochs": 10}}, "device": "cpu", "kind": "finetune",
       "parent_id": "p" * 36, "price_per_hour_nano_usd": 1_230_000_000}
END = {"status": "finished", "metrics": {"test_accuracy": 0.87}, "wall_seconds": 4.5,
       "cost_nano_usd": 1537, "stop_reason": "all epochs done"}


def _row(path, run_id) -> dict:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        row = dict(conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())
    return {k: v for k, v in row.items() if k not in ("id", "started_at", "finished_at")}


def test_schema_head_matches_the_migrations():
    assert sqlite_runs.SCHEMA_HEAD == HEAD


def test_plain_rows_equal_orm_rows(tmp_path):
    path = tmp_path / "ledger.db"
    orm = RunLedger(f"sqlite:///{path}")       # a new file: migrated through SQLAlchemy
    plain = RunLedger(f"sqlite:///{path}")     # now up to date: sqlite3
    assert orm._plain is None and plain._plain == path
    for ledger, run_id in ((orm, "a" * 36), (plain, "b" * 36)):
        assert ledger.start(run_id=run_id, **RUN) == run_id
    assert _row(path, "a" * 36) == _row(path, "b" * 36)
    assert _row(path, "b" * 36)["status"] == "running"
    for ledger, run_id in ((orm, "a" * 36), (plain, "b" * 36)):
        ledger.finish(run_id, **END, error="boom")
    assert _row(path, "a" * 36) == _row(path, "b" * 36)
    got = orm.get("b" * 36)                    # read back through the ORM
    assert (got.status, got.metrics, got.cost_nano_usd, got.error, bool(got.finished_at)) == \
        ("finished", {"test_accuracy": 0.87}, 1537, "boom", True)
    orm.close()
    plain.close()


def test_plain_path_reopens_a_resumed_run_and_refuses_unknown_ids(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    open_ledger(url).dispose()
    ledger = RunLedger(url)
    assert ledger._plain is not None
    run_id = ledger.start(**RUN)
    ledger.finish(run_id, status="interrupted", metrics={}, wall_seconds=1.0, cost_nano_usd=5,
                  stop_reason="stopped by signal", error="x")
    assert ledger.start(run_id=run_id, **RUN) == run_id
    row = ledger.get(run_id)
    assert (row.status, row.finished_at, row.stop_reason, row.error, row.cost_nano_usd) == \
        ("running", None, None, None, 5)
    assert len(ledger.list()) == 1
    with pytest.raises(ShoestringError, match="not in the ledger"):
        ledger.finish("nope", status="failed", metrics={}, wall_seconds=0, cost_nano_usd=0)
    with pytest.raises(ValueError):
        ledger.finish(run_id, status="exploded", metrics={}, wall_seconds=0, cost_nano_usd=0)


def test_other_files_go_through_sqlalchemy(tmp_path):
    assert not sqlite_runs.up_to_date_file(None)
    assert not sqlite_runs.up_to_date_file(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    assert not sqlite_runs.up_to_date_file(junk)
    old = tmp_path / "old.db"
    url = f"sqlite:///{old}"
    open_ledger(url).dispose()
    with sqlite3.connect(old) as conn:
        conn.execute("DELETE FROM schema_version WHERE version = ?", (HEAD,))
    assert not sqlite_runs.up_to_date_file(old)   # needs a migration: the ORM path does it
    ledger = RunLedger(url)
    assert ledger._plain is None and sqlite_runs.up_to_date_file(old)
    ledger.close()


def test_training_records_a_run_without_importing_sqlalchemy(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    open_ledger(url).dispose()
    code = f"""
import sys
import shoestring.cli.main, shoestring.cli.train, shoestring.train.api
from shoestring.ledger.runs import RunLedger
ledger = RunLedger({url!r})
run_id = ledger.start(name="n", model="m", data="d", out_dir="/o", config={{}})
ledger.finish(run_id, status="finished", metrics={{}}, wall_seconds=1.0, cost_nano_usd=0)
print(sorted(m for m in sys.modules if m.split(".")[0] == "sqlalchemy"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    assert RunLedger(url).list()[0].status == "finished"
