"""Image records: IDX files (``idx:DIR[#train|#test]``), image folders (``images:DIR``),
and any registered in-memory source (``digits``) as a fallback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from shoestring.data.images import ImageEntry, decode_image, scan_image_folder, target_mode
from shoestring.data.prepare.records import (
    GIVEN_TEST,
    GIVEN_TRAIN,
    NO_SPLIT,
    Batch,
    RecordSource,
    Reject,
)
from shoestring.errors import DataError

_SPLIT_CODE = {"train": GIVEN_TRAIN, "test": GIVEN_TEST, None: NO_SPLIT}


def _idx_files(directory: Path, splits: tuple[str, ...]) -> tuple[Path, ...]:
    from shoestring.data.idx import _SPLIT_FILES, _find

    return tuple(_find(directory, stem) for s in splits for stem in _SPLIT_FILES[s])


def idx_source(spec: str, directory: Path, selector: str | None,
               class_names: tuple[str, ...] | None = None) -> RecordSource:
    from shoestring.data.idx import read_idx_split

    if not directory.is_dir():
        raise DataError(f"'idx:' needs a directory, got '{directory}'",
                        hint="point at the folder holding the four IDX files")
    if selector not in (None, "train", "test"):
        raise DataError(f"unknown IDX split {selector!r} in {spec!r}",
                        hint="write idx:DIR, idx:DIR#train or idx:DIR#test")
    splits = (selector,) if selector else ("train", "test")
    files = _idx_files(directory, splits)

    def batches(chunk: int) -> Iterator[Batch]:
        for split in splits:
            images, labels = read_idx_split(directory, split)
            name = _idx_files(directory, (split,))[0].name
            code = NO_SPLIT if selector else _SPLIT_CODE[split]
            for lo in range(0, len(images), chunk):
                hi = min(lo + chunk, len(images))
                yield Batch(origins=[f"{name}#{i}" for i in range(lo, hi)],
                            labels=[str(int(v)) for v in labels[lo:hi]],
                            given=np.full(hi - lo, code, dtype=np.int8),
                            x=np.ascontiguousarray(images[lo:hi]))

    names = {str(i): n for i, n in enumerate(class_names)} if class_names else None
    return RecordSource(spec=spec, kind="image", files=files, batches=batches,
                        has_given_splits=selector is None, class_names=names)


def folder_source(spec: str, root: Path, image_mode: str) -> RecordSource:
    folder = scan_image_folder(root)

    def batches(chunk: int) -> Iterator[Batch]:
        state: dict = {"mode": None if image_mode == "auto" else image_mode, "shape": None}
        entries = folder.entries
        for lo in range(0, len(entries), chunk):
            yield _decode_chunk(entries[lo:lo + chunk], folder.root, state)

    return RecordSource(spec=spec, kind="image", files=tuple(e.path for e in folder.entries),
                        batches=batches, has_given_splits=folder.has_splits)


def _decode_chunk(entries: tuple[ImageEntry, ...], root: Path, state: dict) -> Batch:
    xs, origins, labels, given, rejects, converted = [], [], [], [], [], 0
    for e in entries:
        origin = str(e.path.relative_to(root))
        try:
            pixels, original = decode_image(e.path, state["mode"])
        except DataError as exc:
            rejects.append(Reject(origin, "unreadable_image", exc.message))
            continue
        if state["mode"] is None:
            state["mode"] = target_mode(original)
        if state["shape"] is None:
            state["shape"] = pixels.shape
        if pixels.shape != state["shape"]:
            c, h, w = state["shape"]
            rejects.append(Reject(origin, "bad_shape",
                                  f"{pixels.shape[2]}x{pixels.shape[1]}x{pixels.shape[0]} "
                                  f"(width x height x channels), expected {w}x{h}x{c}"))
            continue
        converted += target_mode(original) != state["mode"] or original not in ("L", "RGB")
        xs.append(pixels)
        origins.append(origin)
        labels.append(e.label)
        given.append(_SPLIT_CODE[e.split])
    x = np.stack(xs) if xs else None
    return Batch(origins=origins, labels=labels, given=np.array(given, dtype=np.int8), x=x,
                 rejects=rejects, converted=int(converted))


def dataset_source(spec: str) -> RecordSource:
    """Any registered in-memory source: its train and test splits as given splits."""
    from shoestring.data.sources import load_dataset
    from shoestring.types import Task

    ds = load_dataset(spec)
    kind = "image" if len(ds.input_shape) == 3 else "table"
    regression = ds.task is Task.regression

    def label(v) -> str:
        return repr(float(v)) if regression else str(int(v))

    def batches(chunk: int) -> Iterator[Batch]:
        for name, part, code in (("train", ds.train, GIVEN_TRAIN), ("test", ds.test, GIVEN_TEST)):
            x, y = part.x.numpy(), part.y.numpy()
            if kind == "table":
                x = x.reshape(len(x), -1).astype(np.float32)
            for lo in range(0, len(x), chunk):
                hi = min(lo + chunk, len(x))
                yield Batch(origins=[f"{name}#{i}" for i in range(lo, hi)],
                            labels=[label(v) for v in y[lo:hi]],
                            given=np.full(hi - lo, code, dtype=np.int8), x=x[lo:hi])

    names = None
    if ds.class_names and not regression:
        names = {str(i): n for i, n in enumerate(ds.class_names)}
    return RecordSource(spec=spec, kind=kind, files=(), batches=batches, has_given_splits=True,
                        feature_names=ds.feature_names, class_names=names,
                        raw_scale=ds.raw_scale,
                        notes=(f"'{spec}' has no files to fingerprint; it is keyed by name",))
