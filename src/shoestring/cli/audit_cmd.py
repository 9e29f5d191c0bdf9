"""``shoestring audit RUN`` (CLI only: parse, build the :class:`AuditConfig`, call
:func:`shoestring.audit.audit`, render the report). Errors go to the one CLI error
boundary (:mod:`shoestring.cli.command`)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import click

from shoestring.cli.command import Command
from shoestring.cli.context import CliContext, cli_context
from shoestring.cli.flags import config_flags
from shoestring.errors import ConfigError

HELP = """Explain RUN's model, compare it across groups, and write its model card.

\b
Writes into RUN/audit/ (or --out): explanations (integrated gradients with
their completeness error, occlusion heatmaps for images, Shapley sampling for
tables, token attributions for text, each with a stability score), a
surrogate decision tree, per-group metrics with bootstrap intervals and the
gaps between groups, an optional mitigation with its before/after table, and
model_card.md generated from these files only. See docs/audit.md.

\b
Examples:
  shoestring audit runs/loans --group sex --group age_band
  shoestring audit runs/loans --group sex --mitigate thresholds
  shoestring audit runs/fmnist --explain 32 --time-budget 300
  shoestring audit runs/loans --strict --explain 0   # CI: fail on a card edited by hand
"""


class StageProgress:
    """A Rich bar per audit stage (``progress(stage, done, total)``); plain lines off a
    terminal, so logs and CI stay readable."""

    def __init__(self, console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console)
        self.tasks: dict[str, Any] = {}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def _groups(values: tuple[str, ...]) -> list[str] | None:
    if not values:
        return None
    return [g.strip() for v in values for g in v.split(",") if g.strip()]


def _fmt(v: dict | None) -> str:
    if not v:
        return "–"
    ci = v.get("ci")
    return f"{v['value']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def _render(c: CliContext, r: dict, out: Path) -> None:
    """The report as tables that are never cut (:mod:`shoestring.cli.layout`)."""
    from shoestring.cli.layout import Column, print_table

    num = {"justify": "right", "wrap": False}
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
    c.out.print(f"Audited {r['data']['examples']:,} {r['data']['split']} examples of "
                f"{r['data']['source']}: {metrics}", highlight=False)
    ex = r.get("explanations")
    if ex:
        rows = []
        for m in ex["methods"]:
            comp = (m.get("completeness") or {}).get("median_relative_error")
            rows.append([m["method"], str(m["examples"]), f"{m['seconds_per_example']:.4f}",
                         f"{m['stability']['spearman_mean']:.3f}",
                         "–" if comp is None else f"{comp:.2%}"])
        print_table(c.out, f"explanations ({ex['kind']}, {ex['library']})",
                    [Column("method"), Column("examples", **num), Column("s/example", **num),
                     Column("stability", **num), Column("completeness error", **num)], rows)
        c.out.print(f"Surrogate tree fidelity: {ex['surrogate']['fidelity']:.1%}",
                    highlight=False)
    for name, col in ((r.get("fairness") or {}).get("columns") or {}).items():
        metric = "error_rate" if "error_rate" in col["groups"][0]["metrics"] else "mse"
        rows = [[g["group"] + (" (too small)" if g["too_small"] else ""), str(g["n"]),
                 _fmt(g["metrics"][metric])] for g in col["groups"]]
        rows += [[f"gap: {k}", "", _fmt(v)] for k, v in col["gaps"].items() if k != "fairlearn"]
        print_table(c.out, f"fairness: {name}",
                    [Column("group"), Column("n", **num),
                     Column(f"{metric} [95% CI]", wrap=False)], rows)
        for w in col["warnings"]:
            c.err.print(f"[yellow]Warning:[/] {name}: {w}", highlight=False)
    mit = r.get("mitigation")
    if mit:
        print_table(c.out, f"mitigation: {mit['method']} ({mit['column']})",
                    [Column("gap"), Column("before", wrap=False), Column("after", wrap=False)],
                    [[row["gap"], _fmt(row["before"]), _fmt(row["after"])]
                     for row in mit["table"]])
    c.out.print(f"Model card: {out / 'model_card.md'}  (audit files in {out})", highlight=False)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        from shoestring.io import read_text

        return tomllib.loads(read_text(path))
    except OSError as exc:
        raise ConfigError([f"cannot read '{path}': {exc.strerror}"],
                          hint="pass an existing TOML file to --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"'{path}' is not valid TOML: {exc}"],
                          hint="fix the file (fields as in 'shoestring audit --help')") from None


def _open_ledger(c: CliContext):
    """The ledger for the card's cost line, if one exists (an audit never creates one)."""
    from shoestring.errors import ShoestringError

    try:
        return c.ledger(create=False)
    except ShoestringError:
        return None


def audit_command() -> click.Command:
    from shoestring.audit.config import AuditConfig

    # Every AuditConfig field is a flag; RUN is the argument and --group is spelled here
    # (repeatable and comma-separated alike).
    flags = config_flags(AuditConfig, skip={"run", "group"})

    @click.pass_context
    def callback(ctx: click.Context, run: Path, config: Path | None, as_json: bool,
                 group: tuple[str, ...], **params) -> None:
        from shoestring.audit.api import audit
        from shoestring.audit.config import resolve_audit_config

        c = cli_context(ctx)
        base = _read_config(config) if config is not None else {}
        cfg = resolve_audit_config({**base, **flags.values(params), "run": run,
                                    "group": _groups(group) or base.get("group")})
        ledger = _open_ledger(c)
        try:
            if as_json:
                result = audit(cfg, ledger=ledger)
            else:
                with StageProgress(c.err) as progress:
                    result = audit(cfg, ledger=ledger, progress=progress)
        finally:
            if ledger is not None:
                ledger.close()
        if as_json:
            c.out.print_json(json.dumps(result.report))
        else:
            _render(c, result.report, result.out)

    params: list[click.Parameter] = [
        click.Argument(["run"], type=click.Path(path_type=Path)),
        click.Option(["--group", "group"], multiple=True, metavar="COLUMN",
                     help="Group columns to compare (repeat, or comma-separated; default: "
                     "those the run was trained with, or its prepared folder's)."),
        *flags.params,
        click.Option(["--config", "config"], type=click.Path(path_type=Path),
                     help="TOML file with audit fields (flags override it)."),
        click.Option(["--json", "as_json"], is_flag=True, help="Print the audit as JSON."),
    ]
    return Command("audit", callback=callback, params=params, help=HELP,
                   short_help="Explain a model, compare groups, write its model card.")


def register(group: click.Group) -> None:
    group.add_command(audit_command())
