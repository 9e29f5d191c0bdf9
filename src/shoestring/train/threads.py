"""The CPU thread count, measured rather than assumed.

PyTorch uses one intra-op thread per core. On a quiet machine that helps
large matrix products; but when another process keeps a core busy, every
parallel region waits for its descheduled thread, and a small model's step
becomes 10-40x slower than on one thread (measured on 2 cores: the seed MLP's
step goes from 2.5 ms on one thread to 26-97 ms on two). So unless ``--threads``
fixes it, :class:`AutoThreads` times real training steps with one thread and
with all of them, interleaved, keeps the faster, and measures again every
``REPROBE_S`` seconds in case the load changed. The probe steps are ordinary
training steps: nothing is wasted but the slower setting's extra time, and
that is kept small: the warm-up steps run on one thread, and a probe block
that is already ``DECISIVE`` times slower than the other setting ends after
its first step (beside a busy process, two threads cost 380 ms a step where
one costs 5 ms: three such steps were a second of a two-second run).

Results differ in the last bits between thread counts (reductions are split
differently), so a run that must be bit-reproducible passes ``--threads N``.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

WARMUP_STEPS = 2       # the first steps allocate memory and build kernels
PROBE_S = 0.05         # each probe block runs at least this long...
PROBE_MIN_STEPS = 2    # ...and at least this many steps
REPROBE_S = 30.0       # how often the choice is measured again
# More threads must win by this factor to be kept: fewer threads leave a core
# to the rest of the machine and suffer less when load arrives.
MANY_MUST_WIN_BY = 1.10
# A first comparison this lopsided decides at once: under contention the slow
# setting's blocks are what the probe costs (2 steps at 380 ms instead of 10 ms).
DECISIVE = 2.0
PROBE_ORDER = (1, 0)  # one thread first, then all cores (0 stands for "many")


class AutoThreads:
    """Wraps a stepper (``(x, y) -> loss``) and picks its thread count from timings."""

    def __init__(self, stepper, many: int, *, log: Callable[[str], None] = lambda m: None,
                 clock: Callable[[], float] = time.perf_counter,
                 set_threads: Callable[[int], None] = torch.set_num_threads) -> None:
        self.stepper, self.many, self.log, self.clock = stepper, many, log, clock
        self.set_threads = set_threads
        self.current = self.chosen = many
        self.warm = 0
        self.plan: list[int] = self._new_plan()
        self.timings: dict[int, list[float]] = {}
        self.block_s, self.block_steps = 0.0, 0
        self.next_probe = 0.0
        self.last: dict[int, float] = {}   # ms per step of the latest probe
        self.choices = 0

    def __getattr__(self, name):  # the engine reads stepper.optimizer
        if name == "stepper":
            raise AttributeError(name)
        return getattr(self.stepper, name)

    def _use(self, n: int) -> None:
        if n != self.current:
            self.set_threads(n)
            self.current = n

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *rest) -> torch.Tensor:
        if self.warm < WARMUP_STEPS:
            self._use(1)  # the safe setting: it does not wait for a descheduled thread
            self.warm += 1
            return self.stepper(x, y, *rest)
        if not self.plan and self.clock() >= self.next_probe:
            self.plan, self.timings = self._new_plan(), {}
        if not self.plan:
            return self.stepper(x, y, *rest)
        self._use(self.plan[0])
        t = self.clock()
        loss = self.stepper(x, y, *rest)
        self.block_s += self.clock() - t
        self.block_steps += 1
        if (self.block_s >= PROBE_S and self.block_steps >= PROBE_MIN_STEPS) or \
                self._hopeless(self.plan[0]):
            n = self.plan.pop(0)
            self.timings.setdefault(n, []).append(self.block_s / self.block_steps)
            self.block_s, self.block_steps = 0.0, 0
            if not self.plan or self._decisive():
                self.plan = []
                self._decide()
        return loss

    def _hopeless(self, n: int) -> bool:
        """This block is already ``DECISIVE`` times slower than the other setting."""
        other = self.timings.get(self.many if n == 1 else 1)
        return bool(other) and self.block_s / self.block_steps > DECISIVE * other[0]

    def _new_plan(self) -> list[int]:
        return [n or self.many for n in PROBE_ORDER * 2]

    def _decisive(self) -> bool:
        if 1 not in self.timings or self.many not in self.timings:
            return False
        one, many = self.timings[1][0], self.timings[self.many][0]
        return max(one, many) > DECISIVE * min(one, many)

    def _decide(self) -> None:
        one, many = min(self.timings[1]), min(self.timings[self.many])
        best = self.many if one > many * MANY_MUST_WIN_BY else 1
        self.last = {1: round(one * 1e3, 3), self.many: round(many * 1e3, 3)}
        if best != self.chosen or self.choices == 0:
            self.log(f"threads: {best} (measured {one * 1e3:.2f} ms/step on 1 thread, "
                     f"{many * 1e3:.2f} ms/step on {self.many}); --threads N fixes the count")
        self._use(best)
        self.chosen = best
        self.choices += 1
        self.next_probe = self.clock() + REPROBE_S

    def restore(self) -> None:
        """Give the process back the thread count it had (a notebook trains again)."""
        self._use(self.many)

    def report(self) -> dict:
        """For the summary: the probe's timings (ms per step by thread count)."""
        return {"threads_auto": True, "threads_probe_ms": {str(k): v for k, v in self.last.items()}}
