"""What an audit reads: the run folder's model and files, and the data it is judged on.

The data are read the way the run was trained (its label column, task, seed
and hold-out share from ``config.toml``; its preprocessing from the card), so
the audited split is the run's own test split unless ``--data`` names another.
Group columns default to those the run was trained with (``train --group``)
or, for a ``prepared:`` folder, those it was prepared with.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from shoestring.audit.config import AuditConfig
from shoestring.data.groups import check_several_values
from shoestring.data.sources import (
    DEFAULT_TEST_FRACTION,
    SourceOptions,
    load_dataset,
    split_spec,
)
from shoestring.errors import ShoestringError
from shoestring.io import read_text
from shoestring.models.run_folder import LoadedRun, load_run
from shoestring.types import Task, TensorDataset

DataKind = Literal["table", "image", "text"]


@dataclass
class Split:
    """One split as the model sees it: inputs ``x``, targets ``y``, group values."""

    x: torch.Tensor
    y: torch.Tensor
    groups: dict[str, tuple[str, ...]]
    raw: torch.Tensor  # inputs before standardization, for readable surrogate rules

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class Evidence:
    run: LoadedRun
    run_config: dict[str, Any]
    summary: dict[str, Any]
    spec: str
    split_name: str
    kind: DataKind
    test: Split
    fit: Split | None            # a validation split (for per-group thresholds), if any
    train: Split                 # a sample of the training split (baselines, surrogate fit)
    notes: list[str] = field(default_factory=list)

    @property
    def task(self) -> Task:
        return self.run.card.task


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(read_text(path))
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(read_text(path))
    except (OSError, ValueError):
        return {}


def data_kind(run: LoadedRun) -> DataKind:
    card = run.card
    if card.takes_tokens:
        return "text"
    return "image" if len(card.input_shape) == 3 else "table"


def stored_groups(spec: str, run_config: dict[str, Any]) -> list[str]:
    """The group columns a run records: ``train --group``, else its prepared folder's."""
    given = (run_config.get("data") or {}).get("group")
    if given:
        return list(given)
    scheme, arg = split_spec(spec)
    if scheme == "prepared":
        index = _read_json(Path(arg.partition("#")[0]) / "shards" / "index.json")
        return list((index.get("groups") or {}).get("names") or [])
    return []


def _sample(n: int, cap: int, seed: int) -> torch.Tensor | None:
    if n <= cap:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:cap].sort().values


def _split(raw: TensorDataset, run: LoadedRun, cap: int, seed: int) -> Split:
    pick = _sample(len(raw), cap, seed)
    if pick is not None:
        raw = raw.take(pick)
    card = run.card
    if card.takes_tokens:
        x = raw.x.long()
        plain = x
    else:
        pre = card.preprocessing.to_preprocessing()
        plain = raw.x.to(torch.float32) * pre.scale
        x = pre.apply(raw.x)
    y = raw.y.long() if card.task is Task.classification else \
        raw.y.float().reshape(len(raw), -1)
    return Split(x=x, y=y, groups=dict(raw.groups or {}), raw=plain)


def load_evidence(config: AuditConfig) -> Evidence:
    """The run and the data it is audited on (see the module docstring)."""
    run = load_run(Path(config.run))
    card = run.card
    if card.task is Task.language_modeling:
        raise ShoestringError(
            f"run '{config.run}' is a language model ({card.family}): this audit explains and "
            "compares classifiers and regressors",
            hint="audit a classifier (mlp, cnn, encoder) or a regressor; language models are "
            "evaluated with 'shoestring eval'")
    folder = run.folder
    run_config = _read_toml(folder.config)
    summary = _read_json(folder.summary)
    spec = config.data or card.data.source
    if not spec:
        raise ShoestringError(f"run '{config.run}' does not record its data source",
                              hint="pass --data SOURCE")
    groups = list(config.group) if config.group is not None else stored_groups(spec, run_config)
    data_cfg, train_cfg = run_config.get("data") or {}, run_config.get("train") or {}
    # Read as training read it (its label, split seed and hold-out share), and text with
    # the run's own tokenizer, as 'shoestring eval' does.
    options = SourceOptions(
        label=card.data.label or data_cfg.get("label"), task=card.task.value,
        test_fraction=float(data_cfg.get("test_fraction", DEFAULT_TEST_FRACTION)),
        seed=int(train_cfg.get("seed", 0)),
        text_field=card.data.text_field or "text",
        tokenizer=card.tokenizer.kind if card.tokenizer else None,
        max_length=card.input_shape[0] if card.takes_tokens else None,
        tokenizer_file=folder.tokenizer if card.tokenizer else None,
        layout=card.tokenizer.layout if card.tokenizer else None,
        groups=tuple(groups))
    dataset = load_dataset(spec, options)
    if tuple(dataset.input_shape) != card.input_shape:
        raise ShoestringError(
            f"data '{spec}' has examples of shape {list(dataset.input_shape)} but the model "
            f"expects {list(card.input_shape)}", hint="audit on data like the training data")
    cap, seed = config.max_examples, config.seed
    test = _split(dataset.test, run, cap, seed)
    if groups:
        check_several_values(test.groups, f"{spec} ({dataset.test_split} split)")
    notes = []
    if len(dataset.test) > cap:
        notes.append(f"audited a seeded sample of {cap:,} of the {len(dataset.test):,} "
                     f"{dataset.test_split} examples (--max-examples)")
    fit = _split(dataset.val, run, cap, seed) if dataset.val is not None else None
    return Evidence(run=run, run_config=run_config, summary=summary, spec=spec,
                    split_name=dataset.test_split, kind=data_kind(run), test=test, fit=fit,
                    train=_split(dataset.train, run, min(cap, 4096), seed), notes=notes)
