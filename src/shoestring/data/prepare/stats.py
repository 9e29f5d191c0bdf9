"""Normalization statistics of the training split, accumulated chunk by chunk.

Means and variances are merged across chunks with the pairwise update of
Chan, Golub and LeVeque, "Algorithms for computing the sample variance"
(1979/1983), in float64, which avoids the cancellation of the naive
sum-of-squares formula. Statistics are per flattened feature, the layout of
:class:`shoestring.types.Preprocessing`, after the source's raw scale
(1/255 for 8-bit images); images also get per-channel figures.
"""

from __future__ import annotations

import numpy as np

# The rule of shoestring.train.tensors.MIN_STD: constant features (MNIST's
# blank corners) get std 1, as in scikit-learn's StandardScaler, instead of
# dividing a value that is non-zero only outside the training split by ~0.
MIN_STD = 1e-6


class RunningStats:
    """Per-feature count, mean and M2 (sum of squared deviations)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if len(x) == 0:
            return
        nb, mb = len(x), x.mean(axis=0)
        m2b = ((x - mb) ** 2).sum(axis=0)
        if self.mean is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta ** 2 * (self.n * nb / n)
        self.n = n

    def std(self) -> np.ndarray:
        """Population standard deviation (before any floor)."""
        return np.sqrt(self.m2 / max(self.n, 1))


def summarize(stats: RunningStats, scale: float, item_shape: tuple[int, ...],
              kind: str) -> dict:
    """JSON-ready statistics; ``mean``/``std`` are per flattened feature, scaled."""
    if stats.mean is None:
        return {"count": 0, "scale": scale}
    mean = stats.mean * scale
    std = stats.std() * scale
    std = np.where(std < MIN_STD, 1.0, std)  # what ``fit_preprocessing`` computes
    out = {"count": stats.n, "scale": scale, "mean": mean.tolist(), "std": std.tolist()}
    if kind == "image":
        c = item_shape[0]
        per = stats.mean.reshape(c, -1) * scale
        # Channel variance = mean of per-pixel variances + variance of pixel means.
        var = (stats.m2.reshape(c, -1) / stats.n).mean(axis=1) + per.var(axis=1) / scale ** 2
        out["channel_mean"] = per.mean(axis=1).tolist()
        out["channel_std"] = (np.sqrt(var) * scale).tolist()
    return out
