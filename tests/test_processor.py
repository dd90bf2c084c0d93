"""LLMSpanProcessor with the real SDK: cost on exported spans, Prometheus sums, exemplars."""

from __future__ import annotations

import contextvars
import math
import re
import subprocess
import sys
import threading
import urllib.request
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

from otel_llm import LLMSpanProcessor, PriceBook, llm_call, llm_context, start_metrics_server
from otel_llm import _semconv as sc
from otel_llm.tracecost import Rollup
from tests.support.pipeline import Pipeline, chat_labels

MTOK = Decimal(1_000_000)
# Published prices (USD per million tokens) of genai-prices' bundled data, copied by hand.
GPT_4O_MINI = {"input": Decimal("0.15"), "cache_read": Decimal("0.075"), "output": Decimal("0.6")}
SONNET_4_5 = {
    "input": Decimal(3),
    "cache_write": Decimal("3.75"),
    "cache_read": Decimal("0.3"),
    "output": Decimal(15),
}


def _start_llm_span(pipeline: Pipeline, **attributes: Any) -> None:
    """A GenAI span as another instrumentation library would produce it."""
    tracer = pipeline.provider.get_tracer("other.instrumentation")
    base = {sc.GEN_AI_OPERATION_NAME: "chat"}
    span = tracer.start_span("chat", kind=SpanKind.CLIENT, attributes={**base, **attributes})
    span.end()


def test_openai_cached_input_is_priced_once(pipeline: Pipeline) -> None:
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider) as c:
        c.set_usage(input_tokens=12_000, output_tokens=800, cache_read_tokens=10_000)

    expected = (
        2_000 * GPT_4O_MINI["input"]
        + 10_000 * GPT_4O_MINI["cache_read"]
        + 800 * GPT_4O_MINI["output"]
    ) / MTOK
    (span,) = pipeline.spans()
    assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == float(expected)
    assert span.attributes[sc.GEN_AI_USAGE_COST_CURRENCY] == "USD"
    assert span.attributes[sc.GEN_AI_USAGE_COST_SOURCE] == "local"
    assert span.attributes[sc.OTEL_LLM_COST_MODEL_ID] == "gpt-4o-mini"
    assert span.attributes[sc.OTEL_LLM_COST_PRICE_DATA].startswith("genai-prices ")
    assert span.attributes[sc.OTEL_LLM_COST_CACHE_READ] == float(
        10_000 * GPT_4O_MINI["cache_read"] / MTOK
    )
    assert pipeline.sample(sc.PROM_COST, **chat_labels()) == pytest.approx(float(expected))
    assert pipeline.sample(sc.PROM_TOKENS, **chat_labels(gen_ai_token_type="input")) == 12_000
    assert pipeline.sample(sc.PROM_TOKENS, **chat_labels(gen_ai_token_type="cache_read")) == 10_000


def test_anthropic_cache_write_and_read(pipeline: Pipeline) -> None:
    # As Anthropic reports it through the conventions: input_tokens includes both cache parts.
    _start_llm_span(
        pipeline,
        **{
            sc.GEN_AI_PROVIDER_NAME: "anthropic",
            sc.GEN_AI_REQUEST_MODEL: "claude-sonnet-4-5",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 1_000 + 5_000 + 20_000,
            sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 5_000,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 20_000,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 700,
        },
    )
    expected = (
        1_000 * SONNET_4_5["input"]
        + 5_000 * SONNET_4_5["cache_write"]
        + 20_000 * SONNET_4_5["cache_read"]
        + 700 * SONNET_4_5["output"]
    ) / MTOK
    (span,) = pipeline.spans()
    assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == float(expected)
    labels = chat_labels(gen_ai_provider_name="anthropic", gen_ai_request_model="claude-sonnet-4-5")
    assert pipeline.sample(sc.PROM_COST, **labels) == pytest.approx(float(expected))
    assert pipeline.sample(sc.PROM_TOKENS, **labels, gen_ai_token_type="cache_creation") == 5_000


