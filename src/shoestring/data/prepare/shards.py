"""Shards: the packed, checksummed form of a prepared split.

Images and tables are written as safetensors files holding ``x`` and ``y`` (and
``g``, the group-column codes of tables prepared with ``--group``; their values
are listed in the index under ``groups``);
labelled texts as JSON Lines (``{"text": ..., "label": ...}``); unlabelled
texts as plain UTF-8 under ``<split>/NNNNN.txt`` (documents separated by a
newline, paragraphs by a blank line), with the documents' byte offsets beside
them in ``NNNNN.offsets``,
so that a split's folder is also a language-modelling corpus
(``--data text:DIR/shards/train``). ``shards/index.json``
lists every shard with its record count, size and SHA-256, and the checksum is
verified when a shard is read, so a damaged or edited file is an error, not a
silently different dataset. Shards are cut at about ``shard_mb`` MiB, so
:meth:`ShardSet.iter_batches` streams a split with one shard in memory, in an
order that depends only on ``(seed, epoch)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from shoestring.errors import DataError
from shoestring.io import (
    atomic_write_bytes,
    is_encrypted_path,
    read_bytes,
    read_chunks,
    read_text,
)

FORMAT = "shoestring-shards/1"
INDEX = "index.json"
# Other names people use for the validation split (``prepared:DIR#validation``).
SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val"}


def split_alias(name: str) -> str:
    """The stored name of a split: ``"validation"`` → ``"val"``; others unchanged."""
    return SPLIT_ALIASES.get(name, name)


def sha256_file(path: Path) -> str:
    """SHA-256 of the file's contents (its plaintext, in an encrypted folder)."""
    h = hashlib.sha256()
    for block in read_chunks(path):
        h.update(block)
    return h.hexdigest()


class ShardWriter:
    """Writes one split's shards; ``add`` takes records in their final order."""

    def __init__(self, directory: Path, split: str, kind: str, shard_bytes: int,
                 plain_text: bool = False, separator: str = "\n") -> None:
        self.directory, self.split, self.kind = Path(directory), split, kind
        self.plain_text = plain_text
        self.separator = separator  # after each plain-text record
        self.shard_bytes = shard_bytes
        self.shards: list[dict] = []
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._g: list[np.ndarray] = []
        self._texts: list[str] = []
        self._labels: list = []
        self._bytes = 0

    def add_arrays(self, x: np.ndarray, y: np.ndarray, g: np.ndarray | None = None) -> None:
        per = max(x[0].nbytes if len(x) else 1, 1)
        lo = 0
        while lo < len(x):
            room = max((self.shard_bytes - self._bytes) // per, 1)
            hi = min(len(x), lo + room)
            self._x.append(np.ascontiguousarray(x[lo:hi]))
            self._y.append(np.ascontiguousarray(y[lo:hi]))
            if g is not None:
                self._g.append(np.ascontiguousarray(g[lo:hi]))
            self._bytes += (hi - lo) * per
            lo = hi
            if self._bytes >= self.shard_bytes:
                self._flush()

    def add_texts(self, texts: Sequence[str], labels: Sequence) -> None:
        for t, lab in zip(texts, labels):
            self._texts.append(t)
            self._labels.append(lab)
            self._bytes += len(t) + 16
            if self._bytes >= self.shard_bytes:
                self._flush()

    def _flush_plain(self) -> None:
        folder = self.directory / self.split
        folder.mkdir(exist_ok=True)
        blobs = [(t + self.separator).encode("utf-8", "surrogatepass") for t in self._texts]
        offsets = np.zeros(len(blobs) + 1, dtype="<u8")
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        path = folder / f"{len(self.shards):05d}.txt"
        side = path.with_suffix(".offsets")
        atomic_write_bytes(path, b"".join(blobs), durable=False)
        atomic_write_bytes(side, offsets.tobytes(), durable=False)
        self.shards.append({"file": str(path.relative_to(self.directory)),
                            "records": len(blobs), "bytes": path.stat().st_size,
                            "sha256": sha256_file(path),
                            "offsets": str(side.relative_to(self.directory)),
                            "offsets_sha256": sha256_file(side),
                            **({"separator": self.separator} if self.separator != "\n" else {})})
        self._texts, self._labels, self._bytes = [], [], 0

    def _flush(self) -> None:
        name = f"{self.split}-{len(self.shards):05d}"
        if self.plain_text:
            if self._texts:
                self._flush_plain()
            return
        if self.kind == "text":
            if not self._texts:
                return
            path = self.directory / f"{name}.jsonl"
            lines = [json.dumps({"text": t, "label": lab} if lab is not None else {"text": t},
                                ensure_ascii=False) for t, lab in zip(self._texts, self._labels)]
            atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"),
                               durable=False)
            count = len(self._texts)
            self._texts, self._labels = [], []
        else:
            if not self._x:
                return
            from safetensors.numpy import save

            x, y = np.concatenate(self._x), np.concatenate(self._y)
            tensors = {"x": x, "y": y}
            if self._g:
                tensors["g"] = np.concatenate(self._g)
            path = self.directory / f"{name}.safetensors"
            atomic_write_bytes(path, save(tensors), durable=False)
            count = len(x)
            self._x, self._y, self._g = [], [], []
        self._bytes = 0
        self.shards.append({"file": path.name, "records": count, "bytes": path.stat().st_size,
                            "sha256": sha256_file(path)})

    def close(self) -> dict:
        self._flush()
        return {"records": sum(s["records"] for s in self.shards), "shards": self.shards}


