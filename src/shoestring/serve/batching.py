"""Dynamic batching with an adaptive, latency-targeting mode.

Requests for one model wait in a queue; a single loop takes everything queued
(up to ``max_batch`` rows) as soon as the model is free. An idle server thus
runs a lone request at once, and batches form only under load, from the
requests that arrived while the previous batch ran. ``max_delay`` (0 by
default) optionally lets the oldest request wait that long for more rows
(Triton's "max queue delay" rule, NVIDIA Triton Inference Server docs,
"Dynamic Batcher"), trading latency for fuller batches.

Adaptive mode fits the batch time as ``t(n) = a·n + b`` by least squares over
warm-up and recent batches (the linear batch-latency model of Clipper,
Crankshaw et al., NSDI 2017, section 4.3) and uses it twice:

* it caps the batch at the largest ``n`` with ``t(n) + max_delay <= target/2``,
  because a request can wait for the batch in progress and then run in its own;
* it predicts each arriving request's latency from the rows queued ahead of it
  and sheds the request (503 with ``Retry-After``) when the prediction exceeds
  the target, instead of letting every request's latency grow.

The prediction covers queueing and model time in this process; HTTP parsing
before the request reaches the queue is not part of it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Deferred:
    """Answers that depend on work still running elsewhere (e.g. a ledger commit): when
    ``future`` (a future of the event loop) completes, ``then(its result)`` gives one
    answer (or exception) per request; if it failed, ``otherwise(the exception)`` does."""

    future: asyncio.Future
    then: Callable[[Any], list[Any]]
    otherwise: Callable[[BaseException], list[Any]]


@dataclass(frozen=True)
class OnLoop:
    """Answers made final where the batch ran (e.g. its usage written there), turned into
    one answer (or exception) per request by ``then()`` on the event loop, as the batch's
    results arrive: no other thread and no further wake-up of the loop."""

    then: Callable[[], list[Any]]


# Turns each request's outputs into its answer on the inference thread (e.g. encode and
# meter it); gets the requests' tags and output slices, returns one result or exception
# each, an OnLoop or a Deferred.
Finish = Callable[[list[Any], list[Outputs]], "list[Any] | OnLoop | Deferred"]


@dataclass(frozen=True)
class LinearFit:
    """Batch time ``a·n + b`` in seconds."""

    a: float
    b: float

    def __call__(self, n: int) -> float:
        return self.a * n + self.b


def fit_linear(samples: Sequence[tuple[int, float]]) -> LinearFit:
    """Least-squares ``t = a·n + b`` with ``a, b >= 0`` (a flat mean if the slope is negative).

    >>> f = fit_linear([(1, 0.003), (2, 0.005), (4, 0.009)])
    >>> round(f.a, 6), round(f.b, 6)
    (0.002, 0.001)
    """
    if not samples:
        return LinearFit(0.0, 0.0)
    n = np.array([s[0] for s in samples], dtype=np.float64)
    t = np.array([s[1] for s in samples], dtype=np.float64)
    if np.ptp(n) == 0:
        return LinearFit(0.0, float(t.mean()))
    a, b = np.polyfit(n, t, 1)
    if a < 0:
        return LinearFit(0.0, float(t.mean()))
    if b < 0:  # through the origin instead: a = Σnt / Σn²
        return LinearFit(float((n * t).sum() / (n * n).sum()), 0.0)
    return LinearFit(float(a), float(b))


class Shed(Exception):
    """A request refused to protect latency: a reason for people and metrics."""

    def __init__(self, reason: str, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.reason, self.message, self.retry_after_s = reason, message, retry_after_s


@dataclass
class _Item:
    x: Any
    rows: int
    enqueued: float
    future: asyncio.Future
    tag: Any = None


def _fail(batch: list[_Item], exc: BaseException) -> None:
    for i in batch:
        if not i.future.done():
            i.future.set_exception(exc)


def _settle(batch: list[_Item], results: list[Any]) -> None:
    for i, r in zip(batch, results):
        if i.future.done():  # the client may have gone away
            continue
        if isinstance(r, BaseException):
            i.future.set_exception(r)
        else:
            i.future.set_result(r)


class Batcher:
    """Batches one model's requests; ``predict`` (then ``finish``) runs on ``executor``,
    or on the event loop itself when the batch is cheap.

    Request inputs (numpy arrays, or lists for text) are joined into one batch;
    outputs are split back by each request's rows. ``finish``, if given, turns
    those slices into each request's answer on the same thread, so work that
    follows every batch (encoding, metering) costs one thread hand-off per
    batch rather than one per request.

    A batch whose predicted time ``t(n)`` is at most ``inline_s`` runs on the
    event loop thread: for a small model the two thread hand-offs (to the
    inference thread and back) cost more than the forward pass, and each one
    waits for the scheduler on a busy machine. ``inline_max_rows`` (None: no
    limit) sends larger batches to the executor even when cheap (metering
    uses it: see ``Service._batcher``). Scheduling is by callbacks, not
    a task: a request costs no coroutine step until its answer is ready.
    """

    REFIT_EVERY = 32

    def __init__(self, predict: Callable[[Any], Outputs], executor: Executor, *,
                 max_batch: int = 32, max_delay_s: float = 0.0, adaptive: bool = False,
                 target_s: float = 0.05, max_queue_rows: int = 4096, inline_s: float = 0.0,
                 inline_max_rows: int | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 on_batch: Callable[[int, float], None] | None = None,
                 finish: Finish | None = None) -> None:
        self.predict, self.executor, self.finish = predict, executor, finish
        self.max_batch, self.max_delay = max_batch, max_delay_s
        self.adaptive, self.target = adaptive, target_s
        self.max_queue_rows, self.inline_s = max_queue_rows, inline_s
        self.inline_max_rows = inline_max_rows
        self.clock, self.on_batch = clock, on_batch
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False          # a dispatch is due on the loop
        self._timer: asyncio.TimerHandle | None = None
        self._pending = 0                # batches whose answers wait on other work
        self._running_since: float | None = None
        self._running_rows = 0
        self._warm: list[tuple[int, float]] = []
        self._recent: deque[tuple[int, float]] = deque(maxlen=256)
        self._since_fit = 0
        self.fit = LinearFit(0.0, 0.0)
        # The warm-up's own fit (best of repeats, before serving) decides what runs inline:
        # batch times measured while serving include waits for the CPU on a busy machine,
        # which say nothing about what the model costs.
        self.warm_fit = LinearFit(0.0, 0.0)
        self.batch_limit = max_batch
        self.inline_batches = 0

    # -- lifecycle --------------------------------------------------------------------------

    def warm_up(self, example: Callable[[int], Any], repeats: int = 3,
                sizes: Sequence[int] | None = None) -> None:
        """Run every batch size 1..max_batch (synchronously, before serving) and fit t(n).

        ``sizes`` narrows the sizes for models whose batches cost seconds (generation).
        """
        for n in sizes or range(1, self.max_batch + 1):
            x = example(n)
            best = math.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                self.predict(x)
                best = min(best, time.perf_counter() - t0)
            self._warm.append((n, best))
        self.warm_fit = fit_linear(self._warm)
        self._refit()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    @property
    def idle(self) -> bool:
        return not self._queue and self._running_since is None and self._pending == 0

    async def stop(self) -> None:
        """Finish what is queued (and answer it)."""
        while not self.idle:
            await asyncio.sleep(0.005)

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    # -- admission --------------------------------------------------------------------------

    def predicted_latency(self, rows: int) -> float:
        """Seconds until a request of ``rows`` arriving now would be answered."""
        now = self.clock()
        ahead = 0.0
        if self._running_since is not None:
            ahead = max(0.0, self.fit(self._running_rows) - (now - self._running_since))
        total = self._queued_rows + rows
        cap = max(1, self.batch_limit)
        full, rest = divmod(total, cap)
        return ahead + full * self.fit(cap) + (self.fit(rest) if rest else 0.0) + self.max_delay

    def admit(self, rows: int) -> None:
        """Raise :class:`Shed` if this request should be refused now."""
        if self._queued_rows + rows > self.max_queue_rows:
            raise Shed("queue_full", f"the queue holds {self._queued_rows} rows "
                       f"(limit {self.max_queue_rows}); try again shortly",
                       self.predicted_latency(rows))
        if self.adaptive:
            p = self.predicted_latency(rows)
            if p > self.target:
                raise Shed("latency_target", f"predicted latency {p * 1000:.1f} ms exceeds the "
                           f"target of {self.target * 1000:.0f} ms; try again shortly", p)

    def submit_nowait(self, x: Any, rows: int, tag: Any = None) -> asyncio.Future:
        """Queue ``x`` (``rows`` rows); a future of its output slice, or of what ``finish``
        made of it."""
        fut = self._loop.create_future()
        self._queue.append(_Item(x, rows, self.clock(), fut, tag))
        self._queued_rows += rows
        if not self._scheduled and self._running_since is None:
            # After this loop iteration: requests parsed in the same iteration join the batch.
            self._scheduled = True
            self._loop.call_soon(self._dispatch)
        return fut

    async def submit(self, x: Any, rows: int, tag: Any = None) -> Any:
        return await self.submit_nowait(x, rows, tag)

    # -- dispatching ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Run the next batch if the model is free: inline when cheap, else on the executor."""
        self._scheduled = False
        while self._queue and self._running_since is None:
            if self.max_delay > 0 and self._queued_rows < self.batch_limit:
                left = self._queue[0].enqueued + self.max_delay - self.clock()
                if left > 0:
                    if self._timer is None:
                        self._timer = self._loop.call_later(left, self._on_timer)
                    return
            batch, rows = self._take()
            if (self.inline_s > 0 and self.warm_fit(rows) <= self.inline_s
                    and (self.inline_max_rows is None or rows <= self.inline_max_rows)):
                self._run_inline(batch, rows)
                continue  # requests queued meanwhile (none: the loop was busy) or the rest
            self._run_on_executor(batch, rows)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take(self) -> tuple[list[_Item], int]:
        first = self._queue.popleft()
        batch, rows = [first], first.rows
        while self._queue and rows + self._queue[0].rows <= self.batch_limit:
            item = self._queue.popleft()
            batch.append(item)
            rows += item.rows
        self._queued_rows -= rows
        return batch, rows

    def _run_inline(self, batch: list[_Item], rows: int) -> None:
        self.inline_batches += 1
        try:
            results, seconds = self._timed_predict([i.x for i in batch], [i.rows for i in batch],
                                                   [i.tag for i in batch])
        except Exception as exc:  # the model failed: every request of the batch learns why
            _fail(batch, exc)
            return
        self._done(batch, rows, results, seconds)

    def _run_on_executor(self, batch: list[_Item], rows: int) -> None:
        self._running_since, self._running_rows = self.clock(), rows
        fut = self._loop.run_in_executor(self.executor, self._timed_predict,
                                         [i.x for i in batch], [i.rows for i in batch],
                                         [i.tag for i in batch])

        def ran(f: asyncio.Future) -> None:
            self._running_since = None
            exc = f.exception()
            if exc is not None:
                _fail(batch, exc)
            else:
                self._done(batch, rows, *f.result())
            self._dispatch()  # what queued up while this batch ran

        fut.add_done_callback(ran)

    def _done(self, batch: list[_Item], rows: int, results: Any, seconds: float) -> None:
        self._record(rows, seconds)
        if isinstance(results, OnLoop):
            try:
                results = results.then()
            except Exception as exc:  # a bug: every request learns it, none hangs
                _fail(batch, exc)
                return
        if not isinstance(results, Deferred):
            _settle(batch, results)
            return
        self._pending += 1  # settle later (e.g. after a ledger commit); batching goes on
        results.future.add_done_callback(lambda f: self._settle_deferred(batch, results, f))

    def _settle_deferred(self, batch: list[_Item], deferred: Deferred,
                         f: asyncio.Future) -> None:
        self._pending -= 1
        exc = f.exception()
        _settle(batch, deferred.otherwise(exc) if exc is not None else deferred.then(f.result()))

    def _timed_predict(self, xs: list[Any], rows: list[int], tags: list[Any]
                       ) -> tuple[list[Any], float]:
        t0 = time.perf_counter()
        x = xs[0] if len(xs) == 1 else (
            np.concatenate(xs) if isinstance(xs[0], np.ndarray) else [t for x in xs for t in x])
        out = self.predict(x)
        slices, start = [], 0
        for n in rows:
            slices.append({k: v[start:start + n] for k, v in out.items()})
            start += n
        results = self.finish(tags, slices) if self.finish is not None else slices
        # The time the inference thread was busy, finishing included: what t(n) must predict.
        return results, time.perf_counter() - t0

    def _record(self, rows: int, seconds: float) -> None:
        self._recent.append((rows, seconds))
        if self.on_batch is not None:
            self.on_batch(rows, seconds)
        self._since_fit += 1
        if self._since_fit >= self.REFIT_EVERY:
            self._refit()

    def _refit(self) -> None:
        self._since_fit = 0
        self.fit = fit_linear([*self._warm, *self._recent])
        if self.adaptive:
            budget = self.target / 2 - self.max_delay
            fits = [n for n in range(1, self.max_batch + 1) if self.fit(n) <= budget]
            self.batch_limit = max(fits) if fits else 1
