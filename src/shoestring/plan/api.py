"""``shoestring.plan.plan(config)``: the Python API behind ``shoestring plan``.

It resolves the model and the workload, searches every catalog device and
count for the fastest strategy that fits, prices each with every dated price
row (on-demand and spot), and ranks by the dollars to finish. Measurements
(``--calibrate`` probes, finished runs) replace default efficiencies for the
device they were taken on. Clock, database and catalog files are passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from shoestring.plan.catalog import Catalog, Device, Price, load_catalog
from shoestring.plan.compute import step_flops
from shoestring.plan.config import PlanConfig
from shoestring.plan.cost import spot_overhead
from shoestring.plan.memory import MemoryBreakdown, estimate_memory
from shoestring.plan.presets import resolve_model
from shoestring.plan.ranking import pareto_front, rank_by_cost
from shoestring.plan.rates import Measurement, RateBook
from shoestring.plan.search import Fit, search_training
from shoestring.plan.serving import search_serving
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec, count_params
from shoestring.plan.verdicts import CardVerdict, single_device_verdicts
from shoestring.plan.workload import Workload, resolve_workload

GPU_COUNTS = (1, 2, 4, 8, 16, 32, 64)
LOCAL_DEVICE = "cpu-local"


@dataclass(frozen=True)
class Option:
    """One way to run the workload: a device, a count, a price row, a strategy."""

    hardware: str
    label: str
    cloud: str
    instance: str
    gpus: int
    spot: bool
    fit: Fit
    cost_usd: float
    price_per_hour: float
    price_date: str

    @property
    def fits(self) -> bool:
        return self.fit.fits

    def to_dict(self) -> dict[str, Any]:
        f = self.fit
        return {"hardware": self.hardware, "label": self.label, "cloud": self.cloud,
                "instance": self.instance, "gpus": self.gpus, "spot": self.spot,
                "strategy": f.strategy(), "fits": f.fits,
                "hours": round(f.hours, 6) if f.fits else None,
                "cost_usd": round(self.cost_usd, 6) if f.fits else None,
                "price_per_hour": self.price_per_hour, "price_date": self.price_date,
                "step_seconds": round(f.step_s, 6) if f.fits else None,
                "mfu": round(f.mfu, 4) if f.fits else None,
                "memory_per_device": f.memory.to_dict() if f.memory else None,
                "throughput_source": f.rate.source if f.rate else None,
                "substituted": f.substituted, "notes": list(f.notes),
                "latency": f.latency, "reason": f.reason or None}


@dataclass
class PlanResult:
    """What ``plan()`` found; ``to_dict()`` is the ``--json`` output."""

    spec: ModelSpec
    workload: Workload
    params: int
    trained_params: int
    memory: MemoryBreakdown | None
    flops: dict[str, float]
    options: list[Option]
    fastest_within_budget: Option | None = None
    cheapest_within_deadline: Option | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trace: dict[str, Any] | None = None
    measured_runs: list[dict[str, Any]] = field(default_factory=list)
    stale_prices: list[str] = field(default_factory=list)
    pareto_front: list[Option] = field(default_factory=list)
    single_device: list[CardVerdict] = field(default_factory=list)
    largest: list[Any] = field(default_factory=list)   # plan.largest.Largest per device
    config: PlanConfig | None = None   # after a run's own workload filled the defaults

    def to_dict(self) -> dict[str, Any]:
        w = self.workload
        return {
            "model": self.spec.name, "family": self.spec.family, "params": self.params,
            "trained_params": self.trained_params,
            "workload": {"kind": w.kind, "seq_len": w.seq_len, "global_batch": w.global_batch,
                         "total": w.total_units, "finetune": w.finetune},
            "flops": self.flops,
            "memory": self.memory.to_dict() if self.memory else None,
            "options": [o.to_dict() for o in self.options],
            "fastest_within_budget": self.fastest_within_budget.to_dict()
            if self.fastest_within_budget else None,
            "cheapest_within_deadline": self.cheapest_within_deadline.to_dict()
            if self.cheapest_within_deadline else None,
            "pareto_front": [o.to_dict() for o in self.pareto_front],
            "single_device": [v.to_dict() for v in self.single_device],
            "largest": [x.to_dict() for x in self.largest],
            "warnings": self.warnings, "stale_prices": self.stale_prices,
            "notes": self.notes, "trace": self.trace,
            "measured_runs": self.measured_runs,
            "config": self.config.model_dump(mode="json") if self.config else None,
        }


def _counts(cfg: PlanConfig, device: Device, price: Price) -> list[int]:
    if device.kind == "cpu":
        return [1]
    if cfg.nproc:
        return [cfg.nproc] if cfg.nproc % price.gpus == 0 or cfg.nproc < price.gpus else []
    return [n for n in GPU_COUNTS if n >= price.gpus and n % price.gpus == 0]


def _price_options(device: Device, price: Price, n: int, fit: Fit, cfg: PlanConfig
                   ) -> list[Option]:
    """On-demand and spot options of ``n`` devices under one price row.

    Every job also pays ``setup_minutes`` on all its machines (start-up and
    model loading), which is what stops many-GPU runs of tiny jobs from
    looking free; spot runs redo work after preemptions.
    """
    instances = math.ceil(n / price.gpus)
    setup_h = cfg.setup_minutes / 60 if device.kind == "gpu" or price.on_demand > 0 else 0.0
    out = []
    rows = [(False, price.on_demand)]
    if cfg.spot and price.spot is not None:
        rows.append((True, price.spot))
    for spot, hourly in rows:
        if cfg.max_price_per_hour is not None and instances * hourly > cfg.max_price_per_hour:
            continue
        f = fit
        if fit.fits:
            hours = fit.hours
            notes = fit.notes
            if spot:
                extra = spot_overhead(hours, checkpoint_interval_h=cfg.checkpoint_interval_min
                                      / 60, preemptions_per_hour=cfg.preemptions_per_hour)
                hours *= 1 + extra
                notes += (f"spot: +{extra:.1%} time redone after preemptions",)
            if setup_h:
                hours += setup_h
                notes += (f"includes {cfg.setup_minutes:g} min start-up",)
            f = replace(fit, hours=hours, notes=notes)
        out.append(Option(device.name, device.label, price.cloud, price.instance, n, spot, f,
                          cost_usd=f.hours * instances * hourly if fit.fits else math.inf,
                          price_per_hour=instances * hourly, price_date=price.date.isoformat()))
    return out


def _search(spec: ModelSpec, work: Workload, cfg: PlanConfig, device: Device, n: int,
            rates: RateBook) -> Fit:
    if work.kind == "serve":
        return search_serving(spec, work, device, n, rates, precision=cfg.search_precision,
                              output_tokens=cfg.output_tokens)
    return search_training(spec, work, device, n, rates, cfg)


def resolve_inputs(cfg: PlanConfig) -> tuple[ModelSpec, PlanConfig, list[str]]:
    """The model of ``cfg`` and, for a Shoestring run, ``cfg`` with the run's workload.

    A run folder or run TOML fixes batch, sequence length, steps, precision,
    checkpointing and optimizer unless the user gave them (see
    :mod:`shoestring.plan.run_inputs`).
    """
    from shoestring.plan.config import resolve_plan_config
    from shoestring.plan.run_inputs import apply_run_defaults, is_run_reference, load_run_inputs

    if not is_run_reference(cfg.model):
        return resolve_model(cfg.model), cfg, []
    inputs = load_run_inputs(cfg.model)
    values = apply_run_defaults(cfg.model_dump(exclude_unset=True), cfg.model_fields_set,
                                inputs.defaults)
    return inputs.spec, resolve_plan_config(values), list(inputs.notes)


def plan(cfg: PlanConfig, *, catalog: Catalog | None = None, today: date | None = None,
         measurements: list[Measurement] = (), runs: list[Any] = ()) -> PlanResult:
    """Plan ``cfg``: every device and count that fits, ranked by dollars to finish.

    ``measurements`` (calibration probes) and ``runs`` (finished ledger rows)
    refine the throughput of the devices they were measured on.

    >>> from shoestring.plan.config import resolve_plan_config
    >>> r = plan(resolve_plan_config({"model": "gpt2-124m", "tokens": 1e9}))
    >>> r.options[0].fits
    True
    """
    from shoestring.plan.feedback import observations, run_measurements

    spec, cfg, run_notes = resolve_inputs(cfg)
    catalog = catalog or load_catalog(cfg.catalog)
    today = today or date.today()
    work = resolve_workload(spec, cfg)
    mine = [m for m in measurements if m.model in (spec.name, "matmul")]
    mine += run_measurements(spec, list(runs), seq_len=work.seq_len)
    rates = RateBook(mine)
    devices = [catalog.get(h) for h in cfg.hardware] if cfg.hardware else list(catalog.device)
    options: list[Option] = []
    single: dict[str, tuple[Device, Fit]] = {}
    for device in devices:
        fits: dict[int, Fit] = {}
        for price in catalog.prices_for(device.name):
            for n in _counts(cfg, device, price):
                if n not in fits:
                    fits[n] = _search(spec, work, cfg, device, n, rates)
                options += _price_options(device, price, n, fits[n], cfg)
        if device.kind == "gpu":
            single[device.name] = (device, fits[1] if 1 in fits else
                                   _search(spec, work, cfg, device, 1, rates))
    slow = [o for o in options if o.fits and o.fit.hours > cfg.max_hours]
    options = [o for o in options if o not in slow]
    options = _rank(options, serve=work.kind == "serve", tolerance=cfg.tie_tolerance)
    result = _result(spec, work, cfg, options)
    result.single_device = single_device_verdicts(single)
    if cfg.largest and work.kind != "serve":
        from shoestring.plan.largest import largest_that_fits

        result.largest = [largest_that_fits(spec, work, d, rates, cfg, cfg.largest)
                          for d in devices]
    asked = [o for o in options if o.fits and not o.fit.substituted
             and not (work.kind == "serve" and o.spot)]
    result.pareto_front = pareto_front(asked, cost=lambda o: o.cost_usd, hours=lambda o: o.fit.hours)
    if work.kind == "serve" and any(o.spot for o in options):
        result.notes.append("serving is an endpoint: on-demand options rank before spot ones "
                            "(a preemption takes the endpoint down)")
    if slow:
        result.notes.append(f"{len(slow)} options slower than {cfg.max_hours:g} h left out "
                            "(--max-hours)")
    used = {(o.hardware, o.cloud, o.instance) for o in options}
    stale = [p for p in catalog.stale_prices(today) if (p.device, p.cloud, p.instance) in used]
    if stale:
        oldest = min(p.date for p in stale)
        clouds = ", ".join(sorted({p.cloud for p in stale}))
        result.warnings.append(
            f"{len(stale)} price rows are older than 90 days (oldest {oldest}, "
            f"{(today - oldest).days} days; {clouds}): refresh them with --catalog FILE")
        result.stale_prices = [f"{p.device} on {p.cloud} ({p.instance}): {p.date}, {p.source}"
                               for p in stale]
    result.notes = run_notes + list(work.notes) + result.notes
    result.config = cfg
    result.measured_runs = [o.__dict__ for o in observations(spec, list(runs))]
    return result


def _rank(options: list[Option], *, serve: bool, tolerance: float) -> list[Option]:
    """Fitting options first: what was asked for (on-demand first for an endpoint), then
    LoRA/QLoRA stand-ins for a full fine-tune; each tier cheapest first, preferring the
    faster of options within ``tolerance`` of each other (:func:`rank_by_cost`)."""
    def tier(o: Option) -> tuple[bool, bool]:
        return (o.fit.substituted, serve and o.spot)

    fitting = [o for o in options if o.fits]
    out: list[Option] = []
    for t in sorted({tier(o) for o in fitting}):
        out += rank_by_cost([o for o in fitting if tier(o) == t], cost=lambda o: o.cost_usd,
                            hours=lambda o: o.fit.hours, tolerance=tolerance)
    return out + [o for o in options if not o.fits]


def _result(spec: ModelSpec, work: Workload, cfg: PlanConfig, options: list[Option]
            ) -> PlanResult:
    from shoestring.plan.compute import trained_params

    fitting = [o for o in options if o.fits]
    best = fitting[0] if fitting else None
    notes = []
    if best is not None and best.fit.substituted:
        notes.append("full fine-tuning fits on no option; LoRA/QLoRA shown instead")
    closest = _closest_miss(options) if best is None else None
    if best is not None:
        setup, memory, steps = best.fit.setup, best.fit.memory, best.fit.steps
    elif closest is not None:
        # Nothing fits: show what the least demanding option would need, with
        # the strategy it was estimated for (pinned choices included).
        setup, memory, steps = closest.fit.closest, closest.fit.memory, work.steps
        notes.append(_needs_note(closest, options))
    else:
        setup = StepSetup(
            mode="serve" if work.kind == "serve" else "train",
            micro_batch=cfg.micro_batch_size or 1,
            seq_len=work.seq_len, finetune=work.finetune, optimizer=cfg.optimizer,
            checkpointing="full" if cfg.activation_checkpointing else "none",
            output_tokens=cfg.output_tokens)
        memory, steps = estimate_memory(spec, setup), work.steps
    per_step = step_flops(spec, setup)
    flops = {"per_step": per_step.total * setup.dp, "forward_per_step": per_step.forward,
             "backward_per_step": per_step.backward, "recompute_per_step": per_step.recompute,
             "total": per_step.total * setup.dp * steps,
             "model_total": per_step.model * setup.dp * steps, "steps": steps}
    # Trained parameters of what was asked, not of a LoRA stand-in.
    trained = trained_params(spec, setup.with_(finetune=work.finetune))
    asked = [o for o in fitting if not o.fit.substituted] or fitting
    within_budget = [o for o in asked if cfg.budget is not None and o.cost_usd <= cfg.budget]
    within_deadline = [o for o in asked if cfg.deadline_hours is not None
                       and o.fit.hours <= cfg.deadline_hours]
    return PlanResult(
        spec=spec, workload=work, params=count_params(spec).total,
        trained_params=trained, memory=memory, flops=flops,
        options=options,
        fastest_within_budget=min(within_budget, key=lambda o: (o.fit.hours, o.cost_usd))
        if within_budget else None,
        cheapest_within_deadline=min(within_deadline, key=lambda o: (o.cost_usd, o.fit.hours))
        if within_deadline else None, notes=notes)


def _closest_miss(options: list[Option]) -> Option | None:
    misses = [o for o in options if not o.fits and o.fit.memory is not None
              and o.fit.closest is not None]
    return min(misses, key=lambda o: o.fit.memory.total) if misses else None


def _needs_note(closest: Option, options: list[Option]) -> str:
    """What a request that fits nowhere would need."""
    from shoestring.plan.memory import GIB

    s = closest.fit.closest
    biggest = max((o for o in options), key=lambda o: o.gpus)
    how = f"{s.finetune} " if s.finetune != "full" else ""
    how += f"micro-batch {s.micro_batch}, {s.precision_label}"
    if s.checkpointing != "none":
        how += ", activation checkpointing"
    if s.zero_stage:
        how += f", ZeRO-{s.zero_stage} over {s.dp}"
    return (f"nothing fits: the least demanding option ({closest.gpus}× {closest.hardware}, "
            f"{how}) needs {closest.fit.memory.total / GIB:.1f} GiB per device; it would need "
            f"devices of at least that size, or more than the {biggest.gpus} devices searched "
            "(--gpus), or a smaller micro-batch, sequence or model")


def reference_setup(result: PlanResult) -> StepSetup:
    """The top option's per-device step, unsharded, as trace mode can run it.

    The trace runs Shoestring's eager module with a plain loss and AdamW: the
    savers it cannot run (chunked loss, offloading, the step in backward,
    8-bit states, compile) are switched off, and the analytic estimate it is
    compared with is made for the same step.
    """
    best = next((o for o in result.options if o.fits), None)
    w = result.workload
    if best is not None and best.fit.setup is not None:
        s = best.fit.setup
        return s.with_(dp=1, zero_stage=0, tp=1, grad_accum=1, kernels="cpu", loss_chunks=1,
                       loss_keeps_logits=False, offload_activations=False, compiled=False,
                       optimizer_in_backward=False, fused_optimizer=False,
                       optimizer="adamw" if "adam8bit" in s.optimizer else s.optimizer)
    return StepSetup(mode="serve" if w.kind == "serve" else "train", micro_batch=1,
                     seq_len=w.seq_len, finetune=w.finetune, kernels="cpu")


def plan_with_ledger(cfg: PlanConfig, db_url: str | None, *, today: date | None = None
                     ) -> PlanResult:
    """:func:`plan` with the ledger's calibrations and finished runs, and ``--trace``."""
    from shoestring.plan.calibration_store import load_calibration
    from shoestring.plan.feedback import load_runs

    measurements: list[Measurement] = []
    runs: list[Any] = []
    # A plan reads the ledger but never creates it.
    if db_url:
        from shoestring.ledger.db import LedgerMissing

        runs = load_runs(db_url)
        try:
            measurements = load_calibration(db_url)
        except LedgerMissing:
            measurements = []
    result = plan(cfg, today=today, measurements=measurements, runs=runs)
    if cfg.trace:
        from shoestring.plan.validate import compare

        setup = reference_setup(result)
        result.trace = {"setup": _setup_dict(setup), **compare(result.spec, setup).to_dict()}
    return result


def _setup_dict(setup: StepSetup) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: v for k, v in asdict(setup).items() if k != "lora_targets"} | \
        {"lora_targets": list(setup.lora_targets)}


def calibrate_and_store(cfg: PlanConfig, db_url: str, *, device: str = LOCAL_DEVICE
                        ) -> list[dict[str, Any]]:
    """Run ``--calibrate`` probes for ``cfg.model`` on this machine and store them.

    The model is probed at the plan's micro-batch (``--micro-batch``, else the
    workload's batch, at most 64 sequences for a transformer).
    """
    from shoestring.plan.calibrate import calibrate
    from shoestring.plan.calibration_store import save_calibration

    spec, cfg, _ = resolve_inputs(cfg)
    work = resolve_workload(spec, cfg)
    batch = cfg.micro_batch_size or (work.global_batch if spec.family == "mlp"
                                else min(work.global_batch, 64))
    setup = StepSetup(micro_batch=batch, seq_len=work.seq_len, kernels="cpu")
    rows = calibrate(spec, setup, dtypes=("fp32", "bf16"))
    rows = [{**r, "device": device} for r in rows]
    save_calibration(db_url, rows)
    return rows
