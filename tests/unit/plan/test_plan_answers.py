"""Answers that must not mislead (issue 16, item 10).

Near-ties on cost go to the faster option and the time–cost Pareto front is
shown; "does it fit on one N GB card" gets a plain yes/no per card class;
serving plans give per-request latency, rank on-demand before spot and never
call fp16 hardware bf16; calibration keeps only comparable, quiet runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from itertools import pairwise

import pytest

from shoestring.plan.api import plan
from shoestring.plan.catalog import Catalog, default_catalog
from shoestring.plan.config import resolve_plan_config
from shoestring.plan.feedback import observations, run_measurements
from shoestring.plan.presets import load_preset
from shoestring.plan.ranking import pareto_front, rank_by_cost

TODAY = date(2026, 1, 2)


def _device(name: str, memory: float, bf16: bool = True, **extra) -> dict:
    peaks = {"fp32": 30.0, "bf16": 70.0} if bf16 else {"fp32": 8.0, "fp16": 65.0}
    return {"name": name, "label": name, "kind": "gpu", "memory_gib": memory,
            "bandwidth_gbs": 900, "interconnect": "pcie4", "interconnect_gbs": 32,
            "max_per_node": 8, "peak_tflops": peaks, "efficiency": 0.35, "context_gib": 0.5,
            "source": "test", **extra}


def _price(device: str, on_demand: float, spot: float | None = None) -> dict:
    return {"device": device, "cloud": "c", "instance": f"1x {device}", "gpus": 1,
            "on_demand": on_demand, "spot": spot, "date": TODAY, "source": "test"}


def test_within_two_percent_of_the_cheapest_the_faster_option_ranks_first():
    opts = [("1x spot 3090", 10.94, 99.4), ("8x spot 3090", 11.00, 12.5), ("b", 12.0, 50.0)]
    ranked = rank_by_cost(opts, cost=lambda o: o[1], hours=lambda o: o[2])
    assert [o[0] for o in ranked] == ["8x spot 3090", "1x spot 3090", "b"]
    # a real saving is still a saving
    assert rank_by_cost(opts, cost=lambda o: o[1], hours=lambda o: o[2],
                        tolerance=0.001)[0][0] == "1x spot 3090"
    front = pareto_front(opts, cost=lambda o: o[1], hours=lambda o: o[2])
    assert [o[0] for o in front] == ["8x spot 3090", "1x spot 3090"]   # "b" is dominated


def test_gpt2_on_10b_tokens_does_not_put_a_99_hour_job_first():
    """The issue's example, on the shipped catalog: the top answer is not the slowest."""
    cfg = resolve_plan_config({"model": "gpt2-124m", "tokens": 1e10})
    r = plan(cfg, today=TODAY)
    cheapest = min(o.cost_usd for o in r.options if o.fits)
    top = r.options[0]
    assert top.cost_usd <= cheapest * 1.02
    near_ties = [o for o in r.options if o.fits and o.cost_usd <= cheapest * 1.02]
    assert top.fit.hours == min(o.fit.hours for o in near_ties)
    assert len(near_ties) > 1 and top.fit.hours < max(o.fit.hours for o in near_ties)
    # the front runs from the cheapest to the fastest, each step faster and dearer
    front = r.pareto_front
    assert front[0].fit.hours == min(o.fit.hours for o in r.options if o.fits)
    assert front[-1].cost_usd == pytest.approx(cheapest)
    assert all(a.fit.hours < b.fit.hours and a.cost_usd > b.cost_usd
               for a, b in pairwise(front))
    assert "pareto_front" in r.to_dict()


def test_single_device_verdict_per_card_class():
    cat = Catalog.model_validate({
        "device": [_device("small", 15.0), _device("mid", 22.0), _device("big", 79.6)],
        "price": [_price("small", 0.5), _price("mid", 1.0), _price("big", 3.0)]})
    cfg = resolve_plan_config({"model": "gpt2-350m", "tokens": 1e8, "micro_batch": 8,
                               "checkpointing": "none", "seq_len": 1024})
    r = plan(cfg, catalog=cat, today=TODAY)
    by_gb = {v.class_gb: v for v in r.single_device}
    assert set(by_gb) == {16, 24, 80}
    need = by_gb[80].needs_bytes
    assert by_gb[80].fits and by_gb[80].line().startswith("fits on one 80 GB card: yes")
    for gb in (16, 24):
        assert by_gb[gb].fits == (need <= cat.get({16: "small", 24: "mid"}[gb]).memory_gib
                                  * 1024 ** 3)
        if not by_gb[gb].fits:
            assert by_gb[gb].line().startswith(f"fits on one {gb} GB card: no (needs")


