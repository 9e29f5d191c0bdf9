"""The token cache: a corpus tokenized once into a flat file, reused until it changes.

An entry is a folder named by a content key: the SHA-256 of the corpus files'
paths, sizes and modification times plus the tokenizer settings. Editing,
adding or touching a file, or changing the tokenizer, gives a new key, so a
stale entry is never read. Each entry holds

- ``tokens.bin``: the token ids, flat, little-endian ``uint16`` when the
  vocabulary fits in 16 bits, else ``uint32`` (nanoGPT's ``train.bin`` layout);
- ``tokenizer.json``: the tokenizer that produced them;
- ``meta.json``: dtype, token count and the SHA-256 of ``tokens.bin``, checked
  on reuse so a damaged file is rebuilt rather than trained on.

Entries are written in a private temporary folder and renamed into place, so
concurrent builders (several ranks, several runs) never see half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shoestring.data.text_corpus import CorpusFile
from shoestring.models.tokenizers import Tokenizer, save_tokenizer
from shoestring.errors import DataError
from shoestring.io import atomic_write_bytes

FORMAT = "shoestring.tokens/1"
TOKENS, META, TOKENIZER = "tokens.bin", "meta.json", "tokenizer.json"
_HASH_BLOCK = 1 << 22


@dataclass(frozen=True)
class TokenFile:
    """A finished cache entry."""

    directory: Path
    dtype: str
    n_tokens: int
    sha256: str
    vocab_size: int

    @property
    def tokens(self) -> Path:
        return self.directory / TOKENS

    @property
    def tokenizer(self) -> Path:
        return self.directory / TOKENIZER


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned type that holds every id of ``vocab_size`` tokens."""
    if vocab_size <= 1 << 16:
        return np.dtype("<u2")
    if vocab_size <= 1 << 32:
        return np.dtype("<u4")
    raise DataError(f"vocabulary overflow: {vocab_size} tokens do not fit 32-bit ids",
                    hint="use a smaller tokenizer vocabulary")


def cache_key(files: list[CorpusFile], tokenizer_settings: dict) -> str:
    """The content key of a corpus version tokenized with given settings."""
    payload = {"format": FORMAT, "tokenizer": tokenizer_settings,
               "files": [[str(f.path), f.size, f.mtime_ns] for f in files]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def open_entry(directory: Path, verify: bool = True) -> tuple[TokenFile | None, str | None]:
    """The entry in ``directory`` if complete and intact, else ``(None, why)``."""
    meta_path = directory / META
    if not meta_path.exists():
        return None, None
    try:
        meta = json.loads(meta_path.read_text())
        entry = TokenFile(directory, meta["dtype"], int(meta["n_tokens"]), meta["sha256"],
                          int(meta["vocab_size"]))
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"token cache '{directory}' has a damaged {META} ({exc}); rebuilt it"
    if meta.get("format") != FORMAT or not entry.tokenizer.exists():
        return None, f"token cache '{directory}' is incomplete or from another version; rebuilt it"
    expected = entry.n_tokens * np.dtype(entry.dtype).itemsize
    if not entry.tokens.exists() or entry.tokens.stat().st_size != expected:
        return None, f"token cache '{entry.tokens}' has the wrong size; rebuilt it"
    if verify and file_sha256(entry.tokens) != entry.sha256:
        return None, f"token cache '{entry.tokens}' failed its checksum; rebuilt it"
    return entry, None


def discard_entry(directory: Path) -> None:
    """Remove a damaged entry so it can be rebuilt."""
    shutil.rmtree(directory, ignore_errors=True)


def write_entry(directory: Path, tokenizer: Tokenizer, id_chunks: Iterable[np.ndarray]
                ) -> TokenFile:
    """Write ``id_chunks`` (and the tokenizer) as the entry ``directory``; returns it.

    A damaged entry must be removed first (:func:`discard_entry`); if another
    process completes the same entry meanwhile, that one is returned.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(tokenizer.vocab_size)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        h, n = hashlib.sha256(), 0
        with open(tmp / TOKENS, "wb") as f:
            for ids in id_chunks:
                if ids.size and int(ids.max()) >= tokenizer.vocab_size:
                    raise DataError(f"vocabulary overflow: token id {int(ids.max())} is outside "
                                    f"the tokenizer's {tokenizer.vocab_size} ids",
                                    hint="the tokenizer is inconsistent; retrain it")
                data = ids.astype(dtype).tobytes()
                f.write(data)
                h.update(data)
                n += ids.size
            f.flush()
            os.fsync(f.fileno())
        if n == 0:
            raise DataError("the text corpus tokenizes to no tokens",
                            hint="it needs some text to learn from")
        save_tokenizer(tokenizer, tmp / TOKENIZER)
        meta = {"format": FORMAT, "dtype": dtype.str, "n_tokens": n, "sha256": h.hexdigest(),
                "vocab_size": tokenizer.vocab_size, "tokenizer": tokenizer.kind}
        atomic_write_bytes(tmp / META, json.dumps(meta, indent=2).encode())
        try:
            tmp.rename(directory)
        except OSError:
            # Another process finished the same entry first: use theirs.
            if open_entry(directory, verify=False)[0] is None:
                raise
        entry, why = open_entry(directory, verify=False)
        assert entry is not None, why
        return entry
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
