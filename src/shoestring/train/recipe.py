"""Recipes: rules that rewrite a config before training.

``fast`` (placeholder until measured; see below).
"""

from __future__ import annotations

from shoestring.train.config import TrainConfig


def apply_recipe(config: TrainConfig, n_train: int) -> tuple[TrainConfig, list[str]]:
    if config.train.recipe is None:
        return config, []
    return config, []
