"""Model specs: exact parameter counts, presets, Hugging Face configs, run folders."""

from __future__ import annotations

import json

import pytest
import torch

from shoestring.errors import ShoestringError
from shoestring.plan.build import build_module
from shoestring.plan.presets import load_preset, preset_names, resolve_model, spec_from_hf_config
from shoestring.plan.specs import count_params

# Published totals (model cards / the released tensors), independent of the TOML.
PUBLISHED = {
    "seed-mlp": 109_386, "gpt2-124m": 124_439_808, "gpt2-350m": 354_823_168,
    "gpt2-774m": 774_030_080, "gpt2-1.5b": 1_557_611_200, "bert-base": 109_482_240,
    "bert-large": 335_141_888, "llama-3.2-1b": 1_235_814_400, "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496, "mistral-7b": 7_241_732_096,
    "llama-3.2-3b": 3_212_749_824, "llama-2-7b": 6_738_415_616,
}


def test_every_issue_preset_is_shipped():
    assert set(PUBLISHED) <= set(preset_names())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_the_published_model(name):
    spec = load_preset(name)
    assert count_params(spec).total == PUBLISHED[name] == spec.published_params


@pytest.mark.parametrize("name", ["gpt2-124m", "llama-3.2-1b", "mistral-7b", "seed-mlp"])
def test_count_matches_shoestrings_own_module(name):
    spec = load_preset(name)
    with torch.device("meta"):
        module = build_module(spec, train=False)
    assert sum(p.numel() for p in module.parameters()) == count_params(spec).total


def test_bert_module_adds_only_its_classifier():
    spec = load_preset("bert-base")
    with torch.device("meta"):
        module = build_module(spec)  # trains a 2-way classifier on the pooler
    assert sum(p.numel() for p in module.parameters()) == count_params(spec).total + 768 * 2 + 2


def test_matmul_params_exclude_lookup_embeddings():
    c = count_params(load_preset("llama-3-8b"))
    # untied: the input embedding is a lookup, the LM head a matmul
    assert c.matmul_per_token == c.total - c.embedding - 32 * 2 * 4096 - 4096
    assert c.head_matmul == 128256 * 4096


HF = {
    "gpt2": ({"model_type": "gpt2", "vocab_size": 50257, "n_embd": 768, "n_layer": 12,
              "n_head": 12, "n_positions": 1024, "n_inner": None}, 124_439_808),
    "bert": ({"model_type": "bert", "vocab_size": 30522, "hidden_size": 768,
              "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
              "max_position_embeddings": 512, "type_vocab_size": 2}, 109_482_240),
    "llama": ({"model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
               "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
               "intermediate_size": 14336, "max_position_embeddings": 8192,
               "rope_theta": 500000.0, "tie_word_embeddings": False}, 8_030_261_248),
    "mistral": ({"model_type": "mistral", "vocab_size": 32000, "hidden_size": 4096,
                 "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                 "intermediate_size": 14336, "max_position_embeddings": 32768,
                 "sliding_window": 4096, "tie_word_embeddings": False}, 7_241_732_096),
}


@pytest.mark.parametrize("family", sorted(HF))
def test_hugging_face_config_json(tmp_path, family):
    config, expected = HF[family]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert count_params(resolve_model(str(path))).total == expected
    assert count_params(resolve_model(str(tmp_path))).total == expected  # the folder works too


def test_hf_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ShoestringError, match="model_type 't5' is not supported"):
        spec_from_hf_config({"model_type": "t5"})
    with pytest.raises(ShoestringError, match="lacks the key 'n_layer'"):
        spec_from_hf_config({"model_type": "gpt2", "vocab_size": 10, "n_embd": 8, "n_head": 2})
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ShoestringError, match="not valid JSON"):
        resolve_model(str(bad))
    with pytest.raises(ShoestringError, match="heads 3"):
        spec_from_hf_config({"model_type": "gpt2", "vocab_size": 10, "n_embd": 8, "n_layer": 1,
                             "n_head": 3})


def test_unknown_model_lists_the_presets():
    with pytest.raises(ShoestringError) as info:
        resolve_model("gpt-17")
    assert "gpt2-124m" in info.value.hint


def test_shoestring_run_folder_and_config(tmp_path):
    from cards import card_for

    from shoestring.models.mlp import MLP
    from shoestring.models.run_folder import save_run
    from shoestring.train.config import resolve_config

    arch = {"family": "mlp", "name": "seed-mlp", "params": {
        "in_features": 784, "hidden": [128, 64], "out_features": 10, "dropout": 0.0,
        "activation": "relu"}}
    save_run(tmp_path, MLP(784, [128, 64], 10), card_for(arch))
    assert resolve_model(str(tmp_path)).widths == (784, 128, 64, 10)
    # A config.toml alone: the data's shape (digits: 64 features, 10 classes) fixes the rest.
    cfg = tmp_path / "cfg" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text(resolve_config({"model": {"name": "mlp", "hidden": [32]}}).to_toml())
    spec = resolve_model(str(cfg))
    assert spec.widths == (64, 32, 10) and count_params(spec).total == 64 * 32 + 32 + 330


def test_shoestring_model_presets_resolve():
    spec = resolve_model("gpt-nano")
    assert (spec.layers, spec.hidden, spec.vocab_size) == (4, 128, 256)
