"""Prometheus metrics of LLM calls, with trace-id exemplars.

Names and labels are those the OTel->Prometheus translation gives the GenAI metrics, so a
dashboard works the same whether the series come from here or through a Collector. One
recorder per registry: a second processor on the same registry shares it instead of failing
on duplicate metric names.

A call is recorded into plain accumulators (``accumulators.py``) that a custom collector renders
at scrape time, exactly as prometheus_client's ``Counter``/``Histogram`` would; in
prometheus_client's multiprocess mode into its own metric objects instead (``multiprocess.py``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from otel_llm import _semconv as sc
from otel_llm.call import Rejected
from otel_llm.derive import Derived
from otel_llm.metrics.accumulators import CounterCell, FamiliesCollector, Family, HistogramCell
from otel_llm.metrics.labels import LabelLimiter
from otel_llm.metrics.multiprocess import ClientMetrics, ClientSeries, multiprocess_mode
from otel_llm.pricing import Cost

_logger = logging.getLogger(__name__)

_recorders: weakref.WeakKeyDictionary[CollectorRegistry, PrometheusRecorder] = (
    weakref.WeakKeyDictionary()
)
_recorders_lock = threading.Lock()
_MAX_RAW_KEYS = 10_000
_EXEMPLAR_INTERVAL_S = 1.0
# The buckets' upper bounds with +Inf, as the histogram families bucket them.
_DURATION_BOUNDS = (*(float(b) for b in sc.DURATION_BUCKETS), math.inf)
_TOKEN_BOUNDS = (*(float(b) for b in sc.TOKEN_BUCKETS), math.inf)


def _count_slots(bounds: Sequence[float]) -> tuple[int, ...]:
    """The bucket of a count ``n`` (an int >= 0) is ``slots[((n or 1) - 1).bit_length()]``:
    the bit length of ``n - 1`` groups the counts between two powers of two, each group falls
    in one bucket when every finite bound is a power of two (the token buckets are powers of
    four; checked here), and a list index is ~35 ns against bisect_left's ~100 (timeit), for
    two token histograms a call. 1,025 groups, up to 2**1024: a larger count is no float, so
    the histogram's sum could not take it either (an OverflowError after bisect_left, here an
    IndexError before anything is changed)."""
    slots: list[int] = []
    last = len(bounds) - 1  # +Inf's
    for bits in range(1025):
        lowest, highest = (2 ** (bits - 1) + 1 if bits else 0), 2**bits
        slot = bisect_left(bounds, highest)
        if bisect_left(bounds, lowest) != slot:
            raise ValueError(f"a bucket bound is not a power of two: {bounds}")
        slots.append(slot)
        if slot == last:  # every larger count is in +Inf's bucket too
            slots += [last] * (1024 - bits)
            break
    return tuple(slots)


_TOKEN_SLOTS = _count_slots(_TOKEN_BOUNDS)


def _families(
    labels: tuple[str, ...],
) -> list[tuple[str, str, str, tuple[str, ...], Sequence[float] | None]]:
    """(attribute, name, help, label names, buckets or None for a counter), in the order they
    are exposed. Counter names lose ``_total``: prometheus_client's exposition appends it."""
    typed = (*labels, sc.TOKEN_TYPE_LABEL)
    return [
        ("duration", sc.PROM_DURATION, "Duration of GenAI operations.", labels,
         sc.DURATION_BUCKETS),
        ("token_usage", sc.PROM_TOKEN_USAGE,
         "Tokens used per GenAI operation (input includes cached, output includes reasoning).",
         typed, sc.TOKEN_BUCKETS),
        ("ttfc", sc.PROM_TIME_TO_FIRST_CHUNK,
         "Time to the first chunk with content of streamed GenAI operations.", labels,
         sc.DURATION_BUCKETS),
        ("tokens", sc.PROM_TOKENS.removesuffix("_total"),
         "Tokens of GenAI operations by type: input and output are totals, cache_read, "
         "cache_creation and reasoning are parts of them.", typed, None),
        ("cost", sc.PROM_COST.removesuffix("_total"), "Cost of GenAI operations in USD.", labels,
         None),
        ("unpriced", sc.PROM_UNPRICED.removesuffix("_total"),
         "GenAI operations that could not be priced, by reason.", (*labels, sc.REASON_LABEL),
         None),
        ("invalid", sc.PROM_INVALID_ATTRIBUTES.removesuffix("_total"),
         "Span attribute values ignored because they were not trustworthy.",
         ("attribute", sc.REASON_LABEL), None),
        ("errors", sc.PROM_PROCESSOR_ERRORS.removesuffix("_total"),
         "Internal otel-llm failures, caught so they never reach the application.", ("stage",),
         None),
    ]  # fmt: skip


