"""One FLOPs/MFU definition (issue 11, item 2): training's meter and the planner agree."""

from __future__ import annotations

import pytest

from shoestring.models.presets import ENCODER_PRESETS, GPT_PRESETS
from shoestring.plan.compute import step_flops
from shoestring.plan.presets import spec_from_architecture
from shoestring.plan.setup import StepSetup
from shoestring.train.meter import mfu, transformer_flops_per_token


def test_gpt2_124m_counts_the_weights_that_multiply():
    # Per layer: qkv 768·2304, out 768·768, MLP 2·768·3072; the tied head 50257·768.
    n = 12 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072) + 50257 * 768
    arch = {"family": "gpt", "params": GPT_PRESETS["gpt2-124m"].to_dict()}
    assert transformer_flops_per_token(arch) == 6 * n + 12 * 12 * 768 * 1024


def test_an_untied_input_embedding_is_a_lookup():
    cfg = GPT_PRESETS["llama-3-8b"]
    with_head = transformer_flops_per_token({"family": "gpt", "params": cfg.to_dict()}, 2048)
    tied = transformer_flops_per_token({"family": "gpt", "params": {**cfg.to_dict(),
                                                                    "tie_embeddings": True}},
                                       2048)
    assert with_head == tied  # the head multiplies once whether or not it is tied


@pytest.mark.parametrize("family,presets", [("gpt", GPT_PRESETS), ("encoder", ENCODER_PRESETS)])
def test_training_and_planning_use_one_definition(family, presets):
    for cfg in presets.values():
        arch = {"family": family, "params": cfg.to_dict()}
        spec = spec_from_architecture(arch, "x")
        t = spec.max_seq
        assert transformer_flops_per_token(arch) == \
            step_flops(spec, StepSetup(micro_batch=1, seq_len=t)).model // t


def test_mlp_runs_have_no_transformer_flops_and_mfu_needs_a_peak():
    assert transformer_flops_per_token({"family": "mlp", "params": {}}) is None
    assert mfu(1_000, 2_000.0, 4e6) == pytest.approx(0.5)
    assert mfu(1_000, 2_000.0, None) is None
