"""For one device type and count: the fastest training strategy that fits, and its time.

The search is small and exhaustive: precision × tensor parallelism × ZeRO
stage × activation checkpointing × activation offload × optimizer step in
backward, each with the largest micro-batch that fits (a larger micro-batch
only saves per-step overhead). Among the strategies that fit, the one that
finishes soonest wins; when full fine-tuning fits nowhere on the device, LoRA
and then QLoRA are tried. Choices the user pinned are not searched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from shoestring.plan.catalog import Device
from shoestring.plan.compute import step_flops
from shoestring.plan.cost import Throughput, step_seconds
from shoestring.plan.efficiency import (
    EAGER_RATE,
    HOST_LINK_GBS,
    adapter_seconds,
    dequantize_seconds,
    goodput,
    recipe_factor,
    size_factor,
)
from shoestring.plan.memory import GIB, MemoryBreakdown, estimate_memory
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec
from shoestring.plan.workload import Workload

# rate(device, dtype) -> achieved throughput of one device.
RateFn = Callable[[Device, str], Throughput]
# Cross-entropy chunks when the plan may choose (torchtune's num_output_chunks).
DEFAULT_LOSS_CHUNKS = 8


@dataclass(frozen=True)
class Fit:
    """The chosen strategy on ``gpus`` devices, or why nothing fits."""

    fits: bool
    setup: StepSetup | None
    memory: MemoryBreakdown | None
    step_s: float = 0.0
    hours: float = 0.0
    steps: int = 0
    flops_total: float = 0.0
    model_flops_total: float = 0.0
    mfu: float = 0.0
    rate: Throughput | None = None
    reason: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    substituted: bool = False  # runs LoRA/QLoRA because the asked-for full fine-tune won't fit
    asked_needs_bytes: int = 0  # when substituted: the least the asked-for mode needs per device
    latency: dict[str, float] | None = None  # serving: per-request latency and throughput
    closest: StepSetup | None = None  # when nothing fits: the setup needing the least memory
    goodput: dict[str, float] | None = None  # training: time lost to evals, checkpoints, failures
    hint: str = ""  # how the asked-for job would fit after all (e.g. a smaller batch)

    def strategy(self) -> dict:
        if self.setup is None:
            return {}
        s = self.setup
        out = {"precision": s.precision_label, "finetune": s.finetune, "micro_batch": s.micro_batch,
               "grad_accum": s.grad_accum, "data_parallel": s.dp, "tensor_parallel": s.tp,
               "zero_stage": s.zero_stage, "checkpointing": s.checkpointing,
               "optimizer": s.optimizer, "optimizer_in_backward": s.optimizer_in_backward,
               "loss_chunks": s.loss_chunks, "offload_activations": s.offload_activations}
        if s.mode == "serve":
            out = {"precision": s.precision_label, "batch": s.micro_batch, "tensor_parallel": s.tp,
                   "replicas": int((self.latency or {}).get("replicas", 1))}
        return out


def _dtype(precision: str) -> str:
    return "fp32" if precision == "fp32" else "bf16"


def _micro_batches(share: int, fixed: int | None) -> list[int]:
    if fixed:
        return [fixed]
    sizes = {share}
    m = 1
    while m < share:
        sizes.add(m)
        m *= 2
    return sorted(sizes, reverse=True)


def _tp_options(spec: ModelSpec, gpus: int, device: Device) -> list[int]:
    if spec.family == "mlp":
        return [1]
    return [t for t in (1, 2, 4, 8) if t <= min(gpus, device.max_per_node)
            and gpus % t == 0 and spec.heads % t == 0 and spec.n_kv_heads % t == 0]


def _fits(mem: MemoryBreakdown, device: Device) -> bool:
    return mem.total <= device.memory_gib * GIB


def _precisions(cfg: Any, device: Device, kind: str) -> list[str]:
    """``bf16-true`` is pure bf16 (StepSetup ``bf16``); auto fine-tunes in it, pre-trains mixed."""
    precision = cfg.search_precision
    if precision == "bf16-true":
        return ["bf16"]
    if precision != "auto":
        return [precision]
    if device.kind == "cpu":
        return ["fp32", "bf16-mixed"]
    return ["bf16"] if kind == "finetune" else ["bf16-mixed"]


def _choices(value: Any, default: list) -> list:
    return default if value is None else [value]


def search_training(spec: ModelSpec, work: Workload, device: Device, gpus: int, rate: RateFn,
                    cfg: Any) -> Fit:
    """The fastest fitting training strategy for ``gpus`` × ``device`` under plan config ``cfg``."""
    modes = [work.finetune] + (["lora", "qlora"] if work.finetune == "full"
                               and work.kind == "finetune" else [])
    kernels = "cuda" if device.kind == "gpu" else "cpu"
    half = "bf16" if device.supports_bf16 else "fp16"
    ckpts = ["none", "full"] if cfg.search_checkpointing == "auto" \
        else [cfg.search_checkpointing]
    chunks = cfg.loss_chunks or (DEFAULT_LOSS_CHUNKS if spec.family == "decoder" else 1)
    best: Fit | None = None
    smallest: tuple[MemoryBreakdown, StepSetup] | None = None
    asked_smallest: int = 0
    in_bwd_batch = 0   # largest global batch that fits only with the step in backward
    hint = ""
    for mode in modes:
        base = StepSetup(seq_len=work.seq_len, optimizer=cfg.optimizer, finetune=mode,
                         lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                         lora_targets=cfg.lora_targets, lora_dropout=cfg.lora_dropout,
                         loss_chunks=chunks, kernels=kernels, half=half,
                         compiled=cfg.compile, fused_optimizer=cfg.fused_optimizer)
        for prec in _precisions(cfg, device, work.kind):
            thr = rate(device, _dtype(prec))
            for tp in _tp_options(spec, gpus, device):
                dp = gpus // tp
                share = max(1, math.ceil(work.global_batch / dp))
                zeros = [0] if dp == 1 else ([0, 1, 2, 3] if cfg.zero == "auto" else
                                             [int(cfg.zero)])
                for z in zeros:
                    for ck in (ckpts if spec.family != "mlp" else ["none"]):
                        offloads = _choices(cfg.offload_activations,
                                            [False, True] if ck == "full" else [False])
                        in_bwd = _choices(cfg.optimizer_in_backward,
                                          [False] if mode != "full" else [False, True])
                        for off in offloads if spec.family != "mlp" else [False]:
                            for inb in in_bwd:
                                for micro in _micro_batches(share, cfg.micro_batch_size):
                                    accum = max(1, math.ceil(share / micro))
                                    setup = base.with_(
                                        micro_batch=micro, precision=prec, checkpointing=ck,
                                        grad_accum=accum, dp=dp, zero_stage=z, tp=tp,
                                        offload_activations=off, optimizer_in_backward=inb)
                                    mem = estimate_memory(spec, setup,
                                                          context_gib=device.context_gib)
                                    if inb and accum > 1:
                                        # Stepping in backward cannot accumulate: it fits
                                        # only at a smaller global batch.
                                        if mode == work.finetune and _fits(mem, device):
                                            in_bwd_batch = max(in_bwd_batch, micro * dp)
                                        continue
                                    if smallest is None or mem.total < smallest[0].total:
                                        smallest = (mem, setup)
                                    if not _fits(mem, device):
                                        continue
                                    fit = _timed(spec, work, device, setup, mem, thr, cfg)
                                    # Strategies are tried simplest first; a more complex
                                    # one must be clearly (0.5%) faster to replace it.
                                    if best is None or fit.hours < best.hours * (1 - 0.005):
                                        best = fit
                                    break  # smaller micro-batches only add per-step overhead
        if mode == work.finetune:
            asked_smallest = smallest[0].total if smallest is not None else 0
            hint = (f"{work.finetune} training fits with the optimizer step inside backward "
                    f"at a global batch of {in_bwd_batch} (--batch-size {in_bwd_batch}; it "
                    "cannot accumulate gradients)") if in_bwd_batch and best is None else ""
        if best is not None:
            if mode != work.finetune:
                best = replace(best, substituted=True, asked_needs_bytes=asked_smallest,
                               hint=hint, notes=best.notes + (
                                   f"full fine-tuning does not fit; {mode} does",))
            return best
    need = smallest[0].total / GIB if smallest else float("nan")
    return Fit(False, None, smallest[0] if smallest else None,
               closest=smallest[1] if smallest else None, hint=hint,
               reason=f"needs at least {need:.1f} GiB per device "
                      f"(has {device.memory_gib:g} GiB)")


def _host_transfer_seconds(spec: ModelSpec, setup: StepSetup, mem: MemoryBreakdown,
                           device: Device) -> float:
    """Seconds per step of host traffic: offloaded activations, paged optimizer states.

    Offloaded activations go to the host in the forward and come back in the
    backward. Paged optimizer states that do not fit beside the step's peak are
    paged in and out once per optimizer step (QLoRA, section 3).
    """
    traffic = 2 * mem.offloaded * setup.grad_accum
    free = device.memory_gib * GIB - mem.total
    if mem.paged > free > -1:
        traffic += 2 * (mem.paged - max(free, 0.0))
    return traffic / (HOST_LINK_GBS * 1e9)


def checkpoint_bytes(spec: ModelSpec, setup: StepSetup) -> float:
    """What one checkpoint writes: the whole model state once, however it is sharded.

    Full training saves weights and optimizer states; LoRA/QLoRA only the
    adapters and their states.
    """
    from shoestring.plan.compute import trained_params
    from shoestring.plan.memory import optimizer_bytes_per_param
    from shoestring.plan.specs import count_params

    trained = trained_params(spec, setup)
    state = trained * (setup.param_bytes + optimizer_bytes_per_param(setup))
    if not setup.adapters:
        state += (count_params(spec).total - trained) * setup.param_bytes
    return state


def _timed(spec: ModelSpec, work: Workload, device: Device, setup: StepSetup,
           mem: MemoryBreakdown, thr: Throughput, cfg: Any) -> Fit:
    flops = step_flops(spec, setup)
    given = getattr(cfg, "efficiency", None)
    if given:
        # The user's MFU already holds everything the factors below model
        # (size, compile, recomputation, adapters, dequantisation): price the
        # model FLOPs at it, as the trainer's own MFU counts them.
        peak = device.peak(_dtype(setup.precision))
        rated = Throughput(peak * given, 0.0, f"--efficiency {given:g} (MFU)")
        secs, _ = step_seconds(spec, setup, flops.model, rated,
                               interconnect_gbs=device.interconnect_gbs,
                               devices_per_node=device.max_per_node,
                               inter_node_gbs=cfg.inter_node_gbs)
        return _finish(spec, work, device, setup, mem, cfg, flops, rated, secs)
    if thr.source.startswith("measured"):
        # Measured on this model with a plain eager step, as the trainer runs it.
        factor = recipe_factor(setup, compiled=True) / (EAGER_RATE if cfg.compile else 1.0)
    else:   # catalog efficiencies are for compiled training of large models
        factor = recipe_factor(setup, compiled=cfg.compile) * size_factor(spec)
    rated = replace(thr, flops_per_s=thr.flops_per_s * factor)
    secs, _ = step_seconds(spec, setup, flops.total, rated,
                           interconnect_gbs=device.interconnect_gbs,
                           devices_per_node=device.max_per_node,
                           inter_node_gbs=cfg.inter_node_gbs)
    secs += adapter_seconds(spec, setup, device.bandwidth_gbs)
    if device.kind == "gpu":
        secs += dequantize_seconds(spec, setup, device.bandwidth_gbs)
    return _finish(spec, work, device, setup, mem, cfg, flops, rated, secs)


def _finish(spec: ModelSpec, work: Workload, device: Device, setup: StepSetup,
            mem: MemoryBreakdown, cfg: Any, flops: Any, rated: Throughput, secs: float) -> Fit:
    """Host transfers, steps, goodput and MFU of a step that takes ``secs`` on the device."""
    host = _host_transfer_seconds(spec, setup, mem, device) if device.kind == "gpu" else 0.0
    secs = max(secs, host)   # host copies overlap compute on a side stream
    units_per_step = setup.micro_batch * setup.grad_accum * setup.dp * \
        (1 if spec.family == "mlp" else setup.seq_len)
    steps = max(1, math.ceil(work.total_units / units_per_step))
    train_hours = steps * secs / 3600
    devices = setup.dp * setup.tp
    good = goodput(checkpoint_bytes=checkpoint_bytes(spec, setup), devices=devices,
                   eval_fraction=cfg.eval_fraction,
                   checkpoint_interval_h=cfg.checkpoint_interval_min / 60,
                   checkpoint_write_gbs=cfg.checkpoint_write_gbs)
    hours = train_hours / good.factor
    peak = device.peak(_dtype(setup.precision))
    mfu = flops.model * setup.dp / (secs * devices * peak) if secs > 0 else 0.0
    notes = ()
    if host > secs * 0.999 and host > 0:
        notes = (f"host transfers ({host:.3g} s per step) set the pace",)
    return Fit(True, setup, mem, step_s=secs, hours=hours, steps=steps,
               flops_total=flops.total * setup.dp * steps,
               model_flops_total=flops.model * setup.dp * steps, mfu=mfu, rate=rated,
               notes=notes, goodput=good.to_dict())


def time_setup(spec: ModelSpec, work: Workload, device: Device, setup: StepSetup,
               rate: RateFn, cfg: Any) -> Fit:
    """Memory and time of one given ``setup`` on ``device`` (no search; fits or not).

    What the published-measurement comparison (``bench/plan_published.py``) runs:
    the exact recipe a paper or framework reports, priced by the same model.
    """
    mem = estimate_memory(spec, setup, context_gib=device.context_gib)
    fit = _timed(spec, work, device, setup, mem, rate(device, _dtype(setup.precision)), cfg)
    return fit if _fits(mem, device) else replace(fit, fits=False)
