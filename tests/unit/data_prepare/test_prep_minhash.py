"""Shingles, MinHash, LSH banding and Jaccard verification against plain Python."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoestring.data.prepare.jaccard import pair_jaccard
from shoestring.data.prepare.lsh import BandStats, bucket_pairs, unique_pairs
from shoestring.data.prepare.minhash import (
    candidate_probability,
    optimal_params,
    params_for_recall,
    permutations,
    signatures,
)
from shoestring.data.prepare.shingles import normalize_words, shingle_sets
from shoestring.data.prepare.text_index import TextNearIndex


def py_shingles(text: str, n: int) -> set[str]:
    w = normalize_words(text).split()
    if 0 < len(w) < n:
        return {" ".join(w)}
    return {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab cdÉé,.!_\n\t", max_size=40), min_size=1, max_size=8),
       st.integers(1, 4))
def test_shingle_sets_match_python_sets(texts, n):
    values, offsets = shingle_sets(texts, n)
    for d, t in enumerate(texts):
        assert offsets[d + 1] - offsets[d] == len(py_shingles(t, n))
        seg = values[offsets[d]:offsets[d + 1]]
        assert np.all(seg[1:] > seg[:-1])  # sorted and unique


def test_true_jaccard_equals_python_sets():
    rng = random.Random(0)
    docs = [" ".join(f"w{rng.randrange(30)}" for _ in range(rng.randrange(1, 25)))
            for _ in range(60)]
    values, offsets = shingle_sets(docs, 2)
    pairs = np.array([(i, j) for i in range(60) for j in range(i + 1, 60)])
    got = pair_jaccard(values, offsets, pairs)
    for (i, j), g in zip(pairs, got):
        a, b = py_shingles(docs[i], 2), py_shingles(docs[j], 2)
        assert g == pytest.approx(len(a & b) / len(a | b))


def test_minhash_estimate_tracks_jaccard():
    rng = random.Random(1)
    base = [f"w{rng.randrange(10**6)}" for _ in range(200)]
    other = base[:150] + [f"x{rng.randrange(10**6)}" for _ in range(50)]
    values, offsets = shingle_sets([" ".join(base), " ".join(other)], 3)
    a, b = permutations(512)
    sig = signatures(values, offsets, a, b)
    true = pair_jaccard(values, offsets, np.array([[0, 1]]))[0]
    estimate = (sig[0] == sig[1]).mean()
    # Standard error of the estimate is sqrt(J(1-J)/k) ≈ 0.02 for k = 512.
    assert abs(estimate - true) < 0.08


def test_permutations_are_datasketchs():
    datasketch = pytest.importorskip("datasketch")
    m = datasketch.MinHash(num_perm=64, seed=7)
    a, b = permutations(64, seed=7)
    np.testing.assert_array_equal(m.permutations[0], a)
    np.testing.assert_array_equal(m.permutations[1], b)


def test_lsh_parameters():
    assert optimal_params(0.8, 128).bands * optimal_params(0.8, 128).rows <= 128
    p = params_for_recall(0.8, 128, recall=0.999)
    assert candidate_probability(0.8, p.bands, p.rows) >= 0.999
    # The next more selective choice would miss the target.
    r = p.rows + 1
    assert candidate_probability(0.8, 128 // r, r) < 0.999


def test_bucket_pairs_cap_big_buckets_linearly():
    stats = BandStats()
    keys = np.zeros(1000, dtype=np.uint64)
    pairs = bucket_pairs(keys, anchor_limit=8, stats=stats)
    assert len(pairs) == sum(999 - a for a in range(8))
    assert stats.largest_bucket == 1000 and stats.buckets_capped == 1
    assert np.all(pairs[:, 0] < pairs[:, 1])


def test_unique_pairs_dedupes_across_bands():
    a = np.array([[1, 2], [3, 4]])
    b = np.array([[1, 2], [0, 9]])
    assert unique_pairs([a, b]).tolist() == [[0, 9], [1, 2], [3, 4]]


def test_index_never_pairs_documents_without_shingles(tmp_path):
    with TextNearIndex(tmp_path, params_for_recall(0.8, 64), num_perm=64) as idx:
        idx.add(["!!!", "...", "?", "real words here now"])
        assert idx.candidate_pairs().tolist() == []
