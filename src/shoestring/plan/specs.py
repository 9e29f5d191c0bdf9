"""What the planner knows about a model: its shapes, and parameter counts derived from them.

A :class:`ModelSpec` holds only what fixes compute and memory: widths, depths,
head counts, vocabulary, and the few layout choices that change parameter
counts (biases, tied embeddings, learned vs rotary positions, GELU vs SwiGLU
MLP, pooler). :func:`count_params` derives exact counts from those shapes; the
preset catalogue checks them against the published figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ModelSpec(BaseModel):
    """The shapes of one model (a decoder LM, a BERT-style encoder, or an MLP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="preset name, or where the spec was read from")
    family: Literal["decoder", "encoder", "mlp"] = Field(description="architecture family")
    vocab_size: int = Field(0, ge=0, description="token vocabulary")
    hidden: int = Field(0, ge=0, description="model width h")
    layers: int = Field(0, ge=0, description="transformer blocks L")
    heads: int = Field(0, ge=0, description="attention (query) heads a")
    kv_heads: int = Field(0, ge=0, description="key/value heads (grouped-query); 0 means = heads")
    intermediate: int = Field(0, ge=0, description="MLP width f")
    max_seq: int = Field(0, ge=0, description="context length the model was built for")
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    mlp: Literal["gelu", "swiglu"] = "gelu"
    pos: Literal["learned", "rope", "alibi"] = Field(
        "learned", description="learned position table, rotary (RoPE) or ALiBi biases "
        "(MPT; no parameters, nothing saved)")
    rope_theta: float = 10000.0
    bias: bool = Field(True, description="linear layers (and LayerNorms) carry biases")
    tie_embeddings: bool = Field(True, description="LM head shares the token embedding")
    norm_eps: float = 1e-5
    type_vocab_size: int = Field(0, ge=0, description="BERT token-type (segment) embeddings")
    pooler: bool = Field(False, description="BERT pooler: dense + tanh on the first token")
    num_classes: int = Field(0, ge=0, description="classifier head of an encoder (0: none)")
    sliding_window: int | None = Field(None, description="Mistral-style attention window")
    widths: tuple[int, ...] = Field((), description="MLP layer widths, input first, output last")
    activation: str = Field("relu", description="MLP activation")
    published_params: int | None = Field(None, description="the published parameter count")
    source: str = Field("", description="where the shapes were published")

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        problems = []
        if self.family == "mlp":
            if len(self.widths) < 2:
                problems.append("an MLP needs widths [in, ..., out] with at least two entries")
        else:
            for key in ("vocab_size", "hidden", "layers", "heads", "intermediate", "max_seq"):
                if getattr(self, key) <= 0:
                    problems.append(f"{key} must be positive for a {self.family}")
            if self.heads and self.hidden % self.heads:
                problems.append(f"hidden {self.hidden} is not divisible by heads {self.heads}")
            if self.heads and self.heads % self.n_kv_heads:
                problems.append(f"heads {self.heads} not divisible by kv_heads {self.kv_heads}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        """Width of K (and of V): kv_heads × head_dim; = hidden without grouped-query attention."""
        return self.n_kv_heads * self.head_dim

    @property
    def mlp_in_width(self) -> int:
        return self.widths[0] if self.widths else 0


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of a model, split the way compute and memory need them."""

    total: int
    embedding: int          # token, position and token-type tables (lookups: no FLOPs)
    per_layer: int          # one transformer block (or all layers of an MLP)
    final: int              # final norm, pooler, classifier, untied LM head
    matmul_per_token: int   # weights multiplied per token: 2× this is the forward FLOPs/token
    head_matmul: int        # of which the LM head (decoders)
    matmul_per_sequence: int = 0  # weights applied once per sequence (BERT pooler, classifier)


def layer_linears(spec: ModelSpec) -> dict[str, tuple[int, int]]:
    """The (in, out) shapes of the matrices of one transformer block, by role.

    Roles are the LoRA target names: q, k, v, o, and the MLP's fc/proj (GELU) or
    gate/up/down (SwiGLU).
    """
    h, kv, f = spec.hidden, spec.kv_dim, spec.intermediate
    shapes = {"q": (h, h), "k": (h, kv), "v": (h, kv), "o": (h, h)}
    if spec.mlp == "swiglu":
        shapes |= {"gate": (h, f), "up": (h, f), "down": (f, h)}
    else:
        shapes |= {"fc": (h, f), "proj": (f, h)}
    return shapes


def _norm_params(spec: ModelSpec) -> int:
    # LayerNorm has a scale and a shift; RMSNorm (Zhang & Sennrich 2019) only a scale.
    return spec.hidden * (2 if spec.norm == "layernorm" else 1)


def count_params(spec: ModelSpec) -> ParamCounts:
    """Exact parameter counts from the shapes.

    >>> from shoestring.plan.presets import load_preset
    >>> count_params(load_preset("gpt2-124m")).total
    124439808
    """
    if spec.family == "mlp":
        w = spec.widths
        mats = sum(a * b for a, b in pairwise(w))
        biases = sum(w[1:])
        # An MLP sees one sample as one "token".
        return ParamCounts(total=mats + biases, embedding=0, per_layer=mats + biases, final=0,
                           matmul_per_token=mats, head_matmul=w[-2] * w[-1])
    h = spec.hidden
    linears = layer_linears(spec)
    mats = sum(a * b for a, b in linears.values())
    biases = sum(out for _, out in linears.values()) if spec.bias else 0
    per_layer = mats + biases + 2 * _norm_params(spec)
    embedding = spec.vocab_size * h
    if spec.pos == "learned":
        embedding += spec.max_seq * h
    embedding += spec.type_vocab_size * h
    final = 0
    head_matmul = 0
    per_sequence = 0
    if spec.family == "decoder":
        final += _norm_params(spec)
        head_matmul = spec.vocab_size * h
        if not spec.tie_embeddings:
            final += head_matmul
    else:
        # BERT normalises the embedding sum (post-LN layout, Devlin et al. 2019).
        final += _norm_params(spec)
        # Pooler and classifier read only the first token of each sequence.
        if spec.pooler:
            final += h * h + h
            per_sequence += h * h
        if spec.num_classes:
            final += h * spec.num_classes + spec.num_classes
            per_sequence += h * spec.num_classes
    return ParamCounts(total=embedding + spec.layers * per_layer + final, embedding=embedding,
                       per_layer=per_layer, final=final,
                       matmul_per_token=spec.layers * mats + head_matmul, head_matmul=head_matmul,
                       matmul_per_sequence=per_sequence)
