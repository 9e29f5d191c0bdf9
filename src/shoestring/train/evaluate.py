"""Held-out metrics: loss and accuracy (classification) or MSE (regression)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from shoestring.types import Task, TensorDataset

EVAL_BATCH = 4096  # evaluation needs no gradients, so large batches are cheap


def loss_fn(task: Task):
    """Cross-entropy on logits (softmax folded in) or mean squared error."""
    return F.cross_entropy if task is Task.classification else F.mse_loss


@torch.inference_mode()
def evaluate(model: nn.Module, data: TensorDataset, task: Task, prefix: str = "test") -> dict[str, float]:
    """Mean loss and the task's headline metric over ``data``.

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
            total_loss += F.mse_loss(out, yb, reduction="sum").item() / yb[0].numel()
    model.train(was_training)
    if task is Task.classification:
        return {f"{prefix}_loss": total_loss / n, f"{prefix}_accuracy": correct / n}
    return {f"{prefix}_loss": total_loss / n, f"{prefix}_mse": total_loss / n}
