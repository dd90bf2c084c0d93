"""The call sink fed from the queue: the LLM calls of every accepted batch, read back from disk.

The queue's batch file is the durable record for both of its consumers, the forwarder and the
call sink (the call log). ``CallFeeder`` reads its own lane of the queue -- the batches accepted
since it started and, after a restart, those it had not finished -- finds their LLM calls again
and hands them to the sink, several batches per call under load; it acknowledges the batches
only once the sink returned, i.e. once the store committed their calls. So a call reaches the
sink if and only if its span was acknowledged, whenever the process dies: at least once, and
the store ignores a call id it already has.

The calls of a batch put by this process come with it (the queue's memo: what the request
path derived, kept in memory within a bound); those of a batch replayed after a restart, or
put while the feeder was far behind, are derived again from the payload. Its spans are
already priced: enriching them again derives each call (the same book, the same start time:
the same cost) without changing a span or recording a metric -- the request path recorded
those when it accepted the request. Either way the batch file is the durable record.

A sink that raises (the store is down) gets the same batches again after a backoff, never
dropped; meanwhile the queue fills and clients are told to retry, so nothing acknowledged is
lost. Each failure is counted (``otel_llm_processor_errors_total{stage="call_sink"}``).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_llm.collector.backoff import Sleep, backoff_delay
from otel_llm.collector.enrich import EnrichedCall, EnrichedSpan, Enricher
from otel_llm.collector.queue import DiskQueue, QueueItem
from otel_llm.collector.telemetry import CollectorMetrics

_logger = logging.getLogger(__name__)

CALLS = "calls"
"""The call sink's consumer name in the queue (its done-markers: ``*.calls.done``)."""

CallSink = Callable[[Sequence[EnrichedCall]], None]
"""Stores the LLM calls of accepted batches (the call log plugs in here). It returns once they
are stored for good and raises when they are not (they are offered again later); a call may be
offered again after a crash, so storing one twice must keep one."""

SpanSink = Callable[[Sequence[EnrichedSpan], Sequence[EnrichedCall]], None]
"""Keeps the other spans of the trees of accepted batches (roots, agents, tools), given with
the calls the call sink has just stored (the call log decides which to keep); the same
contract as ``CallSink``: returns once stored, raises to be offered them again."""

MAX_CALLS = 5000
"""Spans of the batches read for one sink call, at most (an upper bound of its calls, known
without parsing). The collector's call log writes each sink call in one transaction, so this
and ``MAX_BYTES``, not ``call_log_batch_size`` (the in-process writer's), size them."""
MAX_BYTES = 8 << 20
"""Payload bytes read for one sink call, at most: parsed requests stay in memory until then."""


