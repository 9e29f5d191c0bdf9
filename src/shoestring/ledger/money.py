"""Money in the ledger: integer nano-dollars, so sums and comparisons are exact.

A float dollar cannot hold $0.10 exactly, and a million of them summed drift;
an integer count of 10⁻⁹ dollars holds any price Shoestring meets (a cheap
request costs a few micro-dollars) and sums exactly in SQL.

>>> usd_to_nano(0.0123)
12300000
>>> nano_to_usd(12300000)
0.0123
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

NANO_PER_USD = 1_000_000_000


def usd_to_nano(usd: float) -> int:
    """Dollars → nano-dollars, rounded half to even (the float's decimal value, not its binary)."""
    return int((Decimal(repr(float(usd))) * NANO_PER_USD).quantize(Decimal(1), ROUND_HALF_EVEN))


def nano_to_usd(nano: int) -> float:
    """Nano-dollars → dollars, rounded to the micro-dollar, for display only."""
    return float(round(Decimal(int(nano)) / NANO_PER_USD, 6))
