"""Forwarding queued OTLP batches to the upstream (see ``upstream``), with retries and backoff.

A permanent rejection drops the batch (counted as ``dropped{reason="rejected_by_upstream"}``);
spans the upstream reports as rejected in a partial success are counted as
``dropped{reason="partial_success"}``.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from otel_llm.background import Background
from otel_llm.collector.backoff import Sleep, backoff_delay
from otel_llm.collector.queue import DiskQueue, QueueItem
from otel_llm.collector.telemetry import CollectorMetrics
from otel_llm.collector.upstream import SendResult, Upstream

_logger = logging.getLogger(__name__)


class Forwarder(Background):
    """Worker threads that take batches from ``queue`` and send them to ``upstream``.

    A batch is acknowledged (deleted from the queue) once the upstream accepted it or refused
    it for good; after a retryable failure the same worker retries it after a backoff delay
    (at least what Retry-After/RetryInfo asked, capped at ``max_retry_after``), so a down
    upstream costs one attempt per worker per delay, never a busy loop. ``stop`` lets sends
    under way finish and puts unsent batches back; whatever is still on disk is sent after a
    restart. The forwarder owns ``upstream`` and closes it in ``stop``.

    ``sleep`` waits out every backoff delay: ``threading.Event.wait`` (real time, cut short by
    ``stop``) unless a test passes a virtual clock's, so backoff tests need not wait real seconds.
    """

    def __init__(
        self,
        queue: DiskQueue,
        upstream: Upstream,
        metrics: CollectorMetrics,
        *,
        workers: int = 2,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        send_timeout: float | None = None,
        max_retry_after: float = 300.0,
        sleep: Sleep = threading.Event.wait,
    ):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if not 0 < initial_backoff <= max_backoff:
            raise ValueError("need 0 < initial_backoff <= max_backoff")
        self._queue = queue
        self._upstream = upstream
        self._metrics = metrics
        self._workers = workers
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        # None: the upstream's own timeout (make_upstream's), else 10 s.
        self._send_timeout = (
            send_timeout if send_timeout is not None else float(getattr(upstream, "timeout", 10.0))
        )
        self._max_retry_after = max_retry_after
        self._stopping = threading.Event()
        self._sleep = sleep
        self._threads: list[threading.Thread] = []
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self._rng_lock = threading.Lock()

    def start(self) -> Forwarder:
        self._count_corrupt()  # damaged files found when the queue was opened
        for index in range(self._workers):
            thread = threading.Thread(
                target=self._run, name=f"otel-llm-forwarder-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the workers: a send under way may finish (up to ``timeout`` seconds in all),
        a batch waiting for its retry goes back to the queue. Then closes the upstream: over gRPC
        that cancels a send still running (its batch goes back); an HTTP send runs to its own
        timeout in its daemon thread. Either way the batch stays on disk until acknowledged."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        self._upstream.close()
        for thread in self._threads:
            thread.join(1.0)
            if thread.is_alive():
                _logger.warning("otel-llm collector: %s did not stop in time", thread.name)
        self._threads = [thread for thread in self._threads if thread.is_alive()]

    # --- workers ----------------------------------------------------------------------------
    def _count_corrupt(self) -> None:
        spans = self._queue.take_corrupt()
        if spans:
            self._metrics.dropped(spans, "corrupt_queue_file")

    def _run(self) -> None:
        while not self._stopping.is_set():
            item = self._queue.get(timeout=0.25)
            self._count_corrupt()
            if item is None:
                if self._queue.closed:
                    return  # get() no longer waits: looping would spin
                continue
            try:
                self._deliver(item)
            except Exception:  # a worker must survive anything
                _logger.exception("otel-llm collector: forwarding failed unexpectedly")
                self._queue.release(item)
                self._sleep(self._stopping, self._initial_backoff)

    def _send(self, item: QueueItem) -> SendResult:
        try:
            return self._upstream.send(item.payload, self._send_timeout)
        except Exception as exc:  # noqa: BLE001 - Upstream.send should not raise; be sure
            return SendResult(False, True, detail=f"send raised {exc!r}")

    def _deliver(self, item: QueueItem) -> None:
        attempt = 0
        while True:
            result = self._send(item)
            # Counted before the ack: once the queue is empty, the counters are final.
            if result.ok:
                rejected = min(result.rejected_spans, item.spans)
                self._metrics.forwarded(item.spans - rejected)
                self._metrics.dropped(rejected, "partial_success")
                self._queue.ack(item)
                if rejected or result.detail:
                    _logger.warning(
                        "otel-llm collector: upstream rejected %d of %d span(s): %s",
                        rejected,
                        item.spans,
                        result.detail,
                    )
                if attempt:
                    _logger.info("otel-llm collector: upstream accepting again")
                return
            if not result.retryable:
                self._metrics.dropped(item.spans, "rejected_by_upstream")
                self._queue.ack(item)
                _logger.error(
                    "otel-llm collector: upstream refused a batch of %d span(s) for good, "
                    "dropped: %s",
                    item.spans,
                    result.detail,
                )
                return
            self._metrics.retried(item.spans)
            with self._rng_lock:
                delay = backoff_delay(attempt, self._initial_backoff, self._max_backoff, self._rng)
            if result.retry_after is not None:
                delay = max(delay, min(result.retry_after, self._max_retry_after))
            # One warning per outage per worker, then debug: a long outage must not flood logs.
            log = _logger.warning if attempt == 0 else _logger.debug
            log("otel-llm collector: export failed (%s); retrying in %.2fs", result.detail, delay)
            if self._sleep(self._stopping, delay):
                self._queue.release(item)
                return
            attempt += 1
