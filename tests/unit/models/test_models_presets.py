"""Transformer names in the model registry: presets, [model] overrides, data vocabulary."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from shoestring.errors import DataError
from shoestring.models.encoder import Encoder
from shoestring.models.gpt import GPT
from shoestring.models.registry import DataShape, architecture_for, build_model, model_names


def cfg(name: str, **fields) -> SimpleNamespace:
    # Before the [model] section gains the transformer fields, only these exist.
    return SimpleNamespace(**{"name": name, "dropout": 0.0, **fields})


def test_transformer_names_are_registered():
    names = set(model_names())
    assert {"gpt", "gpt-nano", "gpt2-124m", "gpt2-350m", "llama-3-8b", "encoder",
            "bert-tiny", "bert-base", "mlp"} <= names


def test_gpt_nano_takes_its_vocabulary_from_the_data():
    arch = architecture_for(cfg("gpt-nano"), DataShape((64,), 65))
    assert arch["family"] == "gpt" and arch["name"] == "gpt-nano"
    p = arch["params"]
    assert (p["n_layer"], p["n_head"], p["n_embd"], p["block_size"], p["vocab_size"]) == \
        (4, 4, 128, 64, 65)
    model = build_model(arch)
    assert isinstance(model, GPT) and model.config.vocab_size == 65


def test_model_fields_override_the_preset_and_none_means_unset():
    arch = architecture_for(cfg("gpt", n_layer=2, n_head=None, n_embd=64, norm="rmsnorm",
                                dropout=0.1), DataShape((64,), 65))
    p = arch["params"]
    assert (p["n_layer"], p["n_head"], p["n_embd"], p["norm"], p["dropout"]) == \
        (2, 4, 64, "rmsnorm", 0.1)


def test_a_larger_model_vocabulary_is_kept_and_a_smaller_one_is_an_overflow():
    arch = architecture_for(cfg("gpt", vocab_size=128), DataShape((64,), 65))
    assert arch["params"]["vocab_size"] == 128
    with pytest.raises(DataError, match="vocabulary overflow.*65 token ids.*vocab_size 50"):
        architecture_for(cfg("gpt", vocab_size=50), DataShape((64,), 65))


def test_without_data_the_preset_vocabulary_stays():
    # The planner sizes a model before any data exists.
    assert architecture_for(cfg("gpt2-124m"), DataShape((), 0))["params"]["vocab_size"] == 50257


def test_encoder_reads_vocabulary_classes_and_padding_from_the_data():
    shape = DataShape((32,), 4, vocab_size=258, pad_id=0)
    arch = architecture_for(cfg("encoder", n_layer=1), shape)
    p = arch["params"]
    assert (p["vocab_size"], p["num_classes"], p["pad_id"], p["n_layer"]) == (258, 4, 0, 1)
    assert isinstance(build_model(arch), Encoder)


def test_encoder_inputs_longer_than_its_positions_are_refused():
    with pytest.raises(DataError, match="1024 tokens long.*block_size 512"):
        architecture_for(cfg("bert-tiny"), DataShape((1024,), 2, vocab_size=258))
