"""Tokenizers: characters, UTF-8 bytes, or byte-level BPE trained on the corpus.

Every tokenizer has one contract (:class:`Tokenizer`): ``encode`` text to ids,
``decode`` ids to text, ``to_json`` for a file that rebuilds it without the
corpus. ``char`` and ``byte`` are written here (they are a table lookup);
``bpe`` is Hugging Face ``tokenizers``' byte-level BPE, the GPT-2 scheme
(Radford et al. 2019, section 2.2), saved in that library's own
``tokenizer.json`` format so other tools can read it too.

>>> tok = train_tokenizer("char", ["hello"])
>>> tok.vocab_size, tok.decode(tok.encode("hole"))
(4, 'hole')
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from shoestring.errors import DataError, ShoestringError
from shoestring.io import atomic_write_bytes, read_text

FORMAT = "shoestring.tokenizer/1"
KINDS = ("char", "byte", "bpe")
# Byte-level BPE starts from the 256 byte symbols, so it needs at least that many ids.
MIN_BPE_VOCAB = 256
DEFAULT_BPE_VOCAB = 4096


class Tokenizer(Protocol):
    """What every tokenizer offers; ids are ``0..vocab_size-1``."""

    kind: str

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def encode_array(self, text: str) -> np.ndarray: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def to_json(self) -> str: ...


class CharTokenizer:
    """One id per distinct character of the training text, in code-point order."""

    kind = "char"

    def __init__(self, chars: str) -> None:
        if len(set(chars)) != len(chars):
            raise ShoestringError("a char tokenizer's characters must be distinct",
                                  hint="the tokenizer file is damaged; retrain it")
        self.chars = chars
        # Code points in sorted order (and each one's id) let encode_array map a
        # whole text with one searchsorted instead of a Python loop.
        points = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._order = np.argsort(points)
        self._points = points[self._order]

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode_array(self, text: str) -> np.ndarray:
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        pos = np.minimum(np.searchsorted(self._points, points), len(self.chars) - 1)
        unknown = np.flatnonzero(self._points[pos] != points)
        if unknown.size:
            ch = text[int(unknown[0])]
            raise DataError(f"character {ch!r} (U+{ord(ch):04X}) at position {int(unknown[0])} "
                            "is not in the char tokenizer's vocabulary",
                            hint="a char tokenizer knows only the characters of its training "
                            "text; use 'byte' or 'bpe' to read any text")
        return self._order[pos].astype(np.int64)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "kind": "char", "chars": self.chars})


class ByteTokenizer:
    """The 256 byte values of the UTF-8 encoding; reads any text, needs no training."""

    kind = "byte"
    vocab_size = 256

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        # Sampled bytes need not form valid UTF-8; show U+FFFD rather than fail.
        return bytes(ids).decode("utf-8", errors="replace")

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "kind": "byte"})


class BPETokenizer:
    """Byte-level BPE through Hugging Face ``tokenizers`` (lossless on any text); also any
    other ``tokenizer.json``, such as a pretrained checkpoint's WordPiece or BPE.

    A pretrained tokenizer may add special tokens (BERT's ``[CLS]``/``[SEP]``, Llama's
    begin-of-text): :meth:`encode` adds them (a prompt, a text to classify);
    :meth:`encode_array` and :meth:`encode_batch` do not (a corpus read in chunks,
    which would otherwise get them at every chunk boundary).
    """

    kind = "bpe"

    def __init__(self, hf_tokenizer) -> None:
        self.hf = hf_tokenizer

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.hf.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text).ids

    def encode_with_specials(self, text: str) -> tuple[list[int], list[int]]:
        """Ids with the tokenizer's special tokens, and a 0/1 mask marking those."""
        enc = self.hf.encode(text)
        return enc.ids, enc.special_tokens_mask

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(list(ids))

    def to_json(self) -> str:
        return self.hf.to_str()


def _train_bpe(texts: Iterable[str], vocab_size: int) -> BPETokenizer:
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(texts, trainer)
    return BPETokenizer(hf)


def check_kind(kind: str, vocab_size: int | None) -> None:
    """Reject an unknown tokenizer or an impossible BPE vocabulary before any work."""
    if kind not in KINDS:
        raise ShoestringError(f"unknown tokenizer {kind!r}", hint=f"use one of: {', '.join(KINDS)}")
    if kind == "bpe" and vocab_size is not None and vocab_size < MIN_BPE_VOCAB:
        raise ShoestringError(f"a byte-level BPE vocabulary needs at least {MIN_BPE_VOCAB} "
                              f"tokens, got {vocab_size}", hint="e.g. 4096")


def train_tokenizer(kind: str, texts: Iterable[str], vocab_size: int | None = None) -> Tokenizer:
    """A tokenizer of ``kind`` fitted to ``texts`` (a stream of chunks is fine).

    ``vocab_size`` is the BPE vocabulary (default 4096); ``char`` and ``byte``
    ignore it.
    """
    check_kind(kind, vocab_size)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        return _train_bpe(texts, vocab_size or DEFAULT_BPE_VOCAB)
    seen: set[str] = set()
    for text in texts:
        seen.update(text)
    return CharTokenizer("".join(sorted(seen)))


def tokenizer_from_json(text: str, where: str = "tokenizer") -> Tokenizer:
    """Rebuild a tokenizer from :meth:`Tokenizer.to_json` output."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ShoestringError(f"{where} is not valid JSON: {exc}",
                              hint="the file is damaged; retrain or restore it") from exc
    if isinstance(data, dict) and data.get("format") == FORMAT:
        if data.get("kind") == "byte":
            return ByteTokenizer()
        if data.get("kind") == "char" and isinstance(data.get("chars"), str) and data["chars"]:
            return CharTokenizer(data["chars"])
        raise ShoestringError(f"{where} describes an unknown tokenizer {data.get('kind')!r}",
                              hint="it was written by an incompatible Shoestring version")
    from tokenizers import Tokenizer as HFTokenizer

    try:
        return BPETokenizer(HFTokenizer.from_str(text))
    except Exception as exc:  # tokenizers raises its own exception types
        raise ShoestringError(f"{where} is not a tokenizer file: {exc}",
                              hint="pass the tokenizer.json of a Shoestring run") from exc


def load_tokenizer(path: Path) -> Tokenizer:
    """Read a ``tokenizer.json`` written by :func:`save_tokenizer`."""
    path = Path(path)
    if not path.exists():
        raise ShoestringError(f"tokenizer file '{path}' does not exist",
                              hint="text runs save tokenizer.json in their run folder")
    return tokenizer_from_json(read_text(path), where=f"'{path}'")


def save_tokenizer(tokenizer: Tokenizer, path: Path) -> Path:
    """Write ``tokenizer`` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, tokenizer.to_json().encode("utf-8"))
    return path
