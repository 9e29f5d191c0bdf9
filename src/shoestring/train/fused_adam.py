"""Adam and AdamW on PyTorch's fused kernel, without ``torch.optim.Optimizer``.

``torch.optim.Optimizer`` wraps its methods to keep ``torch.compile`` out of
them, and that wrapper imports ``torch._dynamo`` (and sympy) the first time
any optimizer is built or stepped: about as long as importing torch itself
(measured 2.1 s of CPU on top of torch's 2.4 s on the development machine),
paid by every run that never compiles anything. This class calls the very
kernel ``torch.optim.Adam(fused=True)`` calls (``torch._fused_adam_`` /
``torch._fused_adamw_``, the same arguments, the same float32 step counter),
so its updates are bit-identical (``tests/unit/train/test_fused_adam.py``),
and it reads and writes the same ``state_dict`` layout, so a checkpoint moves
freely between the two. It covers what single-process training uses:
parameter groups with a per-step ``lr``, no AMSGrad, no gradient scaler.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


class FusedAdam:
    """``torch.optim.Adam``/``AdamW`` with ``fused=True``, minus the Optimizer machinery."""

    def __init__(self, params: Iterable[torch.nn.Parameter], *, lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False) -> None:
        self.param_groups: list[dict[str, Any]] = [{
            "params": list(params), "lr": lr, "betas": betas, "eps": eps,
            "weight_decay": weight_decay, "amsgrad": False, "maximize": False,
            "foreach": None, "capturable": False, "differentiable": False, "fused": True,
            "decoupled_weight_decay": decoupled_weight_decay}]
        self.state: dict[torch.nn.Parameter, dict[str, torch.Tensor]] = {}

    def _states(self, params: list[torch.nn.Parameter]) -> list[dict[str, torch.Tensor]]:
        """Each parameter's state; those that start in the same step (usually all of them)
        share one float32 step counter per device (torch.optim.Adam._init_group, fused)."""
        fresh: dict[torch.device, torch.Tensor] = {}
        for p in params:
            if p not in self.state:
                step = fresh.get(p.device)
                if step is None:
                    step = fresh[p.device] = torch.zeros((), dtype=torch.float32,
                                                         device=p.device)
                self.state[p] = {
                    "step": step,
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        return [self.state[p] for p in params]

    def _separate(self, params: list[torch.nn.Parameter]) -> None:
        """Give every parameter its own step counter (a shared one would be counted
        once per parameter, or for parameters that did not step)."""
        seen: set[int] = set()
        for p in params:
            s = self.state.get(p)
            if s is not None:
                if id(s["step"]) in seen:
                    s["step"] = s["step"].clone()
                seen.add(id(s["step"]))

    @torch.no_grad()
    def step(self) -> None:
        for g in self.param_groups:
            params = [p for p in g["params"] if p.grad is not None]
            if not params:
                continue
            states = self._states(params)
            first = states[0]["step"]
            # One add_ counts a step for all when every parameter of the group steps
            # and shares the counter; the kernel reads each parameter's counter.
            if len(params) == len(g["params"]) and all(s["step"] is first for s in states):
                first.add_(1)
            else:
                self._separate(g["params"])
                torch._foreach_add_([s["step"] for s in states], 1)
            kernel = torch._fused_adamw_ if g["decoupled_weight_decay"] else torch._fused_adam_
            beta1, beta2 = g["betas"]
            kernel(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                   [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states],
                   amsgrad=False, lr=g["lr"], beta1=beta1, beta2=beta2,
                   weight_decay=g["weight_decay"], eps=g["eps"], maximize=False,
                   grad_scale=None, found_inf=None)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Optimizer.state_dict``'s layout: parameters by index."""
        index: dict[torch.nn.Parameter, int] = {}
        groups = []
        for g in self.param_groups:
            ids = [index.setdefault(p, len(index)) for p in g["params"]]
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        # Each parameter its own step tensor, as torch.optim's layout has it.
        state = {index[p]: {**s, "step": s["step"].clone()} for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups) or any(
                len(a["params"]) != len(b["params"]) for a, b in zip(saved, self.param_groups)):
            raise ValueError("optimizer state does not match the model's parameter groups")
        by_index = {}
        for g_saved, g in zip(saved, self.param_groups):
            for i, p in zip(g_saved["params"], g["params"]):
                by_index[i] = p
            g.update({k: v for k, v in g_saved.items() if k != "params"})
            g["betas"] = tuple(g["betas"])
        self.state = {}
        group_of = {id(p): k for k, g in enumerate(self.param_groups) for p in g["params"]}
        shared: dict[tuple, torch.Tensor] = {}  # a group's equal counters: one tensor
        for i, s in state_dict["state"].items():
            p = by_index[int(i)]
            step = torch.as_tensor(s["step"], dtype=torch.float32)
            step = shared.setdefault((group_of[id(p)], float(step), p.device),
                                     step.to(p.device).clone())
            self.state[p] = {
                "step": step,
                "exp_avg": s["exp_avg"].to(p.device, p.dtype).clone(),
                "exp_avg_sq": s["exp_avg_sq"].to(p.device, p.dtype).clone()}
