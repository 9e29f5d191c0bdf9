"""``shoestring report RUN [RUN ...] --out FILE.html`` (CLI only: parse, build the
config, call :func:`shoestring.report.write_report`, say where the page is)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from shoestring.cli.context import CliContext
from shoestring.cli.errors import guarded

HELP = """Write one self-contained HTML report of one or more run folders.

The page needs nothing but a browser: plots are inline SVG, images inline,
and nothing is fetched when it opens, so it can be mailed or attached to a
ticket. Sections appear when their files exist: training (curves of every
logged metric against steps and against dollars, throughput, where the time
went, the plan's prediction against what was measured, the resolved config),
data (a run trained on prepared:DIR: drops by reason, duplicate clusters,
PII, label issues, split sizes), compression (compress/candidates.json:
Pareto chart and table), audit (audit/: heatmaps, surrogate tree, fairness
table, model card). Several runs are also compared: a table and their
curves overlaid. A run still training is reported as partial; unreadable
metrics lines are skipped and counted.

\b
Examples:
  shoestring report runs/fmnist
  shoestring report runs/fmnist runs/fmnist-small --out reports/fmnist.html
"""


@click.command("report", help=HELP)
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML file to write (replaced if it exists).")
@click.option("--title", default=None, help="Page title (default: from the runs).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@click.pass_context
def report_command(ctx: click.Context, runs: tuple[Path, ...], out: Path, title: str | None,
                   as_json: bool) -> None:
    c = ctx.find_object(CliContext) or CliContext()

    def go():
        from pydantic import ValidationError

        from shoestring.errors import ConfigError
        from shoestring.report import ReportConfig, write_report

        try:
            config = ReportConfig(runs=list(runs), out=out, title=title)
        except ValidationError as exc:
            raise ConfigError([f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                               for e in exc.errors()]) from None
        return write_report(config)

    # Drawing the plots takes seconds (matplotlib); say so on a terminal.
    with c.err.status(f"writing the report of {len(runs)} run(s)…"):
        result = guarded(c.err, c.debug, go)
    if as_json:
        c.out.print_json(json.dumps({"path": str(result.path), "bytes": result.bytes,
                                     "seconds": round(result.seconds, 3),
                                     "sections": result.sections, "notes": result.notes}))
        return
    for note in result.notes:
        c.err.print(f"[yellow]Note:[/] {note}", highlight=False)
    c.out.print(f"Report: {result.path} ({result.bytes / 1024:,.0f} KiB, sections: "
                f"{', '.join(result.sections)}; {result.seconds:.1f} s)", highlight=False)


def register(group: click.Group) -> None:
    """Add ``report`` to the ``shoestring`` command group."""
    group.add_command(report_command, "report")
