"""``shoestring report RUN [RUN ...] --out FILE.html`` (CLI only: flags from
:class:`~shoestring.report.ReportConfig`, one call to
:func:`shoestring.report.write_report`, then where the page is)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from shoestring.cli.command import Command
from shoestring.cli.context import cli_context
from shoestring.cli.flags import config_flags

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


def _report_command() -> click.Command:
    from shoestring.report.api import ReportConfig

    flags = config_flags(ReportConfig, skip={"runs"})

    @click.pass_context
    def report_command(ctx: click.Context, runs: tuple[Path, ...], as_json: bool,
                       **params) -> None:
        from shoestring.report import resolve_report_config, write_report

        c = cli_context(ctx)
        config = resolve_report_config({"runs": list(runs), **flags.values(params)})
        # Drawing the plots takes seconds (matplotlib); say so on a terminal.
        with c.err.status(f"writing the report of {len(runs)} run(s)…"):
            result = write_report(config)
        if as_json:
            c.out.print_json(json.dumps({"path": str(result.path), "bytes": result.bytes,
                                         "seconds": round(result.seconds, 3),
                                         "sections": result.sections, "notes": result.notes}))
            return
        for note in result.notes:
            c.err.print(f"[yellow]Note:[/] {note}", highlight=False)
        c.out.print(f"Report: {result.path} ({result.bytes / 1024:,.0f} KiB, sections: "
                    f"{', '.join(result.sections)}; {result.seconds:.1f} s)", highlight=False)

    params = [click.Argument(["runs"], nargs=-1, required=True,
                             type=click.Path(path_type=Path)),
              *flags.params,
              click.Option(["--json", "as_json"], is_flag=True,
                           help="Print what was written as JSON.")]
    return Command("report", callback=report_command, params=params, help=HELP,
                   short_help="Write a self-contained HTML report of run folders.")


def register(group: click.Group) -> None:
    """Add ``report`` to the ``shoestring`` command group."""
    group.add_command(_report_command(), "report")
