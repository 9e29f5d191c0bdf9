"""Seeded hold-out splits for sources that ship without a test split, and the
validation split carved from a training split."""

from __future__ import annotations

import dataclasses

import numpy as np

from shoestring.errors import DataError
from shoestring.types import Dataset, Task

# The validation split's own random stream: independent of the hold-out split's
# (which uses the bare seed), so the two are not drawn alike (NumPy SeedSequence).
VALIDATION_STREAM = 0x76616C  # "val"


def stratified_holdout(
    y: np.ndarray, test_fraction: float, seed: int | list[int]
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
    # The sorted distinct labels: np.unique itself imports numpy.ma (~40 ms, on the path
    # of every training run that carves a validation split).
    ordered = np.sort(y)
    classes = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if len(y) else y
    for cls in classes:
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def random_holdout(n: int, test_fraction: float, seed: int | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices for regression targets (no classes to stratify)."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(
            f"test fraction must be between 0 and 1, got {test_fraction}", hint="use e.g. 0.2"
        )
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def carve_validation(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """``dataset`` with ``fraction`` of its training split moved to ``val``.

    Stratified by class for classification; a pure function of ``seed``, so a
    resumed run and a re-run see the same split. The test split is untouched.
    """
    import torch

    y = dataset.train.y.numpy()
    stream = [seed & 0xFFFFFFFF, VALIDATION_STREAM]
    if dataset.task is Task.classification:
        keep, val = stratified_holdout(y, fraction, stream)
    else:
        keep, val = random_holdout(len(y), fraction, stream)
    train = dataset.train
    return dataclasses.replace(dataset, train=train.take(torch.from_numpy(keep)),
                               val=train.take(torch.from_numpy(val)))
