"""Group commit on a writer thread: many batches' usage events in one transaction.

The inference thread hands each finished batch's events over with
:meth:`LedgerWriter.submit` and goes back to running the model, so a commit
(an fsync on SQLite in durable mode, a round trip on PostgreSQL) never stalls
the next forward pass. The writer takes everything queued, charges it with one
:meth:`Meter.charge` transaction and completes each batch's future; under load
one commit covers several batches (the group commit of database logs, Gray &
Reuter, *Transaction Processing*, 1993, section 9.4.7).
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from shoestring.serve.metering import ChargeResult, Meter, UsageEvent

_STOP = object()
_log = logging.getLogger("shoestring.serve")


class LedgerWriter:
    def __init__(self, meter: Meter, max_events: int = 2048) -> None:
        self.meter, self.max_events = meter, max_events
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.commits = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shoestring-ledger", daemon=True)
        self._thread.start()

    def submit(self, events: list[UsageEvent]) -> Future:
        """A future of one :class:`ChargeResult` per event, set once they are committed."""
        fut: Future = Future()
        self._q.put((events, fut))
        return fut

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
            items, stop, n = [first], False, len(first[0])
            while n < self.max_events:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                items.append(nxt)
                n += len(nxt[0])
            self._commit(items)
            if stop:
                return

    def _commit(self, items: list[tuple[list[UsageEvent], Future]]) -> None:
        try:
            results: list[ChargeResult] = self.meter.charge([e for evs, _ in items for e in evs])
        except Exception as exc:  # the database failed: nobody is charged, nobody gets a 200
            _log.error("usage ledger commit failed (%d events answered 503): %s: %s",
                       sum(len(evs) for evs, _ in items), type(exc).__name__, exc)
            for _, fut in items:
                fut.set_exception(exc)
            return
        self.commits += 1
        start = 0
        for evs, fut in items:
            fut.set_result(results[start:start + len(evs)])
            start += len(evs)
