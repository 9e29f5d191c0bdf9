"""Choosing the next token from logits: greedy, temperature, top-k, nucleus (top-p).

One function, :func:`next_tokens`, serves a batch whose rows each have their
own settings and their own random generator, so that a sequence sampled in a
batch of strangers gets the same tokens as alone with the same seed (as far
as the logits agree: floating-point sums may differ in the last bits between
batch sizes).

The order of the filters is Hugging Face ``transformers``' (temperature, then
top-k, then top-p, each on the output of the previous one). Nucleus sampling
is Holtzman et al. 2020 (*The Curious Case of Neural Text Degeneration*,
ICLR, arXiv:1904.09751, section 3.1): keep the smallest set of most likely
tokens whose probabilities sum to at least ``top_p``. A token is then drawn by
inverting the cumulative distribution at one uniform number from the row's
generator, which costs one draw per row and step whatever the vocabulary.

>>> logits = torch.tensor([[0.0, 3.0, 1.0]])
>>> next_tokens(logits, [SamplingParams(temperature=0.0)]).tolist()
[1]
>>> g = torch.Generator().manual_seed(0)
>>> next_tokens(logits, [SamplingParams(temperature=1.0, top_k=1)], [g]).tolist()
[1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from shoestring.errors import ShoestringError


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence picks its tokens.

    Attributes:
        temperature: divides the logits; 0 means greedy (always the most likely token).
        top_k: sample among the ``top_k`` most likely tokens only (``None``: all).
        top_p: sample among the most likely tokens whose probabilities reach ``top_p``
            (``None`` or 1: all).
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def problems(self) -> list[str]:
        """Every invalid setting, reported together."""
        out = []
        if not self.temperature >= 0.0:  # also refuses NaN
            out.append(f"temperature must be 0 (greedy) or more, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            out.append(f"top_k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            out.append(f"top_p must be in (0, 1], got {self.top_p}")
        return out

    def check(self) -> SamplingParams:
        problems = self.problems()
        if problems:
            raise ShoestringError("; ".join(problems),
                                  hint="e.g. temperature 0.8, top_k 200, top_p 0.95")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def next_tokens(logits: torch.Tensor, params: Sequence[SamplingParams],
                generators: Sequence[torch.Generator | None] | None = None,
                vocab_limit: int | None = None) -> torch.Tensor:
    """The next token of each row of ``logits`` ``[B, V]``, as a ``[B]`` int64 tensor.

    Row ``b`` uses ``params[b]`` and draws from ``generators[b]`` (``None``: torch's
    global generator). ``vocab_limit`` bans ids at or above it (a model vocabulary
    padded beyond its tokenizer's).
    """
    logits = logits.float()
    if vocab_limit is not None and vocab_limit < logits.shape[-1]:
        logits = logits.clone()
        logits[:, vocab_limit:] = float("-inf")
    out = logits.argmax(dim=-1)
    rows = [b for b, p in enumerate(params) if not p.greedy]
    if not rows:
        return out
    vocab = logits.shape[-1]
    sub = logits[rows] / torch.tensor([params[b].temperature for b in rows])[:, None]
    ordered, order = sub.sort(dim=-1, descending=True)
    ranks = torch.arange(vocab)
    top_k = torch.tensor([params[b].top_k or vocab for b in rows])
    ordered = ordered.masked_fill(ranks >= top_k[:, None], float("-inf"))
    top_p = [params[b].top_p for b in rows]
    if any(p is not None and p < 1.0 for p in top_p):
        probs = torch.softmax(ordered, dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the more likely tokens
        limit = torch.tensor([1.0 if p is None else p for p in top_p])
        # The first token always stays (its "before" is 0 < top_p).
        ordered = ordered.masked_fill(before >= limit[:, None], float("-inf"))
    cdf = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
    gens = generators or [None] * len(params)
    u = torch.stack([torch.rand((), generator=gens[b]) for b in rows])
    pick = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).clamp_(max=vocab - 1)
    out[rows] = order.gather(1, pick)[:, 0]
    return out
