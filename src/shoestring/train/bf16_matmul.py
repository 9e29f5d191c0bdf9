"""Mixed precision on a CPU: linear layers multiply in bf16, everything else stays fp32.

``torch.autocast("cpu", torch.bfloat16)`` made the 4-layer, 128-wide GPT step
*slower* on the development machine (AMD EPYC Zen 4, ``avx512_bf16``, no AMX)
although a bf16 matmul of the step's shapes runs there about 2x faster than
fp32 (single thread, 768x128 @ 128x384: 476 against 903 us of CPU; the
backward's transposed products gain as much). Profiled, autocast's loss was
elsewhere: it hands bf16 activations to scaled-dot-product attention, whose
CPU backward runs about 2.8x slower in bf16 than in fp32 at these shapes, and
to GELU, layer norm and the residual adds, which gain nothing and add casts.

So this path narrows mixed precision to where the CPU gains from it, the
standard recipe (Micikevicius et al. 2018, "Mixed Precision Training") cut to
the matrix products: inside :class:`Bf16Matmuls`, every ``F.linear`` on fp32
tensors (``nn.Linear`` and a tied output head alike) casts its input, weight
and bias to bf16 once, multiplies in bf16 (oneDNN accumulates in fp32) and
returns fp32. The backward multiplies the bf16 copies saved by the forward
(each weight is cast once per step) and casts the gradients back to fp32.
Master weights, optimizer state, norms, softmax, attention, activations and
the loss stay fp32, and weights are saved in fp32.

Checked against fp32 in ``tests/unit/train/test_bf16_matmul.py`` (gradients
within bf16 rounding) and on quality by ``bench/train_bf16_quality.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

BF16 = torch.bfloat16
_LINEAR = {F.linear, torch._C._nn.linear}


def bf16_linear(x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` with bf16 products and fp32 results (see the module docstring).

    Built from native differentiable casts around a bf16 ``F.linear`` rather than a
    Python ``autograd.Function``: its backward (``AddmmBackward``'s two bf16 products)
    then runs without Python, which cost ~50 us per layer and step in a custom Function
    (measured on the loaded 2-core development machine).
    """
    out = F.linear(x.to(BF16), weight.to(BF16), None if bias is None else bias.to(BF16))
    return out.to(x.dtype)


class Bf16Matmuls(TorchFunctionMode):
    """Within this context, fp32 ``F.linear`` calls run as :func:`bf16_linear`.

    Other dtypes (a bf16-true or quantized model) pass through unchanged. Not
    for activation checkpointing: its recomputation in the backward pass runs
    outside this context, in fp32, and no longer matches what the forward saved
    (:func:`shoestring.train.precision.resolve_precision` keeps such runs off it).
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _LINEAR:
            x, w = args[0], args[1]
            b = args[2] if len(args) > 2 else kwargs.get("bias")
            if x.dtype == torch.float32 and w.dtype == torch.float32 and \
                    (b is None or b.dtype == torch.float32) and x.device.type == "cpu":
                return bf16_linear(x, w, b)  # handlers run with the mode popped
        return func(*args, **kwargs)
