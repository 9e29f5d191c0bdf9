"""Hugging Face–format checkpoints: import a local folder, export a model back to one.

A Hugging Face checkpoint folder holds ``config.json`` (the architecture),
``model.safetensors`` (or shards listed in ``model.safetensors.index.json``)
and usually ``tokenizer.json``. :mod:`.families` maps the GPT-2, Llama,
Mistral and BERT families onto Shoestring's modules (config fields and tensor
names, both ways); :mod:`.folder` reads and writes the files; :mod:`.run`
presents a checkpoint as a run folder (a model card and a loaded model), so
``generate``, ``eval``, ``serve`` and ``train --init-from`` take one as they
take a run. No network and no ``transformers`` are needed: the mapping is
plain tensors and JSON (``transformers`` is only the test oracle).

This module stays free of torch, so telling a checkpoint from a run is cheap.

>>> is_hf_checkpoint(Path("/nonexistent"))
False
"""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.json"
RUN_CARD = "model.json"  # a Shoestring run folder, which is not a Hugging Face checkpoint


def is_hf_checkpoint(path: Path) -> bool:
    """A folder with ``config.json`` and no Shoestring card (which wins when both exist)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG).is_file() and not (path / RUN_CARD).exists()
