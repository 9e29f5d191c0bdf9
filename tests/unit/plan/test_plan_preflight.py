"""check_fits: the verdict behind 'shoestring train --plan-first'."""

from __future__ import annotations

from shoestring.plan import check_fits
from shoestring.plan.preflight import setup_for, verdict_for
from shoestring.plan.presets import load_preset, resolve_model
from shoestring.train.config import resolve_config

MLP_ARCH = {"family": "mlp", "params": {"in_features": 64, "hidden": [128, 64],
                                        "out_features": 10, "activation": "relu"}}


def test_a_small_run_fits():
    cfg = resolve_config({"model": {"name": "seed-mlp"}})
    v = check_fits(cfg, arch=MLP_ARCH, n_train=1437, device="cpu", available_bytes=2 ** 30)
    assert v.fits and v.suggestion is None
    assert v.estimated_seconds is not None and v.estimated_seconds > 0
    assert "peak" in v.lines[0]


def test_too_little_memory_gives_reason_and_largest_micro_batch():
    cfg = resolve_config({"model": {"name": "gpt-nano"}, "train": {"batch_size": 256}})
    arch = {"family": "gpt", "params": {"n_layer": 4, "n_head": 4, "n_embd": 128,
                                        "block_size": 64, "vocab_size": 256}}
    full = check_fits(cfg, arch=arch, device="cpu", available_bytes=2 ** 40).memory.total
    v = check_fits(cfg, arch=arch, device="cpu", available_bytes=int(full * 0.5))
    assert not v.fits
    assert "at its peak" in v.reason and "are free" in v.reason
    assert "--micro-batch-size" in v.suggestion
    micro = int(v.suggestion.split("--micro-batch-size ")[1].split()[0])
    assert 1 <= micro < 256
    # the suggested micro-batch does fit
    spec = resolve_model("gpt-nano")
    setup = setup_for(cfg.train, spec, "cpu").with_(micro_batch=micro)
    assert verdict_for(spec, setup, int(full * 0.5)).fits


def test_hopeless_configuration_points_at_the_planner():
    cfg = resolve_config({"model": {"name": "seed-mlp"}})
    v = check_fits(cfg, arch=MLP_ARCH, device="cpu", available_bytes=1000)
    assert not v.fits and "shoestring plan" in v.suggestion


def test_train_options_map_onto_the_step():
    cfg = resolve_config({"train": {"batch_size": 64, "micro_batch_size": 8, "nproc": 2,
                                    "strategy": "fsdp", "precision": "bf16",
                                    "activation_checkpointing": True, "optimizer": "sgd"}})
    s = setup_for(cfg.train, load_preset("gpt2-124m"), "cuda")
    assert (s.micro_batch, s.grad_accum, s.dp, s.zero_stage) == (8, 4, 2, 3)
    assert (s.precision, s.checkpointing, s.optimizer, s.kernels) == \
        ("bf16-mixed", "full", "sgd", "cuda")


def test_max_memory_caps_what_is_available():
    cfg = resolve_config({"model": {"name": "seed-mlp"}, "train": {"max_memory": 0.0001}})
    v = check_fits(cfg, arch=MLP_ARCH, device="cpu", available_bytes=2 ** 34)
    assert not v.fits and v.available_bytes == int(0.0001 * 2 ** 30)


def test_unmodelled_families_are_not_refused():
    cfg = resolve_config({"model": {"name": "cnn"}})
    v = check_fits(cfg, arch={"family": "cnn", "params": {}}, device="cpu")
    assert v.fits and v.reason.startswith("not checked")


def test_a_fine_tuning_run_is_planned_with_its_recipe():
    """--plan-first plans the step the trainer runs: LoRA adapters (aliases and 'all'
    resolved as the trainer resolves them), pure bf16, chunked loss, fused AdamW."""
    spec = load_preset("llama-3.2-1b")
    train = resolve_config({"train": {
        "finetune": "lora", "lora_rank": 8, "lora_alpha": 16, "lora_targets": "q_proj,v",
        "precision": "bf16-true", "loss_chunks": 4, "batch_size": 2}}).train
    s = setup_for(train, spec, "cuda")
    assert (s.finetune, s.lora_rank, s.lora_alpha, s.lora_targets) == ("lora", 8, 16.0,
                                                                      ("q", "v"))
    assert (s.precision, s.loss_chunks, s.fused_optimizer) == ("bf16", 4, True)
    every = setup_for(train.model_copy(update={"lora_targets": "all"}), spec, "cuda")
    assert set(every.lora_targets) == {"q", "k", "v", "o", "gate", "up", "down"}
    full = setup_for(train.model_copy(update={"finetune": None}), spec, "cuda")
    assert full.finetune == "full"
    assert verdict_for(spec, s, 2 ** 40).memory.total < verdict_for(spec, full, 2 ** 40) \
        .memory.total
