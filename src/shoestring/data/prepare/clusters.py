"""From verified duplicate pairs to decisions: who is kept, who is dropped, why.

Exact copies collapse onto one representative first. Verified near pairs are
then moved onto those representatives and form a graph whose connected
components are the near-duplicate clusters. Inside a component, records are
removed greedily in priority order: a record is dropped only if it is itself
a verified near-duplicate of a record already kept. Nothing is removed by
transitivity alone (A~B and B~C never removes C because of A), which is how
careless clustering wipes out whole sources. A component larger than
``max_cluster`` is not touched at all and is listed for review.

:func:`split_groups` then says which *kept* records must share a split: those
joined by exact or verified near-duplicate relations (components again, with
components over the cap broken into the greedy "stars" around each
representative so that one chained cluster cannot swallow a split).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from shoestring.data.prepare.exact import exact_groups

KEEP, EXACT, NEAR = 0, 1, 2


@dataclass
class DedupResult:
    """Per record: ``reason`` (KEEP, EXACT or NEAR) and ``rep`` (the kept record it
    duplicates; itself if kept). ``pairs`` are the verified near pairs between
    exact representatives (with ``sim``); ``star`` is each record's greedy
    representative whether or not it was removed; ``review`` lists the
    components left whole because they exceed the cap."""

    reason: np.ndarray
    rep: np.ndarray
    exact_group: np.ndarray
    exact_rep: np.ndarray
    pairs: np.ndarray
    sim: np.ndarray
    star: np.ndarray
    review: list[np.ndarray]


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) \
        if len(pairs) else coo_matrix((n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def greedy_stars(n: int, pairs: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """``rep`` per node: itself if kept, else its best already-kept direct neighbour."""
    rep = np.arange(n, dtype=np.int64)
    if len(pairs) == 0:
        return rep
    both = np.concatenate((pairs, pairs[:, ::-1]))
    # Neighbours sorted by priority, so the best kept neighbour is found first.
    order = np.lexsort((priority[both[:, 1]], both[:, 0]))
    src, dst = both[order, 0], both[order, 1]
    nodes, starts = np.unique(src, return_index=True)
    ends = np.append(starts[1:], len(src))
    kept = np.zeros(n, dtype=bool)
    for k in np.argsort(priority[nodes], kind="stable"):
        v = nodes[k]
        for u in dst[starts[k]:ends[k]]:
            if kept[u]:
                rep[v] = u
                break
        else:
            kept[v] = True
    return rep


def decide(digests: np.ndarray, near_pairs: np.ndarray, near_sim: np.ndarray,
           priority: np.ndarray, *, remove_exact: bool, remove_near: bool,
           max_cluster: int, exempt: np.ndarray | None = None) -> DedupResult:
    """Decisions for ``n = len(digests)`` records given verified near pairs.

    ``exempt`` records are nobody's duplicate: each is its own exact group and
    near pairs touching it are ignored, so they are kept and split freely.
    """
    n = len(digests)
    egroup, erep = exact_groups(digests, priority)
    if exempt is not None and exempt.any():
        alone = np.flatnonzero(exempt[erep])  # decided per group, by its representative
        egroup, erep = egroup.copy(), erep.copy()
        egroup[alone] = egroup.max() + 1 + np.arange(len(alone))
        egroup = np.unique(egroup, return_inverse=True)[1].astype(np.int64)  # no empty ids
        erep[alone] = alone
        if len(near_pairs):
            touching = exempt[near_pairs[:, 0]] | exempt[near_pairs[:, 1]]
            near_pairs, near_sim = near_pairs[~touching], near_sim[~touching]
    reason = np.zeros(n, dtype=np.int8)
    if remove_exact:
        reason[erep != np.arange(n)] = EXACT
    p = erep[near_pairs] if len(near_pairs) else np.empty((0, 2), np.int64)
    keep_pair = p[:, 0] != p[:, 1]
    p, sim = np.sort(p[keep_pair], axis=1), near_sim[keep_pair]
    if len(p):
        first = np.unique(p[:, 0] * n + p[:, 1], return_index=True)[1]
        p, sim = p[first], sim[first]
    comp = _components(n, p)
    sizes = np.bincount(comp)
    review = [np.flatnonzero(comp == c) for c in np.flatnonzero(sizes > max_cluster)]
    star = greedy_stars(n, p, priority)
    rep = erep.copy()
    if remove_near and len(p):
        dropped = (star != np.arange(n)) & (sizes[comp] <= max_cluster) & (reason == KEEP)
        reason[dropped] = NEAR
        rep[dropped] = star[dropped]
    # Exact copies point at whatever their representative points at.
    rep = np.where(erep != np.arange(n), rep[erep], rep)
    star = star[erep]
    return DedupResult(reason, rep, egroup, erep, p, sim, star, review)


def clusters_of(d: DedupResult) -> np.ndarray:
    """Cluster id per record for the report: near components, with exact copies joined."""
    n = len(d.exact_group)
    return _components(n, d.pairs)[d.exact_rep] if n else np.empty(0, np.int64)


def split_groups(kept: np.ndarray, d: DedupResult, max_cluster: int) -> np.ndarray:
    """Group id per record: kept records with the same id must share a split."""
    g = d.exact_group
    ng = int(g.max()) + 1 if len(g) else 0
    alive = np.zeros(ng, dtype=bool)
    alive[g[kept]] = True
    edges = g[d.pairs] if len(d.pairs) else np.empty((0, 2), np.int64)
    edges = edges[alive[edges[:, 0]] & alive[edges[:, 1]]]
    comp = _components(ng, edges)
    size = np.bincount(comp[g[kept]], minlength=comp.max(initial=-1) + 1)
    rep_of_group = np.empty(ng, dtype=np.int64)
    rep_of_group[g] = d.exact_rep
    star_group = g[d.star[rep_of_group]] + (comp.max(initial=-1) + 1)
    group_of_g = np.where(size[comp] > max_cluster, star_group, comp)
    return group_of_g[g]


def direct_relations(kept: np.ndarray, d: DedupResult) -> tuple[np.ndarray, np.ndarray]:
    """Exact-group ids of kept records and the near edges between such groups."""
    g = d.exact_group
    alive = np.zeros(int(g.max()) + 1 if len(g) else 0, dtype=bool)
    alive[g[kept]] = True
    edges = g[d.pairs] if len(d.pairs) else np.empty((0, 2), np.int64)
    return g, edges[alive[edges[:, 0]] & alive[edges[:, 1]]]


def related_to(mask: np.ndarray, kept: np.ndarray, d: DedupResult) -> np.ndarray:
    """Records (any) that are exact copies or direct verified near-duplicates of a
    kept record in ``mask``."""
    g, edges = direct_relations(kept, d)
    hit = np.zeros(int(g.max()) + 1 if len(g) else 0, dtype=bool)
    hit[g[mask & kept]] = True
    touched = hit.copy()
    if len(edges):
        touched[edges[hit[edges[:, 0]], 1]] = True
        touched[edges[hit[edges[:, 1]], 0]] = True
    return touched[g]


def cross_split_relations(kept: np.ndarray, splits_of: np.ndarray, d: DedupResult) -> int:
    """Exact groups and near edges among kept records whose records sit in different
    splits (``splits_of`` is per record, valid where ``kept``): the leakage left."""
    g, edges = direct_relations(kept, d)
    mask = np.zeros(int(g.max()) + 1 if len(g) else 0, dtype=np.int64)
    np.bitwise_or.at(mask, g[kept], np.left_shift(1, splits_of[kept].astype(np.int64)))
    multi = np.bitwise_count(mask.astype(np.uint64)) > 1
    count = int(multi.sum())
    if len(edges):
        both = mask[edges[:, 0]] | mask[edges[:, 1]]
        count += int((np.bitwise_count(both.astype(np.uint64)) > 1).sum())
    return count
