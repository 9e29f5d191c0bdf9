"""The model as a plain function of its inputs, for metrics and explainers.

Every family returns logits (or regression values) from ``forward(x)``; the
transformer families return ``(logits, loss)``, which explainers cannot use,
so :func:`as_function` unwraps them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

BATCH = 1024


def as_function(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x → outputs [n, k]`` (a tuple output's first element)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return out[0] if isinstance(out, tuple) else out
    return forward


@torch.inference_mode()
def outputs(model: nn.Module, x: torch.Tensor, batch: int = BATCH) -> torch.Tensor:
    """The model's outputs for all of ``x``, in batches, as float32 on the CPU."""
    f = as_function(model)
    parts = [f(x[i:i + batch]).float().cpu() for i in range(0, len(x), batch)]
    return torch.cat(parts) if parts else torch.empty(0)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=1)
