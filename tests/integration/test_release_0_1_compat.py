"""What release 0.1 left on disk still works: its run folders load, serve and
evaluate, and its ledgers (SQLite and PostgreSQL) open and keep their rows.

The fixtures were written by release 0.1 itself (tests/fixtures/release_0_1/
make_fixtures.py, run once on commit 3eb6bfe) and are never regenerated.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from fixture_db import RELEASE_0_1, fresh_pg_database, restore_pg_dump

from shoestring.ledger.runs import RunLedger
from shoestring.models.run_folder import load_run
from shoestring.serve.app import serving_app
from shoestring.serve.config import resolve_serve_config
from shoestring.ledger.db import open_ledger
from shoestring.serve.keys import KeyStore
from shoestring.serve.plans import load_plans
from shoestring.serve.service import Service
from shoestring.serve.usage import usage_summary
from shoestring.train.evaluate_run import evaluate_run

RUNS = ("run-seed-mlp", "run-gpt-tiny", "run-encoder-tiny")


@pytest.mark.parametrize("name", RUNS)
def test_release_0_1_run_folder_loads_through_the_card(name):
    assert json.loads((RELEASE_0_1 / name / "model.json").read_text())["format"] == \
        "shoestring.model/1"
    run = load_run(RELEASE_0_1 / name)
    assert sum(p.numel() for p in run.model.parameters()) > 0
    assert run.card.format == "shoestring.model/2" and run.card.lineage.stage == "train"
    assert run.card.transforms == []
    if name == "run-encoder-tiny":  # release 0.1's classifier text layout, made explicit
        layout = run.card.tokenizer.layout
        assert (layout.kind, layout.pad_id, layout.cls_id, layout.offset) == ("cls-pad", 0, 1, 2)
        assert run.card.class_names == ["10", "9"]
    if name == "run-gpt-tiny":
        assert run.card.tokenizer.kind == "char" and run.card.takes_tokens
        assert run.tokenizer().decode(run.tokenizer().encode("to be")) == "to be"


@pytest.mark.parametrize("name, data", [
    ("run-seed-mlp", "digits"),
    ("run-encoder-tiny", f"jsonl:{RELEASE_0_1 / 'data' / 'labels.jsonl'}")])
def test_release_0_1_runs_evaluate_as_they_did_when_trained(name, data):
    run = RELEASE_0_1 / name
    recorded = json.loads((run / "summary.json").read_text())["test_accuracy"]
    got = evaluate_run(run, data)
    assert got["test_accuracy"] == pytest.approx(recorded, abs=1e-6)


def _serve(tmp_path: Path, run: Path, body: dict) -> dict:
    cfg = resolve_serve_config({"models": [{"run_dir": run, "name": "m"}], "auth": False,
                                "db": f"sqlite:///{tmp_path / 'serve.db'}"})
    with TestClient(serving_app(Service(cfg))) as client:
        r = client.post("/v2/models/m/infer", json=body)
    assert r.status_code == 200, r.text
    return {o["name"]: o["data"] for o in r.json()["outputs"]}


def test_release_0_1_runs_serve(tmp_path):
    out = _serve(tmp_path, RELEASE_0_1 / "run-seed-mlp",
                 {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                              "data": [0.0] * 64}]})
    assert out["label"][0] in [str(i) for i in range(10)]
    text = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                        "data": ["good fine great 3"]}]}
    out = _serve(tmp_path, RELEASE_0_1 / "run-encoder-tiny", text)
    assert out["label"][0] in ("9", "10")  # the card's own class order, "10" first
    text["inputs"][0]["data"] = ["to be"]
    out = _serve(tmp_path, RELEASE_0_1 / "run-gpt-tiny", text)
    assert isinstance(out["text"][0], str)


def _check_release_0_1_ledger(url: str, expected_runs: set[str]) -> None:
    ledger = RunLedger(url)
    try:
        rows = {r.name: r for r in ledger.list(limit=100)}
    finally:
        ledger.close()
    assert set(rows) == expected_runs
    engine = open_ledger(url)
    try:
        keys = KeyStore(engine, load_plans(None)).list("acme")
        assert [k.label for k in keys] == ["fixture"]
        usage = usage_summary(engine, "acme", "2026-05")
        assert (usage["requests"], usage["units"]) == (5, 1 + 2 + 3 + 1 + 2)
    finally:
        engine.dispose()


def test_release_0_1_sqlite_ledger_opens(tmp_path):
    db = tmp_path / "ledger.db"
    shutil.copy(RELEASE_0_1 / "ledger.db", db)
    _check_release_0_1_ledger(f"sqlite:///{db}", {"run-seed-mlp", "run-gpt-tiny",
                                                  "run-encoder-tiny", "failed-run"})


@pytest.mark.postgres
def test_release_0_1_postgres_ledger_opens():
    with fresh_pg_database("shoestring_compat") as url:
        restore_pg_dump(url, RELEASE_0_1 / "ledger-postgres.sql")
        _check_release_0_1_ledger(url, {"pg-run"})
