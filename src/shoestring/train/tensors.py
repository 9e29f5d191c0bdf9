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
    val: TensorDataset | None = None


CHUNK_ROWS = 8192  # rows per pass when computing variances; bounds temporary memory


def feature_stats(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and population std of ``[n, d]`` float data.

    Two passes (mean, then squared deviations) in row chunks, so the variance
    is numerically stable and no second copy of the data is allocated. Each
    chunk sums in float32 (torch's vectorized cascade summation: relative
    error ~1e-7 over 8192 rows) and the chunk sums add up in float64; summing
    in float64 directly took 5x longer (1.1 s of Fashion-MNIST's 1.7 s load).
    """
    n = flat.shape[0]
    mean = flat.mean(dim=0)
    sq = torch.zeros(flat.shape[1], dtype=torch.float64)
    for start in range(0, n, CHUNK_ROWS):
        sq += (flat[start:start + CHUNK_ROWS] - mean).square_().sum(dim=0).double()
    std = (sq / max(n, 1)).sqrt_().float().clamp_min(MIN_STD)
    return mean, std


def fit_preprocessing(dataset: Dataset, normalize: str,
                      scaled_train: torch.Tensor | None = None) -> Preprocessing:
    """Preprocessing fitted on the training split only."""
    scale = dataset.raw_scale if normalize in ("scale", "standardize") else 1.0
    if normalize != "standardize":
        return Preprocessing(scale=scale)
    if scaled_train is None:
        scaled_train = Preprocessing(scale=scale).apply(dataset.train.x)
    mean, std = feature_stats(scaled_train.reshape(len(dataset.train), -1))
    return Preprocessing(scale=scale, mean=tuple(mean.tolist()), std=tuple(std.tolist()))


def _targets(y: torch.Tensor, task: Task) -> torch.Tensor:
    if task is Task.classification:
        return y.long()
    y = y.float()
    return y[:, None] if y.ndim == 1 else y


def prepare_tensors(dataset: Dataset, normalize: str) -> PreparedData:
    scaled = Preprocessing(scale=dataset.raw_scale if normalize != "none" else 1.0)
    x_train = scaled.apply(dataset.train.x)
    pre = fit_preprocessing(dataset, normalize, scaled_train=x_train)
    if pre.mean is not None:
        x_train = pre.standardize_(x_train)
    return PreparedData(
        train=TensorDataset(x_train.contiguous(), _targets(dataset.train.y, dataset.task)),
        test=TensorDataset(pre.apply(dataset.test.x).contiguous(),
                           _targets(dataset.test.y, dataset.task)),
        preprocessing=pre,
        val=None if dataset.val is None else TensorDataset(
            pre.apply(dataset.val.x).contiguous(), _targets(dataset.val.y, dataset.task)),
    )
