"""next_tokens: greedy, top-k, top-p, the sampled distribution, per-row generators."""

from __future__ import annotations

import pytest
import torch

from shoestring.errors import ShoestringError
from shoestring.models.sampling import SamplingParams, next_tokens

LOGITS = torch.log(torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]]))  # probabilities at T = 1


def draws(params: SamplingParams, n: int = 3000, seed: int = 0) -> torch.Tensor:
    """``n`` samples: one batch of ``n`` rows, each with its own generator."""
    gens = [torch.Generator().manual_seed(seed * n + i) for i in range(n)]
    return next_tokens(LOGITS.expand(n, -1), [params] * n, gens)


def test_greedy_top_1_and_a_tiny_nucleus_all_pick_the_argmax():
    for p in (SamplingParams(0.0), SamplingParams(1.0, top_k=1), SamplingParams(2.0, top_p=1e-6)):
        assert set(draws(p, 50).tolist()) == {1}


def test_samples_follow_the_softmax_of_logits_over_temperature():
    counts = torch.bincount(draws(SamplingParams(1.0), 6000), minlength=5).float() / 6000
    expected = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.15])
    assert (counts - expected).abs().max() < 0.03  # ~5 standard errors at n = 6000
    hot = torch.bincount(draws(SamplingParams(0.5), 6000), minlength=5).float() / 6000
    sharpened = expected ** 2 / (expected ** 2).sum()  # T = 0.5 squares the probabilities
    assert (hot - sharpened).abs().max() < 0.03


def test_top_k_and_top_p_keep_only_the_most_likely_tokens():
    assert set(draws(SamplingParams(1.0, top_k=2), 500).tolist()) == {1, 3}
    # Nucleus 0.75: 0.4 + 0.3 = 0.7 < 0.75, so the third (0.15) is needed too.
    nucleus = draws(SamplingParams(1.0, top_p=0.75), 3000)
    assert set(nucleus.tolist()) == {1, 3, 4}
    share = torch.bincount(nucleus, minlength=5).float()[[1, 3, 4]] / 3000
    assert (share - torch.tensor([0.4, 0.3, 0.15]) / 0.85).abs().max() < 0.04
    # top-k first, then top-p over what is left (Hugging Face's order).
    assert set(draws(SamplingParams(1.0, top_k=3, top_p=0.55), 500).tolist()) == {1, 3}


def test_each_row_draws_from_its_own_generator():
    rows = LOGITS.repeat(3, 1)
    params = [SamplingParams(1.0), SamplingParams(0.0), SamplingParams(1.0, top_p=0.9)]
    alone = [[next_tokens(LOGITS, [p], [torch.Generator().manual_seed(s)])[0].item()
              for s in range(20)] for p in params]
    together = [[], [], []]
    for s in range(20):
        out = next_tokens(rows, params, [torch.Generator().manual_seed(s) for _ in range(3)])
        for b in range(3):
            together[b].append(out[b].item())
    assert together == alone and len(set(alone[0])) > 1


def test_vocab_limit_bans_padded_ids():
    logits = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    assert next_tokens(logits, [SamplingParams(0.0)], vocab_limit=2).item() in (0, 1)
    g = torch.Generator().manual_seed(0)
    assert {next_tokens(logits, [SamplingParams(3.0)], [g], vocab_limit=2).item()
            for _ in range(50)} == {0, 1}


def test_bad_settings_are_reported_together():
    with pytest.raises(ShoestringError, match="temperature must be 0.*top_k must be at least 1"
                       ".*top_p must be in"):
        SamplingParams(-1.0, top_k=0, top_p=1.5).check()
    assert SamplingParams(float("nan")).problems()
