"""LoRA adapters on Shoestring's transformers: add, train, merge, save alone.

LoRA (Hu et al. 2021, arXiv:2106.09685, eq. 3) freezes a weight ``W₀`` and
learns a low-rank update: ``h = W₀x + (α/r)·B·A·x`` with ``A`` r×in and ``B``
out×r. ``A`` starts as ``nn.Linear``'s Kaiming-uniform and ``B`` at zero, so
the adapted model starts equal to its base (PEFT's defaults).

Why our own layer rather than PEFT: Shoestring fuses q/k/v into one Linear
(``c_attn``, ``qkv``) and SwiGLU's gate/up into another (``c_fc``). PEFT puts
one adapter on a whole module, so it cannot target ``q`` and ``v`` but not
``k``, and one adapter over the fused q/k/v would share one rank across the
three, unlike the separate ``q_proj``/``k_proj``/``v_proj`` adapters people
train on Hugging Face models. Here each *role* gets its own ``A``/``B`` on its
slice of the fused output: the same parameters, FLOPs and merged result as
PEFT on separate projections. (PEFT also needs ``transformers`` and
``accelerate`` at run time; this file needs neither.)

Targets are roles: ``q k v o`` in attention, ``gate up down`` in a SwiGLU MLP,
``fc proj`` in a GELU one; ``all`` is every one. Hugging Face module names
(``q_proj``, ``query``, ``down_proj``…) are accepted as aliases. Dropout acts on
the adapter's input, one mask per fused projection.

>>> from shoestring.models.gpt import GPT, GPTConfig
>>> model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11))
>>> spec = LoRASpec(rank=4, alpha=8, targets=("q", "v"))
>>> _ = add_lora(model, spec)
>>> sorted(adapter_state(model))[:2]
['blocks.0.attn.c_attn.lora_a.q', 'blocks.0.attn.c_attn.lora_a.v']
>>> trainable_parameters(model)
256
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shoestring.errors import ShoestringError

# Hugging Face / PEFT module names → Shoestring roles.
ALIASES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "query": "q", "key": "k",
           "value": "v", "gate_proj": "gate", "up_proj": "up", "down_proj": "down",
           "c_fc": "fc", "fc1": "fc", "fc2": "proj", "dense": "o"}
ADAPTER_MARK = ".lora_"  # every adapter tensor's name holds this


@dataclass(frozen=True)
class LoRASpec:
    """Rank ``r``, scale ``alpha`` (the update is multiplied by ``alpha / rank``),
    input dropout, and the roles to adapt."""

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("q", "k", "v", "o")

    def __post_init__(self) -> None:
        problems = []
        if self.rank < 1:
            problems.append(f"lora rank must be at least 1, got {self.rank}")
        if not self.alpha > 0:
            problems.append(f"lora alpha must be positive, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"lora dropout must be in [0, 1), got {self.dropout}")
        if not self.targets:
            problems.append("lora targets are empty")
        if problems:
            raise ShoestringError("; ".join(problems), hint="e.g. --lora-rank 16 --lora-alpha 32 "
                                  "--lora-targets q,k,v,o")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def fused_roles(model: nn.Module) -> dict[str, list[tuple[str, int]]]:
    """Each adaptable Linear's name → its output slices as (role, width), in order."""
    from shoestring.models.encoder import Encoder
    from shoestring.models.gpt import GPT

    out: dict[str, list[tuple[str, int]]] = {}
    if isinstance(model, GPT):
        c = model.config
        hd = c.head_dim
        for i in range(c.n_layer):
            b = f"blocks.{i}"
            out[f"{b}.attn.c_attn"] = [("q", c.n_head * hd), ("k", c.kv_heads * hd),
                                       ("v", c.kv_heads * hd)]
            out[f"{b}.attn.c_proj"] = [("o", c.n_embd)]
            if c.mlp == "swiglu":
                out[f"{b}.mlp.c_fc"] = [("gate", c.hidden_size), ("up", c.hidden_size)]
                out[f"{b}.mlp.c_proj"] = [("down", c.n_embd)]
            else:
                out[f"{b}.mlp.c_fc"] = [("fc", c.hidden_size)]
                out[f"{b}.mlp.c_proj"] = [("proj", c.n_embd)]
    elif isinstance(model, Encoder):
        c = model.config
        for i in range(c.n_layer):
            b = f"layers.{i}"
            out[f"{b}.qkv"] = [("q", c.n_embd), ("k", c.n_embd), ("v", c.n_embd)]
            out[f"{b}.attn_out"] = [("o", c.n_embd)]
            out[f"{b}.ffn_in"] = [("fc", c.intermediate_size)]
            out[f"{b}.ffn_out"] = [("proj", c.n_embd)]
    else:
        raise ShoestringError(f"LoRA adapts transformers; this model is a "
                              f"{type(model).__name__}", hint="use --finetune full")
    return out


