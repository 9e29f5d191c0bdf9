"""Text records: ``text:PATH`` (a .txt file or a folder of them; one record per
line, per paragraph or per file) and ``jsonl:PATH`` (a .jsonl file or a folder;
one record per line). Text is read as bytes and decoded one record at a time,
so a record that is not UTF-8 is quarantined with its file and line number
instead of stopping the run. Blank lines separate records; they are not records.

The record of a ``text:`` source is also its unit of deduplication, so the
choice decides what a corpus keeps: deduplicating a play line by line drops
every repeated speaker tag (33,144 of 146,528 lines of the complete
Shakespeare). ``auto`` therefore reads paragraphs when blank lines separate
blocks of several lines, and lines otherwise (one document per line).
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


# ``auto`` looks at this much of the corpus; lines per block at or above
# PARAGRAPH_LINES mean prose or verse laid out in paragraphs.
SAMPLE_BYTES = 4 << 20
PARAGRAPH_LINES = 1.5


def choose_text_unit(files: tuple[Path, ...], sample_bytes: int = SAMPLE_BYTES
                     ) -> tuple[str, str]:
    """``("paragraph" | "line", why)`` from the layout of the first ``sample_bytes``."""
    lines = blocks = gaps = 0
    left = sample_bytes
    for f in files:
        with open(f, "rb") as fh:
            head = fh.read(left)
        left -= len(head)
        in_block, file_blocks = False, 0
        for raw in head.splitlines():
            if raw.strip():
                lines += 1
                file_blocks += not in_block
                in_block = True
            else:
                in_block = False
        blocks += file_blocks
        gaps += max(file_blocks - 1, 0)  # blank lines between text, not at the ends
        if left <= 0:
            break
    per_block = lines / blocks if blocks else 0.0
    if gaps == 0:
        return "line", "auto: no blank lines between lines, so one document per line"
    if per_block >= PARAGRAPH_LINES:
        return "paragraph", (f"auto: blank lines separate blocks of {per_block:.1f} lines on "
                             "average")
    return "line", f"auto: blocks average {per_block:.1f} lines, so one record per line"


def text_source(spec: str, path: Path, unit: str) -> RecordSource:
    files = _files(path, (".txt",), "text")
    why = "set by text_unit"
    if unit == "auto":
        unit, why = choose_text_unit(files)
    readers = {"file": _whole_files, "paragraph": _paragraphs, "line": _lines}

    def batches(chunk: int) -> Iterator[Batch]:
        col = _Collector()
        for name, line_no, raw in readers[unit](files, path):
            origin = name if unit == "file" else f"{name}:{line_no}"
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

    return RecordSource(spec=spec, kind="text", files=files, batches=batches, text_unit=unit,
                        notes=(f"text unit: {unit} ({why})",))


def _paragraphs(files: tuple[Path, ...], root: Path) -> Iterator[tuple[str, int, bytes]]:
    """Blocks of consecutive non-blank lines, each with the number of its first line."""
    for name, first, block in _blocks(files, root):
        yield name, first, b"".join(block).rstrip(b"\r\n")


def _blocks(files: tuple[Path, ...], root: Path) -> Iterator[tuple[str, int, list[bytes]]]:
    for f in files:
        name = f.name if f == root else str(f.relative_to(root))
        block: list[bytes] = []
        first = 0
        with open(f, "rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                if raw.strip():
                    if not block:
                        first = line_no
                    block.append(raw)
                elif block:
                    yield name, first, block
                    block = []
        if block:
            yield name, first, block


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
