"""Text records: ``text:PATH`` (a .txt file or a folder of them; one document per
line, or per file) and ``jsonl:PATH`` (a .jsonl file or a folder; one record per
line). Lines are read as bytes and decoded one at a time, so a line that is not
UTF-8 is quarantined with its file and line number instead of stopping the run.
Blank lines separate records; they are not records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from shoestring.data.prepare.records import NO_SPLIT, Batch, RecordSource, Reject
from shoestring.errors import DataError


def _files(path: Path, suffixes: tuple[str, ...], scheme: str) -> tuple[Path, ...]:
    if path.is_file():
        return (path,)
    if path.is_dir():
        files = tuple(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in suffixes
                             and not p.name.startswith(".")))
        if files:
            return files
        raise DataError(f"folder '{path}' has no {' or '.join(suffixes)} files",
                        hint=f"point '{scheme}:' at a file or a folder of {suffixes[0]} files")
    raise DataError(f"data path '{path}' does not exist", hint="check the path and spelling")


def _lines(files: tuple[Path, ...], root: Path) -> Iterator[tuple[str, int, bytes]]:
    for f in files:
        name = f.name if f == root else str(f.relative_to(root))
        with open(f, "rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                if raw.strip():
                    yield name, line_no, raw


class _Collector:
    """Accumulates one chunk: valid records and rejections."""

    def __init__(self) -> None:
        self.origins: list[str] = []
        self.texts: list[str] = []
        self.labels: list[str | None] = []
        self.rejects: list[Reject] = []

    def __len__(self) -> int:
        return len(self.origins) + len(self.rejects)

    def add(self, origin: str, text: str, label: str | None) -> None:
        self.origins.append(origin)
        self.texts.append(text)
        self.labels.append(label)

    def batch(self) -> Batch:
        return Batch(origins=self.origins, labels=self.labels,
                     given=np.full(len(self.origins), NO_SPLIT, np.int8), texts=self.texts,
                     rejects=self.rejects)


def text_source(spec: str, path: Path, unit: str) -> RecordSource:
    files = _files(path, (".txt",), "text")

    def batches(chunk: int) -> Iterator[Batch]:
        col = _Collector()
        items = _whole_files(files, path) if unit == "file" else _lines(files, path)
        for name, line_no, raw in items:
            origin = f"{name}:{line_no}" if unit == "line" else name
            try:
                col.add(origin, raw.decode("utf-8").rstrip("\r\n"), None)
            except UnicodeDecodeError as exc:
                col.rejects.append(Reject(origin, "bad_encoding",
                                          f"byte {exc.start} is not UTF-8"))
            if len(col) >= chunk:
                yield col.batch()
                col = _Collector()
        if len(col):
            yield col.batch()

    return RecordSource(spec=spec, kind="text", files=files, batches=batches)


def _whole_files(files: tuple[Path, ...], root: Path) -> Iterator[tuple[str, int, bytes]]:
    for f in files:
        data = f.read_bytes()
        if data.strip():
            yield (f.name if f == root else str(f.relative_to(root))), 0, data


def _label_text(value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value)


def jsonl_source(spec: str, path: Path, text_field: str, label_field: str | None
                 ) -> RecordSource:
    files = _files(path, (".jsonl", ".json", ".ndjson"), "jsonl")

    def batches(chunk: int) -> Iterator[Batch]:
        col = _Collector()
        for name, line_no, raw in _lines(files, path):
            _parse(col, f"{name}:{line_no}", raw, text_field, label_field)
            if len(col) >= chunk:
                yield col.batch()
                col = _Collector()
        if len(col):
            yield col.batch()

    return RecordSource(spec=spec, kind="text", files=files, batches=batches)


def _parse(col: _Collector, origin: str, raw: bytes, text_field: str,
           label_field: str | None) -> None:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        col.rejects.append(Reject(origin, "bad_encoding", f"byte {exc.start} is not UTF-8"))
        return
    except json.JSONDecodeError as exc:
        col.rejects.append(Reject(origin, "bad_json", exc.msg))
        return
    if not isinstance(obj, dict):
        col.rejects.append(Reject(origin, "not_an_object", f"a JSON {type(obj).__name__}"))
        return
    if text_field not in obj:
        col.rejects.append(Reject(origin, "missing_field", f"no field {text_field!r}"))
        return
    text = obj[text_field]
    if not isinstance(text, str):
        col.rejects.append(Reject(origin, "bad_type",
                                  f"field {text_field!r} is a {type(text).__name__}, not a string"))
        return
    label = None
    if label_field is not None:
        if obj.get(label_field) is None:
            col.rejects.append(Reject(origin, "missing_label", f"no label in {label_field!r}"))
            return
        label = _label_text(obj[label_field])
        if label is None:
            col.rejects.append(Reject(origin, "bad_label",
                                      f"label {json.dumps(obj[label_field])[:40]} is not a "
                                      "string or an integer"))
            return
    col.add(origin, text, label)
