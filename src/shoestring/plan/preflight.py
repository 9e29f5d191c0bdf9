"""``shoestring train --plan-first``: will this training configuration fit here?

:func:`check_fits` turns a :class:`TrainConfig` into the planner's step setup
(model from the registry, micro-batch, precision, checkpointing, DDP/FSDP),
estimates the peak memory per device and compares it with what this machine
has free. A configuration that does not fit gets the reason and the largest
micro-batch (or the switch) that would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shoestring.plan.memory import GIB, MemoryBreakdown, estimate_memory
from shoestring.plan.presets import spec_from_architecture
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec

if TYPE_CHECKING:
    # The run-config schema sits below the planner (tests/architecture.py).
    from shoestring.train.config import TrainConfig, TrainSection


@dataclass(frozen=True)
class PlanVerdict:
    """Does the run fit; if not, why and what to change."""

    fits: bool
    reason: str
    suggestion: str | None
    memory: MemoryBreakdown | None = None
    available_bytes: int = 0
    estimated_seconds: float | None = None
    lines: list[str] = field(default_factory=list)


def human_bytes(n: float) -> str:
    """``1.50 GiB``, ``12.3 MiB``, ``512 KiB``."""
    for unit, size in (("GiB", GIB), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.2f} {unit}" if unit == "GiB" else f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def available_memory(device: str) -> int:
    """Free bytes on ``device`` now: CUDA's free memory, else the OS's MemAvailable."""
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def setup_for(train: TrainSection, spec: ModelSpec, device: str) -> StepSetup:
    """The planner's step for a ``[train]`` section (a :class:`TrainSection`, or a partial
    one read from an old run's ``config.toml``: unset fields take TrainSection's defaults)."""
    precision = getattr(train, "precision", "fp32")
    if precision == "bf16-true":
        prec = "bf16"
    elif precision in ("bf16", "fp16"):
        prec = "bf16-mixed"
    elif precision == "auto":
        prec = "bf16-mixed" if device == "cuda" else "fp32"
    else:
        prec = "fp32"
    nproc = getattr(train, "nproc", 1)
    fsdp = getattr(train, "strategy", "ddp") == "fsdp"
    micro = getattr(train, "micro_batch_size", None) or math.ceil(train.batch_size / nproc)
    seq = spec.max_seq if spec.family != "mlp" else 1
    optimizer = train.optimizer if train.optimizer in ("sgd", "adam8bit", "paged-adam8bit") \
        else "adamw"
    finetune = getattr(train, "finetune", None) or "full"
    lora: dict[str, Any] = {}
    if finetune != "full":
        lora = {"lora_rank": train.lora_rank, "lora_alpha": train.lora_alpha,
                "lora_dropout": train.lora_dropout,
                "lora_targets": _lora_roles(train.lora_targets, spec)}
    return StepSetup(
        micro_batch=micro, seq_len=seq, precision=prec,
        checkpointing="full" if getattr(train, "activation_checkpointing", False) else "none",
        optimizer=optimizer, finetune=finetune, **lora,
        # The trainer's Adam/AdamW is the fused kernel on every device (train/optim.py).
        fused_optimizer=optimizer == "adamw",
        optimizer_in_backward=getattr(train, "optimizer_in_backward", False),
        loss_chunks=getattr(train, "loss_chunks", 1),
        offload_activations=getattr(train, "offload_activations", False) and device == "cuda",
        grad_accum=max(1, math.ceil(train.batch_size / (micro * nproc))), dp=nproc,
        zero_stage=3 if fsdp and nproc > 1 else 0, kernels="cuda" if device == "cuda" else "cpu")


def _lora_roles(targets: str, spec: ModelSpec) -> tuple[str, ...]:
    """The planner's roles for ``--lora-targets`` (Hugging Face aliases and ``all``
    resolved as the trainer resolves them, shoestring.models.lora)."""
    from shoestring.models.lora import ALIASES
    from shoestring.plan.specs import layer_linears

    wanted = [ALIASES.get(t.strip(), t.strip()) for t in targets.split(",") if t.strip()]
    if "all" in wanted:
        return tuple(layer_linears(spec))
    return tuple(dict.fromkeys(wanted))


def _largest_fitting_micro(spec: ModelSpec, setup: StepSetup, budget: float) -> int:
    lo, hi = 0, setup.micro_batch
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate_memory(spec, setup.with_(micro_batch=mid)).total <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def verdict_for(spec: ModelSpec, setup: StepSetup, available: int, *,
                est_seconds: float | None = None) -> PlanVerdict:
    """Pure core of :func:`check_fits`: compare the estimate with ``available`` bytes."""
    mem = estimate_memory(spec, setup)
    first = (f"plan: {spec.name}, micro-batch {setup.micro_batch}×{setup.grad_accum} "
             f"({setup.precision}, checkpointing {setup.checkpointing}): peak "
             f"{human_bytes(mem.total)} per device ({mem.phase}); "
             f"{human_bytes(available)} free")
    lines = [first]
    if est_seconds is not None:
        shown = f"{est_seconds:,.0f}" if est_seconds >= 100 else f"{est_seconds:.2g}"
        lines.append(f"plan: about {shown} s of training (catalog throughput; "
                     "'shoestring plan --calibrate' measures this machine)")
    if mem.total <= available:
        return PlanVerdict(True, "fits", None, mem, available, est_seconds, lines)
    reason = (f"the step needs {human_bytes(mem.total)} at its peak ({mem.phase}) but only "
              f"{human_bytes(available)} are free")
    micro = _largest_fitting_micro(spec, setup, available)
    if micro >= 1:
        fix = f"set --micro-batch-size {micro} (gradients accumulate to the same batch size)"
    elif setup.checkpointing == "none" and spec.family != "mlp" and \
            estimate_memory(spec, setup.with_(micro_batch=1, checkpointing="full")).total \
            <= available:
        fix = "add --activation-checkpointing and --micro-batch-size 1"
    else:
        fix = (f"this model does not fit here even at micro-batch 1; see "
               f"'shoestring plan {spec.name}' for hardware that fits")
    return PlanVerdict(False, reason, fix, mem, available, est_seconds, lines)


def check_fits(train_config: TrainConfig, *, arch: dict[str, Any] | None = None,
               n_train: int | None = None, device: str | None = None,
               available_bytes: int | None = None) -> PlanVerdict:
    """Will ``train_config`` fit on this machine? (``shoestring train --plan-first``)

    ``arch`` (the registry architecture) and ``n_train`` (examples per epoch)
    come from the trainer, which has loaded the data already: the planner sits
    below training and never loads a training problem itself. Without them,
    :func:`shoestring.train.preflight.check_fits` loads the data first.
    """
    if arch is None:
        from shoestring.errors import ShoestringError

        raise ShoestringError("the planner's check_fits needs the model's architecture "
                              "(arch=, from the loaded data)",
                              hint="call shoestring.train.preflight.check_fits(config), which "
                              "loads the data to learn the model's shape")
    if device is None:
        import torch

        wanted = train_config.train.device
        device = "cuda" if wanted == "cuda" or (wanted == "auto" and
                                                torch.cuda.is_available()) else "cpu"
    if arch.get("family") not in ("mlp", "gpt", "encoder"):
        return PlanVerdict(True, (f"not checked: the planner does not model the "
                                  f"{arch.get('family')!r} family"), None)
    spec = spec_from_architecture(arch, train_config.model.name)
    setup = setup_for(train_config.train, spec, device)
    available = available_bytes if available_bytes is not None else available_memory(device)
    cap = train_config.train.max_memory
    if cap:
        available = min(available, int(cap * GIB))
    est = _estimate_seconds(spec, setup, train_config.train, n_train, device)
    return verdict_for(spec, setup, available, est_seconds=est)


def _estimate_seconds(spec: ModelSpec, setup: StepSetup, train: Any, n_train: int | None,
                      device: str) -> float | None:
    if not n_train:
        return None
    from shoestring.errors import ShoestringError
    from shoestring.plan.catalog import default_catalog
    from shoestring.plan.compute import step_flops
    from shoestring.plan.rates import RateBook

    steps = train.epochs * math.ceil(n_train / train.batch_size)
    if train.max_steps:
        steps = min(steps, train.max_steps)
    name = "cpu-local" if device == "cpu" else _cuda_name()
    try:
        dev = default_catalog().get(name)
    except ShoestringError:  # an unknown local GPU: no estimate rather than a wrong one
        return None
    rate = RateBook()(dev, "fp32" if setup.precision == "fp32" else "bf16")
    return steps * (rate.overhead_s + step_flops(spec, setup).total / rate.flops_per_s)


def _cuda_name() -> str:
    import torch

    return torch.cuda.get_device_name()
