"""BERT's masked-language-model corruption: pick 15% of the tokens, hide most of them.

Devlin et al. 2019 (arXiv:1810.04805), section 3.1 and appendix A.1: each
token is chosen for prediction with probability 0.15; a chosen token is
replaced by ``[MASK]`` 80% of the time, by a random token 10% of the time and
left unchanged 10% of the time, and the model is scored on the chosen
positions only. Special tokens (``[CLS]``, ``[PAD]``) are never chosen.

The draw is a pure function of the ids and a seed, so a resumed run (or an
evaluation) sees exactly the same masks.

>>> import torch
>>> ids = torch.arange(2, 12).repeat(2, 1)
>>> x, y = mask_tokens(ids, seed=0, mask_id=12, low=2, high=12, prob=0.5)
>>> bool(((y == -1) | (y == ids)).all()), bool((x[y == -1] == ids[y == -1]).all())
(True, True)
"""

from __future__ import annotations

import torch

MASK_PROB = 0.15                       # share of tokens chosen for prediction
MASK_SPLIT = (0.8, 0.1)                # of those: [MASK], random token (the rest unchanged)
IGNORE = -1                            # target of positions that are not scored


def mask_tokens(ids: torch.Tensor, *, seed: int, mask_id: int, low: int, high: int,
                prob: float = MASK_PROB, special: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupted inputs and targets (``IGNORE`` where not scored) for ``ids`` ``[B, T]``.

    Random replacements are drawn from ``[low, high)`` (the ordinary tokens);
    ids outside that range, or listed in ``special``, are never chosen.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"mask probability must be in (0, 1), got {prob}")
    gen = torch.Generator().manual_seed(int(seed))
    choose_u = torch.rand(ids.shape, generator=gen)
    kind_u = torch.rand(ids.shape, generator=gen)
    random_ids = torch.randint(low, high, ids.shape, generator=gen)
    ids_cpu = ids.cpu()
    candidate = (ids_cpu >= low) & (ids_cpu < high)
    if special is not None:
        candidate &= ~torch.isin(ids_cpu, special.cpu())
    chosen = (choose_u < prob) & candidate
    targets = torch.where(chosen, ids_cpu, torch.full_like(ids_cpu, IGNORE))
    inputs = ids_cpu.clone()
    to_mask = chosen & (kind_u < MASK_SPLIT[0])
    to_random = chosen & (kind_u >= MASK_SPLIT[0]) & (kind_u < MASK_SPLIT[0] + MASK_SPLIT[1])
    inputs[to_mask] = mask_id
    inputs[to_random] = random_ids[to_random]
    return inputs.to(ids.device), targets.to(ids.device)
