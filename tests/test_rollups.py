"""What a run cost: agents' identity flows down a trace, calls' costs roll up to agent and local
root spans (otel_llm/tracecost.py), with the real SDK and Prometheus registry."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor, llm_call, llm_context
from otel_llm import _semconv as sc
from tests.support.pipeline import Pipeline

TOOL = "execute_tool"


@contextmanager
def agent(pipeline: Pipeline, name: str, **attributes: str) -> Iterator[None]:
    """An ``invoke_agent`` span, current while the block runs (as agent frameworks make it)."""
    tracer = pipeline.provider.get_tracer("agents")
    with tracer.start_as_current_span(
        f"invoke_agent {name}",
        attributes={
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT,
            sc.GEN_AI_AGENT_NAME: name,
            **attributes,
        },
    ):
        yield


def call(pipeline: Pipeline, model: str, input_tokens: int, output_tokens: int) -> None:
    with llm_call(provider="openai", model=model, tracer_provider=pipeline.provider) as handle:
        handle.set_usage(input_tokens=input_tokens, output_tokens=output_tokens)


def tool(pipeline: Pipeline, name: str) -> trace.Span:
    return pipeline.provider.get_tracer("agents").start_span(
        f"{TOOL} {name}", attributes={sc.GEN_AI_OPERATION_NAME: TOOL, "gen_ai.tool.name": name}
    )


def cost_of(span: ReadableSpan) -> Decimal:
    """A call's exact cost, from the float attribute's exact source: the price book."""
    return Decimal(repr(span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT]))


def calls(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.attributes.get(sc.GEN_AI_OPERATION_NAME) == "chat"]


def under(spans: list[ReadableSpan], ancestor: ReadableSpan) -> list[ReadableSpan]:
    """The calls among ``spans`` whose ancestors include ``ancestor``."""
    by_id = {s.context.span_id: s for s in spans}
    found = []
    for span in calls(spans):
        parent = span.parent
        while parent is not None and parent.span_id in by_id:
            if parent.span_id == ancestor.context.span_id:
                found.append(span)
                break
            parent = by_id[parent.span_id].parent
    return found


def exact_sum(spans: list[ReadableSpan], pipeline: Pipeline) -> Decimal:
    """The calls' costs as the price book gives them exactly."""
    book = pipeline.processor.price_book
    total = Decimal(0)
    for span in spans:
        priced = pipeline.processor.pricer.price_sdk_span(
            span, dict(span.attributes), span.instrumentation_scope.name
        )
        assert priced is not None
        total += priced.priced.amount  # type: ignore[union-attr]
    assert book is not None
    return total


def test_agents_three_deep_roll_up_exactly_and_calls_inherit_the_nearest(
    pipeline: Pipeline,
) -> None:
    tracer = pipeline.provider.get_tracer("app")
    with tracer.start_as_current_span("POST /ask"):
        call(pipeline, "gpt-4o-mini", 100, 10)  # under the root, no agent
        with agent(pipeline, "planner", **{sc.GEN_AI_CONVERSATION_ID: "conv-7"}):
            call(pipeline, "gpt-4o", 1234, 56)
            with agent(pipeline, "researcher", **{sc.GEN_AI_AGENT_ID: "r-1"}):
                lookup = tool(pipeline, "search")
                with trace.use_span(lookup, end_on_exit=True):
                    call(pipeline, "gpt-4o-mini", 777, 33)
                with agent(pipeline, "summarizer"):
                    call(pipeline, "gpt-4o-mini", 5000, 700)
                    call(pipeline, "no-such-model-xyz", 10, 10)  # unpriced, still counted
    spans = list(pipeline.spans())
    by_name = {s.name: s for s in spans}

    # Calls carry their nearest agent; the conversation flows down from the outer one.
    agents_of_calls = sorted(
        (
            s.attributes.get(sc.GEN_AI_AGENT_NAME, ""),
            s.attributes.get(sc.GEN_AI_CONVERSATION_ID, ""),
        )
        for s in calls(spans)
    )
    assert agents_of_calls == [
        ("", ""),
        ("planner", "conv-7"),
        ("researcher", "conv-7"),
        ("summarizer", "conv-7"),
        ("summarizer", "conv-7"),
    ]
    researcher_call = next(
        s for s in calls(spans) if s.attributes.get(sc.GEN_AI_AGENT_NAME) == "researcher"
    )
    assert researcher_call.attributes[sc.GEN_AI_AGENT_ID] == "r-1"

    # Each agent's and the root's roll-up is the exact sum of the calls that ended under it.
    for name, expected_calls in (
        ("POST /ask", 5),
        ("invoke_agent planner", 4),
        ("invoke_agent researcher", 3),
        ("invoke_agent summarizer", 2),
    ):
        span = by_name[name]
        below = under(spans, span)
        assert len(below) == expected_calls, name
        priced = [s for s in below if sc.GEN_AI_USAGE_COST_AMOUNT in s.attributes]
        exact = exact_sum(priced, pipeline)
        assert span.attributes[sc.OTEL_LLM_ROLLUP_COST_EXACT] == str(exact), name
        assert span.attributes[sc.OTEL_LLM_ROLLUP_COST_AMOUNT] == float(exact), name
        assert span.attributes[sc.OTEL_LLM_ROLLUP_CALLS] == expected_calls, name
        assert span.attributes[sc.OTEL_LLM_ROLLUP_UNPRICED_CALLS] == len(below) - len(priced)
        assert span.attributes[sc.OTEL_LLM_ROLLUP_INPUT_TOKENS] == sum(
            s.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] for s in below
        )
        assert span.attributes[sc.OTEL_LLM_ROLLUP_OUTPUT_TOKENS] == sum(
            s.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] for s in below
        )
    # A tool span is neither an agent nor a root: no roll-up.
    assert sc.OTEL_LLM_ROLLUP_CALLS not in by_name["execute_tool search"].attributes

    # Roll-ups are never counted again: the cost metric is the sum of the calls alone.
    total = pipeline.sample(sc.PROM_COST.removesuffix("_total") + "_total")
    metric_total = sum(
        pipeline.registry.get_sample_value(sc.PROM_COST, labels) or 0.0
        for labels in _cost_label_sets(pipeline.registry)
    )
    assert total is None or total == metric_total
    all_priced = [s for s in calls(spans) if sc.GEN_AI_USAGE_COST_AMOUNT in s.attributes]
    assert abs(metric_total - float(exact_sum(all_priced, pipeline))) < 1e-12


