"""A bounded, disk-backed FIFO of serialized OTLP export requests, between receiving and forwarding.

One file per batch (written and read by ``batchfile.py``), ``<seq>-<spans>.batch`` in the queue
directory, holding a 16-byte header (magic, CRC-32 and length of the payload) and the payload.
``put`` writes a temporary file, fsyncs it, renames it to its final name and fsyncs the
directory before it returns, so a batch that was acknowledged survives a SIGKILL or power loss
at any instant, and a file that was not completely written never carries a batch's name (its
``.tmp`` is deleted on the next open).

Each put pays its own fsyncs. Grouping the directory fsync of concurrent puts was measured
and gained nothing on ext4 (the file's fsync has already committed the journal, and the kernel
already merges the commits of concurrent fsyncs), so it was left out.

A file that is found damaged (bad header, wrong length, CRC mismatch, unreadable) is moved
aside into ``corrupt/`` in the queue directory -- never deleted, so an operator can look at
it -- and its span count (from its name) is added to ``take_corrupt()``, which the forwarder
drains into the ``dropped{reason="corrupt_queue_file"}`` counter.

Consumers: each batch is read by every consumer the queue is opened with (``consumers``, e.g.
the forwarder and the call log), each through its own lane -- oldest first, in flight, ack,
release -- and is deleted only once all of them acknowledged it. A consumer that acknowledges a
batch the others still need leaves a done-marker next to it, ``<batch name>.<consumer>.done``
(an empty file), so that after a restart it is not handed that batch again; a marker whose
batch is gone is deleted on open, before a sequence number could be reused.

Delivery is at-least-once, per consumer: a batch being consumed when the process died is handed
again after the restart; so is one whose done-marker or deletion was lost in a crash (neither
is fsynced: losing one repeats work, never loses it).
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import heapq
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_llm.collector import batchfile

_logger = logging.getLogger(__name__)

_LOCK_FILE = "lock"
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

UPSTREAM = "upstream"
"""The consumer name of the forwarder (the default, and only, consumer of a plain queue)."""


MEMO_BYTES_PER_SPAN = 256
"""What a memo weighs a span, at least: its calls and spans keep the whole parsed request alive,
~170 bytes a span however small the span's encoding (3.9 MB of 2,000,000 empty spans parse to
333 MB), so a payload's size alone let a few hostile requests keep gigabytes."""
MEMO_BYTES_PER_PAYLOAD_BYTE = 8
"""What a memo of a parsed request weighs a byte of its payload, at least. A parsed request
takes ~3.5x its payload (512-span batches of the benchmarks' GenAI spans, measured), and far more
when made of empty sub-messages -- span events, two bytes each on the wire (found in review: 10
MB of memos by payload held 410 MB). The collector service weighs its memos itself
(``enrich.detach``: copies of the spans they need, weighed by what the copies hold)."""


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
    """One batch taken from the queue by one consumer; hand it back with ``ack`` or
    ``release``."""

    seq: int
    payload: bytes
    spans: int
    consumer: str = UPSTREAM
    memo: Any = field(default=None, compare=False, repr=False)
    """What ``put`` was given with the payload, for the memo consumer (see ``DiskQueue``);
    None when it was not kept, and always after a restart: derive it from ``payload`` then."""


@dataclass(eq=False, slots=True)
class _Entry:
    seq: int
    spans: int
    size: int
    """Payload bytes (the file is ``batchfile.HEADER.size`` longer)."""
    path: Path
    waiting: set[str]
    """The consumers that have not acknowledged it yet."""
    done: set[str] = field(default_factory=set)
    """The consumers whose done-marker is on disk (some may not be consumers of this run)."""
    memo: Any = None
    memo_weight: int = 0
    """What the memo counts against ``memo_max_bytes``."""
    payload: bytes | None = None
    """The payload as put, while it is kept in memory (``keep_bytes``)."""


@dataclass(slots=True)
class _Lane:
    """One consumer's view: what it has still to take, and what it took and has not acked."""

    ready: list[tuple[int, _Entry]] = field(default_factory=list)  # heap by seq: oldest first
    in_flight: dict[int, _Entry] = field(default_factory=dict)


