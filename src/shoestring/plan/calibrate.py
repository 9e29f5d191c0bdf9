"""``--calibrate``: time a few real training steps on this machine.

Two probes, both on the device the planner calls ``cpu-local`` (or the local
GPU): a square matmul per dtype (the device's achieved peak), and — for models
small enough to train here — real steps of Shoestring's own module at two
batch sizes, timed exactly as the training engine runs them (gather a batch,
forward, loss, zero_grad, backward, optimizer step). The two batch sizes let
:func:`shoestring.plan.rates.fit_step_time` separate the per-step overhead
from the FLOP rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from shoestring.errors import ShoestringError
from shoestring.plan.build import build_module, encoder_classes
from shoestring.plan.compute import step_flops
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec, count_params

# Models above this size take too long (and too much memory) to probe on a CPU.
MAX_PROBE_PARAMS = 200_000_000
MATMUL_N = 1024
MIN_PROBE_SECONDS = 2.0
# Batches are gathered from a data-set-sized pool (up to 128 MiB of inputs), as
# the engine gathers them from the whole training split: rows gathered from a
# pool that fits in cache would make the probe faster than real training.
POOL_BYTES = 128 * 2 ** 20
MIN_STEPS, WARMUP_STEPS, MAX_STEPS = 5, 3, 500


def _timed(fn: Callable[[], None], clock: Callable[[], float]) -> tuple[float, int]:
    for _ in range(WARMUP_STEPS):
        fn()
    steps, t0 = 0, clock()
    while steps < MIN_STEPS or (clock() - t0 < MIN_PROBE_SECONDS and steps < MAX_STEPS):
        fn()
        steps += 1
    return (clock() - t0) / steps, steps


def matmul_probe(dtype: str, clock: Callable[[], float] = time.perf_counter) -> dict:
    """Achieved FLOP/s of an n×n matmul in ``dtype`` (fp32 or bf16)."""
    dt = torch.float32 if dtype == "fp32" else torch.bfloat16
    a = torch.randn(MATMUL_N, MATMUL_N, dtype=dt)
    b = torch.randn(MATMUL_N, MATMUL_N, dtype=dt)
    secs, _ = _timed(lambda: torch.mm(a, b), clock)
    return {"model": "matmul", "dtype": dtype, "batch": MATMUL_N, "seq_len": MATMUL_N,
            "flops_per_step": 2.0 * MATMUL_N ** 3, "seconds_per_step": secs}


def model_probe(spec: ModelSpec, setup: StepSetup,
                clock: Callable[[], float] = time.perf_counter) -> dict:
    """Seconds per real training step of ``spec`` at ``setup.micro_batch`` on this CPU."""
    if count_params(spec).total > MAX_PROBE_PARAMS:
        raise ShoestringError(f"{spec.name} is too large to probe on this machine",
                              hint="calibrate a smaller model; plans of large models use the "
                              "matmul probe and the catalog efficiency")
    torch.manual_seed(0)
    model = build_module(spec)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # the engine's default optimizer
    b = setup.micro_batch
    row_bytes = (spec.widths[0] * 4) if spec.family == "mlp" else setup.seq_len * 8
    pool = max(4 * b, min(65536, POOL_BYTES // row_bytes))
    if spec.family == "mlp":
        x = torch.randn(pool, spec.widths[0])
        y = torch.randint(0, spec.widths[-1], (pool,))
    else:
        x = torch.randint(0, spec.vocab_size, (pool, setup.seq_len))
        classes = encoder_classes(spec) if spec.family == "encoder" else spec.vocab_size
        shape = (pool,) if spec.family == "encoder" else (pool, setup.seq_len)
        y = torch.randint(0, classes, shape)
    order = torch.randperm(pool)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=setup.precision != "fp32")
    state = {"i": 0}

    def step() -> None:
        i = state["i"]
        start = (i * b) % (pool - b + 1)
        idx = order[start:start + b]
        state["i"] = i + 1
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        with autocast:
            loss = F.cross_entropy(model(xb), yb) if spec.family == "mlp" else model(xb, yb)[1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    secs, _ = _timed(step, clock)
    return {"model": spec.name, "dtype": "fp32" if setup.precision == "fp32" else "bf16",
            "batch": b, "seq_len": setup.seq_len if spec.family != "mlp" else 1,
            "flops_per_step": float(step_flops(spec, setup.with_(grad_accum=1)).total),
            "seconds_per_step": secs}


def calibrate(spec: ModelSpec | None, setup: StepSetup, *, dtypes: tuple[str, ...] = ("fp32",),
              clock: Callable[[], float] = time.perf_counter) -> list[dict]:
    """Probe points for the matmul and, if given and small enough, for ``spec``.

    The model is probed at ``setup.micro_batch`` and at a quarter of it (or
    four times it for an MLP, whose steps are mostly overhead), so the fit can
    tell overhead from work.
    """
    rows = [matmul_probe(d, clock) for d in dtypes]
    if spec is not None and count_params(spec).total <= MAX_PROBE_PARAMS:
        b = setup.micro_batch
        other = b * 4 if spec.family == "mlp" else max(1, b // 4)
        for batch in sorted({b, other}):
            for d in dtypes:
                prec = "fp32" if d == "fp32" else "bf16-mixed"
                rows.append(model_probe(spec, setup.with_(micro_batch=batch, precision=prec,
                                                          kernels="cpu", grad_accum=1), clock))
    threads = torch.get_num_threads()
    return [{**r, "threads": threads} for r in rows]
