"""The training loop, whatever the model, the data source or the number of processes.

Hook points, in order, for each optimizer step::

    set lr from the schedule (pure function of the step)
    batch = source.batch(position)                    <- pure function of (seed, position)
    loss = stepper(batch)                             <- forward/backward/step, micro-batched
    every eval_every steps / at epoch end: evaluate, log, check the target
    every checkpoint_every steps / at epoch end / on a signal / at a budget: checkpoint
    stop on the target, a budget, max_steps or a signal (all ranks agree)

Data order is a pure function of the seed and the position, so a resumed run
only needs the epoch and the step inside it to continue exactly where it
stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from shoestring.train.batches import BatchSource
from shoestring.train.checkpoint import TrainingState
from shoestring.train.distributed import DistInfo, any_rank
from shoestring.train.reporter import Reporter
from shoestring.train.schedule import lr_at
from shoestring.train.stepper import Stepper
from shoestring.train.stopping import Budget, Target, cost_usd

# How often the progress bar is refreshed; more often only costs time.
REPORT_INTERVAL_S = 0.2
# Mid-epoch target checks first score a fixed subset of this many held-out
# examples and run the full evaluation only when the subset is within
# SCREEN_SIGMAS binomial standard errors of the target: a full evaluation can
# cost as much as training a twentieth of an epoch. The stop decision itself
# always comes from the full held-out split.
SCREEN_SIZE = 1000
SCREEN_SIGMAS = 3.0


def screening_margin(target_value: float, m: int, sigmas: float = SCREEN_SIGMAS) -> float:
    """How far below the target a subset accuracy may be and still trigger a full check.

    The standard error of an accuracy estimated from ``m`` examples is
    ``sqrt(p(1-p)/m)`` (binomial); ``sigmas`` of them make a wrongly skipped
    check rare (3σ: 0.13% one-sided).
    """
    p = min(max(target_value, 0.0), 1.0)
    return sigmas * math.sqrt(max(p * (1 - p), 1e-4) / max(m, 1))


@dataclass
class LoopSettings:
    epochs: int
    lr: float
    schedule: str
    warmup_steps: int
    eval_every: int
    checkpoint_every: int
    budget: Budget
    target: Target | None
    max_steps: int | None = None


@dataclass
class LoopOutcome:
    state: TrainingState
    status: str                   # finished | budget_exhausted | interrupted
    reason: str
    last_metrics: dict[str, float] = field(default_factory=dict)
    target_reached: bool = False
    examples_seen: int = 0        # global examples (all ranks) in this session
    session_seconds: float = 0.0  # wall time of this session's loop
    train_loss: float = float("nan")


def total_steps(settings: LoopSettings, per_epoch: int) -> int:
    total = settings.epochs * per_epoch
    return min(total, settings.max_steps) if settings.max_steps else total


def run_loop(
    stepper: Stepper,
    source: BatchSource,
    settings: LoopSettings,
    state: TrainingState,
    *,
    evaluate_fn: Callable[[], dict[str, float]],
    clock: Callable[[], float],
    reporter: Reporter,
    on_eval: Callable[[dict], None],
    on_checkpoint: Callable[[TrainingState], None],
    should_stop: Callable[[], bool],
    worth_full_eval: Callable[[], bool] = lambda: True,
    batch_transform: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    dist_info: DistInfo = DistInfo(),
    train_loss_of: Callable[[float], float] = lambda v: v,
) -> LoopOutcome:
    """Train until the epochs, max_steps, a budget, the target or a stop signal end it.

    ``batch_transform(x, global_step)`` (augmentation) must be a pure function
    of its inputs, so that a resumed run sees the same batches.
    """
    per_epoch = source.steps_per_epoch
    total = total_steps(settings, per_epoch)
    groups = stepper.optimizer.param_groups
    constant_lr = settings.schedule == "constant"
    if constant_lr:
        for g in groups:
            g["lr"] = settings.lr

    start_clock = clock()
    base_elapsed = state.elapsed_seconds
    examples = 0
    last_report = start_clock
    loss = torch.tensor(float("nan"))
    outcome = LoopOutcome(state=state, status="finished",
                          reason="max_steps reached" if total < settings.epochs * per_epoch
                          else "all epochs done")

    def elapsed() -> float:
        return base_elapsed + (clock() - start_clock)

    def do_eval() -> dict[str, float]:
        metrics = evaluate_fn()
        record = {"step": state.global_step, "epoch": round(state.global_step / per_epoch, 4),
                  "elapsed_seconds": round(elapsed(), 4),
                  "train_loss": train_loss_of(loss.item()), **metrics}
        on_eval(record)
        outcome.last_metrics = metrics
        return metrics

    reporter.start(total, state.global_step, "training")
    stop = state.global_step >= total
    while not stop:
        epoch, i = state.epoch, state.step_in_epoch
        if not constant_lr:
            lr = lr_at(state.global_step, peak=settings.lr, total_steps=total,
                       schedule=settings.schedule, warmup_steps=settings.warmup_steps)
            for g in groups:
                g["lr"] = lr
        x, y = source.batch(epoch, i, state.global_step)
        if batch_transform is not None:
            x = batch_transform(x, state.global_step)
        loss = stepper(x, y)
        examples += len(x) * dist_info.world
        state.global_step += 1
        state.step_in_epoch = i + 1
        if state.step_in_epoch == per_epoch:
            state.epoch, state.step_in_epoch = epoch + 1, 0
        at_epoch_end = state.step_in_epoch == 0
        at_end = state.global_step >= total

        now = clock()
        if now - last_report >= REPORT_INTERVAL_S:
            reporter.update(state.global_step, loss=loss.item(),
                            samples_per_second=examples / max(now - start_clock, 1e-9),
                            cost_usd=cost_usd(elapsed(), settings.budget.price_per_hour))
            last_report = now

        evaluated = False
        due = settings.eval_every and state.global_step % settings.eval_every == 0
        if at_epoch_end or at_end or (due and worth_full_eval()):
            metrics = do_eval()
            evaluated = True
            if settings.target is not None and settings.target.reached(metrics):
                outcome.target_reached = True
                sign = ">=" if settings.target.higher_is_better else "<="
                outcome.reason = f"target {settings.target.metric}{sign}{settings.target.value:g}"
                stop = True
        reason = settings.budget.exhausted(elapsed())
        signalled = should_stop()
        if dist_info.active:  # every rank must take the same decision, or collectives hang
            signalled, budget_hit = any_rank([signalled, reason is not None], dist_info)
            if budget_hit and reason is None:
                reason = "budget reached on another process"
        if reason and not stop:
            outcome.status, outcome.reason, stop = "budget_exhausted", reason, True
        if signalled and not stop:
            outcome.status, outcome.reason, stop = "interrupted", "stopped by signal", True
        stop = stop or at_end
        if stop or at_epoch_end or (settings.checkpoint_every and
                                    state.global_step % settings.checkpoint_every == 0):
            state.elapsed_seconds = elapsed()
            on_checkpoint(state)
        if stop and not evaluated:
            do_eval()
    state.elapsed_seconds = elapsed()
    reporter.stop()
    outcome.examples_seen = examples
    outcome.session_seconds = clock() - start_clock
    outcome.train_loss = train_loss_of(loss.item())
    return outcome
