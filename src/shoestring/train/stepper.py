"""One optimizer step: micro-batches, gradient accumulation, mixed precision, clipping.

With one micro-batch, no loss scaling and no clipping it is the plain
four-line step (forward under the precision's context, backward, step,
zero_grad), so small models pay nothing for the options. Otherwise the batch is cut into micro-batches whose
losses are weighted by their share of the batch, so the accumulated gradient
equals the full-batch gradient and the effective batch size is unchanged.
Hook points (:mod:`shoestring.train.hooks`): ``after_backward`` once the
gradient is complete (unscaled, not yet clipped), ``after_step`` after the
optimizer step.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch
from torch import nn

from shoestring.train.hooks import NO_HOOKS, LossOf, TrainHooks
from shoestring.train.precision import Precision


def loss_function(family: str, criterion) -> LossOf:
    """How a model family turns ``(x, y)`` into a scalar loss."""
    if family in ("gpt", "encoder"):
        return lambda model, x, y: model(x, y)[1]
    return lambda model, x, y: criterion(model(x), y)


class Stepper:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_of: LossOf,
                 precision: Precision, micro_batch: int | None, grad_clip: float | None,
                 sync_model: nn.Module | None = None, hooks: TrainHooks = NO_HOOKS,
                 on_micro_batch: Callable[[int, int], None] | None = None) -> None:
        self.model = model              # what forward runs (maybe DDP/compiled/wrapped)
        self.optimizer = optimizer
        self.loss_of = hooks.loss_of(loss_of)
        self.precision = precision
        self.micro_batch = micro_batch
        self.grad_clip = grad_clip
        self.scaler = precision.scaler()
        self.sync_model = sync_model    # a DDP module whose no_sync() skips all-reduces
        self.after_backward, self.after_step = hooks.after_backward, hooks.after_step
        self.plain = self.scaler is None and grad_clip is None
        self.on_micro_batch = on_micro_batch  # (done, total) after each accumulated micro-batch

    def __call__(self, x: torch.Tensor, y: torch.Tensor, step: int = 0) -> torch.Tensor:
        n = len(x)
        micro = self.micro_batch or n
        if self.plain and micro >= n:
            with self.precision.autocast():
                loss = self.loss_of(self.model, x, y)
            loss.backward()
            if self.after_backward is not None:
                self.after_backward(self.model, step)
            self.optimizer.step()
            # Free the gradients now rather than before the next backward, so
            # they are not alive during the next forward (4 bytes/parameter).
            self.optimizer.zero_grad(set_to_none=True)
            if self.after_step is not None:
                self.after_step(self.model, step)
            return loss.detach()
        return self._accumulating_step(x, y, n, micro, step)

    def _accumulating_step(self, x, y, n: int, micro: int, step: int) -> torch.Tensor:
        starts = range(0, n, micro)
        total = torch.zeros(())
        for j, start in enumerate(starts):
            last = j == len(starts) - 1
            xc, yc = x[start:start + micro], y[start:start + micro]
            # Skip the gradient all-reduce on all but the last micro-batch.
            sync = self.sync_model.no_sync() if self.sync_model is not None and not last \
                else nullcontext()
            with sync:
                with self.precision.autocast():
                    loss = self.loss_of(self.model, xc, yc) * (len(xc) / n)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            total = total + loss.detach().float().cpu()
            if self.on_micro_batch is not None:
                self.on_micro_batch(j + 1, len(starts))
        if self.scaler is not None and (self.grad_clip is not None or
                                        self.after_backward is not None):
            self.scaler.unscale_(self.optimizer)
        if self.after_backward is not None:
            self.after_backward(self.model, step)
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.after_step is not None:
            self.after_step(self.model, step)
        return total
