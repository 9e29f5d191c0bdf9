"""Click options generated from the typed config: one flag per config field.

``[train] max_steps`` becomes ``--max-steps``, ``[model] n_layer`` becomes
``--n-layer``; the field's description is the flag's help. The config model
stays the single source of truth for the TOML schema, the Python API and the
CLI. A field name used by two sections gets the section as prefix
(``--data-seed``).
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import BaseModel

# Friendlier names for the two flags everybody types (``--name`` is the run's).
ALIASES = {("model", "name"): ["--model"], ("data", "source"): ["--data", "--source"]}


def _inner(annotation: Any) -> Any:
    """``int | None`` → ``int``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


class IntList(click.ParamType):
    name = "N,N,…"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return [int(v) for v in str(value).split(",") if v.strip()]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers", param, ctx)


def _click_type(annotation: Any):
    inner = _inner(annotation)
    if typing.get_origin(inner) is Literal:
        return click.Choice([str(a) for a in typing.get_args(inner)])
    if typing.get_origin(inner) is list:
        return IntList()
    return {int: int, float: float, str: str, bool: bool, Path: click.Path(path_type=Path)}.get(
        inner, str)


def section_options(sections: dict[str, type[BaseModel]]) -> list[tuple[click.Option, tuple[str, str]]]:
    """Options for every field of every section, each with its (section, field)."""
    counts: dict[str, int] = {}
    for model in sections.values():
        for name in model.model_fields:
            counts[name] = counts.get(name, 0) + 1
    options = []
    for section, model in sections.items():
        for name, info in model.model_fields.items():
            flag = name.replace("_", "-")
            if counts[name] > 1:
                flag = f"{section}-{flag}"
            decls = ALIASES.get((section, name), [f"--{flag}"])
            dest = f"{section}__{name}"
            help_text = f"[{section}] {info.description or ''}".strip()
            if _inner(info.annotation) is bool:
                opt = click.Option([f"--{flag}/--no-{flag}", dest], default=None, help=help_text)
            else:
                default = info.default if info.default is not None else None
                help_text += f" (default: {default})" if not isinstance(default, list) else \
                    f" (default: {','.join(map(str, default))})"
                opt = click.Option(decls + [dest], type=_click_type(info.annotation),
                                   default=None, help=help_text, metavar=None)
            options.append((opt, (section, name)))
    return options


def split_target(value: str | None) -> dict[str, dict[str, Any]]:
    """``--target`` means a metric goal when it has ``=``, else the CSV column.

    >>> split_target("test_accuracy=0.87")
    {'train': {'target': 'test_accuracy=0.87'}}
    >>> split_target("price")
    {'data': {'target': 'price'}}
    """
    if value is None:
        return {}
    return {"train": {"target": value}} if "=" in value else {"data": {"target": value}}


def overrides_from(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Collect ``section__field`` values that were given into nested overrides."""
    out: dict[str, dict[str, Any]] = split_target(params.pop("target", None))
    for key, value in params.items():
        if "__" in key and value is not None:
            section, name = key.split("__", 1)
            out.setdefault(section, {})[name] = value
    return out
