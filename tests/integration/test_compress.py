"""``shoestring compress`` end to end on tiny runs: every method, the table, the new run folder,
its lineage in the ledger, serving it over HTTP with metering, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shoestring.compress import CompressConfig, Distill, DynamicInt8, Prune, compress
from shoestring.compress.table import FORMAT, OVER_BUDGET
from shoestring.ledger.runs import RunLedger
from shoestring.models.onnx_module import OnnxModule
from shoestring.models.run_folder import RunFolder, load_run
from shoestring.train.evaluate_run import evaluate_run

METHODS = ("onnx-fp32", "dynamic-int8", "static-int8", Prune(ratios=(0.5,), finetune_steps=20),
           (Prune(ratios=(0.5,), finetune_steps=20), DynamicInt8()), Distill(steps=30))


@pytest.fixture(scope="module")
def compressed(digits_run_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("compress")
    db = f"sqlite:///{root / 'ledger.db'}"
    result = compress(CompressConfig(run=digits_run_dir, out=root / "small", methods=METHODS,
                                     max_drop=100.0, measure_seconds=0.1, batch_sizes=(1, 8)),
                      ledger=db, workspace=root)
    return result, db


def rows(result) -> dict[str, dict]:
    return {r["name"]: r for r in result.table["candidates"]}


def test_every_method_makes_a_measured_candidate(compressed):
    result, _ = compressed
    r = rows(result)
    assert set(r) == {"float32", "onnx-fp32", "dynamic-int8", "static-int8", "prune-0.5",
                      "prune-0.5+dynamic-int8", "distill"}
    parent = r["float32"]
    assert parent["is_parent"] and parent["metric_drop"] == 0
    for row in r.values():
        assert set(row["latency"]) == {"1", "8"}
        for lat in row["latency"].values():
            assert 0 < lat["p50_ms"] <= lat["p95_ms"] and lat["throughput_per_s"] > 0
        assert 0 <= row["metric"] <= 1 and row["size_bytes"] > 0
    # int8 stores a byte per weight where float32 stores four (plus scales and the graph).
    assert r["dynamic-int8"]["size_bytes"] < parent["size_bytes"] / 2.5
    assert r["static-int8"]["size_bytes"] < parent["size_bytes"] / 2
    assert {s["module"] for s in r["dynamic-int8"]["sensitivity"]} == {"net.1", "net.3", "net.5"}
    # Pruning really removes neurons; the student has at most a quarter of the parameters.
    assert r["prune-0.5"]["params"] < 0.6 * parent["params"]
    assert r["prune-0.5"]["size_bytes"] < 0.6 * parent["size_bytes"]
    assert r["prune-0.5"]["trained"]["steps"] == 20
    assert r["distill"]["params"] <= parent["params"] / 4
    assert [t["kind"] for t in r["prune-0.5+dynamic-int8"]["transforms"]] == ["prune", "onnx"]


def test_the_new_run_folder_holds_the_chosen_model_and_the_table(compressed, digits_run_dir):
    result, _ = compressed
    table = json.loads(result.candidates_path.read_text())
    assert table["format"] == FORMAT and table["chosen"] == result.chosen
    assert table["parent"]["run_id"] == RunFolder(digits_run_dir).run_id()
    chosen = rows(result)[result.chosen]
    assert chosen["chosen"] and not chosen["is_parent"]
    # The fastest within the (here unlimited) budget, up to near-ties on speed.
    fastest = min(r["latency"]["1"]["p50_ms"] for r in table["candidates"] if not r["is_parent"])
    assert chosen["latency"]["1"]["p50_ms"] <= fastest * 1.1 + 1e-9
    run = load_run(result.out_dir)
    assert run.card.lineage.stage == "compress"
    assert run.card.lineage.parent_run == RunFolder(digits_run_dir).run_id()
    assert [t.kind for t in run.card.transforms] == [t["kind"] for t in chosen["transforms"]]
    # eval scores it exactly as the table did.
    assert evaluate_run(result.out_dir)["test_accuracy"] == pytest.approx(chosen["metric"])
    leftovers = [p.name for p in result.out_dir.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_the_ledger_records_a_compress_run_with_its_parent(compressed, digits_run_dir):
    result, db = compressed
    ledger = RunLedger(db)
    try:
        row = ledger.get(result.run_id)
    finally:
        ledger.close()
    assert row.kind == "compress" and row.status == "finished"
    assert row.parent_id == RunFolder(digits_run_dir).run_id()
    assert row.metrics["chosen"] == result.chosen


def test_an_onnx_run_is_served_over_http_and_metered(compressed, tmp_path, digits_run_dir):
    import httpx

    from shoestring.ledger.db import open_ledger
    from shoestring.serve.keys import KeyStore
    from shoestring.serve.plans import load_plans
    from shoestring.serve.process import ServerProcess
    from shoestring.serve.metering import period_of
    from shoestring.serve.usage import usage_summary, utc_now

    onnx_run = tmp_path / "digits-int8"
    # Serve the dynamic-int8 candidate whatever was chosen: rebuild it as its own run.
    compress(CompressConfig(run=digits_run_dir, out=onnx_run, methods=("dynamic-int8",),
                            max_drop=100.0, measure_seconds=0.05, batch_sizes=(1,)),
             ledger=None, workspace=tmp_path)
    assert isinstance(load_run(onnx_run).model, OnnxModule)
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    plans = tmp_path / "plans.toml"
    plans.write_text("[bulk]\nrequests_per_second = 1000\nburst = 1000\n"
                     "price_per_1000_units_usd = 1.0\n")
    secret, _ = KeyStore(open_ledger(db), load_plans(plans)).create(project="p", plan="bulk")
    x = [float(i % 17) for i in range(64)]
    body = {"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": x + x}]}
    with ServerProcess(["--db", db, "serve", str(onnx_run), "--name", "digits", "--port", "0",
                        "--plans", str(plans)]) as srv:
        host, port = srv.host_port
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as client:
            replies = [client.post("/v2/models/digits/infer", json=body,
                                   headers={"Authorization": f"Bearer {secret}"})
                       for _ in range(3)]
        # Usage reaches the ledger off the request path: wait for it while the server runs.
        period = period_of(utc_now())
        deadline = time.monotonic() + 60
        while (requests := usage_summary(open_ledger(db), "p", period)["requests"]) < 3 \
                and time.monotonic() < deadline:
            time.sleep(0.2)
    assert [r.status_code for r in replies] == [200, 200, 200]
    out = {o["name"]: o for o in replies[0].json()["outputs"]}
    assert len(out["label"]["data"]) == 2 and sum(out["probabilities"]["data"][:10]) == \
        pytest.approx(1.0, abs=1e-4)
    # The served answer is the compressed model's own.
    run = load_run(onnx_run)
    local = run.model(run.card.preprocessing.to_preprocessing().apply(torch.tensor([x])))
    assert out["label"]["data"][0] == str(int(local.argmax()))
    assert requests == 3


def test_no_candidate_within_budget_writes_the_table_and_no_model(digits_run_dir, tmp_path):
    out = tmp_path / "none"
    result = compress(CompressConfig(run=digits_run_dir, out=out, methods=(Distill(steps=1),),
                                     max_drop=0.5, measure_seconds=0.05, batch_sizes=(1,)),
                      ledger=None, workspace=tmp_path)
    assert result.chosen is None
    assert OVER_BUDGET in rows(result)["distill"]["flags"]
    assert json.loads(result.candidates_path.read_text())["chosen"] is None
    assert not RunFolder(out).has_model() and not RunFolder(out).weights.exists()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shoestring", "--db",
                           f"sqlite:///{cwd / 'ledger.db'}", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_cli_exits_1_when_nothing_fits(digits_run_dir, tmp_path):
    p = cli("compress", str(digits_run_dir), "--out", str(tmp_path / "o"), "--methods",
            "distill", "--max-drop", "0", "--measure-seconds", "0.05", "--batch-sizes", "1",
            "--json", cwd=tmp_path)
    table = json.loads(p.stdout)
    if table["chosen"] is None:  # a student rarely matches its teacher to the last example
        assert p.returncode == 1 and "no candidate is within --max-drop" in p.stderr
        assert (tmp_path / "o" / "compress" / "candidates.json").exists()
    else:
        assert p.returncode == 0


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory) -> Path:
    from shoestring.train.api import train
    from shoestring.train.config import resolve_config

    root = tmp_path_factory.mktemp("regression")
    lines = ["a,b,y"] + [f"{i % 7},{i % 5},{(i % 7) * 2.5 - (i % 5)}" for i in range(80)]
    (root / "t.csv").write_text("\n".join(lines) + "\n")
    train(resolve_config({"data": {"source": f"csv:{root / 't.csv'}", "target": "y"},
                          "train": {"epochs": 1}, "out": str(root / "reg")}), ledger=None)
    return root / "reg"


@pytest.mark.parametrize("args, words", [
    (["{tmp}", "--out", "{tmp}/o"], "is not a Shoestring run folder"),
    (["{run}", "--out", "{tmp}/o", "--metric", "val_loss"], "has no metric 'val_loss'"),
    (["{run}", "--out", "{tmp}/o", "--methods", ""], "the method list is empty"),
    (["{run}", "--out", "{tmp}/o", "--methods", "int3"], "unknown method 'int3'"),
    (["{run}", "--out", "{tmp}/o", "--methods", "distill", "--teacher", "{reg}"],
     "a teacher must solve the same task"),
    (["{run}", "--out", "{run}"], "already exists"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(args, words, digits_run_dir,
                                                       regression_run, tmp_path):
    before = sorted(p.name for p in digits_run_dir.iterdir())
    subs = {"tmp": str(tmp_path), "run": str(digits_run_dir), "reg": str(regression_run)}
    from click.testing import CliRunner

    from shoestring.cli.main import build_cli

    argv = ["--db", f"sqlite:///{tmp_path / 'ledger.db'}", "compress",
            *[a.format(**subs) for a in args]]
    p = CliRunner().invoke(build_cli(), argv)
    assert p.exit_code == 1, p.output
    assert words in p.output and "Hint:" in p.output
    assert not (tmp_path / "o").exists()
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".o")]
    assert sorted(q.name for q in digits_run_dir.iterdir()) == before


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory) -> Path:
    from shoestring.train.api import train
    from shoestring.train.config import resolve_config

    root = tmp_path_factory.mktemp("lm")
    (root / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 60)
    train(resolve_config({"model": {"name": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 64,
                                    "block_size": 16},
                          "train": {"max_steps": 30, "batch_size": 8},
                          "data": {"source": f"text:{root / 'corpus.txt'}"},
                          "out": str(root / "fox")}), ledger=None, workspace=root)
    return root / "fox"


def test_a_language_model_gets_weight_only_candidates_with_tokens_per_second(gpt_run):
    root = gpt_run.parent
    result = compress(CompressConfig(run=gpt_run, out=root / "fox-small",
                                     methods=("weight-only-int8", "weight-only-int4"),
                                     max_drop=50.0, measure_seconds=0.1, batch_sizes=(1,)),
                      ledger=None, workspace=root)
    r = rows(result)
    assert result.table["metric"] == "val_loss" and not result.table["higher_is_better"]
    parent = r["float32"]
    for name in ("weight-only-int8", "weight-only-int4"):
        assert r[name]["tokens_per_second"] > 0
        assert abs(r[name]["metric_drop"]) < 50  # percent of the validation loss
    assert r["weight-only-int4"]["size_bytes"] < r["weight-only-int8"]["size_bytes"] < \
        parent["size_bytes"]
    from shoestring.models.generate import generate_text

    text = generate_text(result.out_dir, "the ", max_new_tokens=8, temperature=0.0)
    assert text.new_tokens == 8
