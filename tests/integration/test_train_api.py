"""The real training entry point on small generated data."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from shoestring.ledger.runs import RunLedger
from shoestring.models.run_folder import load_run
from shoestring.train.api import train
from shoestring.train.config import resolve_config
from shoestring.train.evaluate_run import evaluate_run

# Compares floating-point results: run again on AVX2 kernels by `make test`.
pytestmark = pytest.mark.numerics

SUMMARY_FIELDS = {"model", "data", "epochs_run", "steps", "train_seconds", "samples_per_second",
                  "cost_usd", "target_reached", "status"}


def cfg(out, **train):
    return resolve_config({"data": {"source": "digits"}, "out": str(out),
                           "train": {"epochs": 3, **train}})


def test_run_folder_and_ledger(tmp_path):
    ledger = RunLedger(f"sqlite:///{tmp_path / 'l.db'}")
    result = train(cfg(tmp_path / "run", price_per_hour=3.6), ledger=ledger)
    s = result.summary
    assert SUMMARY_FIELDS <= set(s) and "test_accuracy" in s
    assert s["status"] == "finished" and s["steps"] == 3 * 12 and s["epochs_run"] == 3
    assert s["cost_usd"] == pytest.approx(s["train_seconds"] / 3600 * 3.6, abs=1e-6)
    for name in ("model.safetensors", "model.json", "config.toml", "metrics.jsonl",
                 "summary.json"):
        assert (result.out_dir / name).exists(), name
    lines = (result.out_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [12, 24, 36]
    row = ledger.get(result.run_id)
    assert row.status == "finished" and row.metrics["test_accuracy"] == s["test_accuracy"]


def test_saved_model_rebuilds_without_training_code(tmp_path):
    result = train(cfg(tmp_path / "run"))
    run = load_run(result.out_dir)
    card = run.card
    assert card.architecture.params["hidden"] == [128, 64]
    assert card.input_shape == (64,) and card.outputs.kind == "softmax"
    assert card.data.source == "digits" and card.lineage.stage == "train"
    weights = load_file(str(run.folder.weights))
    assert torch.equal(run.model.state_dict()["net.1.weight"], weights["net.1.weight"])
    metrics = evaluate_run(result.out_dir)
    assert metrics["test_accuracy"] == pytest.approx(result.summary["test_accuracy"])
    assert card.preprocessing.to_preprocessing().scale == pytest.approx(1 / 16)


def test_regression_csv_reports_mse(tmp_path):
    rows = "\n".join(f"{i / 10},{(i % 7) / 7},{2 * i / 10 + 1}" for i in range(200))
    (tmp_path / "r.csv").write_text("a,b,y\n" + rows)
    config = resolve_config({"model": {"name": "mlp", "hidden": [16]},
                             "data": {"source": f"csv:{tmp_path / 'r.csv'}", "target": "y",
                                      "normalize": "standardize"},
                             "train": {"epochs": 30, "batch_size": 32, "lr": 0.01},
                             "out": str(tmp_path / "run")})
    s = train(config).summary
    assert s["task"] == "regression" and "test_mse" in s and "test_accuracy" not in s
    assert s["test_mse"] < 10.0  # targets span 1..41: a constant predictor scores ~133


def test_target_stops_early(tmp_path):
    s = train(cfg(tmp_path / "run", epochs=50, target="test_accuracy=0.5")).summary
    assert s["target_reached"] and s["epochs_run"] < 50 and s["test_accuracy"] >= 0.5


def test_time_budget_stops(tmp_path):
    ticks = iter(range(0, 10_000))
    s = train(cfg(tmp_path / "run", epochs=50, max_time=30),
              clock=lambda: float(next(ticks))).summary  # one "second" per clock read
    assert s["status"] == "budget_exhausted" and "time budget" in s["stop_reason"]
    assert s["epochs_run"] < 50


def test_cnn_on_idx_images(tmp_path, idx_dir):
    config = resolve_config({"model": {"name": "cnn", "channels": [4, 8]},
                             "data": {"source": f"idx:{idx_dir}"},
                             "train": {"epochs": 2, "batch_size": 32},
                             "out": str(tmp_path / "run")})
    s = train(config).summary
    assert s["status"] == "finished" and s["test_accuracy"] > 0.25


def test_existing_run_folder_is_not_overwritten(tmp_path):
    train(cfg(tmp_path / "run", epochs=1))
    from shoestring.errors import ShoestringError

    with pytest.raises(ShoestringError, match="already holds a run"):
        train(cfg(tmp_path / "run", epochs=1))


def test_resume_with_changed_settings_is_refused(tmp_path):
    train(cfg(tmp_path / "run", epochs=1))
    from shoestring.errors import ConfigError

    changed = cfg(tmp_path / "run", epochs=1, lr=0.5).model_copy(update={"resume": True})
    with pytest.raises(ConfigError, match="train.lr"):
        train(changed)


def test_a_gpt_trained_with_bf16_matmuls_saves_fp32_and_loads(tmp_path):
    from shoestring.models.generate import generate_text

    (tmp_path / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 60)
    result = train(resolve_config({
        "model": {"name": "gpt-nano"}, "out": str(tmp_path / "fox"),
        "data": {"source": f"text:{tmp_path / 'corpus.txt'}"},
        "train": {"max_steps": 30, "batch_size": 8, "precision": "bf16", "compile": False}}))
    s = result.summary
    assert s["precision"] == "bf16" and s["precision_requested"] == "bf16"
    assert s["precision_note"].startswith("bf16 matmuls in linear layers")
    assert s["val_loss"] < 3.0  # learnt the 27-character corpus (uniform: ln 27 = 3.3)
    weights = load_file(str(result.out_dir / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float32}
    run = load_run(result.out_dir)
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    out = generate_text(result.out_dir, "the ", max_new_tokens=5)
    assert out.new_tokens == 5
    assert set(out.completion) <= set("the quick brown fox jumps over the lazy dog.")
