"""CallSpan: the one GenAI span lifecycle behind llm_call, the instrumentors and their streams."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from otel_llm import _semconv as sc
from otel_llm import lifecycle
from otel_llm.lifecycle import CallSpan, error_type, start_attributes


class StatusError(Exception):
    status_code = 503


@pytest.fixture
def memory() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(memory: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider


def start(provider: TracerProvider, **attributes: object) -> CallSpan:
    tracer = provider.get_tracer("test")
    given = start_attributes(operation="chat", provider="openai", model="gpt-4o", **attributes)  # type: ignore[arg-type]
    return CallSpan.start(tracer, "chat", "gpt-4o", given)


def test_start_attributes_leave_out_nones_and_a_port_without_an_address() -> None:
    assert start_attributes(operation="chat", provider="openai", model=None, server_port=443) == {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "openai",
    }
    assert start_attributes(
        operation="embeddings",
        provider="ollama",
        model="nomic",
        stream=True,
        server_address="localhost",
        server_port=11434,
    ) == {
        sc.GEN_AI_OPERATION_NAME: "embeddings",
        sc.GEN_AI_PROVIDER_NAME: "ollama",
        sc.GEN_AI_REQUEST_MODEL: "nomic",
        sc.GEN_AI_REQUEST_STREAM: True,
        sc.SERVER_ADDRESS: "localhost",
        sc.SERVER_PORT: 11434,
    }


def test_a_call_from_start_to_end(provider: TracerProvider, memory: InMemorySpanExporter) -> None:
    call = start(provider, server_address="api.openai.com", server_port=443)
    call.set_usage(input_tokens=10, output_tokens=4, cache_read_tokens=None)
    call.set_response(model="gpt-4o-2024-08-06", id="r-1", finish_reasons=("stop",))
    call.first_chunk()
    call.first_chunk()  # ignored: the first one is timed
    assert call.end() is True
    (span,) = memory.get_finished_spans()
    assert span.name == "chat gpt-4o"
    assert span.kind is SpanKind.CLIENT
    assert span.start_time == call.start_ns
    attributes = dict(span.attributes or {})
    assert attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 10
    assert sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS not in attributes
    assert attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attributes[sc.GEN_AI_REQUEST_STREAM] is True  # the first chunk says it streamed
    assert 0 <= attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] < 60


def test_ends_exactly_once_whoever_gets_there_first(
    provider: TracerProvider, memory: InMemorySpanExporter
) -> None:
    call = start(provider)
    completed: list[int] = []
    barrier = threading.Barrier(8)

    def finish(index: int) -> None:
        barrier.wait(5)
        call.end(before=lambda: completed.append(index))

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(completed) == 1
    assert call.ended
    assert call.end() is False
    assert len(memory.get_finished_spans()) == 1


def test_failure_by_an_exception_and_by_a_reported_error(
    provider: TracerProvider, memory: InMemorySpanExporter
) -> None:
    raised = start(provider)
    raised.fail(StatusError("upstream unavailable"))
    raised.end()
    reported = start(provider)
    reported.fail_as("server_error", "the model failed")
    reported.end()
    by_exception, by_report = memory.get_finished_spans()
    assert by_exception.status.status_code is StatusCode.ERROR
    assert by_exception.status.description == "upstream unavailable"
    assert by_exception.attributes[sc.ERROR_TYPE] == "tests.test_lifecycle.StatusError"
    assert by_exception.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 503
    assert by_exception.events[0].name == "exception"
    assert by_report.status.status_code is StatusCode.ERROR
    assert by_report.status.description == "the model failed"
    assert by_report.attributes[sc.ERROR_TYPE] == "server_error"
    assert not by_report.events


def test_error_type_qualifies_all_but_builtins() -> None:
    assert error_type(ValueError("x")) == "ValueError"
    assert error_type(StatusError()) == "tests.test_lifecycle.StatusError"


def test_nothing_raises_into_the_caller(
    provider: TracerProvider, memory: InMemorySpanExporter
) -> None:
    call = start(provider)
    call.set_attribute("gen_ai.request.seed", object())
    call.set_all({"gen_ai.request.top_k": None, "gen_ai.request.top_p": 0.5})

    def broken() -> None:
        raise RuntimeError("response reader bug")

    call.end(before=broken)
    call.fail(ValueError("after the end"))  # the SDK ignores it; nothing is raised
    (span,) = memory.get_finished_spans()
    assert span.attributes["gen_ai.request.top_p"] == 0.5
    assert "gen_ai.request.top_k" not in span.attributes
    assert span.status.status_code is StatusCode.UNSET


# What CallSpan sets after the start, in the batches it sets them: values set again, a list.
BATCHES: list[dict[str, Any]] = [
    {sc.GEN_AI_REQUEST_STREAM: True, sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: 0.25},
    {
        sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
        sc.GEN_AI_RESPONSE_ID: "chatcmpl-1",
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ["stop", "length"],
        sc.HTTP_RESPONSE_STATUS_CODE: 200,
        sc.GEN_AI_USAGE_INPUT_TOKENS: 1200,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
    },
    {sc.GEN_AI_REQUEST_MODEL: "gpt-4o", sc.GEN_AI_USAGE_INPUT_TOKENS: 1300},
]


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (SpanLimits(), [True, True, True]),
        # The SDK would drop the oldest: left to it from the batch that would not fit.
        (SpanLimits(max_span_attributes=9), [True, False, False]),
        (SpanLimits(max_attribute_length=5), [False, False, False]),  # it cuts strings
    ],
    ids=["default", "few attributes", "short values"],
)
def test_attributes_are_stored_as_the_sdk_stores_them(
    limits: SpanLimits, expected: list[bool]
) -> None:
    tracer = TracerProvider(span_limits=limits).get_tracer("t")
    start = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini"}
    ours, sdks = tracer.start_span("a", attributes=start), tracer.start_span("b", attributes=start)
    stored = []
    for batch in BATCHES:  # as CallSpan sets them: the SDK sets what _store leaves
        stored.append(lifecycle._store(ours, dict(batch)))
        if not stored[-1]:
            ours.set_attributes(dict(batch))
        sdks.set_attributes(dict(batch))
    assert stored == expected
    for span in (ours, sdks):
        span.end()
    assert list(ours.attributes.items()) == list(sdks.attributes.items())  # type: ignore[union-attr]
    assert [type(value) for value in ours.attributes.values()] == [  # type: ignore[union-attr]
        type(value)
        for value in sdks.attributes.values()  # type: ignore[union-attr]
    ]
    assert ours.dropped_attributes == sdks.dropped_attributes
    # Ended: left to the SDK (which warns and keeps nothing).
    assert lifecycle._store(ours, {"late": 1}) is False
    assert "late" not in ours.attributes  # type: ignore[operator]


def test_a_wrapped_set_attributes_is_called_not_bypassed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Someone's wrapper of the SDK's method (a test's counter, another library's hook) runs.
    span = TracerProvider().get_tracer("t").start_span("a")
    assert lifecycle._store(span, {"a": 1}) is True
    seen: list[dict[str, Any]] = []
    original = SdkSpan.set_attributes

    def wrapped(self: SdkSpan, attributes: Any) -> None:
        seen.append(dict(attributes))
        original(self, attributes)

    monkeypatch.setattr(SdkSpan, "set_attributes", wrapped)
    assert lifecycle._store(span, {"b": 2}) is False
    call = CallSpan(span, 0)
    call.set_usage(input_tokens=5)
    assert seen == [{sc.GEN_AI_USAGE_INPUT_TOKENS: 5}]
    span.end()
    assert dict(span.attributes or {}) == {"a": 1, sc.GEN_AI_USAGE_INPUT_TOKENS: 5}
