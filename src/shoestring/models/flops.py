"""Training FLOPs per token of a transformer, for throughput and MFU meters.

The estimate is PaLM's (Chowdhery et al. 2022, arXiv:2204.02311, appendix B),
as nanoGPT's ``estimate_mfu`` applies it::

    flops_per_token = 6·N + 12·L·H·Q·T

``N`` counts the parameters that take part in matrix multiplies (2 FLOPs per
multiply-add forward, twice that backward: 6 per parameter and token); the
second term is the attention scores and their weighted sum (``L`` layers,
``H`` heads of size ``Q``, context ``T``), which have no parameters. Lookup-only
embeddings (positions, token types, and an untied input embedding) are left
out of ``N``; a tied token embedding stays in because it is the output head.
"""

from __future__ import annotations

import torch

from shoestring.models.encoder import Encoder, EncoderConfig
from shoestring.models.gpt import GPT, GPTConfig


def matmul_params(config: GPTConfig | EncoderConfig) -> int:
    """``N`` of the estimate: parameters used in matrix multiplies, per token."""
    # Built on the meta device: exact shapes, no memory, no initialisation cost.
    with torch.device("meta"):
        if isinstance(config, GPTConfig):
            model = GPT(config)
            n = model.num_params(non_embedding=True)
            return n if config.tie_embeddings else n - model.wte.weight.numel()
        model = Encoder(config)
        lookups = (model.position_embeddings, model.token_type_embeddings)
        if not config.mlm:  # an MLM head scores against the word embeddings: a matmul
            lookups += (model.word_embeddings,)
        return model.num_params() - sum(e.weight.numel() for e in lookups)


def flops_per_token(config: GPTConfig | EncoderConfig, seq_len: int | None = None) -> int:
    """Training FLOPs (forward + backward) per token; ``seq_len`` defaults to ``block_size``.

    >>> flops_per_token(GPTConfig())  # GPT-2 124M at context 1024
    855166464
    """
    t = config.block_size if seq_len is None else seq_len
    head_dim = config.n_embd // config.n_head
    return 6 * matmul_params(config) + 12 * config.n_layer * config.n_head * head_dim * t


def model_flops_utilization(flops_per_token_: int, tokens_per_second: float,
                            peak_flops: float) -> float:
    """MFU: achieved model FLOP/s over the device's peak FLOP/s (PaLM, appendix B)."""
    return flops_per_token_ * tokens_per_second / peak_flops
