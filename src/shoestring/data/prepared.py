"""Prepared folders as a data source: ``prepared:DIR`` (and ``prepared:DIR#val``).

A folder written by ``shoestring data prepare`` holds checksummed shards of
its train, validation and test splits. Training reads the train split, selects
on the validation split and scores the test split once; with ``#val`` the
validation split is also what the run is scored on (reported as ``val_*``), so
the test split is never touched.

Raw values are returned as stored (8-bit images stay uint8, with
``raw_scale = 1/255``), so a run's ``model.json`` records how to scale raw
inputs and serving sees the same preprocessing as training. The saved
``stats.json`` holds the training split's per-feature mean and standard
deviation: exactly what ``--normalize standardize`` fits on the same split.

This module also registers the other sources of the data-preparation
capability: ``images:DIR`` (class subfolders of PNG/JPEG) and
``parquet:PATH``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from shoestring.data.groups import check_several_values
from shoestring.data.images import load_images
from shoestring.data.parquet_source import load_parquet
from shoestring.data.sources import SourceOptions, require_path
from shoestring.errors import DataError
from shoestring.io import read_text
from shoestring.types import Dataset, Task, TensorDataset


def prepared_stats(directory: Path) -> dict | None:
    """The training split's normalization statistics saved by ``prepare`` (or None)."""
    path = Path(directory) / "stats.json"
    return json.loads(read_text(path)) if path.exists() else None


def _text_dataset(shards, directory: Path, eval_split: str, options: SourceOptions) -> Dataset:
    try:
        from shoestring.data.text_jsonl import (
            DEFAULT_MAX_LENGTH,
            DEFAULT_TOKENIZER,
            TextClassificationDataset,
        )
        from shoestring.models.text_layout import OFFSET, encode_texts
        from shoestring.models.tokenizers import load_tokenizer, train_tokenizer
    except ImportError:  # pragma: no cover - the text capability ships with Shoestring
        raise DataError("prepared text needs the text data capability (shoestring.data.text)",
                        hint="install Shoestring with its text support") from None
    classes = shards.index.get("labels") or []
    if not classes:
        raise DataError(f"prepared text in '{directory}' has no labels",
                        hint="for language modelling train on the split's plain-text shards: "
                        f"--data text:{directory / 'shards' / 'train'} (or prepare with "
                        "--label for classification)")
    (tr_texts, tr_labels), (te_texts, te_labels) = shards.load("train"), shards.load(eval_split)
    kind = getattr(options, "tokenizer", None) or shards.index.get("tokenizer") or \
        DEFAULT_TOKENIZER
    max_length = getattr(options, "max_length", None) or DEFAULT_MAX_LENGTH
    fit_on = tr_texts + te_texts if kind == "char" else tr_texts
    given = getattr(options, "tokenizer_file", None)  # a run's own (eval): same ids
    tokenizer = load_tokenizer(given) if given else \
        train_tokenizer(kind, fit_on, getattr(options, "bpe_vocab_size", None))
    index = {c: i for i, c in enumerate(classes)}
    x_tr, cut_tr = encode_texts(tokenizer, tr_texts, max_length)
    x_te, cut_te = encode_texts(tokenizer, te_texts, max_length)
    y_tr = torch.tensor([index[v] for v in tr_labels], dtype=torch.int64)
    y_te = torch.tensor([index[v] for v in te_labels], dtype=torch.int64)
    return TextClassificationDataset(
        name=f"prepared:{directory}", task=Task.classification,
        train=TensorDataset(x_tr, y_tr), test=TensorDataset(x_te, y_te),
        input_shape=(max_length,), num_outputs=len(classes), class_names=tuple(classes),
        tokenizer=tokenizer, vocab_size=tokenizer.vocab_size + OFFSET, max_length=max_length,
        truncated=cut_tr + cut_te, test_split=eval_split)


def _groups_of(shards, directory: Path, wanted: tuple[str, ...]):
    """``split -> {column: values}`` for the requested group columns (else ``None``)."""
    if not wanted:
        return lambda split: None
    stored = (shards.index.get("groups") or {}).get("names") or []
    missing = [g for g in wanted if g not in stored]
    if missing:
        raise DataError(f"prepared data '{directory}' has no group column(s) "
                        f"{', '.join(map(repr, missing))}",
                        hint=f"it was prepared with group columns: {', '.join(stored)}"
                        if stored else "prepare it again with --group COLUMN")

    def of(split: str) -> dict[str, tuple[str, ...]]:
        every = shards.load_groups(split)
        return {g: every[g] for g in wanted}
    return of


def load_prepared(arg: str, options: SourceOptions) -> Dataset:
    """The ``prepared:DIR[#val]`` loader."""
    from shoestring.data.prepare.shards import ShardSet, split_alias

    path_text, _, eval_split = arg.partition("#")
    directory = require_path(path_text, "prepared")
    eval_split = split_alias(eval_split or "test")
    if eval_split not in ("test", "val"):
        raise DataError(f"unknown evaluation split {eval_split!r} in 'prepared:{arg}'",
                        hint="write prepared:DIR (test) or prepared:DIR#val")
    shards = ShardSet(directory / "shards")
    if shards.kind == "text" and not shards.index.get("labels"):
        return _text_dataset(shards, directory, eval_split, options)  # explains what to do
    for split in ("train", eval_split):
        if shards.records(split) == 0:
            raise DataError(f"prepared data '{directory}' has an empty {split} split",
                            hint="prepare it again with a non-zero share for that split "
                            "(--val-fraction / --test-fraction)")
    if shards.kind == "text":
        return _text_dataset(shards, directory, eval_split, options)
    meta = shards.index
    task = meta.get("task")
    if task is None:
        raise DataError(f"prepared data '{directory}' has no labels to train on",
                        hint="prepare it with --label COLUMN")
    groups_of = _groups_of(shards, directory, tuple(options.groups))
    train_groups = groups_of("train")
    if train_groups is not None:
        check_several_values(train_groups, str(directory))
    (x_tr, y_tr), (x_te, y_te) = shards.load("train"), shards.load(eval_split)
    if meta["kind"] == "table":
        x_tr, x_te = x_tr.astype(np.float32), x_te.astype(np.float32)
    classes = meta.get("class_names") or meta.get("labels")
    # The folder's validation split selects the model (stopping, targets); with
    # #val it is also what the run is scored on, and reported as val_*.
    val_split = "val" if eval_split == "val" or shards.records("val") else None
    if eval_split == "val":
        x_va, y_va = x_te, y_te
    elif val_split:
        x_va, y_va = shards.load("val")
        x_va = x_va.astype(np.float32) if meta["kind"] == "table" else x_va
    else:
        x_va = y_va = None
    return Dataset(
        name=f"prepared:{directory}", task=Task(task),
        train=TensorDataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr), train_groups),
        test=TensorDataset(torch.from_numpy(x_te), torch.from_numpy(y_te),
                           groups_of(eval_split)),
        input_shape=tuple(meta["x"]["shape"]),
        num_outputs=len(meta["labels"]) if task == "classification" else 1,
        raw_scale=float(meta.get("raw_scale", 1.0)),
        class_names=tuple(classes) if task == "classification" else None,
        feature_names=tuple(meta["feature_names"]) if meta.get("feature_names") else None,
        val=None if x_va is None else TensorDataset(torch.from_numpy(x_va),
                                                    torch.from_numpy(y_va), groups_of(val_split)),
        test_split=eval_split)


LOADERS = {"prepared": load_prepared, "images": load_images, "parquet": load_parquet}
