"""The GenAI metrics as prometheus_client's own metric objects, for its multiprocess mode.

With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn workers), prometheus_client's metric classes
write each value to a memory-mapped file that ``MultiProcessCollector`` sums over every worker
at scrape time. A custom collector's values live in one process's memory and would never reach
that sum, so in this mode the recorder updates these objects instead of its accumulators.
prometheus_client keeps no exemplars there, so none are made.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, values

from otel_llm.derive import Derived
from otel_llm.pricing import Cost


def multiprocess_mode() -> bool:
    """True when prometheus_client writes its values to files for ``MultiProcessCollector``
    (it decides when it is imported), or when the environment asks for that mode."""
    return values.ValueClass is not values.MutexValue or "PROMETHEUS_MULTIPROC_DIR" in os.environ


class ClientMetrics:
    """The families as prometheus_client metrics, registered in ``registry``.

    ``families``: (attribute, name, help, label names, buckets or None for a counter).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        families: Sequence[tuple[str, str, str, tuple[str, ...], Sequence[float] | None]],
    ):
        self.metrics: dict[str, Any] = {}
        for attribute, name, documentation, labelnames, buckets in families:
            if buckets is None:
                metric: Any = Counter(name, documentation, labelnames, registry=registry)
            else:
                metric = Histogram(
                    name, documentation, labelnames, registry=registry, buckets=buckets
                )
            self.metrics[attribute] = metric

    def series(self, labels: tuple[str, ...]) -> ClientSeries:
        return ClientSeries(self, labels)

    def count_invalid(self, attribute: str, reason: str) -> None:
        self.metrics["invalid"].labels(attribute, reason).inc()

    def count_error(self, stage: str, count: int) -> None:
        self.metrics["errors"].labels(stage).inc(count)


class ClientSeries:
    """The metric children of one label set, resolved once instead of per call."""

    __slots__ = ("_children", "_labels", "_metrics", "duration")

    def __init__(self, store: ClientMetrics, labels: tuple[str, ...]):
        self._metrics = store.metrics
        self._labels = labels
        self.duration = self._metrics["duration"].labels(*labels)
        self._children: dict[tuple[str, str], Any] = {}

    def _child(self, metric: str, extra: str = "") -> Any:
        # Made on first use: a label set that was never priced gets no cost series (not a 0).
        key = (metric, extra)
        child = self._children.get(key)
        if child is None:
            labels = (*self._labels, extra) if extra else self._labels
            child = self._children[key] = self._metrics[metric].labels(*labels)
        return child

    def observe(self, derived: Derived) -> None:
        call = derived.call
        if derived.duration is not None:
            self.duration.observe(derived.duration)
        if call.time_to_first_chunk is not None:
            self._child("ttfc").observe(call.time_to_first_chunk)
        for kind, count in (("input", call.input_tokens), ("output", call.output_tokens)):
            if count is not None:
                self._child("token_usage", kind).observe(count)
                self._child("tokens", kind).inc(count)
        for kind, count in (
            ("cache_read", call.cache_read_tokens),
            ("cache_creation", call.cache_creation_tokens),
            ("reasoning", call.reasoning_tokens),
        ):
            if count:  # parts of the totals: no series for a 0
                self._child("tokens", kind).inc(count)
        priced = derived.priced
        if isinstance(priced, Cost):
            self._child("cost").inc(priced.amount_float)
        else:
            self._child("unpriced", priced.reason).inc(1)