class CallFeeder:
    """A thread that hands the LLM calls of the queue's batches to ``sink``.

    ``stop`` lets it finish the batches already accepted (the receivers are stopped first)
    within its timeout; what is left stays on disk for the next start.
    """

    def __init__(
        self,
        queue: DiskQueue,
        enricher: Enricher,
        sink: CallSink,
        metrics: CollectorMetrics,
        *,
        on_failure: Callable[[], None] = lambda: None,
        span_sink: SpanSink | None = None,
        settle: Callable[[Sequence[EnrichedCall], bool], None] | None = None,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Sleep = threading.Event.wait,
    ):
        if not 0 < initial_backoff <= max_backoff:
            raise ValueError("need 0 < initial_backoff <= max_backoff")
        self._queue = queue
        self._enricher = enricher
        self._sink = sink
        self._span_sink = span_sink
        self._settle = settle
        """The policies' verdicts set on the calls before they are stored (they are evaluated
        just after their batch is queued; ``CollectorPolicies.settle``)."""
        self._metrics = metrics
        self._on_failure = on_failure
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._sleep = sleep
        self._stopping = threading.Event()
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self._thread: threading.Thread | None = None
        self.stored = 0
        """Calls the sink has taken (stored, or already stored)."""
        self.failures = 0
        """Sink calls that raised (their batches were offered again)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otel-llm-call-feeder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Hands over what is queued (within ``timeout`` seconds), then stops. True if the
        thread ended; whatever it did not hand over is still on disk."""
        self._stopping.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            _logger.warning("otel-llm collector: the call feeder did not stop in time")
            return False
        return True

    # --- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        attempt = 0
        while True:
            stopping = self._stopping.is_set()
            # Once stopping, only what is ready now: the receivers no longer add any.
            item = self._queue.get(timeout=0 if stopping else 0.25, consumer=CALLS)
            self._count_corrupt()
            if item is None:
                if stopping or self._queue.closed:
                    return
                continue
            items = self._more(item)
            try:
                found = [self._found(taken) for taken in items]
                calls = [call for taken, _ in found for call in taken]
                if calls:
                    if self._settle is not None:
                        # A batch without its memo had its calls derived again: new objects,
                        # maybe read before their request was evaluated.
                        self._settle(calls, any(taken.memo is None for taken in items))
                    self._sink(calls)
                spans = [span for _, taken in found for span in taken]
                if self._span_sink is not None and (spans or calls):
                    self._span_sink(spans, calls)
            except Exception:  # noqa: BLE001 - logged in _failed; the batches are offered again
                self._failed(items, attempt)
                if self._stopping.is_set():
                    return  # left on disk for the next start: the store is failing now
                delay = backoff_delay(attempt, self._initial_backoff, self._max_backoff, self._rng)
                if self._sleep(self._stopping, delay):
                    return
                attempt += 1
                continue
            if attempt:
                _logger.info("otel-llm collector: the call sink is accepting calls again")
            attempt = 0
            self.stored += len(calls)
            for taken in items:
                self._queue.ack(taken)

    def _more(self, first: QueueItem) -> list[QueueItem]:
        """``first`` and the batches ready right now, up to the bounds: one sink call (one
        transaction) for many small requests under load, no waiting when it is quiet."""
        items, size = [first], len(first.payload)
        spans = first.spans  # an upper bound of the calls, known without parsing
        while spans < MAX_CALLS and size < MAX_BYTES:
            item = self._queue.get(timeout=0, consumer=CALLS)
            if item is None:
                break
            items.append(item)
            size += len(item.payload)
            spans += item.spans
        return items

    def _found(self, item: QueueItem) -> tuple[list[EnrichedCall], list[EnrichedSpan]]:
        """The batch's calls and the trees' other spans (the memo, or found again)."""
        memo = item.memo
        if isinstance(memo, list):
            return memo, []
        if isinstance(memo, tuple):
            return memo[0], memo[1]
        try:
            request = ExportTraceServiceRequest.FromString(item.payload)
        except DecodeError:  # it was decoded before it was queued: damaged past its CRC
            _logger.error("otel-llm collector: a queued batch no longer decodes; no calls read")
            return [], []
        result = self._enricher.enrich(request, raw=item.payload, record=False)
        return result.calls, result.tree

    def _failed(self, items: list[QueueItem], attempt: int) -> None:
        self.failures += 1
        for item in items:
            self._queue.release(item)
        # One error with its traceback per outage, then debug: a long outage must not flood.
        if attempt == 0:
            _logger.exception(
                "otel-llm collector: the call sink failed; %d batch(es) kept, retrying", len(items)
            )
        else:
            _logger.debug("otel-llm collector: the call sink failed again", exc_info=True)
        try:
            self._on_failure()
        except Exception:
            _logger.debug("otel-llm collector: counting a call sink failure failed", exc_info=True)

    def _count_corrupt(self) -> None:
        # Without an upstream there is no forwarder to count damaged files.
        spans = self._queue.take_corrupt()
        if spans:
            self._metrics.dropped(spans, "corrupt_queue_file")
