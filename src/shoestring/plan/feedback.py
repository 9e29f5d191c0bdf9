"""Finished ``shoestring train`` runs as measurements for later plans.

Each finished run's ledger row holds its summary (``metrics_json``):
``model``, ``batch_size``, ``steps``, ``train_seconds``, ``parameters`` and,
when the engine records it, ``peak_memory_bytes``. A run of the planned model
(same name, or same parameter count) on the same device becomes a
(FLOPs per step, seconds per step) point; its measured peak memory is shown
beside the estimate. Only comparable, quiet runs feed the fit: runs on this
CPU in one process, at the thread count most runs used, and no slower than
1.5× the fastest run of the same batch, sequence and precision (a shared
machine's load only ever slows a run; release 0.1 fitted runs slowed 25×).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shoestring.plan.compute import step_flops
from shoestring.plan.rates import Measurement
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec, count_params

FINISHED = ("finished", "budget_exhausted")
# Load on a shared machine only ever slows a run down: a run more than this
# much slower per step than the fastest comparable run (same batch, sequence,
# precision and threads) was measured under load and is left out of the fit.
SLOW_RATIO = 1.5


@dataclass(frozen=True)
class RunObservation:
    name: str
    batch_size: int
    seconds_per_step: float
    peak_memory_bytes: int | None
    seq_len: int | None = None
    dtype: str = "fp32"
    threads: int | None = None
    left_out: str | None = None   # why the throughput fit does not use it


def _matches(spec: ModelSpec, summary: dict[str, Any]) -> bool:
    return summary.get("model") == spec.name or \
        summary.get("parameters") == count_params(spec).total


def _dtype(summary: dict[str, Any]) -> str:
    return "fp32" if summary.get("precision", "fp32") == "fp32" else "bf16"


def observations(spec: ModelSpec, runs: list[Any]) -> list[RunObservation]:
    """Per-step time (and peak memory) of the finished runs of ``spec`` on this CPU.

    ``runs`` are ledger rows (``RunRecord``) or anything with ``status``,
    ``name`` and a ``metrics`` dict. Runs that are not comparable or were slowed
    by load carry ``left_out``: GPU and multi-process runs; runs with another
    thread count than most; runs over :data:`SLOW_RATIO` × the fastest run of
    the same batch, sequence and precision.
    """
    out = []
    for run in runs:
        m = run.metrics
        if run.status not in FINISHED or not _matches(spec, m):
            continue
        steps, secs, batch = m.get("steps"), m.get("train_seconds"), m.get("batch_size")
        if not steps or not secs or not batch:
            continue
        seq = None
        if m.get("tokens"):
            seq = max(1, round(m["tokens"] / (steps * batch)))
        why = None
        if not str(m.get("device", "cpu")).startswith("cpu"):
            why = f"ran on {m.get('device')}, not this CPU"
        elif (m.get("world_size") or 1) > 1:
            why = f"ran on {m['world_size']} processes"
        out.append(RunObservation(run.name, int(batch), secs / steps,
                                  m.get("peak_memory_bytes"), seq, _dtype(m), m.get("threads"),
                                  why))
    return _leave_out_uncomparable(out)


def _leave_out_uncomparable(obs: list[RunObservation]) -> list[RunObservation]:
    from collections import Counter
    from dataclasses import replace

    usable = [o for o in obs if o.left_out is None]
    counts = Counter(o.threads for o in usable if o.threads is not None)
    threads = counts.most_common(1)[0][0] if counts else None
    fastest: dict[tuple, float] = {}
    for o in usable:
        if threads is None or o.threads in (None, threads):
            key = (o.batch_size, o.seq_len, o.dtype)
            fastest[key] = min(fastest.get(key, float("inf")), o.seconds_per_step)
    out = []
    for o in obs:
        if o.left_out is None and threads is not None and o.threads not in (None, threads):
            o = replace(o, left_out=f"{o.threads} threads (most runs: {threads})")
        elif o.left_out is None:
            best = fastest[(o.batch_size, o.seq_len, o.dtype)]
            if o.seconds_per_step > SLOW_RATIO * best:
                o = replace(o, left_out=f"{o.seconds_per_step / best:.1f}× slower per step than "
                            "the fastest comparable run (slowed by load)")
        out.append(o)
    return out


def run_measurements(spec: ModelSpec, runs: list[Any], *, device: str = "cpu-local",
                     seq_len: int | None = None) -> list[Measurement]:
    """Measurements for the rate fit from the comparable, quiet runs (see :func:`observations`)."""
    points = []
    for obs in observations(spec, runs):
        if obs.left_out:
            continue
        seq = obs.seq_len or seq_len or (1 if spec.family == "mlp" else spec.max_seq)
        prec = "fp32" if obs.dtype == "fp32" else "bf16-mixed"
        setup = StepSetup(micro_batch=obs.batch_size, seq_len=seq, precision=prec,
                          kernels="cpu")
        points.append(Measurement(device, spec.name, obs.dtype,
                                  float(step_flops(spec, setup).total), obs.seconds_per_step,
                                  f"run {obs.name}"))
    return points
def load_runs(db_url: str, limit: int = 200) -> list[Any]:
    """Recent ledger rows (an empty list when the ledger does not exist yet)."""
    from shoestring.ledger.db import LedgerMissing
    from shoestring.ledger.runs import RunLedger

    try:
        ledger = RunLedger(db_url, create=False)
    except LedgerMissing:
        return []
    try:
        return ledger.list(limit=limit)
    finally:
        ledger.close()
