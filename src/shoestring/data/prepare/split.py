"""Leakage-free, stratified train/validation/test assignment.

The unit of assignment is the duplicate *group* (a cluster of exact and near
duplicates, or a single record), so no cluster straddles two splits. Groups
are stratified by the label of their first record; inside each stratum they
are shuffled by the seed and dealt, largest first, to whichever split is
furthest below its target share, which keeps every split's class mix close to
the whole's (a greedy form of the "stratified group k-fold" idea in
scikit-learn's ``StratifiedGroupKFold``). A source's own test split is kept
as the test split; validation is then carved out of its training part.
"""

from __future__ import annotations

import numpy as np

from shoestring.data.prepare.records import GIVEN_TEST

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")


def _deal(group_sizes: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split index for each group so that split totals approach ``targets`` (shares).

    Groups of two or more go first, largest first, each to the split furthest
    below its share; single records (usually nearly all) then fill the
    remaining quotas in shuffled order, without a Python loop over them.
    """
    order = rng.permutation(len(group_sizes))
    order = order[np.argsort(-group_sizes[order], kind="stable")]
    out = np.empty(len(group_sizes), dtype=np.int8)
    filled = np.zeros(len(targets))
    live = targets > 0
    for g in order[group_sizes[order] > 1]:
        deficit = np.where(live, targets * (filled.sum() + group_sizes[g]) - filled, -np.inf)
        s = int(np.argmax(deficit))
        out[g] = s
        filled[s] += group_sizes[g]
    singles = order[group_sizes[order] == 1]
    if len(singles):
        want = np.where(live, np.maximum(targets * (filled.sum() + len(singles)) - filled, 0), 0)
        share = want / want.sum() * len(singles) if want.sum() > 0 else live / live.sum() * \
            len(singles)
        quota = np.floor(share).astype(np.int64)
        # Largest remainders get the records left over by rounding down.
        for k in np.argsort(-(share - quota), kind="stable")[: len(singles) - quota.sum()]:
            quota[k] += 1
        out[singles] = np.repeat(np.arange(len(targets)), quota)
    return out


def assign_splits(groups: np.ndarray, strata: np.ndarray, given: np.ndarray,
                  val_fraction: float, test_fraction: float, seed: int,
                  use_given: bool) -> np.ndarray:
    """Split code (TRAIN, VAL, TEST) per record.

    ``groups`` must be equal for records that have to stay together; ``strata``
    is the label code (``-1`` for none). With ``use_given``, the source's test
    records are the test split and the others are dealt to train and
    validation; otherwise all three are drawn with the fractions.

    >>> g = np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
    >>> s = assign_splits(g, np.zeros(10, int), np.zeros(10), 0.2, 0.2, 0, False)
    >>> bool(s[0] == s[1]), np.bincount(s, minlength=3).tolist()
    (True, [6, 2, 2])
    """
    n = len(groups)
    out = np.full(n, TEST, dtype=np.int8)
    if n == 0:
        return out
    rng = np.random.default_rng(seed)
    if use_given:
        dealt = np.flatnonzero(given != GIVEN_TEST)
        targets = np.array([1.0 - val_fraction, val_fraction, 0.0])
    else:
        dealt = np.arange(n)
        targets = np.array([1.0 - val_fraction - test_fraction, val_fraction, test_fraction])
    if len(dealt) == 0:
        return out
    uniq, inv = np.unique(groups[dealt], return_inverse=True)
    sizes = np.bincount(inv)
    first = np.full(len(uniq), len(dealt), dtype=np.int64)
    np.minimum.at(first, inv, np.arange(len(dealt)))
    stratum = strata[dealt][first]
    group_split = np.empty(len(uniq), dtype=np.int8)
    for s in np.unique(stratum):
        members = np.flatnonzero(stratum == s)
        group_split[members] = _deal(sizes[members], targets, rng)
    out[dealt] = group_split[inv]
    return out
