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
    (shape ``[n]`` or ``[n, k]``) for regression. ``groups`` are side columns
    (``--group``): per column, one value (text) per example. They are never
    features; the fairness audit compares the model across their values.
    """

    x: torch.Tensor
    y: torch.Tensor
    groups: dict[str, tuple[str, ...]] | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, index: torch.Tensor) -> TensorDataset:
        """The examples at ``index`` (a 1-D int64 tensor), group values included."""
        groups = None if self.groups is None else {
            name: tuple(values[i] for i in index.tolist()) for name, values in self.groups.items()}
        return TensorDataset(self.x.index_select(0, index), self.y.index_select(0, index), groups)


@dataclass(frozen=True)
class Preprocessing:
    """How raw features become model inputs: ``(x * scale - mean) / std``; and, when
    regression targets were standardized for training, how model outputs become
    targets again: ``y = out * target_std + target_mean``.

    Stored in the run's model card so that evaluation and serving apply exactly
    what training applied, without the training code.

    >>> import torch
    >>> p = Preprocessing(target_mean=(100.0,), target_std=(10.0,))
    >>> p.targets_from_outputs(torch.tensor([[0.5]])).tolist()
    [[105.0]]
    """

    scale: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    target_mean: tuple[float, ...] | None = None
    target_std: tuple[float, ...] | None = None

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

    def scale_targets(self, y: torch.Tensor) -> torch.Tensor:
        """Regression targets ``[n, k]`` in data units → the units the model learns
        (the inverse of :meth:`targets_from_outputs`)."""
        if self.target_mean is None or self.target_std is None:
            return y
        import torch

        return (y - torch.tensor(self.target_mean, dtype=y.dtype, device=y.device)) \
            / torch.tensor(self.target_std, dtype=y.dtype, device=y.device)

    def targets_from_outputs(self, out: torch.Tensor) -> torch.Tensor:
        """Regression outputs ``[n, k]`` in target units (identity unless targets were
        standardized)."""
        if self.target_mean is None or self.target_std is None:
            return out
        import torch

        return out * torch.tensor(self.target_std, dtype=out.dtype, device=out.device) + \
            torch.tensor(self.target_mean, dtype=out.dtype, device=out.device)

    def to_dict(self) -> dict:
        def listed(v):
            return list(v) if v is not None else None
        return {"scale": self.scale, "mean": listed(self.mean), "std": listed(self.std),
                "target_mean": listed(self.target_mean), "target_std": listed(self.target_std)}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        def tupled(key):
            v = d.get(key)
            return tuple(v) if v is not None else None
        return cls(scale=float(d.get("scale", 1.0)), mean=tupled("mean"), std=tupled("std"),
                   target_mean=tupled("target_mean"), target_std=tupled("target_std"))


@dataclass(frozen=True)
class Dataset:
    """A loaded data source: train and test splits plus what describes them.

    ``input_shape`` is the shape of one raw example (``(1, 28, 28)`` for IDX
    images, ``(n_features,)`` for tables). ``num_outputs`` is the number of
    classes for classification and the number of targets for regression.
    ``val`` is a validation split the source ships (``prepared:DIR``), for model
    selection; ``test_split`` names what ``test`` holds: ``"val"`` when a source
    was asked to score its validation split instead (``prepared:DIR#val``), so
    its metrics are not reported as test metrics.
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
    val: TensorDataset | None = None
    test_split: str = "test"
    notes: tuple[str, ...] = ()  # what loading left out or decided, for the run's log
