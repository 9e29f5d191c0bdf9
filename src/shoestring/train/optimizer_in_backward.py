"""Optimizer step inside the backward pass: each gradient is used and freed as soon as it exists.

A normal step keeps every parameter's gradient alive until ``optimizer.step()``
(for a model with N parameters, N more values of memory at the peak). Here
each parameter has its own optimizer, stepped by a
``register_post_accumulate_grad_hook`` the moment its gradient is complete,
which then drops the gradient: at most one parameter's gradient is alive.
This is torchtune's ``optimizer_in_bwd`` and PyTorch's tutorial recipe
("How to save memory by fusing the optimizer step into the backward pass").

It changes nothing about the update when each step has one backward: the
per-parameter AdamW updates are the same arithmetic as one AdamW over all
parameters. It cannot accumulate gradients over micro-batches, clip by the
global gradient norm (no global gradient ever exists) or wait for a
data-parallel all-reduce, so the trainer refuses those combinations.

:class:`OptimizerInBackward` looks enough like an optimizer for the loop:
``step``/``zero_grad`` do nothing (the hooks did it), ``param_groups`` are the
per-parameter groups (so the schedule sets their learning rate), and
``state_dict``/``load_state_dict`` save and restore every parameter's state
in the usual single-optimizer layout (one group per parameter).

>>> import torch
>>> w = torch.nn.Parameter(torch.ones(3))
>>> opt = OptimizerInBackward([w], lambda ps: torch.optim.SGD(ps, lr=0.5))
>>> (w * 2).sum().backward()
>>> w.detach().tolist(), w.grad
([0.0, 0.0, 0.0], None)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class OptimizerInBackward:
    """One optimizer per parameter, stepped from that parameter's gradient hook."""

    def __init__(self, params: Iterable[torch.nn.Parameter],
                 make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.optimizers = [make([p]) for p in self.params]
        self._handles = [p.register_post_accumulate_grad_hook(self._hook(opt))
                         for p, opt in zip(self.params, self.optimizers)]

    @staticmethod
    def _hook(opt: torch.optim.Optimizer):
        def step(param: torch.Tensor) -> None:
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    @property
    def state(self) -> dict:
        return {p: s for opt in self.optimizers for p, s in opt.state.items()}

    def step(self, closure=None) -> None:
        """Nothing left to do: every parameter was stepped during backward."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Nothing to clear: each gradient was dropped right after its step."""

    def state_dict(self) -> dict[str, Any]:
        """The single-optimizer layout: parameter ``i`` is group ``i``."""
        state, groups = {}, []
        for i, opt in enumerate(self.optimizers):
            sd = opt.state_dict()
            if 0 in sd["state"]:
                state[i] = sd["state"][0]
            groups.append({**sd["param_groups"][0], "params": [i]})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.optimizers):
            raise ValueError(f"the saved optimizer has {len(groups)} parameter groups, this "
                             f"one {len(self.optimizers)}")
        for i, opt in enumerate(self.optimizers):
            saved = state_dict["state"].get(i, state_dict["state"].get(str(i)))
            opt.load_state_dict({"state": {0: saved} if saved is not None else {},
                                 "param_groups": [{**groups[i], "params": [0]}]})

    def remove(self) -> None:
        """Detach the hooks (the parameters then need an ordinary optimizer)."""
        for h in self._handles:
            h.remove()
        self._handles = []
