"""Method names, chains and the compress config's one validation step."""

from __future__ import annotations

import pytest

from shoestring.compress.config import (
    DEFAULT_METHODS,
    CompressConfig,
    Distill,
    DynamicInt8,
    Prune,
    WeightOnly,
    check,
    parse_methods,
)


def test_defaults_depend_on_the_model_family():
    chains, problems = parse_methods(None, "mlp")
    assert problems == [] and len(chains) == len(DEFAULT_METHODS["examples"])
    chains, _ = parse_methods(None, "gpt")
    assert WeightOnly(bits=4) in [c[0] for c in chains]


def test_names_configs_and_chains_parse_to_typed_chains():
    chains, problems = parse_methods(
        ("prune+dynamic-int8", Prune(ratios=(0.5,)), (Distill(steps=3), DynamicInt8())), "mlp")
    assert problems == []
    assert chains[0] == (Prune(), DynamicInt8())
    assert chains[1] == (Prune(ratios=(0.5,)),)
    assert chains[2] == (Distill(steps=3), DynamicInt8())


@pytest.mark.parametrize("items, words", [
    ((), "empty"), (("int3",), "unknown method 'int3'"),
    (("dynamic-int8+prune",), "come first"), (("dynamic-int8+static-int8",), "at most one"),
    (("prune+distill",), "come first")])
def test_bad_method_lists_are_reported(items, words):
    _, problems = parse_methods(items, "mlp")
    assert len(problems) == 1 and words in problems[0]


def test_every_config_problem_is_reported_at_once(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("taken")
    cfg = CompressConfig(run=tmp_path, out=tmp_path / "out", metric="f1", batch_sizes=(0,))
    problems = check(cfg)
    assert len(problems) == 3
    assert any("already exists" in p for p in problems)
    assert any("unknown metric 'f1'" in p for p in problems)
    assert any("batch sizes" in p for p in problems)


def test_method_configs_validate_from_plain_data():
    cfg = CompressConfig.model_validate({"run": "r", "out": "o", "methods": [
        {"name": "weight-only", "bits": 4}, "onnx-fp32"]})
    assert cfg.methods == (WeightOnly(bits=4), "onnx-fp32")
    with pytest.raises(ValueError):
        CompressConfig.model_validate({"run": "r", "out": "o",
                                       "methods": [{"name": "weight-only", "bits": 3}]})
