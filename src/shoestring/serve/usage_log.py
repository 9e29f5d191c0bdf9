"""A replica's append-only usage log: where a charge becomes durable.

Every metered request's usage event is appended here, and the request is
answered only after the append is durable (``fdatasync`` when ``durable``;
the page cache otherwise, which survives a crash of the process but not of
the machine). A batch's events share one write, made by the thread that ran the
batch before it answers (:meth:`Billing.charge_batch`); under load batches grow,
and so does what one sync covers (group commit, Gray & Reuter, *Transaction
Processing*, 1993, section 9.4.7), which is why metering costs little at load. A background reconciler copies the log into
the SQL ledger (:mod:`shoestring.serve.reconciler`); after a crash the next
start replays what the ledger lacks.

Layout of ``directory`` (one per replica; two servers cannot share one):

* ``replica.id`` — this replica's name in the ledger (random, made once);
* ``LOCK`` — held (``flock``) while a server uses the directory;
* ``usage-00000001.log``, … — segments, appended in order; a new one at each
  start and past ``segment_bytes``; deleted once reconciled.

A record is ``len (u32 LE) | crc32 (u32 LE) | payload``, one per batch (or
per group of the writer thread), with the payload a JSON array of usage records (each an array of
:data:`FIELDS`). A record cut short by a crash, or one whose CRC does not
match, ends the segment: it was never made durable, so its requests were
never answered.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from shoestring.errors import ShoestringError
from shoestring.ledger.db import sqlite_path

HEADER = struct.Struct("<II")
_HAS_DSYNC = hasattr(os, "O_DSYNC")
SEGMENT = "usage-{:08d}.log"
# The payload of a record, in order (see UsageRecord).
FIELDS = ("id", "key_id", "project", "plan", "model", "version", "units", "cost_nano_usd",
          "latency_ms", "created_at", "period", "key_leased", "project_leased")


@dataclass(frozen=True, order=True)
class Position:
    """A point in the log: segment number and byte offset within it."""

    segment: int
    offset: int


def default_usage_log(db_url: str) -> Path:
    """Beside a SQLite ledger (``ledger.db.usage-log``), else ``./.shoestring/usage-log``."""
    path = sqlite_path(db_url)
    if path is not None:
        return path.with_name(path.name + ".usage-log")
    return Path(".shoestring") / "usage-log"


def segment_number(path: Path) -> int:
    return int(path.stem.split("-")[1])


class UsageLog:
    """One replica's log directory, opened for appending (see the module docstring)."""

    def __init__(self, directory: Path, *, durable: bool = True,
                 segment_bytes: int = 64 << 20) -> None:
        self.directory, self.durable, self.segment_bytes = Path(directory), durable, segment_bytes
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise ShoestringError(f"the usage log {self.directory} is in use by another "
                                  "server", hint="give each replica its own --usage-log "
                                  "directory") from None
        self.replica = self._replica_id()
        existing = self.segments()
        self._seq = (segment_number(existing[-1]) if existing else 0)
        self._fd = -1
        self._size = 0
        # Appends come from the thread that ran a batch (the event loop or the inference
        # thread) and from the writer thread (completions): one at a time.
        self._lock = threading.Lock()
        self.durable_position = Position(self._seq, 0)
        self._open_next()

    def _replica_id(self) -> str:
        path = self.directory / "replica.id"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_hex(8) + "\n")
            os.replace(tmp, path)
        return path.read_text().strip()

    def segments(self) -> list[Path]:
        """The segment files, oldest first."""
        return sorted(self.directory.glob("usage-*.log"), key=segment_number)

    def _open_next(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._seq += 1
        path = self.directory / SEGMENT.format(self._seq)
        # Durable: O_DSYNC, so each write returns once its data is on the device, like a
        # write then fdatasync (open(2), "Synchronized I/O") but in one system call: the
        # writer thread leaves and retakes the GIL once per group instead of twice.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        if self.durable:
            flags |= getattr(os, "O_DSYNC", 0)
        self._fd = os.open(path, flags, 0o600)
        self._size = 0
        _sync_dir(self.directory)  # the new file's name is durable too
        self.durable_position = Position(self._seq, 0)

    def append(self, payload: bytes) -> Position:
        """Append one record (a JSON array of usage records) with one write and one sync;
        the durable end position.

        On failure the segment is cut back to where it was, so a record whose
        requests were answered 503 can never be replayed as a charge.
        """
        data = HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if self._size >= self.segment_bytes:
                self._open_next()
            try:
                written = os.write(self._fd, data)
                while written < len(data):  # a short write (rare): the rest, then sync it all
                    written += os.write(self._fd, data[written:])
                if self.durable and not _HAS_DSYNC:
                    os.fdatasync(self._fd)
            except OSError:
                os.ftruncate(self._fd, self._size)
                raise
            self._size += len(data)
            self.durable_position = Position(self._seq, self._size)
            return self.durable_position

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1


def read_records(path: Path, offset: int = 0, end: int | None = None
                 ) -> Iterator[tuple[int, list[list]]]:
    """(end offset, usage records) of each whole, intact log record from ``offset`` (up to
    ``end``)."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read() if end is None else f.read(max(0, end - offset))
    pos = 0
    while pos + HEADER.size <= len(data):
        length, crc = HEADER.unpack_from(data, pos)
        start = pos + HEADER.size
        payload = data[start:start + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            return  # torn by a crash: never durable, never answered
        pos = start + length
        records = orjson.loads(payload)
        # A log written before group records (one usage record per log record, whose
        # first field is the id, a string) is still read after an upgrade.
        yield offset + pos, records if records and type(records[0]) is list else [records]


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
