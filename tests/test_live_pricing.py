"""Spans of otel-llm's own are priced live, just before they end: the same span, no copy.

Every scenario runs twice through a real SDK provider and ``LLMSpanProcessor``: once with the
processor alone on its provider (the lifecycle asks it to price the live span) and once with a
second processor beside it (so nothing is priced live: ``on_end`` prices a copy, as before).
The exported spans must carry the same attributes in the same order, and the metrics the same
values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor, llm_call, llm_context
from otel_llm import _semconv as sc
from otel_llm import processor as processor_module
from otel_llm.pricer import Pricer

Scenario = Callable[[TracerProvider], None]


def _priced(provider: TracerProvider) -> None:
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as call:
        call.set_response(model="gpt-4o-mini-2024-07-18", id="r-1", finish_reasons=["stop"])
        call.set_usage(input_tokens=1_200, output_tokens=300, cache_read_tokens=400)


def _streamed(provider: TracerProvider) -> None:
    with llm_call(
        provider="anthropic", model="claude-sonnet-4-5", stream=True, tracer_provider=provider
    ) as call:
        call.first_chunk()
        call.set_usage(input_tokens=900, output_tokens=80, cache_creation_tokens=100)


def _unknown_model(provider: TracerProvider) -> None:
    with llm_call(provider="openai", model="no-such-model", tracer_provider=provider) as call:
        call.set_usage(input_tokens=10, output_tokens=1)


def _failed(provider: TracerProvider) -> None:
    with pytest.raises(TimeoutError):
        with llm_call(provider="openai", model="gpt-4o", tracer_provider=provider):
            raise TimeoutError("read timed out")


def _provider_cost(provider: TracerProvider) -> None:
    with llm_call(provider="openai", model="gpt-4o", tracer_provider=provider) as call:
        call.set_usage(input_tokens=10, output_tokens=1)
        call.set_cost(0.25)


def _bad_cost_unpriced(provider: TracerProvider) -> None:
    # Not priced, with a cost attribute the processor did not vouch for: it must not be exported.
    with llm_call(provider="openai", model="no-such-model", tracer_provider=provider) as call:
        call.set_usage(input_tokens=10, output_tokens=1)
        call.set_cost(math.nan)


def _nested(provider: TracerProvider) -> None:
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as outer:
        with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as inner:
            inner.set_usage(input_tokens=100, output_tokens=10)
        outer.set_usage(input_tokens=100, output_tokens=10)


def _in_context(provider: TracerProvider) -> None:
    with llm_context(feature="search", user_id="u-1"):
        _priced(provider)


SCENARIOS: dict[str, Scenario] = {
    "priced": _priced,
    "streamed": _streamed,
    "unknown_model": _unknown_model,
    "failed": _failed,
    "provider_cost": _provider_cost,
    "bad_cost_unpriced": _bad_cost_unpriced,
    "nested": _nested,
    "in_context": _in_context,
}

LIMITS = {
    "default": SpanLimits(),
    # Room for the call's attributes but not for its cost: the copy has no such limit.
    "few_attributes": SpanLimits(max_span_attributes=8),
    "short_strings": SpanLimits(max_attribute_length=6),
}


class _Sibling(SpanProcessor):
    """A processor beside the LLMSpanProcessor: what it sees is left as it was."""

    def __init__(self) -> None:
        self.ended: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


def _run(
    scenario: Scenario, limits: SpanLimits, *, live: bool
) -> tuple[list[list[tuple[str, Any]]], dict[str, float], LLMSpanProcessor, _Sibling | None]:
    exporter = InMemorySpanExporter()
    registry = CollectorRegistry()
    processor = LLMSpanProcessor(SimpleSpanProcessor(exporter), registry=registry)
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout"}), span_limits=limits
    )
    provider.add_span_processor(processor)
    sibling = None
    if not live:
        sibling = _Sibling()
        provider.add_span_processor(sibling)
    scenario(provider)
    provider.shutdown()
    spans = [
        [(name, _stable(name, value)) for name, value in (span.attributes or {}).items()]
        for span in exporter.get_finished_spans()
    ]
    samples = {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for metric in registry.collect()
        for sample in metric.samples
        # Durations are the runs' own; everything else must match.
        if "duration" not in sample.name
        and "time_to_first" not in sample.name
        and not sample.name.endswith("_created")
    }
    return spans, samples, processor, sibling


def _stable(name: str, value: Any) -> Any:
    """The value, but for those that differ from run to run: a span id, a time."""
    if name == sc.OTEL_LLM_CALL_COUNTED_IN:
        return "a span id"
    if name == sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK:
        return "a time"
    return value


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[ReadableSpan]:
    """The spans the processor copied to price them."""
    made: list[ReadableSpan] = []
    original = processor_module._priced_copy

    def counted(span: ReadableSpan, attributes: dict[str, Any]) -> ReadableSpan:
        made.append(span)
        return original(span, attributes)

    monkeypatch.setattr(processor_module, "_priced_copy", counted)
    return made


@pytest.mark.parametrize("limits", sorted(LIMITS))
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_priced_live_exports_what_the_copy_exported(
    name: str, limits: str, copies: list[ReadableSpan]
) -> None:
    live_spans, live_samples, processor, _ = _run(SCENARIOS[name], LIMITS[limits], live=True)
    live_copies = len(copies)
    copy_spans, copy_samples, _, sibling = _run(SCENARIOS[name], LIMITS[limits], live=False)
    assert live_spans == copy_spans
    assert live_samples == copy_samples
    assert not processor._priced_live  # every span priced live was handed on
    # Beside another processor, nothing is priced live: that one sees the span as before.
    assert sibling is not None
    for span in sibling.ended:
        assert sc.OTEL_LLM_COST_PRICE_DATA not in (span.attributes or {})
        assert sc.OTEL_LLM_COST_UNPRICED_REASON not in (span.attributes or {})
    # Alone on its provider, our spans are priced live unless a copy is needed: a cost
    # attribute to drop or to overwrite in its place, or limits a copy does not have.
    copy_needed = name in ("bad_cost_unpriced", "provider_cost") or limits != "default"
    if not copy_needed:
        assert live_copies == 0


def test_spans_of_other_libraries_still_get_a_priced_copy(copies: list[ReadableSpan]) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(
        LLMSpanProcessor(SimpleSpanProcessor(exporter), registry=CollectorRegistry())
    )
    span = provider.get_tracer("another.library").start_span(
        "chat gpt-4o-mini",
        attributes={
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_PROVIDER_NAME: "openai",
            sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 100,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 10,
            # A cost it did not vouch for: replaced by the processor's own.
            sc.GEN_AI_USAGE_COST_AMOUNT: 99.0,
            sc.GEN_AI_USAGE_COST_SOURCE: "estimated",
        },
    )
    span.end()
    (exported,) = exporter.get_finished_spans()
    assert len(copies) == 1
    assert exported.attributes is not None
    assert 0 < exported.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] < 1
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as call:
        call.set_usage(input_tokens=100, output_tokens=10)
    assert len(copies) == 1  # ours: priced live
    assert len(exporter.get_finished_spans()) == 2
    provider.shutdown()


def test_a_failure_pricing_live_passes_the_span_on_unpriced_and_counts_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Broken(Exception):
        pass

    exporter = InMemorySpanExporter()
    registry = CollectorRegistry()
    processor = LLMSpanProcessor(SimpleSpanProcessor(exporter), registry=registry)
    provider = TracerProvider()
    provider.add_span_processor(processor)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise Broken

    monkeypatch.setattr(Pricer, "price_sdk_span", broken)
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as call:
        call.set_usage(input_tokens=100, output_tokens=10)
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert sc.GEN_AI_USAGE_COST_AMOUNT not in span.attributes
    assert registry.get_sample_value(sc.PROM_PROCESSOR_ERRORS, {"stage": "on_end"}) == 1
    provider.shutdown()