def _cost_label_sets(registry: CollectorRegistry) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in registry.collect()
        for sample in family.samples
        if sample.name == sc.PROM_COST
    ]


def test_llm_context_names_the_agent_and_conversation(pipeline: Pipeline) -> None:
    with llm_context(agent="triage", agent_id="t-2", conversation="c-1", feature="support"):
        call(pipeline, "gpt-4o-mini", 10, 5)
    (span,) = pipeline.spans()
    assert span.attributes[sc.GEN_AI_AGENT_NAME] == "triage"
    assert span.attributes[sc.GEN_AI_AGENT_ID] == "t-2"
    assert span.attributes[sc.GEN_AI_CONVERSATION_ID] == "c-1"
    assert span.attributes[sc.OTEL_LLM_CONTEXT_FEATURE] == "support"
    assert "otel_llm.context.agent" not in span.attributes


def test_llm_context_wins_over_an_enclosing_agent_span_and_the_call_over_both(
    pipeline: Pipeline,
) -> None:
    with agent(pipeline, "framework-agent"):
        with llm_context(agent="named-by-user"):
            call(pipeline, "gpt-4o-mini", 10, 5)
        call(pipeline, "gpt-4o-mini", 10, 5)
        with llm_call(
            provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider
        ) as handle:
            handle.set_attribute(sc.GEN_AI_AGENT_NAME, "own")
            handle.set_usage(input_tokens=1, output_tokens=1)
    names = [s.attributes.get(sc.GEN_AI_AGENT_NAME) for s in calls(list(pipeline.spans()))]
    assert names == ["named-by-user", "framework-agent", "own"]


def test_openinference_agent_spans_are_agents(pipeline: Pipeline) -> None:
    tracer = pipeline.provider.get_tracer("openinference.instrumentation.openai_agents")
    with tracer.start_as_current_span(
        "Assistant", attributes={"openinference.span.kind": "AGENT"}
    ) as assistant:
        call(pipeline, "gpt-4o-mini", 100, 20)
    exported = {s.name: s for s in pipeline.spans()}
    assert exported["chat gpt-4o-mini"].attributes[sc.GEN_AI_AGENT_NAME] == "Assistant"
    assert exported["Assistant"].attributes[sc.OTEL_LLM_ROLLUP_CALLS] == 1
    assert assistant.get_span_context().span_id == exported["Assistant"].context.span_id


