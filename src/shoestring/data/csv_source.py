"""CSV tables: numeric feature columns plus one label column.

The label is a class (any text) for classification, or a number for
regression. ``task=None`` infers it: a label whose values are not all
numbers, or are whole numbers with at most ``MAX_INFERRED_CLASSES`` distinct
values, is a classification label. Columns and rows are read by the same
rules as ``shoestring data prepare`` (:mod:`shoestring.data.prepare.read_tables`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from shoestring.data.classes import class_index
from shoestring.data.groups import check_several_values, split_groups
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
    """The task of a label column; shared by every table source.

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
    """The ``csv:`` loader: ``data prepare``'s own table reader, so both accept the same files.

    Numeric columns (90% of the sampled cells are numbers) are the features,
    other columns are left out, and a row that breaks its columns' types (or
    has no label) is skipped; each of these is said in the dataset's notes.
    """
    from shoestring.data.prepare.read_tables import csv_source

    path = require_path(arg, "csv")
    if options.label is None:
        from shoestring.data.prepare.read_tables import _csv_header

        raise DataError(f"CSV data '{path}' needs a label column",
                        hint=f"pass --label COLUMN, one of: {', '.join(_csv_header(path))}")
    source = csv_source(f"csv:{path}", path, options.label, tuple(options.groups))
    xs, labels, rejects, group_rows = [], [], [], []
    for batch in source.batches(CHUNK_ROWS):
        xs.append(batch.x.astype(np.float32))
        labels += batch.labels
        rejects += batch.rejects
        group_rows += batch.groups or []
    x = np.concatenate(xs) if xs else np.empty((0, len(source.feature_names)), np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():  # NaN, inf, or a number beyond float32
        from shoestring.data.prepare.records import Reject

        bad = np.flatnonzero(~finite)
        rejects += [Reject(f"row {i + 1}", "not_finite", "a feature is NaN or infinite")
                    for i in bad]
        x, labels = x[finite], [lab for lab, ok in zip(labels, finite) if ok]
        group_rows = [g for g, ok in zip(group_rows, finite) if ok] if group_rows else []
    notes = _reading_notes(path, source.feature_names, options.label, rejects,
                           tuple(options.groups))
    if len(labels) < 2:
        raise DataError(f"CSV file '{path}' has {len(labels)} usable data row(s)"
                        + (f" ({len(rejects)} skipped: {rejects[0].detail} at {rejects[0].origin})"
                           if rejects else ""),
                        hint="at least two rows are needed to hold one out for testing")
    if not source.feature_names:
        raise DataError(f"CSV file '{path}' has no numeric feature column besides the label",
                        hint="add at least one numeric feature column")
    groups = {name: [row[k] for row in group_rows] for k, name in enumerate(options.groups)}
    check_several_values(groups, str(path))
    task = infer_task(_target_numbers(labels), options.task)
    class_names: tuple[str, ...] | None = None
    if task is Task.classification:
        y, class_names = class_index(labels)
        train_idx, test_idx = stratified_holdout(y, options.test_fraction, options.seed)
        num_outputs = len(class_names)
    else:
        values = [_parse_float(t) for t in labels]
        if any(v is None or not math.isfinite(v) for v in values):
            raise DataError(f"regression label {options.label!r} in '{path}' has values that "
                            "are not finite numbers", hint="fix or remove those rows, or pass "
                            "--task classification")
        y = np.array(values, dtype=np.float32)
        train_idx, test_idx = random_holdout(len(y), options.test_fraction, options.seed)
        num_outputs = 1
    return Dataset(
        name=f"csv:{path}",
        task=task,
        train=TensorDataset(torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx]),
                            split_groups(groups, train_idx)),
        test=TensorDataset(torch.from_numpy(x[test_idx]), torch.from_numpy(y[test_idx]),
                           split_groups(groups, test_idx)),
        input_shape=(x.shape[1],),
        num_outputs=num_outputs,
        class_names=class_names,
        feature_names=tuple(source.feature_names),
        notes=notes,
    )


CHUNK_ROWS = 65536


def _reading_notes(path, features, label, rejects, groups=()) -> tuple[str, ...]:
    from shoestring.data.prepare.read_tables import _csv_header

    header = _csv_header(path)
    skipped = [h for h in header if h not in features and h != label and h not in groups]
    notes = []
    if skipped:
        notes.append(f"csv: non-numeric column(s) left out of the features: {', '.join(skipped)}")
    if rejects:
        first = rejects[0]
        notes.append(f"csv: {len(rejects)} row(s) skipped (first: {first.origin}, "
                     f"{first.detail}); 'shoestring data prepare' lists them all")
    return tuple(notes)