def test_counters_and_histograms_sum_the_calls(pipeline: Pipeline) -> None:
    costs = Decimal(0)
    for input_tokens, output_tokens in ((100, 10), (2_000, 300), (50_000, 1)):
        with llm_call(
            provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider
        ) as call:
            call.set_usage(input_tokens=input_tokens, output_tokens=output_tokens)
        costs += (
            input_tokens * GPT_4O_MINI["input"] + output_tokens * GPT_4O_MINI["output"]
        ) / MTOK
    spans = pipeline.spans()
    exported = sum(Decimal(str(s.attributes[sc.GEN_AI_USAGE_COST_AMOUNT])) for s in spans)
    assert exported == costs
    assert pipeline.sample(sc.PROM_COST, **chat_labels()) == pytest.approx(float(costs), rel=1e-12)
    usage = sc.PROM_TOKEN_USAGE
    assert pipeline.sample(usage + "_count", **chat_labels(gen_ai_token_type="input")) == 3
    assert pipeline.sample(usage + "_sum", **chat_labels(gen_ai_token_type="input")) == 52_100
    assert pipeline.sample(usage + "_sum", **chat_labels(gen_ai_token_type="output")) == 311
    # 2,000 input tokens fall in the (1024, 4096] bucket; cumulative le="4096" holds two calls.
    assert (
        pipeline.sample(usage + "_bucket", **chat_labels(gen_ai_token_type="input", le="4096.0"))
        == 2
    )
    assert pipeline.sample(sc.PROM_DURATION + "_count", **chat_labels()) == 3
    assert pipeline.sample(sc.PROM_TIME_TO_FIRST_CHUNK + "_count", **chat_labels()) is None


def test_streamed_call_records_time_to_first_chunk(pipeline: Pipeline) -> None:
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider) as c:
        c.first_chunk()
        c.set_usage(input_tokens=10, output_tokens=10)
    (span,) = pipeline.spans()
    ttfc = span.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True
    assert pipeline.sample(sc.PROM_TIME_TO_FIRST_CHUNK + "_count", **chat_labels()) == 1
    assert pipeline.sample(sc.PROM_TIME_TO_FIRST_CHUNK + "_sum", **chat_labels()) == ttfc


def test_exemplars_carry_the_trace_id(pipeline: Pipeline) -> None:
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider) as c:
        c.set_usage(input_tokens=100, output_tokens=10)
    (span,) = pipeline.spans()
    trace_id = format(span.context.trace_id, "032x")

    server, thread = start_metrics_server(0, "127.0.0.1", pipeline.registry)
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.server_port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    exemplar = f'# {{trace_id="{trace_id}"}}'
    cost_lines = [
        line for line in body.splitlines() if line.startswith("gen_ai_client_cost_usd_total")
    ]
    assert any(exemplar in line for line in cost_lines)
    duration_lines = [
        line for line in body.splitlines() if line.startswith(sc.PROM_DURATION + "_bucket")
    ]
    assert any(exemplar in line for line in duration_lines)


def test_unknown_model_has_no_cost_and_counts_as_unpriced(pipeline: Pipeline) -> None:
    labels = chat_labels(gen_ai_request_model="gpt-imaginary-9", reason="unknown_model")
    assert pipeline.sample(sc.PROM_UNPRICED, **labels) is None
    with llm_call(
        provider="openai", model="gpt-imaginary-9", tracer_provider=pipeline.provider
    ) as c:
        c.set_usage(input_tokens=100, output_tokens=10)
    (span,) = pipeline.spans()
    assert sc.GEN_AI_USAGE_COST_AMOUNT not in span.attributes
    assert span.attributes[sc.OTEL_LLM_COST_UNPRICED_REASON] == "unknown_model"
    assert pipeline.sample(sc.PROM_UNPRICED, **labels) == 1
    cost = pipeline.sample(sc.PROM_COST, **chat_labels(gen_ai_request_model="gpt-imaginary-9"))
    assert cost is None  # not even a 0: an unknown price has no cost series


def test_provider_reported_cost_wins(pipeline: Pipeline) -> None:
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider) as c:
        c.set_usage(input_tokens=100, output_tokens=10)
        c.set_cost(0.5)
    (span,) = pipeline.spans()
    assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == 0.5
    assert span.attributes[sc.GEN_AI_USAGE_COST_SOURCE] == "provider"
    assert pipeline.sample(sc.PROM_COST, **chat_labels()) == 0.5


class _Recording(SpanProcessor):
    def __init__(self) -> None:
        self.started: list[Any] = []
        self.ended: list[ReadableSpan] = []
        self.flushed = self.shut = False

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append(span)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.flushed = True
        return True

    def shutdown(self) -> None:
        self.shut = True


