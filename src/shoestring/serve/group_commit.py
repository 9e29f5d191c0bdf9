"""Group commit: many requests' usage events charged in one transaction.

Handlers ``await charge(event)``; a writer thread takes everything queued
(up to ``max_group`` events), charges it with one :meth:`Meter.charge`
transaction and wakes the handlers with one event-loop callback. A database
commit costs far more than an event, so under load the per-request cost
falls with the group size (the group commit of database logs, Gray & Reuter,
*Transaction Processing*, 1993, section 9.4.7).
"""

from __future__ import annotations

import asyncio
import queue
import threading

from shoestring.serve.metering import ChargeResult, Meter, UsageEvent

_STOP = object()


class GroupCommitter:
    def __init__(self, meter: Meter, max_group: int = 512) -> None:
        self.meter = meter
        self.max_group = max_group
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.groups = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="shoestring-meter", daemon=True)
        self._thread.start()

    async def charge(self, event: UsageEvent) -> ChargeResult:
        """Charge ``event`` durably; returns once its transaction has committed."""
        fut = self._loop.create_future()
        self._q.put((event, fut))
        return await fut

    def close(self, timeout: float = 30.0) -> None:
        """Commit everything queued, then stop the writer."""
        if self._thread is not None:
            self._q.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._q.get()
            if first is _STOP:
                return
            items, stop = [first], False
            while len(items) < self.max_group:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                items.append(nxt)
            self._commit(items)
            if stop:
                return

    def _commit(self, items: list) -> None:
        try:
            results = self.meter.charge([ev for ev, _ in items])
            error = None
        except Exception as exc:  # the database failed: nobody is charged, nobody gets a 200
            results, error = None, exc
        self.groups += 1
        try:
            self._loop.call_soon_threadsafe(_resolve, [f for _, f in items], results, error)
        except RuntimeError:  # the loop has closed; the events are committed regardless
            pass


def _resolve(futures: list[asyncio.Future], results: list[ChargeResult] | None,
             error: Exception | None) -> None:
    for i, f in enumerate(futures):
        if f.done():
            continue
        if error is not None:
            f.set_exception(error)
        else:
            f.set_result(results[i])
