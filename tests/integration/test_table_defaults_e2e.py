"""Defaults that work on tables, end to end (issue 16 item 1).

The previous release fed raw features and raw targets to the MLP: a
house-price table (prices ~250k) ended at an MSE near the prices' variance
(predicting ~0), and features in different units left a classifier near the
majority class. Both must now beat their printed baseline by far, through
``train``, ``eval``, the served model and the CLI.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from shoestring.cli.main import build_cli
from shoestring.serve.model_store import ModelSpec, ModelStore
from shoestring.train.api import train
from shoestring.train.config import resolve_config
from shoestring.train.evaluate_run import evaluate_run


def house_prices(path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    sqft = rng.uniform(500, 3500, n)
    rooms = rng.integers(1, 7, n)
    age = rng.uniform(0, 100, n)
    price = 50_000 + 100 * sqft + 10_000 * rooms - 500 * age + rng.normal(0, 10_000, n)
    lines = ["sqft,rooms,age,price"] + [f"{a:.1f},{b},{c:.1f},{p:.0f}"
                                        for a, b, c, p in zip(sqft, rooms, age, price)]
    path.write_text("\n".join(lines) + "\n")
    return sqft, rooms, age, price


def mixed_units(path, n=240, seed=0):
    """Three classes told apart by two features in wildly different units."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    grams = (y * 2 + rng.normal(0, 0.5, n)) * 1000.0      # thousands
    ppm = (np.where(y == 1, 1.0, 0.0) + rng.normal(0, 0.2, n)) * 1e-3  # thousandths
    noise = rng.normal(0, 1, n) * 100.0
    lines = ["grams,ppm,noise,kind"] + [f"{a:.3f},{b:.6f},{c:.3f},k{k}"
                                        for a, b, c, k in zip(grams, ppm, noise, y)]
    path.write_text("\n".join(lines) + "\n")


def test_house_prices_regression_with_defaults(tmp_path):
    house_prices(tmp_path / "houses.csv")
    config = resolve_config({"data": {"source": f"csv:{tmp_path / 'houses.csv'}",
                                      "target": "price"}, "out": str(tmp_path / "run")})
    result = train(config)
    s = result.summary
    assert s["task"] == "regression"
    assert s["baseline"] == "training mean" and s["baseline_test_r2"] < 0.1
    assert s["test_r2"] > 0.9, s  # the previous release: R² ≈ -7 (predicting ~0)
    assert s["test_mse"] < 0.15 * s["baseline_test_mse"]
    desc = json.loads((result.out_dir / "model.json").read_text())
    pre = desc["preprocessing"]
    assert pre["target_mean"][0] == pytest.approx(250_000, rel=0.2)
    assert pre["mean"] is not None  # features standardized too
    # eval applies the same preprocessing and maps outputs back to prices.
    metrics = evaluate_run(result.out_dir, label="price")
    assert metrics["test_mse"] == pytest.approx(s["test_mse"], rel=1e-4)
    assert metrics["baseline_test_mse"] == pytest.approx(s["baseline_test_mse"], rel=1e-6)
    # So does serving: a prediction is a price, not a z-score.
    served = ModelStore([ModelSpec(result.out_dir)]).all()[0]
    x = np.array([[2000.0, 3, 20.0]], dtype=np.float32)
    predicted = float(served.predict(served.prepare(x))["prediction"][0, 0])
    assert predicted == pytest.approx(50_000 + 200_000 + 30_000 - 10_000, rel=0.1)


def test_features_in_different_units_classify_with_defaults(tmp_path):
    mixed_units(tmp_path / "mixed.csv")
    config = resolve_config({"data": {"source": f"csv:{tmp_path / 'mixed.csv'}",
                                      "target": "kind"}, "out": str(tmp_path / "run")})
    s = train(config).summary
    assert s["baseline"].startswith("majority class k")
    assert s["test_accuracy"] > 0.9 > s["baseline_test_accuracy"] + 0.4, s
    assert s["batch_size"] < 128 and s["steps"] >= 300  # the table defaults applied


def test_cli_prints_the_baseline_and_the_chosen_defaults(isolated_env):
    house_prices(isolated_env / "houses.csv", n=120)
    runner = CliRunner()
    r = runner.invoke(build_cli(), ["train", "--data", "csv:houses.csv", "--target", "price",
                                    "--out", "runs/h", "--max-steps", "40"],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "(baseline mse" in r.output and "training mean" in r.output and "R²" in r.output
    assert "table defaults for 96 training rows" in r.output
    assert "regression targets standardized" in r.output
    r = runner.invoke(build_cli(), ["eval", "runs/h", "--target", "price"],
                      catch_exceptions=False)
    assert r.exit_code == 0 and "baseline_test_mse" in r.output and "test_r2" in r.output