class _Accumulators:
    """The families as accumulators, exposed to ``registry`` by one collector."""

    def __init__(
        self,
        registry: CollectorRegistry,
        families: Sequence[tuple[str, str, str, tuple[str, ...], Sequence[float] | None]],
    ):
        self.family = {
            attribute: Family(name, documentation, labelnames, buckets)
            for attribute, name, documentation, labelnames, buckets in families
        }
        self.collector = FamiliesCollector(list(self.family.values()))
        self.lock = self.collector.lock
        registry.register(self.collector)

    def series(self, labels: tuple[str, ...]) -> Series:
        with self.lock:
            return Series(self, labels)

    def count_invalid(self, attribute: str, reason: str) -> None:
        with self.lock:
            self.family["invalid"].counter((attribute, reason)).value += 1

    def count_error(self, stage: str, count: int) -> None:
        with self.lock:
            self.family["errors"].counter((stage,)).value += count


class Traced(Protocol):
    """What a call's exemplar links to: its span's context (the processor's one pass) or its
    ``Derived``. Its trace id is read only when an exemplar is stored, about once a second a
    bucket (the span context's is a property: ~50 ns, timeit, on every call otherwise)."""

    @property
    def trace_id(self) -> int: ...


def _bucket_exemplar(
    cell: HistogramCell, slot: int, value: float, traced: Traced, now: float
) -> None:
    cell.exemplar_at[slot] = now
    cell.exemplars[slot] = (traced.trace_id, value, time.time())


def _counter_exemplar(cell: CounterCell, amount: float, traced: Traced, now: float) -> None:
    cell.exemplar_at = now
    cell.exemplar = (traced.trace_id, amount, time.time())


