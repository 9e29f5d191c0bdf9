"""How the engine tells the outside world about progress.

The engine calls a :class:`Reporter`; the CLI passes one that draws a Rich
progress bar, a notebook may pass its own, and the default says nothing.
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def start(self, total_steps: int, completed: int, description: str) -> None: ...

    def update(self, step: int, *, loss: float, samples_per_second: float,
               cost_usd: float) -> None: ...

    def micro_batch(self, step: int, done: int, total: int) -> None:
        """``done`` of ``total`` micro-batches of optimizer step ``step + 1`` are through."""

    def log(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def stop(self) -> None: ...


class SilentReporter:
    """Reports nothing but keeps warnings, so callers can inspect them."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.messages: list[str] = []
        self.micro_batches: list[tuple[int, int, int]] = []

    def start(self, total_steps: int, completed: int, description: str) -> None:
        pass

    def update(self, step: int, *, loss: float, samples_per_second: float,
               cost_usd: float) -> None:
        pass

    def micro_batch(self, step: int, done: int, total: int) -> None:
        self.micro_batches.append((step, done, total))

    def log(self, message: str) -> None:
        self.messages.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def stop(self) -> None:
        pass
