"""A table with a planted bias whose size is known exactly: the audit's own yardstick.

Each row has a latent score ``z ~ U(−1, 1)`` and the label ``1[z > 0]``, flipped
with probability ``noise`` in both groups. The informative feature ``x1`` is
``z`` for group A; for group B it is ``z`` except in a share ``corrupt`` of the
rows, where it is an independent ``U(−1, 1)`` draw (a measurement that is
unreliable for B, e.g. an instrument that often fails on them); ``x2`` and
``x3`` are pure noise. The group column is never a feature.

Corruption is symmetric around zero, so ``P(y = 1 | x1)`` steps at ``x1 = 0``
for everyone and the best group-blind classifier is ``x1 > 0``; a model that
learned the data approaches it from either side (a threshold ``t`` off zero
moves the gap by only ``corrupt·|t|·(1 − 2·noise)/2``). Its error rates are
then, exactly:

- group A: ``noise`` (only the label noise);
- group B: ``noise + corrupt·(1/2 − noise)`` (a corrupted row is a coin toss);

so the planted error-rate gap is ``corrupt·(1/2 − noise)``. No threshold on
B's ``x1`` recovers the corrupted rows: a mitigation can narrow the gap only by
trading accuracy (per-group thresholds under equalized odds move A's error
towards B's), and reweighting cannot help (the corrupted rows carry no signal),
which is what the bench shows.

>>> round(planted_gap(PlantedBias()), 4)
0.135
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PlantedBias:
    rows: int = 20_000
    share_a: float = 0.7
    corrupt: float = 0.3
    noise: float = 0.05
    seed: int = 0


def planted_error_rates(p: PlantedBias) -> dict[str, float]:
    return {"A": p.noise, "B": p.noise + p.corrupt * (0.5 - p.noise)}


def planted_gap(p: PlantedBias) -> float:
    rates = planted_error_rates(p)
    return rates["B"] - rates["A"]


def write_planted_csv(path: Path, p: PlantedBias = PlantedBias()) -> Path:
    """The table as CSV: ``x1, x2, x3, group, label``."""
    rng = np.random.default_rng(p.seed)
    group_b = rng.random(p.rows) >= p.share_a
    z = rng.uniform(-1.0, 1.0, p.rows)
    label = (z > 0) ^ (rng.random(p.rows) < p.noise)
    corrupted = group_b & (rng.random(p.rows) < p.corrupt)
    x1 = np.where(corrupted, rng.uniform(-1.0, 1.0, p.rows), z)
    noise = rng.normal(size=(p.rows, 2))
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x1", "x2", "x3", "group", "label"])
        for i in range(p.rows):
            w.writerow([f"{x1[i]:.5f}", f"{noise[i, 0]:.5f}", f"{noise[i, 1]:.5f}",
                        "B" if group_b[i] else "A", int(label[i])])
    return path
