"""A BERT-style bidirectional encoder with a classification head.

The layout is BERT's (Devlin et al. 2019, arXiv:1810.04805; the Hugging Face
``BertModel``): word + position + token-type embeddings and a LayerNorm,
post-norm layers (``norm(x + attn(x))``, ``norm(x + ffn(x))``) with exact GELU,
and a pooler (``tanh(W·h[CLS])``) that feeds the classifier. With
``num_classes=0`` the model ends at the pooler, and bert-base counts exactly
109,482,240 parameters. With ``mlm=True`` it is BERT's masked-language model
instead (``BertForMaskedLM``): no pooler, and a head that predicts every
position's token (dense → GELU → LayerNorm → the word embeddings, transposed,
plus a bias).

>>> cfg = EncoderConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=30,
...                     intermediate_size=32, num_classes=3)
>>> logits, loss = Encoder(cfg)(torch.ones(2, 8, dtype=torch.long), torch.tensor([0, 2]))
>>> tuple(logits.shape), loss.ndim
((2, 3), 0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shoestring.errors import ConfigError, ShoestringError

# BERT's ``initializer_range`` (truncated normal in TF; a normal here, as in HF).
INIT_STD = 0.02


@dataclass(frozen=True)
class EncoderConfig:
    """Shapes of an :class:`Encoder`; defaults are bert-base with 2 classes.

    Attributes:
        n_layer, n_head, n_embd: layers, heads and width.
        block_size: longest input (number of position embeddings).
        vocab_size: token ids the model reads.
        intermediate_size: feed-forward width (BERT: 4·n_embd).
        type_vocab_size: segment (token-type) embeddings; BERT uses 2.
        num_classes: classifier outputs; 0 ends the model at the pooler.
        mlm: a masked-language-model head instead of pooler and classifier
            (``num_classes`` must then be 0).
        dropout: dropout on embeddings, attention and sub-layer outputs.
        norm_eps: LayerNorm epsilon (BERT: 1e-12).
        pad_id: token id that marks padding; when set and no ``attention_mask``
            is given, padded positions are masked out of attention.
    """

    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 512
    vocab_size: int = 30522
    intermediate_size: int = 3072
    type_vocab_size: int = 2
    num_classes: int = 2
    dropout: float = 0.1
    norm_eps: float = 1e-12
    pad_id: int | None = None
    mlm: bool = False

    def __post_init__(self) -> None:
        problems = [f"{n} must be at least 1, got {getattr(self, n)}"
                    for n in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size",
                              "intermediate_size", "type_vocab_size")
                    if getattr(self, n) < 1]
        if self.num_classes < 0 or self.num_classes == 1:
            problems.append(f"num_classes must be 0 (no head) or at least 2, "
                            f"got {self.num_classes}")
        if self.n_head >= 1 and self.n_embd % self.n_head:
            problems.append(f"n_embd ({self.n_embd}) must be a multiple of n_head "
                            f"({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.mlm and self.num_classes:
            problems.append(f"an mlm encoder predicts tokens, so num_classes must be 0, "
                            f"got {self.num_classes}")
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            problems.append(f"pad_id {self.pad_id} is outside the vocabulary "
                            f"(0..{self.vocab_size - 1})")
        if problems:
            raise ConfigError(problems, hint="fix the encoder shape (see docs/transformers.md)")

    def to_dict(self) -> dict:
        return asdict(self)


class EncoderLayer(nn.Module):
    """One post-norm BERT layer: self-attention, then the feed-forward network."""

    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.n_head = c.n_head
        self.dropout = c.dropout
        self.qkv = nn.Linear(c.n_embd, 3 * c.n_embd)  # BERT's query/key/value, fused
        self.attn_out = nn.Linear(c.n_embd, c.n_embd)
        self.attn_norm = nn.LayerNorm(c.n_embd, eps=c.norm_eps)
        self.ffn_in = nn.Linear(c.n_embd, c.intermediate_size)
        self.ffn_out = nn.Linear(c.intermediate_size, c.n_embd)
        self.ffn_norm = nn.LayerNorm(c.n_embd, eps=c.norm_eps)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2)
                   for z in self.qkv(x).split(d, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(b, t, d)
        x = self.attn_norm(x + self.drop(self.attn_out(y)))
        h = self.ffn_out(F.gelu(self.ffn_in(x)))  # BERT uses the exact (erf) GELU
        return self.ffn_norm(x + self.drop(h))


class MLMHead(nn.Module):
    """BERT's ``BertLMPredictionHead``: ``LayerNorm(gelu(W·h))`` scored against the word
    embeddings (tied, as in BERT), plus a per-token bias."""

    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.n_embd, c.n_embd)
        self.norm = nn.LayerNorm(c.n_embd, eps=c.norm_eps)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))

    def forward(self, x: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(F.gelu(self.dense(x))), embeddings, self.bias)


class Encoder(nn.Module):
    """``forward(idx, targets=None, attention_mask=None)`` → ``(logits, loss)``.

    ``logits`` is ``[B, num_classes]`` (the pooled ``[B, n_embd]`` when
    ``num_classes`` is 0). ``attention_mask`` is ``[B, T]``, true (or 1) where a
    token is real. Position 0 is pooled, so inputs should start with a
    classification token, as :mod:`shoestring.data.text_jsonl` writes them.
    An ``mlm`` encoder returns ``[B, T, vocab_size]`` logits, and its loss is the
    cross-entropy over positions whose target is not ``-1`` (the masked ones).
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        c = self.config = config
        self.word_embeddings = nn.Embedding(c.vocab_size, c.n_embd)
        self.position_embeddings = nn.Embedding(c.block_size, c.n_embd)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.n_embd)
        self.embed_norm = nn.LayerNorm(c.n_embd, eps=c.norm_eps)
        self.drop = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(EncoderLayer(c) for _ in range(c.n_layer))
        self.pooler = None if c.mlm else nn.Linear(c.n_embd, c.n_embd)
        self.classifier = nn.Linear(c.n_embd, c.num_classes) if c.num_classes else None
        self.mlm_head = MLMHead(c) if c.mlm else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT's initialisation: N(0, 0.02) weights and embeddings, zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=INIT_STD)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                m.reset_parameters()
        if self.mlm_head is not None:
            nn.init.zeros_(self.mlm_head.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        c = self.config
        t = idx.shape[1]
        if t > c.block_size:
            raise ShoestringError(f"input of {t} tokens is longer than block_size {c.block_size}",
                                  hint="truncate the text, or use a larger block_size")
        if attention_mask is None and c.pad_id is not None:
            attention_mask = idx != c.pad_id
        positions = torch.arange(t, device=idx.device)
        types = token_type_ids if token_type_ids is not None else torch.zeros_like(idx)
        x = self.word_embeddings(idx) + self.position_embeddings(positions) \
            + self.token_type_embeddings(types)
        x = self.drop(self.embed_norm(x))
        # SDPA's boolean mask: True where attention is allowed; [B, 1, 1, T]
        # broadcasts over heads and query positions.
        mask = attention_mask.bool()[:, None, None, :] if attention_mask is not None else None
        for layer in self.layers:
            x = layer(x, mask)
        if self.mlm_head is not None:
            logits = self.mlm_head(x, self.word_embeddings.weight)
            loss = None
            if targets is not None:
                # float32: the log-sum-exp over the vocabulary (as in GPT.forward).
                loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)),
                                       targets.reshape(-1), ignore_index=-1)
            return logits, loss
        pooled = torch.tanh(self.pooler(x[:, 0]))
        if self.classifier is None:
            if targets is not None:
                raise ShoestringError("an encoder with num_classes=0 has no classifier to train",
                                      hint="set num_classes to the number of labels")
            return pooled, None
        logits = self.classifier(self.drop(pooled))
        loss = F.cross_entropy(logits.float(), targets) if targets is not None else None
        return logits, loss


def build_encoder(**params) -> Encoder:
    """Builder for the model registry: ``model.json`` params → module."""
    return Encoder(EncoderConfig(**params))
