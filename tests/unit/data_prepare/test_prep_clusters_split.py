"""Duplicate decisions (no removal by transitivity, cluster cap) and the split."""

from __future__ import annotations

import numpy as np

from shoestring.data.prepare import clusters as cl
from shoestring.data.prepare.records import GIVEN_TEST, GIVEN_TRAIN
from shoestring.data.prepare.split import TEST, TRAIN, VAL, assign_splits


def digests(*groups: int) -> np.ndarray:
    d = np.zeros((len(groups), 16), np.uint8)
    d[:, 0] = groups
    return d


def test_exact_copies_keep_the_best_priority_record():
    d = cl.decide(digests(1, 2, 1, 1), np.empty((0, 2), np.int64), np.empty(0),
                  np.array([3, 0, 1, 2]), remove_exact=True, remove_near=True, max_cluster=10)
    assert d.reason.tolist() == [cl.EXACT, cl.KEEP, cl.KEEP, cl.EXACT]
    assert d.rep.tolist() == [2, 1, 2, 2]


def test_chains_do_not_remove_by_transitivity():
    # 0~1 and 1~2 verified, 0 and 2 not similar: only 1 goes.
    d = cl.decide(digests(0, 1, 2), np.array([[0, 1], [1, 2]]), np.array([0.9, 0.9]),
                  np.arange(3), remove_exact=True, remove_near=True, max_cluster=10)
    assert d.reason.tolist() == [cl.KEEP, cl.NEAR, cl.KEEP]


def test_clusters_over_the_cap_are_kept_whole_for_review():
    pairs = np.array([[0, i] for i in range(1, 6)])
    d = cl.decide(digests(*range(6)), pairs, np.full(5, 0.95), np.arange(6),
                  remove_exact=True, remove_near=True, max_cluster=4)
    assert (d.reason == cl.KEEP).all()
    assert [r.tolist() for r in d.review] == [[0, 1, 2, 3, 4, 5]]


def test_near_pairs_between_exact_copies_move_to_representatives():
    # 2 is an exact copy of 0; 2~1 is verified, so 1 is a near duplicate of 0.
    d = cl.decide(digests(7, 8, 7), np.array([[1, 2]]), np.array([0.9]), np.arange(3),
                  remove_exact=True, remove_near=True, max_cluster=10)
    assert d.reason.tolist() == [cl.KEEP, cl.NEAR, cl.EXACT]
    assert d.rep.tolist() == [0, 0, 0]


def test_related_to_finds_direct_relations_only():
    d = cl.decide(digests(0, 1, 2, 0), np.array([[0, 1], [1, 2]]), np.full(2, 0.9),
                  np.arange(4), remove_exact=False, remove_near=False, max_cluster=10)
    kept = np.ones(4, bool)
    hit = cl.related_to(np.array([True, False, False, False]), kept, d)
    assert hit.tolist() == [True, True, False, True]  # 2 is only chained through 1


def test_split_groups_keep_kept_duplicates_together():
    d = cl.decide(digests(0, 0, 1, 2, 3), np.array([[2, 3]]), np.array([0.9]), np.arange(5),
                  remove_exact=False, remove_near=False, max_cluster=10)
    g = cl.split_groups(np.ones(5, bool), d, max_cluster=10)
    assert g[0] == g[1] and g[2] == g[3] and len({g[0], g[2], g[4]}) == 3


def test_stratified_split_keeps_groups_and_class_balance():
    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 3, n)
    groups = np.arange(n)
    groups[:300] = np.repeat(np.arange(100), 3)  # 100 triples
    y[:300] = np.repeat(y[:300:3], 3)
    s = assign_splits(groups, y, np.zeros(n), 0.1, 0.2, seed=0, use_given=False)
    for g in range(100):
        assert len(set(s[groups == g])) == 1
    counts = np.bincount(s, minlength=3)
    assert abs(counts[TEST] - 600) <= 3 and abs(counts[VAL] - 300) <= 3
    for k in range(3):
        share = np.bincount(y[s == k], minlength=3) / (s == k).sum()
        assert np.allclose(share, np.bincount(y) / n, atol=0.02)
    again = assign_splits(groups, y, np.zeros(n), 0.1, 0.2, seed=0, use_given=False)
    assert np.array_equal(s, again)


def test_given_test_split_is_kept_and_validation_comes_from_train():
    given = np.array([GIVEN_TRAIN] * 90 + [GIVEN_TEST] * 10)
    s = assign_splits(np.arange(100), np.zeros(100, int), given, 0.2, 0.0, 0, use_given=True)
    assert (s[90:] == TEST).all()
    assert (s[:90] != TEST).all() and (s[:90] == VAL).sum() == 18 and (s == TRAIN).sum() == 72
