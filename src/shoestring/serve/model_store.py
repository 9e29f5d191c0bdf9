"""Models being served: run folders loaded once, with their input/output signature.

A run folder's ``model.json`` names its task, input shape, preprocessing and
classes; :class:`ServedModel` turns that into the protocol metadata and into a
``predict`` that takes raw inputs exactly as training saw them (the stored
:class:`~shoestring.types.Preprocessing` is applied here, not by clients).
Text models (a ``tokenizer.json`` in the run folder) take BYTES inputs through
a :class:`TextEncoder` hook.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from shoestring.errors import ShoestringError
from shoestring.models.artifact import load_model
from shoestring.serve.protocol import TensorSpec
from shoestring.types import Preprocessing

TOKENIZER = "tokenizer.json"
DEFAULT_VERSION = "1"


class TextEncoder(Protocol):
    """Turns a batch of texts into the model's input tensor."""

    def __call__(self, texts: list[str]) -> torch.Tensor: ...


def tokenizer_encoder(path: Path, max_length: int | None) -> TextEncoder:
    """A :class:`TextEncoder` from a Hugging Face ``tokenizers`` file: ids padded to the longest.

    Padding uses the tokenizer's pad token when it has one, else id 0; texts
    longer than ``max_length`` tokens keep their first ``max_length`` tokens.
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    pad_id = tok.token_to_id("[PAD]") or tok.token_to_id("<pad>") or 0

    def encode(texts: list[str]) -> torch.Tensor:
        ids = [e.ids[:max_length] if max_length else e.ids for e in tok.encode_batch(texts)]
        width = max(1, max(len(i) for i in ids))
        out = torch.full((len(ids), width), pad_id, dtype=torch.long)
        for row, seq in enumerate(ids):
            out[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        return out

    return encode


@dataclass(frozen=True)
class ModelSpec:
    """Which run folder to serve, under which name and version."""

    run_dir: Path
    name: str | None = None
    version: str | None = None


class ServedModel:
    """One loaded model version: signature, metadata and a thread-safe ``predict``."""

    def __init__(self, name: str, version: str, run_dir: Path, module: torch.nn.Module,
                 desc: dict[str, Any], lock: threading.Lock) -> None:
        self.name, self.version, self.run_dir = name, version, run_dir
        self.module, self.desc = module, desc
        self._lock = lock  # shared by every name/version that points at the same weights
        self.task = desc.get("task", "classification")
        self.preprocessing = Preprocessing.from_dict(desc.get("preprocessing") or {})
        self.class_names = list(desc.get("class_names") or [])
        k = int(desc.get("num_outputs", 1))
        tok = run_dir / TOKENIZER
        if tok.exists():
            shape = desc.get("input_shape") or [None]
            self.text: TextEncoder | None = tokenizer_encoder(tok, shape[0])
            self.input = TensorSpec("text", "BYTES", ())
        else:
            self.text = None
            self.input = TensorSpec("input", "FP32", tuple(int(d) for d in desc["input_shape"]))
        if self.task == "classification":
            self.outputs = (TensorSpec("probabilities", "FP32", (k,)),
                            TensorSpec("label", "BYTES", ()))
        else:
            self.outputs = (TensorSpec("prediction", "FP32", (k,)),)
        self.output_names = tuple(o.name for o in self.outputs)

    def metadata(self, versions: list[str]) -> dict[str, Any]:
        return {"name": self.name, "versions": versions, "platform": "shoestring-pytorch",
                "inputs": [self.input.metadata()], "outputs": [o.metadata() for o in self.outputs],
                "parameters": {"task": self.task, "architecture":
                               self.desc.get("architecture", {}).get("name", ""),
                               "class_names": self.class_names}}

    def example_input(self, rows: int) -> Any:
        """Zeros (or short texts) of ``rows`` rows, for warm-up."""
        if self.text is not None:
            return ["warm up"] * rows
        return np.zeros((rows, *self.input.shape), dtype=np.float32)

    def predict(self, x: Any) -> dict[str, np.ndarray]:
        """Outputs for a batch of raw inputs (float32 array or list of texts)."""
        with self._lock, torch.inference_mode():
            if self.text is not None:
                inputs = self.text(list(x))
            else:
                inputs = self.preprocessing.apply(torch.from_numpy(np.ascontiguousarray(x)))
            y = self.module(inputs)
            if isinstance(y, (tuple, list)):
                y = y[0]
            if y.dim() == 3:  # a sequence model: the last position's prediction
                y = y[:, -1, :]
            y = y.float().reshape(y.shape[0], -1)
            if self.task != "classification":
                return {"prediction": y.numpy()}
            probs = torch.softmax(y, dim=-1)
            idx = probs.argmax(dim=-1).numpy()
            names = self.class_names or [str(i) for i in range(probs.shape[1])]
            return {"probabilities": probs.numpy(),
                    "label": np.array([names[i] for i in idx], dtype=object)}


def _load(run_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    return load_model(run_dir)


class ModelStore:
    """Every served model version, with one copy in memory per run folder."""

    def __init__(self, specs: list[ModelSpec],
                 loader: Callable[[Path], tuple[torch.nn.Module, dict]] = _load) -> None:
        if not specs:
            raise ShoestringError("no model to serve", hint="pass one or more RUN_DIRs")
        loaded: dict[Path, tuple[torch.nn.Module, dict, threading.Lock]] = {}
        self._models: dict[str, dict[str, ServedModel]] = {}
        problems = []
        for spec in specs:
            path = Path(spec.run_dir).resolve()
            if path not in loaded:
                module, desc = loader(path)
                loaded[path] = (module, desc, threading.Lock())
            module, desc, lock = loaded[path]
            name = spec.name or path.name
            version = spec.version or DEFAULT_VERSION
            versions = self._models.setdefault(name, {})
            if version in versions:
                problems.append(f"model {name!r} version {version!r} is given twice")
                continue
            versions[version] = ServedModel(name, version, path, module, desc, lock)
        if problems:
            raise ShoestringError("; ".join(problems),
                                  hint="give each run folder its own --name NAME[:VERSION]")

    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[str]:
        return list(self._models.get(name, {}))

    def all(self) -> list[ServedModel]:
        return [m for versions in self._models.values() for m in versions.values()]

    def get(self, name: str, version: str | None = None) -> ServedModel | None:
        """A version of ``name``; without ``version``, the one listed last."""
        versions = self._models.get(name)
        if not versions:
            return None
        if version is None:
            return versions[list(versions)[-1]]
        return versions.get(version)
