"""A key/value cache for :class:`~shoestring.models.gpt.GPT`: incremental decoding, many sequences.

Without a cache every new token reruns the whole context; with one, each
step runs only the new tokens and attends to the keys and values stored by
earlier steps (the "incremental decoding" of Pope et al. 2022, *Efficiently
Scaling Transformer Inference*, arXiv:2211.05102, section 2).

The cache holds ``slots`` sequences of up to ``capacity`` tokens each, in
preallocated buffers ``[slots, n_kv_head, capacity, head_dim]`` per layer.
A forward pass writes the keys and values of its tokens and reads those of
earlier steps through a :class:`CacheStep`, which says, for every row of the
batch, which slot it is and where its tokens start. Rows may sit at different
lengths: each query sees the keys at or before its own position (a mask per
row), so a batch can mix a sequence just prefilled with one 50 tokens in.
That is what continuous batching needs (Yu et al. 2022, *Orca*, OSDI,
"iteration-level scheduling").

>>> import torch
>>> from shoestring.models.gpt import GPT, GPTConfig
>>> model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11)).eval()
>>> cache = KVCache(model.config, slots=2)
>>> prefill, _ = model(torch.tensor([[1, 2, 3]]), cache=cache.step([0], 3))
>>> step, _ = model(torch.tensor([[4]]), cache=cache.step([0], 1))
>>> full, _ = model(torch.tensor([[1, 2, 3, 4]]))
>>> bool(torch.allclose(step[0, -1], full[0, -1], atol=1e-5)), cache.lengths[0]
(True, 4)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from shoestring.errors import ShoestringError


class KVCache:
    """Keys and values of ``slots`` sequences, each up to ``capacity`` tokens (default: the
    model's ``block_size``). Memory: ``2 · n_layer · slots · capacity · n_kv_head · head_dim``
    elements of ``dtype``."""

    def __init__(self, config, slots: int, capacity: int | None = None, *,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        capacity = config.block_size if capacity is None else capacity
        if slots < 1 or not 1 <= capacity <= config.block_size:
            raise ShoestringError(f"a KV cache needs at least 1 slot and a capacity of 1 to "
                                  f"block_size ({config.block_size}) tokens; got {slots} slots, "
                                  f"capacity {capacity}", hint="e.g. KVCache(config, slots=8)")
        self.config, self.slots, self.capacity = config, slots, capacity
        shape = (slots, config.kv_heads, capacity, config.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.lengths = [0] * slots  # tokens stored per slot

    @staticmethod
    def bytes_needed(config, slots: int, capacity: int | None = None, itemsize: int = 4) -> int:
        """Memory of a cache of this shape, before allocating it."""
        capacity = config.block_size if capacity is None else capacity
        return 2 * config.n_layer * slots * capacity * config.kv_heads * config.head_dim * itemsize

    def reset(self, slot: int) -> None:
        """Forget a slot's sequence (its buffers are overwritten by the next one)."""
        self.lengths[slot] = 0

    def step(self, slots: Sequence[int], tokens: int | Sequence[int]) -> CacheStep:
        """A forward pass appending ``tokens`` tokens to each of ``slots`` (one row each).

        ``tokens`` may differ per row (prompts of different lengths prefilled together):
        the input is then right-padded to the longest, and the padding's keys and values,
        written past each row's end, are never seen (the mask) and are overwritten by the
        row's next tokens.
        """
        return CacheStep(self, list(slots), tokens)


class CacheStep:
    """One forward pass through a :class:`KVCache`: positions, mask, and the write/read of k, v.

    ``positions`` ``[B, T]`` are each row's absolute token positions (for position
    embeddings and RoPE); ``mask`` ``[B, 1, T, L]`` lets query ``i`` of row ``b`` see key
    ``j`` iff ``j <= positions[b, i]``, where ``L`` is the longest row after this step.
    """

    def __init__(self, cache: KVCache, slots: list[int], tokens: int | Sequence[int]) -> None:
        counts = [tokens] * len(slots) if isinstance(tokens, int) else list(tokens)
        if not slots or len(counts) != len(slots) or min(counts) < 1:
            raise ValueError("a cache step needs at least one slot and one token per slot")
        self.cache, self.slots, self.counts = cache, slots, counts
        self.tokens = tokens = max(counts)  # the input's width: rows are right-padded to it
        starts = [cache.lengths[s] for s in slots]
        self.key_len = max(starts) + tokens
        if self.key_len > cache.capacity:
            raise ShoestringError(f"a sequence would grow to {self.key_len} tokens, beyond the "
                                  f"KV cache's capacity of {cache.capacity}",
                                  hint="stop generating at the context length (block_size)")
        device = cache.k[0].device
        self._starts = starts
        self.positions = (torch.tensor(starts, device=device)[:, None]
                          + torch.arange(tokens, device=device))
        keys = torch.arange(self.key_len, device=device)
        self.mask = (keys[None, None, :] <= self.positions[:, :, None])[:, None]
        first = slots[0]
        # Rows that are consecutive slots read a view of the buffers instead of a gathered copy.
        self._rows: slice | torch.Tensor = (
            slice(first, first + len(slots)) if slots == list(range(first, first + len(slots)))
            else torch.tensor(slots, device=device))
        self._index = torch.tensor(slots, device=device)[:, None]
        self._last = torch.tensor(counts, device=device) - 1

    def last_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, T, C]`` at each row's last real (not padding) token: ``[B, 1, C]``."""
        if len(set(self.counts)) == 1:
            return x[:, -1:]
        return x[torch.arange(x.shape[0], device=x.device), self._last][:, None]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's ``k``, ``v`` ``[B, n_kv, T, hd]``; return every key and value of
        the rows so far, ``[B, n_kv, L, hd]``."""
        ck, cv = self.cache.k[layer], self.cache.v[layer]
        # Advanced indices (slot, position) around a slice put the indexed dims first:
        # ck[slot[b], :, pos[b, t]] is [B, T, n_kv, hd].
        ck[self._index, :, self.positions] = k.transpose(1, 2).to(ck.dtype)
        cv[self._index, :, self.positions] = v.transpose(1, 2).to(cv.dtype)
        return ck[self._rows, :, :self.key_len], cv[self._rows, :, :self.key_len]

    def finish(self) -> None:
        """Record the new lengths (called by the model once every layer has run)."""
        for s, start, n in zip(self.slots, self._starts, self.counts):
            self.cache.lengths[s] = start + n
