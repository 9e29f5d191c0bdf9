"""Finished ``shoestring train`` runs as measurements for later plans.

Each finished run's ledger row holds its summary (``metrics_json``):
``model``, ``batch_size``, ``steps``, ``train_seconds``, ``parameters`` and,
when the engine records it, ``peak_memory_bytes``. A run of the planned model
(same name, or same parameter count) on the same device becomes a
(FLOPs per step, seconds per step) point; its measured peak memory is shown
beside the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shoestring.plan.compute import step_flops
from shoestring.plan.rates import Measurement
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec, count_params

FINISHED = ("finished", "budget_exhausted")


@dataclass(frozen=True)
class RunObservation:
    name: str
    batch_size: int
    seconds_per_step: float
    peak_memory_bytes: int | None


def _matches(spec: ModelSpec, summary: dict[str, Any]) -> bool:
    return summary.get("model") == spec.name or \
        summary.get("parameters") == count_params(spec).total


def observations(spec: ModelSpec, runs: list[Any]) -> list[RunObservation]:
    """Per-step time (and peak memory) of the finished runs of ``spec``.

    ``runs`` are ledger rows (``RunRecord``) or anything with ``status``,
    ``name`` and a ``metrics`` dict.
    """
    out = []
    for run in runs:
        m = run.metrics
        if run.status not in FINISHED or not _matches(spec, m):
            continue
        steps, secs, batch = m.get("steps"), m.get("train_seconds"), m.get("batch_size")
        if not steps or not secs or not batch:
            continue
        out.append(RunObservation(run.name, int(batch), secs / steps,
                                  m.get("peak_memory_bytes")))
    return out


def run_measurements(spec: ModelSpec, runs: list[Any], *, device: str = "cpu-local",
                     seq_len: int | None = None) -> list[Measurement]:
    """Measurements for the rate fit; training runs here are fp32 on the CPU."""
    seq = seq_len or (1 if spec.family == "mlp" else spec.max_seq)
    points = []
    for obs in observations(spec, runs):
        setup = StepSetup(micro_batch=obs.batch_size, seq_len=seq, precision="fp32",
                          kernels="cpu")
        points.append(Measurement(device, spec.name, "fp32", float(step_flops(spec, setup).total),
                                  obs.seconds_per_step, f"run {obs.name}"))
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
