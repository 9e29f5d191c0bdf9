"""A run's tokenizer as a Hugging Face ``tokenizer.json`` that gives the same ids.

Byte-level BPE runs (and imported checkpoints) already keep their tokenizer
in the ``tokenizers`` library's format; ``char`` and ``byte`` tokenizers are
written as a ``BPE`` model with no merges over their symbols (each character,
or each byte in GPT-2's byte-to-unicode alphabet), which encodes to exactly
their ids. A classifier's ``cls-pad`` layout (``[PAD]`` 0, ``[CLS]`` 1, token
ids shifted by 2; :mod:`shoestring.models.text_layout`) becomes two special
tokens, shifted ids and a post-processor that puts ``[CLS]`` first, so
``transformers``' tokenizer feeds the exported classifier what training fed it.
"""

from __future__ import annotations

import json
from typing import Any

PAD, CLS = "[PAD]", "[CLS]"


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's byte → printable character table (``bytes_to_unicode``, Radford et al. 2019)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def _shift(data: dict[str, Any], offset: int) -> dict[str, Any]:
    vocab = data["model"]["vocab"]
    if isinstance(vocab, dict):
        data["model"]["vocab"] = {k: v + offset for k, v in vocab.items()}
    else:  # Unigram models list (piece, score) pairs; their ids are positions
        raise ValueError("cannot shift the ids of a Unigram tokenizer")
    for added in data.get("added_tokens") or []:
        added["id"] += offset
    return data


def hf_tokenizer_json(tokenizer, layout=None) -> str:
    """``tokenizer.json`` text for a Shoestring tokenizer and its card's id ``layout``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    cls_pad = layout is not None and layout.kind == "cls-pad"
    offset = layout.offset if cls_pad else 0
    if tokenizer.kind == "byte":
        chars = _byte_alphabet()
        hf = Tokenizer(models.BPE(vocab={chars[b]: b + offset for b in range(256)}, merges=[]))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        hf.decoder = decoders.ByteLevel()
    elif tokenizer.kind == "char":
        hf = Tokenizer(models.BPE(vocab={c: i + offset for i, c in enumerate(tokenizer.chars)},
                                  merges=[]))
        hf.decoder = decoders.Fuse()
    else:  # already tokenizers' own format
        hf = Tokenizer.from_str(json.dumps(_shift(json.loads(tokenizer.to_json()), offset))
                                if offset else tokenizer.to_json())
    if cls_pad:
        data = json.loads(hf.to_str())
        data["model"]["vocab"].update({PAD: layout.pad_id, CLS: layout.cls_id})
        hf = Tokenizer.from_str(json.dumps(data))
        hf.add_special_tokens([PAD, CLS])
        hf.post_processor = processors.TemplateProcessing(
            single=f"{CLS} $A", special_tokens=[(CLS, layout.cls_id)])
    return hf.to_str()
