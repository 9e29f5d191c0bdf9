"""``shoestring plan``: memory, compute, time and dollars before a cent is spent (CLI only)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from shoestring.cli.command import Command
from shoestring.cli.context import CliContext, cli_context
from shoestring.cli.flags import Renamed, config_flags
from shoestring.plan.config import CHECKPOINTING_0_1

HELP = """Plan a training, fine-tuning or serving job: does it fit, where, how long, what cost.

MODEL is a preset (gpt2-124m, llama-3-8b, bert-base, seed-mlp, ...), a Hugging
Face config.json, or a Shoestring run folder.

\b
Examples:
  shoestring plan gpt2-124m --tokens 1e9
  shoestring plan llama-3-8b --finetune lora --trace
  shoestring plan llama-3-8b --serve --requests 100000 --context 2048
  shoestring plan seed-mlp --calibrate --json
  shoestring plan mistral-7b --finetune full --budget 200 --deadline 24
"""

GIB = 1024 ** 3


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / GIB:,.2f}"


def _hours(h: float) -> str:
    return f"{h * 3600:,.1f} s" if h < 1 / 60 else (f"{h * 60:,.1f} min" if h < 1 else
                                                    f"{h:,.1f} h")


def _strategy(s: dict[str, Any]) -> str:
    prec = s["precision"].replace("-mixed", "")
    if "batch" in s:
        return f"{prec} b{s['batch']}" + (f" TP{s['tensor_parallel']}"
                                          if s["tensor_parallel"] > 1 else "") + \
            (f" ×{s['replicas']} replicas" if s.get("replicas", 1) > 1 else "")
    parts = [prec]
    if s["finetune"] != "full":
        parts.append(s["finetune"])
    parts.append(f"{s['micro_batch']}×{s['grad_accum']}")
    if s["tensor_parallel"] > 1:
        parts.append(f"TP{s['tensor_parallel']}")
    if s["data_parallel"] > 1:
        parts.append(f"Z{s['zero_stage']}" if s["zero_stage"] else "DDP")
    if s["checkpointing"] != "none":
        parts.append("ckpt")
    if s.get("offload_activations"):
        parts.append("offload")
    if s.get("optimizer_in_backward"):
        parts.append("step-in-bwd")
    if s.get("optimizer") not in (None, "adamw"):
        parts.append(s["optimizer"])
    if s.get("loss_chunks", 1) > 1:
        parts.append(f"CE/{s['loss_chunks']}")
    return " ".join(parts)


def _render(c: CliContext, r: dict[str, Any], top: int) -> None:
    w = r["workload"]
    what = {"serve": f"serve {w['total']:,.0f} requests, batch {w['global_batch']}",
            "finetune": f"{w['finetune']} fine-tune on {w['total']:.3g} tokens",
            "pretrain": f"train on {w['total']:.3g} {'samples' if r['family'] == 'mlp' else 'tokens'}"
            }[w["kind"]]
    c.out.print(f"[bold]{r['model']}[/]: {r['params']:,} parameters "
                f"({r['trained_params']:,} trained); {what}, seq {w['seq_len']}, "
                f"batch {w['global_batch']}", highlight=False)
    f = r["flops"]
    c.out.print(f"FLOPs: {f['total']:.3g} executed ({f['model_total']:.3g} model FLOPs) over "
                f"{f['steps']:,} steps", highlight=False)
    m = r["memory"]
    best = next((o for o in r["options"] if o["fits"]), None)
    where = f"{best['gpus']}× {best['hardware']}, " if best else ""
    if m:
        c.out.print(f"Memory per device ({where}peak at {m['phase']}): " + ", ".join(
            f"{k} {_gib(m[k])}" for k in ("weights", "gradients", "optimizer", "activations",
                                          "overhead", "total")) + " GiB", highlight=False)
    for v in r.get("single_device", []):
        c.out.print(("[green]" if v["fits"] else "[red]") + escape(v["line"][0].upper()
                    + v["line"][1:]) + "[/]", highlight=False)
    serve = w["kind"] == "serve"
    table = Table(title="Options ranked by cost to finish (best count per device and cloud; "
                  "within 2% of each other, the faster first)"
                  + ("; on-demand before spot for an endpoint" if serve else ""),
                  caption="strategy: precision, lora/qlora, micro-batch×accumulation, TPn "
                  "tensor parallel, DDP or Zn (ZeRO stage n), ckpt (activation checkpointing)")
    cols = ["#", "hardware", "cloud", "n", "spot", "strategy", "time", "cost $", "GiB/dev"]
    if serve:
        cols += ["first token", "per token", "req/s"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("hardware", "cloud", "spot", "strategy")
                         else "right")
    seen: set[tuple] = set()
    shown = 0
    for o in r["options"]:
        key = (o["hardware"], o["cloud"], o["spot"])
        if not o["fits"] or key in seen:
            continue
        seen.add(key)
        shown += 1
        mem = o["memory_per_device"]["total"] if o["memory_per_device"] else None
        row = [str(shown), o["hardware"], o["cloud"], str(o["gpus"]), "yes" if o["spot"] else "",
               _strategy(o["strategy"]), _hours(o["hours"]), f"{o['cost_usd']:,.2f}", _gib(mem)]
        if serve:
            lat = o.get("latency") or {}
            row += [_seconds(lat.get("time_to_first_token_s")),
                    _seconds(lat.get("time_per_output_token_s")),
                    f"{lat.get('requests_per_s', 0):,.2f}"]
        table.add_row(*row)
        if shown >= top:
            break
    if shown:
        c.out.print(table)
        _render_front(c, r.get("pareto_front", []), top)
    else:
        reasons = sorted({o["reason"] for o in r["options"] if o["reason"]})
        c.out.print("[bold red]Nothing fits.[/] " + "; ".join(reasons[:3]), highlight=False)
    _render_largest(c, r.get("largest", []), w)
    for label, key in (("Fastest within budget", "fastest_within_budget"),
                       ("Cheapest within deadline", "cheapest_within_deadline")):
        o = r.get(key)
        if o:
            c.out.print(f"{label}: {o['gpus']}× {o['hardware']} on {o['cloud']}"
                        f"{' (spot)' if o['spot'] else ''}: {_hours(o['hours'])}, "
                        f"${o['cost_usd']:,.2f}", highlight=False)
    for run in r.get("measured_runs", []):
        peak = f", peak {_gib(run['peak_memory_bytes'])} GiB" if run.get("peak_memory_bytes") \
            else ""
        left = f" [dim](left out: {escape(run['left_out'])})[/]" if run.get("left_out") else ""
        c.out.print(f"Measured: run {run['name']} at batch {run['batch_size']}: "
                    f"{run['seconds_per_step'] * 1000:.2f} ms/step{peak}{left}", highlight=False)
    if r.get("trace"):
        _render_trace(c, r["trace"])
    for n in r["notes"]:
        c.out.print(f"[dim]Note: {escape(n)}[/]", highlight=False)
    for warning in r["warnings"]:
        c.err.print(f"[yellow]Warning:[/] {warning}", highlight=False)


def _seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1000:,.0f} ms" if s < 1 else f"{s:,.1f} s"


def _render_front(c: CliContext, front: list[dict[str, Any]], top: int) -> None:
    """The time–cost Pareto front, cheapest first: each row is faster than the one above."""
    if len(front) < 2:
        return
    table = Table(title="Time–cost Pareto front (no option is both faster and cheaper)")
    for col in ("hardware", "cloud", "n", "spot", "time", "cost $"):
        table.add_column(col, justify="right" if col in ("n", "time", "cost $") else "left")
    rows = front[::-1]
    if len(rows) > top:  # keep both ends and an even spread between them
        step = (len(rows) - 1) / (top - 1)
        rows = [rows[round(i * step)] for i in range(top)]
    for o in rows:
        table.add_row(o["hardware"], o["cloud"], str(o["gpus"]), "yes" if o["spot"] else "",
                      _hours(o["hours"]), f"{o['cost_usd']:,.2f}")
    if len(front) > top:
        table.caption = f"{top} of {len(front)} options on the front (all of them: --json)"
    c.out.print(table)


def _render_largest(c: CliContext, rows: list[dict[str, Any]], w: dict[str, Any]) -> None:
    if not rows:
        return
    what = rows[0]["what"]
    at = f"seq {w['seq_len']}" if what == "micro-batch" else "micro-batch as given (else 1)"
    table = Table(title=f"Largest {what} that fits on one device ({at})")
    for col in ("hardware", what, "GiB", "tokens/s", "strategy"):
        table.add_column(col, justify="left" if col in ("hardware", "strategy") else "right")
    for x in rows:
        tps = x.get("tokens_per_second")
        table.add_row(x["device"], f"{x['value']:,}" if x["value"] else "does not fit",
                      _gib(x["memory_bytes"]), f"{tps:,.0f}" if tps else "-",
                      _strategy(x["strategy"]) if x["strategy"] else "")
    c.out.print(table)


def _render_trace(c: CliContext, t: dict[str, Any]) -> None:
    s = t["setup"]
    table = Table(title=f"Trace (fake tensors) vs analytic: one {s['mode']} step, micro-batch "
                        f"{s['micro_batch']}, seq {s['seq_len']}, {s['precision']}, "
                        f"{s['finetune']}, checkpointing {s['checkpointing']}")
    for col in ("", "analytic", "trace", "error"):
        table.add_column(col, justify="right")
    table.add_row("FLOPs", f"{t['analytic_flops']:.4g}", f"{t['trace_flops']:.4g}",
                  f"{t['flops_error']:+.2%}")
    table.add_row("peak GiB", _gib(t["analytic_peak_bytes"]), _gib(t["trace_peak_bytes"]),
                  f"{t['memory_error']:+.2%}")
    for k, v in t["trace"]["peak_by_category"].items():
        if v:
            table.add_row(f"  trace {k}", "", _gib(v), "")
    c.out.print(table)
    c.out.print(f"[dim]Trace took {t['trace']['seconds']:.1f} s (no real memory allocated)[/]")


# Release 0.1's plan flags, now named as `shoestring train` names them.
RENAMED = [
    Renamed("--micro-batch", "micro_batch_size", "--micro-batch-size", type=click.INT),
    Renamed("--gpus", "nproc", "--nproc", type=click.INT),
    Renamed("--checkpointing", "activation_checkpointing",
            "--activation-checkpointing / --no-activation-checkpointing (unset: auto)",
            type=click.Choice(["auto", "none", "full"]), convert=CHECKPOINTING_0_1.get),
]


def _plan_command() -> click.Command:
    from shoestring.plan.config import PlanConfig

    flags = config_flags(PlanConfig, skip={"model"}, renamed=RENAMED, old_values={
        "precision": {"bf16-mixed": "bf16"}}, aliases={
            "checkpoint_interval_min": ["--checkpoint-interval"],
            "deadline_hours": ["--deadline"]})

    @click.pass_context
    def plan_cmd(ctx: click.Context, model: str, calibrate: bool, as_json: bool,
                 **params: Any) -> None:
        from shoestring.plan.api import calibrate_and_store, plan_with_ledger
        from shoestring.plan.config import resolve_plan_config

        c = cli_context(ctx)
        cfg = resolve_plan_config({"model": model, **flags.values(params)})
        probes = calibrate_and_store(cfg, c.db_url()) if calibrate else []
        result = plan_with_ledger(cfg, c.db_url()).to_dict()  # "config": the resolved one
        if probes:
            result["calibration"] = probes
        if as_json:
            c.out.print_json(json.dumps(result, default=str))
            return
        for p in result.get("calibration", []):
            c.out.print(f"Calibrated {p['model']} ({p['dtype']}, batch {p['batch']}): "
                        f"{p['seconds_per_step'] * 1000:.3f} ms/step, "
                        f"{p['flops_per_step'] / p['seconds_per_step'] / 1e9:.1f} GFLOP/s",
                        highlight=False)
        _render(c, result, cfg.top)

    params = [click.Argument(["model"]), *flags.params,
              click.Option(["--calibrate"], is_flag=True,
                           help="Time real steps here first; store them in the ledger."),
              click.Option(["--json", "as_json"], is_flag=True,
                           help="Print JSON instead of tables.")]
    return Command("plan", callback=plan_cmd, params=params, help=HELP,
                   short_help="Plan a job: does it fit, where, how long, what cost.")


def register(group: click.Group) -> None:
    """Add ``plan`` to the ``shoestring`` command group."""
    group.add_command(_plan_command(), "plan")
