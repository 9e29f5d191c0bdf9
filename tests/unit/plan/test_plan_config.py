"""PlanConfig validation and workload defaults."""

from __future__ import annotations

import pytest

from shoestring.errors import ConfigError
from shoestring.plan.config import resolve_plan_config
from shoestring.plan.presets import load_preset
from shoestring.plan.workload import resolve_workload


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        resolve_plan_config({"model": "gpt2-124m", "tokens": -1, "gpus": 0, "precision": "int3"})
    text = str(info.value)
    assert "tokens" in text and "nproc" in text and "precision" in text  # gpus: its old name
    with pytest.raises(ConfigError, match="exclude each other"):
        resolve_plan_config({"model": "x", "serve": True, "finetune": "lora"})
    with pytest.raises(ConfigError, match="unknown"):
        resolve_plan_config({"model": "x", "colour": "red"})


def test_workload_defaults():
    gpt = load_preset("gpt2-124m")
    w = resolve_workload(gpt, resolve_plan_config({"model": "gpt2-124m"}))
    assert w.kind == "pretrain" and w.total_units == 20 * 124_439_808   # Chinchilla
    assert w.seq_len == 1024 and w.global_batch == 512                  # 0.5M tokens
    w = resolve_workload(gpt, resolve_plan_config({"model": "x", "samples": 1000, "epochs": 3,
                                                   "seq_len": 256}))
    assert w.total_units == 1000 * 3 * 256
    w = resolve_workload(load_preset("llama-3-8b"),
                         resolve_plan_config({"model": "x", "finetune": "qlora"}))
    assert (w.kind, w.finetune, w.seq_len, w.global_batch) == ("finetune", "qlora", 2048, 32)
    w = resolve_workload(load_preset("seed-mlp"), resolve_plan_config({"model": "seed-mlp",
                                                                       "epochs": 10}))
    assert (w.seq_len, w.global_batch, w.total_units) == (1, 128, 600_000)
    w = resolve_workload(gpt, resolve_plan_config({"model": "x", "serve": True,
                                                   "context": 512, "requests": 10}))
    assert (w.kind, w.seq_len, w.total_units) == ("serve", 512, 10)
