"""Helpers shared by the serving unit tests (a unique name: tests/ has no packages)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from cards import card_for

from shoestring.models.card import PreprocessingCard
from shoestring.models.registry import build_model
from shoestring.models.run_folder import save_run


def write_run(directory: Path, *, in_features: int = 8, classes: int = 3, task: str =
              "classification", seed: int = 0) -> Path:
    """A real run folder (weights + model card) with a small random MLP."""
    torch.manual_seed(seed)
    arch = {"family": "mlp", "name": "mlp", "params": {
        "in_features": in_features, "hidden": [16], "out_features": classes, "dropout": 0.0,
        "activation": "relu"}}
    model = build_model(arch)
    save_run(directory, model, card_for(
        arch, task=task, preprocessing=PreprocessingCard(scale=0.5),
        class_names=[f"c{i}" for i in range(classes)] if task == "classification" else None))
    return directory


def infer_body(rows: list[list[float]], name: str = "input", datatype: str = "FP32") -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": [len(rows), len(rows[0])],
                                   "datatype": datatype,
                                   "data": [v for r in rows for v in r]}]}).encode()
