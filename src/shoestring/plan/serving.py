"""Serving: weights, KV cache and prefill memory; prefill and decode time.

A request reads ``context`` prompt tokens (prefill, compute-bound) and then
generates ``output_tokens`` one at a time (decode): each decode step reads
every weight and the whole KV cache once, so it is bound by memory bandwidth
unless the batch is large (the roofline model, Williams et al. 2009; applied
to LLM inference e.g. by Pope et al. 2022, "Efficiently Scaling Transformer
Inference", arXiv:2211.05102, section 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoestring.plan.activations import FP32
from shoestring.plan.memory import FRAGMENTATION, GIB, MemoryBreakdown, estimate_memory
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec, count_params

if TYPE_CHECKING:
    from shoestring.plan.catalog import Device
    from shoestring.plan.search import Fit, RateFn
    from shoestring.plan.workload import Workload


def weight_bytes(setup: StepSetup) -> int:
    """Serving keeps weights in bf16 unless told fp32 (autocast over fp32 weights only wastes memory)."""
    return FP32 if setup.precision == "fp32" else 2


def kv_cache_bytes(spec: ModelSpec, batch: int, tokens: int, setup: StepSetup) -> int:
    """K and V of every layer for ``batch`` sequences of ``tokens`` (grouped-query: kv_heads only)."""
    if spec.family != "decoder":
        return 0
    window = min(tokens, spec.sliding_window) if spec.sliding_window else tokens
    return 2 * spec.layers * spec.kv_dim * weight_bytes(setup) * batch * window


def _buffers(spec: ModelSpec, setup: StepSetup) -> int:
    if spec.family == "decoder" and spec.pos == "rope":
        return 2 * spec.max_seq * spec.head_dim * weight_bytes(setup)
    return 0


def prefill_transient(spec: ModelSpec, setup: StepSetup) -> int:
    """Largest set of tensors alive at once in a no-grad forward, per the trace.

    Inside the MLP the residual, the norm output and the block input coexist
    with the MLP's hidden tensors: GELU's pre- and post-activation (2f), or
    SwiGLU's gate|up, silu(gate) and their product (4f). A post-norm encoder
    layer also keeps its attention sum (6h + 2f in all).
    """
    if spec.family == "mlp":
        return setup.micro_batch * (spec.widths[0] + 2 * max(spec.widths[1:])) * FP32
    h, f = spec.hidden, spec.intermediate
    e = weight_bytes(setup)
    tokens = setup.micro_batch * setup.seq_len
    if spec.family == "encoder":
        per_token = 6 * h + 2 * f
    else:
        per_token = 3 * h + (4 * f if spec.mlp == "swiglu" else 2 * f)
    return tokens * per_token * e


def prefill_peak(spec: ModelSpec, setup: StepSetup) -> int:
    """Weights + buffers + input ids + prefill transient: what the serve trace measures."""
    weights = count_params(spec).total * weight_bytes(setup) + _buffers(spec, setup)
    inputs = setup.micro_batch * (spec.widths[0] * FP32 if spec.family == "mlp"
                                  else setup.seq_len * 8)
    return weights + inputs + prefill_transient(spec, setup)


def serving_memory(spec: ModelSpec, setup: StepSetup, *, context_gib: float = 0.0
                   ) -> MemoryBreakdown:
    """Peak bytes per device while serving ``micro_batch`` requests of ``seq_len`` + output tokens.

    Tensor parallelism (``setup.tp``) splits the weights and the KV cache.
    """
    tp = 1 / max(setup.tp, 1)
    weights = (count_params(spec).total * weight_bytes(setup) + _buffers(spec, setup)) * tp
    kv = kv_cache_bytes(spec, setup.micro_batch, setup.seq_len + setup.output_tokens, setup) * tp
    transient = prefill_transient(spec, setup) * tp
    peak = weights + kv + transient
    overhead = context_gib * GIB + FRAGMENTATION * peak if context_gib else 0.0
    return MemoryBreakdown(weights=int(weights), gradients=0, optimizer=0,
                           activations=int(kv + transient), overhead=int(overhead),
                           phase="prefill", detail={"KV cache": int(kv),
                                                    "prefill activations": int(transient)})


@dataclass(frozen=True)
class ServingTime:
    """Seconds for one batch of requests on one replica."""

    prefill_s: float
    decode_s: float

    @property
    def total_s(self) -> float:
        return self.prefill_s + self.decode_s

    def latency(self, batch: int, output_tokens: int) -> dict[str, float]:
        """What one request of a batch sees, and what the replica serves per second.

        Time to first token is the batch's prefill (every prompt of the batch is
        prefilled before decoding starts); each further token takes one decode
        step of the whole batch; all requests of a batch finish together.
        """
        per_token = self.decode_s / output_tokens if output_tokens else 0.0
        return {"time_to_first_token_s": self.prefill_s, "time_per_output_token_s": per_token,
                "request_latency_s": self.total_s,
                "requests_per_s": batch / self.total_s if self.total_s else 0.0,
                "output_tokens_per_s": batch * output_tokens / self.total_s
                if self.total_s else 0.0}


def serving_time(spec: ModelSpec, setup: StepSetup, *, flops_per_s: float,
                 bytes_per_s: float) -> ServingTime:
    """Prefill at the achieved FLOP rate; each decode step at the roofline's slower side.

    ``flops_per_s`` and ``bytes_per_s`` are achieved (not peak) rates of the
    whole replica (all its tensor-parallel devices).
    """
    from shoestring.plan.compute import step_flops

    prefill = step_flops(spec, setup).total / flops_per_s
    if spec.family != "decoder" or setup.output_tokens == 0:
        return ServingTime(prefill, 0.0)
    counts = count_params(spec)
    b = setup.micro_batch
    weights = counts.total * weight_bytes(setup)
    decode = 0.0
    # Sum over generated tokens in closed form: the KV cache grows linearly.
    n = setup.output_tokens
    mean_len = setup.seq_len + (n + 1) / 2
    kv_read = kv_cache_bytes(spec, b, 1, setup) * mean_len
    flops = 2 * b * counts.matmul_per_token + 4 * b * spec.layers * spec.hidden * mean_len
    decode = n * max(flops / flops_per_s, (weights + kv_read) / bytes_per_s)
    return ServingTime(prefill, decode)


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
    from shoestring.plan.search import Fit, _dtype, _fits, _tp_options

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
