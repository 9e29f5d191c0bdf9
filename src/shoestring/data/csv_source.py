"""CSV tables: numeric feature columns plus one target column.

The target is a class label (any text) for classification, or a number for
regression. ``task=None`` infers it: a target whose values are not all
numbers, or are whole numbers with at most ``MAX_INFERRED_CLASSES`` distinct
values, is a classification target.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import torch

from shoestring.data.holdout import random_holdout, stratified_holdout
from shoestring.data.sources import SourceOptions, require_path
from shoestring.errors import DataError
from shoestring.types import Dataset, Task, TensorDataset

MAX_INFERRED_CLASSES = 20


def _parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def infer_task(numbers: np.ndarray | None, requested: str | None) -> Task:
    """The task of a target column; shared by every table source.

    ``numbers`` is the target as float64, or ``None`` when some value is not a
    number (then it can only be a class label).
    """
    if requested is not None:
        try:
            return Task(requested)
        except ValueError:
            raise DataError(f"unknown task {requested!r}",
                            hint="use 'classification' or 'regression'") from None
    if numbers is None:
        return Task.classification
    whole = bool(np.all(np.mod(numbers, 1.0) == 0))
    return Task.classification if whole and len(np.unique(numbers)) <= MAX_INFERRED_CLASSES \
        else Task.regression


def _target_numbers(values: list[str]) -> np.ndarray | None:
    numbers = [_parse_float(v) for v in values]
    return None if any(n is None for n in numbers) else np.array(numbers, dtype=np.float64)


def load_csv(arg: str, options: SourceOptions) -> Dataset:
    path = require_path(arg, "csv")
    if path.is_dir():
        raise DataError(f"'csv:' needs a file, got directory '{path}'", hint="write 'csv:FILE.csv'")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise DataError(f"CSV file '{path}' is not UTF-8 text (byte {exc.start})",
                        hint="save the file as UTF-8") from exc
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise DataError(f"CSV file '{path}' is empty", hint="it needs a header line and data rows")
    header = [h.strip() for h in rows[0]]
    body = [(i + 2, r) for i, r in enumerate(rows[1:]) if any(c.strip() for c in r)]
    if not body:
        raise DataError(f"CSV file '{path}' has a header but no data rows",
                        hint="add rows below the header line")
    if len(body) < 2:
        raise DataError(f"CSV file '{path}' has only one data row",
                        hint="at least two rows are needed to hold one out for testing")
    if options.target is None:
        raise DataError(f"CSV data '{path}' needs a target column",
                        hint=f"pass --target COLUMN, one of: {', '.join(header)}")
    if options.target not in header:
        raise DataError(f"target column {options.target!r} not found in '{path}'",
                        hint=f"columns are: {', '.join(header)}")
    t_col = header.index(options.target)
    features = [i for i in range(len(header)) if i != t_col]
    if not features:
        raise DataError(f"CSV file '{path}' has no feature columns besides the target",
                        hint="add at least one numeric feature column")

    x = np.empty((len(body), len(features)), dtype=np.float32)
    targets: list[str] = []
    for r, (line_no, row) in enumerate(body):
        if len(row) != len(header):
            raise DataError(
                f"{path}:{line_no}: expected {len(header)} fields, found {len(row)}",
                hint="every row must have one value per header column")
        for c, col in enumerate(features):
            value = _parse_float(row[col].strip())
            if value is None or not math.isfinite(value):
                raise DataError(
                    f"{path}:{line_no}: column {header[col]!r} has non-numeric value {row[col]!r}",
                    hint="feature columns must be finite numbers; encode categories first "
                    "or drop the column")
            x[r, c] = value
        cell = row[t_col].strip()
        if not cell:
            raise DataError(f"{path}:{line_no}: target column {options.target!r} is empty",
                            hint="every row needs a target value")
        targets.append(cell)

    task = infer_task(_target_numbers(targets), options.task)
    class_names: tuple[str, ...] | None = None
    if task is Task.classification:
        class_names = tuple(sorted(set(targets), key=lambda v: (_parse_float(v) is None,
                                                               _parse_float(v) or 0.0, v)))
        lookup = {name: i for i, name in enumerate(class_names)}
        y = np.array([lookup[t] for t in targets], dtype=np.int64)
        train_idx, test_idx = stratified_holdout(y, options.test_fraction, options.seed)
        num_outputs = len(class_names)
    else:
        values = [_parse_float(t) for t in targets]
        for (line_no, _), v in zip(body, values):
            if v is None or not math.isfinite(v):
                raise DataError(f"{path}:{line_no}: regression target {options.target!r} "
                                "is not a finite number", hint="fix or remove that row")
        y = np.array(values, dtype=np.float32)
        train_idx, test_idx = random_holdout(len(y), options.test_fraction, options.seed)
        num_outputs = 1
    return Dataset(
        name=f"csv:{path}",
        task=task,
        train=TensorDataset(torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx])),
        test=TensorDataset(torch.from_numpy(x[test_idx]), torch.from_numpy(y[test_idx])),
        input_shape=(len(features),),
        num_outputs=num_outputs,
        class_names=class_names,
        feature_names=tuple(header[i] for i in features),
    )
