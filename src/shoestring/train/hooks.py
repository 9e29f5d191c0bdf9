"""Extension points of the training loop: a few named events, each an optional function.

Where each hook runs, for every optimizer step (the whole loop is in
:mod:`shoestring.train.engine`)::

    build module; apply hooks.transforms (recorded on the card, so load_run rebuilds them)
    parts = hooks.setup(parts)                  # once: wrap/replace model, optimizer, source
    loop:
        x, y = parts.source.batch(position)
        x, y = hooks.batch(x, y, step)          # augmentation, mixup, noise…
        for each micro-batch:
            loss = hooks.loss(model, x, y, default_loss)   # distillation, regularizers…
            loss.backward()
        hooks.after_backward(model, step)       # gradients complete (unscaled), not yet clipped
        clip; optimizer.step(); zero_grad
        hooks.after_step(model, step)           # e.g. re-apply pruning masks
        every eval: metrics → hooks.on_eval(record)
        every checkpoint: hooks.on_checkpoint(state) → checkpoint written (state.extra saved)

Each hook is a plain function; :meth:`TrainHooks.then` combines two sets
(both run, in order; a later ``loss`` receives the earlier one as its
default). Hooks must be pure functions of their inputs and the step (or keep
what they need in ``state.extra``), so a resumed run stays bit-identical.

Recipes the events are enough for:

- distillation: ``loss`` calls a frozen teacher and mixes its soft targets in;
- pruning: ``after_step`` multiplies each weight by its mask;
- DP-SGD (Opacus): ``setup`` hands ``parts.forward_model``, ``parts.optimizer``
  to ``PrivacyEngine.make_private`` and installs a Poisson-sampling
  ``parts.source``; the wrapped optimizer clips per-sample gradients and adds
  noise in its ``step``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from shoestring.models.card import TransformRecord
    from shoestring.train.batches import BatchSource
    from shoestring.train.checkpoint import TrainingState

LossOf = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainingParts:
    """What the loop drives; :attr:`TrainHooks.setup` may replace any of them.

    ``model`` is the plain module whose weights are saved and evaluated;
    ``forward_model`` is what each step runs (the model itself, or its DDP,
    ``torch.compile`` or Opacus wrapper).
    """

    model: nn.Module
    forward_model: nn.Module
    optimizer: torch.optim.Optimizer
    source: BatchSource
    loss_of: LossOf


@dataclass(frozen=True)
class TrainHooks:
    """Optional functions run at the loop's named events (see the module docstring)."""

    transforms: Sequence[TransformRecord] = ()
    setup: Callable[[TrainingParts], TrainingParts] | None = None
    batch: Callable[[torch.Tensor, torch.Tensor, int],
                    tuple[torch.Tensor, torch.Tensor]] | None = None
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor, LossOf], torch.Tensor] | None = None
    after_backward: Callable[[nn.Module, int], None] | None = None
    after_step: Callable[[nn.Module, int], None] | None = None
    on_eval: Callable[[dict[str, Any]], None] | None = None
    on_checkpoint: Callable[[TrainingState], None] | None = None
    notes: tuple[str, ...] = field(default=())

    def then(self, other: TrainHooks) -> TrainHooks:
        """Both sets of hooks: this one's first, then ``other``'s."""
        def seq(a, b):
            if a is None or b is None:
                return a or b
            return lambda *args: (a(*args), b(*args))[1]

        def setup(parts):
            return other.setup(self.setup(parts))

        def batch(x, y, step):
            return other.batch(*self.batch(x, y, step), step)

        def loss(model, x, y, default):
            return other.loss(model, x, y, lambda m, a, b: self.loss(m, a, b, default))

        both = self.setup and other.setup, self.batch and other.batch, self.loss and other.loss
        return replace(
            self, transforms=tuple(self.transforms) + tuple(other.transforms),
            setup=setup if both[0] else self.setup or other.setup,
            batch=batch if both[1] else self.batch or other.batch,
            loss=loss if both[2] else self.loss or other.loss,
            after_backward=seq(self.after_backward, other.after_backward),
            after_step=seq(self.after_step, other.after_step),
            on_eval=seq(self.on_eval, other.on_eval),
            on_checkpoint=seq(self.on_checkpoint, other.on_checkpoint),
            notes=self.notes + other.notes)

    def loss_of(self, default: LossOf) -> LossOf:
        """The loss each micro-batch uses: the hook's, given the family's ``default``."""
        if self.loss is None:
            return default
        hook = self.loss
        return lambda model, x, y: hook(model, x, y, default)


NO_HOOKS = TrainHooks()


def augmentation(transform: Callable[[torch.Tensor, int], torch.Tensor]) -> TrainHooks:
    """A ``batch`` hook from an input transform ``fn(x, step)`` (data augmentation)."""
    return TrainHooks(batch=lambda x, y, step: (transform(x, step), y))
