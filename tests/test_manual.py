"""llm_call: conformant spans for any provider, as context manager and decorator."""

from __future__ import annotations

import asyncio
import threading

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from otel_llm import _semconv as sc
from otel_llm import current_llm_call, llm_call
from tests.support.pipeline import Pipeline


class ProviderError(Exception):
    pass


class RateLimited(ProviderError):
    status_code = 429


def test_span_shape(pipeline: Pipeline) -> None:
    with llm_call(
        provider="ollama",
        model="llama3.1:8b",
        server_address="127.0.0.1",
        server_port=11434,
        attributes={"gen_ai.request.temperature": 0.2},
        tracer_provider=pipeline.provider,
    ) as call:
        call.set_usage(input_tokens=30, output_tokens=12)
        call.set_response(model="llama3.1:8b", id="r-1", finish_reasons=["stop"])
    (span,) = pipeline.spans()
    assert span.name == "chat llama3.1:8b"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attributes = span.attributes
    assert attributes[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert attributes[sc.GEN_AI_PROVIDER_NAME] == "ollama"
    assert attributes[sc.SERVER_PORT] == 11434
    assert attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attributes["gen_ai.request.temperature"] == 0.2
    # Ollama is not in the price data: explicitly unpriced, not free.
    assert attributes[sc.OTEL_LLM_COST_UNPRICED_REASON] == "unknown_provider"


def test_exception_marks_the_span_and_is_reraised_unchanged(pipeline: Pipeline) -> None:
    error = ProviderError("429 Too Many Requests")
    with pytest.raises(ProviderError) as raised:
        with llm_call(provider="openai", model="gpt-4o", tracer_provider=pipeline.provider):
            raise error
    assert raised.value is error
    (span,) = pipeline.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "tests.test_manual.ProviderError"
    assert span.events[0].name == "exception"


def test_an_error_with_an_http_status_is_marked_as_the_instrumentors_mark_it(
    pipeline: Pipeline,
) -> None:
    with pytest.raises(RateLimited):
        with llm_call(provider="openai", model="gpt-4o", tracer_provider=pipeline.provider):
            raise RateLimited("429 Too Many Requests")
    (span,) = pipeline.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "tests.test_manual.RateLimited"
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 429


def test_decorator_sync_and_async(pipeline: Pipeline) -> None:
    @llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider)
    def ask(question: str) -> str:
        call = current_llm_call()
        assert call is not None
        call.set_usage(input_tokens=len(question), output_tokens=3)
        return "yes"

    @llm_call(
        provider="anthropic",
        model="claude-sonnet-4-5",
        operation="chat",
        tracer_provider=pipeline.provider,
    )
    async def ask_async() -> str:
        call = current_llm_call()
        assert call is not None
        call.first_chunk()
        call.set_usage(input_tokens=5, output_tokens=5)
        return "ok"

    assert ask("why?") == "yes"
    assert asyncio.run(ask_async()) == "ok"
    assert current_llm_call() is None
    names = [s.name for s in pipeline.spans()]
    assert names == ["chat gpt-4o-mini", "chat claude-sonnet-4-5"]
    streamed = pipeline.spans()[1]
    assert streamed.attributes[sc.GEN_AI_REQUEST_STREAM] is True
    assert streamed.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0


def test_concurrent_invocations_of_one_decorated_function(pipeline: Pipeline) -> None:
    barrier = threading.Barrier(4)

    @llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider)
    def work(index: int) -> None:
        barrier.wait(5)
        call = current_llm_call()
        assert call is not None
        call.set_usage(input_tokens=index + 1, output_tokens=1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    spans = pipeline.spans()
    assert sorted(s.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] for s in spans) == [1, 2, 3, 4]
    assert len({s.context.span_id for s in spans}) == 4


def test_children_nest_under_the_call(pipeline: Pipeline) -> None:
    tracer = pipeline.provider.get_tracer("http")
    with llm_call(provider="openai", model="gpt-4o", tracer_provider=pipeline.provider):
        with tracer.start_as_current_span("POST /v1/chat/completions"):
            pass
    child, parent = pipeline.spans()
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id


def test_bad_values_do_not_raise(pipeline: Pipeline) -> None:
    with llm_call(provider="openai", model="gpt-4o", tracer_provider=pipeline.provider) as call:
        call.set_usage(input_tokens="many", output_tokens=-3)  # type: ignore[arg-type]
        call.set_attribute("gen_ai.request.seed", object())
        call.usage_missing()
    (span,) = pipeline.spans()
    assert span.attributes[sc.OTEL_LLM_COST_UNPRICED_REASON] == "invalid_usage"
