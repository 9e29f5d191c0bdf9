"""Models being served: run folders loaded once, with their input/output signature.

A run folder's model card names its task, input shape, preprocessing and
classes; :class:`ServedModel` turns that into the protocol metadata and into a
``predict`` that takes raw inputs exactly as training saw them (the stored
:class:`~shoestring.types.Preprocessing` is applied here, not by clients).
Text models (a card that names a tokenizer) take BYTES inputs through a
:class:`TextEncoder` hook: classifiers get the token layout their card
records, language models continue each prompt greedily.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from shoestring.errors import ShoestringError
from shoestring.models.card import TextLayout
from shoestring.models.run_folder import LoadedRun, load_run
from shoestring.serve.protocol import TensorSpec

DEFAULT_VERSION = "1"
LANGUAGE_MODELING = "language_modeling"


class TextEncoder(Protocol):
    """Turns one request's texts into model inputs; raises ShoestringError on bad text."""

    def __call__(self, texts: list[str]) -> Any: ...


def classifier_text_encoder(tok, length: int, layout: TextLayout) -> TextEncoder:
    """Token ids laid out exactly as training laid them out (``[CLS] tokens [PAD]…``).

    The same encoder training used, at the card's input length and layout, so
    serving can never drift from training.
    """
    from shoestring.models.text_layout import encode_texts

    return lambda texts: encode_texts(tok, texts, length, layout)[0].numpy()


def prompt_encoder(tok) -> TextEncoder:
    """One id list per prompt (a language model continues each on its own)."""
    return lambda texts: [tok.encode(t) or [0] for t in texts]


def generate_greedy(module: torch.nn.Module, prompts: list[list[int]], max_new_tokens: int,
                    tok) -> list[str]:
    """Greedy continuations: deterministic, so a retried request gets the same text."""
    from shoestring.models.generate import generate

    out = []
    for ids in prompts:  # prompts differ in length: one sequence at a time
        idx = generate(module, torch.tensor([ids], dtype=torch.long), max_new_tokens,
                       temperature=0.0, vocab_limit=tok.vocab_size)
        out.append(tok.decode(idx[0, len(ids):].tolist()))
    return out


@dataclass(frozen=True)
class ModelSpec:
    """Which run folder to serve, under which name and version."""

    run_dir: Path
    name: str | None = None
    version: str | None = None


class ServedModel:
    """One loaded model version: signature, metadata and a thread-safe ``predict``."""

    def __init__(self, name: str, version: str, run: LoadedRun, lock: threading.Lock,
                 max_new_tokens: int = 32) -> None:
        self.name, self.version, self.run_dir = name, version, run.folder.path
        self.module, self.card = run.model, run.card
        self._lock = lock  # shared by every name/version that points at the same weights
        card = run.card
        self.task = card.task.value
        self.preprocessing = card.preprocessing.to_preprocessing()
        self.class_names = list(card.class_names or [])
        k = card.outputs.size
        self.text: TextEncoder | None = None
        self.tok = None
        self.max_new_tokens = max_new_tokens
        if card.tokenizer is not None:
            self.tok = run.tokenizer()
            self.text = prompt_encoder(self.tok) if self.task == LANGUAGE_MODELING else \
                classifier_text_encoder(self.tok, card.input_shape[0], card.tokenizer.layout)
            self.input = TensorSpec("text", "BYTES", ())
        else:
            self.input = TensorSpec("input", "FP32", card.input_shape)
        if self.task == LANGUAGE_MODELING:
            self.outputs = (TensorSpec("text", "BYTES", ()),)
        elif self.task == "classification":
            self.outputs = (TensorSpec("probabilities", "FP32", (k,)),
                            TensorSpec("label", "BYTES", ()))
        else:
            self.outputs = (TensorSpec("prediction", "FP32", (k,)),)
        self.output_names = tuple(o.name for o in self.outputs)

    def metadata(self, versions: list[str]) -> dict[str, Any]:
        return {"name": self.name, "versions": versions, "platform": "shoestring-pytorch",
                "inputs": [self.input.metadata()], "outputs": [o.metadata() for o in self.outputs],
                "parameters": {"task": self.task, "architecture":
                               self.card.architecture.name or self.card.family,
                               "class_names": self.class_names}}

    @property
    def generates(self) -> bool:
        return self.task == LANGUAGE_MODELING

    def example_input(self, rows: int) -> Any:
        """Zeros (or texts of a known token) of ``rows`` rows, for warm-up."""
        if self.tok is not None:
            return [self.tok.decode([0])] * rows
        return np.zeros((rows, *self.input.shape), dtype=np.float32)

    def prepare(self, x: Any) -> Any:
        """One request's raw input as model input (texts are tokenized here, per request,
        so a text the tokenizer refuses fails its own request, not the batch)."""
        return self.text(list(x)) if self.text is not None else x

    def predict(self, x: Any) -> dict[str, np.ndarray]:
        """Outputs for a batch of prepared inputs (see :meth:`prepare`)."""
        if self.generates:
            with self._lock:
                texts = generate_greedy(self.module, list(x), self.max_new_tokens, self.tok)
            return {"text": np.array(texts, dtype=object)}
        with self._lock, torch.inference_mode():
            if self.tok is not None:
                inputs = torch.from_numpy(np.ascontiguousarray(x))
            else:
                inputs = self.preprocessing.apply(torch.from_numpy(np.ascontiguousarray(x)))
            y = self.module(inputs)
            if isinstance(y, (tuple, list)):
                y = y[0]
            y = y.float().reshape(y.shape[0], -1)
            if self.task != "classification":
                return {"prediction": self.preprocessing.targets_from_outputs(y).numpy()}
            probs = torch.softmax(y, dim=-1)
            idx = probs.argmax(dim=-1).numpy()
            names = self.class_names or [str(i) for i in range(probs.shape[1])]
            return {"probabilities": probs.numpy(),
                    "label": np.array([names[i] for i in idx], dtype=object)}


class ModelStore:
    """Every served model version, with one copy in memory per run folder."""

    def __init__(self, specs: list[ModelSpec],
                 loader: Callable[[Path], LoadedRun] = load_run,
                 max_new_tokens: int = 32) -> None:
        if not specs:
            raise ShoestringError("no model to serve", hint="pass one or more RUN_DIRs")
        loaded: dict[Path, tuple[LoadedRun, threading.Lock]] = {}
        self._models: dict[str, dict[str, ServedModel]] = {}
        problems = []
        for spec in specs:
            path = Path(spec.run_dir).resolve()
            if path not in loaded:
                loaded[path] = (loader(path), threading.Lock())
            run, lock = loaded[path]
            name = spec.name or path.name
            version = spec.version or DEFAULT_VERSION
            versions = self._models.setdefault(name, {})
            if version in versions:
                problems.append(f"model {name!r} version {version!r} is given twice")
                continue
            versions[version] = ServedModel(name, version, run, lock, max_new_tokens)
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
