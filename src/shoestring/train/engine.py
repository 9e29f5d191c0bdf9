"""The training loop, whatever the model, the data source or the number of processes.

Per optimizer step (hook points: :mod:`shoestring.train.hooks`)::

    set lr from the schedule (pure function of the step)
    x, y = source.batch(position)                     <- pure function of (seed, position)
    x, y = hooks.batch(x, y, step)
    loss = stepper(x, y)        <- hooks.loss per micro-batch, backward, hooks.after_backward,
                                   clip, step, hooks.after_step
    every eval_every steps / at epoch end: evaluate, log, hooks.on_eval, check the target
    every checkpoint_every steps / at epoch end / on a signal / at a budget:
        hooks.on_checkpoint, checkpoint
    stop on the target, a budget, max_steps or a signal (all ranks agree)

Data order is a pure function of the seed and the position, so a resumed run
only needs the epoch and the step inside it to continue exactly where it
stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from shoestring.train.batches import BatchSource
from shoestring.train.checkpoint import TrainingState
from shoestring.train.distributed import DistInfo, any_rank
from shoestring.train.hooks import NO_HOOKS, TrainHooks
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

    >>> round(screening_margin(0.9, 1000), 4)
    0.0285
    """
    p = min(max(target_value, 0.0), 1.0)
    return sigmas * math.sqrt(max(p * (1 - p), 1e-4) / max(m, 1))


@dataclass
class LoopSettings:
    """When to evaluate, checkpoint and stop, and the learning-rate schedule."""

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
class LoopIO:
    """How the loop reaches the world: evaluation, files, clock, progress, signals, peers."""

    evaluate: Callable[[], dict[str, float]]
    on_eval: Callable[[dict], None]
    on_checkpoint: Callable[[TrainingState], None]
    should_stop: Callable[[], bool]
    clock: Callable[[], float]
    reporter: Reporter
    worth_full_eval: Callable[[], bool] = lambda: True
    dist: DistInfo = field(default_factory=DistInfo)
    train_loss_of: Callable[[float], float] = lambda v: v  # the mean over ranks


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


