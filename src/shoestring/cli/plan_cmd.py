"""``shoestring plan``: memory, compute, time and dollars before a cent is spent (CLI only)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.console import Console

from shoestring.cli.command import Command
from shoestring.cli.context import CliContext, cli_context
from shoestring.cli.flags import Renamed, config_flags
from shoestring.cli.layout import Column, print_table
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
    rows = _option_rows(r["options"], top, serve)
    if rows:
        _print_options(c.out, rows, serve)
        _print_front(c.out, r.get("pareto_front", []), top)
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


def _option_rows(options: list[dict[str, Any]], top: int, serve: bool) -> list[list[str]]:
    """The ``top`` options that fit, the best of each (hardware, cloud, spot), in order."""
    seen: set[tuple] = set()
    rows: list[list[str]] = []
    for o in options:
        key = (o["hardware"], o["cloud"], o["spot"])
        if not o["fits"] or key in seen:
            continue
        seen.add(key)
        mem = o["memory_per_device"]["total"] if o["memory_per_device"] else None
        row = [str(len(rows) + 1), o["hardware"], o["cloud"], str(o["gpus"]),
               "yes" if o["spot"] else "", _strategy(o["strategy"]), _hours(o["hours"]),
               f"{o['cost_usd']:,.2f}", _gib(mem)]
        if serve:
            lat = o.get("latency") or {}
            row += [_seconds(lat.get("time_to_first_token_s")),
                    _seconds(lat.get("time_per_output_token_s")),
                    f"{lat.get('requests_per_s', 0):,.2f}"]
        rows.append(row)
        if len(rows) >= top:
            break
    return rows


def _print_options(console: Console, rows: list[list[str]], serve: bool) -> None:
    """The ranked options: a table when it fits the console, else one block per option."""
    value = dict(justify="right", wrap=False)
    columns = [Column("#", **value), Column("hardware", wrap=False), Column("cloud"),
               Column("n", **value), Column("spot"), Column("strategy"), Column("time", **value),
               Column("cost $", **value), Column("GiB/dev", **value)]
    if serve:
        columns += [Column("first token", **value), Column("per token", **value),
                    Column("req/s", **value)]
    print_table(console, "Options ranked by cost to finish (best count per device and cloud; "
                "within 2% of each other, the faster first)"
                + ("; on-demand before spot for an endpoint" if serve else ""), columns, rows,
                caption="strategy: precision, lora/qlora, micro-batch×accumulation, TPn "
                "tensor parallel, DDP or Zn (ZeRO stage n), ckpt (activation checkpointing)",
                heading=(0, 1))


def _print_front(console: Console, front: list[dict[str, Any]], top: int) -> None:
    """The time–cost Pareto front, cheapest first: each row is faster than the one above."""
    if len(front) < 2:
        return
    value = dict(justify="right", wrap=False)
    columns = [Column("hardware", wrap=False), Column("cloud"), Column("n", **value),
               Column("spot"), Column("time", **value), Column("cost $", **value)]
    rows = front[::-1]
    if len(rows) > top:  # keep both ends and an even spread between them
        step = (len(rows) - 1) / (top - 1)
        rows = [rows[round(i * step)] for i in range(top)]
    print_table(console, "Time–cost Pareto front (no option is both faster and cheaper)",
                columns, [[o["hardware"], o["cloud"], str(o["gpus"]), "yes" if o["spot"] else "",
                           _hours(o["hours"]), f"{o['cost_usd']:,.2f}"] for o in rows],
                caption=f"{top} of {len(front)} options on the front (all of them: --json)"
                if len(front) > top else None)


def _render_largest(c: CliContext, rows: list[dict[str, Any]], w: dict[str, Any]) -> None:
    if not rows:
        return
    what = rows[0]["what"]
    at = f"seq {w['seq_len']}" if what == "micro-batch" else "micro-batch as given (else 1)"
    value = dict(justify="right", wrap=False)
    columns = [Column("hardware"), Column(what, **value), Column("GiB", **value),
               Column("tokens/s", **value), Column("strategy")]
    rows_out = []
    for x in rows:
        tps = x.get("tokens_per_second")
        rows_out.append([x["device"], f"{x['value']:,}" if x["value"] else "does not fit",
                         _gib(x["memory_bytes"]), f"{tps:,.0f}" if tps else "-",
                         _strategy(x["strategy"]) if x["strategy"] else ""])
    print_table(c.out, f"Largest {what} that fits on one device ({at})", columns, rows_out)


def _render_trace(c: CliContext, t: dict[str, Any]) -> None:
    s = t["setup"]
    value = dict(justify="right", wrap=False)
    rows = [["FLOPs", f"{t['analytic_flops']:.4g}", f"{t['trace_flops']:.4g}",
             f"{t['flops_error']:+.2%}"],
            ["peak GiB", _gib(t["analytic_peak_bytes"]), _gib(t["trace_peak_bytes"]),
             f"{t['memory_error']:+.2%}"]]
    rows += [[f"trace {k}", "", _gib(v), ""]
             for k, v in t["trace"]["peak_by_category"].items() if v]
    print_table(c.out, f"Trace (fake tensors) vs analytic: one {s['mode']} step, micro-batch "
                f"{s['micro_batch']}, seq {s['seq_len']}, {s['precision']}, "
                f"{s['finetune']}, checkpointing {s['checkpointing']}",
                [Column("", "right"), Column("analytic", **value), Column("trace", **value),
                 Column("error", **value)], rows)
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
