"""A bounded, disk-backed FIFO of serialized OTLP export requests, between receiving and forwarding.

One file per batch, ``<seq>-<spans>.batch`` in the queue directory, holding a 16-byte header
(magic, CRC-32 and length of the payload) and the payload. ``put`` writes a temporary file,
fsyncs it, renames it to its final name and fsyncs the directory before it returns, so a batch
that was acknowledged survives a SIGKILL or power loss at any instant, and a file that was not
completely written never carries a batch's name (its ``.tmp`` is deleted on the next open).

Each put pays its own fsyncs. Grouping the directory fsync of concurrent puts was measured
and gained nothing on ext4 (the file's fsync has already committed the journal, and the kernel
already merges the commits of concurrent fsyncs), so it was left out.

A file that is found damaged (bad header, wrong length, CRC mismatch, unreadable) is moved
aside into ``corrupt/`` in the queue directory -- never deleted, so an operator can look at
it -- and its span count (from its name) is added to ``take_corrupt()``, which the forwarder
drains into the ``dropped{reason="corrupt_queue_file"}`` counter.

Delivery is at-least-once: a batch being forwarded when the process died is sent again after
the restart; a batch whose deletion after its acknowledgement was lost in a crash likewise.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import heapq
import logging
import os
import re
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

_logger = logging.getLogger(__name__)

_MAGIC = b"OLQ1"
_HEADER = struct.Struct(">4sIQ")  # magic, crc32 of the payload, payload length
_BATCH = re.compile(r"^(\d{20})-(\d+)\.batch$")
_TMP_SUFFIX = ".tmp"
_CORRUPT_DIR = "corrupt"
_LOCK_FILE = "lock"
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class QueueFull(Exception):
    """The batch was not stored: the queue is at its size bound (or the disk is full).
    Nothing was lost; the client should send it again later."""


class QueueClosed(QueueFull):
    """The queue is closed (the service is shutting down). A ``QueueFull``, so a caller that
    only knows that one still answers with a retryable refusal."""


class QueueInUse(OSError):
    """Another process holds the queue directory: two services sharing one would send every
    batch twice and corrupt each other's accounting."""


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One batch taken from the queue; hand it back with ``ack`` or ``release``."""

    seq: int
    payload: bytes
    spans: int


@dataclass(frozen=True, slots=True)
class _Entry:
    seq: int
    spans: int
    size: int
    """Payload bytes (the file is ``_HEADER.size`` longer)."""
    path: Path


class DiskQueue:
    """Bounded, durable, thread-safe FIFO of OTLP payloads kept in ``directory``.

    ``max_bytes`` bounds the payload bytes stored (batches waiting and in flight). On open
    it recovers what a previous process left, oldest first.
    """

    def __init__(self, directory: Path, *, max_bytes: int):
        if max_bytes <= 0:
            raise ValueError("max_bytes must be > 0")
        self.directory = Path(directory)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._available = threading.Condition(self._lock)
        self._ready: list[tuple[int, _Entry]] = []  # heap by seq: oldest first
        self._in_flight: dict[int, _Entry] = {}
        self._bytes = 0
        self._reserved = 0  # bytes of puts under way, so concurrent puts cannot overshoot
        self._spans = 0
        self._corrupt_spans = 0
        self._corrupt_files = 0
        self._corrupt_lock = threading.Lock()
        self._writers = 0  # puts under way: close() waits for them before closing the fds
        self._closed = False

        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            message = f"queue directory {self.directory} is in use by another process"
            raise QueueInUse(message) from exc
        self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        self._next_seq = self._recover() + 1

    # --- recovery ---------------------------------------------------------------------------
    def _recover(self) -> int:
        """Indexes the batches left by a previous process; returns the highest seq seen."""
        highest = 0
        for name in os.listdir(self.directory):
            path = self.directory / name
            if name.endswith(_TMP_SUFFIX):
                # Never renamed, so its put never returned: nobody was told it was stored.
                path.unlink(missing_ok=True)
                continue
            match = _BATCH.match(name)
            if match is None:
                continue  # the lock file, corrupt/, or something that is not ours: left alone
            seq, spans = int(match[1]), int(match[2])
            highest = max(highest, seq)
            try:
                size = path.stat().st_size - _HEADER.size
            except OSError:
                size = -1
            if size < 0:
                self._quarantine(path, spans, "shorter than its header")
                continue
            entry = _Entry(seq, spans, size, path)
            self._ready.append((seq, entry))
            self._bytes += size
            self._spans += spans
        heapq.heapify(self._ready)
        if self._ready:
            _logger.info(
                "otel-llm collector: recovered %d queued batch(es), %d span(s), from %s",
                len(self._ready),
                self._spans,
                self.directory,
            )
        return highest

    def _quarantine(self, path: Path, spans: int, why: str) -> None:
        """Moves a damaged batch file aside (kept for inspection) and counts its spans."""
        corrupt = self.directory / _CORRUPT_DIR
        try:
            corrupt.mkdir(exist_ok=True)
            target = corrupt / path.name
            if target.exists():  # seqs restart when a queue empties: keep both files
                target = corrupt / f"{path.name}.{time.time_ns()}"
            path.rename(target)
            where = f"moved to {target}"
        except OSError as exc:
            where = f"could not be moved aside ({exc}); it is no longer read"
        _logger.warning(
            "otel-llm collector: queue file %s is damaged (%s), %d span(s) lost; %s",
            path,
            why,
            spans,
            where,
        )
        with self._corrupt_lock:
            self._corrupt_spans += spans
            self._corrupt_files += 1

    # --- state --------------------------------------------------------------------------------
    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def batches(self) -> int:
        """Batches stored: waiting and in flight."""
        with self._lock:
            return len(self._ready) + len(self._in_flight)

    @property
    def bytes(self) -> int:
        """Payload bytes stored: waiting and in flight."""
        with self._lock:
            return self._bytes

    @property
    def spans(self) -> int:
        with self._lock:
            return self._spans

    def take_corrupt(self) -> int:
        """Spans of the damaged files moved aside since the last call (the caller counts them
        as dropped with reason ``corrupt_queue_file``)."""
        with self._corrupt_lock:
            spans, self._corrupt_spans = self._corrupt_spans, 0
            return spans

    @property
    def corrupt_files(self) -> int:
        """Damaged files moved aside since this queue was opened."""
        with self._corrupt_lock:
            return self._corrupt_files

    # --- put ----------------------------------------------------------------------------------
    def put(self, payload: builtins.bytes, spans: int) -> None:
        """Stores one batch; returns once it is durable.

        Raises ``QueueFull`` when it would take the queue over ``max_bytes`` or the disk is
        full, ``QueueClosed`` after ``close()``, and ``OSError`` on other write failures --
        in every case nothing was stored.
        """
        if spans < 0:
            raise ValueError("spans must be >= 0")
        size = len(payload)
        with self._lock:
            if self._closed:
                raise QueueClosed("the queue is closed")
            if self._bytes + self._reserved + size > self._max_bytes:
                raise QueueFull(
                    f"the queue holds {self._bytes} of {self._max_bytes} bytes; "
                    f"a batch of {size} bytes does not fit"
                )
            self._reserved += size
            self._writers += 1
            seq = self._next_seq
            self._next_seq += 1
        path = self.directory / f"{seq:020d}-{spans}.batch"
        stored = False
        try:
            self._write(path, payload)
            os.fsync(self._dir_fd)  # the rename itself must survive a power loss
            stored = True
        except OSError as exc:
            path.unlink(missing_ok=True)
            if exc.errno in _FULL_ERRNOS:
                raise QueueFull(f"the queue's disk is full: {exc}") from exc
            raise
        finally:
            with self._lock:
                self._reserved -= size
                self._writers -= 1
                if stored:
                    self._bytes += size
                    self._spans += spans
                    heapq.heappush(self._ready, (seq, _Entry(seq, spans, size, path)))
                self._available.notify_all()  # a getter, or close() waiting for writers

    @staticmethod
    def _write(path: Path, payload: builtins.bytes) -> None:
        tmp = path.with_name(path.name + _TMP_SUFFIX)
        header = _HEADER.pack(_MAGIC, zlib.crc32(payload), len(payload))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(header + payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fdatasync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        try:
            os.rename(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # --- get / ack / release --------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> QueueItem | None:
        """The oldest batch not in flight, marked in flight; None after ``timeout`` seconds
        (None: wait until one arrives or the queue is closed) or once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                while not self._ready and not self._closed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    self._available.wait(remaining)
                if self._closed:
                    return None
                _, entry = heapq.heappop(self._ready)
                self._in_flight[entry.seq] = entry
            payload = self._read(entry)  # file I/O outside the lock
            if payload is not None:
                return QueueItem(entry.seq, payload, entry.spans)

    def _read(self, entry: _Entry) -> builtins.bytes | None:
        """The entry's payload, or None after moving a damaged file aside."""
        try:
            data = entry.path.read_bytes()
            problem = self._check(data)
        except OSError as exc:
            problem = f"unreadable: {exc}"
        if problem is None:
            return data[_HEADER.size :]
        self._forget(entry)
        self._quarantine(entry.path, entry.spans, problem)
        return None

    @staticmethod
    def _check(data: builtins.bytes) -> str | None:
        if len(data) < _HEADER.size:
            return "shorter than its header"
        magic, crc, length = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            return "not a queue file"
        if length != len(data) - _HEADER.size:
            return f"{len(data) - _HEADER.size} payload bytes, header says {length}"
        if zlib.crc32(memoryview(data)[_HEADER.size :]) != crc:
            return "CRC mismatch"
        return None

    def _forget(self, entry: _Entry) -> bool:
        with self._lock:
            if self._in_flight.pop(entry.seq, None) is None:
                return False
            self._bytes -= entry.size
            self._spans -= entry.spans
            return True

    def ack(self, item: QueueItem) -> None:
        """Deletes a delivered (or deliberately dropped) batch. Unknown items are ignored."""
        with self._lock:
            entry = self._in_flight.get(item.seq)
        if entry is None or not self._forget(entry):
            return
        # No directory fsync: if the deletion is lost in a crash the batch is sent again,
        # which at-least-once delivery allows.
        try:
            entry.path.unlink(missing_ok=True)
        except OSError as exc:
            _logger.warning("otel-llm collector: could not delete %s: %s", entry.path, exc)

    def release(self, item: QueueItem) -> None:
        """Puts an in-flight batch back, to be taken again (e.g. after a failed send)."""
        with self._lock:
            entry = self._in_flight.pop(item.seq, None)
            if entry is None:
                return
            heapq.heappush(self._ready, (entry.seq, entry))
            self._available.notify()

    # --- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stops accepting puts, wakes waiting getters and frees the directory. What is
        stored (in flight included) stays on disk for the next open. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._available.notify_all()
            # A put under way still needs the directory fd for its fsync; puts end quickly.
            while self._writers:
                self._available.wait()
        os.close(self._dir_fd)
        os.close(self._lock_fd)  # releases the flock

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def __enter__(self) -> DiskQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
