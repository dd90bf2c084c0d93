"""AnthropicInstrumentor: the real ``anthropic`` client against the fake server, priced."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from typing import Any

import anthropic
import pydantic
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from wrapt import FunctionWrapper

from otel_llm import _semconv as sc
from tests.support.fake_llm import FakeLLMServer, ScriptedResponse
from tests.support.instrumentors import ANTHROPIC, SDK
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.filterwarnings("ignore:The model 'claude:DeprecationWarning")

MODEL = "claude-sonnet-4-5"
MESSAGES: Any = [{"role": "user", "content": "Say hi"}]
# Anthropic counts cache reads and writes outside input_tokens; the conventions inside.
USAGE = ScriptedResponse(
    model="claude-sonnet-4-5-20250929",
    input_tokens=1000,
    cached_tokens=2000,
    cache_creation_tokens=500,
    output_tokens=200,
)
# claude-sonnet-4-5: $3 input, $3.75 cache write, $0.30 cache read, $15 output per MTok.
COST = (1000 * 3 + 500 * 3.75 + 2000 * 0.30 + 200 * 15) / 1e6


CLAUDE = replace(ANTHROPIC, default=USAGE)


@pytest.fixture
def sdk() -> SDK:
    return CLAUDE


instrument = CLAUDE.instrument
labels = CLAUDE.labels


def assert_priced(pipeline: Pipeline, attributes: Any, calls: int = 1) -> None:
    assert attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 3500
    assert attributes[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 2000
    assert attributes[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == 500
    assert attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 200
    assert attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == pytest.approx(COST)
    assert pipeline.sample(sc.PROM_COST, **labels()) == pytest.approx(calls * COST)
    cache_creation = pipeline.sample(sc.PROM_TOKENS, **labels(gen_ai_token_type="cache_creation"))
    assert cache_creation == calls * 500


def test_create(traced: Pipeline, fake: FakeLLMServer, client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=MESSAGES,
        stop_sequences=["END"],
    )
    (span,) = traced.spans()
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    attributes = span.attributes
    assert attributes[sc.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert attributes[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert attributes["gen_ai.request.max_tokens"] == 100
    assert attributes["gen_ai.request.stop_sequences"] == ("END",)
    assert attributes[sc.GEN_AI_RESPONSE_ID] == message.id
    assert attributes[sc.GEN_AI_RESPONSE_MODEL] == "claude-sonnet-4-5-20250929"
    assert attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert_priced(traced, attributes)


def test_create_async(traced: Pipeline, fake: FakeLLMServer) -> None:
    async def main() -> None:
        async with CLAUDE.async_client(fake) as sdk:
            await sdk.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)

    asyncio.run(main())
    (span,) = traced.spans()
    assert_priced(traced, span.attributes)


def test_create_stream(traced: Pipeline, fake: FakeLLMServer, client: anthropic.Anthropic) -> None:
    events = list(
        client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
    )
    assert events[-1].type == "message_stop"
    (span,) = traced.spans()
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True
    assert sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in span.attributes
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert_priced(traced, span.attributes)


def test_stream_helper_sync_and_async(
    traced: Pipeline, fake: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        text = stream.get_final_text()
    assert text

    async def main() -> str:
        async with CLAUDE.async_client(fake) as sdk:
            async with sdk.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as s:
                return await s.get_final_text()

    assert asyncio.run(main()) == text
    spans = traced.spans()
    assert len(spans) == 2
    for span in spans:
        assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True
        assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == pytest.approx(COST)
    assert traced.sample(sc.PROM_COST, **labels()) == pytest.approx(2 * COST)


def test_async_create_stream(traced: Pipeline, fake: FakeLLMServer) -> None:
    async def main() -> list[Any]:
        async with CLAUDE.async_client(fake) as sdk:
            stream = await sdk.messages.create(
                model=MODEL, max_tokens=100, messages=MESSAGES, stream=True
            )
            return [event async for event in stream]

    assert asyncio.run(main())[-1].type == "message_stop"
    (span,) = traced.spans()
    assert sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in span.attributes
    assert_priced(traced, span.attributes)


def test_structured_outputs_by_parse_are_one_priced_span_each(
    traced: Pipeline, fake: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    """Found in review: ``messages.parse`` posts the request itself, not through ``create``,
    and a billed call made no span."""

    class Answer(pydantic.BaseModel):
        a: int

    fake.script(replace(USAGE, text='{"a": 1}'), replace(USAGE, text='{"a": 2}'))
    parsed = client.messages.parse(
        model=MODEL, max_tokens=100, messages=MESSAGES, output_format=Answer
    )
    assert parsed.parsed_output == Answer(a=1)

    async def main() -> Any:
        async with CLAUDE.async_client(fake) as sdk:
            return await sdk.messages.parse(
                model=MODEL, max_tokens=100, messages=MESSAGES, output_format=Answer
            )

    assert asyncio.run(main()).parsed_output == Answer(a=2)
    spans = traced.spans()
    assert len(spans) == 2 == len(fake.requests)
    for span in spans:
        assert_priced(traced, span.attributes, calls=2)


def test_a_stream_manager_never_entered_makes_no_request_and_no_span(
    traced: Pipeline, fake: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert fake.requests == []
    assert traced.spans() == ()


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(429, anthropic.RateLimitError), (500, anthropic.InternalServerError)],
)
def test_http_errors(
    traced: Pipeline,
    fake: FakeLLMServer,
    client: anthropic.Anthropic,
    status: int,
    error_class: type[Exception],
) -> None:
    fake.script(ScriptedResponse(status=status))
    with pytest.raises(error_class):
        client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    (span,) = traced.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == f"anthropic.{error_class.__name__}"
    assert span.attributes["http.response.status_code"] == status
    count = traced.sample(
        sc.PROM_DURATION + "_count",
        **labels(error_type=f"anthropic.{error_class.__name__}", gen_ai_response_model=""),
    )
    assert count == 1


def test_one_call_one_span_although_the_sdk_traces_too(
    pipeline: Pipeline, fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY", raising=False)
    # The SDK traces through the global provider: make it the test's.
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: pipeline.provider)
    with anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="test") as untraced:
        untraced.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    (sdk_span,) = pipeline.spans()
    assert sdk_span.instrumentation_scope.name != "otel_llm.instrumentation"
    pipeline.exporter.clear()

    instrumentor = instrument(pipeline)
    try:
        assert os.environ["ANTHROPIC_OPEN_TELEMETRY"] == "false"
        with anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="test") as sdk:
            sdk.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    finally:
        instrumentor.uninstrument()
    (span,) = pipeline.spans()
    assert span.instrumentation_scope.name == "otel_llm.instrumentation"
    assert "ANTHROPIC_OPEN_TELEMETRY" not in os.environ


def test_the_users_sdk_tracing_choice_is_kept(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", "true")
    instrument(pipeline).uninstrument()
    assert os.environ["ANTHROPIC_OPEN_TELEMETRY"] == "true"


def test_content_capture(
    pipeline: Pipeline, fake: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    fake.script(ScriptedResponse(text="Hello!"), ScriptedResponse(text="Streamed", chunks=2))
    instrumentor = instrument(pipeline, capture_content=True)
    try:
        client.messages.create(
            model=MODEL, max_tokens=100, messages=MESSAGES, system="Be brief. api_key=sk-abcdef"
        )
        with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
            stream.until_done()
    finally:
        instrumentor.uninstrument()
    plain, streamed = pipeline.spans()
    assert json.loads(plain.attributes[sc.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "Be brief. api_key=[REDACTED]"}
    ]
    assert json.loads(plain.attributes[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Say hi"}]}
    ]
    for span, text in ((plain, "Hello!"), (streamed, "Streamed")):
        assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": text}],
                "finish_reason": "end_turn",
            }
        ]


def test_uninstrument_restores_the_originals(pipeline: Pipeline) -> None:
    from anthropic.resources.messages import AsyncMessages, Messages

    names = ("create", "stream")
    originals = [vars(cls)[name] for cls in (Messages, AsyncMessages) for name in names]
    instrumentor = instrument(pipeline)
    assert isinstance(vars(Messages)["stream"], FunctionWrapper)
    instrumentor.uninstrument()
    assert [vars(cls)[name] for cls in (Messages, AsyncMessages) for name in names] == originals
