"""Whether to ``torch.compile`` a run, decided from its own measured steps.

Compiling costs minutes before the first compiled step (Inductor generates and
builds C++ kernels on a CPU: 193 s for the 4-layer, 128-wide GPT on the loaded
2-core development machine) and then saves a fraction of every step. It pays
only when the run is long enough: with a saving ``s`` (compiled steps take
``1 - s`` of the time) and a compile time ``C``, when more than ``C / s`` of
eager training remains. Unless ``--compile``/``--no-compile`` decides,
:class:`AutoCompile` times eager steps after a warm-up, estimates the time
left (steps left times the measured step, capped by ``--max-time``), compiles
when that exceeds the break-even, and reports its reasoning in the summary.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

SKIP_STEPS = 12       # warm-up and the thread probe (threads.AutoThreads) come first
MEASURE_STEPS = 8
# Conservative planning figures: a compile of a few minutes, and a 20% saving
# per step (TorchInductor's CPU speed-ups on training graphs are of this order;
# the saving is larger on GPUs, where the rule is then only cautious).
COMPILE_SECONDS = 180.0
STEP_SAVING = 0.2


def break_even_seconds(compile_seconds: float = COMPILE_SECONDS,
                       saving: float = STEP_SAVING) -> float:
    """Eager seconds that must remain for compiling to pay: ``C / s``."""
    return compile_seconds / saving


class AutoCompile:
    """Wraps a :class:`~shoestring.train.stepper.Stepper`; may compile its model once."""

    def __init__(self, stepper, steps_left: int, *, time_left: float | None = None,
                 log: Callable[[str], None] = lambda m: None,
                 clock: Callable[[], float] = time.perf_counter,
                 compile_fn: Callable = torch.compile) -> None:
        self.stepper, self.steps_left, self.time_left = stepper, steps_left, time_left
        self.log, self.clock, self.compile_fn = log, clock, compile_fn
        self.seen = 0
        self.times: list[float] = []
        self.used = False
        self.reason = "run too short to measure"

    def __getattr__(self, name):
        if name == "stepper":
            raise AttributeError(name)
        return getattr(self.stepper, name)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *rest) -> torch.Tensor:
        self.seen += 1
        measuring = SKIP_STEPS < self.seen <= SKIP_STEPS + MEASURE_STEPS
        t = self.clock()
        loss = self.stepper(x, y, *rest)
        if measuring:
            self.times.append(self.clock() - t)
            if len(self.times) == MEASURE_STEPS:
                self._decide()
        return loss

    def _decide(self) -> None:
        step = statistics.median(self.times)
        left = (self.steps_left - self.seen) * step
        if self.time_left is not None:
            left = min(left, self.time_left)
        need = break_even_seconds()
        self.used = left > need
        self.reason = (f"about {left:,.0f} s of eager training left ({step * 1e3:.1f} ms/step); "
                       f"compiling pays after about {need:,.0f} s")
        if self.used:
            self.log(f"compiling the model ({self.reason}); the next step waits for it")
            self.stepper.model = self.compile_fn(self.stepper.model)

    def report(self) -> dict:
        return {"compile": {"used": self.used, "auto": True, "reason": self.reason}}
