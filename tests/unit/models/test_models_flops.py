"""FLOPs per token: 6N + 12·L·H·Q·T (PaLM appendix B; nanoGPT estimate_mfu)."""

from __future__ import annotations

import pytest

from shoestring.models.encoder import EncoderConfig
from shoestring.models.flops import flops_per_token, matmul_params, model_flops_utilization
from shoestring.models.presets import GPT_PRESETS


def test_gpt2_124m_matches_nanogpt_estimate():
    # nanoGPT: N = get_num_params() = 124,439,808 − 1024·768 position weights.
    n = 124_439_808 - 1024 * 768
    assert matmul_params(GPT_PRESETS["gpt2-124m"]) == n
    assert flops_per_token(GPT_PRESETS["gpt2-124m"]) == 6 * n + 12 * 12 * 12 * 64 * 1024


def test_untied_input_embedding_is_a_lookup_not_a_matmul():
    n = 8_030_261_248 - 128256 * 4096
    assert matmul_params(GPT_PRESETS["llama-3-8b"]) == n
    assert flops_per_token(GPT_PRESETS["llama-3-8b"], seq_len=2048) == \
        6 * n + 12 * 32 * 32 * 128 * 2048


def test_encoder_leaves_out_its_three_embedding_tables():
    cfg = EncoderConfig(num_classes=0)
    embeddings = 30522 * 768 + 512 * 768 + 2 * 768
    assert matmul_params(cfg) == 109_482_240 - embeddings


def test_mfu_is_achieved_over_peak():
    assert model_flops_utilization(1_000, 2_000.0, 4e6) == pytest.approx(0.5)
