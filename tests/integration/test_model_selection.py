"""Issue 16 item 2: stopping and targets select on a validation split carved from
the training data; the test split is scored once, at the end."""

from __future__ import annotations

import json

import pytest
import torch

from shoestring.data.holdout import carve_validation
from shoestring.data.sources import load_dataset
from shoestring.train.api import train
from shoestring.train.config import resolve_config
from shoestring.types import Dataset, Task, TensorDataset

# Accuracy thresholds on small data: run again on AVX2 kernels by `make test`.
pytestmark = pytest.mark.numerics


def cfg(out, source="digits", **train_fields):
    return resolve_config({"data": {"source": source}, "out": str(out),
                           "train": {"epochs": 30, "threads": 1, **train_fields}})


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_val_accuracy_target_stops_on_the_validation_split(tmp_path):
    s = train(cfg(tmp_path / "run", target="val_accuracy=0.8")).summary
    assert s["target_reached"] and s["target_metric"] == "val_accuracy"
    assert s["epochs_run"] < 30 and s["val_accuracy"] >= 0.8
    assert "test_accuracy" in s  # scored once, after stopping
    assert all("val_accuracy" in r and "test_accuracy" not in r
               for r in records(tmp_path / "run"))


def test_a_test_target_is_checked_on_validation_and_test_is_scored_once(tmp_path, monkeypatch):
    import shoestring.train.problem as problem

    splits = []
    real = problem.evaluate

    def counting(model, data, task, prefix="test", **kwargs):
        splits.append(prefix)
        return real(model, data, task, prefix=prefix, **kwargs)

    monkeypatch.setattr(problem, "evaluate", counting)
    s = train(cfg(tmp_path / "run", target="test_accuracy=0.8", eval_every=5)).summary
    assert s["target_reached"] and s["target_metric"] == "val_accuracy"
    assert splits.count("test") == 1 and splits[-1] == "test" and splits.count("val") > 1
    assert not any(k.startswith("test_") for r in records(tmp_path / "run") for k in r)


def test_a_plain_run_scores_the_test_split_once_and_trains_on_all_of_train(tmp_path):
    s = train(cfg(tmp_path / "run", epochs=2)).summary
    assert "test_accuracy" in s and "val_accuracy" not in s
    n_train = len(load_dataset("digits").train)
    assert s["steps"] == 2 * -(-n_train // 128)  # no examples held back


def test_validation_split_is_stratified_seeded_and_disjoint():
    y = torch.arange(1000) % 4                      # 250 examples per class
    x = torch.arange(1000, dtype=torch.float32)[:, None]  # each row its own id
    data = Dataset(name="ids", task=Task.classification, train=TensorDataset(x, y),
                   test=TensorDataset(x[:10], y[:10]), input_shape=(1,), num_outputs=4)
    a, b = carve_validation(data, 0.1, seed=0), carve_validation(data, 0.1, seed=0)
    other = carve_validation(data, 0.1, seed=1)
    assert torch.equal(a.val.x, b.val.x) and not torch.equal(a.val.x, other.val.x)
    ids = set(a.train.x[:, 0].tolist())
    assert len(ids) == 900 and ids.isdisjoint(a.val.x[:, 0].tolist())
    assert torch.equal(torch.bincount(a.val.y), torch.full((4,), 25))
    assert a.test is data.test


def test_prepared_val_is_reported_as_validation_not_test(tmp_path):
    from shoestring.data.prepare import prepare, resolve_prepare_config

    prep = tmp_path / "prep"
    prepare(resolve_prepare_config({"source": "digits", "out": str(prep),
                                    "label_issues": False}))
    s = train(cfg(tmp_path / "run", source=f"prepared:{prep}#val", epochs=2)).summary
    assert "val_accuracy" in s and not any(k.startswith("test_") for k in s)
    # Without #val the folder's own validation split selects, its test split scores.
    s = train(cfg(tmp_path / "run2", source=f"prepared:{prep}",
                  target="val_accuracy=0.5")).summary
    assert s["target_reached"] and "test_accuracy" in s and "val_accuracy" in s

