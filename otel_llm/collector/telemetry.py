"""The collector service's own Prometheus metrics: what it received (and received again),
refused, forwarded, retried and dropped, and how full its queue is.

Every known label combination is created at 0 on start-up, so a dashboard or an alert such as
``increase(otel_llm_collector_dropped_spans_total[5m]) > 0`` sees the series before the first
event instead of "no data". ``semconv/metrics.yaml`` lists these metrics (component
``collector``); tests/test_semconv.py checks that it matches what this module registers.
"""

from __future__ import annotations

from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

PROM_RECEIVED: Final = "otel_llm_collector_received_spans_total"
PROM_REFUSED: Final = "otel_llm_collector_refused_requests_total"
PROM_FORWARDED: Final = "otel_llm_collector_forwarded_spans_total"
PROM_RETRIED: Final = "otel_llm_collector_retried_spans_total"
PROM_DROPPED: Final = "otel_llm_collector_dropped_spans_total"
PROM_DUPLICATE: Final = "otel_llm_collector_duplicate_spans_total"
PROM_QUEUE_BATCHES: Final = "otel_llm_collector_queue_batches"
PROM_QUEUE_BYTES: Final = "otel_llm_collector_queue_bytes"
PROM_QUEUE_CAPACITY: Final = "otel_llm_collector_queue_capacity_bytes"

TRANSPORTS: Final = ("grpc", "http")
REFUSAL_REASONS: Final = (
    "queue_full",
    "malformed",
    "too_large",
    "unsupported_media_type",
    "shutting_down",
)
"""Why a request was refused; the client was told, so nothing was lost."""
DROP_REASONS: Final = ("rejected_by_upstream", "partial_success", "corrupt_queue_file")
"""Why acknowledged spans were given up: these are the spans lost."""


class QueueState(Protocol):
    """What the queue gauges read (``DiskQueue`` has it)."""

    @property
    def batches(self) -> int: ...

    @property
    def bytes(self) -> int: ...

    @property
    def max_bytes(self) -> int: ...


def _strip_total(name: str) -> str:
    return name.removesuffix("_total")  # prometheus_client appends it to counters itself


class CollectorMetrics:
    """The service's counters and queue gauges, registered on ``registry``.

    The methods never raise: they are called on the request and forwarding paths.
    """

    def __init__(self, registry: CollectorRegistry):
        self._received = Counter(
            _strip_total(PROM_RECEIVED),
            "Spans received and accepted (stored in the queue).",
            ["transport"],
            registry=registry,
        )
        self._refused = Counter(
            _strip_total(PROM_REFUSED),
            "Export requests refused; the client was told (and retries if retryable).",
            ["transport", "reason"],
            registry=registry,
        )
        self._forwarded = Counter(
            _strip_total(PROM_FORWARDED),
            "Spans the upstream accepted.",
            registry=registry,
        )
        self._retried = Counter(
            _strip_total(PROM_RETRIED),
            "Spans of export attempts that failed retryably (sent again later).",
            registry=registry,
        )
        self._dropped = Counter(
            _strip_total(PROM_DROPPED),
            "Acknowledged spans given up, by reason.",
            ["reason"],
            registry=registry,
        )
        self._duplicate = Counter(
            _strip_total(PROM_DUPLICATE),
            "Priced spans received again within the dedup window: forwarded, not counted "
            "again in the GenAI metrics.",
            registry=registry,
        )
        self._batches = Gauge(
            PROM_QUEUE_BATCHES, "Batches in the queue (waiting and in flight).", registry=registry
        )
        self._bytes = Gauge(PROM_QUEUE_BYTES, "Payload bytes in the queue.", registry=registry)
        self._capacity = Gauge(
            PROM_QUEUE_CAPACITY, "The queue's size bound in payload bytes.", registry=registry
        )
        for transport in TRANSPORTS:
            self._received.labels(transport)
            for reason in REFUSAL_REASONS:
                self._refused.labels(transport, reason)
        for reason in DROP_REASONS:
            self._dropped.labels(reason)

    def received(self, n: int, transport: str) -> None:
        if n > 0:  # inc() raises on a negative amount; a count of 0 changes nothing
            self._received.labels(transport).inc(n)

    def refused(self, transport: str, reason: str) -> None:
        self._refused.labels(transport, reason).inc()

    def forwarded(self, n: int) -> None:
        if n > 0:
            self._forwarded.inc(n)

    def retried(self, n: int) -> None:
        if n > 0:
            self._retried.inc(n)

    def dropped(self, n: int, reason: str) -> None:
        if n > 0:
            self._dropped.labels(reason).inc(n)

    def duplicate(self, n: int) -> None:
        if n > 0:
            self._duplicate.inc(n)

    def watch_queue(self, queue: QueueState) -> None:
        """Makes the gauges read ``queue`` at every scrape (no stale copy to keep updated)."""
        self._batches.set_function(lambda: queue.batches)
        self._bytes.set_function(lambda: queue.bytes)
        self._capacity.set_function(lambda: queue.max_bytes)
