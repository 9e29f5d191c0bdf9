"""Group columns: side columns of a table that say which group each row belongs to.

``--group sex --group age_band`` names columns that are never features: the
table sources (``csv:``, ``parquet:``, ``prepared:``) set them aside, keep
their values as text beside each split (:attr:`TensorDataset.groups`), and
the fairness audit compares the model across them. A group column may hold
text or numbers; an empty or null cell is the group ``(missing)``.

>>> check_group_columns(["sex"], ["age", "sex", "y"], "y", "t.csv")
>>> group_text([None, "", " F ", 2.0, 3])
['(missing)', '(missing)', 'F', '2', '3']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from shoestring.errors import DataError

MISSING = "(missing)"


def check_group_columns(groups: Sequence[str], columns: Sequence[str], label: str | None,
                        where: str) -> None:
    """Every group column exists and is not the label (else a :class:`DataError`)."""
    problems = [g for g in groups if g not in columns]
    if problems:
        raise DataError(f"group column(s) {', '.join(map(repr, problems))} not found in "
                        f"'{where}'", hint=f"columns are: {', '.join(columns)}")
    if label is not None and label in groups:
        raise DataError(f"column {label!r} is both the label and a group column",
                        hint="a group column describes who a row is about; choose another "
                        "--group or --label")
    if len(set(groups)) != len(groups):
        raise DataError(f"group columns repeat: {', '.join(groups)}",
                        hint="name each --group column once")


def group_text(values: Iterable) -> list[str]:
    """Cells as group names: whole numbers without ``.0``; empty or null → ``(missing)``."""
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(MISSING)
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))
        else:
            text = str(v).strip()
            out.append(text or MISSING)
    return out


def split_groups(groups: dict[str, list[str]] | None, index: np.ndarray
                 ) -> dict[str, tuple[str, ...]] | None:
    """The group values of the rows at ``index``."""
    if not groups:
        return None
    return {name: tuple(values[i] for i in index.tolist()) for name, values in groups.items()}


def check_several_values(groups: dict[str, Sequence[str]], where: str) -> None:
    """A group column with a single value has nothing to compare: a :class:`DataError`."""
    for name, values in groups.items():
        levels = set(values)
        if len(levels) < 2:
            only = next(iter(levels), "nothing")
            raise DataError(f"group column {name!r} in '{where}' has one value ({only!r}) in "
                            f"all {len(values)} rows: there is no other group to compare with",
                            hint="choose a column whose values split the rows into groups")
