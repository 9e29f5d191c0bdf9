"""Ranking by cost to finish, budget and deadline picks, LoRA stand-ins, spot prices."""

from __future__ import annotations

from datetime import date

from shoestring.plan.api import plan
from shoestring.plan.catalog import Catalog
from shoestring.plan.config import resolve_plan_config


def _catalog(fast_price: float, slow_price: float, memory: float = 80.0) -> Catalog:
    dev = dict(kind="gpu", memory_gib=memory, bandwidth_gbs=2000, interconnect="nvlink",
               interconnect_gbs=300, max_per_node=8, efficiency=0.4, context_gib=1.0,
               source="test")
    return Catalog.model_validate({
        "device": [
            {**dev, "name": "fast", "label": "Fast GPU", "peak_tflops": {"fp32": 60, "bf16": 900}},
            {**dev, "name": "slow", "label": "Slow GPU", "peak_tflops": {"fp32": 20, "bf16": 300}},
        ],
        "price": [
            {"device": "fast", "cloud": "c", "instance": "1x fast", "gpus": 1,
             "on_demand": fast_price, "spot": fast_price / 2, "date": date(2026, 1, 1),
             "source": "test"},
            {"device": "slow", "cloud": "c", "instance": "1x slow", "gpus": 1,
             "on_demand": slow_price, "date": date(2026, 1, 1), "source": "test"},
        ]})


def _plan(catalog, **fields):
    cfg = resolve_plan_config({"model": "gpt2-124m", "tokens": 1e9, "gpus": 1,
                               "setup_minutes": 0, **fields})
    return plan(cfg, catalog=catalog, today=date(2026, 1, 2))


def test_faster_gpu_that_costs_more_per_hour_but_less_to_finish_ranks_first():
    # 3x the speed at 2x the hourly price: two thirds of the dollars to finish.
    result = _plan(_catalog(fast_price=4.0, slow_price=2.0), spot=False)
    first, second = result.options[0], result.options[1]
    assert (first.hardware, second.hardware) == ("fast", "slow")
    assert first.price_per_hour > second.price_per_hour
    assert first.cost_usd < second.cost_usd
    assert abs(first.cost_usd / second.cost_usd - 2 / 3) < 0.01


def test_when_the_fast_gpu_costs_too_much_per_hour_the_slow_one_wins():
    result = _plan(_catalog(fast_price=8.0, slow_price=2.0), spot=False)
    assert result.options[0].hardware == "slow"


def test_spot_rows_include_the_preemption_overhead():
    result = _plan(_catalog(fast_price=4.0, slow_price=2.0), checkpoint_interval_min=60,
                   preemptions_per_hour=0.1)
    spot = next(o for o in result.options if o.spot)
    demand = next(o for o in result.options if o.hardware == "fast" and not o.spot)
    # 0.1 preemptions/h × (30 min lost + 6 min restart) = +6% time
    assert abs(spot.fit.hours / demand.fit.hours - 1.06) < 1e-9
    assert abs(spot.cost_usd - demand.cost_usd / 2 * 1.06) < 1e-9


def test_budget_and_deadline_picks():
    cat = _catalog(fast_price=4.0, slow_price=2.0)
    base = _plan(cat, spot=False)
    fast, slow = base.options[0], base.options[1]
    r = _plan(cat, spot=False, budget=slow.cost_usd * 1.01, deadline_hours=fast.fit.hours * 1.01)
    assert r.fastest_within_budget.hardware == "fast"
    assert r.cheapest_within_deadline.hardware == "fast"
    r = _plan(cat, spot=False, budget=fast.cost_usd * 0.5)
    assert r.fastest_within_budget is None


def test_full_finetune_that_fits_nowhere_falls_back_to_lora_ranked_last():
    cat = _catalog(fast_price=4.0, slow_price=2.0, memory=24.0)
    r = plan(resolve_plan_config({"model": "llama-3-8b", "finetune": "full", "gpus": 1,
                                  "spot": False}), catalog=cat, today=date(2026, 1, 2))
    fitting = [o for o in r.options if o.fits]
    assert fitting and all(o.fit.substituted for o in fitting)
    assert all(o.fit.setup.finetune in ("lora", "qlora") for o in fitting)
    assert any("full fine-tuning fits on no option" in n for n in r.notes)


def test_nothing_fits_reports_how_much_memory_is_needed():
    cat = _catalog(fast_price=4.0, slow_price=2.0, memory=4.0)
    r = plan(resolve_plan_config({"model": "llama-3-8b", "tokens": 1e6, "gpus": 1}),
             catalog=cat, today=date(2026, 1, 2))
    assert not any(o.fits for o in r.options)
    assert all("needs at least" in o.fit.reason for o in r.options)


def test_json_has_the_promised_fields():
    d = _plan(_catalog(4.0, 2.0)).to_dict()
    assert d["params"] == 124_439_808
    assert {"weights", "gradients", "optimizer", "activations", "overhead", "total"} <= \
        set(d["memory"])
    assert d["flops"]["total"] > 0
    for o in d["options"]:
        assert {"hardware", "gpus", "spot", "strategy", "fits", "hours", "cost_usd"} <= set(o)


def test_stale_prices_warn():
    cat = _catalog(4.0, 2.0)
    cfg = resolve_plan_config({"model": "gpt2-124m", "tokens": 1e9, "gpus": 1})
    assert plan(cfg, catalog=cat, today=date(2026, 2, 1)).warnings == []
    warned = plan(cfg, catalog=cat, today=date(2026, 6, 1)).warnings
    assert len(warned) == 1 and "older than 90 days" in warned[0]


def test_more_gpus_shard_a_model_that_one_cannot_hold():
    cat = _catalog(fast_price=4.0, slow_price=2.0, memory=40.0)
    r = plan(resolve_plan_config({"model": "llama-3-8b", "tokens": 1e7, "hardware": ("fast",),
                                  "spot": False}), catalog=cat, today=date(2026, 1, 2))
    by_n = {o.gpus: o for o in r.options}
    assert not by_n[1].fits and by_n[8].fits
    assert by_n[8].fit.setup.zero_stage >= 2


def test_start_up_time_makes_fewer_gpus_win_small_jobs():
    cat = _catalog(fast_price=4.0, slow_price=2.0)
    cfg = resolve_plan_config({"model": "gpt2-124m", "tokens": 1e8, "hardware": ("fast",),
                               "spot": False, "setup_minutes": 10})
    r = plan(cfg, catalog=cat, today=date(2026, 1, 2))
    by_n = {o.gpus: o for o in r.options}
    # same GPU-hours of work; 10 billed minutes on each of 64 GPUs cost more than on one
    assert by_n[1].cost_usd < by_n[64].cost_usd
    assert by_n[64].fit.hours < by_n[1].fit.hours
    assert r.options[0].gpus < 64
