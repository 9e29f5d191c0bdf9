"""Recipes: general rules that rewrite a config before training.

``fast`` reaches a held-out target in the least wall time. It is a rule over
the user's own settings (base batch size ``B``, base learning rate ``η``,
epoch budget ``E``), not constants tuned to one dataset:

1. Standardize inputs with training-split statistics: a better-conditioned
   problem tolerates larger steps (LeCun et al. 1998, "Efficient BackProp", §4.3).
2. Batch ``k·B`` with ``k = 2``, capped so an epoch keeps at least
   ``MIN_STEPS_PER_EPOCH`` steps: larger batches use the hardware better per
   example; the cap keeps enough updates on small datasets.
3. Peak learning rate ``η·√k·PEAK_FACTOR``: square-root scaling for adaptive
   optimizers (Malladi et al. 2022, "On the SDEs and Scaling Rules for
   Adaptive Gradient Algorithms"; Hoffer et al. 2017 for SGD) and a one-cycle
   peak above the constant rate, since one-cycle spends only its middle near
   the peak (Smith & Topin 2018, "Super-Convergence", use peaks of 4–10× the
   stable constant rate).
4. One-cycle over ``E / COMPRESSION`` epochs (at least one): budgeted training
   with a schedule that decays to zero over the shortened budget recovers
   most of the accuracy of the full one (Li et al. 2020, "Budgeted Training").
5. Evaluate ``EVALS_PER_EPOCH`` times per epoch, so the run stops soon after
   the target is met instead of at the next epoch boundary. Each evaluation
   is a forward pass over the validation split (a tenth of the data), about a
   third of a training step's cost per example: ~1/30 of an epoch. ``k``
   evaluations per epoch cost ``k/30`` of the training time once the screening
   subset (see ``engine.SCREEN_SIZE``) stops filtering them near the target,
   and overshoot the target by half of ``1/k`` epoch on average; ``k = 5``
   balances the two (17% and 10%), where 20 spent more time evaluating than
   the overshoot it saved.
"""

from __future__ import annotations

import math

from shoestring.train.config import TrainConfig

BATCH_MULTIPLIER = 2
MIN_STEPS_PER_EPOCH = 100
PEAK_FACTOR = 4.0
COMPRESSION = 5.0
EVALS_PER_EPOCH = 5


def fast_recipe(config: TrainConfig, n_train: int) -> tuple[TrainConfig, list[str]]:
    t = config.train
    cap = max(n_train // MIN_STEPS_PER_EPOCH, 1)
    batch = max(min(t.batch_size * BATCH_MULTIPLIER, cap), min(t.batch_size, n_train))
    k = batch / t.batch_size
    lr = t.lr * math.sqrt(k) * (PEAK_FACTOR if t.optimizer != "sgd" else 1.0)
    epochs = max(1, math.ceil(t.epochs / COMPRESSION))
    per_epoch = math.ceil(n_train / batch)
    eval_every = max(per_epoch // EVALS_PER_EPOCH, 1) if t.target else t.eval_every
    train = t.model_copy(update={"batch_size": batch, "lr": lr, "schedule": "onecycle",
                                 "epochs": epochs, "eval_every": eval_every, "recipe": None})
    data = config.data.model_copy(update={"normalize": "standardize"})
    notes = [f"recipe fast: batch {t.batch_size}→{batch}, lr {t.lr:g}→{lr:.3g} one-cycle over "
             f"{epochs} epoch(s) (budget {t.epochs}), standardized inputs, "
             f"evaluating every {eval_every} steps"]
    return config.model_copy(update={"train": train, "data": data}), notes


def apply_recipe(config: TrainConfig, n_train: int) -> tuple[TrainConfig, list[str]]:
    """The config after the chosen recipe, and notes saying what changed."""
    if config.train.recipe == "fast":
        return fast_recipe(config, n_train)
    return config, []
