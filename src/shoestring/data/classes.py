"""One class order for every source: numbers in numeric order first, then text.

``train`` (CSV, Parquet, JSONL) and ``data prepare`` name classes the same way,
so a model trained on either has the same class indices and a JSONL file with
labels ``9`` and ``10`` gets ``9`` first, as a person would expect.

>>> class_order(["10", "9", "b", "a", 9])
('9', '10', 'a', 'b')
>>> class_index(["b", "10", "9", "b"])[0].tolist()
[2, 1, 0, 2]
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def as_number(text: str) -> float | None:
    """The finite number a label spells, or None."""
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def class_order(labels: Iterable) -> tuple[str, ...]:
    """The distinct labels (as text) in class order."""
    distinct = {str(v) for v in labels}
    return tuple(sorted(distinct, key=lambda v: (as_number(v) is None, as_number(v) or 0.0, v)))


def class_index(labels: list) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class numbers (int64) of ``labels`` and the class names, in :func:`class_order`."""
    names = class_order(labels)
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[str(v)] for v in labels], dtype=np.int64), names
