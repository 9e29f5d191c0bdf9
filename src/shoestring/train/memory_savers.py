"""The memory savers practitioners fine-tune with, as train options (names as in ``plan``).

- ``precision = "bf16-true"``: weights, gradients and optimizer states in bf16
  (2 bytes each instead of 4), no fp32 master copy; recorded on the run's card
  as a ``cast`` transform, so the saved weights are bf16 too. (torchtune's
  default; Lightning's ``bf16-true``.)
- ``optimizer_in_backward``: each parameter is stepped, and its gradient
  freed, as soon as the gradient exists (:mod:`.optimizer_in_backward`).
- ``optimizer = "adam8bit"`` / ``"paged-adam8bit"``: bitsandbytes' 8-bit AdamW
  (Dettmers et al. 2022, arXiv:2110.02861): two moments in 1 byte each instead
  of 4; the paged one keeps them in CUDA unified memory, paged to CPU RAM
  when the GPU is full (QLoRA, Dettmers et al. 2023, section 3).
- ``loss_chunks``: the cross-entropy never holds the full ``[tokens, vocab]``
  logits (:mod:`shoestring.models.chunked_loss`).
- ``activation_checkpointing`` (existing): recompute each block in backward.
- ``offload_activations``: tensors saved for backward go to (pinned) CPU RAM
  during the forward pass and come back for the backward
  (``torch.autograd.graph.save_on_cpu``). It moves GPU memory to CPU memory;
  on a CPU there is nowhere to move them, so it is a no-op there (and says so).

:func:`recipe_problems` lists the combinations that cannot work, all at once
(:func:`shoestring.train.finetune.recipe_hooks` reports them with the recipe's own).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch

from shoestring.errors import ShoestringError

QUANT_HINT = "pip install 'shoestring[quant]' (bitsandbytes)"


def recipe_problems(cfg, device_type: str, world: int, family: str | None) -> list[str]:
    """Every option combination of ``cfg`` (a ``[train]`` section) that cannot run."""
    out = []
    if cfg.optimizer_in_backward:
        if cfg.micro_batch_size is not None and cfg.micro_batch_size < cfg.batch_size:
            out.append("optimizer_in_backward steps during each backward pass, so it cannot "
                       "accumulate micro-batches: drop micro_batch_size or make it batch_size")
        if cfg.grad_clip is not None:
            out.append("optimizer_in_backward never holds the whole gradient, so grad_clip "
                       "(a global norm) cannot apply")
        if world > 1:
            out.append("optimizer_in_backward would step before the data-parallel all-reduce; "
                       "use one process")
        if cfg.precision == "fp16":
            out.append("optimizer_in_backward cannot unscale fp16 gradients; use bf16")
    if cfg.loss_chunks > 1 and family not in (None, "gpt"):
        out.append(f"loss_chunks applies to gpt language models, not {family!r} models")
    if cfg.optimizer == "paged-adam8bit" and device_type != "cuda":
        out.append("paged-adam8bit keeps optimizer states in CUDA unified memory paged to CPU "
                   "RAM; on a CPU there is nothing to page: use adam8bit")
    return out


def _bitsandbytes(what: str):
    try:
        import bitsandbytes
    except ImportError:
        raise ShoestringError(f"{what} needs bitsandbytes, which is not installed",
                              hint=f"{QUANT_HINT}; or leave the option out") from None
    return bitsandbytes


def optimizer_maker(cfg, device_type: str, standalone: bool = False
                    ) -> Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]:
    """A function building ``cfg.optimizer`` over a list of parameters (``standalone``:
    Adam/AdamW through :class:`~shoestring.train.fused_adam.FusedAdam`, the same kernel
    without importing ``torch._dynamo``)."""
    name, lr, wd = cfg.optimizer, cfg.lr, cfg.weight_decay
    if name in ("adam8bit", "paged-adam8bit"):
        bnb = _bitsandbytes(f"optimizer {name!r}")
        if name == "paged-adam8bit" and device_type != "cuda":
            raise ShoestringError("paged-adam8bit needs a CUDA device (its states live in "
                                  "unified memory)", hint="use --optimizer adam8bit on a CPU")
        cls = bnb.optim.PagedAdamW8bit if name == "paged-adam8bit" else bnb.optim.AdamW8bit
        return lambda params: cls(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return lambda params: torch.optim.SGD(params, lr=lr, momentum=cfg.momentum,
                                              weight_decay=wd)
    if standalone:
        from shoestring.train.fused_adam import FusedAdam

        return lambda params: FusedAdam(params, lr=lr, weight_decay=wd,
                                        decoupled_weight_decay=name == "adamw")
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    # bf16 parameters: the fused kernel covers them too (CPU since torch 2.4, CUDA).
    return lambda params: cls(params, lr=lr, weight_decay=wd, fused=True)


def activation_offload(enabled: bool, device_type: str):
    """A context under which the forward pass saves its activations in CPU RAM.

    On a CPU it is ``nullcontext``: the activations already live in CPU RAM.
    """
    if not enabled or device_type != "cuda":
        return nullcontext()
    return torch.autograd.graph.save_on_cpu(pin_memory=True)


def offload_note(enabled: bool, device_type: str) -> str | None:
    if enabled and device_type != "cuda":
        return ("offload_activations: no-op on a CPU (activations already live in CPU RAM); "
                "it moves them off a GPU")
    return None
