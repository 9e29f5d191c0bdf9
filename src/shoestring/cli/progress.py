"""A Rich progress bar for the training engine (a :class:`Reporter`).

On a terminal it draws a live bar with loss, samples/s, dollars and ETA; in
logs and CI (no terminal) Rich prints only the messages, so output stays
readable.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


class RichReporter:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task = None
        self.warnings: list[str] = []

    def start(self, total_steps: int, completed: int, description: str) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}"),
            TextColumn("${task.fields[cost]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), TextColumn("{task.fields[micro]}"), console=self.console,
            transient=False)
        self.progress.start()
        self.task = self.progress.add_task(description, total=total_steps, completed=completed,
                                           loss="-", speed="-", cost="0.00", micro="")

    def update(self, step: int, *, loss: float, samples_per_second: float, cost_usd: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=f"{loss:.4f}",
                                 speed=f"{samples_per_second:,.0f} samples/s",
                                 cost=f"{cost_usd:.4f}")

    def micro_batch(self, step: int, done: int, total: int) -> None:
        # A large model's optimizer step can take minutes on a CPU: move the
        # bar by fractions of a step so that the run visibly progresses.
        if self.progress is not None:
            self.progress.update(self.task, completed=step + done / total,
                                 micro="" if done == total else f"micro-batch {done}/{total}")

    def log(self, message: str) -> None:
        (self.progress.console if self.progress else self.console).print(message, highlight=False)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        (self.progress.console if self.progress else self.console).print(
            f"[yellow]Warning:[/] {message}", highlight=False)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
