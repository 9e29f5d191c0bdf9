"""Held-out metrics: loss and accuracy (classification) or MSE and R² (regression),
and the trivial baseline each is to be read against."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from shoestring.types import Preprocessing, Task, TensorDataset

EVAL_BATCH = 4096  # evaluation needs no gradients, so large batches are cheap


def loss_fn(task: Task):
    """Cross-entropy on logits (softmax folded in) or mean squared error."""
    return F.cross_entropy if task is Task.classification else F.mse_loss


@torch.inference_mode()
def evaluate(model: nn.Module, data: TensorDataset, task: Task, prefix: str = "test",
             preprocessing: Preprocessing | None = None) -> dict[str, float]:
    """Mean loss and the task's headline metrics over ``data``.

    Regression targets in ``data`` are in data units; ``preprocessing`` maps
    the model's (standardized) outputs back to them, so the MSE is in the
    units of the data and comparable across runs.

    >>> import torch
    >>> m = torch.nn.Linear(2, 2)
    >>> d = TensorDataset(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    >>> sorted(evaluate(m, d, Task.classification))
    ['test_accuracy', 'test_loss']
    """
    was_training = model.training
    model.eval()
    n = len(data)
    total_loss = 0.0
    correct = 0
    sums = None  # regression: per-output sum of y, of y², of squared errors (float64)
    for start in range(0, n, EVAL_BATCH):
        xb = data.x[start:start + EVAL_BATCH]
        yb = data.y[start:start + EVAL_BATCH]
        out = model(xb)
        if isinstance(out, tuple):  # transformers return (logits, loss)
            out = out[0]
        if task is Task.classification:
            total_loss += F.cross_entropy(out, yb, reduction="sum").item()
            correct += int((out.argmax(dim=1) == yb).sum())
        else:
            if preprocessing is not None:
                out = preprocessing.targets_from_outputs(out)
            y64, err = yb.double(), (out.double() - yb.double()).square()
            part = torch.stack([y64.sum(0), y64.square().sum(0), err.sum(0)])
            sums = part if sums is None else sums + part
    model.train(was_training)
    if task is Task.classification:
        return {f"{prefix}_loss": total_loss / n, f"{prefix}_accuracy": correct / n}
    sum_y, sum_y2, sse = sums
    mse = float(sse.mean() / n)
    return {f"{prefix}_loss": mse, f"{prefix}_mse": mse,
            f"{prefix}_r2": r2_score(sse, sum_y2 - sum_y.square() / n)}


def r2_score(sse: torch.Tensor, sst: torch.Tensor) -> float:
    """Coefficient of determination ``1 - SSE/SST``, averaged over outputs.

    As scikit-learn's ``r2_score`` (multioutput='uniform_average'): an output
    with no variance scores 1 if predicted exactly, else 0.
    """
    per = torch.where(sst > 0, 1.0 - sse / sst.clamp_min(1e-300),
                      torch.where(sse == 0, 1.0, 0.0))
    return float(per.mean())


def baseline_metrics(train_y: torch.Tensor, data: TensorDataset, task: Task,
                     class_names: tuple[str, ...] | None = None,
                     prefix: str = "test") -> dict[str, Any]:
    """What a model that ignores its inputs scores on ``data``.

    Classification: always the training split's majority class. Regression:
    always the training split's mean (its R² is 0 on data with that mean).
    A model is only worth its cost by how far it beats this.

    >>> import torch
    >>> ys = torch.tensor([0, 1, 1, 1])
    >>> baseline_metrics(ys, TensorDataset(torch.zeros(2, 1), torch.tensor([1, 0])),
    ...                  Task.classification)
    {'baseline': 'majority class 1', 'baseline_test_accuracy': 0.5}
    """
    if task is Task.classification:
        majority = int(torch.bincount(train_y.long().reshape(-1).cpu()).argmax())
        name = class_names[majority] if class_names else str(majority)
        accuracy = float((data.y.reshape(-1).cpu() == majority).double().mean())
        return {"baseline": f"majority class {name}", f"baseline_{prefix}_accuracy": accuracy}
    y = data.y.double().cpu().reshape(len(data), -1)
    mean = train_y.double().cpu().reshape(len(train_y), -1).mean(0)
    sse = (y - mean).square().sum(0)
    sst = (y - y.mean(0)).square().sum(0)
    return {"baseline": "training mean", f"baseline_{prefix}_mse": float(sse.mean() / len(y)),
            f"baseline_{prefix}_r2": r2_score(sse, sst)}


def headline(metrics: dict[str, Any], prefix: str = "test") -> str:
    """The result in one line, with its baseline beside it when there is one.

    The ``prefix`` split's metrics are shown, else the validation split's (a
    source whose held-out split is its validation split).

    >>> headline({"test_accuracy": 0.97, "baseline_test_accuracy": 0.4,
    ...           "baseline": "majority class 1"})
    'test_accuracy 0.9700 (baseline 0.4000: majority class 1)'
    >>> headline({"test_mse": 2900.0, "test_r2": 0.51, "baseline_test_mse": 5950.0,
    ...           "baseline_test_r2": -0.01, "baseline": "training mean"})
    'test_mse 2900, R² 0.510 (baseline mse 5950, R² -0.010: training mean)'
    >>> headline({"val_accuracy": 0.9})
    'val_accuracy 0.9000'
    """
    rule = metrics.get("baseline")
    for split in dict.fromkeys((prefix, "val")):
        acc, mse = f"{split}_accuracy", f"{split}_mse"
        if metrics.get(acc) is not None:
            base = metrics.get(f"baseline_{acc}")
            return f"{acc} {metrics[acc]:.4f}" + \
                (f" (baseline {base:.4f}: {rule})" if base is not None else "")
        if metrics.get(mse) is not None:
            r2 = metrics.get(f"{split}_r2")
            line = f"{mse} {metrics[mse]:.4g}" + (f", R² {r2:.3f}" if r2 is not None else "")
            base, base_r2 = metrics.get(f"baseline_{mse}"), metrics.get(f"baseline_{split}_r2")
            if base is not None:
                line += f" (baseline mse {base:.4g}" + \
                    (f", R² {base_r2:.3f}" if base_r2 is not None else "") + f": {rule})"
            return line
    for key in ("val_loss", f"{prefix}_loss"):
        if metrics.get(key) is not None:
            return f"{key} {metrics[key]:.4f}"
    return ""
