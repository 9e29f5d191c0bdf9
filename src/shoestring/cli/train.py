"""``shoestring train``: flags generated from the typed config (CLI only)."""

from __future__ import annotations

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
  shoestring train --data fashion-mnist --target test_accuracy=0.87 --recipe fast
  shoestring train run.toml --max-time 600 --price-per-hour 1.2
  shoestring train --out runs/fmnist --resume       # continue after a kill
"""


def train_command() -> click.Command:
    from shoestring.train.config import SECTIONS

    pairs = section_options(SECTIONS)

    @click.pass_context
    def callback(ctx: click.Context, config: Path | None, out: Path | None, name: str | None,
                 resume: bool, **params) -> None:
        c: CliContext = ctx.find_object(CliContext) or CliContext()
        from shoestring.cli.progress import RichReporter

        reporter = RichReporter(c.err)

        def go():
            from shoestring.train.api import train
            from shoestring.train.config import read_toml, resolve_config

            base = {}
            if config is not None:
                base = read_toml(config)
            elif resume and out is not None and (out / "config.toml").exists():
                base = read_toml(out / "config.toml")
                base.pop("out", None)
                base.pop("name", None)
            top = {"out": str(out) if out else None, "name": name, "resume": resume}
            cfg = resolve_config(base, {**overrides_from(params), **top})
            ledger = c.ledger()
            try:
                return train(cfg, ledger=ledger, reporter=reporter)
            finally:
                ledger.close()

        result = guarded(c.err, c.debug, go)
        s = result.summary
        metric = "test_accuracy" if "test_accuracy" in s else "test_mse"
        c.out.print(
            f"[bold]{s['status']}[/] ({s['stop_reason']}): {metric} {s.get(metric, float('nan')):.4f}"
            f", {s['steps']} steps, {s['epochs_run']} epochs, {s['train_seconds']:.2f} s, "
            f"{s['samples_per_second']:,.0f} samples/s, ${s['cost_usd']:.4f}"
            + (f", target reached: {s['target_reached']}" if s.get("target") else ""),
            highlight=False)
        c.out.print(f"Run folder: {result.out_dir}", highlight=False)
        if s["status"] == "interrupted":
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
        click.Option(["--target"], help="METRIC=VALUE stops once the held-out metric reaches "
                     "VALUE (e.g. test_accuracy=0.87); a plain COLUMN is the CSV column to "
                     "predict."),
    ] + [opt for opt, _ in pairs]
    return click.Command("train", callback=callback, params=params, help=HELP,
                         short_help="Train a model (flags mirror the config's sections).",
                         context_settings={"max_content_width": 100})
