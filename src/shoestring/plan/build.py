"""Turning a :class:`ModelSpec` into Shoestring's own PyTorch module, for trace mode.

The trace runs the very modules ``shoestring train`` trains
(:mod:`shoestring.models.gpt`, :mod:`shoestring.models.encoder`,
:mod:`shoestring.models.mlp`), so what it measures is what a run will do.
Call these under ``FakeTensorMode`` (or ``torch.device("meta")``): an 8B model
then costs no real memory.
"""

from __future__ import annotations

from torch import nn

from shoestring.errors import ShoestringError
from shoestring.plan.specs import ModelSpec

# The Encoder needs a classifier to train; a plan of an encoder without one
# (e.g. the bert-base preset) trains a two-way classifier, the smallest head.
DEFAULT_CLASSES = 2


def encoder_classes(spec: ModelSpec) -> int:
    return spec.num_classes or DEFAULT_CLASSES


def build_module(spec: ModelSpec, *, train: bool = True) -> nn.Module:
    """The module of ``spec`` (dropout off: the planner models dropout-free steps)."""
    if spec.family == "mlp":
        from shoestring.models.mlp import MLP

        w = spec.widths
        return MLP(w[0], list(w[1:-1]), w[-1], dropout=0.0, activation=spec.activation)
    if spec.family == "decoder":
        from shoestring.models.gpt import GPT, GPTConfig

        if spec.pos == "alibi":
            raise ShoestringError("trace mode cannot build ALiBi attention",
                                  hint="Shoestring's GPT has learned or rotary positions; "
                                  "drop --trace")
        if spec.bias and spec.norm == "rmsnorm":
            raise ShoestringError("trace mode cannot build an RMSNorm model with biases",
                                  hint="Shoestring's GPT has bias-free RMSNorm; drop --trace")
        return GPT(GPTConfig(
            n_layer=spec.layers, n_head=spec.heads, n_kv_head=spec.n_kv_heads,
            n_embd=spec.hidden, block_size=spec.max_seq, vocab_size=spec.vocab_size,
            dropout=0.0, bias=spec.bias, norm=spec.norm, mlp=spec.mlp,
            intermediate_size=spec.intermediate, pos=spec.pos, rope_theta=spec.rope_theta,
            tie_embeddings=spec.tie_embeddings, norm_eps=spec.norm_eps))
    from shoestring.models.encoder import Encoder, EncoderConfig

    if not spec.pooler:
        raise ShoestringError("trace mode builds BERT-style encoders with a pooler only",
                              hint="set pooler = true in the spec")
    return Encoder(EncoderConfig(
        n_layer=spec.layers, n_head=spec.heads, n_embd=spec.hidden, block_size=spec.max_seq,
        vocab_size=spec.vocab_size, intermediate_size=spec.intermediate,
        type_vocab_size=max(spec.type_vocab_size, 1),
        num_classes=encoder_classes(spec) if train else spec.num_classes, dropout=0.0,
        norm_eps=spec.norm_eps))


def layer_stack(model: nn.Module) -> nn.ModuleList | None:
    """The repeated blocks of a transformer (the largest ModuleList), or None for an MLP."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    return max(lists, key=len) if lists else None


# Which Linear of Shoestring's blocks holds which LoRA role, and the role
# order along its output: CausalSelfAttention.c_attn is [q | k | v], the
# SwiGLU MLP.c_fc is [gate | up] (models/layers.py); BERT's qkv is [q | k | v].
FUSED_ROLES: dict[str, tuple[str, ...]] = {
    "attn.c_attn": ("q", "k", "v"), "attn.c_proj": ("o",),
    "mlp.c_fc": ("fc",), "mlp.c_proj": ("proj",),
    "qkv": ("q", "k", "v"), "attn_out": ("o",), "ffn_in": ("fc",), "ffn_out": ("proj",),
}
SWIGLU_ROLES = {"mlp.c_fc": ("gate", "up"), "mlp.c_proj": ("down",)}


def role_slices(spec: ModelSpec, local_name: str) -> list[tuple[str, int]]:
    """(role, output width) of each slice of the block Linear ``local_name``."""
    from shoestring.plan.specs import layer_linears

    roles = (SWIGLU_ROLES.get(local_name) if spec.mlp == "swiglu" else None) \
        or FUSED_ROLES.get(local_name, ())
    shapes = layer_linears(spec)
    return [(r, shapes[r][1]) for r in roles]