class Series:
    """The cells of one label set, resolved once instead of per call. A cell is made on first
    use (so a label set that was never priced gets no cost series, not even a 0), in the order
    prometheus_client would have made its children: the exposition's order."""

    __slots__ = (
        "_labels", "_lock", "_store", "cache_creation", "cache_read", "cost", "duration",
        "reasoning", "tokens_input", "tokens_output", "ttfc", "unpriced", "usage_input",
        "usage_output",
    )  # fmt: skip

    def __init__(self, store: _Accumulators, labels: tuple[str, ...]):
        self._store = store
        self._lock = store.lock
        self._labels = labels
        self.duration = store.family["duration"].histogram(labels)
        self.ttfc: HistogramCell | None = None
        self.usage_input: HistogramCell | None = None
        self.usage_output: HistogramCell | None = None
        self.tokens_input: CounterCell | None = None
        self.tokens_output: CounterCell | None = None
        self.cache_read: CounterCell | None = None
        self.cache_creation: CounterCell | None = None
        self.reasoning: CounterCell | None = None
        self.cost: CounterCell | None = None
        self.unpriced: dict[str, CounterCell] = {}

    def _histogram(self, metric: str, extra: str = "") -> HistogramCell:
        labels = (*self._labels, extra) if extra else self._labels
        return self._store.family[metric].histogram(labels)

    def _counter(
        self, metric: str, extra: str = "", of: HistogramCell | None = None
    ) -> CounterCell:
        labels = (*self._labels, extra) if extra else self._labels
        return self._store.family[metric].counter(labels, of)

    def observe(self, derived: Derived) -> None:
        """Adds one call."""
        call = derived.call
        priced = derived.priced
        self.add(
            derived.duration,
            call.time_to_first_chunk,
            call.input_tokens,
            call.output_tokens,
            call.cache_read_tokens,
            call.cache_creation_tokens,
            call.reasoning_tokens,
            priced.amount_float if isinstance(priced, Cost) else None,
            None if isinstance(priced, Cost) else priced.reason,
            derived,
        )

    def add(  # noqa: PLR0912, PLR0915, PLR0917 - see the docstring
        self,
        duration: float | None,
        ttfc: float | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read: int | None,
        cache_creation: int | None,
        reasoning: int | None,
        amount: float | None,
        reason: str | None,
        traced: Traced,
    ) -> None:
        """Adds one call from its values (the processor's one pass has no ``Derived``):
        ``amount`` its cost in USD, else ``reason`` why it has none. Written out rather than
        through helpers: this runs for every call, and a Python call per update would cost as
        much as the update.

        An exemplar is stored when its bucket (a counter: its only value) has had none for
        ``_EXEMPLAR_INTERVAL_S``: Prometheus exposes only the latest, so one per call would be
        wasted work; one per second per bucket keeps every scrape's exemplars fresh, and a rare
        slow call still gets its bucket's. A value's bucket is the first bound it does not
        exceed, as prometheus_client picks it. (Values are never NaN: durations come from
        integer times, token counts are integers, the call reader rejects a non-finite first
        chunk.)
        """
        now = time.monotonic()
        # Stored longer ago than the interval: one comparison a check, not a subtraction too.
        stale = now - _EXEMPLAR_INTERVAL_S
        # acquire/release rather than `with`: half the cost (80 ns a call saved).
        lock = self._lock
        lock.acquire()
        try:
            if duration is not None:
                h = self.duration
                slot = bisect_left(_DURATION_BOUNDS, duration)
                h.counts[slot] += 1.0
                h.sum += duration
                if h.exemplar_at[slot] <= stale:
                    _bucket_exemplar(h, slot, duration, traced, now)
            if ttfc is not None:
                h = self.ttfc or self._set("ttfc", self._histogram("ttfc"))
                slot = bisect_left(_DURATION_BOUNDS, ttfc)
                h.counts[slot] += 1.0
                h.sum += ttfc
                if h.exemplar_at[slot] <= stale:
                    _bucket_exemplar(h, slot, ttfc, traced, now)
            if input_tokens is not None:
                h = self.usage_input or self._set(
                    "usage_input", self._histogram("token_usage", "input")
                )
                slot = _TOKEN_SLOTS[((input_tokens or 1) - 1).bit_length()]
                h.counts[slot] += 1.0
                h.sum += input_tokens
                if h.exemplar_at[slot] <= stale:
                    _bucket_exemplar(h, slot, input_tokens, traced, now)
                # The input tokens' total is this histogram's sum (CounterCell.of).
                c = self.tokens_input or self._set(
                    "tokens_input", self._counter("tokens", "input", h)
                )
                if c.exemplar_at <= stale:
                    _counter_exemplar(c, input_tokens, traced, now)
            if output_tokens is not None:
                h = self.usage_output or self._set(
                    "usage_output", self._histogram("token_usage", "output")
                )
                slot = _TOKEN_SLOTS[((output_tokens or 1) - 1).bit_length()]
                h.counts[slot] += 1.0
                h.sum += output_tokens
                if h.exemplar_at[slot] <= stale:
                    _bucket_exemplar(h, slot, output_tokens, traced, now)
                c = self.tokens_output or self._set(
                    "tokens_output", self._counter("tokens", "output", h)
                )
                if c.exemplar_at <= stale:
                    _counter_exemplar(c, output_tokens, traced, now)
            # Parts of the totals: counted without exemplars, the totals' exemplars already
            # link this call.
            if count := cache_read:
                c = self.cache_read or self._set(
                    "cache_read", self._counter("tokens", "cache_read")
                )
                c.value += count
            if count := cache_creation:
                c = self.cache_creation or self._set(
                    "cache_creation", self._counter("tokens", "cache_creation")
                )
                c.value += count
            if count := reasoning:
                c = self.reasoning or self._set("reasoning", self._counter("tokens", "reasoning"))
                c.value += count
            if amount is not None:
                c = self.cost or self._set("cost", self._counter("cost"))
                c.value += amount
                if c.exemplar_at <= stale:
                    _counter_exemplar(c, amount, traced, now)
            else:
                assert reason is not None
                c = self.unpriced.get(reason) or self.unpriced.setdefault(
                    reason, self._counter("unpriced", reason)
                )
                c.value += 1
                if c.exemplar_at <= stale:
                    _counter_exemplar(c, 1, traced, now)
        finally:
            lock.release()

    def _set(self, slot: str, cell: Any) -> Any:
        setattr(self, slot, cell)
        return cell