def test_plain_spans_pass_through_untouched(registry: CollectorRegistry) -> None:
    beside, downstream = _Recording(), _Recording()
    provider = TracerProvider()
    provider.add_span_processor(beside)
    provider.add_span_processor(LLMSpanProcessor(downstream, registry=registry))
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("GET /orders") as plain:
        plain.set_attribute("http.request.method", "GET")
    assert downstream.started == [plain]
    # The very object the SDK handed to every processor: no copy for non-LLM spans.
    assert len(downstream.ended) == 1
    assert downstream.ended[0] is beside.ended[0]
    assert provider.force_flush()
    assert downstream.flushed
    provider.shutdown()
    assert downstream.shut


def test_a_failing_downstream_neither_raises_nor_starves_the_others(
    registry: CollectorRegistry,
) -> None:
    class Broken(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            raise RuntimeError("exporter bug")

    after = _Recording()
    provider = TracerProvider()
    provider.add_span_processor(LLMSpanProcessor(Broken(), after, registry=registry))
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as call:
        call.set_usage(input_tokens=1, output_tokens=1)
    assert len(after.ended) == 1
    assert registry.get_sample_value(sc.PROM_PROCESSOR_ERRORS, {"stage": "downstream"}) == 1


def test_an_internal_failure_passes_the_span_on_unchanged(registry: CollectorRegistry) -> None:
    class BrokenBook(PriceBook):
        def price(self, call: Any, start_time_ns: int) -> Any:
            raise ZeroDivisionError("bug in pricing")

    after = _Recording()
    provider = TracerProvider()
    provider.add_span_processor(LLMSpanProcessor(after, registry=registry, price_book=BrokenBook()))
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as call:
        call.set_usage(input_tokens=1, output_tokens=1)
    (span,) = after.ended
    assert sc.GEN_AI_USAGE_COST_AMOUNT not in span.attributes
    assert registry.get_sample_value(sc.PROM_PROCESSOR_ERRORS, {"stage": "on_end"}) == 1


def test_failed_call_labels(pipeline: Pipeline) -> None:
    tracer = pipeline.provider.get_tracer("x")
    span = tracer.start_span(
        "chat gpt-4o-mini",
        attributes={
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_PROVIDER_NAME: "openai",
            sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        },
    )
    span.set_status(Status(StatusCode.ERROR))
    span.end()
    with pytest.raises(TimeoutError):
        with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider):
            raise TimeoutError("slow")
    assert pipeline.sample(sc.PROM_DURATION + "_count", **chat_labels(error_type="_OTHER")) == 1
    assert (
        pipeline.sample(sc.PROM_DURATION + "_count", **chat_labels(error_type="TimeoutError")) == 1
    )
    reason = chat_labels(error_type="TimeoutError", reason="failed_without_usage")
    assert pipeline.sample(sc.PROM_UNPRICED, **reason) == 1


def test_llm_context_reaches_llm_spans_only(pipeline: Pipeline) -> None:
    tracer = pipeline.provider.get_tracer("x")
    with llm_context(feature="summarize", user_id="u-1", project_id="p-9", team="search"):
        with tracer.start_as_current_span("handle request"):
            with llm_call(
                provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider
            ):
                pass
            # An instrumentation that names the operation only after the span started.
            late = tracer.start_span("late")
            with llm_context(feature="inner"):
                late_inner = tracer.start_span("late inner")
            late.set_attribute(sc.GEN_AI_OPERATION_NAME, "chat")
            late_inner.set_attribute(sc.GEN_AI_OPERATION_NAME, "embeddings")
            late.end()
            late_inner.end()
    spans = {s.name: s for s in pipeline.spans()}
    assert spans["chat gpt-4o-mini"].attributes[sc.OTEL_LLM_CONTEXT_FEATURE] == "summarize"
    assert spans["chat gpt-4o-mini"].attributes["otel_llm.context.team"] == "search"
    assert spans["late"].attributes[sc.OTEL_LLM_CONTEXT_USER_ID] == "u-1"
    assert spans["late inner"].attributes[sc.OTEL_LLM_CONTEXT_FEATURE] == "inner"
    assert spans["late inner"].attributes[sc.OTEL_LLM_CONTEXT_PROJECT_ID] == "p-9"
    root = spans["handle request"].attributes
    assert not any(k.startswith(sc.CONTEXT_PREFIX) for k in root)
    # The root carries its calls' roll-up instead (otel_llm.tracecost), nothing else of ours.
    assert {k for k in root if k.startswith("otel_llm.")} == set(Rollup().attributes())
    assert root[sc.OTEL_LLM_ROLLUP_CALLS] == 3


