"""The fine-tuning recipes the planner models (issue 14, item 4): each memory saver
changes the estimate the way its mechanism says, and the plan answers with them."""

from __future__ import annotations

from datetime import date

import pytest

from shoestring.plan.api import plan
from shoestring.plan.catalog import Catalog, default_catalog
from shoestring.plan.config import resolve_plan_config
from shoestring.plan.cost import data_parallel_seconds
from shoestring.plan.efficiency import (
    adapter_seconds,
    dequantize_seconds,
    goodput,
    recipe_factor,
    size_factor,
)
from shoestring.plan.largest import longest_context
from shoestring.plan.memory import GIB, NF4_BYTES, estimate_memory
from shoestring.plan.presets import load_preset
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import layer_linears

LLAMA = load_preset("llama-3-8b")
P = 8_030_261_248
TODAY = date(2026, 1, 2)
FULL = StepSetup(micro_batch=2, seq_len=2048, checkpointing="full")


def _mem(**changes):
    return estimate_memory(LLAMA, FULL.with_(**changes))


def test_pure_bf16_halves_weights_gradients_and_adam_states():
    mixed, pure = _mem(precision="bf16-mixed"), _mem(precision="bf16")
    assert pure.optimizer == 4 * P and mixed.optimizer == 8 * P   # AdamW moments in bf16
    assert pure.weights == pytest.approx(2 * P, rel=1e-3) and mixed.weights == pytest.approx(
        4 * P, rel=1e-3)


def test_optimizer_in_backward_keeps_one_gradient():
    before = _mem(precision="bf16")
    after = _mem(precision="bf16", optimizer_in_backward=True)
    largest = 128256 * 4096 * 2   # the embedding (or head) is the largest tensor
    assert after.detail["one gradient (stepped in backward)"] == largest
    assert after.total < before.total - 10 * GIB


def test_eight_bit_and_paged_optimizer_states():
    eight = _mem(precision="bf16", optimizer="adam8bit")
    paged = _mem(precision="bf16", optimizer="paged-adam8bit")
    assert 2 * P <= eight.optimizer < 2.01 * P
    assert paged.optimizer == 0 and paged.paged == eight.optimizer   # in unified memory
    assert paged.total < eight.total


def test_chunked_loss_never_holds_the_full_logits():
    # In backward and fused, so that the loss, not the optimizer step, is the peak.
    lean = {"precision": "bf16", "micro_batch": 1, "optimizer_in_backward": True,
            "fused_optimizer": True}
    plain = _mem(**lean)
    chunked = _mem(**lean, loss_chunks=8)
    logits = 2048 * 128256
    assert "logits (held by the caller)" in plain.detail
    assert not any("held" in k for k in chunked.detail)
    # 14 bytes per logit plain (bf16 held + fp32 log-softmax + two fp32 gradients)
    assert plain.total - chunked.total > 0.8 * 14 * logits


def test_a_compiled_chunked_loss_keeps_bf16_logits_and_one_bf16_gradient_chunk():
    """Inductor fuses each chunk's upcast, softmax and downcast: the forward saves the
    bf16 logits (and two fp32 numbers per row), the backward writes only the chunk's
    bf16 gradient — no fp32 [tokens, vocab] buffer (torch's generated code)."""
    lora = {"precision": "bf16", "finetune": "lora", "lora_targets": ("q", "v"),
            "loss_chunks": 8, "loss_keeps_logits": True, "compiled": True}
    m = _mem(**lora)
    logits = 2 * 2048 * 128256 * 2
    assert m.detail["logits (all chunks, saved)"] == logits
    assert m.detail["one chunk's logits gradient"] == logits // 8
    assert not any("fp32" in k for k in m.detail)
    assert "chunked head backward" not in _phases(**lora)   # a frozen head gets no gradient


def _phases(**changes):
    from shoestring.plan import memory as M

    setup = FULL.with_(**changes)
    p = M._param_bytes(LLAMA, setup)
    return M._transformer_phases(LLAMA, setup, p, 0.0)[0]


def test_a_trained_head_run_per_chunk_sums_its_gradients_in_three_head_sized_tensors():
    """Autograd sums the head's per-chunk weight gradients before AccumulateGrad runs:
    the sum so far, the new chunk's and their (out-of-place) sum coexist, while the
    chunks not yet differentiated keep their saved logits."""
    full = {"precision": "bf16", "loss_chunks": 8, "loss_keeps_logits": True,
            "compiled": True, "optimizer_in_backward": True, "fused_optimizer": True,
            "checkpointing": "none"}
    phase = _phases(**full)["chunked head backward"]
    head = 128256 * 4096 * 2
    assert phase["head gradient: the sum so far, one chunk's, and their sum"] == 3 * head
    assert phase["saved logits of the chunks not yet differentiated"] == \
        pytest.approx(2 * 2048 * 128256 * 2 * 6 / 8)
    assert _mem(**full).phase == "chunked head backward"   # the 8B full fine-tune's peak


