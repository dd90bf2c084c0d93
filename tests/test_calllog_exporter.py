"""CallLogExporter end to end (real TracerProvider + LLMSpanProcessor -> store), and the writer
between them: batches, bounds, failures that never reach the application."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor, llm_call, llm_context
from otel_llm import _semconv as sc
from otel_llm.calllog.exporter import CallLogExporter
from otel_llm.calllog.query import CallFilter, CallQuery, StatsQuery
from otel_llm.calllog.store import SQLCallStore, open_store
from otel_llm.calllog.writer import CallLogWriter
from tests.support.postgres import pg_cluster, store_url  # noqa: F401 - fixtures
from tests.test_calllog_store import make_records

MTOK = Decimal(1_000_000)
# genai-prices' published gpt-4o-mini prices (USD per million tokens), copied by hand.
GPT_4O_MINI = {"input": Decimal("0.15"), "cache_read": Decimal("0.075"), "output": Decimal("0.6")}
LONG_PROMPT = '[{"role": "user", "parts": [{"type": "text", "content": "' + "x" * 500 + '"}]}]'


class App:
    """A real SDK pipeline: LLMSpanProcessor -> (memory exporter, call log exporter)."""

    def __init__(self, store: str) -> None:
        self.memory = InMemorySpanExporter()
        self.calls = CallLogExporter(
            store, flush_interval=0.05, content_max_length=100, retention_interval=0
        )
        self.processor = LLMSpanProcessor(
            SimpleSpanProcessor(self.memory),
            SimpleSpanProcessor(self.calls),
            registry=CollectorRegistry(),
        )
        self.provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("other.instrumentation")

    def llm_span(self, name: str = "chat", *, error: str | None = None, **attributes: Any) -> None:
        base = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: "openai"}
        span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes={**base, **attributes})
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()


@pytest.fixture
def app(store_url: str) -> Iterator[App]:  # noqa: F811 - the fixture it uses
    started = App(store_url)
    try:
        yield started
    finally:
        started.provider.shutdown()


def _stored(url: str) -> SQLCallStore:
    return open_store(url)


def test_llm_spans_become_calls_with_cost_context_and_content(app: App, store_url: str) -> None:  # noqa: F811
    with llm_context(
        feature="summary",
        user_id="u1",
        project_id="alpha",
        api_key_id="k1",
        pipeline_step="draft",
        tenant="t1",
    ):
        app.llm_span(
            **{
                sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                sc.GEN_AI_USAGE_INPUT_TOKENS: 1000,
                sc.GEN_AI_USAGE_OUTPUT_TOKENS: 200,
                sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 300,
                sc.GEN_AI_INPUT_MESSAGES: LONG_PROMPT,
                sc.GEN_AI_OUTPUT_MESSAGES: '[{"role": "assistant"}]',
                sc.HTTP_RESPONSE_STATUS_CODE: 200,
            }
        )
    app.llm_span(
        error="429 Too Many Requests",
        **{
            sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            sc.ERROR_TYPE: "RateLimitError",
            sc.HTTP_RESPONSE_STATUS_CODE: 429,
            "error.code": "rate_limit_exceeded",
        },
    )
    app.llm_span(**{sc.GEN_AI_REQUEST_MODEL: "no-such-model-9", sc.GEN_AI_USAGE_INPUT_TOKENS: 5})
    with app.tracer.start_as_current_span("handler"):  # not an LLM call: not stored
        pass
    app.provider.shutdown()  # the exporter's shutdown writes what is queued

    store = _stored(store_url)
    try:
        assert store.count(CallFilter()) == 3
        priced = next(
            span
            for span in app.memory.get_finished_spans()
            if span.attributes and span.attributes.get(sc.GEN_AI_USAGE_INPUT_TOKENS) == 1000
        )
        ok = store.list(CallQuery(filter=CallFilter(status="success", model="gpt-4o-mini")))
        (summary,) = ok.calls
        call = store.get(summary["id"])
        assert call is not None
        expected = (
            700 * GPT_4O_MINI["input"]
            + 300 * GPT_4O_MINI["cache_read"]
            + 200 * GPT_4O_MINI["output"]
        ) / MTOK
        assert call["cost"] == expected
        assert float(call["cost"]) == priced.attributes[sc.GEN_AI_USAGE_COST_AMOUNT]
        assert call["cost_input"] == 700 * GPT_4O_MINI["input"] / MTOK
        assert call["cost_cache_read"] == 300 * GPT_4O_MINI["cache_read"] / MTOK
        assert call["cost_source"] == "local"
        assert call["trace_id"] == format(priced.context.trace_id, "032x")
        assert call["span_id"] == format(priced.context.span_id, "016x")
        assert call["id"] == f"{call['trace_id']}-{call['span_id']}"
        assert (call["service"], call["provider"], call["model"]) == (
            "checkout",
            "openai",
            "gpt-4o-mini",
        )
        assert (call["input_tokens"], call["output_tokens"], call["total_tokens"]) == (
            1000,
            200,
            1200,
        )
        assert call["cache_read_tokens"] == 300
        assert (call["feature"], call["user"], call["project"]) == ("summary", "u1", "alpha")
        assert (call["api_key_id"], call["pipeline_step"]) == ("k1", "draft")
        assert call["context"] == {"tenant": "t1"}
        assert call["status"] == "success"
        assert call["status_code"] == 200
        assert call["has_content"] is True
        assert call["latency_ms"] is not None
        assert call["latency_ms"] >= 0
        details = store.details(call["id"])
        assert details is not None
        assert details["request_prompt"] == LONG_PROMPT[:100]  # truncated
        assert details["response_preview"] == '[{"role": "assistant"}]'

        (failed,) = store.list(CallQuery(filter=CallFilter(status="error"))).calls
        failure = store.get(failed["id"])
        assert failure is not None
        assert failure["error_type"] == "RateLimitError"
        assert failure["error_message"] == "429 Too Many Requests"
        assert failure["error_code"] == "rate_limit_exceeded"
        assert failure["status_code"] == 429
        assert failure["cost"] is None
        assert failure["unpriced_reason"] == "failed_without_usage"
        assert failure["has_content"] is False

        (unknown,) = store.list(CallQuery(filter=CallFilter(model="no-such-model-9"))).calls
        assert unknown["cost"] is None
        stats = store.stats(StatsQuery(group_by="model"))["stats"]
        assert stats["total_requests"] == 3
        assert stats["total_cost"] == expected
        assert stats["unpriced_requests"] == 2
    finally:
        store.close()


def test_a_call_counted_in_a_nested_span_is_stored_once(app: App, store_url: str) -> None:  # noqa: F811
    tracer = app.tracer
    outer = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini"}
    with tracer.start_as_current_span("outer chat", kind=SpanKind.CLIENT, attributes=outer):
        app.llm_span(
            **{
                sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                sc.GEN_AI_USAGE_INPUT_TOKENS: 10,
                sc.GEN_AI_USAGE_OUTPUT_TOKENS: 5,
            }
        )
    app.provider.shutdown()
    store = _stored(store_url)
    try:
        (call,) = store.list(CallQuery()).calls
        inner = next(s for s in app.memory.get_finished_spans() if s.name == "chat")
        assert call["id"].endswith(format(inner.context.span_id, "016x"))
    finally:
        store.close()


def test_a_priced_span_gets_the_same_cost_again_and_redelivery_counts_once(
    tmp_path: Path,
) -> None:
    app = App(str(tmp_path / "calls.db"))
    try:
        with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=app.provider) as c:
            c.set_usage(input_tokens=100, output_tokens=10)
            c.set_cost(0.5)  # the provider's own figure wins, also in the call log
        app.llm_span(
            **{
                sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                sc.GEN_AI_USAGE_INPUT_TOKENS: 123,
                sc.GEN_AI_USAGE_OUTPUT_TOKENS: 45,
            }
        )
        spans = app.memory.get_finished_spans()  # the processor's priced copies
        assert app.calls.force_flush(5000)
        first = {r.id: r.cost for r in map(app.calls.record_of, spans) if r is not None}
        # The exported (priced) spans derived again: same costs, nothing taken for a provider's.
        for span in spans:
            record = app.calls.record_of(span)
            assert record is not None
            assert record.cost == first[record.id]
            assert Decimal(str(span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT])) == record.cost
        sources = sorted(r.cost_source or "" for r in map(app.calls.record_of, spans) if r)
        assert sources == ["local", "provider"]
        # Delivered again (e.g. a retried export): stored once.
        app.calls.export(spans)
        assert app.calls.force_flush(5000)
        assert app.calls.writer.written == 2
        assert app.calls.writer.duplicates == 2
        stats = app.calls.store.stats(StatsQuery())["stats"]
        assert stats["total_requests"] == 2
        assert stats["total_cost"] == sum(first.values(), Decimal(0))
        assert Decimal("0.5") in first.values()
    finally:
        app.provider.shutdown()


# --- the writer ---------------------------------------------------------------------------------


def test_writer_batches_by_interval_and_flushes(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "calls.db"))
    writer = CallLogWriter(store, batch_size=100, flush_interval=0.05, max_pending=1000)
    try:
        assert writer.add(make_records(3, seed=21)) == 3
        deadline = time.monotonic() + 5
        while writer.written < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.written == 3  # written by the interval, no flush asked
        writer.add(make_records(250, seed=22))
        assert writer.flush(10)
        assert store.count(CallFilter()) == 253
        assert writer.pending == 0
    finally:
        assert writer.close(10)
        store.close()


def test_writer_is_bounded_and_counts_what_it_drops(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "calls.db"))
    writer = CallLogWriter(store, batch_size=1000, flush_interval=3600, max_pending=10)
    try:
        assert writer.add(make_records(15, seed=23)) == 10
        assert writer.dropped == 5
        assert writer.flush(10)
        assert store.count(CallFilter()) == 10
    finally:
        assert writer.close(10)
    assert writer.add(make_records(2, seed=24)) == 0  # closed: dropped, counted
    assert writer.dropped == 7
    store.close()


def test_writer_never_raises_when_the_store_fails(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "calls.db"))
    store.close()  # every write now raises
    writer = CallLogWriter(store, batch_size=10, flush_interval=0.01, max_attempts=2)
    try:
        assert writer.add(make_records(5, seed=25)) == 5
        assert writer.add(None) == 0  # type: ignore[arg-type] - bad input is not an exception
        assert writer.flush(10)
        assert writer.failed_writes == 2
        assert writer.dropped == 5
        assert writer.written == 0
    finally:
        assert writer.close(10)
