"""The few value types shared by several capabilities."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are touched, so that
    import torch   # `shoestring --help` and the light commands start fast


class Task(str, Enum):
    """What a model predicts; it decides the loss and the headline metric."""

    classification = "classification"
    regression = "regression"
    language_modeling = "language_modeling"


@dataclass(frozen=True)
class TensorDataset:
    """An in-memory split: features ``x`` (float32) and targets ``y``.

    Targets are int64 class indices for classification and float32 values
    (shape ``[n]`` or ``[n, k]``) for regression.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Preprocessing:
    """How raw features become model inputs: ``(x * scale - mean) / std``.

    Stored in ``model.json`` so that evaluation and serving apply exactly what
    training applied, without the training code.
    """

    scale: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Raw examples ``[n, ...]`` → model inputs (a new float32 tensor)."""
        # One fresh copy, then in-place ops: allocating (and page-faulting)
        # extra copies of a 200 MB dataset costs more than the arithmetic.
        import torch

        out = x.to(torch.float32, copy=True)
        if self.scale != 1.0:
            out.mul_(self.scale)
        return self.standardize_(out)

    def standardize_(self, x: torch.Tensor) -> torch.Tensor:
        """Subtract mean and divide by std in place (per flattened feature)."""
        if self.mean is None or self.std is None:
            return x
        import torch

        flat = x.view(x.shape[0], -1)
        flat.sub_(torch.tensor(self.mean, dtype=x.dtype)).div_(torch.tensor(self.std, dtype=x.dtype))
        return x

    def to_dict(self) -> dict:
        return {
            "scale": self.scale,
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        mean = d.get("mean")
        std = d.get("std")
        return cls(
            scale=float(d.get("scale", 1.0)),
            mean=tuple(mean) if mean is not None else None,
            std=tuple(std) if std is not None else None,
        )


@dataclass(frozen=True)
class Dataset:
    """A loaded data source: train and test splits plus what describes them.

    ``input_shape`` is the shape of one raw example (``(1, 28, 28)`` for IDX
    images, ``(n_features,)`` for tables). ``num_outputs`` is the number of
    classes for classification and the number of targets for regression.
    """

    name: str
    task: Task
    train: TensorDataset
    test: TensorDataset
    input_shape: tuple[int, ...]
    num_outputs: int
    raw_scale: float = 1.0  # e.g. 1/255 for 8-bit images
    class_names: tuple[str, ...] | None = None
    feature_names: tuple[str, ...] | None = None
