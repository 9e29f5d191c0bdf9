"""Text data: language-modelling corpora (``text:PATH``) and labelled JSONL (``jsonl:PATH``).

Language modelling does not fit the in-memory :class:`~shoestring.types.Dataset`
(its examples are windows drawn from a token stream that may exceed RAM), so
it has its own entry point, :func:`load_text_data`::

    data = load_text_data("text:corpus.txt", tokenizer="char",
                          cache_dir=default_cache_dir(Path.cwd()))
    x, y = data.get_batch("train", batch_size=12, block_size=64,
                          generator=torch.Generator().manual_seed(0))

``jsonl:`` classification data is an ordinary ``Dataset`` of padded token ids
(see :mod:`shoestring.data.text_jsonl`). Both schemes are listed in
:data:`LOADERS` for the data-source registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shoestring.data.sources import SourceOptions, split_spec
from shoestring.data.text_cache import (
    TokenFile,
    cache_key,
    discard_entry,
    open_entry,
    write_entry,
)
from shoestring.data.text_corpus import corpus_files, iter_corpus
from shoestring.data.text_jsonl import load_jsonl_dataset
from shoestring.data.text_stream import Batch, TokenSplit, TokenStream
from shoestring.models.tokenizers import (
    Tokenizer,
    check_kind,
    load_tokenizer,
    train_tokenizer,
)
from shoestring.errors import DataError
from shoestring.types import Dataset

DEFAULT_VAL_FRACTION = 0.1
# BPE encodes this many corpus chunks (about 1 MiB each) per parallel batch.
_BPE_BATCH = 8


def default_cache_dir(workspace: Path) -> Path:
    """Where token caches live unless told otherwise: ``WORKSPACE/.shoestring/cache/tokens``."""
    return Path(workspace) / ".shoestring" / "cache" / "tokens"


@dataclass(frozen=True)
class TextData:
    """A tokenized corpus: its tokenizer, its token file and its train/val splits.

    Attributes:
        source: the spec it was loaded from.
        tokenizer: encodes and decodes text (``tokenizer.vocab_size`` ids).
        stream: the train/val splits of the memory-mapped token file.
        token_file: the cache entry (``.directory``, ``.n_tokens``, ``.sha256``).
        cache_hit: true when an existing entry was reused, nothing re-tokenized.
        notes: things worth logging (e.g. a damaged entry that was rebuilt).
    """

    source: str
    tokenizer: Tokenizer
    stream: TokenStream
    token_file: TokenFile
    cache_hit: bool
    notes: tuple[str, ...] = ()

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def train(self) -> TokenSplit:
        return self.stream.train

    @property
    def val(self) -> TokenSplit:
        return self.stream.val

    def get_batch(self, split: str, batch_size: int, block_size: int,
                  generator: torch.Generator | None = None) -> Batch:
        return self.stream.get_batch(split, batch_size, block_size, generator)


def _corpus_path(spec: str) -> Path:
    scheme, arg = split_spec(spec) if ":" in spec else ("text", spec)
    if scheme != "text":
        raise DataError(f"{spec!r} is not a text corpus", hint="write 'text:PATH'")
    if not arg:
        raise DataError("data source 'text:' needs a path", hint="write 'text:PATH'")
    return Path(arg).expanduser()


def _encode_chunks(tokenizer: Tokenizer, chunks: Iterable[str]) -> Iterator[np.ndarray]:
    if not hasattr(tokenizer, "encode_batch"):
        for chunk in chunks:
            yield tokenizer.encode_array(chunk)
        return
    batch: list[str] = []
    for chunk in chunks:
        batch.append(chunk)
        if len(batch) == _BPE_BATCH:
            yield from (np.asarray(ids, dtype=np.int64) for ids in tokenizer.encode_batch(batch))
            batch = []
    if batch:
        yield from (np.asarray(ids, dtype=np.int64) for ids in tokenizer.encode_batch(batch))


def load_text_data(spec: str, *, tokenizer: str = "char", cache_dir: Path,
                   bpe_vocab_size: int | None = None, tokenizer_file: Path | None = None,
                   val_fraction: float = DEFAULT_VAL_FRACTION, verify: bool = True) -> TextData:
    """Tokenize corpus ``spec`` (``text:FILE`` or ``text:FOLDER``) once, cached; load its splits.

    Args:
        tokenizer: ``char``, ``byte`` or ``bpe`` (trained on this corpus).
        cache_dir: folder of token-cache entries (see :func:`default_cache_dir`).
        bpe_vocab_size: BPE vocabulary size (default 4096).
        tokenizer_file: reuse this ``tokenizer.json`` instead of training one
            (resuming, or fine-tuning on new text with an old vocabulary).
        val_fraction: share of the tokens, at the end, held out for validation.
        verify: check the cached token file's SHA-256 before reuse.

    In a multi-process run, let one process (rank 0) call this first and the
    others after a barrier: they then all read the finished entry.
    """
    path = _corpus_path(spec)
    check_kind(tokenizer, bpe_vocab_size)
    files = corpus_files(path)
    given = load_tokenizer(tokenizer_file) if tokenizer_file is not None else None
    settings = {"kind": given.kind if given else tokenizer,
                "bpe_vocab_size": bpe_vocab_size if tokenizer == "bpe" else None,
                "given": given.to_json() if given else None}
    directory = Path(cache_dir) / cache_key(files, settings)
    entry, why = open_entry(directory, verify=verify)
    notes = (why,) if why else ()
    if why:
        discard_entry(directory)
    hit = entry is not None
    if entry is None:
        tok = given or train_tokenizer(tokenizer, iter_corpus(files), bpe_vocab_size)
        entry = write_entry(directory, tok, _encode_chunks(tok, iter_corpus(files)))
    tok = given or load_tokenizer(entry.tokenizer)
    stream = TokenStream.from_file(entry.tokens, entry.dtype, entry.n_tokens, val_fraction)
    return TextData(spec, tok, stream, entry, hit, notes)


def _text_as_dataset(arg: str, options: SourceOptions) -> Dataset:
    raise DataError(f"'text:{arg}' is a language-modelling corpus, not a table of examples",
                    hint="train it with model 'gpt' (or a GPT preset such as gpt-nano); "
                    "for labelled texts use 'jsonl:PATH'")


LOADERS = {"text": _text_as_dataset, "jsonl": load_jsonl_dataset}


def describe(data: TextData) -> dict:
    """JSON-ready facts about a loaded corpus, for logs and run summaries."""
    return {"source": data.source, "tokenizer": data.tokenizer.kind,
            "vocab_size": data.vocab_size, "tokens": data.token_file.n_tokens,
            "train_tokens": len(data.train), "val_tokens": len(data.val),
            "token_dtype": data.token_file.dtype, "sha256": data.token_file.sha256,
            "cache": str(data.token_file.directory), "cache_hit": data.cache_hit}
