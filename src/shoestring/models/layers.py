"""Transformer building blocks shared by the decoder (:mod:`gpt`) and the encoder.

Small pieces only: normalisation choice, rotary position embeddings and the
causal self-attention / MLP of a decoder block. Each follows a published
reference, named where it is defined.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from shoestring.models.kv_cache import CacheStep

# (cos, sin) tables of rotary embeddings, each [positions, head_dim].
Rope = tuple[torch.Tensor, torch.Tensor]


def make_norm(kind: str, width: int, eps: float, bias: bool) -> nn.Module:
    """LayerNorm (GPT-2, BERT) or RMSNorm (Llama: Zhang & Sennrich 2019, arXiv:1910.07467)."""
    if kind == "layernorm":
        return nn.LayerNorm(width, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return nn.RMSNorm(width, eps=eps)
    raise ValueError(f"unknown norm {kind!r}")


# RoPE scalings read by :func:`rope_inverse_frequencies`, with their parameters
# (Hugging Face's ``rope_scaling``/``rope_parameters`` names, so imported configs map as they are).
ROPE_SCALINGS = {
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor",
               "original_max_position_embeddings"),
}


def rope_scaling_problems(scaling: dict | None) -> list[str]:
    """What is wrong with a ``rope_scaling`` dict (empty when it is usable)."""
    if scaling is None:
        return []
    kind = scaling.get("rope_type")
    if kind not in ROPE_SCALINGS:
        supported = ", ".join(ROPE_SCALINGS)
        return [f"rope_scaling type {kind!r} is not supported (supported: {supported})"]
    missing = [k for k in ROPE_SCALINGS[kind] if not isinstance(scaling.get(k), (int, float))]
    extra = sorted(set(scaling) - {"rope_type", *ROPE_SCALINGS[kind]})
    out = [f"rope_scaling {kind!r} needs a number for {k!r}" for k in missing]
    out += [f"rope_scaling {kind!r} has unknown key {k!r}" for k in extra]
    if not missing and scaling["factor"] <= 0:
        out.append(f"rope_scaling factor must be positive, got {scaling['factor']}")
    if kind == "llama3" and not missing and \
            scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        out.append("rope_scaling needs high_freq_factor > low_freq_factor")
    return out


def rope_inverse_frequencies(head_dim: int, theta: float,
                             scaling: dict | None = None) -> torch.Tensor:
    """The ``head_dim / 2`` rotation frequencies ``theta^(-2i/d)``, scaled for long contexts.

    ``linear`` (position interpolation, Chen et al. 2023, arXiv:2306.15595) divides
    every frequency by ``factor``. ``llama3`` is Meta's Llama 3.1 scaling (the
    ``apply_scaling`` of Meta's ``llama-models`` and Hugging Face's
    ``_compute_llama3_parameters``): wavelengths shorter than
    ``original/high_freq_factor`` are kept, those longer than
    ``original/low_freq_factor`` divided by ``factor``, and the band between
    interpolated smoothly.
    """
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    if scaling is None:
        return inv
    factor = float(scaling["factor"])
    if scaling["rope_type"] == "linear":
        return inv / factor
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old / low, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / high) & ~(wavelen > old / low)
    return torch.where(medium, smoothed, scaled)


def rope_tables(head_dim: int, length: int, theta: float, scaling: dict | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables ``[length, head_dim]`` of rotary embeddings.

    RoFormer (Su et al. 2021, arXiv:2104.09864) eq. 15, frequencies
    ``theta^(-2i/d)`` (optionally scaled, :func:`rope_inverse_frequencies`),
    laid out in the "rotate half" convention of the Hugging Face Llama port
    (first half of the channels pairs with the second).
    """
    inv_freq = rope_inverse_frequencies(head_dim, theta, scaling)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def sliding_window_mask(t: int, window: int, device: torch.device) -> torch.Tensor:
    """``[t, t]`` boolean: query ``i`` sees key ``j`` iff ``i - window < j <= i``.

    Mistral's sliding-window attention (Jiang et al. 2023, arXiv:2310.06825,
    section 2; Hugging Face ``sliding_window_overlay``: ``kv_idx > q_idx - window``).
    """
    i = torch.arange(t, device=device)[:, None]
    j = torch.arange(t, device=device)[None, :]
    return (j <= i) & (j > i - window)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``[B, heads, T, head_dim]`` by the first ``T`` rows of the tables.

    Tables of shape ``[B, 1, T, head_dim]`` (each row's own positions, as a KV cache's
    decoding step needs) are used as they are.
    """
    if cos.dim() == 2:
        t = x.shape[-2]
        cos, sin = cos[:t], sin[:t]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _zero_slice(grad: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    grad = grad.clone()
    grad[start:stop] = 0
    return grad


class CausalSelfAttention(nn.Module):
    """Multi-head (or grouped-query) causal attention with one fused q/k/v projection.

    Grouped-query attention (Ainslie et al. 2023, arXiv:2305.13245): ``n_kv_head``
    key/value heads are shared by groups of ``n_head // n_kv_head`` query heads.
    """

    def __init__(self, n_embd: int, n_head: int, n_kv_head: int, bias: bool,
                 dropout: float, rope: bool = False,
                 sliding_window: int | None = None) -> None:
        super().__init__()
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.sliding_window = sliding_window
        self.head_dim = n_embd // n_head
        self.c_attn = nn.Linear(n_embd, (n_head + 2 * n_kv_head) * self.head_dim, bias=bias)
        self.c_proj = nn.Linear(n_head * self.head_dim, n_embd, bias=bias)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)
        if bias and not rope:
            # Without rotary positions a key bias adds q·b_k to every score of a
            # query's row, which softmax ignores: its true gradient is exactly
            # zero. The computed one is rounding noise that Adam would turn into
            # full-size steps, different on every CPU's kernels. Keep the
            # parameter (GPT-2's layout and checkpoints) but never move it.
            q_dim, k_dim = n_head * self.head_dim, n_kv_head * self.head_dim
            self.c_attn.bias.register_hook(
                lambda g: _zero_slice(g, q_dim, q_dim + k_dim))

    def forward(self, x: torch.Tensor, rope: Rope | None = None,
                cache: CacheStep | None = None, layer: int = 0) -> torch.Tensor:
        """With ``cache``, ``x`` holds only new tokens; keys and values of earlier ones come
        from the cache (see :mod:`shoestring.models.kv_cache`)."""
        b, t, _ = x.shape
        hd, nh, nkv = self.head_dim, self.n_head, self.n_kv_head
        q, k, v = self.c_attn(x).split((nh * hd, nkv * hd, nkv * hd), dim=2)
        q = q.view(b, t, nh, hd).transpose(1, 2)
        k = k.view(b, t, nkv, hd).transpose(1, 2)
        v = v.view(b, t, nkv, hd).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        # Causal; a sliding window (Mistral) only bites once the keys outnumber it.
        window = self.sliding_window
        if cache is not None:
            k, v = cache.update(layer, k, v)
            mask = cache.mask
            if window and mask.shape[-1] > window:
                keys = torch.arange(mask.shape[-1], device=mask.device)
                mask = mask & (keys > cache.positions[:, None, :, None] - window)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=nkv != nh)
        else:
            mask = sliding_window_mask(t, window, x.device) if window and t > window else None
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None,
                dropout_p=self.dropout if self.training else 0.0, enable_gqa=nkv != nh)
        y = y.transpose(1, 2).contiguous().view(b, t, nh * hd)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """GELU MLP (GPT-2) or SwiGLU (Shazeer 2020, arXiv:2002.05202; used by Llama).

    SwiGLU's gate and up projections are fused into one matmul; the parameter
    count equals Llama's separate ``w1``/``w3``.
    """

    def __init__(self, n_embd: int, hidden: int, kind: str, bias: bool, dropout: float) -> None:
        super().__init__()
        self.kind = kind
        self.c_fc = nn.Linear(n_embd, 2 * hidden if kind == "swiglu" else hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if self.kind == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            # GPT-2's "gelu_new" is the tanh approximation (Hendrycks & Gimpel 2016).
            h = F.gelu(h, approximate="tanh")
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """Pre-norm decoder block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.ln_1 = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.bias)
        self.attn = CausalSelfAttention(cfg.n_embd, cfg.n_head, cfg.kv_heads, cfg.bias,
                                        cfg.dropout, rope=cfg.pos == "rope",
                                        sliding_window=cfg.sliding_window)
        self.ln_2 = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.bias)
        self.mlp = MLP(cfg.n_embd, cfg.hidden_size, cfg.mlp, cfg.bias, cfg.dropout)

    def forward(self, x: torch.Tensor, rope: Rope | None = None,
                cache: CacheStep | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, cache, layer)
        return x + self.mlp(self.ln_2(x))
