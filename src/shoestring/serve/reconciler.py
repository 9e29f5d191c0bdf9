"""Copies a replica's usage log into the SQL ledger, in the background and after a crash.

A thread reads the records that the log has made durable, from where the
ledger's checkpoint for this replica says it stopped, and records them with
:meth:`LedgerSql.apply` (events, counters, leases and the new checkpoint in
one transaction), every ``interval_s`` (large transactions: SQLite spends
about 5 µs an event in batches of thousands, 3x that in batches of a
hundred), at a lower CPU priority than serving. The
same code runs once at start, before the server takes requests: whatever a
killed predecessor made durable but did not record is recorded then, exactly
once (the checkpoint moves in the same transaction as the events). Then the
replica gives back every unit it still held in leases, since a fresh process
holds none.

The thread also renews this replica's leases every ``ttl_s / 3``. If the
database is away, the log keeps growing and is recorded once it is back.
Usage reports read the ledger, so they see a request about ``interval_s``
after its answer (longer while the CPU is saturated); a drained server has
recorded everything.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from shoestring.serve.ledger_sql import LedgerSql
from shoestring.serve.threads import name_native_thread
from shoestring.serve.usage_log import Position, UsageLog, read_records, segment_number

_log = logging.getLogger("shoestring.serve")


class Reconciler:
    def __init__(self, log: UsageLog, sql: LedgerSql, *, interval_s: float = 1.0,
                 max_records: int = 20000, ttl_s: float = 30.0,
                 wall: Callable[[], float] = time.time,
                 on_renewed: Callable[[float], None] = lambda until: None) -> None:
        self.log, self.sql, self.interval_s, self.max_records = log, sql, interval_s, max_records
        self.ttl_s, self.wall, self.on_renewed = ttl_s, wall, on_renewed
        self.position = Position(0, 0)
        self.recorded = 0
        self._wake = threading.Event()
        self._caught_up = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._renewed_at = 0.0
        self.failures = 0

    # -- start and stop ---------------------------------------------------------------------

    def recover(self) -> int:
        """Record what the log holds beyond the ledger's checkpoint (after a crash), then
        give back this replica's leases. Returns the number of events recorded."""
        self.position = self.sql.checkpoint() or Position(0, 0)
        before = self.recorded
        while self._step():
            pass
        self.sql.release_all()
        if self.recorded > before:
            _log.warning("recorded %d usage events from the log of an earlier run",
                         self.recorded - before)
        return self.recorded - before

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ss-reconcile",
                                        daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Wait until everything the log made durable so far is in the ledger."""
        target = self.log.durable_position
        deadline = time.monotonic() + timeout_s
        with self._caught_up:
            while self.position < target:
                self._wake.set()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._caught_up.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        """Record everything, give the leases back, stop."""
        if self._thread is not None:
            self.flush()
            self._stop = True
            self._wake.set()
            self._thread.join(30)
            self._thread = None
        while self._step():
            pass
        self.sql.release_all()

    # -- the work ---------------------------------------------------------------------------

    def _run(self) -> None:
        name_native_thread()
        _lower_priority()
        while not self._stop:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                while self._step():
                    pass
                if self.wall() - self._renewed_at > self.ttl_s / 3:
                    now = self.wall()
                    self.sql.renew(now, self.ttl_s)
                    self._renewed_at = now
                    self.on_renewed(now + self.ttl_s)
                self.failures = 0
            except Exception as exc:  # the database is away: the log keeps everything
                self.failures += 1
                if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
                    _log.error("cannot record usage in the ledger (attempt %d; the log keeps "
                               "it): %s: %s", self.failures, type(exc).__name__, exc)
                time.sleep(min(5.0, 0.1 * self.failures))

    def _step(self) -> bool:
        """Record the next chunk of the log; False once caught up."""
        segments = self.log.segments()
        active = self.log.durable_position
        todo = [p for p in segments if segment_number(p) >= self.position.segment]
        if not todo:
            return False
        path = todo[0]
        seq = segment_number(path)
        offset = self.position.offset if seq == self.position.segment else 0
        end = active.offset if seq == active.segment else None
        records, reached, early = [], offset, False
        for reached, group in read_records(path, offset, end):
            records.extend(group)
            if len(records) >= self.max_records:
                early = True
                break
        finished = seq < active.segment and not early
        new_position = Position(seq + 1, 0) if finished else Position(seq, reached)
        if not records and new_position == self.position:
            return False
        self.sql.apply(records, new_position)
        self.recorded += len(records)
        with self._caught_up:
            self.position = new_position
            self._caught_up.notify_all()
        if finished:
            _remove(path)
        return True


def _lower_priority() -> None:
    """Recording usage can wait for serving: run this thread at a lower CPU priority
    (Linux nice 10, per thread), so a saturated server spends its CPU on requests and
    records in the gaps. Charges are durable in the log already."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not allowed: normal priority
        pass


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def replay_usage_log(directory: Path, engine) -> tuple[str, int]:
    """Record a stopped replica's usage log in the ledger and give its leases back, as its
    restart would (for a log whose server will not return). Returns (replica, events)."""
    log = UsageLog(directory)
    try:
        return log.replica, Reconciler(log, LedgerSql(engine, log.replica)).recover()
    finally:
        log.close()
