"""Mitigations of a gap between groups, each judged by the same before/after table.

- ``thresholds`` (post-processing): a decision threshold per group, chosen by
  Fairlearn's ``ThresholdOptimizer`` (Hardt, Price & Srebro 2016, "Equality of
  Opportunity in Supervised Learning") to maximise accuracy under the
  constraint (equalized odds or demographic parity). The thresholds are fitted
  on a split the audit does not score: the source's validation split, else
  one seeded half of the audited split, and the table is computed on the other
  half, so the "after" numbers are not fitted to themselves. Serving must then
  know each request's group, which is itself a decision for a human (caveat in
  the card). Binary classifiers only.
- ``reweight`` (training): retrain the run with group-balanced sampling: each
  (group, label) cell of the training split is drawn with equal total
  probability, the "data balancing" of Idrissi et al. 2022 ("Simple data
  balancing achieves competitive worst-group-accuracy", CLeaR), through the
  training loop's ``setup`` hook. The batches stay a pure function of
  (seed, step), so the retrained run resumes like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from shoestring.errors import ShoestringError


def _scores_estimator(scores: np.ndarray):
    """The sklearn face Fairlearn asks of an estimator, over precomputed scores.

    Fairlearn needs a fitted scikit-learn estimator with ``predict_proba``; a
    PyTorch model has none, so the audit scores the examples once and hands
    Fairlearn row numbers: ``X`` is a column of indices into ``scores``.
    scikit-learn ≥ 1.6 requires estimators to derive from ``BaseEstimator``
    (``__sklearn_tags__``), hence the class is built here, importing sklearn lazily.
    """
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Scores(ClassifierMixin, BaseEstimator):
        def __init__(self, scores=None) -> None:
            self.scores = scores

        def fit(self, X, y=None, **kwargs):
            self.classes_ = np.array([0, 1])
            return self

        def predict_proba(self, X) -> np.ndarray:
            p = np.asarray(self.scores, dtype=float)[np.asarray(X, dtype=int).ravel()]
            return np.stack([1.0 - p, p], axis=1)

        def predict(self, X) -> np.ndarray:
            return (self.predict_proba(X)[:, 1] > 0.5).astype(int)

    return Scores(np.asarray(scores, dtype=float)).fit(None)


def per_group_thresholds(score: np.ndarray, y: np.ndarray, groups: Sequence[str],
                         fit_rows: np.ndarray, eval_rows: np.ndarray, *, constraint: str,
                         seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Predictions for ``eval_rows`` after thresholds fitted on ``fit_rows``.

    ``score`` is the probability of the positive class and ``y`` 0/1 labels,
    both for all rows. Returns the 0/1 predictions of the evaluation rows and
    what was fitted (per group: the thresholds and how they are mixed).
    """
    import warnings

    from fairlearn.postprocessing import ThresholdOptimizer

    groups = np.asarray(groups, dtype=object)
    est = _scores_estimator(score)
    opt = ThresholdOptimizer(estimator=est, constraints=constraint, objective="accuracy_score",
                             prefit=True, predict_method="predict_proba")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's "fitted without feature names"
        opt.fit(fit_rows[:, None], y[fit_rows], sensitive_features=groups[fit_rows])
        pred = opt.predict(eval_rows[:, None], sensitive_features=groups[eval_rows],
                           random_state=seed)
    fitted = {}
    for g, rule in opt.interpolated_thresholder_.interpolation_dict.items():
        fitted[str(g)] = {k: (float(v) if isinstance(v, (float, np.floating)) else str(v))
                          for k, v in dict(rule).items()}
    return np.asarray(pred, dtype=int), fitted


def split_for_fitting(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded half of ``range(n)`` to fit on, and the other half to score."""
    perm = np.random.default_rng([seed, 0x746872]).permutation(n)  # "thr"
    half = n // 2
    return np.sort(perm[:half]), np.sort(perm[half:])


# --- reweighting in training ------------------------------------------------------------------

def balanced_weights(groups: Sequence[str], y: np.ndarray) -> np.ndarray:
    """Per-example sampling weights giving every (group, label) cell equal total weight.

    >>> balanced_weights(["a", "a", "a", "b"], np.array([0, 0, 1, 1])).round(3).tolist()
    [0.167, 0.167, 0.333, 0.333]
    """
    keys = np.array([f"{g}\x1f{int(v)}" for g, v in zip(groups, np.asarray(y).ravel())],
                    dtype=object)
    cells, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    w = 1.0 / (len(cells) * counts[inverse])
    return w / w.sum()


class BalancedBatches:
    """Batches drawn with replacement from ``weights``, a pure function of (seed, step).

    Same steps per epoch and batch size as the source it replaces, so budgets
    and schedules mean what they meant.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, weights: np.ndarray, batch_size: int,
                 steps_per_epoch: int, seed: int) -> None:
        self.x, self.y = x, y
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.batch_size, self.seed = batch_size, seed
        self.steps_per_epoch = steps_per_epoch
        self.examples_per_epoch = len(x)

    def batch(self, epoch: int, step_in_epoch: int, global_step: int):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + global_step)
        idx = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=gen)
        idx = idx.to(self.x.device)
        return self.x.index_select(0, idx), self.y.index_select(0, idx)


def balancing_hooks(groups: Sequence[str], train_y: torch.Tensor):
    """:class:`TrainHooks` whose ``setup`` swaps the batch source for :class:`BalancedBatches`.

    ``groups`` and ``train_y`` describe the training split in the order the run
    loads it; the hook checks that the loop's split is that one.
    """
    from shoestring.train.hooks import TrainHooks

    weights = balanced_weights(groups, train_y.numpy())

    def setup(parts):
        src = parts.source
        x, y = getattr(src, "x", None), getattr(src, "y", None)
        if x is None or len(x) != len(weights) or not torch.equal(y.cpu().ravel(),
                                                                  train_y.ravel()):
            raise ShoestringError("reweighting could not line up the group column with the "
                                  "training split the run loads",
                                  hint="retrain with 'shoestring train --group COLUMN' on a "
                                  "table source, then audit with --mitigate reweight")
        parts.source = BalancedBatches(x, y, weights, src.batch_size, src.steps_per_epoch,
                                       src.seed)
        return parts

    return TrainHooks(setup=setup, notes=(
        ("reweight: batches drawn so that every (group, label) cell weighs the same "
         "(Idrissi et al. 2022)"),))
