"""Streamed calls end their span exactly once, however the stream is left (real SDK clients)."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.trace import StatusCode

from otel_llm import _semconv as sc
from otel_llm.instrumentation.anthropic import AnthropicInstrumentor
from otel_llm.instrumentation.openai import OpenAIInstrumentor
from otel_llm.instrumentation.streams import StreamState
from tests.support.fake_llm import FakeLLMServer, ScriptedResponse
from tests.support.pipeline import Pipeline

MESSAGES: Any = [{"role": "user", "content": "Count to five"}]
pytestmark = pytest.mark.filterwarnings("ignore:The model 'claude:DeprecationWarning")

FIVE = ScriptedResponse(text="one two three four five", chunks=5, input_tokens=20, output_tokens=5)


@pytest.fixture
def traced(
    pipeline: Pipeline, server: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> Iterator[Pipeline]:
    server.clear()
    server.default = FIVE
    instrumentors = (OpenAIInstrumentor(), AnthropicInstrumentor())
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=pipeline.provider, stream_include_usage=True)
    yield pipeline
    for instrumentor in instrumentors:
        instrumentor.uninstrument()
    # The SDK warns when a span is ended twice.
    assert "ended span" not in caplog.text


@pytest.fixture
def client(server: FakeLLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def claude(server: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=server.anthropic_base_url, api_key="test", max_retries=0
    ) as sdk:
        yield sdk


def stream(client: openai.OpenAI) -> Any:
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)


def only_span(pipeline: Pipeline) -> Any:
    spans = pipeline.spans()
    assert len(spans) == 1
    return spans[0]


def test_full_consumption(traced: Pipeline, client: openai.OpenAI) -> None:
    proxied = stream(client)
    chunks = list(proxied)
    assert len(chunks) == 8  # role, five deltas, finish, usage
    assert not proxied._self_finalizer.alive  # nothing left registered for the ended stream
    span = only_span(traced)
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 20
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)


def test_the_proxy_is_faithful(traced: Pipeline, client: openai.OpenAI) -> None:
    proxied = stream(client)
    assert isinstance(proxied, openai.Stream)
    assert proxied.response.status_code == 200
    first = next(proxied)
    assert first.choices[0].delta.role == "assistant"
    assert traced.spans() == ()
    rest = list(proxied)
    assert len(rest) == 7
    assert only_span(traced).attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 5


def test_break_early(traced: Pipeline, client: openai.OpenAI) -> None:
    for chunk in stream(client):
        if chunk.choices and chunk.choices[0].delta.content:
            break
    span = only_span(traced)
    assert span.status.status_code is StatusCode.UNSET
    assert sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in span.attributes
    # Usage comes last: a stream left early has none, and says so.
    assert span.attributes[sc.OTEL_LLM_USAGE_MISSING] is True


def test_close(traced: Pipeline, client: openai.OpenAI) -> None:
    proxied = stream(client)
    next(proxied)
    proxied.close()
    proxied.close()
    assert only_span(traced).status.status_code is StatusCode.UNSET


def test_context_manager_exited_early(traced: Pipeline, client: openai.OpenAI) -> None:
    with stream(client) as proxied:
        next(proxied)
    assert only_span(traced).status.status_code is StatusCode.UNSET


def test_stream_helper_exited_early(traced: Pipeline, client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as helper:
        next(iter(helper))
        assert traced.spans() == ()
    assert only_span(traced).status.status_code is StatusCode.UNSET


def test_garbage_collected_unconsumed(traced: Pipeline, client: openai.OpenAI) -> None:
    proxied = stream(client)
    state = proxied.otel_llm_state
    assert isinstance(state, StreamState)
    gone = weakref.ref(proxied)
    del proxied
    gc.collect()
    assert gone() is None  # collected, not resurrected by the finalizer
    span = only_span(traced)
    assert span.attributes[sc.OTEL_LLM_USAGE_MISSING] is True
    assert state.call.ended


def test_mid_stream_error(traced: Pipeline, server: FakeLLMServer, client: openai.OpenAI) -> None:
    server.script(ScriptedResponse(chunks=5, fail_after_chunks=2))
    with pytest.raises(openai.APIError):
        for _ in stream(client):
            pass
    span = only_span(traced)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "openai.APIError"
    assert span.events[0].name == "exception"
    # The HTTP answer was a 200; the provider's error came inside the stream, with its type.
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 200
    assert span.attributes[sc.OTEL_LLM_ERROR_CODE] == "server_error"


def test_mid_stream_disconnect(
    traced: Pipeline, server: FakeLLMServer, client: openai.OpenAI
) -> None:
    server.script(ScriptedResponse(chunks=5, fail_after_chunks=2, failure="disconnect"))
    with pytest.raises(openai.APIError) as raised:
        for _ in stream(client):
            pass
    span = only_span(traced)
    assert span.status.status_code is StatusCode.ERROR
    error = type(raised.value)
    assert span.attributes[sc.ERROR_TYPE] == f"{error.__module__}.{error.__qualname__}"


def test_responses_stream_failure_reported_as_events(
    traced: Pipeline, server: FakeLLMServer, client: openai.OpenAI
) -> None:
    server.script(ScriptedResponse(chunks=5, fail_after_chunks=2))
    events = [
        event.type
        for event in client.responses.create(model="gpt-4o-mini", input="Count", stream=True)
    ]
    assert events[-1] == "response.failed"
    span = only_span(traced)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "server_error"
    assert span.attributes[sc.OTEL_LLM_ERROR_CODE] == "server_error"
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 200


def test_async_break_early(traced: Pipeline, server: FakeLLMServer) -> None:
    async def main() -> None:
        async with openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key="test", max_retries=0
        ) as client:
            streamed = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            async for _ in streamed:
                break
            await asyncio.sleep(0)  # the event loop finalizes the abandoned async iterator

    asyncio.run(main())
    assert only_span(traced).status.status_code is StatusCode.UNSET


def test_async_stream_helper_exited_early(traced: Pipeline, server: FakeLLMServer) -> None:
    async def main() -> None:
        async with openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key="test", max_retries=0
        ) as client:
            async with client.chat.completions.stream(
                model="gpt-4o-mini", messages=MESSAGES
            ) as helper:
                await helper.__anext__()
            assert len(traced.spans()) == 1

    asyncio.run(main())
    assert only_span(traced).status.status_code is StatusCode.UNSET


def test_async_close_and_mid_stream_error(traced: Pipeline, server: FakeLLMServer) -> None:
    server.script(FIVE, ScriptedResponse(chunks=5, fail_after_chunks=1))

    async def main() -> None:
        async with openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key="test", max_retries=0
        ) as client:
            closed = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            await closed.__anext__()
            await closed.close()
            failing = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            with pytest.raises(openai.APIError):
                async for _ in failing:
                    pass

    asyncio.run(main())
    closed_span, failed_span = traced.spans()
    assert closed_span.status.status_code is StatusCode.UNSET
    assert failed_span.status.status_code is StatusCode.ERROR


def test_an_async_stream_closed_by_aclose_ends_its_span_then(
    traced: Pipeline, server: FakeLLMServer
) -> None:
    """Found in review: ``aclose``, OpenAI's alias of ``close``, went past the proxy and left
    the span open until the proxy was collected (never, while the stream is kept)."""
    server.script(FIVE)

    async def main() -> None:
        async with openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key="test", max_retries=0
        ) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            await stream.__anext__()
            await stream.aclose()
            assert len(traced.spans()) == 1  # ended now, the stream still referenced

    asyncio.run(main())
    assert only_span(traced).status.status_code is StatusCode.UNSET


def test_anthropic_stream_helper_exited_early(
    traced: Pipeline, claude: anthropic.Anthropic
) -> None:
    with claude.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES
    ) as helper:
        next(iter(helper.text_stream))
    span = only_span(traced)
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True


def test_anthropic_mid_stream_error(
    traced: Pipeline, server: FakeLLMServer, claude: anthropic.Anthropic
) -> None:
    server.script(ScriptedResponse(chunks=5, fail_after_chunks=2))
    with pytest.raises(anthropic.APIStatusError):
        for _ in claude.messages.create(
            model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES, stream=True
        ):
            pass
    span = only_span(traced)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE].startswith("anthropic.")


def test_anthropic_garbage_collected_unconsumed(
    traced: Pipeline, claude: anthropic.Anthropic
) -> None:
    streamed = claude.messages.create(
        model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES, stream=True
    )
    next(streamed)
    del streamed
    gc.collect()
    span = only_span(traced)
    # message_start carried the input usage already.
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 20


def test_a_broken_handler_never_reaches_the_application(
    traced: Pipeline, client: openai.OpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    proxied = stream(client)

    class Broken:
        def on_item(self, call: Any, item: Any) -> None:
            raise RuntimeError("handler bug")

        def complete(self, call: Any) -> None:
            raise RuntimeError("handler bug")

    proxied.otel_llm_state.handler = Broken()
    with caplog.at_level(logging.DEBUG, logger="otel_llm"):
        assert len(list(proxied)) == 8
    assert only_span(traced).status.status_code is StatusCode.UNSET
