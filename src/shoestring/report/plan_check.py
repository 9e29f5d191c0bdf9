"""The planner's prediction for a finished run, beside what the run measured.

The planner (``shoestring.plan``) predicts peak memory and step time from a
model's shapes and the step setup; a run measures both. Shown side by side,
the reader sees how far to trust the next plan. The estimate is the catalog
default for this kind of device (``cpu-local`` or the CUDA card's name), the
same one ``train --plan-first`` prints, not one calibrated on this run.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from shoestring.errors import ShoestringError

PLANNED_FAMILIES = ("mlp", "gpt", "encoder")


@dataclass(frozen=True)
class PlanRow:
    what: str
    planned: float | None
    measured: float | None
    unit: str
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.planned or self.measured is None:
            return None
        return self.measured / self.planned


def plan_vs_measured(card: dict[str, Any] | None, config_text: str | None,
                     summary: dict[str, Any] | None) -> tuple[list[PlanRow], str | None]:
    """Rows (planned, measured) for peak memory, seconds per step and training seconds;
    or no rows and the reason none could be made."""
    if not card or not summary or not config_text:
        return [], "needs the model card, config.toml and summary.json of a finished run"
    arch = card.get("architecture") or {}
    if arch.get("family") not in PLANNED_FAMILIES:
        return [], f"the planner does not model the {arch.get('family')!r} family"
    try:
        return _rows(arch, card, config_text, summary), None
    except (ShoestringError, KeyError, ValueError, TypeError, tomllib.TOMLDecodeError) as exc:
        return [], f"could not plan this run: {getattr(exc, 'message', exc)}"


def _rows(arch, card, config_text, summary) -> list[PlanRow]:
    from shoestring.plan.catalog import default_catalog
    from shoestring.plan.compute import step_flops
    from shoestring.plan.memory import estimate_memory
    from shoestring.plan.preflight import setup_for
    from shoestring.plan.presets import spec_from_architecture
    from shoestring.plan.rates import RateBook

    train = dict(tomllib.loads(config_text).get("train") or {})
    train.setdefault("batch_size", summary.get("batch_size") or 1)
    train.setdefault("optimizer", "adamw")
    device = "cuda" if str(summary.get("device", "cpu")).startswith("cuda") else "cpu"
    spec = spec_from_architecture(arch, arch.get("name") or summary.get("model") or "model")
    setup = setup_for(SimpleNamespace(**train), spec, device)
    memory = estimate_memory(spec, setup).total
    dev_name = "cpu-local" if device == "cpu" else str(summary.get("device_name"))
    rate = RateBook()(default_catalog().get(dev_name),
                      "fp32" if setup.precision == "fp32" else "bf16")
    per_step = rate.overhead_s + step_flops(spec, setup).total / rate.flops_per_s
    steps = int(summary.get("steps") or 0)
    seconds = summary.get("train_seconds")
    measured_step = seconds / steps if steps and seconds else None
    mem_note = ("process peak RSS (Python, libraries and data included)" if device == "cpu"
                else "torch.cuda.max_memory_allocated")
    return [
        PlanRow("peak memory", memory / 2**20, (summary.get("peak_memory_bytes") or 0) / 2**20
                or None, "MiB", mem_note),
        PlanRow("seconds per step", per_step, measured_step, "s",
                f"{dev_name}: {rate.source}"),
        PlanRow(f"training time ({steps:,} steps)", per_step * steps if steps else None,
                seconds, "s", ""),
    ]
