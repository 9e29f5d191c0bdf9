"""The run folder: every file a run leaves, and the only way to save and load its model.

::

    RUN/
      model.json           the model card (shoestring.models.card)
      model.safetensors    the weights, in the layout the card's transforms give the module
      tokenizer.json       text runs: the tokenizer the card names
      config.toml          the resolved configuration that made the run
      run.json             the ledger id, so a resumed run updates the same row
      metrics.jsonl        one JSON line per evaluation
      summary.json         the headline numbers
      launch.toml          multi-process runs: what torchrun's workers read
      vendor.pub           licensed runs: the vendor key licenses must be signed by
      checkpoints/         ckpt-*.safetensors + manifest.json (shoestring.train.checkpoint)
      encryption.json      encrypted runs (--encrypt): the one plaintext file; every other
                           file is AES-256-GCM through shoestring.io (docs/encryption.md)

Every file name lives here and nowhere else. :func:`save_run` and
:func:`load_run` are the only way a model goes into or comes out of a run
folder: ``load_run`` rebuilds the module from the card, applies the card's
transforms (:mod:`shoestring.models.transforms`), then loads the weights
strictly, so a quantized, pruned or adapter-bearing state dict loads into
the module it was saved from.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoestring.errors import ShoestringError
from shoestring.io import append_bytes, atomic_write_bytes, is_encrypted_path, read_bytes, read_text
from shoestring.models.card import ModelCard, card_from_json

if TYPE_CHECKING:  # torch loads with the first model, so that light commands start fast
    from torch import nn

CARD = "model.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
CONFIG = "config.toml"
RUN_INFO = "run.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
LAUNCH = "launch.toml"
VENDOR_KEY = "vendor.pub"
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder, and the small JSON files a run keeps there."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def card(self) -> Path:
        return self.path / CARD

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def tokenizer(self) -> Path:
        return self.path / TOKENIZER

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def run_info(self) -> Path:
        return self.path / RUN_INFO

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def launch(self) -> Path:
        return self.path / LAUNCH

    @property
    def vendor_key(self) -> Path:
        return self.path / VENDOR_KEY

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def has_model(self) -> bool:
        return self.card.exists()

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode())

    def read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(read_text(path))
        except (OSError, ValueError):
            return None

    def run_id(self) -> str | None:
        return (self.read_json(self.run_info) or {}).get("id")

    def append_metrics(self, record: dict[str, Any]) -> None:
        append_bytes(self.metrics, (json.dumps(record) + "\n").encode())

    def truncate_metrics(self, after_step: int) -> None:
        """Drop evaluation lines past ``after_step`` (work a resume will redo)."""
        if not self.metrics.exists():
            return
        kept = []
        for line in read_text(self.metrics).splitlines():
            try:
                if json.loads(line).get("step", 0) <= after_step:
                    kept.append(line)
            except ValueError:
                continue  # a line cut short by kill -9
        atomic_write_bytes(self.metrics, "".join(k + "\n" for k in kept).encode())


def default_run_name(model: str, data: str, now: datetime) -> str:
    """``seed-mlp-fashion-mnist-20261128-223800``: readable and sortable."""
    data_part = re.sub(r"[^A-Za-z0-9]+", "-", Path(data.split(":", 1)[-1]).stem or data)
    return f"{model}-{data_part.strip('-')}-{now:%Y%m%d-%H%M%S}"


# --- the model in and out -------------------------------------------------------------------

def _not_a_run(directory: Path) -> ShoestringError:
    return ShoestringError(f"'{directory}' is not a Shoestring run folder (no {CARD})",
                           hint="pass the --out folder of a finished 'shoestring train', or "
                           "a Hugging Face checkpoint folder (config.json + model.safetensors)")


def read_card(directory: Path) -> ModelCard:
    """The card of the run folder ``directory`` (either format), or of a Hugging Face
    checkpoint folder (:mod:`shoestring.models.hf.run`)."""
    from shoestring.models.hf import is_hf_checkpoint

    folder = RunFolder(directory)
    if is_hf_checkpoint(folder.path):
        from shoestring.models.hf.run import read_hf_card

        return read_hf_card(folder.path)
    if not folder.card.exists():
        raise _not_a_run(folder.path)
    try:
        raw = json.loads(read_text(folder.card))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShoestringError(f"'{folder.card}' is not valid JSON: {exc}",
                              hint="the file is damaged; retrain or restore it") from exc
    return card_from_json(raw, str(folder.card))


def save_run(directory: Path, model: nn.Module, card: ModelCard, *, tokenizer=None) -> RunFolder:
    """Write the weights, the card (and the tokenizer the card names) into ``directory``.

    Each file is written to a temp file, synced and renamed, so a crash leaves
    the old file or the new one, never half of either.
    """
    from safetensors.torch import save as st_save

    from shoestring.version import __version__

    folder = RunFolder(directory)
    folder.create()
    if (tokenizer is None) != (card.tokenizer is None):
        raise ValueError("pass a tokenizer exactly when the card names one")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder.weights, st_save(state, metadata={"format": card.format}))
    if tokenizer is not None:
        atomic_write_bytes(folder.tokenizer, tokenizer.to_json().encode("utf-8"))
    card = card.model_copy(update={"shoestring_version": __version__})
    atomic_write_bytes(folder.card, json.dumps(card.to_json_dict(), indent=2).encode())
    return folder


def build_module(card: ModelCard) -> nn.Module:
    """The card's module with its transforms applied, weights not loaded."""
    from shoestring.models.registry import build_model
    from shoestring.models.transforms import apply_transforms

    return apply_transforms(build_model(card.architecture.model_dump()), card.transforms)