def test_a_full_finetune_that_only_fits_as_lora_says_no_for_full():
    cat = Catalog.model_validate({"device": [_device("mid", 22.0)], "price": [_price("mid", 1)]})
    r = plan(resolve_plan_config({"model": "llama-3-8b", "finetune": "full", "gpus": 1}),
             catalog=cat, today=TODAY)
    (v,) = r.single_device
    assert not v.fits and v.needs_bytes > 22 * 1024 ** 3
    if any(o.fits for o in r.options):
        assert "would fit" in v.line()


def test_serving_gives_latency_ranks_on_demand_first_and_labels_fp16_hardware():
    cat = Catalog.model_validate({
        "device": [_device("old", 15.0, bf16=False), _device("new", 22.0)],
        "price": [_price("old", 0.5, spot=0.2), _price("new", 1.0, spot=0.3)]})
    r = plan(resolve_plan_config({"model": "llama-3.2-1b", "serve": True, "requests": 1000,
                                  "context": 512, "output_tokens": 64}),
             catalog=cat, today=TODAY)
    fitting = [o for o in r.options if o.fits]
    spot_at = [o.spot for o in fitting]
    assert spot_at == sorted(spot_at)                  # every on-demand option before any spot
    assert not any(o.spot for o in r.pareto_front)
    for o in fitting:
        lat = o.fit.latency
        assert lat["time_to_first_token_s"] > 0 and lat["time_per_output_token_s"] > 0
        assert lat["request_latency_s"] == pytest.approx(
            lat["time_to_first_token_s"] + 64 * lat["time_per_output_token_s"])
        label = o.fit.strategy()["precision"]
        assert label == ("bf16" if o.hardware == "new" else "fp16")
    assert any("endpoint" in n for n in r.notes)


@pytest.mark.parametrize("device", [d.name for d in default_catalog().device])
def test_no_catalog_device_is_labelled_with_a_precision_it_lacks(device):
    dev = default_catalog().get(device)
    for extra in ({"serve": True, "requests": 10}, {"tokens": 1e6}):
        r = plan(resolve_plan_config({"model": "gpt-nano", "hardware": (device,), **extra}),
                 today=TODAY)
        for o in r.options:
            if o.fits:
                label = o.fit.strategy()["precision"]
                assert ("bf16" in label) <= dev.supports_bf16, (device, label)


@dataclass
class _Run:
    name: str
    metrics: dict
    status: str = "finished"


def _run(name, secs, *, batch=128, threads=2, device="cpu", world=1):
    return _Run(name, {"model": "seed-mlp", "batch_size": batch, "steps": 100,
                       "train_seconds": secs, "threads": threads, "device": device,
                       "world_size": world, "precision": "fp32"})


def test_calibration_keeps_only_comparable_quiet_runs():
    spec = load_preset("seed-mlp")
    runs = [_run("quiet-1", 0.20), _run("quiet-2", 0.22), _run("loaded", 5.0),   # 25× slower
            _run("one-thread", 0.4, threads=1), _run("gpu", 0.05, device="cuda:0"),
            _run("ddp", 0.1, world=2), _run("big-batch", 0.6, batch=512)]
    obs = {o.name: o for o in observations(spec, runs)}
    assert {n for n, o in obs.items() if o.left_out is None} == {"quiet-1", "quiet-2",
                                                                  "big-batch"}
    assert "slowed by load" in obs["loaded"].left_out
    assert "threads" in obs["one-thread"].left_out
    used = {p.source for p in run_measurements(spec, runs)}
    assert used == {"run quiet-1", "run quiet-2", "run big-batch"}
