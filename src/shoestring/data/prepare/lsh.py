"""Candidate pairs from banded hashes: records that share a bucket in any band.

Pairs are generated per band with one sort, so the cost is O(n log n) per band
and no Python loop runs over records. A bucket of ``L`` records would yield
``L(L-1)/2`` pairs; buckets larger than ``anchor_limit + 1`` (templated
boilerplate, for instance) pair each member with the bucket's first
``anchor_limit`` members only, which keeps the pair count linear. Big buckets
are counted so that the report can name them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANCHOR_LIMIT = 64


@dataclass
class BandStats:
    buckets_capped: int = 0
    largest_bucket: int = 0


def _ragged_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each pair, vectorized."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(counts)
    base = np.repeat(starts - (ends - counts), counts)
    return base + np.arange(total, dtype=np.int64)


def bucket_pairs(keys: np.ndarray, ids: np.ndarray | None = None,
                 anchor_limit: int = ANCHOR_LIMIT, stats: BandStats | None = None) -> np.ndarray:
    """``[m, 2]`` int64 pairs ``(i, j)``, ``i < j``, of records with equal ``keys``.

    ``ids`` maps positions to record ids (default: positions).

    >>> bucket_pairs(np.array([5, 7, 5, 5], dtype=np.uint64)).tolist()
    [[0, 2], [0, 3], [2, 3]]
    """
    ids = np.arange(len(keys), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    if len(keys) < 2:
        return np.empty((0, 2), dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    sk, sid = keys[order], ids[order]
    change = np.flatnonzero(sk[1:] != sk[:-1]) + 1
    run_start = np.concatenate(([0], change))
    run_len = np.diff(np.concatenate((run_start, [len(sk)])))
    multi = run_len >= 2
    run_start, run_len = run_start[multi], run_len[multi]
    if stats is not None and len(run_len):
        stats.largest_bucket = max(stats.largest_bucket, int(run_len.max()))
        stats.buckets_capped += int((run_len > anchor_limit + 1).sum())
    out_i, out_j = [], []
    for a in range(min(anchor_limit, int(run_len.max(initial=0)) - 1)):
        live = run_len > a + 1
        if not live.any():
            break
        s, length = run_start[live], run_len[live]
        partners = length - 1 - a
        anchor_pos = np.repeat(s + a, partners)
        partner_pos = _ragged_ranges(s + a + 1, partners)
        out_i.append(sid[anchor_pos])
        out_j.append(sid[partner_pos])
    if not out_i:
        return np.empty((0, 2), dtype=np.int64)
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    return np.stack((np.minimum(i, j), np.maximum(i, j)), axis=1)


def unique_pairs(chunks: list[np.ndarray]) -> np.ndarray:
    """Union of pair arrays without repeats, sorted by ``(i, j)``."""
    if not chunks:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(chunks)
    if len(pairs) == 0:
        return pairs.reshape(0, 2)
    keys = pairs[:, 0].astype(np.uint64) << np.uint64(32) | pairs[:, 1].astype(np.uint64)
    keys = np.unique(keys)
    return np.stack(((keys >> np.uint64(32)).astype(np.int64),
                     (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)), axis=1)
