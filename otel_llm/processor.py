"""``LLMSpanProcessor``: prices and measures LLM call spans, then hands them on.

It wraps the processors that export (``LLMSpanProcessor(BatchSpanProcessor(exporter))``)
because the Python SDK freezes a span's attributes before any processor's ``_on_ending`` or
``on_end`` runs (opentelemetry-python #5614): the only way for exported spans to carry their cost
is to give the downstream processors a copy that has it. Spans that are not LLM calls are
passed through as they are.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext
from prometheus_client import REGISTRY, CollectorRegistry

from otel_llm import _semconv as sc
from otel_llm import settings
from otel_llm.call import is_llm_call, may_be_llm_call
from otel_llm.context import current_context_attributes
from otel_llm.derive import Derived
from otel_llm.metrics.labels import extra_metric_labels
from otel_llm.metrics.otel import OTelMetricsRecorder
from otel_llm.metrics.prometheus import PrometheusRecorder
from otel_llm.pricer import Pricer, PricingOptions, scope_name, span_attributes
from otel_llm.pricing import Discount, PriceBook, PriceOverride
from otel_llm.tracecost import (
    OPENINFERENCE_KIND,
    AgentScope,
    TraceCosts,
    agent_of_span,
)

_logger = logging.getLogger(__name__)

# Context of spans that were not yet LLM calls when they started, until they end. Bounded: a
# span that never ends must not leak.
_MAX_PENDING = 10_000


class LLMSpanProcessor(SpanProcessor):
    """Derives cost, token and latency metrics from GenAI spans; exports them priced.

    Args:
        *downstream: processors that receive every span (LLM calls with cost attributes added).
            With none, the processor only records metrics.
        registry: prometheus_client registry (default: the global ``REGISTRY``).
        meter_provider: also record the GenAI metrics through this OpenTelemetry MeterProvider.
        price_book: a ready ``PriceBook``; otherwise one is built from ``price_overrides``.
        price_overrides: a YAML/JSON file path or a list of ``PriceOverride`` and ``Discount``.
        extra_labels, max_label_values, max_tokens, price_cache_size, billing_gateways,
            rollup_max_open, agent_label: see ``otel_llm.settings``.
    """

    def __init__(
        self,
        *downstream: SpanProcessor,
        registry: CollectorRegistry | None = None,
        meter_provider: MeterProvider | None = None,
        price_book: PriceBook | None = None,
        price_overrides: str | Path | Sequence[PriceOverride | Discount] | None = None,
        extra_labels: Mapping[str, str] | Sequence[str] | None = None,
        max_label_values: int | None = None,
        max_tokens: int | None = None,
        price_cache_size: int | None = None,
        rollup_max_open: int | None = None,
        agent_label: bool | None = None,
        billing_gateways: Sequence[str] | None = None,
    ):
        self._downstream = tuple(downstream)
        self.prometheus = PrometheusRecorder.for_registry(
            registry if registry is not None else REGISTRY,
            extra_labels=extra_metric_labels(extra_labels, agent_label),
            max_label_values=settings.MAX_LABEL_VALUES.resolve(max_label_values),
        )
        # The registry's first processor fixed its label names; a later one follows them.
        labels = self.prometheus.extra_labels
        self._pricer = Pricer(
            PricingOptions.from_settings(
                price_book=price_book,
                price_overrides=price_overrides,
                price_cache_size=price_cache_size,
                max_tokens=max_tokens,
                extra_attributes=labels.values(),
                billing_gateways=billing_gateways,
            )
        )
        self._recorders: list[PrometheusRecorder | OTelMetricsRecorder] = [self.prometheus]
        if meter_provider is not None:
            self._recorders.append(OTelMetricsRecorder(meter_provider, labels))
        self._pending: dict[int, Mapping[str, Any]] = {}
        self._pending_lock = threading.Lock()
        self._nested: dict[int, str] = {}
        self._costs = TraceCosts(
            settings.ROLLUP_MAX_OPEN.resolve(rollup_max_open), self.prometheus.record_evicted
        )
        # Its tables, tested for emptiness on every span: one attribute away, not two.
        self._under = self._costs.under
        self._traces = self._costs.traces

    @property
    def downstream(self) -> tuple[SpanProcessor, ...]:
        return self._downstream

    @property
    def price_book(self) -> PriceBook:
        return self._pricer.book

    @property
    def pricer(self) -> Pricer:
        """How this processor prices a span: share it to price the same way elsewhere."""
        return self._pricer

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            context = current_context_attributes()
            if context:
                self._attach_context(span, context)
            # Only spans under an agent, and agents, are followed; an agent is a GenAI span.
            # Most spans stop at these three tests, so the SDK span's own dict is read in place
            # (as span_attributes does): the call alone would double this hook's cost.
            try:
                attributes = span._attributes._dict  # type: ignore[union-attr]
            except AttributeError:
                attributes = span_attributes(span)
            if (
                self._under
                or sc.GEN_AI_OPERATION_NAME in attributes
                or OPENINFERENCE_KIND in attributes
            ):
                self._follow(span, attributes)
        except Exception:  # noqa: BLE001 - telemetry must never break the application
            self._failed("on_start")
        for processor in self._downstream:
            try:
                processor.on_start(span, parent_context=parent_context)
            except Exception:  # noqa: BLE001 - one failing processor must not stop the others
                self._failed("downstream")

    def _follow(self, span: Span, attributes: Mapping[str, Any]) -> None:
        agent = agent_of_span(span.name, attributes)
        if agent is None and not self._under:
            return  # an LLM call outside any agent run
        parent = span.parent
        self._costs.started(
            span.context.span_id,
            parent.span_id if parent is not None and not parent.is_remote else None,
            agent,
        )

    def _note_nested(self, parent: SpanContext, counted_in: str) -> None:
        # Two instrumentations of one call (ours and another library's, a framework's and the
        # SDK's, llm_call around an instrumented client) nest one LLM span in another. The
        # innermost is priced: it is closest to the provider's response (usage, retries each
        # billed). It ends first, so it leaves a note for its local parent: should that be an
        # LLM span too, it would count the same call twice. Decided at the end, when even
        # libraries that set their attributes late have said what their span is.
        with self._pending_lock:
            if len(self._nested) >= _MAX_PENDING:
                self._nested.pop(next(iter(self._nested)))
            self._nested[parent.span_id] = counted_in

    def _attach_context(self, span: Span, context: Mapping[str, Any]) -> None:
        if _is_llm_call_span(span):
            span.set_attributes(context)
            return
        # Instrumentations may name the operation only later; keep the context till the end.
        with self._pending_lock:
            if len(self._pending) >= _MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            self._pending[span.context.span_id] = context

    def _on_ending(self, span: Span) -> None:
        for processor in self._downstream:
            processor._on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        handed_on = span
        try:
            attributes = span_attributes(span)
            context = self._pending_context(span) if self._pending else None
            counted_in = self._nested_child(span) if self._nested else None
            agent = self._costs.ended(span.context.span_id) if self._under else None
            # Most spans are not LLM calls: the first test is all they cost.
            if may_be_llm_call(attributes) and is_llm_call(attributes, scope := scope_name(span)):
                if counted_in is not None:
                    # Priced and measured as the LLM span nested in it; exported saying so.
                    parent = _local_parent(span)
                    if parent is not None:
                        self._note_nested(parent, counted_in)
                    if self._downstream:
                        marked = {**attributes, sc.OTEL_LLM_CALL_COUNTED_IN: counted_in}
                        handed_on = _priced_copy(span, marked)
                else:
                    handed_on = self._end_call(span, attributes, scope, context, agent)
            elif agent is not None or self._traces:
                handed_on = self._end_other(span, attributes, agent)
        except Exception:  # noqa: BLE001 - telemetry must never break the application
            self._failed("on_end")
        for processor in self._downstream:
            try:
                processor.on_end(handed_on)
            except Exception:  # noqa: BLE001 - one failing exporter must not stop the others
                self._failed("downstream")

    def _end_call(
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        scope: str | None,
        context: Mapping[str, Any] | None,
        agent: AgentScope | None,
    ) -> ReadableSpan:
        """Prices and measures an LLM call; the span to hand on."""
        if agent is not None:  # the span's own values win, then llm_context's, then the agent's
            attributes = {**agent.call_attributes(), **(context or {}), **attributes}
        elif context:
            attributes = {**context, **attributes}
        derived = self._pricer.price_sdk_span(span, attributes, scope)
        if derived is None:
            return span
        parent = _local_parent(span)
        if parent is not None:
            self._note_nested(parent, format(span.context.span_id, "016x"))
        if agent is not None or parent is not None:
            # Its agents' and its trace's totals; a call that is its own local root has none.
            trace_id = span.context.trace_id if parent is not None else None
            self._costs.add_call(derived, agent, trace_id)
        self._record(derived)
        if not self._downstream:  # metrics-only: nobody sees the priced copy
            return span
        return _priced_copy(span, derived.priced_attributes(attributes))

    def _end_other(
        self, span: ReadableSpan, attributes: Mapping[str, Any], agent: AgentScope | None
    ) -> ReadableSpan:
        """An agent span or a local root: hands on a copy with the calls that ended under it."""
        is_agent = agent is not None and agent.span_id == span.context.span_id
        rollup = agent.rollup if is_agent else None  # type: ignore[union-attr]
        if _local_parent(span) is None:
            # The local root: every call of the trace that ended here, agents' or not.
            rollup = self._costs.root_ended(span.context.trace_id) or rollup
        if rollup is None or not self._downstream:
            return span
        return _priced_copy(span, {**attributes, **rollup.attributes()})

    def _nested_child(self, span: ReadableSpan) -> str | None:
        if span.context is None:
            return None
        with self._pending_lock:
            return self._nested.pop(span.context.span_id, None)

    def _pending_context(self, span: ReadableSpan) -> Mapping[str, Any] | None:
        if span.context is None:
            return None
        with self._pending_lock:
            return self._pending.pop(span.context.span_id, None)

    def _record(self, derived: Derived) -> None:
        for recorder in self._recorders:
            recorder.record(derived)
        if derived.rejected:
            self.prometheus.record_rejected(derived.rejected)

    def _failed(self, stage: str) -> None:
        _logger.exception("otel-llm: %s failed; the span is passed on unchanged", stage)
        with contextlib.suppress(Exception):  # nothing is left to report to
            self.prometheus.record_error(stage)

    def shutdown(self) -> None:
        for processor in self._downstream:
            try:
                processor.shutdown()
            except Exception:  # noqa: BLE001 - every processor gets its chance to shut down
                self._failed("downstream")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush every downstream processor (even after one failed) within one shared deadline."""
        deadline = time.monotonic_ns() + timeout_millis * 1_000_000
        results = [
            processor.force_flush(max(0, (deadline - time.monotonic_ns()) // 1_000_000))
            for processor in self._downstream
        ]
        return all(results)


def _local_parent(span: ReadableSpan) -> SpanContext | None:
    """The span's parent when it is in this process; None for a local root."""
    parent = span.parent
    return parent if parent is not None and not parent.is_remote else None


def _is_llm_call_span(span: object) -> bool:
    """A local SDK span (not a remote or non-recording one) that is an LLM call."""
    if not isinstance(span, ReadableSpan):
        return False
    attributes = span_attributes(span)
    return may_be_llm_call(attributes) and is_llm_call(attributes, scope_name(span))


def _priced_copy(span: ReadableSpan, attributes: dict[str, Any]) -> ReadableSpan:
    """A copy of the ended span with other attributes.

    The SDK hands processors a ``ReadableSpan`` snapshot; sharing its fields (events, links,
    resource -- all immutable once ended) is a fraction of the cost of rebuilding it through
    the public properties, which copy events and links into new tuples.
    """
    if type(span) is ReadableSpan and "_attributes" in vars(span):
        copy = _PricedSpan.__new__(_PricedSpan)
        vars(copy).update(vars(span))
        copy._attributes = attributes
        copy._dropped = (span.dropped_attributes, span.dropped_events, span.dropped_links)
        return copy
    return _PricedSpan(span, attributes)


class _PricedSpan(ReadableSpan):
    """An ended span with extra attributes; everything else is the original's."""

    _dropped: tuple[int, int, int]

    def __init__(self, span: ReadableSpan, attributes: dict[str, Any]):
        super().__init__(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            events=span.events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
        self._dropped = (span.dropped_attributes, span.dropped_events, span.dropped_links)

    @property
    def dropped_attributes(self) -> int:
        return self._dropped[0]

    @property
    def dropped_events(self) -> int:
        return self._dropped[1]

    @property
    def dropped_links(self) -> int:
        return self._dropped[2]