def resolve_targets(model: nn.Module, targets: Iterable[str]) -> set[str]:
    """The roles ``targets`` name (aliases and ``all`` resolved), or an error listing the
    real ones."""
    roles = {r for slices in fused_roles(model).values() for r, _ in slices}
    order = [r for r in ("q", "k", "v", "o", "gate", "up", "down", "fc", "proj") if r in roles]
    wanted = {ALIASES.get(t.strip(), t.strip()) for t in targets}
    if "all" in wanted:
        return roles
    unknown = sorted(t for t in targets if ALIASES.get(t.strip(), t.strip()) not in roles)
    if unknown:
        raise ShoestringError(f"LoRA target{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(map(repr, unknown))} do{'es' if len(unknown) == 1 else ''}"
                              f" not exist in this {type(model).__name__} model",
                              hint=f"its targets are: {', '.join(order)} (or 'all'); "
                              "e.g. --lora-targets q,v")
    return wanted


class LoRALinear(nn.Module):
    """A frozen Linear plus adapters on chosen slices of its output.

    The frozen ``weight`` and ``bias`` keep their names, so a base model's state
    dict loads into the adapted model unchanged; adapters are
    ``lora_a.<role>`` (r×in) and ``lora_b.<role>`` (width×r).
    """

    def __init__(self, base: nn.Linear, slices: list[tuple[str, int]], targets: set[str],
                 spec: LoRASpec) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.slices = slices
        self.quantized = False
        self.roles = [r for r, _ in slices if r in targets]
        self.scale = spec.scale
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout > 0 else nn.Identity()
        device, dtype = base.weight.device, base.weight.dtype
        self.lora_a = nn.ParameterDict()
        self.lora_b = nn.ParameterDict()
        for role, width in slices:
            if role in targets:
                a = torch.empty(spec.rank, self.in_features, device=device, dtype=dtype)
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # nn.Linear's (and PEFT's) init
                self.lora_a[role] = nn.Parameter(a)
                self.lora_b[role] = nn.Parameter(torch.zeros(width, spec.rank, device=device,
                                                             dtype=dtype))

    def _a(self) -> torch.Tensor:
        """Every adapted role's ``A`` stacked: one matmul projects the input for all."""
        return torch.cat([self.lora_a[r] for r in self.roles], dim=0)

    def delta_weight(self) -> torch.Tensor:
        """``(α/r)·B·A`` laid over the fused output (zero rows for roles not adapted)."""
        a = self._a()
        blocks = [self.lora_b[r] if r in self.lora_b else a.new_zeros(w, 0)
                  for r, w in self.slices]
        return torch.block_diag(*blocks) @ a * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_forward(x)
        if not self.roles:  # a frozen (QLoRA: 4-bit) layer without adapters
            return y
        xa = F.linear(self.dropout(x), self._a()) * self.scale
        rank = xa.shape[-1] // len(self.roles)
        pieces, i = [], 0
        for role, width in self.slices:  # each role's B on its own slice: no zero blocks
            if role in self.lora_b:
                pieces.append(F.linear(xa[..., i * rank:(i + 1) * rank], self.lora_b[role]))
                i += 1
            else:
                pieces.append(xa.new_zeros(*xa.shape[:-1], width))
        return y + (pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1))

    def base_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantized:
            import bitsandbytes as bnb

            bias = self.bias.to(x.dtype) if self.bias is not None else None
            return bnb.matmul_4bit(x, self.weight.t(), bias=bias,
                                   quant_state=self.weight.quant_state)
        return F.linear(x, self.weight, self.bias)

    def quantize_4bit(self) -> None:
        """Store the frozen weight as 4-bit NF4 with double-quantized block scales (QLoRA,
        Dettmers et al. 2023, arXiv:2305.14314, section 3), through bitsandbytes."""
        bnb = bitsandbytes_4bit()
        w = self.weight.data
        self.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4",
                                        compress_statistics=True).to(w.device)
        self.quantized = True

    def base_weight(self) -> torch.Tensor:
        """The frozen weight in floating point (dequantized when stored in 4 bits)."""
        if self.quantized:
            import bitsandbytes.functional as bf

            return bf.dequantize_4bit(self.weight.data, self.weight.quant_state)
        return self.weight

    def merged(self) -> nn.Linear:
        """A plain Linear with the update folded in: same outputs (up to rounding)."""
        base = self.base_weight()
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=base.device, dtype=base.dtype)
        with torch.no_grad():
            out.weight.copy_(base + self.delta_weight().to(base.dtype))
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return (model.get_submodule(path) if path else model), leaf


