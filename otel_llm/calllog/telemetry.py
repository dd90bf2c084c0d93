"""The call log writer's counters as Prometheus metrics, read live from the writer.

The writer counts what it stores and what it loses (see ``writer.py``); an operator must see a
call log that drops calls on the same ``/metrics`` as the service feeding it.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from otel_llm.calllog import limits
from otel_llm.calllog.cardinality import CAPPED, DailyCaps
from otel_llm.calllog.writer import CallLogWriter


class WriterMetrics(Collector):
    """``otel_llm_call_log_*`` families of one writer (and of its store's daily cap)."""

    def __init__(self, writer: CallLogWriter, caps: DailyCaps | None = None):
        self._writer = writer
        self._caps = caps

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        writer = self._writer
        for name, doc, value in (
            ("otel_llm_call_log_written_calls", "Calls newly stored.", writer.written),
            (
                "otel_llm_call_log_duplicate_calls",
                "Calls already stored (a span delivered again), ignored.",
                writer.duplicates,
            ),
            (
                "otel_llm_call_log_dropped_calls",
                "Calls lost: the writer's buffer was full, a batch kept failing, or dead "
                "letters past their bound.",
                writer.dropped,
            ),
            (
                "otel_llm_call_log_quarantined_calls",
                "Calls the store could not take, kept in its dead letters with the error "
                "(`otel-llm calls dead-letters`); the rest of their batch was stored.",
                writer.quarantined,
            ),
            (
                "otel_llm_call_log_failed_writes",
                "Batch writes that failed (each retried before its calls are dropped).",
                writer.failed_writes,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        folded = CounterMetricFamily(
            "otel_llm_call_log_folded_calls",
            "Calls added to a daily aggregate's 'other' value: that day already had "
            "call_log_max_daily_values values of the dimension (call_log_max_daily_users "
            "users or API keys; the record keeps its value).",
            labels=["dimension"],
        )
        for dimension in CAPPED:  # every series from the start, as alerts expect
            count = self._caps.folded[dimension] if self._caps is not None else 0
            folded.add_metric([dimension], count)
        yield folded
        corrected = CounterMetricFamily(
            "otel_llm_call_log_corrected_calls",
            "Calls with a value no store could take, corrected before it was stored (text "
            "cleaned or cut, a number out of range made unknown), per field; in this process.",
            labels=["field"],
        )
        for field, count in limits.corrections().items():
            corrected.add_metric([field], count)
        yield corrected
        yield GaugeMetricFamily(
            "otel_llm_call_log_pending_calls",
            "Calls waiting to be written.",
            value=writer.pending,
        )


def register(
    writer: CallLogWriter, registry: CollectorRegistry, caps: DailyCaps | None = None
) -> WriterMetrics:
    """Expose ``writer``'s counters on ``registry``, and the calls ``caps`` (its store's
    ``daily_caps``) folded."""
    metrics = WriterMetrics(writer, caps)
    registry.register(metrics)
    return metrics
