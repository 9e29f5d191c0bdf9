"""The ``shoestring`` command: a thin layer over the Python API.

Each command parses its arguments, builds a typed config, calls one library
function and renders the result. Errors become ``Error:``/``Hint:`` lines and
a non-zero exit here, and only here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click
import typer
from rich.table import Table

from shoestring.cli.context import CliContext
from shoestring.cli.errors import guarded

app = typer.Typer(
    name="shoestring",
    help="Shoestring: plan, prepare data, train, compress, audit and serve models on the least "
    "compute money, with every stage's cost measured.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def ctx_of(ctx: typer.Context | click.Context) -> CliContext:
    return ctx.ensure_object(CliContext)


@app.callback()
def main(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    db: Optional[str] = typer.Option(
        None, "--db", help="Ledger database URL (default: $SHOESTRING_DB, else "
        "sqlite:///./.shoestring/ledger.db)."),
) -> None:
    ctx.obj = CliContext(debug=debug, db=db)


@app.command("eval")
def eval_cmd(
    ctx: typer.Context,
    run_dir: Path = typer.Argument(..., help="A run folder written by 'shoestring train'."),
    data: Optional[str] = typer.Option(None, "--data", help="Data source (default: the run's)."),
    split: str = typer.Option("test", help="Which split to score: test (for a language "
                              "model: the held-out end of its corpus) or train."),
    target: Optional[str] = typer.Option(
        None, "--target", "--label-field", help="Label column (csv:) or field (jsonl:) of "
        "--data (default: the run's own)."),
    text_field: Optional[str] = typer.Option(
        None, "--text-field", help="JSONL text field of --data (default: the run's own)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Score a trained run on its held-out split (or on other data).

    Classifiers and regressors report their metric beside the baseline of a
    model that ignores its inputs; language models report loss and perplexity.
    """
    c = ctx_of(ctx)

    def go():
        from shoestring.train.evaluate_run import evaluate_run

        return evaluate_run(run_dir, data, split=split, target=target, text_field=text_field)

    result = guarded(c.err, c.debug, go)
    if as_json:
        c.out.print_json(json.dumps(result))
        return
    table = Table(title=f"eval {run_dir}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    c.out.print(table)


@app.command("runs")
def runs_cmd(
    ctx: typer.Context,
    limit: int = typer.Option(20, help="How many of the latest runs to show."),
    status: Optional[str] = typer.Option(None, help="Only runs with this status."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List recorded runs (finished, failed, interrupted or killed) from the ledger."""
    c = ctx_of(ctx)

    def go():
        from shoestring.ledger.queries import list_runs

        return list_runs(c.db_url(), limit=limit, status=status)

    rows = guarded(c.err, c.debug, go)
    if as_json:
        c.out.print_json(json.dumps(rows))
        return
    table = Table(title=f"runs ({c.db_url()})")
    for col in ("name", "status", "model", "data", "started", "wall s", "$", "metric"):
        table.add_column(col, justify="right" if col in ("wall s", "$") else "left")
    for r in rows:
        metric = next((f"{k}={r[k]:.4f}" for k in ("test_accuracy", "test_mse", "val_loss")
                       if r.get(k) is not None), "")
        table.add_row(r["name"], r["status"], r["model"], r["data"], r["started_at"],
                      f"{r['wall_seconds']:.2f}", f"{r['cost_usd']:.4f}", metric)
    c.out.print(table)
    if not rows:
        c.out.print("No runs yet: try 'shoestring quickstart'.")


@app.command("quickstart")
def quickstart_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(Path("runs"), help="Folder for the run folders."),
    lm_steps: int = typer.Option(300, min=0, help="Steps of the gpt-nano language-model "
                                 "example (0 skips it)."),
) -> None:
    """Run the whole path on the embedded data and show what each stage cost."""
    c = ctx_of(ctx)
    from shoestring.cli.progress import RichReporter

    def go():
        from shoestring.quickstart import quickstart

        ledger = c.ledger()
        try:
            return quickstart(out, ledger=ledger, reporter=RichReporter(c.out), lm_steps=lm_steps)
        finally:
            ledger.close()

    result = guarded(c.err, c.debug, go)
    table = Table(title="Shoestring quickstart")
    for col in ("stage", "what", "result", "seconds", "cost $", "files"):
        table.add_column(col)
    for s in result["stages"]:
        table.add_row(s["stage"], s["what"], s["result"], f"{s['seconds']:.2f}",
                      f"{s['cost_usd']:.4f}", s["where"])
    c.out.print(table)
    c.out.print(f"Done in {result['total_seconds']:.1f} s. Ledger: {c.db_url()} "
                "(see 'shoestring runs').")


def build_cli() -> click.Group:
    """The full command tree: Typer commands plus the generated ``train``."""
    from shoestring.cli.train import train_command

    group = typer.main.get_command(app)
    assert isinstance(group, click.Group)
    group.add_command(train_command(), "train")
    for register in _extensions():
        register(group)
    return group


def _extensions():
    """Commands contributed by other capabilities (each module is optional)."""
    import importlib

    for name in ("plan", "data", "serve", "generate", "compress"):
        try:
            mod = importlib.import_module(f"shoestring.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name != f"shoestring.cli.{name}_cmd":
                raise
            continue
        yield mod.register


def run() -> None:
    """Console-script entry point."""
    build_cli()(prog_name="shoestring")
