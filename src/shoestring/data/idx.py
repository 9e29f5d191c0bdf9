"""IDX files (the MNIST format), raw or gzip-compressed.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a
type code, the number of dimensions, then each dimension as a big-endian
int32, then the data in C order.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from shoestring.data.array_cache import cached_arrays
from shoestring.data.sources import SourceOptions, require_path
from shoestring.errors import DataError
from shoestring.types import Dataset, Task, TensorDataset

# IDX type code -> numpy big-endian dtype (same table as the format's spec).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(
            f"cannot read IDX file '{path}': {exc}",
            hint="the file is damaged or truncated; download or copy it again",
        ) from exc


def parse_idx(data: bytes, origin: str = "<bytes>") -> np.ndarray:
    """Parse one IDX blob into an array, checking magic, header and length."""
    if len(data) < 4:
        raise DataError(f"IDX file '{origin}' is empty or shorter than its 4-byte magic",
                        hint="the file is truncated; copy it again")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(
            f"IDX file '{origin}' has wrong magic bytes {data[:4].hex()} "
            "(expected 0000 then a type code such as 08, then the number of dimensions)",
            hint="is this really an IDX (MNIST-format) file, and not e.g. an HTML error page?",
        )
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"IDX file '{origin}' has a truncated header ({ndim} dimensions)",
                        hint="the file is truncated; copy it again")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(dims)) * dtype.itemsize
    actual = len(data) - header
    if actual < expected:
        raise DataError(
            f"IDX file '{origin}' is truncated: header declares shape {dims} "
            f"({expected} data bytes) but only {actual} bytes follow",
            hint="the file is incomplete; copy it again",
        )
    if actual > expected:
        raise DataError(
            f"IDX file '{origin}' has {actual - expected} bytes beyond its declared shape {dims}",
            hint="the file is corrupt or two files were concatenated",
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz",
                      directory / stem.replace("-idx", ".idx"),
                      directory / f"{stem.replace('-idx', '.idx')}.gz"):
        if candidate.exists():
            return candidate
    raise DataError(
        f"IDX directory '{directory}' has no '{stem}' or '{stem}.gz'",
        hint="an IDX directory holds train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (optionally .gz)",
    )


def read_idx_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[n, 1, H, W]`` (uint8) and labels ``[n]`` of one split."""
    img_path, lbl_path = (_find(directory, s) for s in _SPLIT_FILES[split])
    images = parse_idx(_read_bytes(img_path), str(img_path))
    labels = parse_idx(_read_bytes(lbl_path), str(lbl_path))
    if images.ndim != 3:
        raise DataError(f"IDX image file '{img_path}' has shape {images.shape}, expected [n, H, W]",
                        hint="pass the images file, not the labels file")
    if labels.ndim != 1:
        raise DataError(f"IDX label file '{lbl_path}' has shape {labels.shape}, expected [n]",
                        hint="pass the labels file, not the images file")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"image/label count mismatch: '{img_path}' has {images.shape[0]} images "
            f"but '{lbl_path}' has {labels.shape[0]} labels",
            hint="the two files must come from the same split and release",
        )
    return images[:, None, :, :], labels.astype(np.int64)


def load_idx_dir(arg: str, options: SourceOptions, name: str | None = None,
                 class_names: tuple[str, ...] | None = None) -> Dataset:
    directory = require_path(arg, "idx")
    if not directory.is_dir():
        raise DataError(f"'idx:' needs a directory, got file '{directory}'",
                        hint="point at the folder holding the four IDX files")
    files = [_find(directory, stem) for split in _SPLIT_FILES.values() for stem in split]

    def decode() -> dict[str, np.ndarray]:
        (x_tr, y_tr), (x_te, y_te) = (read_idx_split(directory, s) for s in ("train", "test"))
        return {"train_x": x_tr, "train_y": y_tr, "test_x": x_te, "test_y": y_te}

    # Decoding the gzip files is the slow part of loading (0.6 s for Fashion-MNIST).
    arrays = cached_arrays(options.cache_dir, files, {"loader": "idx"}, decode)
    x_tr, y_tr, x_te, y_te = (arrays[k] for k in ("train_x", "train_y", "test_x", "test_y"))
    num_classes = int(max(y_tr.max(initial=0), y_te.max(initial=0))) + 1
    if y_tr.min(initial=0) < 0:
        raise DataError(f"IDX labels in '{directory}' contain negative values",
                        hint="labels must be class indices 0..K-1")
    return Dataset(
        name=name or f"idx:{directory}",
        task=Task.classification,
        train=TensorDataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr)),
        test=TensorDataset(torch.from_numpy(x_te), torch.from_numpy(y_te)),
        input_shape=tuple(x_tr.shape[1:]),
        num_outputs=num_classes,
        raw_scale=1.0 / 255.0 if x_tr.dtype == np.uint8 else 1.0,
        class_names=class_names,
    )


def load_fashion_mnist(arg: str, options: SourceOptions) -> Dataset:
    directory = Path(arg) if arg else options.fashion_mnist_dir
    if not directory.is_dir():
        raise DataError(
            f"Fashion-MNIST not found at '{directory}'",
            hint="install Debian's package: 'sudo apt-get install dataset-fashion-mnist' "
            "(it puts the IDX files in /usr/share/datasets/fashion-mnist), "
            "or pass 'idx:DIR' with your own copy",
        )
    return load_idx_dir(str(directory), options, name="fashion-mnist",
                        class_names=FASHION_MNIST_CLASSES)
