"""Our own calls priced on the live span (``LLMSpanProcessor.price_ending``) against the copy.

Every call of ``CallSpan`` -- the OpenAI and Anthropic instrumentors and ``llm_call``, streamed
or not -- is made twice the same way: through a provider whose only processor is the
``LLMSpanProcessor`` (the cost is set on the live span before it ends, and that span is handed
on) and through one with a second, empty processor beside it (the processor hands on a priced
copy, as it always did). The exported attributes must be the same, in the same order, with the
same values (apart from the response id the fake numbers and the measured time to first chunk),
and so must every metric but the two timed histograms.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from otel_llm import LLMSpanProcessor, llm_call
from otel_llm import _semconv as sc
from otel_llm import processor as processor_module
from otel_llm.processor import _PricedSpan
from tests.support.fake_llm import FakeLLMServer, ScriptedResponse
from tests.support.instrumentors import ANTHROPIC, OPENAI, SDK
from tests.support.pipeline import Pipeline

MESSAGES: Any = [{"role": "user", "content": "Say hi"}]
OPENAI_USAGE = ScriptedResponse(input_tokens=1000, cached_tokens=400, output_tokens=200)
ANTHROPIC_USAGE = ScriptedResponse(
    model="claude-sonnet-4-5-20250929", input_tokens=1000, cached_tokens=2000, output_tokens=200
)
VARYING = {sc.GEN_AI_RESPONSE_ID, sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK}
"""Attributes whose values differ between two calls: compared by type only."""
PRICED = {sc.GEN_AI_USAGE_COST_AMOUNT, sc.OTEL_LLM_COST_UNPRICED_REASON}
TIMED = (sc.PROM_DURATION, sc.PROM_TIME_TO_FIRST_CHUNK)
"""Histograms of measured times: left out of the metrics compared (and every ``_created``)."""


def make_pipeline(*, live: bool, processor: type[LLMSpanProcessor] = LLMSpanProcessor) -> Pipeline:
    """A pipeline; ``live`` False puts an empty processor beside ours, which keeps
    ``CallSpan`` from pricing on the live span."""
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    ours = processor(SimpleSpanProcessor(exporter), registry=registry)
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(ours)
    if not live:
        provider.add_span_processor(SpanProcessor())
    return Pipeline(provider, exporter, registry, ours)


@pytest.fixture
def pipelines() -> Iterator[tuple[Pipeline, Pipeline]]:
    live, copy = make_pipeline(live=True), make_pipeline(live=False)
    yield live, copy
    live.provider.shutdown()
    copy.provider.shutdown()


@pytest.fixture(params=[OPENAI, ANTHROPIC], ids=["openai", "anthropic"])
def sdk(request: pytest.FixtureRequest) -> SDK:
    return request.param  # type: ignore[no-any-return]


def openai_call(client: openai.OpenAI, stream: bool) -> None:
    if not stream:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return
    for _ in client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    ):
        pass


def anthropic_call(client: anthropic.Anthropic, stream: bool) -> None:
    if not stream:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES)
        return
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES
    ) as events:
        for _ in events:
            pass


CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "priced": ("openai", "gpt-4o-mini", {}),
    # Unpriced: an untrusted cost the application set is taken off the span handed on.
    "unpriced": ("acme", "acme-large", {sc.GEN_AI_USAGE_COST_AMOUNT: 0.5}),
    # The application's estimate is replaced where it stands among the attributes.
    "app_cost": ("openai", "gpt-4o-mini", {sc.GEN_AI_USAGE_COST_AMOUNT: 0.5}),
    # Tiered prices: the Decimal path, never the one pass.
    "tiered": ("anthropic", "claude-sonnet-4-5", {}),
}
"""llm_call's cases: provider, model and attributes set at the start."""


def manual_call(
    pipeline: Pipeline, stream: bool, failed: bool = False, case: str = "priced"
) -> None:
    provider, model, more = CASES[case]
    with llm_call(
        provider=provider,
        model=model,
        attributes={"gen_ai.request.temperature": 0.2, **more},
        stream=stream,
        tracer_provider=pipeline.provider,
    ) as call:
        if stream:
            call.first_chunk()
        call.set_response(model=model, id="r-1", finish_reasons=["stop"])
        call.set_usage(input_tokens=1200, output_tokens=300, cache_read_tokens=400)
        if failed:
            call.fail_as("content_filter", "refused")


