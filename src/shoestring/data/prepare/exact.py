"""Exact duplicates: a 128-bit BLAKE2b digest of each record's normalized content.

Text is normalized by Unicode NFKC, case folding and collapsing whitespace,
so records that differ only in those are exact duplicates; images by their
pixels after decoding (so a PNG and a lossless re-encode match); table rows
by their float32 feature values (with -0.0 equal to 0.0). Labels are not part
of the content: two copies of a record with different labels are duplicates,
and the report counts such label conflicts.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence

import numpy as np

DIGEST_BYTES = 16


def normalize_text(text: str) -> str:
    """``"  Hello\\tWORLD "`` → ``"hello world"``."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_digests(texts: Sequence[str]) -> np.ndarray:
    out = bytearray()
    for t in texts:
        out += hashlib.blake2b(normalize_text(t).encode("utf-8", "surrogatepass"),
                               digest_size=DIGEST_BYTES).digest()
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(len(texts), DIGEST_BYTES)


def array_digests(x: np.ndarray) -> np.ndarray:
    """Digest of each row of ``x`` (images ``[n, ...]`` or table rows)."""
    rows = np.ascontiguousarray(x.reshape(len(x), -1))
    if rows.dtype.kind == "f":
        rows = rows.astype(np.float32) + np.float32(0.0)  # -0.0 + 0.0 == +0.0
    out = bytearray()
    for r in rows:
        out += hashlib.blake2b(r.tobytes(), digest_size=DIGEST_BYTES).digest()
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(len(x), DIGEST_BYTES)


def exact_groups(digests: np.ndarray, priority: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group number of each record and the group's representative (lowest ``priority``).

    >>> d = np.array([[1] * 16, [2] * 16, [1] * 16], dtype=np.uint8)
    >>> g, rep = exact_groups(d, np.array([5, 0, 1])); rep.tolist()
    [2, 1, 2]
    """
    n = len(digests)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    keys = np.ascontiguousarray(digests).view(np.dtype((np.void, DIGEST_BYTES))).ravel()
    _, group = np.unique(keys, return_inverse=True)
    group = group.astype(np.int64)
    order = np.lexsort((priority, group))
    first = np.ones(n, dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    rep_of_group = np.empty(group.max() + 1, dtype=np.int64)
    rep_of_group[group[order][first]] = order[first]
    return group, rep_of_group[group]
