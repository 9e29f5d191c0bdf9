"""Where a run's wall time goes: startup, data, train, eval, write.

``summary.json`` records these so that a slow run says why (a minute of data
decoding is not a slow model). ``startup`` is the process's age when training
began (interpreter, imports, argument parsing), known only to the caller that
owns the process, e.g. the CLI; ``train`` is the rest of the run after data,
evaluation and writes are taken out.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")
PHASES = ("startup", "data", "train", "eval", "write")


class PhaseClock:
    """Accumulates seconds per phase, read from an injected clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.start = clock()
        self.seconds = dict.fromkeys(PHASES[1:], 0.0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t = self.clock()
        try:
            yield
        finally:
            self.seconds[name] += self.clock() - t

    def timed(self, name: str, fn: Callable[..., T]) -> Callable[..., T]:
        """``fn``, with its calls counted under ``name``."""
        def run(*args, **kwargs):
            with self.phase(name):
                return fn(*args, **kwargs)
        return run

    def breakdown(self, startup: float | None) -> dict[str, float | None]:
        """Seconds per phase; ``train`` is the time not spent in the other phases."""
        total = self.clock() - self.start
        out = {k: round(v, 3) for k, v in self.seconds.items()}
        out["train"] = round(max(total - sum(v for k, v in self.seconds.items()
                                             if k != "train"), 0.0), 3)
        return {"startup": None if startup is None else round(startup, 3), **out}


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``; None elsewhere).

    ``/proc/self/stat`` field 22 is the start time in clock ticks since boot
    and ``/proc/uptime`` the seconds since boot (proc(5)): both count from the
    same instant, to 10 ms.
    """
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return None
