"""The spill store of valid records between the reading pass and the writing pass.

Records are appended chunk by chunk and then only read back, so memory holds
one chunk at a time plus a few bytes per record (label code, given split,
offsets). Fixed-size records (images, table rows) go to one raw file read
back through a memmap; texts and origins go to line files with offsets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from shoestring.data.prepare.records import Batch, Kind


class _LineFile:
    """Append-only UTF-8 records with their byte offsets, readable by index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "wb")  # noqa: SIM115 (closed by finish/close)
        self._ends: list[np.ndarray] = []
        self._pos = 0

    def append(self, items: Sequence[str]) -> None:
        blobs = [s.encode("utf-8", "surrogatepass") for s in items]
        lens = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs))
        self._f.write(b"".join(blobs))
        self._ends.append(self._pos + np.cumsum(lens))
        self._pos += int(lens.sum())

    def finish(self) -> np.ndarray:
        self._f.close()
        ends = np.concatenate(self._ends) if self._ends else np.empty(0, np.int64)
        return np.concatenate(([0], ends))

    def close(self) -> None:
        self._f.close()


class Staging:
    """Valid records in reading order; record ``i`` is the ``i``-th valid record."""

    def __init__(self, directory: Path, kind: Kind) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.n = 0
        self.item_shape: tuple[int, ...] | None = None
        self.dtype: np.dtype | None = None
        self._x = open(self.directory / "x.bin", "wb") if kind != "text" else None  # noqa: SIM115 (closed by finish/close)
        self._texts = _LineFile(self.directory / "texts.bin") if kind == "text" else None
        self._origins = _LineFile(self.directory / "origins.bin")
        self._codes: list[np.ndarray] = []
        self._given: list[np.ndarray] = []
        self._groups: list[np.ndarray] = []
        self.label_codes: dict[str, int] = {}
        # Group columns (tables with --group): per column, value -> code; codes per record.
        self.group_levels: list[dict[str, int]] = []
        self._text_off = self._origin_off = None

    def append(self, batch: Batch) -> np.ndarray:
        """Store ``batch``'s records; returns their ids."""
        if batch.x is not None:
            x = batch.x if self.kind == "image" else batch.x.astype(np.float32)
            if self.item_shape is None:
                self.item_shape, self.dtype = tuple(x.shape[1:]), x.dtype
            self._x.write(np.ascontiguousarray(x, dtype=self.dtype).tobytes())
        if batch.texts is not None:
            self._texts.append(batch.texts)
        self._origins.append(batch.origins)
        codes = np.array([self._code(lab) for lab in batch.labels], dtype=np.int32)
        self._codes.append(codes)
        self._given.append(batch.given.astype(np.int8))
        if batch.groups is not None:
            self._groups.append(self._group_codes(batch.groups))
        ids = np.arange(self.n, self.n + len(batch), dtype=np.int64)
        self.n += len(batch)
        return ids

    def _group_codes(self, rows: list[tuple[str, ...]]) -> np.ndarray:
        k = len(rows[0]) if rows else len(self.group_levels)
        if not self.group_levels:
            self.group_levels = [{} for _ in range(k)]
        codes = np.empty((len(rows), k), dtype=np.int32)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                codes[r, c] = self.group_levels[c].setdefault(value, len(self.group_levels[c]))
        return codes

    def _code(self, label: str | None) -> int:
        if label is None:
            return -1
        return self.label_codes.setdefault(label, len(self.label_codes))

    def finish(self) -> None:
        """Close the writers; the store becomes readable."""
        if self._x is not None:
            self._x.close()
        if self._texts is not None:
            self._text_off = self._texts.finish()
        self._origin_off = self._origins.finish()
        self.codes = np.concatenate(self._codes) if self._codes else np.empty(0, np.int32)
        self.given = np.concatenate(self._given) if self._given else np.empty(0, np.int8)
        # [n, k] group codes of every record (k = 0 without group columns).
        self.groups = np.concatenate(self._groups) if self._groups else \
            np.empty((self.n, len(self.group_levels)), np.int32)

    def close(self) -> None:
        for w in (self._x, self._texts, self._origins):
            if w is not None:
                w.close()

    def x(self) -> np.ndarray:
        """All fixed-size records as a read-only memmap ``[n, *item_shape]``."""
        if self.n == 0 or self.item_shape is None:
            return np.empty((0,) + (self.item_shape or (0,)), dtype=self.dtype or np.float32)
        return np.memmap(self.directory / "x.bin", dtype=self.dtype, mode="r",
                         shape=(self.n,) + self.item_shape)

    def _read(self, name: str, offsets: np.ndarray, ids: Sequence[int]) -> list[str]:
        out = []
        with open(self.directory / name, "rb") as f:
            for i in ids:
                f.seek(int(offsets[i]))
                out.append(f.read(int(offsets[i + 1] - offsets[i])).decode("utf-8",
                                                                           "surrogatepass"))
        return out

    def texts(self, ids: Sequence[int]) -> list[str]:
        return self._read("texts.bin", self._text_off, ids)

    def origins(self, ids: Sequence[int]) -> list[str]:
        return self._read("origins.bin", self._origin_off, ids)

    def iter_texts(self, chunk: int) -> Iterator[tuple[np.ndarray, list[str]]]:
        """All texts in order, ``chunk`` at a time (sequential reads)."""
        with open(self.directory / "texts.bin", "rb") as f:
            for lo in range(0, self.n, chunk):
                hi = min(lo + chunk, self.n)
                blob = f.read(int(self._text_off[hi] - self._text_off[lo]))
                cuts = self._text_off[lo:hi + 1] - self._text_off[lo]
                yield np.arange(lo, hi), [blob[cuts[k]:cuts[k + 1]].decode("utf-8", "surrogatepass")
                                          for k in range(hi - lo)]


def dump_jsonl(path: Path, rows: Sequence[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
