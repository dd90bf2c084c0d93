"""``CallLogExporter``: a SpanExporter that stores each LLM call span in the call log.

Use it in-process next to the OTLP exporter, under ``LLMSpanProcessor``::

    LLMSpanProcessor(BatchSpanProcessor(OTLPSpanExporter()),
                     BatchSpanProcessor(CallLogExporter("calls.db")))

Each span is priced by a ``otel_llm.pricer.Pricer`` -- the same one the processor and the
collector price with, so a span the processor already priced gets the same cost again (our own
cost attributes carry ``source=local`` and are not mistaken for a provider's). LLM spans marked
``otel_llm.call.counted_in`` (the call is counted in a nested span) are skipped; of the spans
that are not LLM calls, those a trace's cost tree shows are kept (agents, tools, and roots that
carry a roll-up, i.e. had calls under them: ``tracecost.span_role``, ``tracespans.py``).
Records go to a ``CallLogWriter``: ``export`` never waits for the database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_llm import _semconv as sc
from otel_llm import settings
from otel_llm.call import is_llm_call, may_be_llm_call
from otel_llm.calllog import tracespans
from otel_llm.calllog.record import CallRecord, build_record
from otel_llm.calllog.retention import RetentionJob
from otel_llm.calllog.store import CallStore, open_store
from otel_llm.calllog.writer import CallLogWriter
from otel_llm.pricer import Pricer, PricingOptions, scope_name, span_attributes
from otel_llm.pricing import PriceBook
from otel_llm.tracecost import agent_of_span, span_role

_logger = logging.getLogger(__name__)


class CallLogExporter(SpanExporter):
    """Stores LLM call spans in a call store (a path/URL, or a ready store it will not close).

    Args:
        store: SQLite path, ``sqlite:///path``, ``postgresql://...`` URL or a ``CallStore``;
            default: the ``call_log_store`` setting.
        price_book: the book to price with -- pass ``processor.price_book`` to share the
            processor's overrides; default: a book of the ``price_overrides`` setting.
        retention_interval: seconds between retention runs (0: none); see ``settings``.
        batch_size, flush_interval, max_pending, max_tokens, content_max_length,
        content_days, record_days: see ``otel_llm.settings``.
    """

    def __init__(
        self,
        store: str | Path | CallStore | None = None,
        *,
        price_book: PriceBook | None = None,
        batch_size: int | None = None,
        flush_interval: float | None = None,
        max_pending: int | None = None,
        max_tokens: int | None = None,
        content_max_length: int | None = None,
        retention_interval: float | None = None,
        content_days: int | None = None,
        record_days: int | None = None,
    ):
        if store is None or isinstance(store, str | Path):
            url = settings.CALL_LOG_STORE.resolve(str(store) if store is not None else None)
            self.store: CallStore = open_store(url, record_days=record_days)
            self._owns_store = True
        else:
            self.store = store
            self._owns_store = False
        self._pricer = Pricer(
            PricingOptions.from_settings(price_book=price_book, max_tokens=max_tokens)
        )
        self._content_max_length = settings.CONTENT_MAX_LENGTH.resolve(content_max_length)
        self.writer = CallLogWriter(
            self.store,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_pending=max_pending,
        )
        self.retention = RetentionJob(
            self.store,
            interval=retention_interval,
            content_days=content_days,
            record_days=record_days,
        ).start()
        self._shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shut_down:
            return SpanExportResult.FAILURE
        records: list[CallRecord] = []
        tree: list[tracespans.TraceSpan] = []
        for span in spans:
            try:
                record = self.record_of(span)
                if record is None:
                    kept = self.tree_span_of(span)
                    if kept is not None:
                        tree.append(kept)
            except Exception:  # one odd span must not lose the others
                _logger.exception("otel-llm: could not build a call record of a span")
                continue
            if record is not None:
                records.append(record)
        if records:
            self.writer.add(records)
        if tree:
            self.writer.add_spans(tree)
        return SpanExportResult.SUCCESS

    def tree_span_of(self, span: ReadableSpan) -> tracespans.TraceSpan | None:
        """The kept form of a span that is no LLM call but is in its trace's cost tree: an
        agent, a tool, or a root that had calls under it (it carries a roll-up)."""
        context = span.context
        if context is None or span.start_time is None:
            return None
        attributes = span_attributes(span)
        kind = span_role(span.name, attributes, span.parent is not None)
        if kind is None or (kind == "root" and sc.OTEL_LLM_ROLLUP_CALLS not in attributes):
            return None
        agent = agent_of_span(span.name, attributes) if kind == "agent" else None
        resource = span.resource.attributes if span.resource is not None else {}
        return tracespans.trace_span(
            trace_id=context.trace_id,
            span_id=context.span_id,
            parent_span_id=span.parent.span_id if span.parent is not None else None,
            name=span.name,
            kind=kind,
            service=resource.get("service.name"),
            agent_name=agent[0] if agent else None,
            start_time_ns=span.start_time,
            end_time_ns=span.end_time,
        )

    def record_of(self, span: ReadableSpan) -> CallRecord | None:
        """The call record of one span, or None when it is not an LLM call to store."""
        attributes = span_attributes(span)
        if sc.OTEL_LLM_CALL_COUNTED_IN in attributes:
            return None
        scope = scope_name(span)
        if not (may_be_llm_call(attributes) and is_llm_call(attributes, scope)):
            return None
        context = span.context
        if context is None:
            return None
        derived = self._pricer.price_sdk_span(span, attributes, scope)
        if derived is None:
            return None
        return build_record(
            derived,
            attributes,
            trace_id=context.trace_id,
            span_id=context.span_id,
            start_time_ns=span.start_time or derived.start_time_ns,
            end_time_ns=span.end_time,
            status_message=span.status.description,
            content_max_length=self._content_max_length,
            parent_span_id=span.parent.span_id if span.parent is not None else None,
        )

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.writer.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        """Write what is queued, stop the threads, close the store if this exporter opened
        it."""
        if self._shut_down:
            return
        self._shut_down = True
        self.retention.stop()
        self.writer.close()
        if self._owns_store:
            self.store.close()