def test_a_fused_in_place_loss_keeps_only_the_bf16_logits():
    """Unsloth's cross-entropy kernel overwrites the logits with their gradient."""
    base = {"precision": "bf16", "finetune": "qlora", "micro_batch": 1, "loss_chunks": 8}
    fused = _phases(**base, loss_impl="fused-inplace")["loss backward"]
    plain = _phases(**base)["loss backward"]
    chunk = 2048 * 128256 * 2 / 8
    assert fused["one loss chunk (bf16 logits, overwritten by their gradient)"] == chunk
    assert plain["one loss chunk (logits, fp32 copy, log-softmax, gradients)"] == 7 * chunk


def test_a_given_efficiency_is_the_mfu_the_plan_runs_at():
    """--efficiency prices the model FLOPs at the user's MFU on every device."""
    cfg = resolve_plan_config({"model": "gpt2-124m", "tokens": 1e9, "efficiency": 0.5,
                               "hardware": ["a100-80gb"], "spot": False})
    opts = plan(cfg, today=TODAY).options
    single = [o for o in opts if o.gpus == 1][0]
    assert single.fit.mfu == pytest.approx(0.5, rel=0.01)
    with pytest.raises(Exception, match="efficiency"):
        resolve_plan_config({"model": "gpt2-124m", "efficiency": 1.5})


def test_the_rtx_4090_efficiency_reads_nanogpts_mfu_against_the_a100_peak():
    """nanoGPT's estimate_mfu divides by 312 TFLOPS on every card: its user's 29% on a
    4090 is 0.29 × 312 / 165.2 of the 4090's peak at GPT-2 small's size factor."""
    card = default_catalog().get("rtx-4090")
    assert card.efficiency * size_factor(load_preset("gpt2-124m")) == pytest.approx(
        0.29 * 312 / 165.2, rel=0.01)


def test_offloaded_activations_leave_two_blocks_on_the_device():
    lean = {"precision": "bf16", "micro_batch": 8, "optimizer_in_backward": True,
            "fused_optimizer": True, "loss_chunks": 8}
    kept = _mem(**lean)
    off = _mem(**lean, offload_activations=True)
    checkpoints = 8 * 2048 * 4096 * 2 * 32
    assert off.offloaded == pytest.approx(checkpoints * 30 / 32, rel=1e-6)
    assert kept.total - off.total == pytest.approx(off.offloaded, rel=1e-6)


def test_lora_dropout_keeps_a_dropped_input_and_mask_per_adapter():
    base = StepSetup(micro_batch=1, seq_len=1024, finetune="lora", precision="bf16",
                     lora_targets=("q", "v"))
    off = estimate_memory(LLAMA, base)
    on = estimate_memory(LLAMA, base.with_(lora_dropout=0.1))
    assert on.total - off.total == pytest.approx(32 * 1024 * 2 * 4096 * 3, rel=0.05)


def test_efficiency_by_size_and_recipe_and_goodput():
    assert size_factor(load_preset("gpt2-124m")) == pytest.approx(0.72, abs=0.01)
    assert size_factor(LLAMA) == 1.0
    full = recipe_factor(FULL, compiled=True)
    # LoRA's adapters cost memory traffic, not a rate factor: per adapted projection and
    # token, forward in + 4·out values compiled (in + 6·out eager), rerun under
    # checkpointing, backward 5·in + 2·out; 2 bytes each in bf16, at 80% of the bandwidth.
    lora = FULL.with_(finetune="lora", lora_targets=("q",), precision="bf16", compiled=True)
    assert recipe_factor(lora, compiled=True) == full
    assert adapter_seconds(LLAMA, FULL, 1000.0) == 0.0
    h, tokens = LLAMA.hidden, 2 * 2048
    per_token = 2 * (h + 4 * h) + 5 * h + 2 * h
    assert adapter_seconds(LLAMA, lora, 1000.0) == pytest.approx(
        LLAMA.layers * per_token * 2 * tokens / (1000e9 * 0.8))
    eager = adapter_seconds(LLAMA, lora.with_(compiled=False), 1000.0)
    assert eager > adapter_seconds(LLAMA, lora, 1000.0)
    # QLoRA's 4-bit base costs memory traffic, not a rate factor: each block matrix is
    # dequantised (0.516 bytes read, 2 written) per use — forward, backward, and the
    # recomputation when checkpointing — at 80% of the card's bandwidth.
    qlora = FULL.with_(finetune="qlora")
    assert recipe_factor(qlora, compiled=True) == recipe_factor(FULL.with_(finetune="lora"),
                                                                compiled=True)
    assert dequantize_seconds(LLAMA, FULL.with_(finetune="lora"), 1000.0) == 0.0
    per_use = LLAMA.layers * sum(i * o for i, o in layer_linears(LLAMA).values()) \
        * (NF4_BYTES + 2) / (1000e9 * 0.8)
    assert dequantize_seconds(LLAMA, qlora.with_(checkpointing="none"), 1000.0) == \
        pytest.approx(2 * per_use)
    assert dequantize_seconds(LLAMA, qlora, 1000.0) == pytest.approx(3 * per_use)
    assert recipe_factor(FULL, compiled=False) < full
    g = goodput(checkpoint_bytes=96e9, devices=8, eval_fraction=0.02,
                checkpoint_interval_h=0.5, checkpoint_write_gbs=1.0)
    assert g.checkpoints == pytest.approx(96 / 1800)       # 96 s of writing every 30 min
    assert 0.9 < g.factor < 0.95


