"""The CPU bf16 path: linear layers multiply in bf16, the rest stays fp32."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shoestring.models.gpt import GPT, GPTConfig
from shoestring.train.bf16_matmul import Bf16Matmuls, bf16_linear
from shoestring.train.precision import Precision, precision_note

AMD_EPYC = "flags\t\t: fpu avx512f avx512_bf16 avx512_vnni"
# bf16 keeps 8 significant bits: one rounding of a product's inputs and output is
# a relative error of ~2^-8 = 0.4%; gradients pass through several such layers.
BF16_REL = 3e-2


def _grads(model: nn.Module, x, y, context) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    with context:
        loss = model(x, y)[1]
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.numerics
def test_gpt_gradients_match_fp32_within_bf16_rounding():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=40))
    x, y = torch.randint(40, (4, 32)), torch.randint(40, (4, 32))
    loss32, g32 = _grads(model, x, y, nullcontext())
    loss16, g16 = _grads(model, x, y, Bf16Matmuls())
    assert abs(loss16 - loss32) < 1e-2 * loss32
    for name, g in g32.items():
        assert g16[name].dtype == torch.float32, name
        rel = ((g16[name] - g).norm() / g.norm().clamp_min(1e-12)).item()
        assert rel < BF16_REL, (name, rel)
    # Not a no-op: the products really ran in bf16 (fp32 would agree to ~1e-6).
    assert max(((g16[n] - g).norm() / g.norm()).item() for n, g in g32.items()) > 1e-4
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.numerics
def test_bf16_linear_matches_fp32_for_any_input_shape_and_frozen_weights():
    torch.manual_seed(1)
    x = torch.randn(3, 5, 48, requires_grad=True)
    w = torch.randn(24, 48, requires_grad=True)
    b = torch.randn(24, requires_grad=True)
    g = torch.randn(3, 5, 24)
    ref = F.linear(x, w, b)
    ref.backward(g)
    ref_grads = [t.grad.clone() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    out = bf16_linear(x, w, b)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert ((out - ref).norm() / ref.norm()).item() < 1e-2
    out.backward(g)
    for t, r in zip((x, w, b), ref_grads):
        assert t.grad.dtype == torch.float32
        assert ((t.grad - r).norm() / r.norm()).item() < 1e-2
    frozen = torch.randn(24, 48)  # a LoRA base weight: no gradient asked for, none made
    xs = torch.randn(6, 48, requires_grad=True)
    bf16_linear(xs, frozen).sum().backward()
    assert xs.grad is not None and frozen.grad is None


def test_only_fp32_cpu_linears_are_rerouted():
    x64, w64 = torch.randn(4, 8, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    xb, wb = torch.randn(4, 8, dtype=torch.bfloat16), torch.randn(3, 8, dtype=torch.bfloat16)
    with Bf16Matmuls():
        assert torch.equal(F.linear(x64, w64), x64 @ w64.T)  # float64 untouched
        assert F.linear(xb, wb).dtype == torch.bfloat16      # a bf16-true model untouched
        x, w = torch.randn(4, 8), torch.randn(3, 8)
        y = F.linear(x, w)
        other = torch.softmax(x, -1)                          # everything else stays fp32
    assert y.dtype == torch.float32 and other.dtype == torch.float32
    assert torch.equal(y, F.linear(x.bfloat16(), w.bfloat16()).float())


def test_precision_contexts_and_notes():
    cpu = torch.device("cpu")
    assert isinstance(Precision("bf16", "cpu").autocast(), Bf16Matmuls)
    # Activation checkpointing recomputes outside the mode: CPU bf16 is autocast there.
    assert isinstance(Precision("bf16", "cpu", checkpointing=True).autocast(), torch.autocast)
    assert not isinstance(Precision("fp32", "cpu").autocast(), Bf16Matmuls)
    note = precision_note("auto", "bf16", cpu, AMD_EPYC)
    assert "bf16 matmuls" in note and "avx512_bf16" in note and "--precision fp32" in note
    assert "no native bf16" in precision_note("auto", "fp32", cpu, "flags : avx2")
    assert "mlp" in precision_note("auto", "fp32", cpu, AMD_EPYC, family="mlp")
    assert "limited to AVX2" in precision_note("auto", "fp32", cpu, AMD_EPYC, capability="AVX2")
    assert precision_note("fp32", "fp32", cpu, AMD_EPYC) == "fp32 (--precision fp32)"
