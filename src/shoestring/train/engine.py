"""The training loop over in-memory tensors.

Hook points, in order, for each optimizer step::

    set lr from the schedule (pure function of the step)
    forward, loss, backward, optimizer step        <- the hot path
    every eval_every steps / at epoch end: evaluate, log, check the target
    every checkpoint_every steps / at epoch end / on a signal: checkpoint
    check budgets and the stop flag

Data order is a pure function of (seed, epoch), so a resumed run only needs
the epoch and the step inside it to continue exactly where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from shoestring.train.checkpoint import TrainingState
from shoestring.train.evaluate import evaluate, loss_fn
from shoestring.train.reporter import Reporter
from shoestring.train.schedule import lr_at
from shoestring.train.stopping import Budget, Target, cost_usd
from shoestring.types import Task, TensorDataset

# How often the progress bar is refreshed; more often only costs time.
REPORT_INTERVAL_S = 0.2
# Mid-epoch target checks first score a fixed subset of this many held-out
# examples and run the full evaluation only when the subset is within
# SCREEN_SIGMAS binomial standard errors of the target: a full evaluation can
# cost as much as training a twentieth of an epoch. The stop decision itself
# always comes from the full held-out split.
SCREEN_SIZE = 1000
SCREEN_SIGMAS = 3.0


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled example order of ``epoch``: depends on nothing else."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


@dataclass
class LoopSettings:
    epochs: int
    batch_size: int
    lr: float
    schedule: str
    warmup_steps: int
    seed: int
    eval_every: int
    checkpoint_every: int
    budget: Budget
    target: Target | None
    task: Task


@dataclass
class LoopOutcome:
    state: TrainingState
    status: str                   # finished | budget_exhausted | interrupted
    reason: str
    last_metrics: dict[str, float] = field(default_factory=dict)
    target_reached: bool = False
    samples_seen: int = 0
    train_loss: float = float("nan")


def screening_margin(target_value: float, m: int, sigmas: float = SCREEN_SIGMAS) -> float:
    """How far below the target a subset accuracy may be and still trigger a full check.

    The standard error of an accuracy estimated from ``m`` examples is
    ``sqrt(p(1-p)/m)`` (binomial); ``sigmas`` of them make a wrongly skipped
    check rare (3σ: 0.13% one-sided).
    """
    p = min(max(target_value, 0.0), 1.0)
    return sigmas * math.sqrt(max(p * (1 - p), 1e-4) / max(m, 1))


def steps_per_epoch(n: int, batch_size: int) -> int:
    # The last partial batch is kept, as Keras' fit() does.
    return math.ceil(n / batch_size)


def run_loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: TensorDataset,
    test: TensorDataset,
    settings: LoopSettings,
    state: TrainingState,
    *,
    clock: Callable[[], float],
    reporter: Reporter,
    on_eval: Callable[[dict], None],
    on_checkpoint: Callable[[TrainingState], None],
    should_stop: Callable[[], bool],
    batch_transform: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> LoopOutcome:
    """Train until the epochs, a budget, the target or a stop signal end it.

    ``batch_transform(x, global_step)`` (augmentation) must be a pure function
    of its inputs, so that a resumed run sees the same batches.
    """
    n, bs = len(train), settings.batch_size
    per_epoch = steps_per_epoch(n, bs)
    total = settings.epochs * per_epoch
    criterion = loss_fn(settings.task)
    x, y = train.x, train.y
    groups = optimizer.param_groups
    constant_lr = settings.schedule == "constant"
    if constant_lr:
        for g in groups:
            g["lr"] = settings.lr

    start_clock = clock()
    base_elapsed = state.elapsed_seconds
    samples = 0
    last_report = start_clock
    loss = torch.tensor(float("nan"))
    outcome = LoopOutcome(state=state, status="finished", reason="all epochs done")

    def elapsed() -> float:
        return base_elapsed + (clock() - start_clock)

    def do_eval(epoch_float: float) -> dict[str, float]:
        metrics = evaluate(model, test, settings.task)
        record = {"step": state.global_step, "epoch": round(epoch_float, 4),
                  "elapsed_seconds": round(elapsed(), 4), "train_loss": loss.item(), **metrics}
        on_eval(record)
        outcome.last_metrics = metrics
        return metrics

    screen = None
    if settings.target is not None and settings.target.metric.endswith("accuracy") and \
            len(test) >= 3 * SCREEN_SIZE:
        pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(settings.seed))
        pick = pick[:SCREEN_SIZE]
        screen = TensorDataset(test.x.index_select(0, pick), test.y.index_select(0, pick))
        screen_floor = settings.target.value - screening_margin(settings.target.value, SCREEN_SIZE)

    def worth_full_eval() -> bool:
        if screen is None:
            return True
        return evaluate(model, screen, settings.task)[settings.target.metric] >= screen_floor

    reporter.start(total, state.global_step, "training")
    model.train()
    stop = False
    for epoch in range(state.epoch, settings.epochs):
        perm = epoch_permutation(n, settings.seed, epoch)
        for i in range(state.step_in_epoch, per_epoch):
            if not constant_lr:
                lr = lr_at(state.global_step, peak=settings.lr, total_steps=total,
                           schedule=settings.schedule, warmup_steps=settings.warmup_steps)
                for g in groups:
                    g["lr"] = lr
            idx = perm[i * bs:(i + 1) * bs]
            xb = x.index_select(0, idx)
            if batch_transform is not None:
                xb = batch_transform(xb, state.global_step)
            out = model(xb)
            loss = criterion(out, y.index_select(0, idx))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            samples += idx.numel()
            state.global_step += 1
            state.step_in_epoch = i + 1
            if state.step_in_epoch == per_epoch:
                state.epoch, state.step_in_epoch = epoch + 1, 0
            at_epoch_end = state.step_in_epoch == 0

            now = clock()
            if now - last_report >= REPORT_INTERVAL_S:
                spent = elapsed()
                reporter.update(state.global_step, loss=loss.item(),
                                samples_per_second=samples / max(now - start_clock, 1e-9),
                                cost_usd=cost_usd(spent, settings.budget.price_per_hour))
                last_report = now

            evaluated = False
            due = settings.eval_every and state.global_step % settings.eval_every == 0
            if at_epoch_end or (due and worth_full_eval()):
                metrics = do_eval(state.global_step / per_epoch)
                evaluated = True
                if settings.target is not None and settings.target.reached(metrics):
                    outcome.target_reached = True
                    outcome.reason = f"target {settings.target.metric}>={settings.target.value:g}" \
                        if settings.target.higher_is_better else \
                        f"target {settings.target.metric}<={settings.target.value:g}"
                    stop = True
            reason = settings.budget.exhausted(elapsed())
            if reason and not stop:
                outcome.status, outcome.reason, stop = "budget_exhausted", reason, True
            if should_stop() and not stop:
                outcome.status, outcome.reason, stop = "interrupted", "stopped by signal", True
            if stop or at_epoch_end or (settings.checkpoint_every and
                                        state.global_step % settings.checkpoint_every == 0):
                state.elapsed_seconds = elapsed()
                on_checkpoint(state)
            if stop:
                if not evaluated:
                    do_eval(state.global_step / per_epoch)
                break
        if stop:
            break
    state.elapsed_seconds = elapsed()
    reporter.stop()
    outcome.samples_seen = samples
    outcome.train_loss = loss.item()
    return outcome
