"""Thinning long curves for a plot without losing what a reader looks for.

A 10,000-step run logs 10,000 points per curve; a plot a few hundred pixels
wide shows at most a few hundred of them. Plain decimation (every n-th point)
hides spikes and the best value, which are what a loss curve is read for.
:func:`min_max_buckets` keeps, per bucket of consecutive points, the first,
the last, the smallest and the largest: the M4 aggregation of Jugel et al.,
"M4: A Visualization-Oriented Time Series Data Aggregation" (VLDB 2014), which
draws the same line as the full series at the bucket's pixel width. So every
local extreme, the global minimum and maximum and both ends survive.
"""

from __future__ import annotations

from collections.abc import Sequence

# 250 buckets × at most 4 points: 1,000 points per curve, about the pixel width
# of a plot on a wide screen twice over.
DEFAULT_BUCKETS = 250


def min_max_buckets(xs: Sequence[float], ys: Sequence[float],
                    buckets: int = DEFAULT_BUCKETS) -> tuple[list[float], list[float]]:
    """(xs, ys) thinned to at most ``4 * buckets`` points, in x order, extremes kept.

    Points are split into ``buckets`` runs of consecutive indices; each run keeps
    its first, last, minimum and maximum point (once each, in their order).

    >>> min_max_buckets([0, 1, 2, 3, 4, 5], [5, 9, 1, 7, 3, 4], buckets=1)
    ([0, 1, 2, 5], [5, 9, 1, 4])
    >>> min_max_buckets([0, 1], [1, 2], buckets=10)
    ([0, 1], [1, 2])
    """
    n = len(xs)
    if len(ys) != n:
        raise ValueError(f"xs has {n} points but ys has {len(ys)}")
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, got {buckets}")
    if n <= 4 * buckets:
        return list(xs), list(ys)
    keep: list[int] = []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        if lo >= hi:
            continue
        window = range(lo, hi)
        i_min = min(window, key=ys.__getitem__)
        i_max = max(window, key=ys.__getitem__)
        keep.extend(sorted({lo, hi - 1, i_min, i_max}))
    return [xs[i] for i in keep], [ys[i] for i in keep]