class _Loop:
    """One session of the loop; each method is one part of a step."""

    def __init__(self, stepper: Stepper, source: BatchSource, settings: LoopSettings,
                 state: TrainingState, io: LoopIO, hooks: TrainHooks) -> None:
        self.stepper, self.source, self.settings = stepper, source, settings
        self.state, self.io, self.hooks = state, io, hooks
        self.per_epoch = source.steps_per_epoch
        self.total = total_steps(settings, self.per_epoch)
        self.start = self.last_report = io.clock()
        self.base_elapsed = state.elapsed_seconds
        self.examples = 0
        self.loss = torch.tensor(float("nan"))
        self.outcome = LoopOutcome(
            state=state, status="finished",
            reason="max_steps reached" if self.total < settings.epochs * self.per_epoch
            else "all epochs done")

    def elapsed(self) -> float:
        return self.base_elapsed + (self.io.clock() - self.start)

    def set_lr(self) -> None:
        s = self.settings
        lr = s.lr if s.schedule == "constant" else lr_at(
            self.state.global_step, peak=s.lr, total_steps=self.total, schedule=s.schedule,
            warmup_steps=s.warmup_steps)
        for g in self.stepper.optimizer.param_groups:
            g["lr"] = lr

    def step(self) -> None:
        st = self.state
        epoch, i = st.epoch, st.step_in_epoch
        self.set_lr()
        x, y = self.source.batch(epoch, i, st.global_step)
        if self.hooks.batch is not None:
            x, y = self.hooks.batch(x, y, st.global_step)
        self.loss = self.stepper(x, y, st.global_step)
        self.examples += len(x) * self.io.dist.world
        st.global_step += 1
        st.step_in_epoch = i + 1
        if st.step_in_epoch == self.per_epoch:
            st.epoch, st.step_in_epoch = epoch + 1, 0

    def report(self) -> None:
        now = self.io.clock()
        if now - self.last_report >= REPORT_INTERVAL_S:
            self.io.reporter.update(
                self.state.global_step, loss=self.loss.item(),
                samples_per_second=self.examples / max(now - self.start, 1e-9),
                cost_usd=cost_usd(self.elapsed(), self.settings.budget.price_per_hour))
            self.last_report = now

    def evaluate(self) -> dict[str, float]:
        metrics = self.io.evaluate()
        st = self.state
        record = {"step": st.global_step, "epoch": round(st.global_step / self.per_epoch, 4),
                  "elapsed_seconds": round(self.elapsed(), 4),
                  "train_loss": self.io.train_loss_of(self.loss.item()), **metrics}
        if self.hooks.on_eval is not None:  # may add to the record (DP: ε spent so far)
            self.hooks.on_eval(record)
        self.io.on_eval(record)
        self.outcome.last_metrics = metrics
        return metrics

    def evaluate_if_due(self, at_boundary: bool) -> tuple[bool, bool]:
        """(evaluated, target reached) after this step."""
        s, step = self.settings, self.state.global_step
        due = s.eval_every and step % s.eval_every == 0
        if not (at_boundary or (due and self.io.worth_full_eval())):
            return False, False
        metrics = self.evaluate()
        if s.target is None or not s.target.reached(metrics):
            return True, False
        self.outcome.target_reached = True
        sign = ">=" if s.target.higher_is_better else "<="
        self.outcome.reason = f"target {s.target.metric}{sign}{s.target.value:g}"
        return True, True

    def interruption(self) -> tuple[str, str] | None:
        """(status, reason) when a budget or a signal ends the run (all ranks agree)."""
        reason = self.settings.budget.exhausted(self.elapsed())
        signalled = self.io.should_stop()
        if self.io.dist.active:  # every rank must take the same decision, or collectives hang
            signalled, budget_hit = any_rank([signalled, reason is not None], self.io.dist)
            if budget_hit and reason is None:
                reason = "budget reached on another process"
        if reason:
            return "budget_exhausted", reason
        return ("interrupted", "stopped by signal") if signalled else None

    def checkpoint(self) -> None:
        self.state.elapsed_seconds = self.elapsed()
        if self.hooks.on_checkpoint is not None:
            self.hooks.on_checkpoint(self.state)
        self.io.on_checkpoint(self.state)

    def run(self) -> LoopOutcome:
        st, s = self.state, self.settings
        self.io.reporter.start(self.total, st.global_step, "training")
        stop = st.global_step >= self.total
        while not stop:
            self.step()
            at_end = st.global_step >= self.total
            self.report()
            evaluated, stop = self.evaluate_if_due(st.step_in_epoch == 0 or at_end)
            ended = self.interruption()
            if ended and not stop:
                self.outcome.status, self.outcome.reason = ended
                stop = True
            stop = stop or at_end
            if stop or st.step_in_epoch == 0 or (
                    s.checkpoint_every and st.global_step % s.checkpoint_every == 0):
                self.checkpoint()
            if stop and not evaluated:
                self.evaluate()
        st.elapsed_seconds = self.elapsed()
        self.io.reporter.stop()
        self.outcome.examples_seen = self.examples
        self.outcome.session_seconds = self.io.clock() - self.start
        self.outcome.train_loss = self.io.train_loss_of(self.loss.item())
        return self.outcome


def run_loop(stepper: Stepper, source: BatchSource, settings: LoopSettings,
             state: TrainingState, io: LoopIO, hooks: TrainHooks = NO_HOOKS) -> LoopOutcome:
    """Train until the epochs, max_steps, a budget, the target or a stop signal end it.

    ``state`` is updated in place (and is what checkpoints hold). ``hooks.batch``
    must be a pure function of its inputs and the step, so that a resumed run
    sees the same batches.
    """
    return _Loop(stepper, source, settings, state, io, hooks).run()
