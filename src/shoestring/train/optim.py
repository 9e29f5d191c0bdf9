"""Optimizers from the typed config."""

from __future__ import annotations

import torch
from torch import nn

from shoestring.train.config import TrainSection


def build_optimizer(model: nn.Module, cfg: TrainSection) -> torch.optim.Optimizer:
    """SGD (with momentum), Adam or AdamW.

    Adam/AdamW use the fused single-kernel implementation where PyTorch has it
    for the parameters' device (CPU since 2.4, CUDA): the same update rule as
    the default ``foreach`` path, with fewer passes over memory.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    # Keras' Adam uses epsilon=1e-7; PyTorch's default 1e-8 is kept (the
    # difference is below the noise of a 10-epoch run).
    kwargs = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    return cls(params, fused=True, **kwargs)