def test_context_values_the_span_cannot_carry_are_text_or_left_out(pipeline: Pipeline) -> None:
    """Found in review: an int beyond 64 bits went onto the span as it was (the OTLP exporter
    dropped it, or an older one the batch), and a value whose str() raised, raised."""

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("the application's own bug")

    with llm_context(user_id=2**64, team=Unprintable(), feature=-(2**63)):
        with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider):
            pass
    (span,) = pipeline.spans()
    assert span.attributes[sc.OTEL_LLM_CONTEXT_USER_ID] == str(2**64)
    assert span.attributes[sc.OTEL_LLM_CONTEXT_FEATURE] == -(2**63)  # within 64 bits: as is
    assert "otel_llm.context.team" not in span.attributes


def test_a_context_copied_inside_llm_context_still_carries_it_after_the_block(
    pipeline: Pipeline,
) -> None:
    # on_start looks the context up only once some llm_context was entered (context.ENTERED):
    # were that a count of the blocks open now, this thread's span would lose its context.
    with llm_context(user_id="u-7"):
        copied = contextvars.copy_context()

    def call() -> None:
        with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider):
            pass

    thread = threading.Thread(target=copied.run, args=(call,))
    thread.start()
    thread.join()
    (span,) = pipeline.spans()
    assert span.attributes[sc.OTEL_LLM_CONTEXT_USER_ID] == "u-7"


