"""Flags from typed configs: the one generator every command's options come from.

``[train] max_steps`` becomes ``--max-steps``, ``micro_batch_size`` becomes
``--micro-batch-size``; the field's description is the flag's help and its
default is shown. A config made of sections (``TrainConfig``: ``[model]``,
``[data]``, ``[train]``) gets one flag per field of every section; a field
name two sections share gets the section as a prefix (``--data-seed``). The
config model stays the single source of truth for the TOML schema, the
Python API and the command line.

Renamed flags keep working: a :class:`Renamed` entry accepts the old flag
(hidden from ``--help``), warns ``--old is deprecated; use --new`` on stderr
and sets the new field, converting the value when the vocabulary changed.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import BaseModel

SEP = "__"  # section__field in click's parameter names


def _inner(annotation: Any) -> Any:
    """``int | None`` → ``int``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_section(annotation: Any) -> bool:
    inner = _inner(annotation)
    return isinstance(inner, type) and issubclass(inner, BaseModel)


class CommaList(click.ParamType):
    """``a,b,c`` → a list (of ints for ``list[int]``)."""

    def __init__(self, item: type) -> None:
        self.item = item
        self.name = "N,N,…" if item is int else "A,B,…"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        try:
            return [self.item(v.strip()) for v in str(value).split(",") if v.strip()]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of "
                      f"{'integers' if self.item is int else 'values'}", param, ctx)


class KeyRange(click.ParamType):
    """``KEY=LOW:HIGH`` → ``(KEY, [LOW, HIGH])`` (repeatable)."""

    name = "KEY=LO:HI"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        key, _, span = str(value).partition("=")
        lo, _, hi = span.partition(":")
        try:
            return key.strip(), [float(lo), float(hi)]
        except ValueError:
            self.fail(f"{value!r} is not KEY=LOW:HIGH", param, ctx)


def _click_type(annotation: Any) -> tuple[Any, dict[str, Any]]:
    """(click type, extra Option keywords) of a field's annotation."""
    inner = _inner(annotation)
    origin = typing.get_origin(inner)
    if origin is Literal:
        return click.Choice([str(a) for a in typing.get_args(inner)]), {}
    if origin in (list, tuple):
        item = (typing.get_args(inner) or (str,))[0]
        if item is Path:
            return click.Path(path_type=Path), {"multiple": True}
        return CommaList(int if item is int else str), {}
    if origin is dict:
        return KeyRange(), {"multiple": True}
    return {int: click.INT, float: click.FLOAT, bool: click.BOOL,
            Path: click.Path(path_type=Path)}.get(inner, click.STRING), {}


def _default_text(info) -> str:
    default = info.default
    if default is None or callable(getattr(info, "default_factory", None)) or \
            default == "" or str(default) == "PydanticUndefined":
        return ""
    if isinstance(default, (list, tuple)):
        return f" (default: {','.join(map(str, default))})" if default else ""
    return f" (default: {default})"


@dataclass(frozen=True)
class Renamed:
    """An old flag that still works: it warns and sets ``dest`` (a field, or section.field)."""

    old: str
    dest: str
    new: str
    convert: Callable[[Any], Any] | None = None
    type: Any = None
    is_flag: bool = False


@dataclass
class Flags:
    """The generated options of one config model, and how to read them back."""

    params: list[click.Parameter]
    dests: dict[str, tuple[str, ...]] = field(default_factory=dict)   # click name → path

    def values(self, given: dict[str, Any]) -> dict[str, Any]:
        """Nested config values from the parsed flags that were given (None: not given)."""
        out: dict[str, Any] = {}
        # Renamed flags first, so that the new spelling wins when both are given.
        for name, value in sorted(given.items(), key=lambda kv: not kv[0].startswith("renamed")):
            if name not in self.dests or value is None or value == ():
                continue
            if isinstance(value, tuple) and value and isinstance(value[0], tuple):
                value = dict(value)  # repeated KEY=LO:HI
            path = self.dests[name]
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = list(value) if isinstance(value, tuple) else value
        return out


def _warn_renamed(r: Renamed):
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None or value == () or value is False and r.is_flag:
            return None
        from shoestring.cli.context import cli_context

        cli_context(ctx).warn(f"{r.old} is deprecated; use {r.new}")
        return r.convert(value) if r.convert else value
    return callback


def _old_value(flag: str, old: dict[str, str]):
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value in old:
            from shoestring.cli.context import cli_context

            cli_context(ctx).warn(f"{flag} {value} is deprecated; use {flag} {old[value]}")
            return old[value]
        return value
    return callback


def config_flags(model: type[BaseModel], *, skip: Iterable[str] = (),
                 aliases: dict[str, list[str]] | None = None,
                 renamed: Iterable[Renamed] = (),
                 old_values: dict[str, dict[str, str]] | None = None) -> Flags:
    """Options for every field of ``model`` (and of its section models).

    ``skip`` names fields (``name`` or ``section.name``) that are not flags
    (positional arguments, or options the command spells itself); ``aliases``
    gives a field other spellings (``{"model.name": ["--model"]}``);
    ``renamed`` keeps old flags working; ``old_values`` keeps old choices of a
    field working (``{"precision": {"bf16-mixed": "bf16"}}``), with a warning.
    """
    aliases = aliases or {}
    old_values = old_values or {}
    skip = set(skip)
    fields: list[tuple[tuple[str, ...], Any]] = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        if _is_section(info.annotation):
            sub = _inner(info.annotation)
            fields += [((name, f), i) for f, i in sub.model_fields.items()
                       if f"{name}.{f}" not in skip]
        else:
            fields.append(((name,), info))
    counts: dict[str, int] = {}
    for path, _ in fields:
        counts[path[-1]] = counts.get(path[-1], 0) + 1
    flags = Flags([])
    for path, info in fields:
        key = ".".join(path)
        flag = path[-1].replace("_", "-")
        if counts[path[-1]] > 1 and len(path) > 1:
            flag = f"{path[0]}-{flag}"  # a section's field; a top-level one keeps its name
        dest = SEP.join(path)
        section = f"[{path[0]}] " if len(path) > 1 else ""
        help_text = f"{section}{info.description or ''}{_default_text(info)}".strip()
        if _inner(info.annotation) is bool:
            opt = click.Option([f"--{flag}/--no-{flag}", dest], default=None, help=help_text)
        else:
            typ, extra = _click_type(info.annotation)
            decls = aliases.get(key, [f"--{flag}"])
            if key in old_values:
                typ = click.Choice([*typ.choices, *old_values[key]])
                extra["callback"] = _old_value(decls[0], old_values[key])
            opt = click.Option([*decls, dest], type=typ, default=None, help=help_text, **extra)
        flags.params.append(opt)
        flags.dests[dest] = path
    for r in renamed:
        dest = "renamed" + SEP + r.old.lstrip("-").replace("-", "_")
        flags.params.append(click.Option(
            [r.old, dest], hidden=True, is_flag=r.is_flag, default=None,
            type=None if r.is_flag else (r.type or click.STRING), expose_value=True,
            callback=_warn_renamed(r)))
        flags.dests[dest] = tuple(r.dest.split("."))
    return flags