def through(pipeline: Pipeline, sdk: SDK, fake: FakeLLMServer, stream: bool, calls: int) -> None:
    fake.script(*[OPENAI_USAGE if sdk is OPENAI else ANTHROPIC_USAGE] * calls)
    instrumentor = sdk.instrument(pipeline)
    try:
        with sdk.client(fake) as client:
            for _ in range(calls):
                (openai_call if sdk is OPENAI else anthropic_call)(client, stream)
    finally:
        instrumentor.uninstrument()


def assert_same_spans(live: ReadableSpan, copy: ReadableSpan) -> None:
    assert type(live) is ReadableSpan  # the live span itself, handed on
    assert type(copy) is _PricedSpan  # the copy, as before
    assert live.attributes.keys() & PRICED  # type: ignore[union-attr]  # priced or said why not
    live_items = list((live.attributes or {}).items())
    copy_items = list((copy.attributes or {}).items())
    assert [name for name, _ in live_items] == [name for name, _ in copy_items]
    for (name, value), (_, other) in zip(live_items, copy_items, strict=True):
        if name in VARYING:
            assert type(value) is type(other), name
        else:
            assert (value, type(value)) == (other, type(other)), name
    assert (live.name, live.kind, live.status.status_code, live.dropped_attributes) == (
        copy.name,
        copy.kind,
        copy.status.status_code,
        copy.dropped_attributes,
    )
    assert (len(live.events), live.parent is None, live.resource.attributes) == (
        len(copy.events),
        copy.parent is None,
        copy.resource.attributes,
    )


def metrics(pipeline: Pipeline) -> list[str]:
    return [
        line
        for line in generate_latest(pipeline.registry).decode().splitlines()
        if not line.startswith(TIMED) and "_created{" not in line
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["call", "stream"])
def test_an_instrumented_call_is_the_same_priced_live_or_copied(
    pipelines: tuple[Pipeline, Pipeline], sdk: SDK, fake: FakeLLMServer, stream: bool
) -> None:
    live, copy = pipelines
    # Three calls each: the first takes the full path (and teaches the one pass), the others
    # the one pass; in ``live`` all three are priced on the live span.
    through(live, sdk, fake, stream, 3)
    through(copy, sdk, fake, stream, 3)
    live_spans, copy_spans = live.spans(), copy.spans()
    assert len(live_spans) == len(copy_spans) == 3
    for live_span, copy_span in zip(live_spans, copy_spans, strict=True):
        assert_same_spans(live_span, copy_span)
    assert metrics(live) == metrics(copy)
    assert live.processor._live == {}  # every live span reached on_end


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("stream", [False, True], ids=["call", "stream"])
@pytest.mark.parametrize("failed", [False, True], ids=["ok", "failed"])
def test_an_llm_call_is_the_same_priced_live_or_copied(
    pipelines: tuple[Pipeline, Pipeline], stream: bool, failed: bool, case: str
) -> None:
    live, copy = pipelines
    for pipeline in pipelines:
        for _ in range(3):
            manual_call(pipeline, stream, failed, case)
    for live_span, copy_span in zip(live.spans(), copy.spans(), strict=True):
        assert_same_spans(live_span, copy_span)
    assert metrics(live) == metrics(copy)


def test_a_call_nested_in_an_llm_call_prices_the_inner_span_live_and_marks_the_outer(
    pipelines: tuple[Pipeline, Pipeline], fake: FakeLLMServer
) -> None:
    """The OpenAI span inside an ``llm_call``: the inner is priced, the outer is exported
    marked as counted in it -- on the copy path in both pipelines, as before."""
    for pipeline in pipelines:
        fake.script(*[OPENAI_USAGE] * 3)
        instrumentor = OPENAI.instrument(pipeline)
        try:
            with OPENAI.client(fake) as client:
                for _ in range(3):
                    with llm_call(
                        provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider
                    ):
                        openai_call(client, stream=False)
        finally:
            instrumentor.uninstrument()
    live, copy = (pipeline.spans() for pipeline in pipelines)
    assert len(live) == len(copy) == 6
    for inner, other in zip(live[0::2], copy[0::2], strict=True):
        assert_same_spans(inner, other)
    for outer, other in zip(live[1::2], copy[1::2], strict=True):
        assert type(outer) is type(other) is _PricedSpan
        assert outer.attributes[sc.OTEL_LLM_CALL_COUNTED_IN] == format(  # type: ignore[index]
            live[live.index(outer) - 1].context.span_id, "016x"
        )
        assert sc.GEN_AI_USAGE_COST_AMOUNT not in outer.attributes  # type: ignore[operator]
    assert metrics(pipelines[0]) == metrics(pipelines[1])


