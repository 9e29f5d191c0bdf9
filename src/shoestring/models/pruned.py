"""The ``prune`` transform: a structurally pruned module's smaller tensors.

Structured pruning (``shoestring compress``, :mod:`shoestring.compress.prune`)
removes whole neurons and channels, so a pruned run's weights are smaller
than the architecture it was built from. The transform records every tensor
whose shape changed (``{"shapes": {"net.1.weight": [64, 784], …}}``) and, on
load, gives those parameters and buffers empty tensors of the recorded
shapes, fixing the layers' size attributes (``in_features``,
``out_channels``, ``num_features``…) to match; the weights then load strictly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from shoestring.errors import ShoestringError

KIND = "prune"


def changed_shapes(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]
                   ) -> dict[str, list[int]]:
    """State-dict entries whose shape differs (the transform's config)."""
    return {k: list(v.shape) for k, v in after.items()
            if k in before and tuple(before[k].shape) != tuple(v.shape)}


def _fix_sizes(layer: nn.Module) -> None:
    """Make a layer's size attributes agree with its (resized) weight."""
    w = getattr(layer, "weight", None)
    if isinstance(layer, nn.Linear) and w is not None:
        layer.out_features, layer.in_features = w.shape
    elif isinstance(layer, nn.modules.conv._ConvNd) and w is not None:
        layer.out_channels = w.shape[0]
        layer.in_channels = w.shape[1] * layer.groups
    elif isinstance(layer, nn.modules.batchnorm._NormBase) and w is not None:
        layer.num_features = w.shape[0]
    elif isinstance(layer, nn.LayerNorm) and w is not None:
        layer.normalized_shape = tuple(w.shape)
    elif isinstance(layer, nn.Embedding) and w is not None:
        layer.num_embeddings, layer.embedding_dim = w.shape


def prune(module: nn.Module, config: dict[str, Any]) -> nn.Module:
    """Resize the tensors ``config["shapes"]`` names (values are loaded afterwards)."""
    shapes = config.get("shapes")
    if not isinstance(shapes, dict) or not shapes:
        raise ShoestringError("prune transform: no tensor shapes recorded",
                              hint="the model card is damaged; restore it")
    touched = set()
    for name, shape in shapes.items():
        owner_name, _, attr = name.rpartition(".")
        try:
            owner = module.get_submodule(owner_name) if owner_name else module
        except AttributeError:
            owner = None
        current = getattr(owner, attr, None) if owner is not None else None
        if not isinstance(current, torch.Tensor):
            raise ShoestringError(f"prune transform: the model has no tensor {name!r}",
                                  hint="the card does not belong to this architecture")
        empty = torch.empty(shape, dtype=current.dtype, device=current.device)
        if isinstance(current, nn.Parameter):
            setattr(owner, attr, nn.Parameter(empty, requires_grad=current.requires_grad))
        else:
            owner.register_buffer(attr, empty)
        touched.add(owner)
    for layer in touched:
        _fix_sizes(layer)
    return module
