"""``shoestring compress RUN --out DIR`` (CLI only: parse, build the config, call
:func:`shoestring.compress.compress`, render the candidates table)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shoestring.cli.command import EXIT_ERROR, Command
from shoestring.cli.context import cli_context
from shoestring.cli.flags import config_flags

HELP = """Make RUN smaller and faster without losing more than --max-drop of its metric.

Every candidate is built, saved and measured on this machine: size on disk,
p50/p95 latency of the model call at each --batch-sizes with --threads threads
(in-process, as the server calls it), throughput, and the metric on the
held-out split. The fastest candidate within --max-drop becomes a new run
folder --out DIR (serve, eval and plan take it like any run), with the whole
table in DIR/compress/candidates.json. If none fits, the table is still
written, no model is, and the exit code is 1.

\b
Methods (--methods, comma-separated; a+b chains, e.g. prune+dynamic-int8):
{methods}

\b
--max-drop is in accuracy points for test_accuracy, and in percent of the
loss for test_loss, test_mse and val_loss.

\b
Examples:
  shoestring compress runs/fmnist --out runs/fmnist-small
  shoestring compress runs/lm --out runs/lm-int4 --methods weight-only-int4 --max-drop 2
  shoestring compress runs/fmnist --out runs/fm-student --methods distill,distill+dynamic-int8
"""


def _methods_help() -> str:
    from shoestring.compress.config import DEFAULT_METHODS, SUMMARIES

    lines = [f"  {name:<17} {text}" for name, text in SUMMARIES.items()]
    lines.append("  default, tables and images:")
    lines.append(f"    {','.join(DEFAULT_METHODS['examples'])}")
    lines.append("  default, language models:")
    lines.append(f"    {','.join(DEFAULT_METHODS['language_modeling'])}")
    return "\n".join(lines)


class _Help(Command):
    """Builds the method list only when --help is asked for (it imports the configs)."""

    def get_help(self, ctx: click.Context) -> str:
        self.help = HELP.format(methods=_methods_help())
        return super().get_help(ctx)


class RichProgress:
    """A bar over the candidates being measured, and a status line for the slow steps."""

    def __init__(self, console) -> None:
        self.console = console
        self.bar: Progress | None = None
        self.task = None

    def start(self, total: int, description: str) -> None:
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[now]}"),
                            TimeElapsedColumn(), console=self.console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task(description, total=total, now="")

    def advance(self, description: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, now=description)

    def status(self, message: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, now=message)
        elif self.console.is_terminal:
            self.console.print(f"[dim]{message}[/]", highlight=False)

    def log(self, message: str) -> None:
        (self.bar.console if self.bar else self.console).print(message, highlight=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _kb(n: int) -> str:
    return f"{n / 1024:,.1f}"


def render(table: dict, console) -> None:
    """The candidates as a Rich table (degrades to plain text off a terminal)."""
    batches = table["batch_sizes"]
    unit = "pts" if table["drop_unit"] == "points" else "%"
    t = Table(title=f"compress: {table['metric']} within {table['max_drop']:g} {unit}, "
              f"{table['threads']} thread(s), {table['target']}")
    t.add_column("candidate")
    t.add_column("KiB", justify="right")
    t.add_column("×smaller", justify="right")
    for b in batches:
        t.add_column(f"p50/p95 ms @{b}", justify="right")
    t.add_column(f"×faster @{batches[0]}", justify="right")
    t.add_column(f"ex/s @{batches[-1]}", justify="right")
    lm = any(r.get("tokens_per_second") for r in table["candidates"])
    if lm:
        t.add_column("tok/s", justify="right")
    t.add_column(table["metric"], justify="right")
    t.add_column(f"drop {unit}", justify="right")
    t.add_column("notes")
    for r in table["candidates"]:
        lat = r["latency"]
        name = ("✓ " if r["chosen"] else "  ") + r["name"] + (" (parent)" if r["is_parent"]
                                                              else "")
        notes = list(r["flags"]) + (["pareto"] if r["pareto"] and not r["is_parent"] else [])
        if r.get("kept_float"):
            notes.append("float: " + ", ".join(r["kept_float"]))
        cells = [name, _kb(r["size_bytes"]), f"{r['size_ratio']:.2f}"]
        cells += [f"{lat[str(b)]['p50_ms']:.3f}/{lat[str(b)]['p95_ms']:.3f}" for b in batches]
        cells += [f"{r['speedup'][str(batches[0])]:.2f}",
                  f"{lat[str(batches[-1])]['throughput_per_s']:,.0f}"]
        if lm:
            cells.append(f"{r['tokens_per_second']:,.0f}" if r.get("tokens_per_second") else "")
        cells += [f"{r['metric']:.4f}", f"{r['metric_drop']:+.2f}", "; ".join(notes)]
        t.add_row(*cells, style="bold green" if r["chosen"] else
                  ("dim" if "over the accuracy budget" in r["flags"] else None))
    console.print(t)


def _compress_command() -> click.Command:
    from shoestring.compress.config import CompressConfig

    # Every CompressConfig field is a flag (RUN is the argument; --out is required;
    # seed is not read by any method yet, so it is no flag).
    flags = config_flags(CompressConfig, skip={"run", "out", "seed"})

    @click.pass_context
    def compress_command(ctx: click.Context, run: Path, out: Path, as_json: bool,
                         **params) -> None:
        from shoestring.compress import compress
        from shoestring.compress.config import resolve_compress_config

        c = cli_context(ctx)
        config = resolve_compress_config({"run": run, "out": out, **flags.values(params)})
        ledger = c.ledger()
        try:
            result = compress(config, ledger=ledger, workspace=c.workspace,
                              progress=None if as_json else RichProgress(c.err))
        finally:
            ledger.close()
        _show(ctx, c, result, as_json)

    params = [click.Argument(["run"], type=click.Path(path_type=Path)),
              click.Option(["--out"], type=click.Path(path_type=Path), required=True,
                           help="The new run folder (must not exist)."),
              *flags.params,
              click.Option(["--json", "as_json"], is_flag=True,
                           help="Print the candidates table as JSON.")]
    return _Help("compress", callback=compress_command, params=params, help=HELP,
                 short_help="Make a run smaller and faster within an accuracy budget.")


def _show(ctx: click.Context, c, result, as_json: bool) -> None:
    if as_json:
        c.out.print_json(json.dumps(result.table))
    else:
        render(result.table, c.out)
    if result.chosen is None:
        c.err.print(f"[bold red]Error:[/] no candidate is within --max-drop "
                    f"{result.table['max_drop']:g}; wrote the table to "
                    f"{result.candidates_path} and no model", highlight=False)
        c.err.print("[bold]Hint:[/] allow a larger --max-drop, or try other --methods "
                    "(e.g. dynamic-int8 keeps sensitive layers in float32)", highlight=False)
        ctx.exit(EXIT_ERROR)
    elif not as_json:
        c.out.print(f"Chose [bold]{result.chosen}[/]: run folder {result.out_dir} "
                    f"(serve it with 'shoestring serve {result.out_dir}')", highlight=False)


def register(group: click.Group) -> None:
    """Add ``compress`` to the ``shoestring`` command group."""
    group.add_command(_compress_command(), "compress")
