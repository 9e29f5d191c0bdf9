"""The planner against published measurements: memory, throughput, whole runs, longest context.

    python bench/plan_published.py            # the comparison table (markdown)
    python bench/plan_published.py --json     # every row with its predictions

Each row of bench/plan_published.toml is one published measurement with the
recipe it ran; the planner prices exactly that recipe (no search) on the
catalog device it ran on. Aims (issue 14): peak memory within 15% and never
more than 5% under; time within 25%. A "longest context" row compares the
planner's --largest context answer with the published one: a longer
predicted context means the planner predicts *less* memory (the dangerous
direction), so it is held to the same never-more-than-5%-over rule.
tests/unit/plan/test_plan_published.py recomputes every row and checks that
docs/plan.md shows the same figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("plan_published.toml")
GIB = 1024 ** 3
# A published time that implies more than this share of the card's dense bf16
# peak (its tokens/s × the planner's executed FLOPs per token) is marked ⚠ and
# counted apart: the highest whole-step utilisations we found published are
# nanochat's ~74% MFU on an A100 (karpathy/nanochat PR #147), llm-foundry's 64%
# (7B, A100) and PaLM's 57.8% HFU.
IMPLAUSIBLE_UTILISATION = 0.80


@dataclass(frozen=True)
class Compared:
    """One published figure beside the planner's."""

    row: str
    quantity: str      # "memory", "tokens/s", "hours", "cost", "GPU-hours", "context"
    measured: float
    predicted: float
    unit: str
    implied: float | None = None   # time figures: the utilisation the published figure implies

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1

    @property
    def implausible(self) -> bool:
        """The published figure implies more of the card's dense peak than any whole
        training step we found published (see IMPLAUSIBLE_UTILISATION)."""
        return self.implied is not None and self.implied > IMPLAUSIBLE_UTILISATION

    def within_aim(self) -> bool:
        e = self.error
        if self.quantity == "memory":
            return -0.05 <= e <= 0.15
        if self.quantity == "context":   # more context predicted = less memory predicted
            return -0.15 <= e <= 0.05
        return abs(e) <= 0.25


def load_rows(path: Path = DATA) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    data = tomllib.loads(path.read_text())
    return data["row"], data.get("models", {})


def _spec(name: str, models: dict[str, Any]):
    from shoestring.plan.presets import load_preset
    from shoestring.plan.specs import ModelSpec

    if name in models:
        return ModelSpec.model_validate({"name": name, **models[name]})
    return load_preset(name)


def compare_row(row: dict[str, Any], models: dict[str, Any]) -> list[Compared]:
    """The planner's figures for one published row."""
    from shoestring.plan.catalog import default_catalog
    from shoestring.plan.config import resolve_plan_config
    from shoestring.plan.largest import longest_context
    from shoestring.plan.rates import RateBook
    from shoestring.plan.search import time_setup
    from shoestring.plan.setup import StepSetup
    from shoestring.plan.workload import Workload

    spec = _spec(row["model"], models)
    device = default_catalog().get(row["device"])
    fields = dict(row["setup"])
    fields["compiled"] = row.get("plan", {}).get("compile", False)
    fields.setdefault("fused_optimizer", False)
    if "lora_targets" in fields:
        fields["lora_targets"] = tuple(fields["lora_targets"])
    plan_fields = dict(row.get("plan", {}))
    price = plan_fields.pop("price_per_gpu_hour", None)
    cfg = resolve_plan_config({"model": row["model"] if row["model"] not in models
                               else "gpt2-124m", **plan_fields})
    measured = row["measured"]
    rate = RateBook()
    out: list[Compared] = []
    if "context" in measured:
        setup = StepSetup(**fields, kernels="cuda")
        got = longest_context(spec, setup, device)
        out.append(Compared(row["id"], "context", measured["context"], got, "tokens"))
        return out
    seq = fields.get("seq_len", 1024)
    setup = StepSetup(**fields, kernels="cuda")
    tokens = row.get("tokens", setup.micro_batch * setup.grad_accum * setup.dp * seq * 100)
    batch = setup.micro_batch * setup.grad_accum * setup.dp
    work = Workload("pretrain" if setup.finetune == "full" and "hours" in measured
                    or "gpu_hours" in measured else "finetune", seq, batch, float(tokens),
                    setup.finetune)
    if "hours" not in measured and "gpu_hours" not in measured:
        # Steady-state throughput: no evaluations, checkpoints or failures.
        cfg = cfg.model_copy(update={"eval_fraction": 0.0, "checkpoint_write_gbs": 1e9})
    fit = time_setup(spec, work, device, setup, rate, cfg)
    if "memory_gib" in measured:
        mem = fit.memory
        value = mem.peak_tensors if measured.get("memory_kind") == "active" else mem.total
        out.append(Compared(row["id"], "memory", measured["memory_gib"], value / GIB, "GiB"))
    if "tokens_per_s" in measured:
        tps = batch * seq / fit.step_s / (setup.dp * setup.tp)
        out.append(Compared(row["id"], "tokens/s", measured["tokens_per_s"], tps, "tokens/s"))
    implied = implied_utilisation(spec, setup, device, measured, row.get("tokens"))
    row_implied[row["id"]] = implied
    out = [c if c.quantity == "memory" else replace(c, implied=implied) for c in out]
    if "hours" in measured:
        out.append(Compared(row["id"], "hours", measured["hours"], fit.hours, "h", implied))
    if "cost_usd" in measured and price is not None:
        out.append(Compared(row["id"], "cost", measured["cost_usd"],
                            fit.hours * price * setup.dp * setup.tp, "$", implied))
    if "gpu_hours" in measured:
        out.append(Compared(row["id"], "GPU-hours", measured["gpu_hours"],
                            fit.hours * setup.dp * setup.tp, "GPU-h", implied))
    return out


