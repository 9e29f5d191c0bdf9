"""The ledger's schema is versioned: any older ledger upgrades in place, once, and ends up
exactly where a new one starts (SQLite here; PostgreSQL in tests/integration)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from fixture_db import RELEASE_0_1
from ledger_schema import schema_differences
from sqlalchemy import text

from shoestring.errors import ShoestringError
from shoestring.ledger.db import LedgerMissing, open_ledger
from shoestring.ledger.migrations import HEAD, MIGRATIONS, current_version, history, migrate
from shoestring.ledger.runs import RunLedger


def test_migrations_are_numbered_in_order():
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_a_new_ledger_has_exactly_the_orm_schema(tmp_path):
    engine = open_ledger(f"sqlite:///{tmp_path / 'l.db'}")
    assert current_version(engine) == HEAD
    assert [h["version"] for h in history(engine)] == list(range(1, HEAD + 1))
    assert schema_differences(engine) == []
    assert migrate(engine) == []  # nothing left to do, nothing done twice


def test_a_release_0_1_ledger_upgrades_in_place_and_keeps_every_row(tmp_path):
    db = tmp_path / "ledger.db"
    shutil.copy(RELEASE_0_1 / "ledger.db", db)
    engine = open_ledger(f"sqlite:///{db}")
    assert current_version(engine) == HEAD
    assert schema_differences(engine) == []
    with engine.connect() as c:
        runs = {r.name: r for r in c.execute(text(
            "SELECT name, kind, parent_id, status, stop_reason, cost_nano_usd, "
            "price_per_hour_nano_usd, metrics_json FROM runs"))}
        assert c.scalar(text("SELECT count(*) FROM serve_usage_events")) == 5
        assert c.scalar(text("SELECT count(*) FROM plan_calibrations")) == 1
    assert set(runs) == {"run-seed-mlp", "run-gpt-tiny", "run-encoder-tiny", "failed-run"}
    assert runs["failed-run"].cost_nano_usd == 12_300_000  # $0.0123 as integer nano-dollars
    assert runs["failed-run"].status == "failed" and runs["failed-run"].stop_reason is None
    mlp = runs["run-seed-mlp"]
    assert (mlp.kind, mlp.parent_id, mlp.price_per_hour_nano_usd) == ("train", None, 0)
    assert mlp.stop_reason == json.loads(mlp.metrics_json)["stop_reason"] == "all epochs done"
    ledger = RunLedger(f"sqlite:///{db}")  # and the upgraded ledger takes new runs
    rid = ledger.start(name="new", model="m", data="d", out_dir="x", config={},
                       kind="finetune", parent_id="abc")
    ledger.finish(rid, status="finished", metrics={}, wall_seconds=1.0, cost_nano_usd=7,
                  stop_reason="all epochs done")
    assert (ledger.get(rid).kind, ledger.get(rid).parent_id, ledger.get(rid).cost_nano_usd) == \
        ("finetune", "abc", 7)
    ledger.close()


OPEN_AND_REPORT = """
import sys
from shoestring.ledger.db import open_ledger
from shoestring.ledger.migrations import current_version
print(current_version(open_ledger(sys.argv[1])))
"""


@pytest.mark.parametrize("start", ["empty", "release-0.1"])
def test_processes_opening_one_old_ledger_together_upgrade_it_once(tmp_path, start):
    db = tmp_path / "ledger.db"
    if start == "release-0.1":
        shutil.copy(RELEASE_0_1 / "ledger.db", db)
    url = f"sqlite:///{db}"
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AND_REPORT, url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert [o.strip() for o, _ in outs] == [str(HEAD)] * 4
    engine = open_ledger(url)
    assert [h["version"] for h in history(engine)] == list(range(1, HEAD + 1))
    assert schema_differences(engine) == []


def test_a_ledger_from_a_newer_release_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    engine = open_ledger(url)
    with engine.begin() as c:
        c.execute(text("INSERT INTO schema_version VALUES (:v, 'from the future', 'x')"),
                  {"v": HEAD + 1})
    with pytest.raises(ShoestringError, match="newer than this Shoestring") as err:
        open_ledger(url)
    assert "upgrade Shoestring" in err.value.hint


def test_a_read_only_open_creates_nothing(tmp_path):
    path = tmp_path / "nowhere" / "ledger.db"
    with pytest.raises(LedgerMissing, match="no ledger at") as err:
        open_ledger(f"sqlite:///{path}", create=False)
    assert "--db" in err.value.hint
    assert not path.exists() and not path.parent.exists()
