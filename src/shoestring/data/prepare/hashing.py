"""Vectorized 64-bit hashing primitives (numpy, wrap-around uint64 arithmetic).

* :func:`splitmix64` is the finalizer of Steele, Lea and Flood, "Fast
  splittable pseudorandom number generators" (OOPSLA 2014); constants from
  Vigna's reference ``splitmix64.c`` (https://prng.di.unimi.it/splitmix64.c).
  It is a bijection on 64-bit words with full avalanche.
* Words are hashed by simple tabulation hashing (Zobrist 1970; Pătraşcu and
  Thorup, "The power of simple tabulation hashing", JACM 2012): the XOR of one
  random table entry per (position, byte). It is 3-independent, and unlike a
  polynomial hash it needs no carry between bytes, so a whole corpus is
  hashed with one gather and one ``bitwise_xor.reduceat``.

Every function is pure and deterministic: the same text hashes the same in
every process (Python's ``hash()`` is salted per process and unusable here).
"""

from __future__ import annotations

import numpy as np

U64 = np.uint64
_GOLDEN = U64(0x9E3779B97F4A7C15)
_M1 = U64(0xBF58476D1CE4E5B9)
_M2 = U64(0x94D049BB133111EB)
# Any odd constant works for combining; this is 2^64 / phi rounded to odd.
COMBINE = U64(0x9E3779B97F4A7C15)

# Bytes at position >= TABLE_POSITIONS reuse rows cyclically; the word length
# is mixed in separately, so long words that differ only by a 64-byte shift
# of identical content still hash apart.
TABLE_POSITIONS = 64


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 output function applied elementwise (returns a new array)."""
    z = np.asarray(x, dtype=U64) + _GOLDEN
    z = (z ^ (z >> U64(30))) * _M1
    z = (z ^ (z >> U64(27))) * _M2
    return z ^ (z >> U64(31))


def _table(seed: int) -> np.ndarray:
    keys = np.arange(TABLE_POSITIONS * 256, dtype=U64) + U64(seed * TABLE_POSITIONS * 256)
    return splitmix64(splitmix64(keys))


_TABLES: dict[int, np.ndarray] = {}


def tabulation_table(seed: int = 0) -> np.ndarray:
    """The ``[64 * 256]`` table of random words for ``seed`` (cached: it is pure)."""
    if seed not in _TABLES:
        _TABLES[seed] = _table(seed)
    return _TABLES[seed]


def combine(h: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Order-sensitive hash of the pair ``(h, v)``; chains into sequence hashes."""
    return splitmix64(h * COMBINE + v)


def low32(h: np.ndarray) -> np.ndarray:
    """The low 32 bits as uint32 (splitmix64 output is uniform in every bit)."""
    return (h & U64(0xFFFFFFFF)).astype(np.uint32)
