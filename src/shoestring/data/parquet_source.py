"""Parquet tables as a data source: ``parquet:PATH`` (read with pyarrow).

Like ``csv:``, numeric columns are the features and ``--target COLUMN`` is
what to predict; the task is inferred the same way (see
:mod:`shoestring.data.csv_source`). Parquet keeps column types, so a text
column is recognised without guessing and reported by name.
"""

from __future__ import annotations

import numpy as np
import torch

from shoestring.data.csv_source import infer_task
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
    if options.target is None:
        raise DataError(f"Parquet data '{path}' needs a target column",
                        hint=f"pass --target COLUMN, one of: {', '.join(names)}")
    if options.target not in names:
        raise DataError(f"target column {options.target!r} not found in '{path}'",
                        hint=f"columns are: {', '.join(names)}")
    if table.num_rows < 2:
        raise DataError(f"Parquet file '{path}' has {table.num_rows} rows",
                        hint="at least two rows are needed to hold one out for testing")
    features = [n for n in names if n != options.target]
    bad = [n for n in features if not is_numeric_type(table.schema.field(n).type)]
    if bad:
        raise DataError(f"Parquet file '{path}' has non-numeric feature column(s): "
                        f"{', '.join(bad)}",
                        hint="encode or drop them, or run 'shoestring data prepare' which keeps "
                        "only numeric features")
    if not features:
        raise DataError(f"Parquet file '{path}' has no feature columns besides the target",
                        hint="add at least one numeric feature column")
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
    target = table.column(options.target)
    if target.null_count:
        raise DataError(f"target column {options.target!r} in '{path}' has {target.null_count} "
                        "missing values", hint="every row needs a target value")
    raw = target.to_numpy(zero_copy_only=False)
    numeric = is_numeric_type(target.type)
    task = infer_task(raw.astype(np.float64) if numeric else None, options.task)
    class_names = None
    if task is Task.classification:
        values = raw.astype(np.float64) if numeric else raw.astype(str)
        uniq = np.unique(values)
        class_names = tuple(str(int(v)) if numeric and float(v).is_integer() else str(v)
                            for v in uniq)
        y = np.searchsorted(uniq, values).astype(np.int64)
        train_idx, test_idx = stratified_holdout(y, options.test_fraction, options.seed)
        num_outputs = len(class_names)
    else:
        if not numeric:
            raise DataError(f"regression target {options.target!r} in '{path}' is not numeric",
                            hint="use a numeric column, or --task classification")
        y = raw.astype(np.float32)
        train_idx, test_idx = random_holdout(len(y), options.test_fraction, options.seed)
        num_outputs = 1
    return Dataset(
        name=f"parquet:{path}", task=task,
        train=TensorDataset(torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx])),
        test=TensorDataset(torch.from_numpy(x[test_idx]), torch.from_numpy(y[test_idx])),
        input_shape=(len(features),), num_outputs=num_outputs, class_names=class_names,
        feature_names=tuple(features))
