"""Parquet tables as a data source: ``parquet:PATH`` (read with pyarrow).

Like ``csv:`` (and ``data prepare``), numeric columns are the features, other
columns are left out with a note, and ``--label COLUMN`` is what to predict;
the task and the class order are decided the same way (see
:mod:`shoestring.data.csv_source`). Parquet keeps column types, so a text
column is recognised without guessing.
"""

from __future__ import annotations

import numpy as np
import torch

from shoestring.data.classes import class_index
from shoestring.data.csv_source import infer_task
from shoestring.data.groups import (
    check_group_columns,
    check_several_values,
    group_text,
    split_groups,
)
from shoestring.data.holdout import random_holdout, stratified_holdout
from shoestring.data.sources import SourceOptions, require_path
from shoestring.errors import DataError
from shoestring.types import Dataset, Task, TensorDataset


def read_parquet_table(path):
    """The whole file as a pyarrow Table, with a clear error for a damaged file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read Parquet file '{path}': {exc}",
                        hint="is it really a Parquet file? it may be truncated") from None


def is_numeric_type(dtype) -> bool:
    import pyarrow.types as t

    return t.is_integer(dtype) or t.is_floating(dtype) or t.is_boolean(dtype) or \
        t.is_decimal(dtype)


def load_parquet(arg: str, options: SourceOptions) -> Dataset:
    path = require_path(arg, "parquet")
    table = read_parquet_table(path)
    names = table.column_names
    if options.label is None:
        raise DataError(f"Parquet data '{path}' needs a label column",
                        hint=f"pass --label COLUMN, one of: {', '.join(names)}")
    if options.label not in names:
        raise DataError(f"label column {options.label!r} not found in '{path}'",
                        hint=f"columns are: {', '.join(names)}")
    if table.num_rows < 2:
        raise DataError(f"Parquet file '{path}' has {table.num_rows} rows",
                        hint="at least two rows are needed to hold one out for testing")
    check_group_columns(options.groups, names, options.label, str(path))
    others = [n for n in names if n != options.label and n not in options.groups]
    features = [n for n in others if is_numeric_type(table.schema.field(n).type)]
    skipped = [n for n in others if n not in features]
    notes = (f"parquet: non-numeric column(s) left out of the features: {', '.join(skipped)}",) \
        if skipped else ()
    if not features:
        raise DataError(f"Parquet file '{path}' has no numeric feature column besides the label",
                        hint="add at least one numeric feature column")
    groups = {g: group_text(table.column(g).to_pylist()) for g in options.groups}
    check_several_values(groups, str(path))
    cols = []
    for n in features:
        col = table.column(n)
        if col.null_count:
            raise DataError(f"Parquet column {n!r} in '{path}' has {col.null_count} missing "
                            "values", hint="fill or drop them ('shoestring data prepare' "
                            "quarantines such rows)")
        cols.append(col.to_numpy(zero_copy_only=False).astype(np.float32))
    x = np.stack(cols, axis=1)
    if not np.isfinite(x).all():
        row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise DataError(f"Parquet file '{path}' row {row} has a NaN or infinite feature",
                        hint="fix or drop that row ('shoestring data prepare' quarantines it)")
    target = table.column(options.label)
    if target.null_count:
        raise DataError(f"label column {options.label!r} in '{path}' has {target.null_count} "
                        "missing values", hint="every row needs a label")
    raw = target.to_numpy(zero_copy_only=False)
    numeric = is_numeric_type(target.type)
    task = infer_task(raw.astype(np.float64) if numeric else None, options.task)
    class_names = None
    if task is Task.classification:
        texts = [str(int(v)) if numeric and float(v).is_integer() else str(v) for v in raw]
        y, class_names = class_index(texts)
        train_idx, test_idx = stratified_holdout(y, options.test_fraction, options.seed)
        num_outputs = len(class_names)
    else:
        if not numeric:
            raise DataError(f"regression target {options.label!r} in '{path}' is not numeric",
                            hint="use a numeric column, or --task classification")
        y = raw.astype(np.float32)
        train_idx, test_idx = random_holdout(len(y), options.test_fraction, options.seed)
        num_outputs = 1
    return Dataset(
        name=f"parquet:{path}", task=task,
        train=TensorDataset(torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx]),
                            split_groups(groups, train_idx)),
        test=TensorDataset(torch.from_numpy(x[test_idx]), torch.from_numpy(y[test_idx]),
                           split_groups(groups, test_idx)),
        input_shape=(len(features),), num_outputs=num_outputs, class_names=class_names,
        feature_names=tuple(features), notes=notes)
