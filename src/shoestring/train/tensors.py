"""From a loaded :class:`Dataset` to training-ready float tensors.

Preprocessing statistics are fitted on the training split only, so nothing
about the test split leaks into training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from shoestring.types import Dataset, Preprocessing, Task, TensorDataset

# Floor for standard deviations, so that constant features (e.g. MNIST's
# always-black corner pixels) do not divide by zero.
MIN_STD = 1e-6


@dataclass(frozen=True)
class PreparedData:
    train: TensorDataset
    test: TensorDataset
    preprocessing: Preprocessing


def fit_preprocessing(dataset: Dataset, normalize: str) -> Preprocessing:
    scale = dataset.raw_scale if normalize in ("scale", "standardize") else 1.0
    if normalize != "standardize":
        return Preprocessing(scale=scale)
    # float32 sums over [n, d] are exact enough here (n ≤ 1e7 values of 8-bit
    # range) and ten times faster than float64; variance by the two-pass formula.
    flat = dataset.train.x.reshape(len(dataset.train), -1).float() * scale
    mean = flat.mean(dim=0)
    std = (flat - mean).square_().mean(dim=0).sqrt_().clamp_min(MIN_STD)
    return Preprocessing(scale=scale, mean=tuple(mean.tolist()), std=tuple(std.tolist()))


def _targets(y: torch.Tensor, task: Task) -> torch.Tensor:
    if task is Task.classification:
        return y.long()
    y = y.float()
    return y[:, None] if y.ndim == 1 else y


def prepare_tensors(dataset: Dataset, normalize: str) -> PreparedData:
    pre = fit_preprocessing(dataset, normalize)
    return PreparedData(
        train=TensorDataset(pre.apply(dataset.train.x).contiguous(),
                            _targets(dataset.train.y, dataset.task)),
        test=TensorDataset(pre.apply(dataset.test.x).contiguous(),
                           _targets(dataset.test.y, dataset.task)),
        preprocessing=pre,
    )
