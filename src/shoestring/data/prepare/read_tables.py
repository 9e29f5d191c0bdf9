"""Table records: CSV (``csv:PATH``, streamed with the csv module) and Parquet
(``parquet:PATH``, streamed by record batch with pyarrow).

The label column is ``label_field``. Other columns are features when numeric
and text (scanned for PII, not kept) otherwise: CSV columns are typed by the
first 1000 rows (a column is numeric when at least 90% of its non-empty cells
parse as numbers),
Parquet columns by the file's schema. Later cells that break the type are
rejected with their line or row.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from shoestring.data.groups import check_group_columns, group_text
from shoestring.data.prepare.records import NO_SPLIT, Batch, RecordSource, Reject
from shoestring.errors import DataError

# Share of a CSV column's sampled cells that must be numbers for it to be a feature.
NUMERIC_SHARE = 0.9


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _row_values(cells: list[str], numeric: list[int], label_col: int | None, header: list[str]
                ) -> tuple[list[float] | None, str | None, str]:
    """Feature values and label of one row, or ``(None, reason, detail)``."""
    values = []
    for c in numeric:
        cell = cells[c].strip()
        if not cell:
            return None, "missing_value", f"column {header[c]!r} is empty"
        v = _float(cell)
        if v is None:
            return None, "not_a_number", f"column {header[c]!r} has {cell!r}"
        values.append(v)
    if label_col is not None and not cells[label_col].strip():
        return None, "missing_label", f"label column {header[label_col]!r} is empty"
    return values, None, ""


def csv_source(spec: str, path: Path, label_field: str | None,
               groups: tuple[str, ...] = ()) -> RecordSource:
    if path.is_dir():
        raise DataError(f"'csv:' needs a file, got directory '{path}'", hint="write 'csv:FILE.csv'")
    header = _csv_header(path)
    if label_field is not None and label_field not in header:
        raise DataError(f"label column {label_field!r} not found in '{path}'",
                        hint=f"columns are: {', '.join(header)}")
    check_group_columns(groups, header, label_field, str(path))
    label_col = header.index(label_field) if label_field is not None else None
    g_cols = [header.index(g) for g in groups]
    numeric = [i for i in _numeric_columns(path, header, label_col) if i not in g_cols]
    text_cols = [i for i in range(len(header))
                 if i not in numeric and i != label_col and i not in g_cols]

    def batches(chunk: int) -> Iterator[Batch]:
        # surrogateescape keeps undecodable bytes, so one bad line is rejected
        # instead of aborting the whole read.
        with path.open(newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = csv.reader(f)
            next(reader, None)
            rows, line = [], reader.line_num
            for cells in reader:
                start, line = line + 1, reader.line_num
                if not any(c.strip() for c in cells):
                    continue  # blank lines are not records
                rows.append((start, cells))
                if len(rows) == chunk:
                    yield _csv_batch(path, rows, header, numeric, label_col, text_cols, g_cols)
                    rows = []
            if rows:
                yield _csv_batch(path, rows, header, numeric, label_col, text_cols, g_cols)

    return RecordSource(spec=spec, kind="table", files=(path,), batches=batches,
                        feature_names=tuple(header[i] for i in numeric), label_column=label_field,
                        group_columns=tuple(groups))


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), None)
    except UnicodeDecodeError as exc:
        raise DataError(f"CSV header of '{path}' is not UTF-8 (byte {exc.start})",
                        hint="save the file as UTF-8") from None
    if not header or not any(h.strip() for h in header):
        raise DataError(f"CSV file '{path}' is empty", hint="it needs a header line and data rows")
    return [h.strip() for h in header]


def _numeric_columns(path: Path, header: list[str], label_col: int | None,
                     sample: int = 1000) -> list[int]:
    """Columns where at least NUMERIC_SHARE of the non-empty sampled cells are numbers.

    A majority rule rather than "all", so that one stray word in a numeric
    column quarantines that row instead of turning the column into text.
    """
    seen = [0] * len(header)
    numbers = [0] * len(header)
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f)
        next(reader, None)
        for n, cells in enumerate(reader):
            if n >= sample:
                break
            if len(cells) != len(header):
                continue
            for i, cell in enumerate(cells):
                cell = cell.strip()
                if cell:
                    seen[i] += 1
                    numbers[i] += _float(cell) is not None
    return [i for i in range(len(header))
            if i != label_col and seen[i] and numbers[i] >= NUMERIC_SHARE * seen[i]]


def _csv_batch(path: Path, rows, header, numeric, label_col, text_cols, g_cols=()) -> Batch:
    origins, labels, xs, sides, rejects, groups = [], [], [], [], [], []
    for line, cells in rows:
        origin = f"{path.name}:{line}"
        if len(cells) != len(header):
            rejects.append(Reject(origin, "bad_row_length",
                                  f"{len(cells)} fields, header has {len(header)}"))
            continue
        if any("\udc80" <= ch <= "\udcff" for cell in cells for ch in cell):
            rejects.append(Reject(origin, "bad_encoding", "bytes that are not UTF-8"))
            continue
        values, reason, detail = _row_values(cells, numeric, label_col, header)
        if values is None:
            rejects.append(Reject(origin, reason, detail))
            continue
        origins.append(origin)
        xs.append(values)
        labels.append(cells[label_col].strip() if label_col is not None else None)
        sides.append("\n".join(cells[i] for i in text_cols if cells[i].strip()))
        groups.append(tuple(group_text(cells[i] for i in g_cols)))
    x = np.array(xs, dtype=np.float64).reshape(len(xs), len(numeric))
    return Batch(origins=origins, labels=labels, given=np.full(len(xs), NO_SPLIT, np.int8),
                 x=x, side_texts=sides if text_cols else None, rejects=rejects,
                 groups=groups if g_cols else None)


def parquet_source(spec: str, path: Path, label_field: str | None,
                   groups: tuple[str, ...] = ()) -> RecordSource:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shoestring.data.parquet_source import is_numeric_type

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read Parquet file '{path}': {exc}",
                        hint="is it really a Parquet file? it may be truncated") from None
    names = list(schema.names)
    if label_field is not None and label_field not in names:
        raise DataError(f"label column {label_field!r} not found in '{path}'",
                        hint=f"columns are: {', '.join(names)}")
    check_group_columns(groups, names, label_field, str(path))
    numeric = [n for n in names if n != label_field and n not in groups
               and is_numeric_type(schema.field(n).type)]
    text = [n for n in names if n != label_field and n not in numeric and n not in groups]

    def batches(chunk: int) -> Iterator[Batch]:
        row = 0
        for rb in pq.ParquetFile(path).iter_batches(batch_size=chunk):
            yield _parquet_batch(path, rb, row, numeric, text, label_field, groups)
            row += rb.num_rows

    return RecordSource(spec=spec, kind="table", files=(path,), batches=batches,
                        feature_names=tuple(numeric), label_column=label_field,
                        group_columns=tuple(groups))


def _parquet_batch(path, rb, first_row, numeric, text, label_field, groups=()) -> Batch:
    n = rb.num_rows
    cols = {name: rb.column(name) for name in rb.schema.names}
    x = np.empty((n, len(numeric)), dtype=np.float64)
    bad = np.zeros(n, dtype=bool)
    why: dict[int, tuple[str, str]] = {}
    for j, name in enumerate(numeric):
        arr = cols[name]
        valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        x[:, j] = arr.cast("float64").fill_null(0.0).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(~valid & ~bad):
            why[int(i)] = ("missing_value", f"column {name!r} is null")
        bad |= ~valid
    labels: list[str | None] = [None] * n
    if label_field is not None:
        raw = cols[label_field].to_pylist()
        for i, v in enumerate(raw):
            if v is None:
                if not bad[i]:
                    why[i] = ("missing_label", f"label column {label_field!r} is null")
                bad[i] = True
            else:
                labels[i] = _label_text(v)
    sides = None
    if text:
        cells = [cols[name].to_pylist() for name in text]
        sides = ["\n".join(str(c[i]) for c in cells if c[i] is not None) for i in range(n)]
    origins = [f"{path.name}#row{first_row + i}" for i in range(n)]
    rejects = [Reject(origins[i], *why[i]) for i in sorted(why)]
    keep = ~bad
    group_rows = None
    if groups:
        group_rows = list(zip(*(group_text(cols[g].to_pylist()) for g in groups)))
    batch = Batch(origins=origins, labels=labels, given=np.full(n, NO_SPLIT, np.int8), x=x,
                  side_texts=sides, rejects=rejects, groups=group_rows)
    return batch.keep(keep)


def _label_text(v) -> str:
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return str(int(v))
    return str(v)
