"""Typed configuration shared by every capability: one strict base, one error formatter.

Every command's config (``TrainConfig``, ``PlanConfig``, ``ServeConfig``,
``PrepareConfig``…) and every validated data file (catalogs, plans, model
cards) derives from :class:`StrictConfig` and is validated through
:func:`validate_config`, so an unknown key is an error everywhere and every
problem is reported at once, in one format::

    invalid configuration (2 problems):
      - train.lr: Input should be greater than 0 (got -1)
      - model.nmae: unknown key (known keys: activation, channels, …)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from shoestring.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class StrictConfig(BaseModel):
    """Unknown keys are errors: a typo in a TOML file or a flag must not be ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _submodel(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that the field at ``loc`` (a validation error's location) lives in."""
    import typing

    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return current if isinstance(current, type) and issubclass(current, BaseModel) \
                else None
        ann = fields[part].annotation
        candidates = [a for a in (typing.get_args(ann) or (ann,))
                      if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return current
        current = candidates[0]
    return current


def format_problem(err: dict[str, Any], model: type[BaseModel] | None = None,
                   where: str = "") -> str:
    """One validation error as ``place: message (got value)``."""
    loc = [str(p) for p in err["loc"]]
    place = " ".join(p for p in (where, ".".join(loc)) if p)
    if err["type"] == "extra_forbidden":
        owner = _submodel(model, err["loc"][:-1]) if model is not None else None
        known = f" (known keys: {', '.join(sorted(owner.model_fields))})" if owner else ""
        return f"{place}: unknown key{known}"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list)) or err["type"] == "missing" or not loc \
        else f" (got {value!r})"
    return f"{place}: {msg}{shown}" if place else msg


def problems_of(exc: ValidationError, model: type[BaseModel] | None = None,
                where: str = "") -> list[str]:
    """Every problem of ``exc``; a model-level check may report several, one per line."""
    return [line for e in exc.errors() for line in format_problem(e, model, where).split("\n")]


def validate_config(model: type[T], values: Any, *, hint: str | None = None,
                    where: str = "") -> T:
    """``values`` validated into ``model``; every problem reported in one :class:`ConfigError`.

    >>> class Train(StrictConfig):
    ...     lr: float = 0.1
    >>> validate_config(Train, {"lr": 0.5}).lr
    0.5
    >>> validate_config(Train, {"lr": "fast", "lrr": 1}, hint="see --help")
    Traceback (most recent call last):
    ...
    shoestring.errors.ConfigError: invalid configuration (2 problems):
      - lr: Input should be a valid number, unable to parse string as a number (got 'fast')
      - lrr: unknown key (known keys: lr)
    """
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(problems_of(exc, model, where), hint=hint) from None
