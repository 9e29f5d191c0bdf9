"""``shoestring data prepare|report|leakage`` (CLI only: flags from the typed configs)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from shoestring.cli.command import Command, Group
from shoestring.cli.context import CliContext, cli_context
from shoestring.cli.flags import Flags, Renamed, config_flags

PREPARE_HELP = """Validate, deduplicate, scan for PII, split and pack SOURCE into --out DIR.

\b
SOURCE is idx:DIR[#train|#test], images:DIR, csv:PATH, parquet:PATH,
text:PATH, jsonl:PATH, or any other data source (e.g. digits).
The folder it writes is a data source: shoestring train --data prepared:DIR.
Every flag is a field of the prepare config (saved as DIR/prepare.toml).

\b
Examples:
  shoestring data prepare idx:/usr/share/datasets/fashion-mnist --out prep/fmnist
  shoestring data prepare jsonl:reviews.jsonl --label-field stars --out prep/reviews \\
      --pii hash --near-threshold 0.7
  shoestring data prepare csv:houses.csv --label-field price --range rooms=1:30 --out prep/h
"""


# --target named the label column in release 0.1; --target now only means METRIC=VALUE.
RENAMED = [Renamed("--target", "label_field", "--label")]


def _detect_flags(model) -> Flags:
    return config_flags(model, skip={"source", "out", "train", "test"}, renamed=RENAMED,
                        aliases={"label_field": ["--label", "--label-field"],
                                 "ranges": ["--range"]})


def _print_report(c: CliContext, report: dict, as_json: bool) -> None:
    if as_json:
        c.out.print_json(json.dumps(report))
        return
    from shoestring.data.prepare.report import render_report

    for part in render_report(report):
        c.out.print(part)


def prepare_command() -> click.Command:
    from shoestring.data.prepare.config import PrepareConfig

    flags = _detect_flags(PrepareConfig)

    @click.pass_context
    def callback(ctx: click.Context, source: str, out: Path, config: Path | None,
                 as_json: bool, **params) -> None:
        from shoestring.data.prepare import prepare, resolve_prepare_config
        from shoestring.train.config import read_toml

        c = cli_context(ctx)
        base = read_toml(config) if config is not None else {}
        values = {**base, **flags.values(params), "source": source, "out": out}
        result = prepare(resolve_prepare_config(values),
                         log=lambda m: c.err.print(m, highlight=False))
        if result.reused:
            c.err.print(f"Reused '{result.out}': same inputs and options as before "
                        "(pass --force to recompute).", highlight=False)
        _print_report(c, result.report, as_json)
        if not as_json:
            c.out.print(f"Prepared folder: {result.out}  (train with --data "
                        f"prepared:{result.out})", highlight=False)

    params: list[click.Parameter] = [
        click.Argument(["source"]),
        click.Option(["--out", "-o", "out"], type=click.Path(path_type=Path), required=True,
                     help="Prepared folder to write."),
        click.Option(["--config", "config"], type=click.Path(path_type=Path),
                     help="TOML file with prepare fields (flags override it)."),
        click.Option(["--json", "as_json"], is_flag=True, help="Print the report as JSON."),
        *flags.params]
    return Command("prepare", callback=callback, params=params, help=PREPARE_HELP,
                   short_help="Validate, deduplicate, anonymize, split and pack data.")


def report_command() -> click.Command:
    @click.pass_context
    def callback(ctx: click.Context, directory: Path, as_json: bool) -> None:
        from shoestring.data.prepare import load_report

        _print_report(cli_context(ctx), load_report(directory), as_json)

    return Command("report", callback=callback, params=[
        click.Argument(["directory"], type=click.Path(path_type=Path)),
        click.Option(["--json", "as_json"], is_flag=True, help="Print the report as JSON.")],
        help="Show the report of a prepared folder.")


def leakage_command() -> click.Command:
    from shoestring.data.prepare.config import LeakageConfig

    flags = _detect_flags(LeakageConfig)

    @click.pass_context
    def callback(ctx: click.Context, train: str, test: str, as_json: bool, **params) -> None:
        from shoestring.data.prepare.config import resolve_leakage_config
        from shoestring.data.prepare.leakage import find_leakage

        c = cli_context(ctx)
        cfg = resolve_leakage_config({**flags.values(params), "train": train, "test": test})
        result = find_leakage(cfg)
        if as_json:
            c.out.print_json(json.dumps(result))
            return
        _print_leakage(c, result)

    params: list[click.Parameter] = [
        click.Argument(["train"]), click.Argument(["test"]),
        click.Option(["--json", "as_json"], is_flag=True, help="Print the result as JSON."),
        *flags.params]
    return Command(
        "leakage", callback=callback, params=params,
        help="Report TEST records that also appear in TRAIN, exactly or nearly.\n\n"
        "\b\nExample:\n  shoestring data leakage idx:/usr/share/datasets/fashion-mnist#train "
        "idx:/usr/share/datasets/fashion-mnist#test")


def _print_leakage(c: CliContext, r: dict) -> None:
    from shoestring.cli.views import print_leakage_examples

    leak = r["test_in_train"]
    c.out.print(f"{leak['total']:,} of {r['test_records']:,} test records "
                f"({leak['share']:.2%}) also appear in train: {leak['exact']:,} exact, "
                f"{leak['near']:,} near ({r['train_records']:,} train records, "
                f"{r['elapsed_seconds']:.1f} s)", highlight=False)
    if r["examples"]:
        print_leakage_examples(c.out, r["examples"])


def register(group: click.Group) -> None:
    data = Group("data", help="Prepare data: validate, deduplicate, anonymize, split "
                       "without leakage, pack; report; find train/test leakage.")
    for make in (prepare_command, report_command, leakage_command):
        data.add_command(make())
    group.add_command(data)
