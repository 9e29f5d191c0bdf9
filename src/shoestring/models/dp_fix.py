"""The ``dp-fix`` transform: a module made trainable by DP-SGD, rebuilt the same way on load.

DP-SGD needs each example's own gradient, and two kinds of layer stand in the
way (Opacus' ``ModuleValidator`` lists them): BatchNorm mixes the examples of
a batch, so one example's output (and gradient) depends on the others; and an
in-place activation overwrites the tensor a per-sample-gradient hook reads.
``ModuleValidator.fix`` replaces BatchNorm by GroupNorm (``gcd(32, C)``
groups, Wu & He 2018) and LSTM/GRU/MultiheadAttention by Opacus' DP versions;
in-place activations it leaves alone, so they are switched off here. The
change alters the module's structure (GroupNorm keeps no running statistics),
so it is a card transform: ``load_run`` rebuilds the fixed module before
loading the weights. A BatchNorm's learned scale and shift carry over to the
GroupNorm (same shape), so a warm start keeps them.
"""

from __future__ import annotations

from typing import Any

from torch import nn

KIND = "dp-fix"


def what_needs_fixing(module: nn.Module) -> list[str]:
    """Human-readable list of what :func:`dp_fix` changes in ``module`` (empty: nothing).

    >>> what_needs_fixing(nn.Sequential(nn.Linear(2, 2), nn.ReLU(inplace=True)))
    ['1.ReLU: in-place → out-of-place']
    """
    out = []
    for name, m in module.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            out.append(f"{name}.{type(m).__name__} → GroupNorm")
        elif isinstance(m, (nn.LSTM, nn.GRU, nn.MultiheadAttention)):
            out.append(f"{name}.{type(m).__name__} → Opacus' DP{type(m).__name__}")
        elif getattr(m, "inplace", False) is True:
            out.append(f"{name}.{type(m).__name__}: in-place → out-of-place")
    return out


def dp_fix(module: nn.Module, config: dict[str, Any]) -> nn.Module:
    """The ``dp-fix`` transform (``config`` is empty): Opacus' fix, in-place activations off."""
    from opacus.validators import ModuleValidator

    changes = what_needs_fixing(module)
    affine = {name: (m.weight, m.bias) for name, m in module.named_modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine}
    fixed = ModuleValidator.fix(module)
    for name, m in fixed.named_modules():
        if name in affine and isinstance(m, nn.GroupNorm) and m.affine:
            m.weight, m.bias = affine[name]
        if getattr(m, "inplace", False) is True:
            m.inplace = False
    fixed.dp_fixed = changes  # read by training's log; not part of the state dict
    return fixed
