import pytest

from shoestring.errors import ConfigError
from shoestring.train.config import merge, read_toml, resolve_config


def test_defaults_are_the_seed_example():
    cfg = resolve_config()
    assert (cfg.model.name, cfg.train.epochs, cfg.train.batch_size, cfg.train.optimizer,
            cfg.train.lr) == ("seed-mlp", 10, 128, "adam", 1e-3)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        resolve_config({"train": {"epochs": 0, "lr": -1, "optimizer": "rmsprop", "bogus": 1},
                        "model": {"dropout": 2}})
    problems = "\n".join(err.value.problems)
    assert len(err.value.problems) == 5
    for needle in ("train.epochs", "train.lr", "train.optimizer", "train.bogus", "model.dropout"):
        assert needle in problems
    assert "unknown key" in problems and "known keys" in problems


def test_target_validation_explains_format():
    with pytest.raises(ConfigError, match="not METRIC=VALUE"):
        resolve_config({"train": {"target": "accuracy"}})
    with pytest.raises(ConfigError, match="not a number"):
        resolve_config({"train": {"target": "test_accuracy=high"}})


def test_overrides_win_and_none_means_unset():
    merged = merge({"train": {"lr": 0.1, "epochs": 3}}, {"train": {"lr": 0.2, "epochs": None}})
    assert merged == {"train": {"lr": 0.2, "epochs": 3}}


def test_toml_roundtrip(tmp_path):
    cfg = resolve_config({"train": {"epochs": 3, "target": "test_accuracy=0.9"},
                          "data": {"source": "csv:x.csv", "target": "y"}})
    p = tmp_path / "c.toml"
    p.write_text(cfg.to_toml())
    assert resolve_config(read_toml(p)) == cfg


def test_bad_toml_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[train\nepochs = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_toml(p)
    with pytest.raises(ConfigError, match="does not exist"):
        read_toml(tmp_path / "missing.toml")
