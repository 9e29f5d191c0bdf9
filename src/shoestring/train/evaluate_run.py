"""``shoestring eval``: score a saved run folder on a data source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoestring.data.sources import SourceOptions, load_dataset
from shoestring.errors import ShoestringError
from shoestring.models.artifact import load_model
from shoestring.train.evaluate import evaluate
from shoestring.types import Preprocessing, Task, TensorDataset


def evaluate_run(run_dir: Path, data: str | None = None, *, split: str = "test",
                 target: str | None = None, source_options: SourceOptions | None = None
                 ) -> dict[str, Any]:
    """Metrics of the model in ``run_dir`` on ``data`` (default: the data it trained on).

    Preprocessing comes from the run's ``model.json``, so the model sees its
    inputs exactly as in training.
    """
    model, desc = load_model(Path(run_dir))
    spec = data or desc.get("data")
    if not spec:
        raise ShoestringError(f"run '{run_dir}' does not record its data source",
                              hint="pass --data SOURCE")
    base = source_options or SourceOptions()
    options = SourceOptions(target=target or base.target, task=desc["task"],
                            test_fraction=base.test_fraction, seed=base.seed,
                            fashion_mnist_dir=base.fashion_mnist_dir)
    if target is None and spec.startswith("csv:") and desc.get("feature_names") is not None:
        raise ShoestringError("evaluating on CSV data needs the target column",
                              hint="pass --target COLUMN")
    dataset = load_dataset(spec, options)
    if list(dataset.input_shape) != list(desc["input_shape"]):
        raise ShoestringError(
            f"data '{spec}' has examples of shape {list(dataset.input_shape)} but the model "
            f"expects {desc['input_shape']}", hint="evaluate on data like the training data")
    if split not in ("train", "test"):
        raise ShoestringError(f"unknown split {split!r}", hint="use 'train' or 'test'")
    raw = dataset.test if split == "test" else dataset.train
    task = Task(desc["task"])
    pre = Preprocessing.from_dict(desc["preprocessing"])
    y = raw.y.long() if task is Task.classification else raw.y.float().reshape(len(raw), -1)
    metrics = evaluate(model, TensorDataset(pre.apply(raw.x), y), task, prefix=split)
    return {"run": str(run_dir), "data": spec, "split": split, "examples": len(raw), **metrics}
