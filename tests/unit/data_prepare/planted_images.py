"""Generated images with planted duplicates (PNG folders and IDX directories)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def base_images(n: int, side: int = 32, seed: int = 0) -> np.ndarray:
    """Random 8x8 grids of grey cells: unrelated ones are far apart in pHash and pixels.

    (With fewer than 8x8 cells most of pHash's 8x8 DCT coefficients are near
    zero and its bits flip under tiny noise, so the grid must be that fine.)
    """
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 8, 8))
    r = side // 8
    return np.repeat(np.repeat(small, r, axis=1), r, axis=2).astype(np.uint8)


def near_copy(img: np.ndarray, seed: int, amount: int = 4) -> np.ndarray:
    """A re-encoding-like copy: every pixel moved by at most ``amount`` levels."""
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(int) + rng.integers(-amount, amount + 1, img.shape), 0, 255
                   ).astype(np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(directory: Path, x_train, y_train, x_test, y_test) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        (directory / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(x)))
        (directory / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y)))
    return directory


def leaky_idx(directory: Path, n_train: int = 300, n_test: int = 60, exact: int = 5,
              near: int = 4, classes: int = 3) -> Path:
    """Train holds ``exact`` copies and ``near`` near-copies of test images."""
    imgs = base_images(n_train + n_test, seed=3)
    y = np.arange(n_train + n_test) % classes
    x_tr, x_te = imgs[:n_train].copy(), imgs[n_train:]
    for k in range(exact):
        x_tr[k] = x_te[k]
    for k in range(near):
        x_tr[exact + k] = near_copy(x_te[exact + k], seed=k)
    y_tr, y_te = y[:n_train].copy(), y[n_train:]
    y_tr[: exact + near] = y_te[: exact + near]
    return write_idx(directory, x_tr, y_tr, x_te, y_te)
