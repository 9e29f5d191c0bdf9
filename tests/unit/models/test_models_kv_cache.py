"""The KV cache gives the full forward pass's logits: prefill, step by step, batched rows
at different lengths, non-contiguous slots, every position/attention option."""

from __future__ import annotations

import pytest
import torch
from torch_threads import one_thread  # noqa: F401 (an autouse fixture)

from shoestring.errors import ShoestringError
from shoestring.models.generate import generate
from shoestring.models.gpt import GPT, GPTConfig
from shoestring.models.kv_cache import KVCache

# Tight, but not bitwise: the cached path multiplies smaller matrices, whose sums round
# differently (and differently again under AVX2 vs AVX-512 kernels).
TOL = {"atol": 2e-5, "rtol": 1e-5}

SHAPES = {
    "gpt2 (learned, MHA, tied)": {},
    "llama (rope, GQA, rmsnorm, swiglu, untied)": {
        "n_kv_head": 1, "pos": "rope", "norm": "rmsnorm", "mlp": "swiglu", "bias": False,
        "tie_embeddings": False},
    "rope + MHA": {"pos": "rope"},
    "learned + GQA": {"n_kv_head": 2, "n_head": 4},
    # Shorter than the 16-token sequences: the cache must apply the window too.
    "mistral (sliding window 5)": {
        "n_kv_head": 1, "pos": "rope", "norm": "rmsnorm", "mlp": "swiglu", "bias": False,
        "tie_embeddings": False, "sliding_window": 5},
}


def tiny(seed: int = 0, **options) -> GPT:
    """A small GPT with large random weights: sharp attention, so a wrong mask shows."""
    torch.manual_seed(seed)
    cfg = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "vocab_size": 29,
           **options}
    model = GPT(GPTConfig(**cfg)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return model


def full_logits(model: GPT, ids: list[int]) -> torch.Tensor:
    return model(torch.tensor([ids]))[0][0]  # [T, V]


@pytest.fixture(params=list(SHAPES), ids=list(SHAPES))
def model(request) -> GPT:
    return tiny(**SHAPES[request.param])


@torch.no_grad()
def test_prefill_then_token_by_token_matches_the_full_forward(model):
    ids = torch.randint(0, 29, (16,), generator=torch.Generator().manual_seed(1)).tolist()
    reference = full_logits(model, ids)
    cache = KVCache(model.config, slots=1)
    prefill, _ = model(torch.tensor([ids[:5]]), cache=cache.step([0], 5))
    torch.testing.assert_close(prefill[0], reference[:5], **TOL)
    chunk, _ = model(torch.tensor([ids[5:8]]), cache=cache.step([0], 3))  # a 3-token append
    torch.testing.assert_close(chunk[0], reference[5:8], **TOL)
    for t in range(8, 16):
        step, _ = model(torch.tensor([[ids[t]]]), cache=cache.step([0], 1))
        torch.testing.assert_close(step[0, 0], reference[t], **TOL)
    assert cache.lengths == [16]


@torch.no_grad()
def test_rows_at_different_lengths_decode_together(model):
    g = torch.Generator().manual_seed(2)
    seqs = {slot: torch.randint(0, 29, (n,), generator=g).tolist()
            for slot, n in [(0, 3), (1, 7), (2, 5), (3, 1)]}
    cache = KVCache(model.config, slots=4)
    for slot, ids in seqs.items():  # each joins with its own prefill
        model(torch.tensor([ids]), cache=cache.step([slot], len(ids)))
    nxt = {slot: [(7 * slot + k) % 29 for k in range(6)] for slot in seqs}
    for k in range(6):
        # Slot 1 leaves after 2 steps: the others continue as a non-contiguous batch.
        slots = [s for s in seqs if s != 1 or k < 2]
        logits, _ = model(torch.tensor([[nxt[s][k]] for s in slots]),
                          cache=cache.step(slots, 1), last_only=True)
        for row, s in enumerate(slots):
            seqs[s].append(nxt[s][k])
            torch.testing.assert_close(logits[row, -1], full_logits(model, seqs[s])[-1], **TOL)
    assert cache.lengths == [9, 9, 11, 7]
    cache.reset(1)  # a new sequence in a freed slot sees nothing of the old one
    fresh = [5, 6, 7]
    logits, _ = model(torch.tensor([fresh]), cache=cache.step([1], 3))
    torch.testing.assert_close(logits[0], full_logits(model, fresh), **TOL)


@torch.no_grad()
def test_generate_with_the_cache_gives_the_same_tokens_as_without(model):
    start = torch.tensor([[3, 1, 4], [1, 5, 9]])
    # 20 new tokens from 3: past block_size 16, where the window slides.
    greedy = generate(model, start, 20, temperature=0.0)
    assert torch.equal(greedy, generate(model, start, 20, temperature=0.0, use_cache=False))
    sampled = generate(model, start, 20, temperature=1.0, top_p=0.9,
                       generator=torch.Generator().manual_seed(3))
    assert torch.equal(sampled, generate(model, start, 20, temperature=1.0, top_p=0.9,
                                         generator=torch.Generator().manual_seed(3),
                                         use_cache=False))


@torch.no_grad()
def test_prompts_of_different_lengths_prefill_together(model):
    g = torch.Generator().manual_seed(4)
    prompts = [torch.randint(0, 29, (n,), generator=g).tolist() for n in (5, 2, 7)]
    cache = KVCache(model.config, slots=3)
    width = max(map(len, prompts))
    padded = torch.tensor([p + [0] * (width - len(p)) for p in prompts])  # right-padded
    logits, _ = model(padded, cache=cache.step([2, 0, 1], [len(p) for p in prompts]),
                      last_only=True)
    assert cache.lengths == [2, 7, 5]
    for row, p in enumerate(prompts):
        torch.testing.assert_close(logits[row, -1], full_logits(model, p)[-1], **TOL)
    # The padding written past each row's end is never seen by its next tokens.
    logits, _ = model(torch.tensor([[3], [4], [5]]), cache=cache.step([2, 0, 1], 1))
    for row, (p, t) in enumerate(zip(prompts, [3, 4, 5])):
        torch.testing.assert_close(logits[row, -1], full_logits(model, p + [t])[-1], **TOL)


def test_the_cache_refuses_to_overflow_and_to_train():
    model = tiny()
    cache = KVCache(model.config, slots=2, capacity=4)
    model(torch.tensor([[1, 2, 3]]), cache=cache.step([0], 3))
    with pytest.raises(ShoestringError, match="beyond the KV cache's capacity of 4"):
        cache.step([0], 2)
    with pytest.raises(ValueError, match="takes no targets"):
        model(torch.tensor([[1]]), torch.tensor([[2]]), cache=cache.step([1], 1))
    with pytest.raises(ShoestringError, match="capacity of 1 to block_size"):
        KVCache(model.config, slots=1, capacity=17)


def test_cache_size_is_known_before_allocating():
    cfg = GPTConfig(n_layer=2, n_head=4, n_kv_head=2, n_embd=32, block_size=16, vocab_size=10)
    cache = KVCache(cfg, slots=3)
    held = sum(t.numel() * t.element_size() for t in cache.k + cache.v)
    assert held == KVCache.bytes_needed(cfg, 3) == 2 * 2 * 3 * 16 * 2 * 8 * 4
