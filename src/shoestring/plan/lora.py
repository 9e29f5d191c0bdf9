"""LoRA and QLoRA adapters on Shoestring's fused linear layers (the planner's reference).

LoRA (Hu et al. 2021, arXiv:2106.09685, eq. 3): ``h = W₀x + (α/r)·B A x`` with
``A`` r×in and ``B`` out×r trainable, ``W₀`` frozen. Shoestring fuses q/k/v
(and SwiGLU's gate/up) into one Linear, so each *role* gets its own adapter
pair on its slice of the output: the same parameters and FLOPs as adapters on
separate ``q_proj``/``k_proj``/``v_proj`` modules (Hugging Face PEFT).

QLoRA (Dettmers et al. 2023, arXiv:2305.14314) stores ``W₀`` as 4-bit NF4
codes (two per byte) with one absmax per 64 weights, double-quantised to
8 bits with one fp32 constant per 256 blocks (section 3). The weight is
dequantised for each matmul and again in backward, never kept; this module
reproduces that memory behaviour (its codebook is a stand-in for NF4's; the
trace measures memory and FLOPs, not accuracy).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from shoestring.plan.build import layer_stack, role_slices
from shoestring.plan.memory import NF4_BLOCK, NF4_SECOND_BLOCK
from shoestring.plan.specs import ModelSpec


class _Dequant4Bit(torch.autograd.Function):
    """``x @ dequant(W)ᵀ`` that saves the 4-bit codes, not the dequantised weight."""

    @staticmethod
    def forward(ctx, x, codes, absmax, shape, dtype):
        ctx.save_for_backward(codes, absmax)
        ctx.shape, ctx.dtype = shape, dtype
        return F.linear(x, _dequantize(codes, absmax, shape, dtype))

    @staticmethod
    def backward(ctx, grad):
        codes, absmax = ctx.saved_tensors
        w = _dequantize(codes, absmax, ctx.shape, ctx.dtype)
        return grad @ w, None, None, None, None


def _dequantize(codes: torch.Tensor, absmax: torch.Tensor, shape: tuple[int, int],
                dtype: torch.dtype) -> torch.Tensor:
    # Two codes per byte → values in [-1, 1] → scaled per block of NF4_BLOCK.
    hi = (codes >> 4).to(dtype)
    lo = (codes & 15).to(dtype)
    values = torch.stack((hi, lo), dim=-1).view(-1, NF4_BLOCK) / 7.5 - 1.0
    return (values * absmax.to(dtype).unsqueeze(-1)).view(shape)


class LoRALinear(nn.Module):
    """A frozen Linear (optionally 4-bit) plus LoRA adapters on chosen output slices."""

    def __init__(self, base: nn.Linear, slices: list[tuple[str, int]], targets: set[str],
                 rank: int, alpha: float, quantize: bool = False) -> None:
        super().__init__()
        self.out_features, self.in_features = base.weight.shape
        self.scale = alpha / rank
        self.bias = base.bias
        if self.bias is not None:
            self.bias.requires_grad_(False)
        if quantize:
            n = base.weight.numel()
            blocks = math.ceil(n / NF4_BLOCK)
            # Double-quantised absmax: 1 byte per block + fp32 per NF4_SECOND_BLOCK blocks,
            # stored here as one uint8 tensor of the same size.
            self.register_buffer("codes", torch.zeros(n // 2, dtype=torch.uint8))
            self.register_buffer("absmax", torch.zeros(blocks, dtype=torch.uint8))
            self.register_buffer("absmax2", torch.zeros(math.ceil(blocks / NF4_SECOND_BLOCK)))
            self.weight = None
        else:
            self.weight = base.weight
            self.weight.requires_grad_(False)
        self.widths = [w for _, w in slices]
        self.adapters = nn.ModuleList()
        self.adapted = []
        for role, width in slices:
            if role in targets:
                a = nn.Linear(self.in_features, rank, bias=False)
                b = nn.Linear(rank, width, bias=False)
                nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
                nn.init.zeros_(b.weight)  # starts as the base model (LoRA section 4.1)
                self.adapters.append(nn.Sequential(a, b))
                self.adapted.append(True)
            else:
                self.adapted.append(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") \
                else torch.bfloat16
            out = _Dequant4Bit.apply(x.to(dtype), self.codes, self.absmax,
                                     (self.out_features, self.in_features), dtype)
            if self.bias is not None:
                out = out + self.bias
        else:
            out = F.linear(x, self.weight, self.bias)
        adapters = iter(self.adapters)
        deltas = [next(adapters)(x) * self.scale if hit else
                  x.new_zeros(*x.shape[:-1], width)
                  for hit, width in zip(self.adapted, self.widths)]
        return out + (deltas[0] if len(deltas) == 1 else torch.cat(deltas, dim=-1))


def apply_lora(model: nn.Module, spec: ModelSpec, targets: tuple[str, ...], rank: int,
               alpha: float, quantize: bool) -> int:
    """Freeze ``model`` and put adapters on the ``targets`` roles of every block.

    Returns how many Linear modules were wrapped.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    stack = layer_stack(model)
    wrapped = 0
    wanted = set(targets)
    for block in stack or []:
        for name, module in list(block.named_modules()):
            if not isinstance(module, nn.Linear):
                continue
            slices = role_slices(spec, name)
            # QLoRA quantises every linear layer of the blocks, adapted or not.
            if not slices or not (quantize or wanted & {r for r, _ in slices}):
                continue
            parent = block.get_submodule(name.rpartition(".")[0]) if "." in name else block
            setattr(parent, name.rpartition(".")[2],
                    LoRALinear(module, slices, wanted, rank, alpha, quantize))
            wrapped += 1
    return wrapped
