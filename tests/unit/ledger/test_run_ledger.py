import subprocess
import sys

import pytest

from shoestring.errors import ShoestringError
from shoestring.ledger.db import resolve_db_url
from shoestring.ledger.runs import RunLedger


@pytest.fixture
def ledger(tmp_path):
    led = RunLedger(f"sqlite:///{tmp_path / 'l.db'}")
    yield led
    led.close()


def test_start_finish_list(ledger):
    rid = ledger.start(name="a", model="seed-mlp", data="digits", out_dir="/x", config={"k": 1})
    assert ledger.get(rid).status == "running"
    ledger.finish(rid, status="finished", metrics={"test_accuracy": 0.9}, wall_seconds=2.0,
                  cost_nano_usd=10_000_000)
    row = ledger.get(rid)
    assert row.status == "finished" and row.metrics["test_accuracy"] == 0.9
    assert row.config == {"k": 1} and row.finished_at
    assert [r.id for r in ledger.list()] == [rid]


def test_reconcile_marks_dead_processes_killed(ledger):
    rid = ledger.start(name="b", model="m", data="d", out_dir="/x", config={})
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    from sqlalchemy.orm import Session

    from shoestring.ledger.runs import RunRecord

    with Session(ledger.engine) as s, s.begin():
        s.get(RunRecord, rid).pid = proc.pid  # a process that no longer exists
    alive = ledger.start(name="c", model="m", data="d", out_dir="/x", config={})
    assert ledger.reconcile() == 1
    assert ledger.get(rid).status == "killed"
    assert ledger.get(alive).status == "running"


def test_unknown_status_and_run(ledger):
    with pytest.raises(ValueError):
        ledger.finish("nope", status="exploded", metrics={}, wall_seconds=0, cost_nano_usd=0)
    with pytest.raises(ShoestringError, match="not in the ledger"):
        ledger.finish("nope", status="failed", metrics={}, wall_seconds=0, cost_nano_usd=0)


def test_db_url_resolution(tmp_path):
    assert resolve_db_url("sqlite:///a.db", {"SHOESTRING_DB": "x"}, tmp_path) == "sqlite:///a.db"
    assert resolve_db_url(None, {"SHOESTRING_DB": "postgresql://h/db"}, tmp_path) == \
        "postgresql://h/db"
    assert resolve_db_url(None, {}, tmp_path).endswith(".shoestring/ledger.db")


def test_bad_url_is_a_clear_error():
    with pytest.raises(ShoestringError, match="cannot use database URL"):
        RunLedger("nosuchdb://x")
