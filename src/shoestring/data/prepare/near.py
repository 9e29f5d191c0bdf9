"""Verified near-duplicate pairs: candidates from LSH or pHash, each checked on
its true measure before it may cause a removal.

Text: Jaccard similarity of the word n-gram sets ≥ ``near_threshold``.
Images: pHash within ``phash_distance`` bits *and* a pixel similarity of at
least ``pixel_similarity``. The pixel similarity is the weighted Jaccard
(Ruzicka) index ``Σ min(a, b) / Σ max(a, b)`` of the two images' intensities,
the same set measure as for text, generalised to weights. On Fashion-MNIST
pairs at ≥ 0.95 are the same product photo, while plain shirts of similar
silhouette sit at 0.85-0.92 and stay (see docs/data.md). Negative pixel
values (already-standardized float images) are shifted to start at zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoestring.data.prepare.lsh import BandStats
from shoestring.data.prepare.phash import phash_candidates
from shoestring.data.prepare.text_index import TextNearIndex

PIXEL_BATCH = 10_000


@dataclass
class NearPairs:
    pairs: np.ndarray          # [m, 2] verified
    similarity: np.ndarray     # Jaccard (text) or 1 - pixel difference (images)
    candidates: int            # pairs proposed by LSH / pHash
    below_threshold: int       # candidates that verification rejected
    stats: BandStats

    @classmethod
    def none(cls) -> NearPairs:
        return cls(np.empty((0, 2), np.int64), np.empty(0), 0, 0, BandStats())


def text_near_pairs(index: TextNearIndex, threshold: float, active: np.ndarray | None = None
                    ) -> NearPairs:
    cand = index.candidate_pairs(active)
    sim = index.jaccard(cand)
    ok = sim >= threshold
    return NearPairs(cand[ok], sim[ok], len(cand), int((~ok).sum()), index.stats)


def pixel_similarity(x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Weighted Jaccard ``Σ min / Σ max`` of each pair's pixels (1.0 for two blank images)."""
    out = np.empty(len(pairs))
    for lo in range(0, len(pairs), PIXEL_BATCH):
        p = pairs[lo:lo + PIXEL_BATCH]
        a = np.asarray(x[p[:, 0]], dtype=np.float32).reshape(len(p), -1)
        b = np.asarray(x[p[:, 1]], dtype=np.float32).reshape(len(p), -1)
        floor = min(a.min(initial=0.0), b.min(initial=0.0))
        a, b = a - floor, b - floor
        lo_sum, hi_sum = np.minimum(a, b).sum(axis=1), np.maximum(a, b).sum(axis=1)
        out[lo:lo + len(p)] = np.divide(lo_sum, hi_sum, out=np.ones(len(p)), where=hi_sum > 0)
    return out


def image_near_pairs(x: np.ndarray, hashes: np.ndarray, max_distance: int, min_similarity: float
                     ) -> NearPairs:
    stats = BandStats()
    cand = phash_candidates(hashes, max_distance, stats=stats)
    if len(cand) == 0:
        return NearPairs(cand, np.empty(0), 0, 0, stats)
    # Sorting by the first index makes the memmap reads mostly sequential.
    cand = cand[np.argsort(cand[:, 0], kind="stable")]
    sim = pixel_similarity(x, cand)
    ok = sim >= min_similarity
    return NearPairs(cand[ok], sim[ok], len(cand), int((~ok).sum()), stats)
