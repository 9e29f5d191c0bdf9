"""Learning-rate schedules as pure functions of the step.

Being a function of the step alone, a schedule needs no state in a checkpoint.
"""

from __future__ import annotations

import math


def lr_at(step: int, *, peak: float, total_steps: int, schedule: str, warmup_steps: int = 0) -> float:
    """Learning rate at optimizer step ``step`` (0-based).

    - ``constant``: ``peak``.
    - ``warmup``: linear from ``peak/warmup`` to ``peak`` over ``warmup_steps``, then constant
      (Goyal et al. 2017, "Accurate, Large Minibatch SGD", §2.2).
    - ``cosine``: optional linear warm-up, then half-cosine decay to 0
      (Loshchilov & Hutter 2017, SGDR).
    - ``onecycle``: linear rise from ``peak/25`` to ``peak`` over 30% of the steps, then
      cosine anneal to ``peak/1e4`` (Smith & Topin 2018; the constants are those of
      ``torch.optim.lr_scheduler.OneCycleLR``'s defaults).

    >>> lr_at(0, peak=1.0, total_steps=10, schedule="constant")
    1.0
    """
    total = max(total_steps, 1)
    if schedule == "constant":
        return peak
    if schedule in ("warmup", "cosine") and warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "warmup":
        return peak
    if schedule == "cosine":
        span = max(total - warmup_steps, 1)
        progress = min(max(step - warmup_steps, 0) / span, 1.0)
        return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "onecycle":
        initial, final = peak / 25.0, peak / 25.0 / 1e4
        rise = max(int(0.3 * total), 1)
        if step < rise:
            return initial + (peak - initial) * step / rise
        progress = min((step - rise) / max(total - rise, 1), 1.0)
        return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}")
