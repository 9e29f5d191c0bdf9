"""Calibration probes, the plan_calibrations table, finished runs as measurements."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timezone

import pytest

from shoestring.ledger.runs import RunLedger
from shoestring.plan.api import plan, plan_with_ledger
from shoestring.plan.calibrate import calibrate
from shoestring.plan.calibration_store import load_calibration, save_calibration
from shoestring.plan.catalog import default_catalog
from shoestring.plan.config import resolve_plan_config
from shoestring.plan.cost import Throughput
from shoestring.plan.feedback import observations, run_measurements
from shoestring.plan.presets import load_preset
from shoestring.plan.rates import Measurement, RateBook, fit_step_time
from shoestring.plan.setup import StepSetup

SEED = load_preset("seed-mlp")


def test_fit_separates_overhead_from_rate():
    overhead, rate = fit_step_time([(1e9, 0.002 + 1e9 / 5e10), (8e9, 0.002 + 8e9 / 5e10)])
    assert overhead == pytest.approx(0.002) and rate == pytest.approx(5e10)
    assert fit_step_time([(1e9, 0.01)]) == (0.0, 1e11)
    # a noisy, downward line falls back to a pure rate
    assert fit_step_time([(1e9, 0.02), (2e9, 0.01)])[0] == 0.0


def test_rate_book_prefers_model_points_then_probe_then_catalog():
    cpu = default_catalog().get("cpu-local")
    probe = Measurement("cpu-local", "matmul", "fp32", 2e9, 0.01, "calibration")
    model = Measurement("cpu-local", "seed-mlp", "fp32", 1e8, 0.004, "run r1")
    assert RateBook([])(cpu, "fp32").flops_per_s == pytest.approx(174e9 * cpu.efficiency)
    assert RateBook([probe])(cpu, "fp32").flops_per_s == pytest.approx(2e11 * cpu.efficiency)
    r = RateBook([probe, model])(cpu, "fp32")
    assert r.flops_per_s == pytest.approx(2.5e10) and "run r1" in r.source
    assert RateBook([model])(cpu, "bf16").source.startswith("catalog")  # other dtype


def test_calibration_round_trips_through_the_ledger(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    clock = itertools.count(0, 0.5).__next__   # a fake clock: half a second per reading
    rows = calibrate(SEED, StepSetup(micro_batch=32, seq_len=1, kernels="cpu"), clock=clock)
    assert {r["model"] for r in rows} == {"matmul", "seed-mlp"}
    assert {r["batch"] for r in rows if r["model"] == "seed-mlp"} == {32, 128}
    save_calibration(url, [{**r, "device": "cpu-local"} for r in rows],
                     now=datetime(2026, 1, 1, tzinfo=timezone.utc))
    points = load_calibration(url, device="cpu-local")
    assert len(points) == len(rows)
    assert all(p.seconds_per_step > 0 and p.flops_per_step > 0 for p in points)
    # a newer calibration replaces the older one
    save_calibration(url, [{**r, "device": "cpu-local", "seconds_per_step": 1.0} for r in rows],
                     now=datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert all(p.seconds_per_step == 1.0 for p in load_calibration(url))


def test_plan_uses_calibration_for_the_local_device(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    cfg = resolve_plan_config({"model": "seed-mlp", "hardware": ("cpu-local",)})
    before = plan_with_ledger(cfg, url).options[0]
    assert before.fit.rate.source.startswith("catalog")
    assert not (tmp_path / "ledger.db").exists()          # planning never creates the ledger
    flops = 58_163_200.0                                  # one seed-mlp step at batch 128
    save_calibration(url, [dict(model="seed-mlp", dtype="fp32", batch=128, seq_len=1, threads=2,
                                flops_per_step=flops, seconds_per_step=0.002, device="cpu-local")])
    after = plan_with_ledger(cfg, url).options[0]
    assert after.fit.rate.source.startswith("measured")
    assert after.fit.step_s == pytest.approx(0.002)


def _finished_run(ledger, name, batch, steps, seconds, model="seed-mlp", peak=None,
                  parameters=109_386):
    run_id = ledger.start(name=name, model=model, data="digits", out_dir="x", config={})
    metrics = {"model": model, "batch_size": batch, "steps": steps, "train_seconds": seconds,
               "parameters": parameters}
    if peak:
        metrics["peak_memory_bytes"] = peak
    ledger.finish(run_id, status="finished", metrics=metrics, wall_seconds=seconds,
                  cost_nano_usd=0)


def test_finished_runs_feed_later_plans(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = RunLedger(url)
    _finished_run(ledger, "a", 128, 1000, 3.0, peak=5_000_000)
    _finished_run(ledger, "b", 512, 1000, 6.0)
    _finished_run(ledger, "other", 64, 10, 1.0, model="cnn", parameters=5_000)
    runs = ledger.list()
    ledger.close()
    obs = observations(SEED, runs)
    assert sorted(o.name for o in obs) == ["a", "b"]
    assert next(o for o in obs if o.name == "a").peak_memory_bytes == 5_000_000
    points = run_measurements(SEED, runs)
    assert {p.seconds_per_step for p in points} == {0.003, 0.006}
    result = plan_with_ledger(resolve_plan_config({"model": "seed-mlp", "batch_size": 256,
                                                   "hardware": ("cpu-local",)}), url)
    best = result.options[0]
    assert best.fit.rate.source.startswith("measured: run")
    # between the two measured step times, on the fitted line
    assert 0.003 < best.fit.step_s < 0.006
    assert {r["name"] for r in result.measured_runs} == {"a", "b"}


def test_plan_without_measurements_uses_catalog_defaults():
    r = plan(resolve_plan_config({"model": "seed-mlp", "hardware": ("cpu-local",)}),
             today=date(2026, 1, 2))
    assert isinstance(r.options[0].fit.rate, Throughput)
    assert r.options[0].fit.rate.source.startswith("catalog")
