"""One list of model shapes (issue 11, item 2): models/presets.toml is read by the model
code and by the planner, in one vocabulary, and each published shape builds into a
module with the published parameter count."""

from __future__ import annotations

import pytest
import torch

from shoestring.models.encoder import Encoder
from shoestring.models.gpt import GPT
from shoestring.models.presets import (
    ALIASES,
    ENCODER_PRESETS,
    GPT_PRESETS,
    preset_table,
)
from shoestring.plan.presets import load_preset, resolve_model, spec_from_architecture

BUILDABLE = sorted((set(GPT_PRESETS) | set(ENCODER_PRESETS)) - set(ALIASES))


def test_the_model_code_trains_every_table_entry_it_has_a_layout_for():
    table = preset_table()
    assert set(BUILDABLE) <= set(table)
    # Only a sliding-window decoder (Mistral) is planned but not buildable.
    assert {n for n in table if n not in BUILDABLE} == {"seed-mlp", "mistral-7b"}


@pytest.mark.parametrize("name", [n for n in BUILDABLE if preset_table()[n].get(
    "published_params") and preset_table()[n]["family"] == "decoder"])
def test_each_published_decoder_builds_with_its_published_parameter_count(name):
    with torch.device("meta"):
        model = GPT(GPT_PRESETS[name])
    assert sum(p.numel() for p in model.parameters()) == preset_table()[name]["published_params"]


def test_bert_base_builds_with_its_published_parameter_count():
    from dataclasses import replace

    with torch.device("meta"):
        model = Encoder(replace(ENCODER_PRESETS["bert-base"], num_classes=0))
    assert sum(p.numel() for p in model.parameters()) == \
        preset_table()["bert-base"]["published_params"]


@pytest.mark.parametrize("name", BUILDABLE)
def test_planner_and_model_code_read_the_same_shape(name):
    family = "gpt" if name in GPT_PRESETS else "encoder"
    config = (GPT_PRESETS if family == "gpt" else ENCODER_PRESETS)[name]
    from_code = spec_from_architecture({"family": family, "params": config.to_dict()}, name)
    skip = {"name", "source", "published_params", "num_classes"}

    def shape(spec):
        # kv_heads 0 means one per head (no grouping): the same shape.
        return {**spec.model_dump(exclude=skip), "kv_heads": spec.kv_heads or spec.heads}
    assert shape(from_code) == shape(load_preset(name))


def test_family_names_plan_as_their_default_shape():
    for alias, name in ALIASES.items():
        assert resolve_model(alias).layers == load_preset(name).layers