def test_zero3_gathers_every_micro_batch_even_frozen_weights():
    one = data_parallel_seconds(LLAMA, StepSetup(dp=8, zero_stage=3, grad_accum=1), 32)
    four = data_parallel_seconds(LLAMA, StepSetup(dp=8, zero_stage=3, grad_accum=4), 32)
    lora = data_parallel_seconds(LLAMA, StepSetup(dp=8, zero_stage=3, finetune="lora"), 32)
    ddp_lora = data_parallel_seconds(LLAMA, StepSetup(dp=8, zero_stage=0, finetune="lora"), 32)
    assert four > 3.9 * one * 0.75 and lora > 100 * ddp_lora


def test_48_gb_cards_are_in_the_catalog_with_dated_cited_prices():
    cat = default_catalog()
    for name in ("rtx-a6000", "a40", "l40s"):
        d = cat.get(name)
        assert 44 <= d.memory_gib <= 48 and d.supports_bf16
        prices = cat.prices_for(name)
        assert prices and all(p.source.startswith("https://") and p.date for p in prices)


def test_a_full_finetune_on_a_24_gb_card_says_which_batch_would_fit():
    r = plan(resolve_plan_config({"model": "llama-3-8b", "finetune": "full",
                                  "optimizer": "paged-adam8bit", "hardware": ("rtx-4090",)}),
             today=TODAY)
    (v,) = r.single_device
    assert not v.fits and "--batch-size" in v.line()
    batch = int(v.line().split("--batch-size ")[1].split(";")[0])
    fitted = plan(resolve_plan_config({"model": "llama-3-8b", "finetune": "full",
                                       "optimizer": "paged-adam8bit", "batch_size": batch,
                                       "hardware": ("rtx-4090",), "gpus": 1}), today=TODAY)
    best = fitted.options[0]
    assert best.fits and not best.fit.substituted
    assert best.fit.setup.optimizer_in_backward and best.fit.setup.precision == "bf16"


def test_lora_of_an_8b_model_fits_on_one_24_gb_card():
    r = plan(resolve_plan_config({"model": "llama-3-8b", "finetune": "lora"}), today=TODAY)
    v = next(v for v in r.single_device if v.class_gb == 24)
    assert v.fits and v.line().startswith("fits on one 24 GB card: yes")


def test_largest_micro_batch_and_context_fit_and_one_more_does_not():
    cfg = resolve_plan_config({"model": "llama-3-8b", "finetune": "qlora", "largest": "context",
                               "hardware": ("rtx-4090",)})
    r = plan(cfg, today=TODAY)
    (largest,) = r.largest
    assert largest.value > 8192 and largest.fit.fits
    setup = largest.fit.setup
    device = default_catalog().get("rtx-4090")
    assert longest_context(LLAMA, setup, device) == largest.value
    r = plan(cfg.model_copy(update={"largest": "micro-batch", "seq_len": 2048}), today=TODAY)
    assert r.largest[0].value >= 1 and r.largest[0].fit.setup.micro_batch == r.largest[0].value


def test_max_price_per_hour_leaves_dear_machines_out():
    r = plan(resolve_plan_config({"model": "gpt2-124m", "tokens": 1e9,
                                  "max_price_per_hour": 2.0}), today=TODAY)
    assert r.options and all(o.price_per_hour <= 2.0 for o in r.options)


def test_nothing_fits_says_what_it_would_need_with_the_pinned_strategy():
    cat = Catalog.model_validate({
        "device": [{"name": "small", "label": "small", "kind": "gpu", "memory_gib": 8,
                    "bandwidth_gbs": 500, "peak_tflops": {"fp32": 10, "bf16": 50},
                    "efficiency": 0.4, "source": "test"}],
        "price": [{"device": "small", "cloud": "c", "instance": "1x", "gpus": 1,
                   "on_demand": 1.0, "date": TODAY, "source": "test"}]})
    r = plan(resolve_plan_config({"model": "llama-3-70b", "finetune": "full", "gpus": 1,
                                  "checkpointing": "full"}), catalog=cat, today=TODAY)
    assert not any(o.fits for o in r.options)
    note = next(n for n in r.notes if n.startswith("nothing fits"))
    assert "GiB per device" in note and "activation checkpointing" in note
    assert r.memory.total > 8 * GIB and r.trained_params == 70_553_706_496
