"""Structured pruning with Torch-Pruning's dependency graph, then a short fine-tune.

Torch-Pruning (Fang et al., CVPR 2023, "DepGraph: Towards Any Structural
Pruning") traces the model once and groups every tensor that must shrink
together (a Linear's output neurons, the next Linear's inputs, a BatchNorm's
channels), so removing a neuron really removes its row and column: the
model gets smaller and faster, unlike ``torch.nn.utils.prune``'s masks.
Importance is the group's L2 weight norm; the output layer is never pruned
(its size is the number of classes). Transformer runs prune only their MLP
neurons (attention heads and the residual width are kept, so the shapes of
:class:`~shoestring.models.gpt.GPTConfig` still hold).

Each ratio becomes a candidate; the pruned model is saved with the ``prune``
transform (:mod:`shoestring.models.pruned`) and fine-tuned by
:func:`shoestring.train.train` warm-started from it (``init_from``).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from shoestring.compress.config import Prune
from shoestring.compress.finetune import finetune
from shoestring.errors import ShoestringError
from shoestring.models.pruned import KIND, changed_shapes

if TYPE_CHECKING:
    from shoestring.compress.methods import Candidate
    from shoestring.compress.session import Session


def _ignored(model: nn.Module, family: str) -> list[nn.Module]:
    """Layers whose outputs must keep their size."""
    if family == "gpt":
        keep = [model.wte] + ([model.wpe] if model.wpe is not None else [])
        keep += [m for m in model.modules() if isinstance(m, nn.Linear) and
                 not _is_mlp_input(model, m)]
        return keep
    linears = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return linears[-1:]  # the head: one output per class or target


def _is_mlp_input(model: nn.Module, layer: nn.Module) -> bool:
    return any(getattr(b.mlp, "c_fc", None) is layer or getattr(b.mlp, "w1", None) is layer or
               getattr(b.mlp, "w3", None) is layer for b in getattr(model, "blocks", []))


def prune_module(model: nn.Module, ratio: float, example: torch.Tensor, family: str
                 ) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of its prunable neurons/channels removed."""
    import torch_pruning as tp

    pruned = copy.deepcopy(model).eval()
    try:
        pruner = tp.pruner.MetaPruner(
            pruned, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio, ignored_layers=_ignored(pruned, family),
            forward_fn=(lambda m, x: m(x)[0]) if family == "gpt" else None)
        pruner.step()
    except Exception as exc:  # Torch-Pruning raises plain exceptions on untraceable models
        raise ShoestringError(f"structured pruning failed on this {family} model: {exc}",
                              hint="leave prune out of --methods") from None
    return pruned


def prune_candidates(method: Prune, c: Candidate, s: Session) -> list[Candidate]:
    from shoestring.compress.methods import with_transform

    out = []
    for ratio in method.ratios:
        name = f"prune-{ratio:g}"
        s.progress(f"{name}: pruning")
        before = c.module.state_dict()
        example = s.workload.example_inputs(2)
        module = prune_module(c.module, ratio, example, c.card.family)
        shapes = changed_shapes(before, module.state_dict())
        if not shapes:
            c.notes.append(f"{name}: nothing to prune")
            continue
        pruned = with_transform(replace(c, module=module), KIND, {"shapes": shapes}, name)
        params = sum(p.numel() for p in module.parameters())
        pruned.notes = [*c.notes, f"{params:,} parameters after pruning "
                        f"({params / max(sum(p.numel() for p in c.module.parameters()), 1):.0%})"]
        if method.finetune_steps:
            lr = method.lr or s.workload.train_config.train.lr / 10
            s.progress(f"{name}: fine-tuning {method.finetune_steps} steps")
            pruned = finetune(pruned, s, steps=method.finetune_steps, lr=lr, label=name)
        out.append(pruned)
    return out