class PrometheusRecorder:
    """Records derived LLM calls as Prometheus metrics in ``registry``."""

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        *,
        extra_labels: Mapping[str, str] | None = None,
        max_label_values: int = 200,
    ):
        self.extra_labels = dict(extra_labels or {})
        self._limit = LabelLimiter(max_label_values)
        families = _families((*sc.STANDARD_LABELS, *self.extra_labels))
        self._store: _Accumulators | ClientMetrics = (
            ClientMetrics(registry, families)
            if multiprocess_mode()
            else _Accumulators(registry, families)
        )
        self._registry = registry
        self._evicted: Counter | None = None
        self._series: dict[tuple[str, ...], Series | ClientSeries] = {}
        self._by_raw: dict[tuple[str | None, ...], Series | ClientSeries] = {}

    @classmethod
    def for_registry(
        cls,
        registry: CollectorRegistry,
        *,
        extra_labels: Mapping[str, str] | None = None,
        max_label_values: int = 200,
    ) -> PrometheusRecorder:
        """The registry's recorder, created on first use."""
        with _recorders_lock:
            recorder = _recorders.get(registry)
            if recorder is None:
                recorder = cls(
                    registry, extra_labels=extra_labels, max_label_values=max_label_values
                )
                _recorders[registry] = recorder
            elif extra_labels is not None and dict(extra_labels) != recorder.extra_labels:
                _logger.warning(
                    "otel-llm: this registry already records with extra labels %s; "
                    "ignoring %s (use a separate registry for different labels)",
                    sorted(recorder.extra_labels),
                    sorted(extra_labels),
                )
            return recorder

    def record(self, derived: Derived) -> None:
        self.series(derived).observe(derived)

    def series(self, derived: Derived) -> Series | ClientSeries:
        """The series a call is recorded in; the processor's one pass keeps it (a ``Series``)
        for the calls with the same raw label values."""
        call = derived.call
        # Concatenated: twice as fast as unpacking the extra values into the display.
        raw = (  # noqa: RUF005
            call.operation,
            call.provider,
            call.request_model,
            call.response_model,
            derived.error_type,
            derived.service_name,
        ) + derived.extra
        series = self._by_raw.get(raw)
        if series is None:
            series = self._series_for(derived)
            # The limiter's answer for a value never changes, so raw values can map straight to
            # their series; bounded, as raw values are what a flood of names would grow.
            if len(self._by_raw) < _MAX_RAW_KEYS:
                self._by_raw[raw] = series
        return series

    def _series_for(self, derived: Derived) -> Series | ClientSeries:
        call = derived.call
        limit = self._limit
        key = (
            call.operation,
            limit("gen_ai_provider_name", call.provider or ""),
            limit("gen_ai_request_model", call.request_model or ""),
            limit("gen_ai_response_model", call.response_model or ""),
            limit("error_type", derived.error_type),
            limit("service_name", derived.service_name),
            *(
                limit(label, value)
                for label, value in zip(self.extra_labels, derived.extra, strict=True)
            ),
        )
        series = self._series.get(key)
        if series is None:
            series = self._series.setdefault(key, self._store.series(key))
        return series

    def record_rejected(self, rejected: Iterable[Rejected]) -> None:
        for item in rejected:
            self._store.count_invalid(item.attribute, item.reason)

    def record_evicted(self, kind: str) -> None:
        """Counts a roll-up given up to the processor's bound (``otel_llm.tracecost``). Made on
        the first eviction, in the registry: only processors that follow traces ever need it,
        and the GenAI families' exposition stays as it was."""
        counter = self._evicted
        if counter is None:
            with _recorders_lock:
                counter = self._evicted
                if counter is None:
                    counter = self._evicted = Counter(
                        sc.PROM_ROLLUP_EVICTED.removesuffix("_total"),
                        "Cost roll-ups given up at the processor's bound (rollup_max_open): a "
                        "trace whose local root never ended, or a span under an agent.",
                        ("kind",),
                        registry=self._registry,
                    )
        counter.labels(kind).inc()

    def record_error(self, stage: str, count: int = 1) -> None:
        """Counts ``count`` internal failures at ``stage``; 0 makes the stage's series exist at
        0 (an alert's ``increase()`` then sees its first failure too)."""
        self._store.count_error(stage, count)
