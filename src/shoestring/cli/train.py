"""``shoestring train``: flags generated from the typed config (CLI only)."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import click

from shoestring.cli.command import Command
from shoestring.cli.context import CliContext, cli_context
from shoestring.cli.flags import Renamed, config_flags

HELP = """Train a model; every [model], [data] and [train] field of the config is a flag.

CONFIG is an optional TOML file with [model], [data] and [train] sections;
flags override its values. The resolved config is saved in the run folder.

\b
Examples:
  shoestring train --data fashion-mnist --epochs 10 --out runs/fmnist
  shoestring train --data fashion-mnist --target val_accuracy=0.87 --recipe fast
  shoestring train --data csv:houses.csv --label price --max-cost 0.50 --price-per-hour 1.2
  shoestring train run.toml --max-time 600 --price-per-hour 1.2
  shoestring train --out runs/fmnist --resume       # continue after a kill
  shoestring train --data fashion-mnist --dp epsilon=3 --batch-size 1024 --lr 0.002

--dp KEY=VALUE,... trains with differential privacy (DP-SGD through Opacus;
docs/privacy.md): epsilon (required), delta (default 1/N^1.1),
max-grad-norm (per-example clipping bound, default 1), accountant (rdp, prv).
"""


def _print_summary(c: CliContext, s: dict, out_dir) -> None:
    from shoestring.train.evaluate import headline

    shown = headline(s)
    shown = f"{shown}, " if shown else ""
    speed = f"{s['tokens_per_second']:,.0f} tokens/s" if s.get("tokens_per_second") else \
        f"{s['samples_per_second']:,.0f} samples/s"
    epochs = f", {s['epochs_run']} epochs" if s.get("epochs_run") is not None else ""
    mfu = f", MFU {s['mfu']:.1%}" if s.get("mfu") else ""
    price = s.get("price_per_hour") or 0.0
    cost = f"${s['cost_usd']:.4f} at ${price:g}/h" if price else \
        "$0 (no price: --price-per-hour or SHOESTRING_PRICE_PER_HOUR)"
    c.out.print(f"[bold]{s['status']}[/] ({s['stop_reason']}): {shown}{s['steps']} steps{epochs}, "
                f"{s['train_seconds']:.2f} s, {speed}{mfu}, {cost}"
                + (f", target reached: {s['target_reached']}" if s.get("target") else ""),
                highlight=False)
    dp = s.get("privacy")
    if dp:
        c.out.print(f"Privacy: ε {dp['epsilon']:.4g} spent of {dp['epsilon_target']:g} at "
                    f"δ {dp['delta']:.3g} (noise σ {dp['noise_multiplier']:.3g}, clip "
                    f"{dp['max_grad_norm']:g}, {dp['accountant']} accountant)", highlight=False)
    seconds = s.get("seconds") or {}
    if seconds:
        c.out.print("Time: " + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()
                                         if v is not None), highlight=False)
    c.out.print(f"Run folder: {out_dir}", highlight=False)


def _launch(cfg, c: CliContext):
    """Re-run this training under torchrun: N workers read the resolved config file."""
    from datetime import datetime

    from shoestring.errors import ShoestringError
    from shoestring.train.api import RunResult, resolve_run_folder
    from shoestring.io import atomic_write_bytes
    from shoestring.train.distributed import check_strategy, launch, torchrun_argv

    from shoestring.models.run_folder import RunFolder

    check_strategy(cfg.train.strategy, cfg.train.device)  # before torchrun starts workers
    out, name = resolve_run_folder(cfg, datetime.now())
    folder = RunFolder(out)
    folder.create()
    if cfg.encrypt:
        from shoestring.crypto.folder import encrypt_output

        encrypt_output(folder.path)
    atomic_write_bytes(folder.launch,
                       cfg.model_copy(update={"out": out, "name": name}).to_toml().encode())
    argv = [str(folder.launch), "--out", str(out)] + (["--resume"] if cfg.resume else [])
    t = cfg.train
    cmd = torchrun_argv(argv, t.nproc, t.nnodes, t.rdzv_endpoint, t.max_restarts)
    code = launch(cmd, {**os.environ, "SHOESTRING_DB": c.db_url()}, t.nproc)
    s = folder.read_json(folder.summary)
    if code != 0 or s is None:
        raise ShoestringError(f"torchrun exited with code {code}",
                              hint="see the workers' output above; resume with --resume")
    return RunResult(out, s.get("run_id", ""), s)


# Flags users had that now have another name (issue 11: one meaning per name).
RENAMED = [
    Renamed("--train-target", "train.target", "--target METRIC=VALUE"),
    Renamed("--label-field", "data.label", "--label"),
    Renamed("--data-target", "data.label", "--label"),
]


def _split_target(c: CliContext, params: dict) -> dict:
    """``--target COLUMN`` (no ``=``) meant the label column before release 0.2."""
    target = params.get("train__target")
    if target is not None and "=" not in target:
        c.warn(f"--target {target} (a column) is deprecated; use --label {target} "
               "(--target now only means METRIC=VALUE)")
        params = {**params, "train__target": None,
                  "data__label": params.get("data__label") or target}
    return params


def train_command() -> click.Command:
    from shoestring.train.config import TrainConfig

    flags = config_flags(TrainConfig, skip=("privacy",), aliases={
        "model.name": ["--model"], "data.source": ["--data", "--source"],
        "out": ["--out", "-o"]}, renamed=RENAMED)

    @click.pass_context
    def callback(ctx: click.Context, config: Path | None, **params) -> Any:
        from shoestring.cli.progress import RichReporter
        from shoestring.models.run_folder import RunFolder
        from shoestring.train.api import train
        from shoestring.train.config import read_toml, resolve_config

        c = cli_context(ctx)
        if c.own_process:
            # Imports are done: keep the cyclic collector from walking their ~10^6 objects
            # again at every full collection during training (gc.freeze, Python >= 3.7).
            # Not in a test runner's or a notebook's process, whose earlier cyclic garbage
            # would never be collected.
            gc.freeze()
        dp = params.pop("dp", None)
        values = flags.values(_split_target(c, params))
        if dp is not None:
            from shoestring.train.config import parse_dp

            values["privacy"] = parse_dp(dp)
        out = values.get("out")
        base = {}
        if config is not None:
            base = read_toml(config)
        elif values.get("resume") and out is not None and RunFolder(out).config.exists():
            base = read_toml(RunFolder(out).config)
            base.pop("out", None)
            base.pop("name", None)
        cfg = resolve_config(base, values)
        if (cfg.train.nproc > 1 or cfg.train.nnodes != "1") and "RANK" not in os.environ:
            result = _launch(cfg, c)
        else:
            from shoestring.train.phases import process_age

            result = train(cfg, ledger=c.db or "auto", reporter=RichReporter(c.err),
                           startup_seconds=process_age())
            if "RANK" in os.environ:
                return  # a worker of a multi-process run: its launcher prints the summary once
        _print_summary(c, result.summary, result.out_dir)
        if result.summary["status"] == "interrupted":
            c.out.print(f"Resume with: shoestring train --out {result.out_dir} --resume",
                        highlight=False)
            ctx.exit(130)

    params: list[click.Parameter] = [
        click.Argument(["config"], required=False, type=click.Path(path_type=Path)),
        *flags.params,
        click.Option(["--dp"], metavar="epsilon=E[,delta=D][,max-grad-norm=C]",
                     help="[privacy] train with differential privacy (DP-SGD): the budget ε "
                     "the run may spend, δ (default 1/N^1.1), the per-example clipping norm C "
                     "(default 1); see docs/privacy.md")]
    return Command("train", callback=callback, params=params, help=HELP,
                   short_help="Train a model (flags mirror the config's sections).")


def register(group: click.Group) -> None:
    group.add_command(train_command(), "train")
