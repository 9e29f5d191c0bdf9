"""``shoestring eval`` for language models: loss and perplexity on a corpus split.

The corpus is tokenized with the run's own tokenizer (``tokenizer.json``), not
a new one, so token ids mean what they meant in training, and split as training
split it (the last ``val_fraction`` of the tokens, from the run's
``config.toml``). Unlike the random windows training draws to watch progress,
evaluation reads the split in consecutive windows of ``block_size`` tokens
(each predicting its next tokens, as in training), so the figure is exact and
the same on every call; a split of more than ``MAX_WINDOWS`` windows is scored
on that many evenly spaced ones.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shoestring.errors import ShoestringError
from shoestring.io import read_text

MAX_WINDOWS = 4096   # bounds the time of an eval on a large corpus
BATCH_WINDOWS = 32


def _val_fraction(config_path: Path) -> float:
    from shoestring.data.text import DEFAULT_VAL_FRACTION

    try:
        saved = tomllib.loads(read_text(config_path))
    except (OSError, tomllib.TOMLDecodeError):
        return DEFAULT_VAL_FRACTION
    return float(saved.get("data", {}).get("val_fraction", DEFAULT_VAL_FRACTION))


def window_starts(n_tokens: int, block: int, max_windows: int = MAX_WINDOWS) -> np.ndarray:
    """Starts of consecutive ``block``-token windows (each needs one more token as target),
    evenly thinned to at most ``max_windows``.

    >>> window_starts(10, 3).tolist()
    [0, 3, 6]
    >>> window_starts(100, 3, max_windows=4).tolist()
    [0, 33, 63, 96]
    """
    count = (n_tokens - 1) // block
    if count < 1:
        return np.empty(0, dtype=np.int64)
    starts = np.arange(count, dtype=np.int64) * block
    if count > max_windows:
        starts = starts[np.linspace(0, count - 1, max_windows).round().astype(np.int64)]
    return starts


def evaluate_language_model(run, spec: str, split: str, workspace: Path) -> dict[str, Any]:
    """Mean next-token loss and perplexity of ``run`` on ``split`` of corpus ``spec``."""
    from shoestring.data.sources import split_spec
    from shoestring.data.text import default_cache_dir, load_text_data

    if split_spec(spec)[0] != "text":
        raise ShoestringError(f"a language model is evaluated on a text corpus, got {spec!r}",
                              hint="pass --data text:FILE_OR_FOLDER (default: the corpus the "
                              "run trained on)")
    name = {"test": "val", "val": "val", "validation": "val", "train": "train"}.get(split)
    if name is None:
        raise ShoestringError(f"unknown split {split!r} for a text corpus",
                              hint="use 'val' (the held-out end of the corpus) or 'train'")
    data = load_text_data(spec, cache_dir=default_cache_dir(workspace),
                          tokenizer_file=run.folder.tokenizer,
                          val_fraction=_val_fraction(run.folder.config))
    part = data.stream.split(name)
    block = int(run.card.input_shape[0])
    starts = window_starts(len(part), block)
    if len(starts) == 0:
        raise ShoestringError(f"the {name} split of {spec!r} has {len(part)} tokens, too few "
                              f"for one window of {block}",
                              hint="evaluate on a longer corpus")
    tokens = np.memmap(part.path, dtype=np.dtype(part.dtype), mode="r",
                       offset=part.start * np.dtype(part.dtype).itemsize, shape=(len(part),))
    offsets = np.arange(block + 1, dtype=np.int64)
    total, count = 0.0, 0
    with torch.inference_mode():
        for lo in range(0, len(starts), BATCH_WINDOWS):
            rows = torch.from_numpy(
                tokens[starts[lo:lo + BATCH_WINDOWS, None] + offsets].astype(np.int64))
            logits = run.model(rows[:, :-1])[0]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), rows[:, 1:].reshape(-1),
                reduction="sum")
            total += float(loss)
            count += rows[:, 1:].numel()
    mean = total / count
    return {f"{name}_loss": mean, f"{name}_ppl": math.exp(min(mean, 50.0)),
            "tokens_scored": count, "windows": len(starts), "block_size": block}
