"""Small MNIST-format (IDX) data sets written to disk, for tests.

A plain module with a unique name (not ``conftest``), so tests in any folder
can import it even when several ``conftest.py`` files are loaded.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format (type code 0x08)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(directory: Path, n_train: int = 600, n_test: int = 200, side: int = 8,
                  classes: int = 4, gz: bool = True, seed: int = 0) -> Path:
    """A learnable MNIST-format data set: each class lights a different block."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)

    def make(n):
        y = rng.integers(0, classes, n)
        x = rng.integers(0, 60, (n, side, side))
        for i, c in enumerate(y):
            r = (c * side // classes)
            x[i, r:r + side // classes, :] += 150
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.uint8)

    for split, n in (("train", n_train), ("t10k", n_test)):
        x, y = make(n)
        for kind, arr, dims in (("images", x, 3), ("labels", y, 1)):
            name = f"{split}-{kind}-idx{dims}-ubyte"
            data = idx_bytes(arr)
            if gz:
                (directory / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (directory / name).write_bytes(data)
    return directory
