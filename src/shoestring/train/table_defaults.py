"""Defaults for tables: a small table needs more, smaller, regularized steps.

The general defaults (batch 128, 10 epochs, no weight decay) suit image sets
of tens of thousands of examples. On a table of 150 rows they make ten
full-batch steps and a model worse than predicting the majority class
(issue 16: wine 0.44, iris 0.33). For a table (one vector of numeric
features per example), each of these fields that the user did not set is
chosen from the number of training rows ``n``:

1. Batch ``n / ROWS_PER_BATCH`` rounded down to a power of two, within
   ``[MIN_BATCH, the general default]``: about ten steps per epoch, so small
   tables get stochastic steps (whose noise regularizes; Keskar et al. 2017,
   "On Large-Batch Training ... Sharp Minima") rather than a handful of
   full-batch ones.
2. Epochs raised (never lowered) until the run makes ``MIN_STEPS`` optimizer
   steps: Adam at lr 1e-3 needs a few hundred steps to fit even a linear
   boundary from a random initialisation.
3. L2 weight decay ``WEIGHT_DECAY``: a 128-64 MLP has far more parameters
   than a small table has rows; without a penalty it overfits noisy targets
   (diabetes: R² 0.37 against Ridge's 0.52 after 300 steps).
4. A cosine learning-rate decay to zero over runs of at least ``MIN_STEPS``
   steps (a shorter run, cut by the user, keeps a constant rate), so the last steps
   average out the noise of small batches instead of ending on a noisy
   iterate (Loshchilov & Hutter 2017, "SGDR"; Li et al. 2020, "Budgeted
   Training").

The constants were chosen on scikit-learn's bundled tables (iris, wine,
breast cancer, digits, diabetes; hold-out seeds 0-4) against
``LogisticRegression``/``Ridge`` on the same splits; within that search most
choices were within one test example of each other. ``bench/train_tables.py``
compares on other hold-out seeds. Every value chosen is printed as a note, and any
field set in the config or on the command line wins.
"""

from __future__ import annotations

import math

from shoestring.train.config import TrainConfig

ROWS_PER_BATCH = 10
MIN_BATCH = 16
MIN_STEPS = 300
WEIGHT_DECAY = 0.01
SCHEDULE = "cosine"
TABLE_DEFAULT_FIELDS = ("batch_size", "epochs", "weight_decay", "schedule")


def table_defaults(config: TrainConfig, n_train: int) -> tuple[TrainConfig, list[str]]:
    """The config with table defaults for the fields the user left unset, and a note."""
    t = config.train
    given = t.model_fields_set
    update: dict[str, object] = {}
    batch = t.batch_size
    if "batch_size" not in given:
        fit = 2 ** int(math.log2(max(n_train // ROWS_PER_BATCH, 1)))
        batch = max(min(fit, t.batch_size), min(MIN_BATCH, t.batch_size))
        update["batch_size"] = batch
    if "epochs" not in given and "max_steps" not in given:
        per_epoch = max(math.ceil(n_train / batch), 1)
        update["epochs"] = max(t.epochs, math.ceil(MIN_STEPS / per_epoch))
    if "weight_decay" not in given:
        update["weight_decay"] = WEIGHT_DECAY
    per_epoch = max(math.ceil(n_train / batch), 1)
    steps = t.max_steps or per_epoch * int(update.get("epochs", t.epochs))
    if "schedule" not in given and steps >= MIN_STEPS:
        # A decay needs a run to decay over: a run cut to a few steps keeps the
        # constant rate (a cosine over 12 steps would halve what it learns).
        update["schedule"] = SCHEDULE
    changed = {k: v for k, v in update.items() if getattr(t, k) != v}
    if not changed:
        return config, []
    note = f"table defaults for {n_train:,} training rows: " + ", ".join(
        f"{k.replace('_', ' ')} {getattr(t, k)}→{v}" for k, v in changed.items()) + \
        " (set them to override)"
    return config.model_copy(update={"train": t.model_copy(update=changed)}), [note]
