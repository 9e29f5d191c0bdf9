"""How a text becomes a classifier's token ids: ``[CLS] t1+offset … tn+offset [PAD] … [PAD]``.

BERT-style inputs (Devlin et al. 2019): a classification token first (the
encoder pools position 0), the text's tokens shifted by ``offset`` so the two
special ids never collide with a tokenizer id, then padding to a fixed length.
With ``PAD_ID = 0``, ``CLS_ID = 1`` and ``OFFSET = 2`` the padding id is the
same whatever the tokenizer. Training, evaluation and serving all encode
through :func:`encode_texts` with the layout the run's card records, so they
cannot drift apart.

>>> from shoestring.models.tokenizers import train_tokenizer
>>> ids, cut = encode_texts(train_tokenizer("char", ["ab"]), ["ba"], 5)
>>> ids.tolist(), cut
([[1, 3, 2, 0, 0]], 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from shoestring.errors import DataError

if TYPE_CHECKING:
    from shoestring.models.card import TextLayout
    from shoestring.models.tokenizers import Tokenizer

PAD_ID, CLS_ID, OFFSET = 0, 1, 2


def classifier_layout() -> TextLayout:
    """The layout training writes into a text classifier's card."""
    from shoestring.models.card import TextLayout

    return TextLayout(kind="cls-pad", pad_id=PAD_ID, cls_id=CLS_ID, offset=OFFSET)


def _encode_plain(tokenizer: Tokenizer, texts: Sequence[str], max_length: int,
                  pad: int) -> tuple[torch.Tensor, int]:
    """A pretrained tokenizer's own layout: its special tokens (``[CLS] … [SEP]``), then
    ``pad``. A long text loses tokens from its middle, never the special tokens at its
    ends (as Hugging Face truncation does)."""
    out = torch.full((len(texts), max_length), pad, dtype=torch.int64)
    truncated = 0
    for row, text in enumerate(texts):
        if hasattr(tokenizer, "encode_with_specials"):
            ids, special = tokenizer.encode_with_specials(text)
        else:
            ids = tokenizer.encode(text)
            special = [0] * len(ids)
        if len(ids) > max_length:
            lead = next((i for i, s in enumerate(special) if not s), len(ids))
            trail = next((i for i, s in enumerate(reversed(special)) if not s), 0)
            keep = max(max_length - lead - trail, 0)
            ids = ids[:lead + keep] + (ids[len(ids) - trail:] if trail else [])
            ids, truncated = ids[:max_length], truncated + 1
        out[row, :len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return out, truncated


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], max_length: int,
                 layout: TextLayout | None = None) -> tuple[torch.Tensor, int]:
    """``[len(texts), max_length]`` int64 ids in ``layout`` (default: the classifier's),
    and how many texts were cut to fit."""
    if layout is not None and layout.kind == "plain":
        if layout.pad_id is None:
            raise DataError("this tokenizer has no padding token, so texts of different "
                            "lengths cannot share a batch",
                            hint="use a checkpoint whose config.json sets pad_token_id")
        return _encode_plain(tokenizer, texts, max_length, layout.pad_id)
    pad, cls, offset = (PAD_ID, CLS_ID, OFFSET) if layout is None else \
        (layout.pad_id, layout.cls_id, layout.offset)
    if max_length < 2:
        raise DataError(f"max_length must be at least 2 (one token plus [CLS]), got {max_length}")
    out = torch.full((len(texts), max_length), pad, dtype=torch.int64)
    out[:, 0] = cls
    truncated = 0
    for row, text in enumerate(texts):
        ids = tokenizer.encode_array(text)
        if ids.size > max_length - 1:
            ids, truncated = ids[:max_length - 1], truncated + 1
        out[row, 1:1 + ids.size] = torch.from_numpy(ids + offset)
    return out, truncated