@dataclass
class LoadedRun:
    """A run folder's model (in eval mode), its card, and its folder."""

    model: nn.Module
    card: ModelCard
    folder: RunFolder

    def tokenizer(self):
        """The run's tokenizer (text runs only)."""
        from shoestring.models.tokenizers import load_tokenizer

        if self.card.tokenizer is None:
            raise ShoestringError(f"run '{self.folder.path}' has no tokenizer",
                                  hint="only text runs (text:, jsonl:) save one")
        return load_tokenizer(self.folder.tokenizer)


def load_run(directory: Path) -> LoadedRun:
    """Rebuild the model of a run folder in eval mode: card → module → transforms → weights.

    A Hugging Face checkpoint folder loads through :mod:`shoestring.models.hf.run`.
    """
    from safetensors.torch import load, load_file

    from shoestring.models.hf import is_hf_checkpoint

    folder = RunFolder(directory)
    if is_hf_checkpoint(folder.path):
        from shoestring.models.hf.run import load_hf_run

        return load_hf_run(folder.path)
    card = read_card(folder.path)
    if not folder.weights.exists():
        raise ShoestringError(f"run folder '{folder.path}' has no {WEIGHTS}",
                              hint="the run did not finish; resume it with --resume")
    model = build_module(card)
    try:
        # An encrypted folder's weights are decrypted into memory, never onto disk.
        state = load(read_bytes(folder.weights)) if is_encrypted_path(folder.weights) \
            else load_file(str(folder.weights))
    except ShoestringError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise ShoestringError(f"cannot read weights '{folder.weights}': {exc}",
                              hint="the file is damaged; retrain or restore it") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ShoestringError(f"the weights in '{folder.weights}' do not fit the module its "
                              f"card describes: {str(exc).splitlines()[0]}",
                              hint="the card or the weights were changed by hand, or a "
                              "transform is missing from the card") from None
    model.eval()
    return LoadedRun(model, card, folder)


def load_model(directory: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Deprecated: use :func:`load_run` (``.model`` and the typed ``.card``)."""
    warnings.warn("shoestring.load_model is deprecated; use shoestring.load_run(dir), which "
                  "returns the model and its typed card", DeprecationWarning, stacklevel=2)
    run = load_run(directory)
    return run.model, run.card.to_json_dict()
