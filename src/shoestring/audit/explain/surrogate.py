"""A global surrogate: a shallow decision tree trained to imitate the model.

The tree (scikit-learn's CART) learns the model's *predictions*, not the
labels, from readable features: table columns in their raw units, image
pixels, or for text the counts of the most frequent tokens. Its *fidelity*
is how often it agrees with the model on the audited split, which it was not
fitted on (R² of the model's outputs for a regressor): a tree with low
fidelity is a poor summary of the model, and the card says so (Craven &
Shavlik 1996; Molnar, "Interpretable Machine Learning", ch. 8.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shoestring.audit.explain.plots import save_figure
from shoestring.io import atomic_write_bytes

DEPTH = 4
TOP_TOKENS = 200


def token_counts(ids: np.ndarray, vocab: Sequence[int]) -> np.ndarray:
    """``[n, len(vocab)]`` counts of each token id of ``vocab`` in each row of ``ids``."""
    index = {t: j for j, t in enumerate(vocab)}
    out = np.zeros((len(ids), len(vocab)), dtype=np.float32)
    for r, row in enumerate(ids):
        for t in row.tolist():
            j = index.get(t)
            if j is not None:
                out[r, j] += 1
    return out


def frequent_tokens(ids: np.ndarray, skip: set[int], k: int = TOP_TOKENS) -> list[int]:
    values, counts = np.unique(ids, return_counts=True)
    order = [int(v) for v in values[np.argsort(-counts, kind="stable")] if int(v) not in skip]
    return order[:k]


def fit_surrogate(x_fit: np.ndarray, pred_fit: np.ndarray, x_eval: np.ndarray,
                  pred_eval: np.ndarray, names: Sequence[str], *, classification: bool,
                  class_names: Sequence[str] | None, seed: int, out_dir: Path
                  ) -> dict[str, Any]:
    """Fit, score and save the tree (``surrogate.txt`` and ``surrogate.png`` in ``out_dir``)."""
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor, export_text

    from shoestring.audit.files import SURROGATE_PNG, SURROGATE_TEXT

    tree_type = DecisionTreeClassifier if classification else DecisionTreeRegressor
    tree = tree_type(max_depth=DEPTH, random_state=seed).fit(x_fit, pred_fit)
    guess = tree.predict(x_eval)
    if classification:
        fidelity = float(np.mean(guess == pred_eval))
        measure = "agreement with the model's predicted class"
    else:
        resid = ((guess - pred_eval) ** 2).sum()
        total = ((pred_eval - pred_eval.mean(axis=0)) ** 2).sum()
        fidelity = float(1.0 - resid / total) if total > 0 else 0.0
        measure = "R² of the model's outputs"
    shown_classes = None
    if classification and class_names is not None:
        shown_classes = [str(class_names[int(c)]) for c in tree.classes_]
    text = export_text(tree, feature_names=list(names), class_names=shown_classes,
                       decimals=3)
    atomic_write_bytes(out_dir / SURROGATE_TEXT, text.encode(), durable=False)
    _draw(tree, names, shown_classes, out_dir / SURROGATE_PNG)
    return {"fidelity": round(fidelity, 4), "fidelity_measure": measure, "depth": DEPTH,
            "leaves": int(tree.get_n_leaves()), "fitted_on": len(x_fit),
            "scored_on": len(x_eval),
            "files": [SURROGATE_TEXT, SURROGATE_PNG]}


def _draw(tree, names, class_names, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    from sklearn.tree import plot_tree

    fig, ax = plt.subplots(figsize=(18, 8), dpi=80)
    try:
        plot_tree(tree, feature_names=list(names), class_names=class_names, filled=True,
                  impurity=False, rounded=True, fontsize=7, ax=ax)
        save_figure(fig, path)
    finally:
        plt.close(fig)
