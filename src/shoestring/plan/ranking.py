"""Ranking options honestly: the time–cost Pareto front, near-ties, endpoints.

Ranking by dollars alone misleads twice. A 99-hour job at $10.94 is not a
better answer than a 12.5-hour job at $11.00: within a percent or two of the
cheapest, the faster option wins (``tie_tolerance``, default 2%). And no single
ranking shows the trade-off, so the plan also lists the *Pareto front*: every
option that no other option beats on both time and cost.

Serving is an endpoint, not a batch job: a spot preemption takes it down, so
on-demand options rank before spot ones there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

# Options this close to the cheapest count as tied on cost; the faster wins.
TIE_TOLERANCE = 0.02


def rank_by_cost(options: Sequence[T], *, cost: Callable[[T], float],
                 hours: Callable[[T], float], tolerance: float = TIE_TOLERANCE) -> list[T]:
    """``options`` cheapest first, but the faster of any within ``tolerance`` of each other.

    Greedy: take the cheapest remaining option; every remaining option costing
    at most ``(1 + tolerance)`` times as much joins its group; the group is
    ranked by hours (then cost); repeat with what is left.

    >>> opts = [("1x", 10.94, 99.4), ("8x", 11.00, 12.5), ("h100", 11.06, 6.3)]
    >>> [o[0] for o in rank_by_cost(opts, cost=lambda o: o[1], hours=lambda o: o[2])]
    ['h100', '8x', '1x']
    """
    rest = sorted(options, key=lambda o: (cost(o), hours(o)))
    out: list[T] = []
    while rest:
        ceiling = cost(rest[0]) * (1 + tolerance)
        group = [o for o in rest if cost(o) <= ceiling]
        rest = [o for o in rest if cost(o) > ceiling]
        out += sorted(group, key=lambda o: (hours(o), cost(o)))
    return out


def pareto_front(options: Sequence[T], *, cost: Callable[[T], float],
                 hours: Callable[[T], float]) -> list[T]:
    """Options no other option beats on both time and cost, fastest first.

    >>> opts = [("a", 10, 100), ("b", 11, 12), ("c", 20, 13), ("d", 30, 2)]
    >>> [o[0] for o in pareto_front(opts, cost=lambda o: o[1], hours=lambda o: o[2])]
    ['d', 'b', 'a']
    """
    front: list[T] = []
    best_cost = float("inf")
    for o in sorted(options, key=lambda o: (hours(o), cost(o))):
        if cost(o) < best_cost:
            front.append(o)
            best_cost = cost(o)
    return front
