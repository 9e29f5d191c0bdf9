"""The run being compressed, and its data, loaded once through the run-folder contract.

The parent's own resolved config (``config.toml``) reloads its data exactly as
training prepared it (same split, same preprocessing), so a candidate is
scored by the very evaluation that scored its parent: test accuracy/loss/MSE
on the held-out split, or validation loss on the same validation windows.
Calibration and the sensitivity pass read the *training* split, so choosing
what to keep in float32 does not peek at the held-out examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shoestring.compress.config import METRICS
from shoestring.errors import ShoestringError
from shoestring.models.run_folder import LoadedRun, RunFolder, load_run, read_card
from shoestring.types import Task

# Examples (or token windows) of the training split scored by the sensitivity pass:
# enough that one layer's effect is above the noise of a 0.5-point budget
# (binomial s.e. of an accuracy near 0.85 over 4096 examples: 0.56 points, and the
# comparison is paired, which cancels most of it).
SENSITIVITY_EXAMPLES = 4096
SENSITIVITY_WINDOWS = 64


def headline_metric(task: Task) -> str:
    return {Task.classification: "test_accuracy", Task.regression: "test_mse",
            Task.language_modeling: "val_loss"}[task]


def metrics_of(task: Task) -> tuple[str, ...]:
    return {Task.classification: ("test_accuracy", "test_loss"),
            Task.regression: ("test_mse", "test_loss"),
            Task.language_modeling: ("val_loss",)}[task]


def metric_problems(run: Path, metric: str | None) -> list[str]:
    """Problems with compressing ``run`` under ``metric`` (no weights or data loaded)."""
    try:
        card = read_card(run)
    except ShoestringError as exc:
        return [f"{exc.message} ({exc.hint})" if exc.hint else exc.message]
    problems = []
    if not RunFolder(run).config.exists():
        problems.append(f"run '{run}' has no config.toml, so its data cannot be reloaded")
    if metric is not None and metric in METRICS and metric not in metrics_of(card.task):
        problems.append(f"run '{run}' ({card.task.value}) has no metric {metric!r}; it has "
                        f"{', '.join(metrics_of(card.task))}")
    return problems


@dataclass
class Workload:
    """The parent run, its problem (data + evaluation) and a few fixed training batches."""

    parent: LoadedRun
    run_id: str | None
    train_config: Any          # the parent's resolved TrainConfig
    problem: Any               # shoestring.train.problem.Problem
    metric: str
    workspace: Path
    _fixed: list = field(default_factory=list)

    @property
    def card(self):
        return self.parent.card

    @property
    def family(self) -> str:
        return self.card.family

    @property
    def tokens(self) -> bool:
        return self.card.takes_tokens

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric][0]

    def evaluate(self, module: nn.Module) -> float:
        """The metric on the held-out split, as training's own evaluation computes it.

        Since training selects on a validation split and scores its test split once
        (issue 16.2), the guard compares on that same test split (``test_*``), the
        number the parent run reports; language models have only ``val_loss``.
        """
        batch = self.train_config.train.batch_size
        make = self.problem.make_test_evaluate or self.problem.make_evaluate
        scores = make(module, batch)()
        if self.metric not in scores:
            raise ShoestringError(
                f"the parent run's evaluation gives {sorted(scores)}, not {self.metric!r}",
                hint="pass --metric with one of those names")
        return float(scores[self.metric])

    def training_batches(self, examples: int, batch: int) -> list[tuple[torch.Tensor, ...]]:
        """A fixed sample of the training split (the same one every call)."""
        source = self.problem.make_source(batch, self.train_config.train.seed + 1, 0, 1)
        out, seen, i = [], 0, 0
        steps = getattr(source, "steps_per_epoch", None) or 1
        while seen < examples and i < max(steps, 1) * 4:
            x, y = source.batch(0, i % steps, i)
            out.append((x.cpu(), y.cpu()))
            seen += len(x)
            i += 1
        return out

    def calibration_inputs(self, examples: int) -> list[torch.Tensor]:
        return [x for x, _ in self.training_batches(examples, min(64, examples))]

    def example_inputs(self, batch: int) -> torch.Tensor:
        """Model inputs of ``batch`` rows for timing (token windows of a full block)."""
        x, _ = self.training_batches(batch, batch)[0]
        return x[:batch]

    @torch.inference_mode()
    def train_subset_score(self, module: nn.Module) -> float:
        """The metric's training-split counterpart, on a fixed sample (sensitivity pass)."""
        if not self._fixed:
            if self.tokens and self.family == "gpt":
                self._fixed = self.training_batches(SENSITIVITY_WINDOWS, 16)
            else:
                self._fixed = self.training_batches(SENSITIVITY_EXAMPLES, 1024)
        total, correct, n = 0.0, 0, 0
        for x, y in self._fixed:
            if self.family == "gpt":
                total += float(module(x, y)[1]) * len(x)
                n += len(x)
                continue
            out = module(x)
            out = out[0] if isinstance(out, tuple) else out
            if self.card.task is Task.classification:
                correct += int((out.argmax(dim=1) == y).sum())
                total += float(torch.nn.functional.cross_entropy(out, y, reduction="sum"))
            else:
                total += float(torch.nn.functional.mse_loss(
                    out, y.float().reshape(out.shape), reduction="sum")) / max(out[0].numel(), 1)
            n += len(x)
        if self.metric == "test_accuracy":
            return correct / max(n, 1)
        return total / max(n, 1)


def load_workload(run: Path, metric: str | None, workspace: Path) -> Workload:
    """The parent run (weights, card, id) and its data, on the CPU."""
    from shoestring.train.config import read_toml, resolve_config
    from shoestring.train.problem import load_problem

    parent = load_run(run)
    folder = RunFolder(run)
    config = resolve_config(read_toml(folder.config))
    options = config.data.source_options(config.train.seed)
    problem, config, _ = load_problem(config, options, torch.device("cpu"), workspace)
    return Workload(parent=parent, run_id=folder.run_id(), train_config=config,
                    problem=problem, metric=metric or headline_metric(parent.card.task),
                    workspace=workspace)
