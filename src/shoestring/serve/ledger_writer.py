"""Group commit on a writer thread: many batches' usage made durable together.

The thread that finished a batch hands its usage events over with
:meth:`LedgerWriter.submit` and goes back to work, so a sync of the disk (or a
database round trip) never stalls the next forward pass. The writer takes
everything queued and, for the whole group at once:

* appends the events without an Idempotency-Key to the replica's usage log
  with one write and one ``fdatasync`` (:class:`~shoestring.serve.usage_log.
  UsageLog`), from which the reconciler copies them into the SQL ledger;
* records the events with an Idempotency-Key in the SQL ledger in one
  transaction, because a retry may arrive at another replica and must find
  the first answer there (:meth:`LedgerSql.commit_keyed`).

Then it completes each batch's future, and only then are the requests
answered: a 200 is always durable. Under load one group covers several
batches (group commit, Gray & Reuter, *Transaction Processing*, 1993,
section 9.4.7).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import orjson

from shoestring.serve.ledger_sql import LedgerSql
from shoestring.serve.metering import ChargeResult, Outcome, UsageEvent
from shoestring.serve.usage_log import UsageLog

_STOP = object()
_log = logging.getLogger("shoestring.serve")
UNRECORDED = ChargeResult(Outcome.unrecorded)


class LedgerWriter:
    def __init__(self, log: UsageLog, sql: LedgerSql, *, max_events: int = 4096,
                 on_logged: Callable[[], None] = lambda: None) -> None:
        self.log, self.sql, self.max_events, self.on_logged = log, sql, max_events, on_logged
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.groups = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shoestring-ledger", daemon=True)
        self._thread.start()

    def submit(self, events: list[UsageEvent]) -> Future:
        """A future of one :class:`ChargeResult` per event, set once they are durable."""
        fut: Future = Future()
        self._q.put((events, fut))
        return fut

    def close(self, timeout: float = 30.0) -> None:
        """Make everything queued durable, then stop the writer."""
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
        events = [e for evs, _ in items for e in evs]
        results: dict[str, ChargeResult] = {}
        plain = [e for e in events if e.idempotency_key is None]
        keyed = [e for e in events if e.idempotency_key is not None]
        if plain:
            try:
                self.log.append([orjson.dumps(e.record()) for e in plain])
            except Exception as exc:  # the disk failed: nobody is charged, nobody gets a 200
                _log.error("usage log append failed (%d requests answered 503): %s: %s",
                           len(plain), type(exc).__name__, exc)
            else:
                results.update((e.id, ChargeResult(Outcome.charged)) for e in plain)
                self.on_logged()
        if keyed:
            try:
                results.update(zip((e.id for e in keyed), self.sql.commit_keyed(keyed)))
            except Exception as exc:  # the database failed: the same
                _log.error("usage ledger commit failed (%d requests answered 503): %s: %s",
                           len(keyed), type(exc).__name__, exc)
        self.groups += 1
        for evs, fut in items:
            fut.set_result([results.get(e.id, UNRECORDED) for e in evs])
