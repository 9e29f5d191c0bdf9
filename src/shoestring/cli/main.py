"""The ``shoestring`` command: a thin layer over the Python API.

Each command parses its arguments into a typed config (flags generated from
it by :mod:`shoestring.cli.flags`), calls one library function and renders
the result. Errors become ``Error:``/``Hint:`` lines and a non-zero exit in
one place, :mod:`shoestring.cli.command`, and only there. Plain click.
"""

from __future__ import annotations

import gc
import importlib
import json
from pathlib import Path

import click

from shoestring.cli.command import Command, Group
from shoestring.cli.context import CliContext, cli_context

HELP = ("Shoestring: plan, prepare data, train, compress, audit and serve models on the least "
        "compute money, with every stage's cost measured.")


# Commands contributed by the capabilities; each module has register(group).
EXTENSIONS = ("train", "plan", "data", "serve", "generate", "compress", "export", "report",
              "ui", "audit", "encryption")
# The one command each of these modules adds under its own name: running it imports only
# that module. Importing all of them costs about 0.3 s on 2 quiet cores (the dashboard
# pulls in SQLAlchemy, plan its catalog, ...), a tenth of a target-mode training run.
# Any other name (serve's keys, usage, license...) loads the whole tree first.
OWN_NAME = {"train", "plan", "data", "generate", "compress", "export", "report", "ui",
            "audit", "encryption"}


def _module(name: str) -> str:
    return "shoestring.cli.train" if name == "train" else f"shoestring.cli.{name}_cmd"


class RootGroup(Group):
    """The ``shoestring`` group: extension modules are imported when first needed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.registered: set[str] = set()

    def register(self, *extensions: str) -> None:
        for name in extensions:
            if name not in self.registered:
                importlib.import_module(_module(name)).register(self)
                self.registered.add(name)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is None and name in OWN_NAME:
            self.register(name)
            cmd = super().get_command(ctx, name)
        if cmd is None:
            self.register(*EXTENSIONS)
            cmd = super().get_command(ctx, name)
        return cmd

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.register(*EXTENSIONS)
        return super().list_commands(ctx)


@click.group("shoestring", cls=RootGroup, help=HELP, no_args_is_help=True)
def cli() -> None:
    pass


@cli.command("eval", cls=Command)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", default=None, help="Data source (default: the run's; text:PATH for a "
              "language model).")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="Which split to score: test (for a language model: the held-out end of its "
              "corpus) or train.")
@click.option("--label", default=None, help="Label column (csv:, parquet:) or field (jsonl:) of "
              "--data (default: the one the run's card records).")
@click.option("--text-field", default=None,
              help="JSONL text field of --data (default: the run's own).")
@click.option("--target", "old_target", default=None, hidden=True)
@click.option("--label-field", "old_label_field", default=None, hidden=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def eval_cmd(ctx, run_dir, data, split, label, text_field, old_target, old_label_field,
             as_json) -> None:
    """Score a trained run (or a Hugging Face checkpoint folder) on its held-out split
    (or on other data).

    Classifiers and regressors report their metric beside the baseline of a
    model that ignores its inputs; language models report loss and perplexity.
    """
    from shoestring.train.evaluate_run import evaluate_run

    c = cli_context(ctx)
    for old, value in (("--target", old_target), ("--label-field", old_label_field)):
        if value is not None:
            c.warn(f"{old} is deprecated for eval; use --label")
            label = label or value
    result = evaluate_run(run_dir, data, split=split, label=label, text_field=text_field)
    if as_json:
        c.out.print_json(json.dumps(result))
        return
    from shoestring.cli.views import print_metrics

    print_metrics(c.out, f"eval {run_dir}", result)


@cli.command("runs", cls=Command)
@click.option("--limit", type=int, default=20, show_default=True,
              help="How many of the latest runs to show.")
@click.option("--status", default=None, help="Only runs with this status.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def runs_cmd(ctx, limit, status, as_json) -> None:
    """List recorded runs (finished, failed, interrupted or killed) from the ledger."""
    from shoestring.ledger.queries import list_runs

    c = cli_context(ctx)
    rows = list_runs(c.db_url(), limit=limit, status=status)
    if as_json:
        c.out.print_json(json.dumps(rows))
        return
    if rows:
        from shoestring.cli.views import print_runs

        print_runs(c.out, rows, title=f"runs ({c.db_url()})")
    else:
        c.out.print("No runs yet: try 'shoestring quickstart'.")


@cli.command("quickstart", cls=Command)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Folder for the run folders.")
@click.option("--lm-steps", type=click.IntRange(min=0), default=300, show_default=True,
              help="Steps of the gpt-nano language-model example (0 skips it).")
@click.pass_context
def quickstart_cmd(ctx, out, lm_steps) -> None:
    """Run the whole path on the embedded data and show what each stage cost."""
    from shoestring.cli.progress import RichReporter
    from shoestring.quickstart import quickstart

    c = cli_context(ctx)
    ledger = c.ledger()
    try:
        result = quickstart(out, ledger=ledger, reporter=RichReporter(c.out), lm_steps=lm_steps)
    finally:
        ledger.close()
    from shoestring.cli.views import print_quickstart

    print_quickstart(c.out, result["stages"])
    c.out.print(f"Done in {result['total_seconds']:.1f} s. Ledger: {c.db_url()} "
                "(see 'shoestring runs').")
    c.out.print(f"Report: {result['report']} (open it in a browser)", highlight=False)


def build_cli() -> click.Group:
    """The full command tree."""
    cli.register(*EXTENSIONS)
    return cli


def run() -> None:
    """Console-script entry point: only the invoked command's module is imported."""
    try:
        cli(prog_name="shoestring", obj=CliContext(own_process=True))
    finally:
        # The interpreter's shutdown runs the cyclic garbage collector over every object
        # still alive; with PyTorch imported that is ~0.4 s of CPU for a process that is
        # ending (measured: 0.5 s to exit after `import torch`, 0.1 s once frozen).
        # Frozen objects are still finalized as usual, only not searched for cycles.
        gc.freeze()
