"""Analytic memory: the sum of components, sharding, optimizers, serving, FLOPs formulas."""

from __future__ import annotations

import pytest

from shoestring.plan.activations import block_terms
from shoestring.plan.compute import step_flops
from shoestring.plan.memory import GIB, estimate_memory
from shoestring.plan.presets import load_preset
from shoestring.plan.serving import kv_cache_bytes, serving_time
from shoestring.plan.setup import StepSetup

LLAMA = load_preset("llama-3-8b")
GPT2 = load_preset("gpt2-124m")


def test_total_is_the_sum_of_components_not_the_largest():
    m = estimate_memory(GPT2, StepSetup(micro_batch=8, seq_len=1024), context_gib=1.0)
    parts = m.weights + m.gradients + m.optimizer + m.activations
    assert m.peak_tensors == parts
    assert m.total == parts + m.overhead
    assert m.total > max(m.weights, m.optimizer, m.activations) + m.weights + m.optimizer


def test_adamw_states_are_two_fp32_moments_sgd_one_8bit_two_bytes():
    def opt(name):
        return estimate_memory(GPT2, StepSetup(micro_batch=1, seq_len=128, optimizer=name)
                               ).optimizer
    p = 124_439_808
    assert opt("adamw") == 8 * p and opt("sgd") == 4 * p
    assert 2 * p <= opt("adam8bit") < 2.01 * p


def test_zero_stages_shard_optimizer_then_gradients_then_weights():
    base = StepSetup(micro_batch=1, seq_len=2048, dp=8, checkpointing="full")
    z = {s: estimate_memory(LLAMA, base.with_(zero_stage=s)) for s in (0, 1, 2, 3)}
    assert z[1].optimizer == pytest.approx(z[0].optimizer / 8)
    assert z[1].weights == z[0].weights
    assert z[3].weights < z[0].weights / 4
    assert z[0].total > z[1].total > z[2].total > z[3].total


def test_tensor_parallel_splits_weights_and_activations():
    one = estimate_memory(LLAMA, StepSetup(micro_batch=4, seq_len=2048))
    four = estimate_memory(LLAMA, StepSetup(micro_batch=4, seq_len=2048, tp=4))
    assert four.weights == pytest.approx(one.weights / 4)
    assert four.activations < one.activations


def test_full_checkpointing_keeps_block_inputs_only():
    none = estimate_memory(LLAMA, StepSetup(micro_batch=16, seq_len=4096))
    full = estimate_memory(LLAMA, StepSetup(micro_batch=16, seq_len=4096, checkpointing="full"))
    assert full.activations < none.activations / 3
    # one fp32 residual-stream tensor per block (bf16 autocast keeps the stream in fp32)
    assert full.detail["block inputs (checkpoints)"] == 16 * 4096 * 4096 * 4 * 32


def test_gqa_and_swiglu_terms_are_derived_from_the_shapes():
    t = block_terms(LLAMA, StepSetup(precision="fp32", kernels="cuda"))
    assert t["q, k, v (fused projection output)"] == (4096 + 2 * 1024) * 4   # 8 KV heads
    assert t["gate | up (fused projection output)"] == 2 * 14336 * 4
    mha = LLAMA.model_copy(update={"kv_heads": 32})
    assert block_terms(mha, StepSetup(precision="fp32"))["q, k, v (fused projection output)"] \
        == 3 * 4096 * 4


def test_lora_and_qlora_weights():
    lora = estimate_memory(LLAMA, StepSetup(micro_batch=1, seq_len=512, finetune="lora"))
    qlora = estimate_memory(LLAMA, StepSetup(micro_batch=1, seq_len=512, finetune="qlora"))
    assert lora.weights == pytest.approx(8_030_261_248 * 2, rel=0.01)   # bf16 base
    assert qlora.weights < lora.weights / 2.5                           # 4-bit blocks
    assert lora.optimizer == 8 * 13_631_488                              # adapters only


def test_kv_cache_and_decode_time():
    setup = StepSetup(mode="serve", micro_batch=8, seq_len=2048, output_tokens=256,
                      precision="bf16")
    # 2 (K, V) × 32 layers × 1024 (8 KV heads × 128) × 2 bytes per token
    assert kv_cache_bytes(LLAMA, 8, 2304, setup) == 2 * 32 * 1024 * 2 * 8 * 2304
    mem = estimate_memory(LLAMA, setup, context_gib=1.0)
    assert mem.detail["KV cache"] == 2 * 32 * 1024 * 2 * 8 * 2304
    t = serving_time(LLAMA, setup, flops_per_s=400e12, bytes_per_s=2.6e12)
    # decode is bandwidth-bound: about the weights' bytes per token step
    per_token = t.decode_s / 256
    assert 16e9 / 2.6e12 < per_token < 1.2 * 18e9 / 2.6e12
    mistral = load_preset("mistral-7b")   # sliding window caps the cache
    assert kv_cache_bytes(mistral, 1, 32768, setup) == kv_cache_bytes(mistral, 1, 4096, setup)


def test_flops_follow_6nd_plus_attention():
    setup = StepSetup(micro_batch=4, seq_len=1024)
    f = step_flops(GPT2, setup)
    n = 12 * 12 * 768 ** 2 + 50257 * 768   # block matrices + the tied LM head
    tokens = 4 * 1024
    # 6·N per token (matmul weights) plus the counter's full-square attention
    assert f.forward + f.backward == 6 * n * tokens + 14 * 4 * 1024 * 1024 * 768 * 12
    assert f.model == 6 * n * tokens + 12 * 12 * 768 * 1024 * tokens
    ck = step_flops(GPT2, setup.with_(checkpointing="full"))
    assert ck.recompute > 0 and ck.total > f.total


def test_lora_backward_skips_frozen_weight_gradients():
    full = step_flops(LLAMA, StepSetup(micro_batch=1, seq_len=512))
    lora = step_flops(LLAMA, StepSetup(micro_batch=1, seq_len=512, finetune="lora"))
    assert lora.forward > full.forward                    # the adapters' extra matmuls
    assert lora.backward < 0.6 * full.backward            # no weight gradients


def test_doctest_numbers():
    assert estimate_memory(GPT2, StepSetup(micro_batch=8, seq_len=1024)).total / GIB > 5
