"""Saving and loading a trained model: ``model.safetensors`` + ``model.json``.

``model.json`` holds the architecture, the task, the input shape, the
preprocessing and the class names: all that is needed to rebuild the model
and feed it raw inputs, without the training code. Weights load through
safetensors only (never pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from shoestring.errors import ShoestringError
from shoestring.io import atomic_write_bytes
from shoestring.models.registry import build_model

FORMAT = "shoestring.model/1"
WEIGHTS = "model.safetensors"
DESCRIPTION = "model.json"


def save_model(directory: Path, model: nn.Module, description: dict[str, Any]) -> None:
    """Write weights and description atomically into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = directory / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp), metadata={"format": FORMAT})
    tmp.replace(directory / WEIGHTS)
    desc = {"format": FORMAT, **description}
    atomic_write_bytes(directory / DESCRIPTION, json.dumps(desc, indent=2).encode())


def read_description(directory: Path) -> dict[str, Any]:
    path = directory / DESCRIPTION
    if not path.exists():
        raise ShoestringError(f"'{directory}' is not a Shoestring run folder (no {DESCRIPTION})",
                              hint="pass the --out folder of a finished 'shoestring train'")
    try:
        desc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ShoestringError(f"'{path}' is not valid JSON: {exc}",
                              hint="the file is damaged; retrain or restore it") from exc
    if desc.get("format") != FORMAT:
        raise ShoestringError(f"'{path}' has format {desc.get('format')!r}, expected {FORMAT!r}",
                              hint="it was written by an incompatible Shoestring version")
    return desc


def load_model(directory: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a run folder in eval mode, with its description."""
    directory = Path(directory)
    desc = read_description(directory)
    weights = directory / WEIGHTS
    if not weights.exists():
        raise ShoestringError(f"run folder '{directory}' has no {WEIGHTS}",
                              hint="the run did not finish; resume it with --resume")
    model = build_model(desc["architecture"])
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types
        raise ShoestringError(f"cannot read weights '{weights}': {exc}",
                              hint="the file is damaged; retrain or restore it") from exc
    model.load_state_dict(state)
    model.eval()
    return model, desc
