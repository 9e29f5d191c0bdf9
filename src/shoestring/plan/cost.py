"""Time and dollars: FLOPs over achieved throughput, hours times price, spot preemptions.

    step seconds = overhead + executed FLOPs / (devices × peak × efficiency)   (compute)
    and, across data-parallel devices, max(compute, gradient all-reduce)       (overlapped)
    hours        = steps × step seconds / 3600
    dollars      = hours × instances × price per instance-hour
    spot dollars = dollars at the spot price × (1 + preemption overhead)

Gradient all-reduce overlaps the backward pass in PyTorch DDP/FSDP (Li et al.
2020, "PyTorch Distributed", VLDB, section 3.2.3), so the slower of the two
sets the pace. A ring all-reduce moves 2(n−1)/n of the buffer per device
(Patarasuk & Yuan 2009); ZeRO-3 moves 1.5× the data of plain data
parallelism (Rajbhandari et al. 2020, section 7). Tensor parallelism adds
four all-reduces of the activations per layer and micro-batch (Shoeybi et al.
2019, section 3), on the critical path.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec

# Bandwidth between machines when a job spans nodes, per GPU and direction:
# a 400 Gb/s InfiniBand/EFA link per 8-GPU node. Planner default; cloud
# instances range from 100 Gb/s (p4d: 400 Gb/s per 8 GPUs) to 3.2 Tb/s (p5).
INTER_NODE_GBS = 6.25
# Spot defaults: one preemption per 20 hours, 6 minutes to get a new machine
# and reload the checkpoint. Both are flags (--preemptions-per-hour, and the
# restart time in docs/plan.md).
PREEMPTIONS_PER_HOUR = 0.05
RESTART_HOURS = 0.1


@dataclass(frozen=True)
class Throughput:
    """How fast one device runs a step: a fixed per-step overhead plus FLOPs at a rate."""

    flops_per_s: float          # achieved, per device
    overhead_s: float = 0.0     # per optimizer step (Python, kernel launches, data)
    source: str = "catalog default"


def allreduce_seconds(nbytes: float, n: int, gbs: float) -> float:
    """Ring all-reduce time of ``nbytes`` over ``n`` devices at ``gbs`` GB/s per direction."""
    if n <= 1 or gbs <= 0:
        return 0.0
    return 2 * (n - 1) / n * nbytes / (gbs * 1e9)


# Latency of one small all-reduce (a decoded token's activations), before any
# bandwidth term: planner defaults of the order nccl-tests' all_reduce_perf
# reports for messages of a few KiB (~10 µs within an NVLink/NVSwitch node;
# PCIe, with no switch between the GPUs, several times that).
ALLREDUCE_LATENCY_S = {"nvlink": 10e-6, "pcie": 30e-6}


def tp_allreduce_seconds(nbytes: float, n: int, interconnect: str, gbs: float) -> float:
    """One tensor-parallel all-reduce of ``nbytes``: latency plus ring bandwidth."""
    if n <= 1:
        return 0.0
    kind = "nvlink" if interconnect.startswith("nvlink") else "pcie"
    return ALLREDUCE_LATENCY_S[kind] + allreduce_seconds(nbytes, n, gbs)


def step_seconds(spec: ModelSpec, setup: StepSetup, flops: float, rate: Throughput, *,
                 interconnect_gbs: float, devices_per_node: int,
                 inter_node_gbs: float = INTER_NODE_GBS) -> tuple[float, float]:
    """(step seconds, of which communication not hidden) for one optimizer step."""

    tp = max(setup.tp, 1)
    compute = rate.overhead_s + flops / (rate.flops_per_s * tp)
    exposed = 0.0
    if tp > 1 and spec.family != "mlp":
        e = 4 if setup.precision == "fp32" else 2
        act = setup.micro_batch * setup.seq_len * spec.hidden * e
        exposed += 4 * spec.layers * setup.grad_accum * allreduce_seconds(act, tp,
                                                                          interconnect_gbs)
    dp = max(setup.dp, 1)
    if dp > 1:
        nodes_span = dp * tp > devices_per_node
        gbs = inter_node_gbs if nodes_span else interconnect_gbs
        comm = data_parallel_seconds(spec, setup, gbs)
        if comm > compute:
            exposed += comm - compute
    return compute + exposed, exposed


def data_parallel_seconds(spec: ModelSpec, setup: StepSetup, gbs: float) -> float:
    """Per-step communication of data parallelism at ``gbs`` GB/s per device and direction.

    DDP and ZeRO-1 all-reduce the gradients once per optimizer step (gradient
    accumulation runs under ``no_sync``); ZeRO-1/2 then all-gather the updated
    weights. ZeRO-2 reduce-scatters gradients every micro-batch. ZeRO-3 (FSDP
    full-shard) all-gathers every block's weights in the forward and again in
    the backward of every micro-batch, and reduce-scatters the gradients:
    1.5× DDP's volume without accumulation (Rajbhandari et al. 2020, section
    7), far more with it — and frozen weights (LoRA) are gathered all the same.
    A ring moves (n−1)/n of a buffer per device for a gather or a scatter,
    twice that for an all-reduce (Patarasuk & Yuan 2009).
    """
    from shoestring.plan.compute import trained_params
    from shoestring.plan.specs import count_params

    n, tp = setup.dp, max(setup.tp, 1)
    if n <= 1 or gbs <= 0:
        return 0.0
    ring = (n - 1) / n
    grad_bytes = trained_params(spec, setup) * setup.param_bytes / tp
    compute_bytes = 4 if setup.precision == "fp32" else 2
    weight_bytes = count_params(spec).total * compute_bytes / tp
    accum = max(setup.grad_accum, 1)
    if setup.zero_stage >= 3:
        volume = accum * (2 * weight_bytes + grad_bytes) * ring
    elif setup.zero_stage == 2:
        volume = accum * grad_bytes * ring + weight_bytes * ring
    elif setup.zero_stage == 1:
        volume = 2 * grad_bytes * ring + weight_bytes * ring
    else:
        volume = 2 * grad_bytes * ring
    return volume / (gbs * 1e9)


def spot_overhead(hours: float, *, checkpoint_interval_h: float,
                  preemptions_per_hour: float = PREEMPTIONS_PER_HOUR,
                  restart_h: float = RESTART_HOURS) -> float:
    """Extra fraction of time a spot run spends redoing work after preemptions.

    Each preemption loses on average half a checkpoint interval of work plus
    the restart time (Young 1974, "A first order approximation to the optimum
    checkpoint interval", CACM 17(9)).
    """
    if hours <= 0:
        return 0.0
    return preemptions_per_hour * (checkpoint_interval_h / 2 + restart_h)


def optimal_checkpoint_interval_h(checkpoint_write_h: float,
                                  preemptions_per_hour: float = PREEMPTIONS_PER_HOUR) -> float:
    """Young's optimum: sqrt(2 × write time × mean time between preemptions)."""
    if preemptions_per_hour <= 0:
        return float("inf")
    return (2 * checkpoint_write_h / preemptions_per_hour) ** 0.5
