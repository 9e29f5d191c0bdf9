"""Table defaults, target scaling and baselines as pure functions (issue 16 item 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shoestring.train.config import resolve_config
from shoestring.train.evaluate import baseline_metrics, evaluate, headline, r2_score
from shoestring.train.table_defaults import MIN_STEPS, table_defaults
from shoestring.train.tensors import feature_stats, prepare_tensors, resolve_normalize
from shoestring.types import Dataset, Preprocessing, Task, TensorDataset


def test_small_table_gets_enough_regularized_steps():
    config, notes = table_defaults(resolve_config({}), n_train=120)  # iris-sized
    t = config.train
    assert t.batch_size == 16 and t.epochs * -(-120 // 16) >= MIN_STEPS
    assert t.weight_decay > 0 and t.schedule == "cosine"
    assert notes and "batch size 128→16" in notes[0] and "120 training rows" in notes[0]


def test_table_defaults_never_override_what_the_user_set():
    given = resolve_config({"train": {"batch_size": 64, "epochs": 3, "weight_decay": 0.0,
                                      "schedule": "constant"}})
    config, notes = table_defaults(given, n_train=120)
    assert config.train == given.train and notes == []
    # max_steps set: the step count is the user's, so epochs stay as they are.
    config, _ = table_defaults(resolve_config({"train": {"max_steps": 5}}), n_train=120)
    assert config.train.epochs == 10


def test_large_table_keeps_the_general_batch_and_epochs():
    config, _ = table_defaults(resolve_config({}), n_train=100_000)
    assert (config.train.batch_size, config.train.epochs) == (128, 10)


def _table(task: Task, y_train, y_test, x_shape=(3,)) -> Dataset:
    n, m = len(y_train), len(y_test)
    gen = torch.Generator().manual_seed(0)
    return Dataset("t", task, TensorDataset(torch.randn(n, *x_shape, generator=gen) * 1000,
                                            torch.as_tensor(y_train)),
                   TensorDataset(torch.randn(m, *x_shape, generator=gen),
                                 torch.as_tensor(y_test)), x_shape,
                   1 if task is Task.regression else 2)


def test_auto_standardizes_tables_and_scales_images():
    table = _table(Task.classification, [0, 1] * 5, [0, 1])
    image = _table(Task.classification, [0, 1] * 5, [0, 1], x_shape=(1, 2, 2))
    assert resolve_normalize("auto", table) == "standardize"
    assert resolve_normalize("auto", image) == "scale"
    prepared = prepare_tensors(table, "auto")
    assert prepared.train.x.mean(0).abs().max() < 1e-4
    assert (prepared.train.x.std(0, unbiased=False) - 1).abs().max() < 1e-4


def test_regression_targets_are_standardized_and_mapped_back():
    y = torch.tensor([250_000.0, 300_000.0, 150_000.0, 400_000.0])
    ds = _table(Task.regression, y, torch.tensor([200_000.0]))
    prepared = prepare_tensors(ds, "auto")
    pre = prepared.preprocessing
    assert prepared.train.y.shape == (4, 1)
    assert abs(float(prepared.train.y.mean())) < 1e-5
    assert float(prepared.train.y.std(unbiased=False)) == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(pre.targets_from_outputs(prepared.train.y), y[:, None])
    assert prepared.test.y.tolist() == [[200_000.0]]  # test targets stay in data units
    # The record round-trips through model.json; an old record has no target scaling.
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    old = Preprocessing.from_dict({"scale": 1.0, "mean": None, "std": None})
    assert old.target_mean is None and torch.equal(old.targets_from_outputs(y), y)
    # normalize 'none' leaves targets raw.
    assert prepare_tensors(ds, "none").preprocessing.target_mean is None


def test_constant_features_are_centred_not_blown_up():
    x = torch.tensor([[0.0, 1.0], [0.0, 3.0]])
    mean, std = feature_stats(x)
    assert std.tolist() == [1.0, 1.0]  # a constant column divides by 1, as StandardScaler
    pre = Preprocessing(mean=tuple(mean.tolist()), std=tuple(std.tolist()))
    assert pre.apply(torch.tensor([[1.0, 2.0]])).tolist() == [[1.0, 0.0]]


def test_regression_metrics_are_in_data_units_with_r2():
    from sklearn.metrics import r2_score as sk_r2

    y = torch.tensor([[1.0, 10.0], [2.0, 30.0], [4.0, 20.0]])
    pred = torch.tensor([[1.5, 12.0], [2.0, 25.0], [3.0, 22.0]])
    pre = Preprocessing(target_mean=(1.0, 20.0), target_std=(2.0, 10.0))
    scaled = (pred - torch.tensor([1.0, 20.0])) / torch.tensor([2.0, 10.0])

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return scaled

    m = evaluate(Fixed(), TensorDataset(torch.zeros(3, 1), y), Task.regression, preprocessing=pre)
    assert m["test_mse"] == pytest.approx(float(((pred - y) ** 2).mean()), rel=1e-6)
    assert m["test_r2"] == pytest.approx(sk_r2(y.numpy(), pred.numpy()), rel=1e-6)
    assert r2_score(torch.tensor([0.0]), torch.tensor([0.0])) == 1.0  # constant, exact


def test_baselines():
    c = baseline_metrics(torch.tensor([2, 2, 0, 1]), TensorDataset(torch.zeros(4, 1),
                         torch.tensor([2, 0, 2, 2])), Task.classification, ("a", "b", "c"))
    assert c == {"baseline": "majority class c", "baseline_test_accuracy": 0.75}
    r = baseline_metrics(torch.tensor([1.0, 3.0]), TensorDataset(torch.zeros(2, 1),
                         torch.tensor([[0.0], [4.0]])), Task.regression)
    assert r["baseline_test_mse"] == pytest.approx(4.0) and r["baseline_test_r2"] == 0.0
    assert np.isfinite(r["baseline_test_r2"])


def test_headline_puts_the_baseline_beside_the_result():
    line = headline({"test_accuracy": 0.4, "baseline_test_accuracy": 0.45,
                     "baseline": "majority class 1"})
    assert line == "test_accuracy 0.4000 (baseline 0.4500: majority class 1)"
    assert headline({"val_loss": 2.0}) == "val_loss 2.0000"
    assert headline({"test_mse": 5e10}) == "test_mse 5e+10"
