"""For one device type and count: the fastest strategy that fits, and what it costs.

The search is small and exhaustive: precision × tensor parallelism × ZeRO
stage × activation checkpointing, each with the largest micro-batch that
fits (a larger micro-batch only saves per-step overhead). Among the
strategies that fit, the one that finishes soonest wins; when full
fine-tuning fits nowhere on the device, LoRA and then QLoRA are tried.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from shoestring.plan.catalog import Device
from shoestring.plan.compute import step_flops
from shoestring.plan.cost import Throughput, step_seconds
from shoestring.plan.memory import GIB, MemoryBreakdown, estimate_memory
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec
from shoestring.plan.workload import Workload

# rate(device, dtype) -> achieved throughput of one device.
RateFn = Callable[[Device, str], Throughput]


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

    def strategy(self) -> dict:
        if self.setup is None:
            return {}
        s = self.setup
        out = {"precision": s.precision_label, "finetune": s.finetune, "micro_batch": s.micro_batch,
               "grad_accum": s.grad_accum, "data_parallel": s.dp, "tensor_parallel": s.tp,
               "zero_stage": s.zero_stage, "checkpointing": s.checkpointing,
               "optimizer": s.optimizer}
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


def search_training(spec: ModelSpec, work: Workload, device: Device, gpus: int, rate: RateFn, *,
                    precision: str, optimizer: str, checkpointing: str, zero: str,
                    micro_batch: int | None, lora_rank: int, lora_targets: tuple[str, ...]
                    ) -> Fit:
    """The fastest fitting training strategy for ``gpus`` × ``device``."""
    modes = [work.finetune] + (["lora", "qlora"] if work.finetune == "full"
                               and work.kind == "finetune" else [])
    if precision != "auto":
        precisions = [precision]
    elif device.kind == "cpu":
        precisions = ["fp32", "bf16-mixed"]
    else:
        precisions = ["bf16-mixed"]
    kernels = "cuda" if device.kind == "gpu" else "cpu"
    half = "bf16" if device.supports_bf16 else "fp16"
    ckpts = ["none", "full"] if checkpointing == "auto" else [checkpointing]
    best: Fit | None = None
    smallest: MemoryBreakdown | None = None
    asked_smallest: int = 0
    for mode in modes:
        for prec in precisions:
            thr = rate(device, _dtype(prec))
            for tp in _tp_options(spec, gpus, device):
                dp = gpus // tp
                share = max(1, math.ceil(work.global_batch / dp))
                zeros = [0] if dp == 1 else ([0, 1, 2, 3] if zero == "auto" else [int(zero)])
                for z in zeros:
                    for ck in ckpts:
                        for micro in _micro_batches(share, micro_batch):
                            accum = max(1, math.ceil(share / micro))
                            setup = StepSetup(
                                micro_batch=micro, seq_len=work.seq_len, precision=prec,
                                checkpointing=ck if spec.family != "mlp" else "none",
                                optimizer=optimizer, finetune=mode, lora_rank=lora_rank,
                                lora_targets=lora_targets, grad_accum=accum, dp=dp,
                                zero_stage=z, tp=tp, kernels=kernels, half=half)
                            mem = estimate_memory(spec, setup, context_gib=device.context_gib)
                            if smallest is None or mem.total < smallest.total:
                                smallest = mem
                            if not _fits(mem, device):
                                continue
                            fit = _timed(spec, work, device, setup, mem, thr)
                            if best is None or fit.hours < best.hours * (1 - 1e-9):
                                best = fit
                            break  # smaller micro-batches only add per-step overhead
        if mode == work.finetune and smallest is not None:
            asked_smallest = smallest.total
        if best is not None:
            if mode != work.finetune:
                from dataclasses import replace

                best = replace(best, substituted=True, asked_needs_bytes=asked_smallest,
                               notes=best.notes + (f"full fine-tuning does not fit; {mode} does",))
            return best
    need = smallest.total / GIB if smallest else float("nan")
    return Fit(False, None, smallest,
               reason=f"needs at least {need:.1f} GiB per device "
                      f"(has {device.memory_gib:g} GiB)")


def _timed(spec: ModelSpec, work: Workload, device: Device, setup: StepSetup,
           mem: MemoryBreakdown, thr: Throughput) -> Fit:
    flops = step_flops(spec, setup)
    secs, _ = step_seconds(spec, setup, flops.total, thr,
                           interconnect_gbs=device.interconnect_gbs,
                           devices_per_node=device.max_per_node)
    units_per_step = setup.micro_batch * setup.grad_accum * setup.dp * \
        (1 if spec.family == "mlp" else setup.seq_len)
    steps = max(1, math.ceil(work.total_units / units_per_step))
    hours = steps * secs / 3600
    devices = setup.dp * setup.tp
    peak = device.peak(_dtype(setup.precision))
    mfu = flops.model * setup.dp / (secs * devices * peak) if secs > 0 else 0.0
    return Fit(True, setup, mem, step_s=secs, hours=hours, steps=steps,
               flops_total=flops.total * setup.dp * steps,
               model_flops_total=flops.model * setup.dp * steps, mfu=mfu, rate=thr)


# Memory-bound kernels reach ~80% of peak DRAM bandwidth (planner default;
# e.g. STREAM-style copies on A100/H100 measure 80-90%).
BANDWIDTH_EFFICIENCY = 0.8


def search_serving(spec: ModelSpec, work: Workload, device: Device, gpus: int, rate: RateFn, *,
                   precision: str, output_tokens: int) -> Fit:
    """Serving on ``gpus`` devices: ``gpus / tp`` replicas of ``tp``-way tensor parallelism.

    Every tensor-parallel degree that divides ``gpus`` is tried (the smallest that
    fits saves all-reduces; more replicas serve more batches at once) and the one
    that finishes all requests soonest wins.
    """
    from dataclasses import replace

    from shoestring.plan.cost import tp_allreduce_seconds
    from shoestring.plan.serving import ServingTime, serving_time

    prec = "fp32" if precision == "fp32" or (device.kind == "cpu" and precision == "auto") \
        else "bf16"
    half = "bf16" if device.supports_bf16 else "fp16"   # a T4 serves in fp16
    tps = [t for t in _tp_options(spec, gpus, device) if gpus % t == 0]
    if not tps:
        return Fit(False, None, None, reason=f"{gpus} devices do not split this model evenly")
    best: Fit | None = None
    smallest: MemoryBreakdown | None = None
    b = work.global_batch
    e = 4 if prec == "fp32" else 2
    for tp in tps:
        setup = StepSetup(mode="serve", micro_batch=b, seq_len=work.seq_len, precision=prec,
                          tp=tp, output_tokens=output_tokens,
                          kernels="cuda" if device.kind == "gpu" else "cpu", half=half)
        mem = estimate_memory(spec, setup, context_gib=device.context_gib)
        if smallest is None or mem.total < smallest.total:
            smallest = mem
        if not _fits(mem, device):
            continue
        thr = rate(device, _dtype(prec))
        t = serving_time(spec, setup, flops_per_s=thr.flops_per_s * tp,
                         bytes_per_s=device.bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY * tp)
        if tp > 1 and spec.family != "mlp":
            # Megatron-style TP all-reduces twice per layer (attention and MLP
            # outputs; Shoeybi et al. 2019, section 3) on the critical path of
            # every prefill and every decoded token.
            def comm(tokens: int, tp: int = tp) -> float:
                return 2 * spec.layers * tp_allreduce_seconds(
                    tokens * spec.hidden * e, tp, device.interconnect, device.interconnect_gbs)
            t = ServingTime(t.prefill_s + comm(b * work.seq_len),
                            t.decode_s + output_tokens * comm(b))
        replicas = gpus // tp
        batches = math.ceil(work.total_units / b)
        hours = math.ceil(batches / replicas) * t.total_s / 3600
        fit = Fit(True, setup, mem, step_s=t.total_s, hours=hours, steps=batches, rate=thr,
                  notes=((f"{replicas} replica(s) of {tp} device(s); prefill "
                          f"{t.prefill_s:.3g} s + decode {t.decode_s:.3g} s per batch"),),
                  latency={**t.latency(b, output_tokens), "replicas": replicas})
        if best is None or fit.hours < best.hours * (1 - 1e-9):
            best = fit
    if best is None:
        need = smallest.total / GIB if smallest else float("nan")
        return Fit(False, None, smallest, reason=f"needs {need:.1f} GiB per device "
                   f"(has {device.memory_gib:g} GiB)")
    return replace(best, latency={**(best.latency or {}),
                                  "requests_per_s": best.latency["requests_per_s"]
                                  * best.latency["replicas"]})