def bitsandbytes_4bit():
    """bitsandbytes, for QLoRA's 4-bit base, or a clear error where it cannot run."""
    try:
        import bitsandbytes
    except ImportError:
        raise ShoestringError("QLoRA's 4-bit base needs bitsandbytes' NF4 kernels, and "
                              "bitsandbytes is not installed",
                              hint="pip install 'shoestring[quant]' (bitsandbytes; CUDA GPUs, "
                              "and CPUs from bitsandbytes 0.45); or use --finetune lora") \
            from None
    return bitsandbytes


def add_lora(model: nn.Module, spec: LoRASpec, train_also: Iterable[str] = (),
             quantize: bool = False) -> nn.Module:
    """Freeze ``model`` and put adapters on the target roles, in place; returns ``model``.

    ``train_also`` names parameters (or prefixes such as ``classifier``) that stay
    trainable and are saved with the adapters: a new task head, for instance.
    ``quantize`` (QLoRA) stores every frozen block projection in 4 bits, adapted or not.
    """
    targets = resolve_targets(model, spec.targets)
    if quantize:
        bitsandbytes_4bit()
    for p in model.parameters():
        p.requires_grad_(False)
    for name, slices in fused_roles(model).items():
        if not quantize and not any(r in targets for r, _ in slices):
            continue
        parent, leaf = _parent(model, name)
        base = getattr(parent, leaf)
        if isinstance(base, LoRALinear):
            raise ShoestringError(f"'{name}' already carries LoRA adapters",
                                  hint="merge them first, or train the adapters you have")
        layer = LoRALinear(base, slices, targets, spec)
        if quantize:
            try:
                layer.quantize_4bit()
            except ShoestringError:
                raise
            except Exception as exc:  # bitsandbytes without kernels for this device
                raise ShoestringError(f"bitsandbytes cannot quantize to 4 bits on "
                                      f"{base.weight.device}: {exc}",
                                      hint="QLoRA needs a CUDA GPU (or a CPU build of "
                                      "bitsandbytes); use --finetune lora here") from None
        setattr(parent, leaf, layer)
    also = tuple(train_also)
    for name, p in model.named_parameters():
        if any(name == t or name.startswith(t + ".") for t in also):
            p.requires_grad_(True)
    model.lora_train_also = also  # which plain parameters belong with the adapters
    return model


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors an adapter file holds: the adapters, and the ``train_also`` parameters."""
    also = getattr(model, "lora_train_also", ())
    return {k: v for k, v in model.state_dict().items()
            if ADAPTER_MARK in k or any(k == t or k.startswith(t + ".") for t in also)}


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight, in place: the plain architecture again."""
    for name, layer in lora_layers(model):
        parent, leaf = _parent(model, name)
        setattr(parent, leaf, layer.merged())
    for p in model.parameters():
        p.requires_grad_(True)
    if hasattr(model, "lora_train_also"):
        del model.lora_train_also
    for handle in getattr(model, "adapter_state_hooks", ()):  # adapter runs: whole state again
        handle.remove()
    model.adapter_state_hooks = []
    return model
