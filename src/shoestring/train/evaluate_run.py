"""``shoestring eval``: score a saved run folder on a data source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from shoestring.data.sources import SourceOptions, load_dataset
from shoestring.errors import ShoestringError
from shoestring.models.run_folder import load_run
from shoestring.train.evaluate import baseline_metrics, evaluate
from shoestring.types import Task, TensorDataset


def evaluate_run(run_dir: Path, data: str | None = None, *, split: str = "test",
                 label: str | None = None, source_options: SourceOptions | None = None,
                 workspace: Path | None = None, text_field: str | None = None,
                 target: str | None = None) -> dict[str, Any]:
    """Metrics of the model in ``run_dir`` on ``data`` (default: the data it trained on).

    Preprocessing comes from the run's model card, so the model sees its inputs
    exactly as in training; so do the label column or field (``label``, default
    the card's) and the task. A language model is scored by loss and perplexity
    on the held-out end of its corpus (``split`` test or val), tokenized with its
    own tokenizer. ``target`` is release 0.1's name of ``label`` (deprecated).
    ``run_dir`` may also be a Hugging Face checkpoint folder.
    """
    if target is not None:
        import warnings

        warnings.warn("evaluate_run(target=COLUMN) is deprecated; use label=COLUMN",
                      DeprecationWarning, stacklevel=2)
        label = label or target
    run = load_run(Path(run_dir))
    card = run.card
    spec = data or card.data.source
    if not spec:
        raise ShoestringError(f"run '{run_dir}' does not record its data source",
                              hint="pass --data SOURCE")
    if card.task is Task.language_modeling:
        if card.family != "gpt":
            raise ShoestringError(f"'{run_dir}' is a masked language model; eval scores "
                                  "next-token prediction of decoders only",
                                  hint="fine-tune it for classification (train --init-from) "
                                  "and evaluate that run")
        from shoestring.train.evaluate_lm import evaluate_language_model

        metrics = evaluate_language_model(run, spec, split, workspace or Path.cwd())
        return {"run": str(run_dir), "data": spec,
                "split": "train" if split == "train" else "val", **metrics}
    base = source_options or SourceOptions()
    label = label or base.label or card.data.label
    options = SourceOptions(label=label, task=card.task.value,
                            test_fraction=base.test_fraction, seed=base.seed,
                            fashion_mnist_dir=base.fashion_mnist_dir,
                            text_field=text_field or card.data.text_field or "text",
                            tokenizer=card.tokenizer.kind if card.tokenizer else None,
                            max_length=card.input_shape[0] if card.takes_tokens else None,
                            # The run's own tokenizer and layout: the ids it was trained on.
                            tokenizer_file=run.folder.tokenizer if card.tokenizer and
                            run.folder.tokenizer.exists() else None,
                            layout=card.tokenizer.layout if card.tokenizer else None)
    if label is None and spec.startswith("csv:") and card.feature_names is not None:
        raise ShoestringError("evaluating on CSV data needs the label column (this run's card "
                              "does not record it)", hint="pass --label COLUMN")
    dataset = load_dataset(spec, options)
    if tuple(dataset.input_shape) != card.input_shape:
        raise ShoestringError(
            f"data '{spec}' has examples of shape {list(dataset.input_shape)} but the model "
            f"expects {list(card.input_shape)}", hint="evaluate on data like the training data")
    if split not in ("train", "test"):
        raise ShoestringError(f"unknown split {split!r}", hint="use 'train' or 'test'")
    raw = dataset.test if split == "test" else dataset.train
    task = card.task
    pre = card.preprocessing.to_preprocessing()
    x = raw.x if card.takes_tokens else pre.apply(raw.x)
    y = raw.y.long() if task is Task.classification else raw.y.float().reshape(len(raw), -1)
    train_y, names = dataset.train.y, dataset.class_names
    if task is Task.classification and card.class_names and dataset.class_names and \
            list(dataset.class_names) != list(card.class_names):
        # The data numbers its labels in its own order; the model by its class names.
        y = _by_class_name(y, list(dataset.class_names), list(card.class_names), spec)
        train_y = _by_class_name(train_y.long(), list(dataset.class_names),
                                 list(card.class_names), spec)
        names = tuple(card.class_names)
    scored = TensorDataset(x, y)
    metrics = evaluate(run.model, scored, task, prefix=split, preprocessing=pre)
    # The baseline learns from the source's training split, as the model did.
    baseline = baseline_metrics(train_y, scored, task, names, prefix=split)
    return {"run": str(run_dir), "data": spec, "split": split, "examples": len(raw), **metrics,
            **baseline}


def _by_class_name(y: torch.Tensor, data_names: list[str], model_names: list[str],
                   spec: str) -> torch.Tensor:
    """Labels numbered by the data's class order, renumbered by the model's class names."""
    unknown = sorted(set(data_names) - set(model_names))
    if unknown:
        raise ShoestringError(f"data '{spec}' has labels the model does not know: {unknown}",
                              hint=f"the model's classes are: {', '.join(model_names)}")
    order = torch.tensor([model_names.index(n) for n in data_names], dtype=torch.long)
    return order[y]
