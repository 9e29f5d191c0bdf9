"""Perceptual hashes of image batches, and near-duplicate candidates between them.

pHash as defined by the ``imagehash`` library (J. Buchner,
https://github.com/JohannesBuchner/imagehash, ``phash``; after Zauner,
"Implementation and benchmarking of perceptual image hash functions", 2010):
grayscale, resize to 32x32, 2-D DCT-II, keep the 8x8 lowest frequencies, and
set each bit where a coefficient exceeds their median. Resizing is
antialiased bilinear on the whole batch in torch, so the bits can differ from
``imagehash`` (which resizes with Pillow's LANCZOS) on a few borderline
coefficients; what matters here is that it is the same function on both
sides of every comparison.

Two hashes within Hamming distance ``k`` agree exactly on at least one of
``k + 1`` disjoint bit segments (pigeonhole; Manku, Jain and Das Sarma,
"Detecting near-duplicates for web crawling", WWW 2007), so bucketing by each
segment finds every pair within ``k`` without comparing all pairs.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from scipy.fft import dct
from torch.nn import functional as F

from shoestring.data.prepare.lsh import ANCHOR_LIMIT, BandStats, bucket_pairs, unique_pairs

HASH_SIDE = 32
LOW_FREQ = 8
_BIT_WEIGHTS = (np.uint64(1) << np.arange(64, dtype=np.uint64))


def phash(images: np.ndarray) -> np.ndarray:
    """uint64 pHash of each image in ``[n, C, H, W]`` (any numeric dtype)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    if x.ndim != 4:
        raise ValueError(f"expected [n, C, H, W] images, got shape {tuple(x.shape)}")
    gray = x.mean(dim=1, keepdim=True)
    small = F.interpolate(gray, size=(HASH_SIDE, HASH_SIDE), mode="bilinear",
                          antialias=True, align_corners=False)[:, 0].numpy().astype(np.float64)
    coeffs = dct(dct(small, axis=1), axis=2)[:, :LOW_FREQ, :LOW_FREQ].reshape(len(x), -1)
    med = np.median(coeffs, axis=1, keepdims=True)
    bits = coeffs > med
    return (bits.astype(np.uint64) * _BIT_WEIGHTS).sum(axis=1, dtype=np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Number of differing bits between uint64 hashes (elementwise)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def segment_masks(max_distance: int) -> list[np.uint64]:
    """``max_distance + 1`` disjoint bit masks covering all 64 bits."""
    k = max_distance + 1
    bounds = np.linspace(0, 64, k + 1).round().astype(int)
    return [np.uint64(((1 << int(hi)) - 1) ^ ((1 << int(lo)) - 1))
            for lo, hi in itertools.pairwise(bounds)]


def phash_candidates(hashes: np.ndarray, max_distance: int, active: np.ndarray | None = None,
                     anchor_limit: int = ANCHOR_LIMIT, stats: BandStats | None = None
                     ) -> np.ndarray:
    """Pairs whose hashes are within ``max_distance`` bits (each pair checked exactly).

    >>> h = np.array([0b1111, 0b0111, 1 << 40], dtype=np.uint64)
    >>> phash_candidates(h, 1).tolist()
    [[0, 1]]
    """
    ids = np.arange(len(hashes)) if active is None else np.flatnonzero(active)
    sub = hashes[ids]
    chunks = []
    for mask in segment_masks(max_distance):
        # Filter each segment's pairs at once, so big buckets never pile up in memory.
        pairs = bucket_pairs(sub & mask, ids, anchor_limit, stats)
        close = hamming(hashes[pairs[:, 0]], hashes[pairs[:, 1]]) <= max_distance
        chunks.append(pairs[close])
    return unique_pairs(chunks)