def test_no_context_is_looked_up_before_one_is_entered() -> None:
    # A fresh process: nothing entered yet, then the first llm_context reaches its span.
    script = """
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from otel_llm import LLMSpanProcessor, llm_call, llm_context
from otel_llm.context import ENTERED
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(
    LLMSpanProcessor(SimpleSpanProcessor(exporter), registry=CollectorRegistry()))
assert not ENTERED.ever
with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider):
    pass
with llm_context(project_id="p-1"):
    assert ENTERED.ever
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider):
        pass
first, second = exporter.get_finished_spans()
assert "otel_llm.context.project_id" not in first.attributes
assert second.attributes["otel_llm.context.project_id"] == "p-1"
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_extra_labels_with_a_cardinality_cap() -> None:
    registry = CollectorRegistry()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(
        LLMSpanProcessor(
            registry=registry,
            extra_labels={"feature": sc.OTEL_LLM_CONTEXT_FEATURE},
            max_label_values=3,
        )
    )
    for index in range(10):
        with llm_context(feature=f"feature-{index}"):
            with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as c:
                c.set_usage(input_tokens=1, output_tokens=1)
    counts = {
        feature: registry.get_sample_value(
            sc.PROM_DURATION + "_count", {**chat_labels(), "feature": feature}
        )
        for feature in ("feature-0", "feature-2", "feature-3", "other")
    }
    assert counts == {"feature-0": 1, "feature-2": 1, "feature-3": None, "other": 7}


def test_model_labels_are_capped_too(registry: CollectorRegistry) -> None:
    provider = TracerProvider()
    provider.add_span_processor(LLMSpanProcessor(registry=registry, max_label_values=5))
    for index in range(50):
        with llm_call(provider="openai", model=f"m-{index}", tracer_provider=provider):
            pass
    models = {
        s.labels["gen_ai_request_model"]
        for family in registry.collect()
        if family.name == sc.PROM_DURATION
        for s in family.samples
    }
    assert models == {"m-0", "m-1", "m-2", "m-3", "m-4", "other"}


def test_two_processors_share_one_registry(registry: CollectorRegistry) -> None:
    first = LLMSpanProcessor(registry=registry)
    second = LLMSpanProcessor(registry=registry)
    assert first.prometheus is second.prometheus


def test_otel_metrics_api(registry: CollectorRegistry) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    provider = TracerProvider()
    provider.add_span_processor(LLMSpanProcessor(registry=registry, meter_provider=meters))
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as c:
        c.set_usage(input_tokens=1_000, output_tokens=100)
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    assert set(metrics) >= {sc.OTEL_DURATION, sc.OTEL_TOKEN_USAGE, sc.OTEL_TOKENS, sc.OTEL_COST}
    usage = {
        p.attributes["gen_ai.token.type"]: p.sum
        for p in metrics[sc.OTEL_TOKEN_USAGE].data.data_points
    }
    assert usage == {"input": 1_000, "output": 100}
    (point,) = metrics[sc.OTEL_DURATION].data.data_points
    assert point.attributes[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert list(point.explicit_bounds) == list(sc.DURATION_BUCKETS)
    (cost,) = metrics[sc.OTEL_COST].data.data_points
    assert cost.value == pytest.approx(
        float((1_000 * Decimal("0.15") + 100 * Decimal("0.6")) / MTOK)
    )


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.lists(st.text(max_size=5), max_size=3),
)
_KEYS = [
    sc.GEN_AI_PROVIDER_NAME,
    sc.GEN_AI_SYSTEM,
    sc.GEN_AI_REQUEST_MODEL,
    sc.GEN_AI_RESPONSE_MODEL,
    sc.GEN_AI_USAGE_INPUT_TOKENS,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS,
    sc.GEN_AI_USAGE_PROMPT_TOKENS,
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    sc.GEN_AI_USAGE_COST_AMOUNT,
    sc.GEN_AI_USAGE_COST_SOURCE,
    sc.USAGE_COST,
    sc.ERROR_TYPE,
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attributes=st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=len(_KEYS)),
    operation=st.sampled_from(["chat", "embeddings", "execute_tool", "text_completion"]),
)
def test_malformed_attributes_never_raise(attributes: dict[str, Any], operation: str) -> None:
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(LLMSpanProcessor(SimpleSpanProcessor(exporter), registry=registry))
    tracer = provider.get_tracer("fuzz")
    span = tracer.start_span("fuzz", attributes={sc.GEN_AI_OPERATION_NAME: operation})
    for key, value in attributes.items():
        span.set_attribute(key, value)  # the SDK itself drops what it cannot store
    span.end()

    (exported,) = exporter.get_finished_spans()
    assert registry.get_sample_value(sc.PROM_PROCESSOR_ERRORS, {"stage": "on_end"}) is None
    if operation == "execute_tool":  # not an LLM call: handed on as it is
        assert exported.attributes == span.attributes
    else:
        cost = exported.attributes.get(sc.GEN_AI_USAGE_COST_AMOUNT)
        if cost is not None:
            assert isinstance(cost, float)
            assert cost >= 0
            assert not math.isnan(cost)
        # Priced or explicitly unpriced, never silently neither.
        assert (cost is None) != (sc.OTEL_LLM_COST_UNPRICED_REASON not in exported.attributes)
    for family in registry.collect():
        for sample in family.samples:
            assert not math.isnan(sample.value), sample
            assert sample.value >= 0, sample


def test_rejected_values_are_counted(pipeline: Pipeline) -> None:
    _start_llm_span(
        pipeline,
        **{
            sc.GEN_AI_PROVIDER_NAME: "openai",
            sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            sc.GEN_AI_USAGE_INPUT_TOKENS: "1200",
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: -5,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: float("nan"),
            sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 10**15,
        },
    )
    (span,) = pipeline.spans()
    assert span.attributes[sc.OTEL_LLM_COST_UNPRICED_REASON] == "invalid_usage"
    invalid = sc.PROM_INVALID_ATTRIBUTES
    expected = {
        (sc.GEN_AI_USAGE_INPUT_TOKENS, "wrong_type"),
        (sc.GEN_AI_USAGE_OUTPUT_TOKENS, "negative"),
        (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, "not_finite"),
        (sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, "absurd"),
    }
    for attribute, reason in expected:
        assert pipeline.sample(invalid, attribute=attribute, reason=reason) == 1
    exposition = openmetrics(pipeline.registry).decode()
    assert not re.search(
        r'gen_ai_client_tokens_total\{[^}]*gen_ai_token_type="input"[^}]*\} [1-9]', exposition
    )


def test_a_span_without_a_start_time_is_priced_at_its_end(pipeline: Pipeline) -> None:
    from otel_llm.derive import derive

    derived = derive(
        {
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_PROVIDER_NAME: "openai",
            sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 10,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 10,
        },
        start_time_ns=None,
        end_time_ns=1_750_000_000_000_000_000,
        failed=False,
        service_name="svc",
        trace_id=1,
        book=pipeline.processor.price_book,
        max_tokens=10**8,
    )
    assert derived is not None
    assert derived.start_time_ns == 1_750_000_000_000_000_000
    assert derived.duration is None


def test_a_second_processor_with_other_labels_follows_the_registry(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    LLMSpanProcessor(registry=registry, extra_labels={"feature": sc.OTEL_LLM_CONTEXT_FEATURE})
    second = LLMSpanProcessor(registry=registry, extra_labels={"team": "app.team"})
    assert "ignoring" in caplog.text
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(second)
    with llm_context(feature="search"):
        with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as c:
            c.set_usage(input_tokens=1, output_tokens=1)
    assert registry.get_sample_value(sc.PROM_PROCESSOR_ERRORS, {"stage": "on_end"}) is None
    labels = {**chat_labels(), "feature": "search"}
    assert registry.get_sample_value(sc.PROM_DURATION + "_count", labels) == 1


def test_another_libraries_dialect_is_priced_through_the_processor(pipeline: Pipeline) -> None:
    # An OpenInference span: its own names, its scope; the processor reads it as the same call.
    tracer = pipeline.provider.get_tracer("openinference.instrumentation.openai")
    span = tracer.start_span(
        "ChatCompletion",
        attributes={
            "openinference.span.kind": "LLM",
            "llm.provider": "openai",
            "llm.model_name": "gpt-4o-mini",
            "llm.token_count.prompt": 1_000,
            "llm.token_count.completion": 200,
            "llm.token_count.prompt_details.cache_read": 400,
        },
    )
    span.end()
    expected = (
        600 * GPT_4O_MINI["input"] + 400 * GPT_4O_MINI["cache_read"] + 200 * GPT_4O_MINI["output"]
    ) / MTOK
    (exported,) = pipeline.spans()
    assert exported.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == float(expected)
    # OpenInference names the model the response reported (llm.model_name).
    labels = chat_labels(gen_ai_request_model="", gen_ai_response_model="gpt-4o-mini")
    assert pipeline.sample(sc.PROM_TOKENS, **labels, gen_ai_token_type="cache_read") == 400


def test_nested_llm_spans_of_one_call_are_counted_once(pipeline: Pipeline) -> None:
    # llm_call around an instrumented client (or two instrumentations of one SDK): the inner
    # span, closest to the provider's response, is priced; the outer one says where it went.
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider):
        for _ in range(2):  # a retry: each attempt is billed
            _start_llm_span(
                pipeline,
                **{
                    sc.GEN_AI_PROVIDER_NAME: "openai",
                    sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                    sc.GEN_AI_USAGE_INPUT_TOKENS: 1_000,
                    sc.GEN_AI_USAGE_OUTPUT_TOKENS: 100,
                },
            )
    first, second, outer = pipeline.spans()
    one_call = (1_000 * GPT_4O_MINI["input"] + 100 * GPT_4O_MINI["output"]) / MTOK
    for inner in (first, second):
        assert inner.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == float(one_call)
    assert sc.GEN_AI_USAGE_COST_AMOUNT not in outer.attributes
    assert sc.OTEL_LLM_COST_UNPRICED_REASON not in outer.attributes
    assert outer.attributes[sc.OTEL_LLM_CALL_COUNTED_IN] == format(second.context.span_id, "016x")
    assert pipeline.sample(sc.PROM_COST, **chat_labels()) == pytest.approx(float(2 * one_call))
    assert pipeline.sample(sc.PROM_DURATION + "_count", **chat_labels()) == 2
    assert pipeline.sample(sc.PROM_UNPRICED, **chat_labels(reason="missing_usage")) is None


@pytest.mark.parametrize("model", ["gpt-4o\ud800", "gpt-\x00-4o", "\udfff"])
def test_a_poisoned_model_name_cannot_take_metrics_down(pipeline: Pipeline, model: str) -> None:
    """A gateway passing a client's model name through: a lone surrogate or a NUL in it used
    to make every later scrape answer 500 (UnicodeEncodeError) until restart."""
    for name in (model, "gpt-4o-mini"):
        with llm_call(provider="openai", model=name, tracer_provider=pipeline.provider) as c:
            c.set_usage(input_tokens=100, output_tokens=10)
    server, thread = start_metrics_server(0, "127.0.0.1", pipeline.registry)
    try:
        for accept in ("text/plain", "application/openmetrics-text; version=1.0.0"):
            request = urllib.request.Request(
                f"http://127.0.0.1:{server.server_port}/metrics", headers={"Accept": accept}
            )
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
                assert response.status == 200
                body = response.read().decode("utf-8")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert "\x00" not in body
    assert 'gen_ai_request_model="gpt-4o-mini"' in body
    cleaned = "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in model)
    assert f'gen_ai_request_model="{cleaned}"' in body
