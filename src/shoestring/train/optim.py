"""Optimizers from the typed config."""

from __future__ import annotations

from torch import nn

from shoestring.train.config import TrainSection


def build_optimizer(model: nn.Module, cfg: TrainSection, *, standalone: bool = False):
    """SGD (with momentum), Adam, AdamW, or bitsandbytes' 8-bit AdamW (paged or not), over
    the trainable parameters; with ``optimizer_in_backward``, one per parameter, stepped
    during backward (:mod:`shoestring.train.optimizer_in_backward`).

    Adam/AdamW use the fused single-kernel implementation where PyTorch has it
    for the parameters' device (CPU since 2.4, CUDA): the same update rule as
    the default ``foreach`` path, with fewer passes over memory. With
    ``standalone`` (one process, no gradient scaler) they run that kernel
    through :class:`~shoestring.train.fused_adam.FusedAdam`, which gives the same bits without importing
    ``torch._dynamo`` (over a second of every short run's start). Keras' Adam
    uses epsilon=1e-7; PyTorch's default 1e-8 is kept (the difference is below
    the noise of a 10-epoch run).
    """
    from shoestring.train.memory_savers import optimizer_maker

    params = [p for p in model.parameters() if p.requires_grad]
    device_type = params[0].device.type if params else "cpu"
    make = optimizer_maker(cfg, device_type, standalone=standalone)
    if cfg.optimizer_in_backward:
        from shoestring.train.optimizer_in_backward import OptimizerInBackward

        return OptimizerInBackward(params, make)
    return make(params)
