"""A decoder-only transformer language model: GPT-2 shapes, or Llama shapes by option.

The layout follows nanoGPT's ``model.py`` (Karpathy, MIT licence): token and
(learned) position embeddings, pre-norm blocks of causal self-attention and
an MLP, a final norm and a language-model head tied to the token embedding.
Options switch the pieces Llama changed: RMSNorm, SwiGLU, rotary positions,
no biases, grouped-query attention and an untied head. Parameter counts match
the published models exactly (see ``tests/unit/models``).

>>> cfg = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50)
>>> logits, loss = GPT(cfg)(torch.zeros(1, 8, dtype=torch.long))
>>> tuple(logits.shape), loss is None
((1, 8, 50), True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from shoestring.errors import ConfigError, ShoestringError
from shoestring.models.layers import Block, make_norm, rope_scaling_problems, rope_tables

if TYPE_CHECKING:
    from shoestring.models.kv_cache import CacheStep

# GPT-2's initialiser range (nanoGPT ``_init_weights``; HF ``initializer_range``).
INIT_STD = 0.02
# Llama rounds the SwiGLU width up to a multiple of 256 (Meta's llama
# ``model.py``, ``FeedForward``: ``multiple_of``).
SWIGLU_MULTIPLE = 256


@dataclass(frozen=True)
class GPTConfig:
    """Shapes and options of a :class:`GPT`; defaults are GPT-2 small (124M).

    Attributes:
        n_layer: transformer blocks.
        n_head: attention (query) heads; must divide ``n_embd``.
        n_kv_head: key/value heads for grouped-query attention (``None``: ``n_head``).
        n_embd: residual-stream width.
        block_size: longest context, in tokens.
        vocab_size: tokens the model reads and predicts.
        dropout: dropout on embeddings, attention and residual branches.
        bias: biases in linear layers and LayerNorms (GPT-2: yes, Llama: no).
        norm: ``"layernorm"`` or ``"rmsnorm"``.
        mlp: ``"gelu"`` or ``"swiglu"``.
        intermediate_size: MLP width (``None``: 4·n_embd for GELU, Llama's ⌈8/3·n_embd⌉₂₅₆
            for SwiGLU).
        pos: ``"learned"`` position embeddings or ``"rope"``.
        rope_theta: RoPE base frequency (10,000 in RoFormer; 500,000 in Llama 3).
        rope_scaling: long-context RoPE scaling, Hugging Face's keys: ``{"rope_type":
            "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}`` (Llama 3.1) or ``{"rope_type":
            "linear", "factor": 2.0}`` (``None``: unscaled).
        sliding_window: each token attends to at most this many tokens, itself included
            (Mistral; ``None``: the whole causal context).
        tie_embeddings: share the token embedding with the output head.
        norm_eps: epsilon of the norms.
    """

    n_layer: int = 12
    n_head: int = 12
    n_kv_head: int | None = None
    n_embd: int = 768
    block_size: int = 1024
    vocab_size: int = 50257
    dropout: float = 0.0
    bias: bool = True
    norm: str = "layernorm"
    mlp: str = "gelu"
    intermediate_size: int | None = None
    pos: str = "learned"
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    norm_eps: float = 1e-5
    rope_scaling: dict | None = None
    sliding_window: int | None = None

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(problems, hint="fix the model shape (see docs/transformers.md)")

    def problems(self) -> list[str]:
        """Every inconsistency of the shape, reported together."""
        out = []
        for name in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if out:
            return out
        if self.n_embd % self.n_head:
            out.append(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.n_kv_head is not None and (self.n_kv_head < 1 or self.n_head % self.n_kv_head):
            out.append(f"n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head})")
        if self.norm not in ("layernorm", "rmsnorm"):
            out.append(f"norm must be 'layernorm' or 'rmsnorm', got {self.norm!r}")
        if self.mlp not in ("gelu", "swiglu"):
            out.append(f"mlp must be 'gelu' or 'swiglu', got {self.mlp!r}")
        if self.pos not in ("learned", "rope"):
            out.append(f"pos must be 'learned' or 'rope', got {self.pos!r}")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            out.append(f"rope needs an even head size, got {self.n_embd // self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            out.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.intermediate_size is not None and self.intermediate_size < 1:
            out.append(f"intermediate_size must be at least 1, got {self.intermediate_size}")
        if self.rope_scaling is not None and self.pos != "rope":
            out.append("rope_scaling needs pos='rope'")
        out += rope_scaling_problems(self.rope_scaling)
        if self.sliding_window is not None and self.sliding_window < 1:
            out.append(f"sliding_window must be at least 1, got {self.sliding_window}")
        return out

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden_size(self) -> int:
        if self.intermediate_size is not None:
            return self.intermediate_size
        if self.mlp == "gelu":
            return 4 * self.n_embd
        width = int(2 * 4 * self.n_embd / 3)
        return SWIGLU_MULTIPLE * math.ceil(width / SWIGLU_MULTIPLE)

    def to_dict(self) -> dict:
        return asdict(self)


class GPT(nn.Module):
    """Decoder-only transformer; ``forward(idx, targets)`` returns ``(logits, loss)``.

    ``logits`` is ``[B, T, vocab_size]``; ``loss`` is the mean next-token
    cross-entropy over positions whose target is not ``-1`` (``None`` without
    targets). Set :attr:`activation_checkpointing` (or call
    :meth:`set_activation_checkpointing`) to recompute each block in the
    backward pass instead of storing its activations.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.block_size, c.n_embd) if c.pos == "learned" else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.ln_f = make_norm(c.norm, c.n_embd, c.norm_eps, c.bias)
        # A tied head reuses wte.weight in forward() rather than being a second
        # module holding the same tensor: safetensors refuses shared tensors.
        self.lm_head = None if c.tie_embeddings else nn.Linear(c.n_embd, c.vocab_size, bias=False)
        if c.pos == "rope":
            # Not persistent: derived from the config, so weight files hold weights only.
            self.register_buffer("rope_cos", torch.empty(0), persistent=False)
            self.register_buffer("rope_sin", torch.empty(0), persistent=False)
        self.activation_checkpointing = False
        self.loss_chunks = 1
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nanoGPT's initialisation; also (re)computes the RoPE tables.

        Linear and embedding weights ~ N(0, 0.02), biases 0, and the residual
        projections scaled by 1/√(2·n_layer) (GPT-2 paper, section 2.3).
        """
        c = self.config
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue
            std = INIT_STD / math.sqrt(2 * c.n_layer) if name.endswith("c_proj.weight") \
                else INIT_STD
            nn.init.normal_(p, mean=0.0, std=std)
        for m in self.modules():
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
                m.reset_parameters()
        if c.pos == "rope":
            device = self.wte.weight.device
            cos, sin = rope_tables(c.head_dim, c.block_size, c.rope_theta, c.rope_scaling)
            self.rope_cos, self.rope_sin = cos.to(device), sin.to(device)

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute each block's activations in backward (saves memory, costs ~1/3 more compute)."""
        self.activation_checkpointing = bool(enabled)

    def set_loss_chunks(self, chunks: int) -> None:
        """Score the loss in ``chunks`` pieces that never hold the full logits
        (:mod:`shoestring.models.chunked_loss`); ``forward`` then returns no logits when
        given targets. 1 is the plain loss."""
        if chunks < 1:
            raise ValueError(f"loss chunks must be at least 1, got {chunks}")
        self.loss_chunks = int(chunks)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters (each shared tensor once); ``non_embedding`` drops position embeddings.

        As in nanoGPT, the token embedding stays counted when tied: it is also
        the output head's weight.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.wpe is not None:
            n -= self.wpe.weight.numel()
        return n

    def optim_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay matrices and embeddings, not biases or norm gains (nanoGPT)."""
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        rest = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": rest, "weight_decay": 0.0}]

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                last_only: bool = False, cache: CacheStep | None = None
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``last_only`` computes logits of the last position only (generation's need).

        With ``cache`` (a :class:`~shoestring.models.kv_cache.CacheStep`), ``idx`` holds
        only the new tokens of each cached sequence: incremental decoding, no targets.

        With :meth:`set_loss_chunks` above 1 and ``targets``, the logits are never
        materialised: the result is ``(None, loss)``.
        """
        c = self.config
        t = idx.shape[1]
        if t > c.block_size:
            raise ShoestringError(f"sequence of {t} tokens is longer than block_size "
                                  f"{c.block_size}", hint="crop the input to the last "
                                  "block_size tokens, or train with a larger block_size")
        if cache is not None:
            if targets is not None:
                raise ValueError("a cached forward pass is for inference; it takes no targets")
            return self._forward_cached(idx, cache, last_only), None
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(t, device=idx.device))
        x = self.drop(x)
        rope = (self.rope_cos, self.rope_sin) if c.pos == "rope" else None
        for block in self.blocks:
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, rope, use_reentrant=False)
            else:
                x = block(x, rope)
        if last_only and targets is not None:
            raise ValueError("last_only drops the positions that targets score")
        x = self.ln_f(x[:, -1:] if last_only else x)
        if targets is not None and self.loss_chunks > 1:
            from shoestring.models.chunked_loss import chunked_cross_entropy

            head = self.lm_head.weight if self.lm_head is not None else self.wte.weight
            return None, chunked_cross_entropy(x, head, targets, self.loss_chunks)
        logits = self.lm_head(x) if self.lm_head is not None else F.linear(x, self.wte.weight)
        loss = None
        if targets is not None:
            # In float32 even under bf16 autocast or a bf16 model: the log-sum-exp
            # over a large vocabulary loses precision in 8 mantissa bits.
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)),
                                   targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def _forward_cached(self, idx: torch.Tensor, cache: CacheStep, last_only: bool
                        ) -> torch.Tensor:
        """Logits of new tokens at each row's own positions, reading and filling ``cache``."""
        pos = cache.positions  # [B, T]
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(pos)
        x = self.drop(x)
        rope = None
        if self.config.pos == "rope":  # each row's own rows of the tables: [B, 1, T, hd]
            rope = (self.rope_cos[pos][:, None], self.rope_sin[pos][:, None])
        for i, block in enumerate(self.blocks):
            x = block(x, rope, cache, i)
        cache.finish()
        x = self.ln_f(cache.last_rows(x) if last_only else x)
        return self.lm_head(x) if self.lm_head is not None else F.linear(x, self.wte.weight)


def build_gpt(**params) -> GPT:
    """Builder for the model registry: ``model.json`` params → module."""
    return GPT(GPTConfig(**params))
