"""Saying early when a run will be slow.

A progress bar shows its ETA on a terminal, but logs and CI show nothing, and a
default that takes minutes (the CNN's 10 epochs on a CPU: 5.5 minutes) should
say so before the user has waited them. :class:`SlowRunNotice` times the first
steps after a warm-up (the wall time between steps, so batches and evaluations
count) and logs one line when the steps left will take longer than
``SLOW_SECONDS``.
"""

from __future__ import annotations

import time
from typing import Callable

SKIP_STEPS = 3
MEASURE_STEPS = 10
SLOW_SECONDS = 60.0


def duration(seconds: float) -> str:
    """``330`` → ``'5 min 30 s'``; ``5400`` → ``'1 h 30 min'``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


class SlowRunNotice:
    """Wraps a stepper; logs once if the measured pace makes the run slow."""

    def __init__(self, stepper, steps_left: int, *, log: Callable[[str], None],
                 hint: str = "", clock: Callable[[], float] = time.perf_counter) -> None:
        self.stepper, self.steps_left, self.log, self.hint = stepper, steps_left, log, hint
        self.clock = clock
        self.seen = 0
        self.t0 = 0.0
        self.estimate: float | None = None

    def __getattr__(self, name):
        if name == "stepper":
            raise AttributeError(name)
        return getattr(self.stepper, name)

    def __call__(self, x, y, *rest):
        self.seen += 1
        if self.seen == SKIP_STEPS + 1:
            self.t0 = self.clock()
        elif self.seen == SKIP_STEPS + 1 + MEASURE_STEPS:
            pace = (self.clock() - self.t0) / MEASURE_STEPS
            self.estimate = pace * max(self.steps_left - self.seen, 0)
            if self.estimate > SLOW_SECONDS:
                self.log(f"this run will train for about {duration(self.estimate)} more "
                         f"({self.steps_left - self.seen:,} steps at {pace * 1e3:,.0f} ms "
                         f"each, measured); --max-time SECONDS, --max-steps or fewer --epochs "
                         f"stop it sooner" + (f"; {self.hint}" if self.hint else ""))
        return self.stepper(x, y, *rest)
