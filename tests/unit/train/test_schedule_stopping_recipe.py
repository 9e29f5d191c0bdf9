import math

import pytest

from shoestring.errors import ShoestringError
from shoestring.train.config import resolve_config
from shoestring.train.engine import screening_margin
from shoestring.train.recipe import apply_recipe
from shoestring.train.schedule import lr_at
from shoestring.train.stopping import Budget, Target, cost_usd, parse_target


def test_onecycle_shape():
    lrs = [lr_at(s, peak=1.0, total_steps=100, schedule="onecycle") for s in range(100)]
    assert lrs[0] == pytest.approx(1 / 25)
    assert max(lrs) == pytest.approx(1.0)
    assert lrs.index(max(lrs)) == 30
    assert lrs[-1] < 0.01


def test_cosine_with_warmup_and_warmup_schedule():
    assert lr_at(0, peak=2.0, total_steps=10, schedule="cosine", warmup_steps=4) == 0.5
    assert lr_at(4, peak=2.0, total_steps=10, schedule="cosine", warmup_steps=4) == 2.0
    assert lr_at(10, peak=2.0, total_steps=10, schedule="cosine", warmup_steps=4) == \
        pytest.approx(0.0)
    assert lr_at(50, peak=2.0, total_steps=10, schedule="warmup", warmup_steps=4) == 2.0


def test_targets():
    t = parse_target("test_accuracy=0.87")
    assert t == Target("test_accuracy", 0.87) and t.higher_is_better
    assert t.reached({"test_accuracy": 0.87}) and not t.reached({"test_accuracy": 0.86})
    loss = parse_target("test_loss=0.3")
    assert not loss.higher_is_better and loss.reached({"test_loss": 0.29})
    with pytest.raises(ShoestringError, match="held-out"):
        parse_target("train_loss=0.1")


def test_budget_and_cost():
    assert cost_usd(3600, 2.5) == 2.5
    b = Budget(max_time=10, max_cost=0.005, price_per_hour=3.6)  # $0.001 per second
    assert b.exhausted(4) is None
    assert "cost budget" in b.exhausted(6)
    assert "time budget" in Budget(max_time=1).exhausted(1.0)
    assert Budget(max_cost=1.0).exhausted(1e9) is None  # free machine never runs out of money


def test_screening_margin_is_binomial_standard_error():
    assert screening_margin(0.87, 1000, sigmas=1.0) == pytest.approx(math.sqrt(0.87 * 0.13 / 1000))


def test_fast_recipe_is_a_rule_over_the_users_settings():
    cfg = resolve_config({"train": {"batch_size": 64, "lr": 0.002, "epochs": 20, "recipe": "fast",
                                    "target": "test_accuracy=0.9"}})
    fast, notes = apply_recipe(cfg, n_train=100_000)
    t = fast.train
    assert t.batch_size == 128 and t.schedule == "onecycle" and t.epochs == 4
    assert t.lr == pytest.approx(0.002 * math.sqrt(2) * 4)
    assert fast.data.normalize == "standardize" and t.eval_every > 0 and notes
    small, _ = apply_recipe(cfg, n_train=3_000)  # keeps >= 100 steps per epoch
    assert small.train.batch_size == 64
    same, notes = apply_recipe(resolve_config(), n_train=1000)
    assert same == resolve_config() and notes == []
