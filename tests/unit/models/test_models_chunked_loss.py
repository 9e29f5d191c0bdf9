"""Chunked cross-entropy equals the plain loss, in value and in gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from shoestring.models.chunked_loss import chunked_cross_entropy
from shoestring.models.gpt import GPT, GPTConfig


def _problem(seed: int = 0, n: int = 37, d: int = 16, vocab: int = 50):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=torch.float64).requires_grad_()
    w = torch.randn(vocab, d, generator=g, dtype=torch.float64).requires_grad_()
    t = torch.randint(0, vocab, (n,), generator=g)
    t[::5] = -1  # ignored positions (padding, or unmasked MLM tokens)
    return h, w, t


@pytest.mark.parametrize("chunks", [1, 2, 5, 8, 37, 100])
def test_value_and_gradients_equal_the_full_cross_entropy(chunks):
    h, w, t = _problem()
    full = F.cross_entropy(h @ w.T, t, ignore_index=-1)
    gh, gw = torch.autograd.grad(full * 3.0, (h, w))
    got = chunked_cross_entropy(h, w, t, chunks=chunks)
    ch, cw = torch.autograd.grad(got * 3.0, (h, w))  # a non-unit upstream gradient
    torch.testing.assert_close(got, full, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ch, gh, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cw, gw, rtol=1e-10, atol=1e-12)


def test_frozen_head_gets_no_gradient_and_costs_none():
    h, w, t = _problem()
    w.requires_grad_(False)
    loss = chunked_cross_entropy(h, w, t, chunks=4)
    loss.backward()
    assert h.grad is not None and w.grad is None


def test_gpt_with_loss_chunks_trains_like_the_plain_loss():
    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=12, vocab_size=29)
    plain, chunked = GPT(cfg), GPT(cfg)
    chunked.load_state_dict(plain.state_dict())
    chunked.set_loss_chunks(4)
    x = torch.randint(0, 29, (3, 12))
    y = torch.randint(0, 29, (3, 12))
    logits, loss = plain(x, y)
    none, closs = chunked(x, y)
    assert none is None and logits is not None
    torch.testing.assert_close(closs, loss, rtol=1e-5, atol=1e-6)
    loss.backward()
    closs.backward()
    for (name, a), b in zip(plain.named_parameters(), chunked.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert chunked(x)[0].shape == (3, 12, 29)  # without targets: logits, as always
