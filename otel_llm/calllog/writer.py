"""The writer between span processing and the store: batches, in a background thread.

``add`` only appends to a bounded queue -- it never waits for the database and never raises
into the application (or the collector) handing calls over. A thread writes batches of up to
``batch_size`` calls, at the latest ``flush_interval`` seconds after the oldest was added. A
call the store cannot take is quarantined by the store, the rest of its batch stored
(``isolation.py``); a batch the database fails (a restarting database) is retried with backoff
a few times, then dropped; calls that find the queue full are dropped too. All are counted and
logged, never silently lost.

``write_now`` is the other way in, for a caller that keeps the calls durably itself until they
are stored (the collector's queue): it writes in the caller's thread and raises when the
database fails, dropping nothing -- the caller offers the calls again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence

from otel_llm import settings
from otel_llm.calllog.record import CallRecord
from otel_llm.calllog.store import CallStore
from otel_llm.calllog.tracespans import TraceSpan

_logger = logging.getLogger(__name__)

_MAX_ATTEMPTS = 5
_BACKOFF_SECONDS = (0.1, 0.5, 2.0, 5.0)


class CallLogWriter:
    """Writes call records to a store in batches from a background thread.

    ``max_attempts``: tries of one batch before it is dropped (backoff 0.1 s to 5 s between).

    Counters (read them any time): ``written`` (newly stored), ``duplicates`` (already stored,
    ignored), ``quarantined`` (kept in the store's dead letters, not stored), ``dropped``
    (lost: queue full, a batch that kept failing, dead letters past their bound),
    ``failed_writes`` (attempts that raised).
    """

    def __init__(
        self,
        store: CallStore,
        *,
        batch_size: int | None = None,
        flush_interval: float | None = None,
        max_pending: int | None = None,
        max_attempts: int = _MAX_ATTEMPTS,
    ):
        self._store = store
        self.max_attempts = max(1, max_attempts)
        self.batch_size = settings.CALL_LOG_BATCH_SIZE.resolve(batch_size)
        self.flush_interval = settings.CALL_LOG_FLUSH_INTERVAL.resolve(flush_interval)
        self.max_pending = settings.CALL_LOG_MAX_PENDING.resolve(max_pending)
        # Calls, and the spans of traces' trees (``add_spans``) behind the calls queued before
        # them: a root's name reaches the calls written just before it.
        self._pending: deque[CallRecord | TraceSpan] = deque()
        self._oldest = 0.0  # monotonic time the oldest pending record was added
        self._in_flight = 0
        self._condition = threading.Condition()
        self._flush_requested = False
        self._closing = False
        self.written = 0
        self.duplicates = 0
        self.dropped = 0
        self.quarantined = 0
        self.failed_writes = 0
        self.dropped_spans = 0
        """Spans of traces' trees whose write failed (``add_spans``)."""
        self._thread = threading.Thread(target=self._run, name="otel-llm-calllog-writer")
        self._thread.daemon = True
        self._thread.start()

    def add(self, records: Iterable[CallRecord]) -> int:
        """Queue records for writing; the number accepted (the rest were dropped: queue full
        or writer closed). Never blocks on I/O, never raises."""
        try:
            return self._add(records)
        except Exception:  # never raise into the caller
            _logger.exception("otel-llm: call log writer could not queue calls")
            return 0

    def add_spans(self, spans: Iterable[TraceSpan]) -> int:
        """Queue the roots, agents and tools of traces (``tracespans.py``) like calls; the
        number accepted. Never blocks on I/O, never raises."""
        try:
            return self._add(spans)
        except Exception:  # never raise into the caller
            _logger.exception("otel-llm: call log writer could not queue spans")
            return 0

    def _add(self, records: Iterable[CallRecord | TraceSpan]) -> int:
        batch = list(records)
        with self._condition:
            room = 0 if self._closing else self.max_pending - len(self._pending)
            accepted = batch[: max(room, 0)]
            lost = len(batch) - len(accepted)
            if accepted:
                was_empty = not self._pending
                if was_empty:
                    self._oldest = time.monotonic()
                self._pending.extend(accepted)
                # The thread sleeps untimed while nothing is queued: wake it to start the
                # interval clock, or to write a full batch now.
                if was_empty or len(self._pending) >= self.batch_size:
                    self._condition.notify_all()
            if lost:
                first = self.dropped == 0
                self.dropped += lost
        if lost and (first or self.dropped % 10_000 < lost):
            _logger.warning(
                "otel-llm: call log queue full (%d calls); %d calls dropped so far",
                self.max_pending,
                self.dropped,
            )
        return len(accepted)

    def write_now(self, records: Sequence[CallRecord]) -> int:
        """Write ``records`` in the caller's thread, in transactions of at most ``batch_size``;
        the number newly stored. A call the store cannot take is quarantined by it, as in the
        background path. Raises what the store raised when the database failed (counted in
        ``failed_writes``; nothing is dropped: the caller still has the records and offers them
        again, and the transactions already committed then count as duplicates)."""
        stored = 0
        for start in range(0, len(records), self.batch_size):
            batch = records[start : start + self.batch_size]
            try:
                result = self._store.write_batch(batch)
            except Exception:
                with self._condition:
                    self.failed_writes += 1
                raise
            quarantined = len(result.quarantined)
            with self._condition:
                self.written += result.stored
                self.duplicates += len(batch) - result.stored - quarantined
                self.quarantined += quarantined
                self.dropped += result.evicted
            stored += result.stored
        return stored

    @property
    def pending(self) -> int:
        """Calls queued or being written."""
        with self._condition:
            return len(self._pending) + self._in_flight

    def _next_batch(self) -> list[CallRecord | TraceSpan] | None:
        """Wait for a full batch, the flush interval, a flush or close; None: stop."""
        with self._condition:
            while True:
                if self._pending:
                    due = self._oldest + self.flush_interval
                    now = time.monotonic()
                    if (
                        len(self._pending) >= self.batch_size
                        or self._flush_requested
                        or self._closing
                        or now >= due
                    ):
                        size = min(self.batch_size, len(self._pending))
                        batch = [self._pending.popleft() for _ in range(size)]
                        self._oldest = now
                        self._in_flight = len(batch)
                        return batch
                    self._condition.wait(due - now)
                elif self._closing:
                    return None
                else:
                    self._flush_requested = False
                    self._condition.notify_all()  # flush() waiters: all written
                    self._condition.wait()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._write(batch)
            with self._condition:
                self._in_flight = 0
                self._condition.notify_all()

    def _write(self, queued: list[CallRecord | TraceSpan]) -> None:
        batch = [item for item in queued if isinstance(item, CallRecord)]
        spans = [item for item in queued if isinstance(item, TraceSpan)]
        if batch:
            self._write_calls(batch)
        if spans:
            self._write_spans(spans)

    def _write_spans(self, spans: list[TraceSpan]) -> None:
        write = getattr(self._store, "write_trace_spans", None)
        if write is None:
            return
        try:
            write(spans)
        except Exception:  # the tree shows the calls without these spans
            with self._condition:
                self.dropped_spans += len(spans)
            _logger.exception("otel-llm: %d spans of traces' trees not written", len(spans))

    def _write_calls(self, batch: list[CallRecord]) -> None:
        for attempt in range(self.max_attempts):
            try:
                result = self._store.write_batch(batch)
            except Exception:  # a failed write is retried, then counted
                self.failed_writes += 1
                if attempt == self.max_attempts - 1 or self._closing:
                    with self._condition:
                        self.dropped += len(batch)
                    _logger.exception(
                        "otel-llm: call log write failed %d times; %d calls dropped",
                        attempt + 1,
                        len(batch),
                    )
                    return
                _logger.warning("otel-llm: call log write failed; retrying", exc_info=True)
                time.sleep(_BACKOFF_SECONDS[min(attempt, len(_BACKOFF_SECONDS) - 1)])
            else:
                quarantined = len(result.quarantined)
                self.written += result.stored
                self.duplicates += len(batch) - result.stored - quarantined
                self.quarantined += quarantined
                if result.evicted:
                    with self._condition:
                        self.dropped += result.evicted
                return

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything queued now; True if done within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            self._flush_requested = True
            self._condition.notify_all()
            while self._pending or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return True

    def close(self, timeout: float | None = 30.0) -> bool:
        """Write what is queued (within ``timeout``) and stop the thread; later ``add`` calls
        are dropped. True if everything was written."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
        self._thread.join(timeout)
        done = not self._thread.is_alive()
        with self._condition:
            left = len(self._pending)
        if not done or left:
            _logger.warning("otel-llm: call log writer closed with %d calls unwritten", left)
        return done and not left
