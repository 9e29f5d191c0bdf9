"""From a source spec to a :class:`RecordSource` (the readers preparation uses)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from shoestring.data.prepare.config import DetectConfig
from shoestring.data.prepare.records import GIVEN_TEST, GIVEN_TRAIN, NO_SPLIT, Batch, RecordSource
from shoestring.data.sources import require_path as _path
from shoestring.data.sources import split_spec
from shoestring.errors import DataError


def open_records(spec: str, cfg: DetectConfig, image_mode: str = "auto") -> RecordSource:
    """The reader for ``spec``; ``DIR#split`` selects one split of a split source."""
    from shoestring.data.prepare import read_images, read_tables, read_text

    scheme, arg = split_spec(spec)
    arg, _, selector = arg.partition("#")
    selector = selector or None
    groups = tuple(getattr(cfg, "group", None) or ())
    if groups and scheme not in ("csv", "parquet"):
        raise DataError(f"'{scheme}:' records have no columns, so no group columns "
                        f"({', '.join(groups)})",
                        hint="group columns come with tables: csv: or parquet:")
    if scheme == "idx":
        return read_images.idx_source(spec, _path(arg, scheme), selector)
    if scheme == "fashion-mnist":
        from shoestring.data.idx import FASHION_MNIST_CLASSES
        from shoestring.data.sources import SourceOptions

        directory = Path(arg) if arg else SourceOptions().fashion_mnist_dir
        return read_images.idx_source(spec, directory, selector, FASHION_MNIST_CLASSES)
    if selector is not None and scheme != "prepared":
        raise DataError(f"'{scheme}:' sources have no '#{selector}' split selector",
                        hint="only idx: and prepared: sources take '#train' / '#test'")
    if scheme == "images":
        return read_images.folder_source(spec, _path(arg, scheme), image_mode)
    if scheme == "csv":
        return read_tables.csv_source(spec, _path(arg, scheme), cfg.label_field, groups)
    if scheme == "parquet":
        return read_tables.parquet_source(spec, _path(arg, scheme), cfg.label_field, groups)
    if scheme == "text":
        return read_text.text_source(spec, _path(arg, scheme), cfg.text_unit)
    if scheme == "jsonl":
        return read_text.jsonl_source(spec, _path(arg, scheme), cfg.text_field, cfg.label_field)
    if scheme == "prepared":
        return prepared_source(spec, _path(arg, scheme), selector)
    return read_images.dataset_source(spec)


def _label(value, labels: list[str]) -> str | None:
    """A shard's stored target as label text (class codes map through ``labels``)."""
    if value is None or isinstance(value, str):
        return value
    if labels:
        return labels[int(value)] if value >= 0 else None
    return repr(float(value))


def prepared_source(spec: str, directory: Path, selector: str | None) -> RecordSource:
    """A prepared folder read back as records (for ``data leakage``)."""
    from shoestring.data.prepare.shards import ShardSet

    shards = ShardSet(directory / "shards")
    splits = [shards.split(selector)] if selector else shards.split_names()
    labels_of = shards.index.get("labels") or []

    def batches(chunk: int) -> Iterator[Batch]:
        for split in splits:
            code = NO_SPLIT if selector else (GIVEN_TEST if split == "test" else GIVEN_TRAIN)
            a, b = shards.load(split)
            for lo in range(0, len(a), chunk):
                hi = min(lo + chunk, len(a))
                labels = [_label(v, labels_of) for v in b[lo:hi]]
                common = {"origins": [f"{split}#{i}" for i in range(lo, hi)], "labels": labels,
                          "given": np.full(hi - lo, code, np.int8)}
                if shards.kind == "text":
                    yield Batch(texts=list(a[lo:hi]), **common)
                else:
                    yield Batch(x=a[lo:hi], **common)

    files = tuple(directory / "shards" / s["file"] for sp in splits
                  for s in shards.index["splits"][sp]["shards"])
    return RecordSource(spec=spec, kind=shards.kind, files=files, batches=batches,
                        has_given_splits=selector is None,
                        feature_names=tuple(shards.index.get("feature_names") or ()) or None)
