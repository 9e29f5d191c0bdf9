"""Per-key token buckets (pure: the clock is passed in).

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; a
request takes one token or is refused with the wait until one is available
(the classic token bucket, e.g. Tanenbaum, *Computer Networks*, 5th ed.,
section 5.4.2). Buckets live in one server process: with N replicas a key may
reach N × its rate. Monthly quotas, which are billed, are exact across
replicas (see :mod:`shoestring.serve.metering`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float
    burst: int
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Take a token: 0.0 if granted, else the seconds to wait for one.

        >>> b = TokenBucket(rate=1.0, burst=2, tokens=2.0, stamp=0.0)
        >>> b.take(0.0), b.take(0.0), b.take(0.0), b.take(1.0)
        (0.0, 0.0, 1.0, 0.0)
        """
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Buckets by key id; a bucket is made full on a key's first request."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key_id: str, rate: float, burst: int) -> float:
        """0.0 if the request may proceed, else seconds until it may (for Retry-After)."""
        now = self.clock()
        b = self._buckets.get(key_id)
        if b is None or b.rate != rate or b.burst != burst:  # new key, or its plan changed
            b = self._buckets[key_id] = TokenBucket(rate, burst, float(burst), now)
        return b.take(now)


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` takes whole seconds (RFC 9110 section 10.2.3); round up, at least 1."""
    return str(max(1, math.ceil(seconds)))
