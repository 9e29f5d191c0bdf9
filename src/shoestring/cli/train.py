"""``shoestring train``: flags generated from the typed config (CLI only)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from shoestring.cli.config_options import overrides_from, section_options
from shoestring.cli.context import CliContext
from shoestring.cli.errors import guarded

HELP = """Train a model; every [model], [data] and [train] field of the config is a flag.

CONFIG is an optional TOML file with [model], [data] and [train] sections;
flags override its values. The resolved config is saved in the run folder.

\b
Examples:
  shoestring train --data fashion-mnist --epochs 10 --out runs/fmnist
  shoestring train --data fashion-mnist --target val_accuracy=0.87 --recipe fast
  shoestring train run.toml --max-time 600 --price-per-hour 1.2
  shoestring train --out runs/fmnist --resume       # continue after a kill
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
    from shoestring.train.distributed import check_strategy, launch, torchrun_argv

    from shoestring.models.run_folder import RunFolder

    check_strategy(cfg.train.strategy, cfg.train.device)  # before torchrun starts workers
    out, name = resolve_run_folder(cfg, datetime.now())
    folder = RunFolder(out)
    folder.create()
    folder.launch.write_text(cfg.model_copy(update={"out": out, "name": name}).to_toml())
    argv = [str(folder.launch), "--out", str(out)] + (["--resume"] if cfg.resume else [])
    t = cfg.train
    cmd = torchrun_argv(argv, t.nproc, t.nnodes, t.rdzv_endpoint, t.max_restarts)
    code = launch(cmd, {**os.environ, "SHOESTRING_DB": c.db_url()}, t.nproc)
    s = folder.read_json(folder.summary)
    if code != 0 or s is None:
        raise ShoestringError(f"torchrun exited with code {code}",
                              hint="see the workers' output above; resume with --resume")
    return RunResult(out, s.get("run_id", ""), s)


def train_command() -> click.Command:
    from shoestring.train.config import SECTIONS

    pairs = section_options(SECTIONS)

    @click.pass_context
    def callback(ctx: click.Context, config: Path | None, out: Path | None, name: str | None,
                 resume: bool, init_from: str | None, **params) -> None:
        c: CliContext = ctx.find_object(CliContext) or CliContext()
        from shoestring.cli.progress import RichReporter

        reporter = RichReporter(c.err)

        def go():
            from shoestring.models.run_folder import RunFolder
            from shoestring.train.api import train
            from shoestring.train.config import read_toml, resolve_config
            from shoestring.train.phases import process_age

            base = {}
            if config is not None:
                base = read_toml(config)
            elif resume and out is not None and RunFolder(out).config.exists():
                base = read_toml(RunFolder(out).config)
                base.pop("out", None)
                base.pop("name", None)
            top = {"out": str(out) if out else None, "name": name, "resume": resume,
                   "init_from": init_from}
            cfg = resolve_config(base, {**overrides_from(params), **top})
            if cfg.train.nproc > 1 or cfg.train.nnodes != "1":
                if "RANK" not in os.environ:
                    return _launch(cfg, c)
            # The ledger opens on a worker thread while the data loads.
            return train(cfg, ledger=c.db or "auto", reporter=reporter,
                         startup_seconds=process_age())

        result = guarded(c.err, c.debug, go)
        if result is None or "RANK" in os.environ:
            return  # a worker of a multi-process run: its launcher prints the summary once
        _print_summary(c, result.summary, result.out_dir)
        if result.summary["status"] == "interrupted":
            c.out.print(f"Resume with: shoestring train --out {result.out_dir} --resume",
                        highlight=False)
            ctx.exit(130)

    params: list[click.Parameter] = [
        click.Argument(["config"], required=False, type=click.Path(path_type=Path)),
        click.Option(["--out", "-o"], type=click.Path(path_type=Path),
                     help="Run folder (default: runs/<name>)."),
        click.Option(["--name"], help="Run name (default: model-data-time)."),
        click.Option(["--resume/--no-resume"], default=False,
                     help="Continue the run in --out from its latest good checkpoint."),
        click.Option(["--init-from"], help="Start from the weights of this run (a run folder, "
                     "or a run's id or name from 'shoestring runs'): fine-tuning."),
        click.Option(["--target"], help="METRIC=VALUE stops once the validation metric "
                     "reaches VALUE (e.g. val_accuracy=0.87; test_X is checked as val_X, the "
                     "test split is scored once at the end); a plain COLUMN is the CSV column "
                     "to predict."),
    ] + [opt for opt, _ in pairs]
    return click.Command("train", callback=callback, params=params, help=HELP,
                         short_help="Train a model (flags mirror the config's sections).",
                         context_settings={"max_content_width": 100})
