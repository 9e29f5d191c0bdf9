"""Seeded hold-out splits for sources that ship without a test split."""

from __future__ import annotations

import numpy as np

from shoestring.errors import DataError


def stratified_holdout(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices, stratified by class, deterministic in ``seed``.

    Every class with at least two examples keeps at least one on each side.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(
            f"test fraction must be between 0 and 1, got {test_fraction}",
            hint="use e.g. 0.2",
        )
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def random_holdout(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices for regression targets (no classes to stratify)."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(
            f"test fraction must be between 0 and 1, got {test_fraction}", hint="use e.g. 0.2"
        )
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])