def write_index(directory: Path, kind: str, splits: dict, meta: dict) -> None:
    index = {"format": FORMAT, "kind": kind, "splits": splits, **meta}
    atomic_write_bytes(Path(directory) / INDEX, json.dumps(index, indent=1).encode())


class ShardSet:
    """Reads the shards of a prepared folder, verifying checksums.

    >>> ShardSet(Path("/nonexistent"))                      # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    shoestring.errors.DataError: '/nonexistent/index.json' ...
    """

    def __init__(self, directory: Path, verify: bool = True) -> None:
        self.directory = Path(directory)
        self.verify = verify
        path = self.directory / INDEX
        try:
            self.index = json.loads(read_text(path))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"'{path}' is missing or unreadable ({exc.__class__.__name__})",
                            hint="is this a folder written by 'shoestring data prepare'? "
                            "prepare it again") from None
        if self.index.get("format") != FORMAT:
            raise DataError(f"'{path}' has format {self.index.get('format')!r}, "
                            f"expected {FORMAT!r}", hint="prepare the data again")
        self.kind = self.index["kind"]

    def split_names(self) -> list[str]:
        return [s for s, v in self.index["splits"].items() if v["records"]]

    def split(self, selector: str) -> str:
        """The split a ``#selector`` names (aliases resolved), checked to exist."""
        name = split_alias(selector)
        if name not in self.index["splits"]:
            raise DataError(f"prepared data in '{self.directory.parent}' has no split "
                            f"{selector!r}", hint="use one of: " + ", ".join(
                                f"#{s}" for s in self.index["splits"]) + " (or #validation)")
        return name

    def records(self, split: str) -> int:
        return int(self.index["splits"].get(split, {}).get("records", 0))

    def _shards(self, split: str) -> list[dict]:
        if split not in self.index["splits"]:
            raise DataError(f"prepared data in '{self.directory}' has no split {split!r}",
                            hint=f"splits are: {', '.join(self.index['splits'])}")
        return self.index["splits"][split]["shards"]

    def _checked(self, shard: dict, key: str = "file") -> Path:
        path = self.directory / shard[key]
        if not path.exists():
            raise DataError(f"shard '{path}' is missing", hint="prepare the data again")
        if self.verify and sha256_file(path) != self._digest(shard, key):
            raise self._mismatch(path)
        return path

    def _digest(self, shard: dict, key: str) -> str:
        return shard["sha256" if key == "file" else f"{key}_sha256"]

    def _mismatch(self, path: Path) -> DataError:
        return DataError(f"shard '{path}' does not match its SHA-256 in {INDEX}",
                         hint="the file was changed or damaged; prepare the data again")

    def _verified_bytes(self, shard: dict, key: str = "file") -> bytes:
        """The shard's contents, read (and decrypted) once and checked against the index."""
        path = self.directory / shard[key]
        if not path.exists():
            raise DataError(f"shard '{path}' is missing", hint="prepare the data again")
        data = read_bytes(path)
        if self.verify and hashlib.sha256(data).hexdigest() != self._digest(shard, key):
            raise self._mismatch(path)
        return data

    def _arrays(self, shard: dict) -> dict[str, np.ndarray]:
        """A safetensors shard: memory-mapped when plain; an encrypted one is decrypted into
        memory, never onto disk."""
        from safetensors.numpy import load, load_file

        path = self.directory / shard["file"]
        if is_encrypted_path(path):
            return load(self._verified_bytes(shard))
        return load_file(str(self._checked(shard)))

    def read_shard(self, shard: dict):
        """``(x, y)`` arrays, or ``(texts, labels)`` lists for text."""
        if "offsets" in shard:
            cuts = np.frombuffer(self._verified_bytes(shard, "offsets"), dtype="<u8")
            blob = self._verified_bytes(shard)
            tail = len(shard.get("separator", "\n").encode())
            texts = [blob[a:b - tail].decode("utf-8", "surrogatepass")
                     for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist())]
            return texts, [None] * len(texts)
        if self.kind == "text":
            rows = [json.loads(line) for line in
                    self._verified_bytes(shard).decode("utf-8").splitlines()]
            return [r["text"] for r in rows], [r.get("label") for r in rows]
        data = self._arrays(shard)
        return data["x"], data["y"]

    def load(self, split: str):
        """The whole split in memory (concatenated shards)."""
        parts = [self.read_shard(s) for s in self._shards(split)]
        if self.kind == "text":
            return [t for p in parts for t in p[0]], [lab for p in parts for lab in p[1]]
        if not parts:
            meta = self.index["x"]
            return (np.empty([0] + meta["shape"], dtype=meta["dtype"]),
                    np.empty(0, dtype=self.index["y"]["dtype"]))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def load_groups(self, split: str) -> dict[str, tuple[str, ...]]:
        """The group columns' values of a table split (``{}`` if prepared without
        ``--group``), checksums verified like the shards'."""
        meta = self.index.get("groups") or {}
        names, levels = meta.get("names") or [], meta.get("levels") or []
        if not names:
            return {}
        codes = [self._arrays(s)["g"] for s in self._shards(split)]
        g = np.concatenate(codes) if codes else np.empty((0, len(names)), np.int32)
        return {name: tuple(levels[c][int(v)] for v in g[:, c]) for c, name in enumerate(names)}

    def iter_batches(self, split: str, batch_size: int, seed: int, epoch: int
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Shuffled ``(x, y)`` batches holding one shard at a time; the order is a
        pure function of ``(seed, epoch)``, so a resumed epoch repeats exactly."""
        if self.kind == "text":
            raise DataError("iter_batches streams array shards; text shards are read with load()")
        rng = np.random.default_rng([seed, epoch])
        shards = self._shards(split)
        carry_x = carry_y = None
        for k in rng.permutation(len(shards)):
            x, y = self.read_shard(shards[k])
            perm = rng.permutation(len(x))
            x, y = x[perm], y[perm]
            if carry_x is not None:
                x, y = np.concatenate((carry_x, x)), np.concatenate((carry_y, y))
            full = len(x) // batch_size * batch_size
            for lo in range(0, full, batch_size):
                yield x[lo:lo + batch_size], y[lo:lo + batch_size]
            carry_x, carry_y = x[full:], y[full:]
        if carry_x is not None and len(carry_x):
            yield carry_x, carry_y