def test_a_call_under_a_remote_parent_is_its_own_root(pipeline: Pipeline) -> None:
    remote = SpanContext(
        trace_id=0x1234, span_id=0x99, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    with trace.use_span(NonRecordingSpan(remote)):
        call(pipeline, "gpt-4o-mini", 10, 5)
    (span,) = pipeline.spans()
    assert sc.OTEL_LLM_ROLLUP_CALLS not in span.attributes
    assert not pipeline.processor._costs.traces


def test_an_agent_under_a_remote_parent_rolls_up_and_is_the_local_root(
    pipeline: Pipeline,
) -> None:
    remote = SpanContext(
        trace_id=0x1234, span_id=0x99, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    with trace.use_span(NonRecordingSpan(remote)), agent(pipeline, "worker"):
        call(pipeline, "gpt-4o-mini", 10, 5)
        call(pipeline, "gpt-4o-mini", 20, 5)
    exported = {s.name: s for s in pipeline.spans()}
    assert exported["invoke_agent worker"].attributes[sc.OTEL_LLM_ROLLUP_CALLS] == 2
    assert not pipeline.processor._costs.traces
    assert not pipeline.processor._costs.under


def test_traces_whose_root_never_ends_are_evicted_and_counted() -> None:
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    processor = LLMSpanProcessor(
        SimpleSpanProcessor(exporter), registry=registry, rollup_max_open=100
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "leaky"}))
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("app")
    for _ in range(130):  # roots started, calls made, roots never ended
        with (
            trace.use_span(tracer.start_span("request"), end_on_exit=False),
            llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as handle,
        ):
            handle.set_usage(input_tokens=10, output_tokens=5)
    evicted = registry.get_sample_value("otel_llm_rollup_evicted_total", {"kind": "trace"})
    assert evicted == 30
    assert len(processor._costs.traces) == 100
    provider.shutdown()


def test_memory_stays_bounded_with_many_open_traces_and_agents() -> None:
    """Traces left open by the thousand, each with an open agent and a call: the tables stop at
    the bound, and memory growth stops with them (100 k such traces: see the note's RSS)."""
    registry = CollectorRegistry()
    processor = LLMSpanProcessor(registry=registry, rollup_max_open=1_000)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("app")

    def open_traces(count: int) -> None:
        for _ in range(count):
            root = tracer.start_span("request")
            with trace.use_span(root, end_on_exit=False):
                runner = tracer.start_span(
                    "invoke_agent a",
                    attributes={
                        sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT,
                        sc.GEN_AI_AGENT_NAME: "a",
                    },
                )
                with (
                    trace.use_span(runner, end_on_exit=False),
                    llm_call(
                        provider="openai", model="gpt-4o-mini", tracer_provider=provider
                    ) as handle,
                ):
                    handle.set_usage(input_tokens=10, output_tokens=5)

    # Past every bound (the processor's nesting notes keep 10 000): every table is full.
    open_traces(11_000)
    gc.collect()
    before = len(gc.get_objects())
    open_traces(10_000)
    gc.collect()
    grown = len(gc.get_objects()) - before
    costs = processor._costs
    assert len(costs.traces) == 1_000
    assert len(costs.under) <= 1_000
    # Full tables only swap entries: 10 000 more traces leave no more objects behind (a leak
    # would leave several per trace: a roll-up and its lists, an agent scope).
    assert grown < 100, grown
    assert registry.get_sample_value("otel_llm_rollup_evicted_total", {"kind": "trace"}) == 20_000
    provider.shutdown()


def test_agent_label_is_off_by_default_and_capped_when_on() -> None:
    for on in (False, True):
        registry = CollectorRegistry()
        processor = LLMSpanProcessor(registry=registry, agent_label=on, max_label_values=2)
        provider = TracerProvider()
        provider.add_span_processor(processor)
        for name in ("a", "b", "c", "d"):
            with llm_context(agent=name):
                with llm_call(
                    provider="openai", model="gpt-4o-mini", tracer_provider=provider
                ) as h:
                    h.set_usage(input_tokens=10, output_tokens=5)
        samples = [
            sample.labels
            for family in registry.collect()
            for sample in family.samples
            if sample.name == sc.PROM_COST
        ]
        if not on:
            assert all("gen_ai_agent_name" not in labels for labels in samples)
            assert len(samples) == 1
        else:
            assert sorted(labels["gen_ai_agent_name"] for labels in samples) == ["a", "b", "other"]
        provider.shutdown()


def test_agent_label_from_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OTEL_LLM_AGENT_LABEL", "true")
    registry = CollectorRegistry()
    processor = LLMSpanProcessor(registry=registry)
    assert "gen_ai_agent_name" in processor.prometheus.extra_labels
    monkeypatch.setenv("OTEL_LLM_ROLLUP_MAX_OPEN", "zero")  # a bad value warns, falls back
    assert LLMSpanProcessor(registry=CollectorRegistry())._costs._max_open == 10_000
