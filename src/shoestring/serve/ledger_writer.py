"""The writer thread: usage that cannot be written where its request ran.

A batch of ``/v2`` requests without an Idempotency-Key (nearly all traffic)
is not sent here: the thread that ran the batch appends its records to the
usage log itself (:meth:`LedgerWriter.write_now`, from
:meth:`Billing.charge_batch`), so metering costs no thread hand-off. This
thread takes the rest, handed over with :meth:`LedgerWriter.submit`, and for
everything queued at once:

* appends the records of requests without an Idempotency-Key (completions) to
  the replica's usage log as one record, with one synced write
  (:class:`~shoestring.serve.usage_log.UsageLog`); the reconciler copies them
  into the SQL ledger later;
* records the events with an Idempotency-Key in the SQL ledger in one
  transaction, because a retry may arrive at another replica and must find
  the first answer there (:meth:`LedgerSql.commit_keyed`).

Then it completes every submitted future with one call into the event loop,
and only then are those requests answered: a 200 is always durable. Under
load one group covers several submissions (group commit, Gray & Reuter,
*Transaction Processing*, 1993, section 9.4.7). The write and the database
round trip release the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading

import orjson

from shoestring.serve.ledger_sql import LedgerSql
from shoestring.serve.metering import ChargeResult, Outcome, UsageEvent
from shoestring.serve.threads import name_native_thread
from shoestring.serve.usage_log import UsageLog

_STOP = object()
_log = logging.getLogger("shoestring.serve")
CHARGED = ChargeResult(Outcome.charged)
UNRECORDED = ChargeResult(Outcome.unrecorded)


class LedgerWriter:
    def __init__(self, log: UsageLog, sql: LedgerSql, *, max_events: int = 8192) -> None:
        self.log, self.sql, self.max_events = log, sql, max_events
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.groups = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the thread (call it on the event loop's thread)."""
        self._loop, self._loop_thread = loop, threading.get_ident()
        self._thread = threading.Thread(target=self._run, name="ss-ledger", daemon=True)
        self._thread.start()

    def submit(self, records: list[list | UsageEvent]) -> asyncio.Future:
        """Make usage durable: each item a usage-log record (a list, see
        :meth:`UsageEvent.record`) or, for a request with an Idempotency-Key, a
        :class:`UsageEvent`. Callable from any thread; returns a future of the event loop
        with one :class:`ChargeResult` per item, in order."""
        fut = asyncio.Future(loop=self._loop)
        plain = [r for r in records if type(r) is list]
        keyed = [r for r in records if type(r) is not list]
        self._q.put((orjson.dumps(plain) if plain else b"", len(plain), keyed, fut,
                     records if keyed and plain else None))
        return fut

    def writes_here(self) -> bool:
        """Whether a batch that ran on the calling thread should write its records itself
        (:meth:`write_now`): yes, unless this is the event loop and the log is synced.

        Measured on this project's 2-core VMs (docs/serve.md): a synced write made by the
        thread that serves the sockets takes a whole 4 ms timer tick to return, against
        0.2 ms from any other thread, so the event loop hands synced writes to this
        thread (group commit); page-cache writes (``--no-durable``) it makes itself.
        """
        return not self.log.durable or threading.get_ident() != self._loop_thread

    def write_now(self, records: list[list]) -> bool:
        """Append usage-log records (lists, see :meth:`UsageEvent.record`) on the calling
        thread, with one write (synced when durable) before it returns: how a batch's
        requests without an Idempotency-Key are charged where the batch ran, with no hand-off
        to this writer and no wake-up of the event loop. False if the disk failed (nothing
        was written: the requests must be answered 503 and not charged)."""
        try:
            self.log.append(orjson.dumps(records))
        except Exception as exc:
            _log.error("usage log append failed (%d requests answered 503): %s: %s",
                       len(records), type(exc).__name__, exc)
            return False
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Make everything queued durable, then stop the writer."""
        if self._thread is not None:
            self._q.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        name_native_thread()
        while True:
            first = self._q.get()
            if first is _STOP:
                return
            items, stop, n = [first], False, first[1] + len(first[2])
            while n < self.max_events:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                items.append(nxt)
                n += nxt[1] + len(nxt[2])
            self._commit(items)
            if stop:
                return

    def _commit(self, items: list[tuple]) -> None:
        logged = True
        payloads = [p for p, n, _, _, _ in items if n]
        if payloads:
            # One log record for the group: the batches' JSON arrays joined into one.
            group = b"[" + b",".join(p[1:-1] for p in payloads) + b"]"
            try:
                self.log.append(group)
            except Exception as exc:  # the disk failed: nobody is charged, nobody gets a 200
                logged = False
                _log.error("usage log append failed (%d requests answered 503): %s: %s",
                           sum(n for _, n, _, _, _ in items), type(exc).__name__, exc)
        keyed = [e for _, _, evs, _, _ in items for e in evs]
        keyed_results: dict[str, ChargeResult] = {}
        if keyed:
            try:
                keyed_results = dict(zip((e.id for e in keyed), self.sql.commit_keyed(keyed)))
            except Exception as exc:  # the database failed: the same
                _log.error("usage ledger commit failed (%d requests answered 503): %s: %s",
                           len(keyed), type(exc).__name__, exc)
        self.groups += 1
        plain = CHARGED if logged else UNRECORDED
        done = []
        for _, n, evs, fut, mixed in items:
            if mixed is None:  # all plain, or all keyed
                results = [plain] * n + [keyed_results.get(e.id, UNRECORDED) for e in evs]
            else:
                results = [plain if type(r) is list else keyed_results.get(r.id, UNRECORDED)
                           for r in mixed]
            done.append((fut, results))
        try:
            self._loop.call_soon_threadsafe(_complete, done)
        except RuntimeError:  # the loop is closed: nobody is waiting for these answers
            _log.warning("usage of %d batches recorded after the server stopped", len(done))


def _complete(done: list[tuple[asyncio.Future, list[ChargeResult]]]) -> None:
    for fut, results in done:
        if not fut.done():
            fut.set_result(results)
