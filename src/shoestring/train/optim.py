"""Optimizers from the typed config."""

from __future__ import annotations

import torch
from torch import nn

from shoestring.train.config import TrainSection
from shoestring.train.fused_adam import FusedAdam


def build_optimizer(model: nn.Module, cfg: TrainSection, *, standalone: bool = False):
    """SGD (with momentum), Adam or AdamW.

    Adam/AdamW use the fused single-kernel implementation where PyTorch has it
    for the parameters' device (CPU since 2.4, CUDA): the same update rule as
    the default ``foreach`` path, with fewer passes over memory. With
    ``standalone`` (one process, no gradient scaler) they run that kernel
    through :class:`FusedAdam`, which gives the same bits without importing
    ``torch._dynamo`` (over a second of every short run's start).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    # Keras' Adam uses epsilon=1e-7; PyTorch's default 1e-8 is kept (the
    # difference is below the noise of a 10-epoch run).
    if standalone:
        return FusedAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         decoupled_weight_decay=cfg.optimizer == "adamw")
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, fused=True, lr=cfg.lr, weight_decay=cfg.weight_decay)
