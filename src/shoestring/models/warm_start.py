"""Loading a base model's weights into a module whose head may differ (a warm start).

Fine-tuning keeps the body (embeddings, blocks) of the model it starts from and
may change its head: a classifier fine-tuned from a masked language model has
a new pooler and classifier and no MLM head; a classifier over 5 classes has a
new classifier when its base had 3. Tensors are matched by name: the body must
match exactly (else the architectures differ and the warm start is refused);
head tensors that are missing or shaped differently start fresh, and the
base's tensors this module has no place for are left out. All three lists are
reported.

>>> import torch
>>> a, b = torch.nn.Linear(2, 3), torch.nn.Linear(2, 3)
>>> sorted(load_matching_weights(b, a.state_dict(), "base").loaded)
['bias', 'weight']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from shoestring.errors import ShoestringError

# Parameters that belong to a task head: they may start fresh in a fine-tune.
HEADS = ("classifier", "pooler", "mlm_head")
SHOWN = 6


@dataclass
class WarmStart:
    """Which tensors came from the base, which start fresh, which were left out."""

    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def notes(self, source: str) -> list[str]:
        out = [f"warm start from '{source}': {len(self.loaded)} tensors loaded"]
        if self.fresh:
            out.append(f"new (trained from scratch): {_short(self.fresh)}")
        if self.unused:
            out.append(f"left out (this model has no place for them): {_short(self.unused)}")
        return out


def _short(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" …and {len(names) - SHOWN} more"
                                       if len(names) > SHOWN else "")


def _is_head(name: str) -> bool:
    return name.split(".", 1)[0] in HEADS


def load_matching_weights(module: nn.Module, state: Mapping[str, torch.Tensor],
                          source: str) -> WarmStart:
    """Copy ``state`` into ``module`` by name; heads may differ, the body may not."""
    own = module.state_dict()
    result = WarmStart()
    wrong = []
    take = {}
    for name, tensor in own.items():
        theirs = state.get(name)
        if theirs is not None and tuple(theirs.shape) == tuple(tensor.shape):
            take[name] = theirs
            result.loaded.append(name)
        elif _is_head(name):
            result.fresh.append(name)
        elif theirs is None:
            wrong.append(f"{name} is missing")
        else:
            wrong.append(f"{name} is {list(theirs.shape)} there, {list(tensor.shape)} here")
    if wrong:
        raise ShoestringError(f"'{source}' does not fit this model: {_short(wrong)}",
                              hint="fine-tune from a model of the same shape: leave the shape "
                              "fields ([model] n_layer, n_embd…) unset so they come from it")
    result.unused = sorted(k for k in state if k not in own)
    module.load_state_dict(take, strict=False)
    return result
