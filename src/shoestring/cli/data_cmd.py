"""``shoestring data prepare|report|leakage`` (CLI only: flags from the typed configs)."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

import click

from shoestring.cli.context import CliContext
from shoestring.cli.errors import guarded

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


def _inner(annotation: Any) -> Any:
    """``int | None`` → ``int``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return args[0] if union and len(args) == 1 else annotation


def _option(name: str, info) -> click.Option:
    flag = "--" + name.replace("_", "-")
    ann = _inner(info.annotation)
    help_text = info.description or ""
    if ann is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", name], default=None,
                            help=f"{help_text} (default: {info.default})")
    if typing.get_origin(ann) is Literal:
        typ = click.Choice([str(a) for a in typing.get_args(ann)])
    elif typing.get_origin(ann) is list:
        typ = click.STRING
        help_text += " (comma-separated)"
    elif typing.get_origin(ann) is dict:
        return click.Option(["--range", name], multiple=True, metavar="COL=LO:HI",
                            help=help_text)
    else:
        typ = {int: click.INT, float: click.FLOAT, Path: click.Path(path_type=Path)}.get(
            ann, click.STRING)
    decls = [flag, name] + (["--target"] if name == "label_field" else [])
    default = info.default if info.default is not None and \
        not callable(getattr(info, "default_factory", None)) else None
    shown = f" (default: {default})" if default not in (None, "") and \
        not isinstance(default, list) else ""
    return click.Option(decls, type=typ, default=None, help=help_text + shown)


def _config_options(model, skip: set[str]) -> list[click.Option]:
    return [_option(n, i) for n, i in model.model_fields.items() if n not in skip]


def _ranges(values: tuple[str, ...]) -> dict[str, list[float]] | None:
    if not values:
        return None
    out = {}
    for v in values:
        col, _, span = v.partition("=")
        lo, _, hi = span.partition(":")
        try:
            out[col.strip()] = [float(lo), float(hi)]
        except ValueError:
            raise click.BadParameter(f"{v!r} is not COL=LOW:HIGH", param_hint="--range") from None
    return out


def _values(params: dict[str, Any], model) -> dict[str, Any]:
    out = {}
    for name, value in params.items():
        if value is None or value == ():
            continue
        ann = _inner(model.model_fields[name].annotation)
        if typing.get_origin(ann) is list:
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif typing.get_origin(ann) is dict:
            value = _ranges(value)
        out[name] = value
    return out


def _print_report(c: CliContext, report: dict, as_json: bool) -> None:
    if as_json:
        c.out.print_json(json.dumps(report))
        return
    from shoestring.data.prepare.report import render_report

    for part in render_report(report):
        c.out.print(part)


def prepare_command() -> click.Command:
    from shoestring.data.prepare.config import PrepareConfig

    @click.pass_context
    def callback(ctx: click.Context, source: str, out: Path, config: Path | None,
                 as_json: bool, **params) -> None:
        c: CliContext = ctx.find_object(CliContext) or CliContext()

        def go():
            from shoestring.data.prepare import prepare, resolve_prepare_config
            from shoestring.train.config import read_toml

            base = read_toml(config) if config is not None else {}
            values = {**base, **_values(params, PrepareConfig), "source": source, "out": out}
            cfg = resolve_prepare_config(values)
            return prepare(cfg, log=lambda m: c.err.print(m, highlight=False))

        result = guarded(c.err, c.debug, go)
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
    ] + _config_options(PrepareConfig, {"source", "out"})
    return click.Command("prepare", callback=callback, params=params, help=PREPARE_HELP,
                         short_help="Validate, deduplicate, anonymize, split and pack data.",
                         context_settings={"max_content_width": 100})


def report_command() -> click.Command:
    @click.pass_context
    def callback(ctx: click.Context, directory: Path, as_json: bool) -> None:
        c: CliContext = ctx.find_object(CliContext) or CliContext()

        def go():
            from shoestring.data.prepare import load_report

            return load_report(directory)

        _print_report(c, guarded(c.err, c.debug, go), as_json)

    return click.Command("report", callback=callback, params=[
        click.Argument(["directory"], type=click.Path(path_type=Path)),
        click.Option(["--json", "as_json"], is_flag=True, help="Print the report as JSON.")],
        help="Show the report of a prepared folder.")


def leakage_command() -> click.Command:
    from shoestring.data.prepare.config import LeakageConfig

    @click.pass_context
    def callback(ctx: click.Context, train: str, test: str, as_json: bool, **params) -> None:
        c: CliContext = ctx.find_object(CliContext) or CliContext()

        def go():
            from shoestring.data.prepare.config import resolve_leakage_config
            from shoestring.data.prepare.leakage import find_leakage

            cfg = resolve_leakage_config({**_values(params, LeakageConfig), "train": train,
                                          "test": test})
            return find_leakage(cfg)

        result = guarded(c.err, c.debug, go)
        if as_json:
            c.out.print_json(json.dumps(result))
            return
        _print_leakage(c, result)

    params: list[click.Parameter] = [
        click.Argument(["train"]), click.Argument(["test"]),
        click.Option(["--json", "as_json"], is_flag=True, help="Print the result as JSON."),
    ] + _config_options(LeakageConfig, {"train", "test"})
    return click.Command(
        "leakage", callback=callback, params=params,
        help="Report TEST records that also appear in TRAIN, exactly or nearly.\n\n"
        "\b\nExample:\n  shoestring data leakage idx:/usr/share/datasets/fashion-mnist#train "
        "idx:/usr/share/datasets/fashion-mnist#test")


def _print_leakage(c: CliContext, r: dict) -> None:
    from rich.table import Table

    leak = r["test_in_train"]
    c.out.print(f"{leak['total']:,} of {r['test_records']:,} test records "
                f"({leak['share']:.2%}) also appear in train: {leak['exact']:,} exact, "
                f"{leak['near']:,} near ({r['train_records']:,} train records, "
                f"{r['elapsed_seconds']:.1f} s)", highlight=False)
    if r["examples"]:
        t = Table(title="examples")
        for col in ("kind", "test", "train", "similarity"):
            t.add_column(col)
        for e in r["examples"]:
            t.add_row(e["kind"], e["test"], e["train"], f"{e['similarity']:.3f}")
        c.out.print(t)


def register(group: click.Group) -> None:
    data = click.Group("data", help="Prepare data: validate, deduplicate, anonymize, split "
                       "without leakage, pack; report; find train/test leakage.")
    for make in (prepare_command, report_command, leakage_command):
        data.add_command(make())
    group.add_command(data)
