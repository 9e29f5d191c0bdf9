"""BERT masking: 15% chosen, 80/10/10, never special tokens, the same for the same seed."""

from __future__ import annotations

import torch

from shoestring.data.masking import IGNORE, mask_tokens


def _ids(n: int = 200_000) -> torch.Tensor:
    ids = torch.randint(3, 103, (n // 100, 100), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = 1  # [CLS]
    ids[:, -5:] = 0  # [PAD]
    return ids


def test_rates_match_bert():
    ids = _ids()
    x, y = mask_tokens(ids, seed=3, mask_id=103, low=2, high=103)
    ordinary = (ids >= 2).sum().item()
    chosen = y != IGNORE
    assert abs(chosen.sum().item() / ordinary - 0.15) < 0.005
    masked = (x == 103) & chosen
    kept = (x == ids) & chosen
    n = chosen.sum().item()
    assert abs(masked.sum().item() / n - 0.8) < 0.01
    # random replacements equal the original about 1% of the time; "kept" ≈ 10% + that.
    assert abs(kept.sum().item() / n - (0.1 + 0.1 / 101)) < 0.01
    assert (y[chosen] == ids[chosen]).all()


def test_special_tokens_are_never_chosen_nor_changed():
    ids = _ids()
    x, y = mask_tokens(ids, seed=1, mask_id=103, low=2, high=103,
                       special=torch.tensor([50]))
    specials = (ids < 2) | (ids == 50)
    assert (y[specials] == IGNORE).all() and (x[specials] == ids[specials]).all()
    assert (x[y == IGNORE] == ids[y == IGNORE]).all()  # unscored positions untouched


def test_same_seed_same_masks_other_seed_other_masks():
    ids = _ids(10_000)
    a = mask_tokens(ids, seed=7, mask_id=103, low=2, high=103)
    b = mask_tokens(ids, seed=7, mask_id=103, low=2, high=103)
    c = mask_tokens(ids, seed=8, mask_id=103, low=2, high=103)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
