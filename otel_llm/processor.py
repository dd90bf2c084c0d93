"""``LLMSpanProcessor``: prices and measures LLM call spans, then hands them on.

It wraps the processors that export (``LLMSpanProcessor(BatchSpanProcessor(exporter))``)
because the Python SDK freezes a span's attributes before any processor's ``_on_ending`` or
``on_end`` runs (opentelemetry-python #5614): the only way for exported spans to carry their cost
is to give the downstream processors a copy that has it. Spans that are not LLM calls are
passed through as they are.

otel-llm's own calls (``lifecycle.CallSpan``: ``llm_call`` and the instrumentors) need no copy:
when this processor is its provider's only one, ``CallSpan`` has it price the call on the live
span just before it ends (``price_ending``), and the span itself is handed on.
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
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, StatusCode
from prometheus_client import REGISTRY, CollectorRegistry

from otel_llm import _semconv as sc
from otel_llm import settings
from otel_llm.call import OPERATION_MARKER_NAMES as _OPERATION_MARKER_NAMES
from otel_llm.call import is_llm_call, may_be_llm_call, read_common, read_common_counts
from otel_llm.context import ENTERED, current_context_attributes
from otel_llm.derive import Derived, add_cost_attributes, label_value
from otel_llm.metrics.labels import extra_metric_labels
from otel_llm.metrics.otel import OTelMetricsRecorder
from otel_llm.metrics.prometheus import PrometheusRecorder, Series
from otel_llm.pricer import Pricer, PricingOptions, scope_name, span_attributes
from otel_llm.pricing import Cost, Discount, PriceBook, PriceOverride
from otel_llm.pricing.rates import FlatPrices, flat_units
from otel_llm.tracecost import (
    OPENINFERENCE_KIND,
    AgentScope,
    TraceCosts,
    agent_of_span,
    call_parts,
)

_logger = logging.getLogger(__name__)

# Context of spans that were not yet LLM calls when they started, until they end. Bounded: a
# span that never ends must not leak.
_MAX_PENDING = 10_000
# The one pass's table (see ``_end_common``): one entry per label set seen, as the recorder's.
_MAX_ENTRIES = 10_000
_BILLING_OVERRIDE = sc.OTEL_LLM_CONTEXT_BILLING
_OPERATION = sc.GEN_AI_OPERATION_NAME
_PROVIDER = sc.GEN_AI_PROVIDER_NAME
_REQUEST_MODEL = sc.GEN_AI_REQUEST_MODEL
_RESPONSE_MODEL = sc.GEN_AI_RESPONSE_MODEL
_ERROR_TYPE = sc.ERROR_TYPE
_SYSTEM = sc.GEN_AI_SYSTEM
_ERROR = StatusCode.ERROR  # read once: an enum member look-up is ~70 ns (timeit), per LLM span
_INVOKE_AGENT = sc.OPERATION_INVOKE_AGENT
# The two other markers (an import error, should there ever be more or fewer: on_end tests them
# one by one).
_MARKER, _OTHER_MARKER = _OPERATION_MARKER_NAMES

_Entry = tuple[Series, FlatPrices, tuple[str, str, str, str]]
"""What a call's raw label values decide: its metric series, the flat prices it is priced at
(``flat_units``') and its cost's identity (source, price data, provider and model ids)."""


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
        # Older SDKs (1.30, tests/test_sdk_versions.py) have no _on_ending on their processors
        # and never call it.
        self._endings = tuple(
            ending
            for processor in self._downstream
            if (ending := getattr(processor, "_on_ending", None)) is not None
        )
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
        # Spans of ours priced on the live span (``price_ending``) whose on_end has not come yet.
        self._live: dict[int, None] = {}
        self._costs = TraceCosts(
            settings.ROLLUP_MAX_OPEN.resolve(rollup_max_open), self.prometheus.record_evicted
        )
        # Its tables, tested for emptiness on every span: one attribute away, not two.
        self._under = self._costs.under
        self._traces = self._costs.traces
        # The one pass (``_end_common``): raw label values -> what they decide, learnt from the
        # full path. Only when the call is recorded by this process's accumulators alone: the
        # OTel meter and prometheus_client's multiprocess mode take the full path.
        self._entries: dict[tuple[Any, ...], _Entry] = {}
        self._learns = meter_provider is None and not self._pricer.book.bills
        self._max_tokens = self._pricer.max_tokens
        self._extra = self._pricer.extra_attributes
        self._service_name = self._pricer.service_name
        self._last_service: tuple[Resource | None, str] = (None, self._service_name(None))

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
            if ENTERED.ever:
                context = current_context_attributes()
                if context:
                    self._attach_context(span, context)
            # Most spans stop at the three tests below, so the SDK span's own dict is read in
            # place (as span_attributes does): the call alone would double this hook's cost.
            try:
                attributes = span._attributes._dict  # type: ignore[union-attr]
            except AttributeError:
                attributes = span_attributes(span)
            # Only spans under an agent, and agents, are followed: outside any agent, an LLM
            # call's span stops here too (agent_of_span's tests; 330 -> 160 ns on its start).
            if (
                self._under
                or (_OPERATION in attributes and attributes[_OPERATION] == _INVOKE_AGENT)
                or OPENINFERENCE_KIND in attributes
            ):
                self._follow(span, attributes)
        except Exception:  # noqa: BLE001 - telemetry must never break the application
            self._failed("on_start")
        if self._downstream:  # a loop over none would still make an iterator, on every span
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
                _drop_oldest(self._nested)
            self._nested[parent.span_id] = counted_in

    def _attach_context(self, span: Span, context: Mapping[str, Any]) -> None:
        if _is_llm_call_span(span):
            span.set_attributes(context)
            return
        # Instrumentations may name the operation only later; keep the context till the end.
        with self._pending_lock:
            if len(self._pending) >= _MAX_PENDING:
                _drop_oldest(self._pending)
            self._pending[span.context.span_id] = context

    def _on_ending(self, span: Span) -> None:
        # A method of the class: set on the instance (the downstream's own, or a no-op), it
        # saved a frame but cost every span ~800 instructions more than it saved
        # (benchmarks/span_instructions.py).
        if self._endings:
            for ending in self._endings:
                ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        handed_on = span
        try:
            # span_attributes, inline: this runs on every span. As in on_start, the SDK's inner
            # mapping is read as it is (only price_ending, which writes to it, needs a dict).
            try:
                attributes = span._attributes._dict  # type: ignore[union-attr]
            except AttributeError:
                attributes = span_attributes(span)
            # With nothing followed (no llm_context pending, no nested call, no agent, no open
            # trace), a span that names no GenAI operation and carries no other library's
            # marker is all most spans are: these tests are all they cost.
            if self._pending or self._nested or self._under or self._traces:
                handed_on = self._end_followed(span, attributes)
            elif _OPERATION in attributes:
                if not self._live or self._live.pop(span.context.span_id, 0) is not None:
                    handed_on = self._end_common(span, attributes, None)
                # else: priced, measured and given its cost before it ended (price_ending)
            elif _MARKER in attributes or _OTHER_MARKER in attributes:
                # may_be_llm_call's other markers, written out: no call, no loop (17 ns a
                # plain span, timeit), on every plain span.
                handed_on = self._end_followed(span, attributes)
        except Exception:  # noqa: BLE001 - telemetry must never break the application
            self._failed("on_end")
        if self._downstream:
            for processor in self._downstream:
                try:
                    processor.on_end(handed_on)
                except Exception:  # noqa: BLE001 - one failing exporter must not stop the others
                    self._failed("downstream")

    def _end_followed(  # noqa: PLR0911 - each way out is a kind of span
        self, span: ReadableSpan, attributes: Mapping[str, Any]
    ) -> ReadableSpan:
        """The span to hand on, with what the processor follows of it looked up.

        In an application at work this is most spans' way: each LLM call leaves its trace's
        roll-up and a note for its parent open until they end, so every span ending meanwhile
        comes here, plain ones included (processor_overhead.py's ``in-trace`` kind)."""
        try:  # the SDK's fields, as on_end reads its attributes: each property is a call
            span_context, parent = span._context, span._parent
        except AttributeError:
            span_context, parent = span.context, span.parent
        span_id = span_context.span_id if span_context is not None else 0  # 0: no span's id
        if self._live and self._live.pop(span_id, 0) is None:
            return span  # priced, measured and given its cost before it ended: price_ending
        # Single pops need no lock (the lock keeps an insert and its eviction together); the
        # lock's two calls were a third of a plain span's way through here.
        context = self._pending.pop(span_id, None) if self._pending else None
        counted_in = self._nested.pop(span_id, None) if self._nested else None
        agent = self._costs.ended(span_id) if self._under else None
        if (
            _OPERATION in attributes or _MARKER in attributes or _OTHER_MARKER in attributes
        ) and is_llm_call(attributes, scope := scope_name(span)):
            if counted_in is not None:
                # Priced and measured as the LLM span nested in it; exported saying so.
                if parent is not None and not parent.is_remote:
                    self._note_nested(parent, counted_in)
                if self._downstream:
                    marked = {**attributes, sc.OTEL_LLM_CALL_COUNTED_IN: counted_in}
                    return _priced_copy(span, marked)
                return span
            if context is None and agent is None:
                return self._end_common(span, attributes, scope)
            return self._end_call(span, attributes, scope, context, agent)
        if agent is None and not self._traces:
            return span
        is_agent = agent is not None and agent.span_id == span_id
        is_root = parent is None or parent.is_remote
        if not (is_agent or is_root):
            return span  # no call that ended under it is its own to hand on
        return self._end_other(span, attributes, agent if is_agent else None, is_root)

    def _end_common(  # noqa: PLR0912 - one pass, written out: each branch is a fallback
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        scope: str | None,
        live_end: int = 0,
    ) -> ReadableSpan:
        """``_end_call`` of a call without llm_context or agent to merge, in one pass from the
        span's attributes to the metric cells and the priced copy's cost attributes, when the
        span is in the common form (``read_common``), has usage and no billing override, and a
        call with the same raw label values was priced from flat prices before (its entry);
        any other call takes ``_end_call``, which makes the entry when it can.

        The full path builds an ``LLMCall``, a ``Cost`` and a ``Derived`` and reads them back;
        on ``processor_overhead.py``'s GenAI span (no downstream, CPU time of the hook alone,
        the minimum of 7 x 20,000) on_end took 6.5 µs that way and 4.3 µs in the first one
        pass; it now takes ~2.6 µs (``processor_hooks.py --calls 50000``): the metric updates
        with their exemplar tests ~0.7, reading and checking the counts ~0.6, the key and its
        look-up ~0.3, the integer price (``flat_units``) ~0.2. Here the raw label values are the
        key of what they decide: the series (as the recorder's own raw-value table) and the flat
        prices (which depend on the provider and models alone). tests/test_onepass.py feeds a
        corpus of spans through both paths and compares the exported attributes and the
        exposition byte for byte.

        ``scope``: the span's scope name when the caller read it already; None: read here,
        with the span's other fields.

        ``live_end``: the span is still live and ends then (``price_ending``); its cost is set
        in its own attributes (``attributes`` is its dict) instead of a copy's, on the full
        path too; a span that is no LLM call raises ``_NotLive``, before anything is recorded.
        """
        get = attributes.get
        operation = get(_OPERATION)
        provider = get(_PROVIDER)
        error = get(_ERROR_TYPE)
        if type(span) in _SDK_SPANS:
            # The SDK's own classes, read from their fields: each public property is a Python
            # call (0.1-0.2 µs each on a busy machine, timeit), and eight are read here.
            try:
                status = span._status._status_code
                resource: Resource | None = span._resource
                start = span._start_time
                end = span._end_time
                context: SpanContext = span._context  # type: ignore[assignment]  # ended: set
                parent = span._parent
                if scope is None:  # the caller did not read it: the span's fields have it
                    own = span._instrumentation_scope
                    scope = own._name if own is not None else None
            except AttributeError:  # another release of the SDK
                status, resource, start, end, context, parent, scope = _span_fields(span, scope)
        else:
            status, resource, start, end, context, parent, scope = _span_fields(span, scope)
        failed = status is _ERROR
        # The raw label values first: a call with the same ones was read and priced before
        # (its entry), so only what varies from call to call is read and checked here.
        key: tuple[Any, ...] = (
            operation,
            provider,
            get(_REQUEST_MODEL),
            get(_RESPONSE_MODEL),
            error,
            failed,
            # The last resource's name, kept: an application has one resource, most often.
            self._last_service[1]
            if resource is self._last_service[0]
            else self._service_of(resource),
        )
        if self._extra:
            key += tuple(label_value(get(name)) for name in self._extra)
        try:
            entry = self._entries.get(key)
        except TypeError:  # a value that cannot be a key (a list): not in the common form
            entry = None
        if entry is None:
            return self._end_first(span, attributes, scope, key, live_end)
        counts = read_common_counts(attributes, self._max_tokens, scope)
        if (
            counts is None
            or _BILLING_OVERRIDE in attributes
            or (not provider and get(_SYSTEM) is not None)  # read_common's check of the name
        ):
            return self._end_call(span, attributes, scope, None, None, None, live_end)
        input_tokens, output_tokens, cache_read, cache_creation, reasoning, ttfc, missing = counts
        priced_output = output_tokens
        if priced_output is None and operation == "embeddings":
            priced_output = 0  # as the book prices it: an embedding has no output
        if missing or input_tokens is None or priced_output is None:
            return self._end_call(span, attributes, scope, None, None, None, live_end)
        series, prices, identity = entry
        # Counts up to max_tokens: below the prices' bound (flat_rates), no test needed here.
        units = flat_units(
            prices,
            input_tokens,
            priced_output,
            cache_read or 0,
            cache_creation or 0,
            reasoning or 0,
        )
        end = live_end or end
        divisor = units[6]
        amount = units[0] / divisor
        series.add(
            (end - start) / 1e9 if start and end and end >= start else None,
            ttfc,
            input_tokens,
            output_tokens,
            cache_read,
            cache_creation,
            reasoning,
            amount,
            None,
            context,
        )
        if parent is not None and not parent.is_remote:
            self._note_nested(parent, format(context.span_id, "016x"))
            cost = Cost.join(units, identity).amount
            self._costs.add_call(
                (
                    input_tokens,
                    output_tokens,
                    cache_read,
                    cache_creation,
                    reasoning,
                    cost,
                    failed or bool(error),
                ),
                None,
                context.trace_id,
            )
        if not self._downstream:
            return span
        floats = (
            amount,
            units[1] / divisor,
            units[2] / divisor,
            units[3] / divisor,
            units[4] / divisor,
            units[5] / divisor,
        )
        if live_end:
            # The live span's own dict, changed as the copy's would be (same keys, same order).
            add_cost_attributes(attributes, floats, identity)  # type: ignore[arg-type]
            return span
        return _priced_copy(span, add_cost_attributes(dict(attributes), floats, identity))

    def _service_of(self, resource: Resource | None) -> str:
        name = self._service_name(resource)
        self._last_service = (resource, name)
        return name

    def _end_first(
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        scope: str | None,
        key: tuple[Any, ...],
        live_end: int,
    ) -> ReadableSpan:
        """``_end_common`` with no entry for the call's label values: the full path, which
        makes the entry when the call is in the common form, has usage and no billing."""
        fields = read_common(attributes, self._max_tokens, scope)
        if fields is None:
            # Not in the common form, or no LLM call at all (an agent's or a tool's span).
            if live_end or is_llm_call(attributes, scope):
                return self._end_call(span, attributes, scope, None, None, None, live_end)
            return span
        output_tokens = fields[5]
        if (
            _BILLING_OVERRIDE in attributes
            or fields[13]  # usage missing
            or fields[4] is None  # no input count
            or (output_tokens is None and fields[0] != "embeddings")
        ):
            return self._end_call(span, attributes, scope, None, None, None, live_end)
        return self._end_call(span, attributes, scope, None, None, key, live_end)

    def price_ending(self, span: Span, end_time: int) -> bool:
        """Prices an LLM call of otel-llm's own on its live span, just before ``CallSpan`` ends
        it at ``end_time``: True when done, and the span then carries its cost when it ends, so
        on_end hands that span on as it is, with no copy. False, with nothing done: on_end
        prices the span as any other.

        Only for a call with no llm_context or agent to merge and no nested call counted in it
        (those keep the copy), and only with a downstream to hand the span to (metrics-only:
        nobody would see the cost). ``CallSpan`` calls it only when
        this processor is its provider's only one, so no other processor sees a span it would
        not have seen before. tests/test_live_pricing.py compares the spans and metrics of the
        same calls on both paths.
        """
        if not self._downstream:
            return False
        try:
            # A span of the SDK's (CallSpan found this processor through it): read from its
            # fields, as _end_common does.
            attributes = span._attributes._dict  # type: ignore[union-attr]
            span_id = span._context.span_id  # type: ignore[union-attr]
            if (
                type(attributes) is not dict
                or span._end_time is not None  # ended by someone else: exported already
                or _OPERATION not in attributes
                or span_id in self._pending
                or span_id in self._nested
                or span_id in self._under
            ):
                return False
            self._end_common(span, attributes, None, end_time)
        except _NotLive:
            return False
        except Exception:  # noqa: BLE001 - telemetry must never break the application
            # on_end then prices the span as any other.
            self._failed("price_ending")
            return False
        live = self._live
        if len(live) >= _MAX_PENDING:
            with self._pending_lock:  # an end that never came to on_end: the oldest goes
                _drop_oldest(live)
        live[span_id] = None  # one dict operation: atomic, no lock needed
        return True

    def _end_call(  # noqa: PLR0917 - the hot path: positional
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        scope: str | None,
        context: Mapping[str, Any] | None,
        agent: AgentScope | None,
        key: tuple[Any, ...] | None = None,
        live_end: int = 0,
    ) -> ReadableSpan:
        """Prices and measures an LLM call; the span to hand on. ``key``: the call's raw label
        values when ``_end_common`` has no entry for them yet; ``live_end``: as
        ``_end_common``'s (never with a context or an agent to merge)."""
        if agent is not None:  # the span's own values win, then llm_context's, then the agent's
            attributes = {**agent.call_attributes(), **(context or {}), **attributes}
        elif context:
            attributes = {**context, **attributes}
        derived = self._pricer.price_sdk_span(span, attributes, scope, live_end or None)
        if derived is None:
            if live_end:
                raise _NotLive
            return span
        if key is not None and self._learns:
            self._learn(key, derived)
        parent = _local_parent(span)
        if parent is not None:
            self._note_nested(parent, format(span.context.span_id, "016x"))
        if agent is not None or parent is not None:
            # Its agents' and its trace's totals; a call that is its own local root has none.
            trace_id = span.context.trace_id if parent is not None else None
            self._costs.add_call(call_parts(derived), agent, trace_id)
        self._record(derived)
        if not self._downstream:  # metrics-only: nobody sees the priced copy
            return span
        if live_end:
            derived.price_attributes(attributes)  # type: ignore[arg-type]  # the live span's
            return span
        return _priced_copy(span, derived.priced_attributes(attributes))

    def _learn(self, key: tuple[Any, ...], derived: Derived) -> None:
        """Makes the one pass's entry for ``key`` when its call was priced from flat prices
        that do not vary with time, with nothing rejected and no billing."""
        priced = derived.priced
        if (
            derived.billing is not None
            or derived.rejected
            or not isinstance(priced, Cost)
            or priced.units is None
        ):
            return
        flat = self._pricer.book.flat_rates(derived.call, self._max_tokens)
        series = self.prometheus.series(derived)
        if flat is None or not isinstance(series, Series):
            return
        with self._pending_lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (series, *flat)

    def _end_other(
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        agent: AgentScope | None,
        is_root: bool,
    ) -> ReadableSpan:
        """An agent span (``agent``: its own scope) or a local root: hands on a copy with the
        calls that ended under it."""
        rollup = agent.rollup if agent is not None else None
        if is_root:
            # The local root: every call of the trace that ended here, agents' or not.
            rollup = self._costs.root_ended(span.context.trace_id) or rollup
        if rollup is None or not self._downstream:
            return span
        return _priced_copy(span, {**attributes, **rollup.attributes()})

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


class _NotLive(Exception):
    """The call is not priced on its live span: on_end prices it."""


_SDK_SPANS = frozenset({ReadableSpan, Span, getattr(sdk_trace, "_Span", Span)})
"""The SDK's own span classes (``_Span``: what its tracers make, a subclass that adds
nothing), whose fields ``_end_common`` reads directly."""


def _span_fields(
    span: ReadableSpan, scope: str | None
) -> tuple[
    StatusCode,
    Resource | None,
    int | None,
    int | None,
    SpanContext,
    SpanContext | None,
    str | None,
]:
    """The span's status code, resource, start and end times, context, parent and scope name
    (``scope`` when given) through its public properties: ``_end_common`` reads the SDK's
    own classes from their fields."""
    return (
        span.status.status_code,
        span.resource,
        span.start_time,
        span.end_time,
        span.context,
        span.parent,
        scope if scope is not None else scope_name(span),
    )


def _drop_oldest(table: dict[int, Any]) -> None:
    """Drops a full table's oldest entry, under the lock that keeps inserts and evictions in
    order. Ending spans pop their own entries without it, so this one may go or the table
    change meanwhile: nothing may escape into the application's call."""
    with contextlib.suppress(StopIteration, RuntimeError):
        table.pop(next(iter(table)), None)


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