def test_a_metrics_only_processor_leaves_the_span_as_it_was() -> None:
    registry = CollectorRegistry()
    provider = TracerProvider()
    provider.add_span_processor(LLMSpanProcessor(registry=registry))
    spans = []
    for _ in range(3):
        with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as call:
            call.set_usage(input_tokens=1200, output_tokens=300)
            spans.append(call.span)
    assert all(sc.GEN_AI_USAGE_COST_AMOUNT not in span.attributes for span in spans)  # type: ignore[attr-defined]
    (tokens,) = (
        metric for metric in registry.collect() if metric.name + "_total" == sc.PROM_TOKENS
    )
    by_type = {
        s.labels["gen_ai_token_type"]: s.value for s in tokens.samples if s.name == sc.PROM_TOKENS
    }
    assert by_type == {"input": 3 * 1200, "output": 3 * 300}


class _FailingLive(LLMSpanProcessor):
    """A processor whose pricing on the live span fails (a bug there): it must fall back."""

    def _end_common(  # type: ignore[override]
        self, span: Any, attributes: Any, scope: Any, live_end: int = 0
    ) -> Any:
        if live_end:
            raise RuntimeError("broken")
        return super()._end_common(span, attributes, scope)


def test_a_failure_on_the_live_path_falls_back_to_the_copy(
    pipelines: tuple[Pipeline, Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    failing = make_pipeline(live=True, processor=_FailingLive)
    copy = pipelines[1]
    for pipeline in (failing, copy):
        for _ in range(3):
            manual_call(pipeline, stream=False)  # raises nothing into the call
    for span, other in zip(failing.spans(), copy.spans(), strict=True):
        assert type(span) is _PricedSpan
        assert list(span.attributes.items()) == list(other.attributes.items())  # type: ignore[union-attr]
    assert failing.sample("otel_llm_processor_errors_total", stage="price_ending") == 3
    assert [line for line in metrics(failing) if "processor_errors" not in line] == [
        line for line in metrics(copy) if "processor_errors" not in line
    ]
    assert "price_ending failed" in caplog.text
    failing.provider.shutdown()


def test_a_full_list_of_live_spans_still_ends_and_exports_each_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found in review: trimming the full list of spans priced live (ends that never reached
    on_end) raised when the list was empty by then (another thread's on_end), and the call's
    span was then never ended nor exported, its metrics already recorded. A bound of 0 makes
    every call trim an empty list."""
    monkeypatch.setattr(processor_module, "_MAX_PENDING", 0)
    pipeline = make_pipeline(live=True)
    for _ in range(3):
        manual_call(pipeline, stream=False)
    spans = pipeline.spans()
    assert len(spans) == 3
    assert all(span.attributes and sc.GEN_AI_USAGE_COST_AMOUNT in span.attributes for span in spans)
    assert pipeline.sample("otel_llm_processor_errors_total", stage="price_ending") is None
    pipeline.provider.shutdown()


def test_a_span_the_application_ended_first_is_priced_as_before_and_left_alone(
    pipelines: tuple[Pipeline, Pipeline],
) -> None:
    live = pipelines[0]
    handles = []
    for _ in range(3):
        with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=live.provider) as c:
            c.set_usage(input_tokens=1200, output_tokens=300)
            c.span.end()  # type: ignore[attr-defined]
            handles.append(c)
    exported = live.spans()
    assert len(exported) == 3
    # Priced when the application ended it, on a copy; the ended span is never changed after.
    assert all(type(span) is _PricedSpan for span in exported)
    assert all(sc.GEN_AI_USAGE_COST_AMOUNT in span.attributes for span in exported)  # type: ignore[operator]
    assert all(sc.GEN_AI_USAGE_COST_AMOUNT not in c.span.attributes for c in handles)  # type: ignore[attr-defined]
