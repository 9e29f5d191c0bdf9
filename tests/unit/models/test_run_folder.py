"""The run-folder contract: save_run/load_run, the typed card, and transforms between
building a module and loading its weights."""

from __future__ import annotations

import json

import pytest
import torch
from cards import card_for
from torch.nn.utils import prune

from shoestring.errors import ShoestringError
from shoestring.models import run_folder as rf
from shoestring.models.card import PreprocessingCard, TransformRecord
from shoestring.models.registry import build_model
from shoestring.models.run_folder import RunFolder, load_run, read_card, save_run
from shoestring.models.transforms import register_transform

MLP = {"family": "mlp", "name": "mlp", "params": {
    "in_features": 6, "hidden": [8], "out_features": 3, "dropout": 0.0, "activation": "relu"}}


def module():
    torch.manual_seed(0)
    return build_model(MLP)


def test_save_and_load_round_trip(tmp_path):
    m = module()
    card = card_for(MLP, class_names=["a", "b", "c"],
                    preprocessing=PreprocessingCard(scale=0.5, target_mean=None))
    folder = save_run(tmp_path / "run", m, card)
    assert sorted(p.name for p in folder.path.iterdir()) == sorted([rf.CARD, rf.WEIGHTS])
    raw = json.loads(folder.card.read_text())
    assert raw["format"] == "shoestring.model/2" and raw["shoestring_version"]
    run = load_run(folder.path)
    x = torch.randn(4, 6)
    torch.testing.assert_close(run.model(x), m.eval()(x))
    assert not run.model.training and run.card.class_names == ["a", "b", "c"]
    assert run.card.model_dump(exclude={"shoestring_version"}) == \
        card.model_dump(exclude={"shoestring_version"})


def test_every_file_name_comes_from_the_run_folder(tmp_path):
    f = RunFolder(tmp_path)
    assert [p.name for p in (f.card, f.weights, f.tokenizer, f.config, f.run_info, f.metrics,
                             f.summary, f.launch, f.checkpoints)] == \
        [rf.CARD, rf.WEIGHTS, rf.TOKENIZER, rf.CONFIG, rf.RUN_INFO, rf.METRICS, rf.SUMMARY,
         rf.LAUNCH, rf.CHECKPOINTS]


def _pruned_transform(module, config):
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear):
            prune.identity(layer, "weight")  # weight = weight_orig * weight_mask
    return module


def test_a_transformed_state_dict_loads_once_its_transform_is_applied(tmp_path):
    register_transform("test-prune", _pruned_transform)
    m = _pruned_transform(module(), {})
    for layer in m.modules():
        if isinstance(layer, torch.nn.Linear):
            layer.weight_mask[:, ::2] = 0.0  # a mask the plain architecture cannot hold
    keys = set(m.state_dict())
    assert {"net.1.weight_orig", "net.1.weight_mask"} <= keys and "net.1.weight" not in keys
    card = card_for(MLP, transforms=[TransformRecord(kind="test-prune", config={})])
    save_run(tmp_path / "pruned", m, card)
    run = load_run(tmp_path / "pruned")
    x = torch.randn(5, 6)
    torch.testing.assert_close(run.model(x), m.eval()(x))
    assert bool((run.model.net[1].weight[:, ::2] == 0).all())
    # Without the transform on the card, the weights do not fit and the error says why.
    save_run(tmp_path / "lost", m, card_for(MLP))
    with pytest.raises(ShoestringError, match="do not fit the module") as err:
        load_run(tmp_path / "lost")
    assert "transform" in err.value.hint


def test_the_builtin_cast_transform_loads_bf16_weights_as_bf16(tmp_path):
    m = module().to(torch.bfloat16)
    card = card_for(MLP, transforms=[TransformRecord(kind="cast", config={"dtype": "bfloat16"})])
    folder = save_run(tmp_path, m, card)
    run = load_run(folder.path)
    assert {p.dtype for p in run.model.parameters()} == {torch.bfloat16}
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(str(folder.weights)).values()} == {torch.bfloat16}


def test_unknown_or_newer_transforms_are_refused_with_a_hint(tmp_path):
    save_run(tmp_path / "a", module(), card_for(MLP, transforms=[TransformRecord(kind="teleport")]))
    with pytest.raises(ShoestringError, match="unknown model transform 'teleport'") as err:
        load_run(tmp_path / "a")
    assert "cast" in err.value.hint
    save_run(tmp_path / "b", module(),
             card_for(MLP, transforms=[TransformRecord(kind="cast", version=9,
                                                       config={"dtype": "float32"})]))
    with pytest.raises(ShoestringError, match="version 9 is newer"):
        load_run(tmp_path / "b")


def test_damaged_or_foreign_cards_are_clear_errors(tmp_path):
    with pytest.raises(ShoestringError, match="not a Shoestring run folder"):
        read_card(tmp_path)
    save_run(tmp_path, module(), card_for(MLP))
    card = RunFolder(tmp_path).card
    card.write_text("{not json")
    with pytest.raises(ShoestringError, match="not valid JSON"):
        read_card(tmp_path)
    card.write_text(json.dumps({"format": "shoestring.model/9"}))
    with pytest.raises(ShoestringError, match="format 'shoestring.model/9'") as err:
        read_card(tmp_path)
    assert "upgrade" in err.value.hint
    good = card_for(MLP).to_json_dict()
    card.write_text(json.dumps({**good, "taks": "regression"}))
    with pytest.raises(ShoestringError, match="taks"):
        read_card(tmp_path)
    RunFolder(tmp_path).card.write_text(json.dumps(good))
    RunFolder(tmp_path).weights.unlink()
    with pytest.raises(ShoestringError, match="has no model.safetensors"):
        load_run(tmp_path)


def test_the_deprecated_load_model_still_works_and_says_so(tmp_path):
    save_run(tmp_path, module(), card_for(MLP))
    with pytest.warns(DeprecationWarning, match="load_run"):
        model, card = rf.load_model(tmp_path)
    assert card["architecture"]["family"] == "mlp"


def test_served_regression_outputs_are_in_target_units_when_targets_were_standardized(
        tmp_path):
    from shoestring.serve.model_store import ModelSpec, ModelStore

    arch = {**MLP, "params": {**MLP["params"], "out_features": 1}}
    m = build_model(arch)
    card = card_for(arch, task="regression",
                    preprocessing=PreprocessingCard(target_mean=[250_000.0],
                                                    target_std=[50_000.0]))
    save_run(tmp_path / "houses", m, card)
    served = ModelStore([ModelSpec(tmp_path / "houses")]).get("houses")
    x = torch.randn(3, 6)
    got = served.predict(x.numpy())["prediction"]
    with torch.no_grad():
        want = m.eval()(x) * 50_000.0 + 250_000.0
    torch.testing.assert_close(torch.from_numpy(got), want)
