"""Word n-gram shingles of many documents at once, as sets of 64-bit hashes.

Text is normalized (Unicode NFKC, lower case, every run of non-word
characters becomes one space), joined with NUL bytes, and hashed with numpy in
a few passes over the bytes, without a Python loop over words. A document with
fewer than ``n`` words gets one shingle made of all its words, so short
documents still compare (the convention of ChenghaoMou/text-dedup); a
document with no words has no shingles and is never a near-duplicate.

The result is a CSR pair ``(values, offsets)``: document ``d``'s shingles are
``values[offsets[d]:offsets[d + 1]]``, sorted and unique, so that the true
Jaccard similarity of two documents is a sorted-set intersection.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from shoestring.data.prepare.hashing import U64, combine, splitmix64, tabulation_table

_NON_WORD = re.compile(r"[\W_]+")
_SPACE, _SEP = 32, 0


def normalize_words(text: str) -> str:
    """``"Hello,  World!"`` → ``"hello world "``: the text that shingles see."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower())


def _byte_table() -> np.ndarray:
    # What normalize_words does to ASCII, as a byte lookup table: letters are
    # lower-cased, digits kept, everything else (including '_') is a space.
    # Bytes >= 128 only occur in already-normalized non-ASCII words.
    lut = np.full(256, _SPACE, dtype=np.uint8)
    for c in b"abcdefghijklmnopqrstuvwxyz0123456789":
        lut[c] = c
    for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        lut[c] = c + 32
    lut[128:] = np.arange(128, 256)
    lut[_SEP] = _SEP
    return lut


_LUT = _byte_table()


def _normalized_bytes(texts: Sequence[str]) -> np.ndarray:
    """The normalized corpus as bytes, documents separated by NUL.

    ASCII documents (the common case) are normalized by the lookup table on
    the whole buffer, about 5x faster than a regex per document; the others
    go through :func:`normalize_words`. Both give the same bytes.
    """
    parts = [t if t.isascii() else normalize_words(t) for t in texts]
    joined = "\x00".join(parts)
    if joined.count("\x00") != max(len(parts) - 1, 0):  # a NUL inside a document
        joined = "\x00".join(p.replace("\x00", " ") for p in parts)
    return _LUT[np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)]


def word_hashes(texts: Sequence[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hash of every word and the document it belongs to, in reading order.

    >>> h, doc = word_hashes(["a b", "", "B!"])
    >>> doc.tolist(), bool(h[1] == h[2])
    ([0, 0, 2], True)
    """
    buf = _normalized_bytes(texts)
    is_word = (buf != _SPACE) & (buf != _SEP)
    if not is_word.any():
        return np.empty(0, U64), np.empty(0, np.int64)
    prev = np.empty_like(is_word)
    prev[0] = False
    prev[1:] = is_word[:-1]
    start_mask = is_word & ~prev
    starts = np.flatnonzero(start_mask)
    byte_pos = np.flatnonzero(is_word)
    word_of_byte = np.cumsum(start_mask)[byte_pos] - 1
    pos = byte_pos - starts[word_of_byte]
    table = tabulation_table(seed)
    contrib = table[(pos & 63) * 256 + buf[byte_pos]]
    lengths = np.bincount(word_of_byte, minlength=len(starts))
    first = np.zeros(len(starts), dtype=np.int64)
    np.cumsum(lengths[:-1], out=first[1:])
    words = splitmix64(np.bitwise_xor.reduceat(contrib, first) ^ lengths.astype(U64))
    doc = np.cumsum(buf == _SEP)[starts].astype(np.int64)
    return words, doc


def shingle_sets(texts: Sequence[str], n: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique shingle hashes per document as ``(values, offsets)``.

    >>> v, off = shingle_sets(["the cat sat on the mat", "the cat sat", ""], n=3)
    >>> np.diff(off).tolist()
    [4, 1, 0]
    """
    n_docs = len(texts)
    words, doc = word_hashes(texts, seed)
    counts = np.bincount(doc, minlength=n_docs)
    word_off = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(counts, out=word_off[1:])
    parts_h, parts_d = [], []
    m = len(words) - n + 1
    if m > 0:
        ok = doc[:m] == doc[n - 1:]
        idx = np.flatnonzero(ok)
        h = words[idx]
        for k in range(1, n):
            h = combine(h, words[idx + k])
        parts_h.append(h)
        parts_d.append(doc[idx])
    short = np.flatnonzero((counts > 0) & (counts < n))
    if len(short):
        first = word_off[short]
        h = words[first]
        for k in range(1, n - 1):
            more = counts[short] > k
            h[more] = combine(h[more], words[first[more] + k])
        parts_h.append(h)
        parts_d.append(short)
    if not parts_h:
        return np.empty(0, U64), np.zeros(n_docs + 1, dtype=np.int64)
    h = np.concatenate(parts_h)
    d = np.concatenate(parts_d)
    order = np.lexsort((h, d))
    h, d = h[order], d[order]
    keep = np.ones(len(h), dtype=bool)
    keep[1:] = (h[1:] != h[:-1]) | (d[1:] != d[:-1])
    h, d = h[keep], d[keep]
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.bincount(d, minlength=n_docs), out=offsets[1:])
    return h, offsets
