"""Labelled texts from JSON Lines (``jsonl:PATH``) as a classification dataset.

Each non-blank line is a JSON object with a text field and a label field
(``text`` and ``label`` unless the source options name others). The texts are
tokenized (the tokenizer is fitted on the training split only) and laid out
as BERT inputs (:mod:`shoestring.models.text_layout`)::

    [CLS] t1 t2 … tn [PAD] … [PAD]      (max_length ids, int64) The examples are held in
memory: classification sets are small next to language-modelling corpora.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shoestring.data.classes import class_index
from shoestring.data.holdout import stratified_holdout
from shoestring.data.sources import SourceOptions, require_path
from shoestring.errors import DataError
from shoestring.models.text_layout import OFFSET, PAD_ID, encode_texts
from shoestring.models.tokenizers import load_tokenizer, train_tokenizer
from shoestring.types import Dataset, Task, TensorDataset

DEFAULT_MAX_LENGTH = 128
DEFAULT_TOKENIZER = "byte"


@dataclass(frozen=True)
class TextClassificationDataset(Dataset):
    """A :class:`Dataset` of token ids, plus what a model and a server need to read them.

    ``vocab_size`` counts the tokenizer's ids plus the two special ids;
    ``truncated`` is how many texts were cut to ``max_length``.
    """

    tokenizer: Any = field(default=None, compare=False, repr=False)
    vocab_size: int = 0
    pad_id: int = PAD_ID
    max_length: int = DEFAULT_MAX_LENGTH
    truncated: int = 0


def _label(value: Any, path: Path, line: int, label_field: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"'{path}' line {line}: label field {label_field!r} is "
                        f"{json.dumps(value)}, not a string or an integer",
                        hint="labels are class names or class numbers")
    return value


def read_jsonl(path: Path, text_field: str, label_field: str) -> tuple[list[str], list]:
    """Texts and raw labels of every non-blank line; errors name the file and line."""
    texts, labels = [], []
    try:
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"'{path}' line {line_no} is not valid JSON: {exc.msg}",
                                    hint="each line must be one JSON object") from None
                if not isinstance(obj, dict):
                    raise DataError(f"'{path}' line {line_no} is not a JSON object",
                                    hint='write lines like {"text": "...", "label": "..."}')
                for name in (text_field, label_field):
                    if name not in obj:
                        raise DataError(
                            f"'{path}' line {line_no} has no field {name!r} "
                            f"(fields: {', '.join(sorted(obj)) or 'none'})",
                            hint="name the right fields with --text-field / --label")
                if not isinstance(obj[text_field], str):
                    raise DataError(f"'{path}' line {line_no}: text field {text_field!r} is "
                                    "not a string", hint="texts must be JSON strings")
                texts.append(obj[text_field])
                labels.append(_label(obj[label_field], path, line_no, label_field))
    except UnicodeDecodeError as exc:
        raise DataError(f"'{path}' is not valid UTF-8 at byte offset {exc.start} of the line "
                        "being read", hint="re-save the file as UTF-8") from None
    if not texts:
        raise DataError(f"JSONL file '{path}' has no examples",
                        hint="it needs one JSON object per line")
    return texts, labels


def load_jsonl_dataset(arg: str, options: SourceOptions) -> TextClassificationDataset:
    """The ``jsonl:`` loader. Options read: ``text_field``, ``label`` (the label field,
    default ``label``), ``tokenizer`` (default ``byte``), ``bpe_vocab_size``, ``max_length``."""
    path = require_path(arg, "jsonl")
    if path.is_dir():
        raise DataError(f"'jsonl:' needs a file, got directory '{path}'",
                        hint="write 'jsonl:FILE.jsonl'")
    text_field = getattr(options, "text_field", None) or "text"
    label_field = options.label or "label"
    kind = getattr(options, "tokenizer", None) or DEFAULT_TOKENIZER
    max_length = getattr(options, "max_length", None) or DEFAULT_MAX_LENGTH
    texts, labels = read_jsonl(path, text_field, label_field)
    y, names = class_index(labels)
    if len(names) < 2:
        raise DataError(f"'{path}' has a single class {names[0]!r} in field {label_field!r}",
                        hint="classification needs at least two different labels")
    train_idx, test_idx = stratified_holdout(y, options.test_fraction, options.seed)
    given = getattr(options, "tokenizer_file", None)
    layout = getattr(options, "layout", None)
    if given is not None:  # a run's or a pretrained checkpoint's own tokenizer: same ids
        tokenizer = load_tokenizer(given)
    else:
        # BPE merges learn from the training split only; a char vocabulary takes
        # every text's characters, or a test text could hold an unreadable one.
        fit_on = texts if kind == "char" else [texts[i] for i in train_idx]
        tokenizer = train_tokenizer(kind, fit_on, getattr(options, "bpe_vocab_size", None))
    x, truncated = encode_texts(tokenizer, texts, max_length, layout)
    labels_t = torch.from_numpy(y)
    plain = layout is not None and layout.kind == "plain"

    def pick(idx: np.ndarray) -> TensorDataset:
        rows = torch.from_numpy(idx)
        return TensorDataset(x[rows], labels_t[rows])

    return TextClassificationDataset(
        name=f"jsonl:{path.name}", task=Task.classification, train=pick(train_idx),
        test=pick(test_idx), input_shape=(max_length,), num_outputs=len(names),
        class_names=names, tokenizer=tokenizer,
        vocab_size=tokenizer.vocab_size + (0 if plain else OFFSET),
        pad_id=layout.pad_id if plain else PAD_ID, max_length=max_length, truncated=truncated)
