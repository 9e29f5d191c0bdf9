"""True Jaccard similarity of candidate pairs, computed from their shingle sets.

Every candidate pair from LSH is checked here before anything is removed, so
an LSH collision can never delete a record: a pair is a near-duplicate only if
``|A ∩ B| / |A ∪ B| ≥ threshold`` on the actual (64-bit hashed) shingle sets.
Hash collisions between distinct shingles occur with probability about
``|A|·|B| / 2^64``, far below one in a billion for documents of any
realistic length.

The computation is vectorized over a batch of pairs: both sets of every pair
are gathered, tagged with the pair's number and sorted; since each set is
already unique, an equal neighbour inside the same pair is one shared shingle.
"""

from __future__ import annotations

import numpy as np

from shoestring.data.prepare.lsh import _ragged_ranges

# Pairs are verified this many at a time, to bound the gathered arrays.
PAIR_BATCH = 50_000


def _gather(values: np.ndarray, offsets: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = offsets[docs]
    counts = offsets[docs + 1] - starts
    return np.asarray(values[_ragged_ranges(starts, counts)]), counts


def pair_jaccard(values: np.ndarray, offsets: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Jaccard similarity of each ``(i, j)`` row of ``pairs`` (float64; 0 for two empty sets).

    ``values``/``offsets`` are the CSR of sorted unique shingle hashes (a
    numpy memmap works: only the gathered documents are read).

    >>> v = np.array([1, 2, 3, 2, 3, 4], dtype=np.uint64); off = np.array([0, 3, 6])
    >>> pair_jaccard(v, off, np.array([[0, 1]])).tolist()
    [0.5]
    """
    out = np.empty(len(pairs), dtype=np.float64)
    for lo in range(0, len(pairs), PAIR_BATCH):
        batch = pairs[lo:lo + PAIR_BATCH]
        n = len(batch)
        va, ca = _gather(values, offsets, batch[:, 0])
        vb, cb = _gather(values, offsets, batch[:, 1])
        tag = np.concatenate((np.repeat(np.arange(n), ca), np.repeat(np.arange(n), cb)))
        val = np.concatenate((va, vb))
        order = np.lexsort((val, tag))
        val, tag = val[order], tag[order]
        same = (val[1:] == val[:-1]) & (tag[1:] == tag[:-1])
        inter = np.bincount(tag[1:][same], minlength=n).astype(np.float64)
        union = ca + cb - inter
        out[lo:lo + n] = np.divide(inter, union, out=np.zeros(n), where=union > 0)
    return out