row_implied: dict[str, float | None] = {}


def implied_utilisation(spec, setup, device, measured: dict[str, Any],
                        tokens: float | None) -> float | None:
    """The hardware FLOPs utilisation a published throughput claims: its tokens/s per
    device × the planner's executed FLOPs per token (recomputation and LoRA's skipped
    weight gradients counted) ÷ the card's dense bf16 peak. Above ~0.8 no whole training
    step we know of reaches it; above 1 the figure cannot be what the recipe ran."""
    from shoestring.plan.compute import step_flops

    per_device_tokens = setup.micro_batch * setup.grad_accum * setup.seq_len
    if "tokens_per_s" in measured:
        tps = measured["tokens_per_s"]
    elif "hours" in measured and tokens:
        tps = tokens / (measured["hours"] * 3600) / (setup.dp * setup.tp)
    elif "gpu_hours" in measured and tokens:
        tps = tokens / (measured["gpu_hours"] * 3600)
    else:
        return None
    flops_per_token = step_flops(spec, setup).total / per_device_tokens / setup.tp
    return tps * flops_per_token / device.peak("bf16")


def compare_all(path: Path = DATA) -> list[tuple[dict[str, Any], list[Compared]]]:
    rows, models = load_rows(path)
    return [(row, compare_row(row, models)) for row in rows]


def _fmt(value: float, unit: str) -> str:
    if unit == "GiB":
        return f"{value:.1f} GiB"
    if unit == "$":
        return f"${value:,.0f}"
    if unit == "h":
        return f"{value:,.1f} h"
    return f"{value:,.0f} {unit}"


def markdown(results: list[tuple[dict[str, Any], list[Compared]]]) -> str:
    """The table in docs/plan.md."""
    lines = ["| measurement | source | quantity | published | planner | error "
             "| published implies |",
             "|---|---|---|---|---|---|---|"]
    for row, comps in results:
        for c in comps:
            mark = "" if c.within_aim() else " ✗"
            implied = "" if c.implied is None else \
                f"{c.implied:.0%} of peak" + (" ⚠" if c.implausible else "")
            lines.append(f"| {row['what']} | [{row['source']}]({row['url']}) | {c.quantity} | "
                         f"{_fmt(c.measured, c.unit)} | {_fmt(c.predicted, c.unit)} | "
                         f"{c.error:+.0%}{mark} | {implied} |")
    return "\n".join(lines)


def summary(results: list[tuple[dict[str, Any], list[Compared]]]) -> str:
    """Figures within the aim, by kind (memory −5%…+15%, context −15%…+5%, time ±25%);
    time figures also without those whose published value is implausible (⚠)."""
    kinds = {"memory": ("memory",), "longest context": ("context",),
             "time and cost": ("tokens/s", "hours", "cost", "GPU-hours")}
    comps = [c for _, cs in results for c in cs]
    informed = {(row["id"], q) for row, _ in results for q in row.get("informed", ())}
    parts = []
    held = []
    for label, quantities in kinds.items():
        out = [c for c in comps if c.quantity in quantities and (c.row, c.quantity) not in informed]
        held.append(f"{label} {sum(c.within_aim() for c in out)} of {len(out)}")
        mine = [c for c in comps if c.quantity in quantities]
        part = f"{label}: {sum(c.within_aim() for c in mine)} of {len(mine)}"
        plausible = [c for c in mine if not c.implausible]
        if len(plausible) < len(mine):
            part += (f" ({sum(c.within_aim() for c in plausible)} of {len(plausible)} "
                     f"without the {len(mine) - len(plausible)} marked ⚠)")
        parts.append(part)
    return "within the aim — " + "; ".join(parts) + \
        ".\nheld out (figures that informed no constant) — " + ", ".join(held)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    results = compare_all()
    if args.json:
        print(json.dumps([{"id": r["id"], "what": r["what"], "source": r["url"],
                           "implied_utilisation": row_implied.get(r["id"]),
                           "figures": [c.__dict__ | {"error": c.error} for c in comps]}
                          for r, comps in results], indent=2))
        return 0
    print(markdown(results))
    print(f"\n{summary(results)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