class DiskQueue:
    """Bounded, durable, thread-safe FIFO of OTLP payloads kept in ``directory``.

    ``max_bytes`` bounds the payload bytes stored (batches some consumer has still to
    acknowledge). ``consumers`` names who reads every batch (see the module's docstring); a
    batch is deleted once all of them acknowledged it. On open it recovers what a previous
    process left, oldest first, each consumer getting the batches it has not acknowledged.

    ``keep_bytes``: payloads put are also kept in memory while those kept stay under this
    bound, and handed to consumers from there: reading a batch back from its file and checking
    its CRC cost the service as much as writing it. The file stays the durable record (read
    after a restart); 0 reads every batch from its file.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        consumers: Sequence[str] = (UPSTREAM,),
        memo_consumer: str | None = None,
        memo_max_bytes: int = 32 << 20,
        keep_bytes: int = 0,
    ):
        if max_bytes <= 0:
            raise ValueError("max_bytes must be > 0")
        if memo_consumer is not None and memo_consumer not in consumers:
            raise ValueError(f"the memo consumer {memo_consumer!r} is not a consumer")
        if not consumers or len(set(consumers)) != len(consumers):
            raise ValueError("consumers must be distinct names, at least one")
        for name in consumers:
            if not re.fullmatch(r"[a-z_]+", name):
                raise ValueError(f"a consumer's name is lower-case letters and _: {name!r}")
        self.directory = Path(directory)
        self._max_bytes = max_bytes
        self._consumers = tuple(consumers)
        self._lock = threading.Lock()
        self._available = threading.Condition(self._lock)
        self._lanes = {name: _Lane() for name in self._consumers}
        self._entries: dict[int, _Entry] = {}  # by seq: every batch stored
        self._bytes = 0
        self._reserved = 0  # bytes of puts under way, so concurrent puts cannot overshoot
        self._spans = 0
        self._corrupt_spans = 0
        self._corrupt_files = 0
        self._corrupt_lock = threading.Lock()
        self._writers = 0  # puts under way: close() waits for them before closing the fds
        self._memo_consumer = memo_consumer
        self._memo_max_bytes = memo_max_bytes
        self._memo_bytes = 0  # the weights of the memos kept
        self._keep_max = keep_bytes
        self._kept = 0  # payload bytes kept in memory
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
        names = os.listdir(self.directory)
        markers: dict[str, set[str]] = {}  # batch file name -> consumers done with it
        for name in names:
            if (done := batchfile.DONE.match(name)) is not None:
                markers.setdefault(done[1], set()).add(done[2])
        for name in names:
            path = self.directory / name
            if name.endswith(batchfile.TMP_SUFFIX):
                # Never renamed, so its put never returned: nobody was told it was stored.
                path.unlink(missing_ok=True)
                continue
            match = batchfile.BATCH.match(name)
            if match is None:
                continue  # the lock file, a marker, corrupt/, or not ours: left alone
            seq, spans = int(match[1]), int(match[2])
            highest = max(highest, seq)
            entry_done = markers.pop(name, set())
            waiting = set(self._consumers) - entry_done
            if not waiting:  # every consumer had it; its deletion was lost (or never done)
                batchfile.delete(path, entry_done)
                continue
            try:
                size = path.stat().st_size - batchfile.HEADER.size
            except OSError:
                size = -1
            if size < 0:
                self._quarantine(path, spans, "shorter than its header")
                batchfile.delete_markers(path, entry_done)
                continue
            entry = _Entry(seq, spans, size, path, waiting, entry_done)
            self._entries[seq] = entry
            for consumer in waiting:
                self._lanes[consumer].ready.append((seq, entry))
            self._bytes += size
            self._spans += spans
        for name, consumers in markers.items():
            # Markers of a deleted batch: gone before a new batch could take its seq.
            batchfile.delete_markers(self.directory / name, consumers)
        for lane in self._lanes.values():
            heapq.heapify(lane.ready)
        if self._entries:
            _logger.info(
                "otel-llm collector: recovered %d queued batch(es), %d span(s), from %s",
                len(self._entries),
                self._spans,
                self.directory,
            )
        return highest

    def _quarantine(self, path: Path, spans: int, why: str) -> None:
        """Moves a damaged batch file aside (kept for inspection) and counts its spans."""
        where = batchfile.move_aside(path)
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
    def consumers(self) -> tuple[str, ...]:
        """Who reads every batch, in the order given."""
        return self._consumers

    @property
    def batches(self) -> int:
        """Batches stored: some consumer has still to acknowledge them."""
        with self._lock:
            return len(self._entries)

    @property
    def bytes(self) -> int:
        """Payload bytes stored: batches some consumer has still to acknowledge."""
        with self._lock:
            return self._bytes

    def waiting(self, consumer: str) -> int:
        """Batches ``consumer`` has not acknowledged yet (waiting and in flight)."""
        with self._lock:
            lane = self._lane(consumer)
            return len(lane.in_flight) + sum(
                1 for seq, entry in lane.ready if self._entries.get(seq) is entry
            )

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
    def put(
        self,
        payload: builtins.bytes,
        spans: int,
        memo: Any = None,
        *,
        memo_weight: int | None = None,
    ) -> None:
        """Stores one batch; returns once it is durable.

        ``memo``: what the caller already derived from ``payload``, kept in memory for the
        memo consumer's ``get`` (it need not derive it again) while the memos kept stay under
        ``memo_max_bytes`` -- a consumer behind does not make memory grow with the queue. A
        memo weighs ``memo_weight`` (the caller's bound of the memory it keeps), else what the
        whole parsed request would take (``MEMO_BYTES_PER_PAYLOAD_BYTE``, at least
        ``MEMO_BYTES_PER_SPAN`` a span). Never stored on disk: the payload is the durable
        record.

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
        path = batchfile.batch_path(self.directory, seq, spans)
        stored = False
        try:
            batchfile.write(path, payload)
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
                    entry = _Entry(seq, spans, size, path, set(self._consumers))
                    weight = (
                        max(size * MEMO_BYTES_PER_PAYLOAD_BYTE, spans * MEMO_BYTES_PER_SPAN)
                        if memo_weight is None
                        else memo_weight
                    )
                    if (
                        memo is not None
                        and self._memo_consumer is not None
                        and self._memo_bytes + weight <= self._memo_max_bytes
                    ):
                        entry.memo = memo
                        entry.memo_weight = weight
                        self._memo_bytes += weight
                    if self._kept + size <= self._keep_max:
                        entry.payload = builtins.bytes(payload)  # a bytes-like: its own copy
                        self._kept += size
                    self._entries[seq] = entry
                    for lane in self._lanes.values():
                        heapq.heappush(lane.ready, (seq, entry))
                self._available.notify_all()  # a getter, or close() waiting for writers

    # --- get / ack / release --------------------------------------------------------------------
    def _lane(self, consumer: str) -> _Lane:
        lane = self._lanes.get(consumer)
        if lane is None:
            raise ValueError(f"{consumer!r} is not a consumer of this queue ({self._consumers})")
        return lane

    def get(self, timeout: float | None = None, consumer: str = UPSTREAM) -> QueueItem | None:
        """The oldest batch ``consumer`` has not taken, marked in flight for it; None after
        ``timeout`` seconds (None: wait until one arrives or the queue is closed) or once
        closed."""
        lane = self._lane(consumer)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                while not lane.ready and not self._closed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    self._available.wait(remaining)
                if self._closed:
                    return None
                seq, entry = heapq.heappop(lane.ready)
                if self._entries.get(seq) is not entry:
                    continue  # moved aside as damaged by another consumer meanwhile
                lane.in_flight[seq] = entry
                memo = self._take_memo(entry) if consumer == self._memo_consumer else None
                payload = entry.payload
            if payload is None:
                payload = self._read(entry)  # file I/O outside the lock
            if payload is not None:
                return QueueItem(entry.seq, payload, entry.spans, consumer, memo)

    def _take_memo(self, entry: _Entry) -> Any:
        """The entry's memo, no longer kept (taken once: after a release it is derived again).
        Under the lock."""
        memo, entry.memo = entry.memo, None
        if memo is not None:
            self._memo_bytes -= entry.memo_weight
        return memo

    def _forget(self, entry: _Entry) -> None:
        """What the entry keeps in memory, let go (it is deleted). Under the lock."""
        self._take_memo(entry)
        if entry.payload is not None:
            entry.payload = None
            self._kept -= entry.size

    def _read(self, entry: _Entry) -> builtins.bytes | None:
        """The entry's payload, or None after moving a damaged file aside."""
        try:
            data = entry.path.read_bytes()
            problem = batchfile.check(data)
        except OSError as exc:
            problem = f"unreadable: {exc}"
        if problem is None:
            return data[batchfile.HEADER.size :]
        if self._drop(entry):  # else another consumer found it damaged first
            self._quarantine(entry.path, entry.spans, problem)
            batchfile.delete_markers(entry.path, entry.done)
        return None

    def _drop(self, entry: _Entry) -> bool:
        """Forgets a damaged batch for every consumer (a ready heap drops it when popped)."""
        with self._lock:
            if self._entries.get(entry.seq) is not entry:
                return False
            del self._entries[entry.seq]
            self._forget(entry)
            for lane in self._lanes.values():
                lane.in_flight.pop(entry.seq, None)
            self._bytes -= entry.size
            self._spans -= entry.spans
            return True

    def ack(self, item: QueueItem) -> None:
        """``item``'s consumer is done with it (delivered, stored, or deliberately dropped): the
        batch is deleted once every consumer is. Unknown items are ignored."""
        with self._lock:
            lane = self._lanes.get(item.consumer)
            entry = lane.in_flight.pop(item.seq, None) if lane is not None else None
            if entry is None or self._entries.get(entry.seq) is not entry:
                return
            entry.waiting.discard(item.consumer)
            if entry.waiting:
                # Under the lock, so the consumer acknowledging last sees this marker in
                # ``done`` and deletes it with the batch. An empty file, not fsynced: lost in a
                # crash, this consumer takes the batch again, which at-least-once allows.
                try:
                    batchfile.mark_done(entry.path, item.consumer)
                    entry.done.add(item.consumer)
                except OSError as exc:
                    _logger.warning(
                        "otel-llm collector: could not mark %s done: %s", entry.path, exc
                    )
                return
            del self._entries[entry.seq]
            self._forget(entry)
            self._bytes -= entry.size
            self._spans -= entry.spans
        batchfile.delete(entry.path, entry.done)

    def release(self, item: QueueItem) -> None:
        """Puts an in-flight batch back for its consumer, to be taken again (e.g. after a
        failed send)."""
        with self._lock:
            lane = self._lanes.get(item.consumer)
            entry = lane.in_flight.pop(item.seq, None) if lane is not None else None
            if entry is None or lane is None or self._entries.get(entry.seq) is not entry:
                return
            heapq.heappush(lane.ready, (entry.seq, entry))
            self._available.notify_all()  # getters of every lane wait on this condition

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
