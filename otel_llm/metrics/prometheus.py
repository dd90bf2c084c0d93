"""Prometheus metrics of LLM calls, with trace-id exemplars.

Names and labels are those the OTel->Prometheus translation gives the GenAI metrics, so a
dashboard works the same whether the series come from here or through a Collector. One
recorder per registry: a second processor on the same registry shares it instead of failing
on duplicate metric names.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from otel_llm import _semconv as sc
from otel_llm.call import Rejected
from otel_llm.derive import Derived
from otel_llm.metrics.labels import LabelLimiter
from otel_llm.pricing import Cost

_logger = logging.getLogger(__name__)

_recorders: weakref.WeakKeyDictionary[CollectorRegistry, PrometheusRecorder] = (
    weakref.WeakKeyDictionary()
)
_recorders_lock = threading.Lock()
_MAX_RAW_KEYS = 10_000
_EXEMPLAR_INTERVAL_S = 1.0


def _strip_total(name: str) -> str:
    # prometheus_client appends _total to counters itself.
    return name.removesuffix("_total")


class _Series:
    """The metric children of one label set, resolved once instead of per call."""

    __slots__ = ("_labels", "_last_exemplar", "_recorder", "children", "duration")

    def __init__(self, recorder: PrometheusRecorder, labels: tuple[str, ...]):
        self._recorder = recorder
        self._labels = labels
        self.duration = recorder.duration.labels(*labels)
        self.children: dict[tuple[str, str], Any] = {}
        self._last_exemplar: dict[tuple[str, str, int], float] = {}

    def exemplar(
        self,
        exemplar: dict[str, str] | None,
        now: float,
        metric: str,
        extra: str = "",
        slot: int = 0,
    ) -> dict[str, str] | None:
        """``exemplar`` if this metric's ``slot`` (its bucket, for histograms) has had none for
        ``_EXEMPLAR_INTERVAL_S``, else None.

        Prometheus exposes only the latest exemplar of a counter or bucket, so storing one per
        call is wasted work (it costs as much as the update itself): one per second per slot
        keeps every scrape's exemplars fresh, and a rare slow call still gets its bucket's.
        """
        if exemplar is None:
            return None
        key = (metric, extra, slot)
        if now - self._last_exemplar.get(key, -_EXEMPLAR_INTERVAL_S) < _EXEMPLAR_INTERVAL_S:
            return None
        self._last_exemplar[key] = now
        return exemplar

    def child(self, metric: str, extra: str) -> Any:
        """The child of ``metric`` for this label set plus one more label value, made on first
        use: a label set that was never priced gets no cost series (not even a 0)."""
        key = (metric, extra)
        child = self.children.get(key)
        if child is None:
            family = getattr(self._recorder, metric)
            labels = (*self._labels, extra) if extra else self._labels
            child = self.children[key] = family.labels(*labels)
        return child


class PrometheusRecorder:
    """Records derived LLM calls into prometheus_client metrics."""

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        *,
        extra_labels: Mapping[str, str] | None = None,
        max_label_values: int = 200,
    ):
        self.extra_labels = dict(extra_labels or {})
        self._limit = LabelLimiter(max_label_values)
        # Exemplars need no work when prometheus_client cannot store them (multiprocess mode).
        self._exemplars = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        labels = (*sc.STANDARD_LABELS, *self.extra_labels)
        self.duration = Histogram(
            sc.PROM_DURATION,
            "Duration of GenAI operations.",
            labels,
            registry=registry,
            buckets=sc.DURATION_BUCKETS,
        )
        self.token_usage = Histogram(
            sc.PROM_TOKEN_USAGE,
            "Tokens used per GenAI operation (input includes cached, output includes reasoning).",
            (*labels, sc.TOKEN_TYPE_LABEL),
            registry=registry,
            buckets=sc.TOKEN_BUCKETS,
        )
        self.ttfc = Histogram(
            sc.PROM_TIME_TO_FIRST_CHUNK,
            "Time to the first chunk with content of streamed GenAI operations.",
            labels,
            registry=registry,
            buckets=sc.DURATION_BUCKETS,
        )
        self.tokens = Counter(
            _strip_total(sc.PROM_TOKENS),
            "Tokens of GenAI operations by type: input and output are totals, cache_read, "
            "cache_creation and reasoning are parts of them.",
            (*labels, sc.TOKEN_TYPE_LABEL),
            registry=registry,
        )
        self.cost = Counter(
            _strip_total(sc.PROM_COST),
            "Cost of GenAI operations in USD.",
            labels,
            registry=registry,
        )
        self.unpriced = Counter(
            _strip_total(sc.PROM_UNPRICED),
            "GenAI operations that could not be priced, by reason.",
            (*labels, sc.REASON_LABEL),
            registry=registry,
        )
        self.invalid = Counter(
            _strip_total(sc.PROM_INVALID_ATTRIBUTES),
            "Span attribute values ignored because they were not trustworthy.",
            ("attribute", sc.REASON_LABEL),
            registry=registry,
        )
        self.errors = Counter(
            _strip_total(sc.PROM_PROCESSOR_ERRORS),
            "Internal otel-llm failures, caught so they never reach the application.",
            ("stage",),
            registry=registry,
        )
        self._series: dict[tuple[str, ...], _Series] = {}
        self._by_raw: dict[tuple[str | None, ...], _Series] = {}

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
        call = derived.call
        raw = (
            call.operation,
            call.provider,
            call.request_model,
            call.response_model,
            derived.error_type,
            derived.service_name,
            *derived.extra,
        )
        series = self._by_raw.get(raw)
        if series is None:
            series = self._series_for(derived)
            # The limiter's answer for a value never changes, so raw values can map straight to
            # their series; bounded, as raw values are what a flood of names would grow.
            if len(self._by_raw) < _MAX_RAW_KEYS:
                self._by_raw[raw] = series
        self._observe(series, derived)

    def _series_for(self, derived: Derived) -> _Series:
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
            series = self._series.setdefault(key, _Series(self, key))
        return series

    def _observe(self, series: _Series, derived: Derived) -> None:
        call = derived.call
        exemplar = {"trace_id": format(derived.trace_id, "032x")} if self._exemplars else None
        now = time.monotonic()
        ex = series.exemplar
        if derived.duration is not None:
            slot = bisect_left(sc.DURATION_BUCKETS, derived.duration)
            series.duration.observe(derived.duration, ex(exemplar, now, "duration", "", slot))
        if (ttfc := call.time_to_first_chunk) is not None:
            slot = bisect_left(sc.DURATION_BUCKETS, ttfc)
            series.child("ttfc", "").observe(ttfc, ex(exemplar, now, "ttfc", "", slot))
        for kind, count in (("input", call.input_tokens), ("output", call.output_tokens)):
            if count is not None:
                slot = bisect_left(sc.TOKEN_BUCKETS, count)
                usage_exemplar = ex(exemplar, now, "token_usage", kind, slot)
                series.child("token_usage", kind).observe(count, usage_exemplar)
                series.child("tokens", kind).inc(count, ex(exemplar, now, "tokens", kind))
        # Parts of the totals: counted without exemplars, the totals' exemplars already link
        # this call, and each exemplar costs as much as the increment itself.
        if call.cache_read_tokens:
            series.child("tokens", "cache_read").inc(call.cache_read_tokens)
        if call.cache_creation_tokens:
            series.child("tokens", "cache_creation").inc(call.cache_creation_tokens)
        if call.reasoning_tokens:
            series.child("tokens", "reasoning").inc(call.reasoning_tokens)

        priced = derived.priced
        if isinstance(priced, Cost):
            series.child("cost", "").inc(float(priced.amount), ex(exemplar, now, "cost"))
        else:
            reason = priced.reason
            series.child("unpriced", reason).inc(1, ex(exemplar, now, "unpriced", reason))

    def record_rejected(self, rejected: Iterable[Rejected]) -> None:
        for item in rejected:
            self.invalid.labels(item.attribute, item.reason).inc()

    def record_error(self, stage: str) -> None:
        self.errors.labels(stage).inc()
