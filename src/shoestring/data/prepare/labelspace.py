"""Label texts to classes or regression targets, decided once all labels are seen."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoestring.data.classes import as_number, class_order
from shoestring.errors import DataError

# As in shoestring.data.csv_source: whole numbers with at most this many
# distinct values are classes; other numbers are regression targets.
MAX_INFERRED_CLASSES = 20


_number = as_number


def sort_labels(labels: list[str]) -> list[str]:
    """Numbers first in numeric order, then text: ``['10', '9', 'b']`` → ``['9', '10', 'b']``."""
    return list(class_order(labels))


@dataclass(frozen=True)
class LabelSpace:
    task: str | None                 # classification, regression, or None (no labels)
    classes: tuple[str, ...] = ()    # label texts in class order
    remap: np.ndarray | None = None  # staging code -> class index
    targets: np.ndarray | None = None  # staging code -> float target

    def y(self, codes: np.ndarray) -> np.ndarray:
        """Final targets for staging label codes (``-1`` where a record has no label)."""
        if self.task == "regression":
            return self.targets[codes].astype(np.float32)
        if self.task == "classification":
            return np.where(codes >= 0, self.remap[np.maximum(codes, 0)], -1).astype(np.int64)
        return np.full(len(codes), -1, dtype=np.int64)


def label_space(codes: dict[str, int], kind: str, requested: str | None) -> LabelSpace:
    """Decide the task and class order from the staged label vocabulary."""
    if not codes:
        return LabelSpace(task=None)
    by_code = [None] * len(codes)
    for text, c in codes.items():
        by_code[c] = text
    numbers = [_number(t) for t in by_code]
    task = requested
    if task is None:
        task = "classification"
        if kind == "table" and all(v is not None for v in numbers):
            whole = all(float(v).is_integer() for v in numbers)
            if not whole or len(numbers) > MAX_INFERRED_CLASSES:
                task = "regression"
    if task == "regression":
        bad = [t for t, v in zip(by_code, numbers) if v is None]
        if bad:
            raise DataError(f"regression labels must be numbers, found {bad[0]!r}",
                            hint="use --task classification, or fix the label column")
        return LabelSpace(task="regression", targets=np.array(numbers, dtype=np.float64))
    classes = tuple(sort_labels(by_code))
    index = {t: i for i, t in enumerate(classes)}
    return LabelSpace(task="classification", classes=classes,
                      remap=np.array([index[t] for t in by_code], dtype=np.int64))
