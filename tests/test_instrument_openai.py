"""OpenAIInstrumentor: the real ``openai`` client against the fake server, priced."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry
from wrapt import FunctionWrapper, ObjectProxy

from otel_llm import LLMSpanProcessor, lifecycle
from otel_llm import _semconv as sc
from otel_llm.instrumentation import values
from otel_llm.instrumentation.openai import OpenAIInstrumentor, provider_name
from tests.support.fake_llm import FakeLLMServer, ScriptedResponse
from tests.support.instrumentors import OPENAI, SDK
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.pipeline import Pipeline
from tests.support.ports import free_port

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say hi"},
]
# gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per million tokens.
USAGE = ScriptedResponse(input_tokens=1000, cached_tokens=400, output_tokens=200)
COST = (600 * 0.15 + 400 * 0.075 + 200 * 0.60) / 1e6


@pytest.fixture
def sdk() -> SDK:
    return OPENAI


instrument = OPENAI.instrument
labels = OPENAI.labels


def assert_priced(pipeline: Pipeline, attributes: Any) -> None:
    assert attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1000
    assert attributes[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 400
    assert attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 200
    assert attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == pytest.approx(COST)
    assert pipeline.sample(sc.PROM_COST, **labels()) == pytest.approx(COST)
    assert pipeline.sample(sc.PROM_TOKENS, **labels(gen_ai_token_type="cache_read")) == 400
    assert pipeline.sample(sc.PROM_TOKENS, **labels(gen_ai_token_type="output")) == 200


def scripted(**fields: Any) -> ScriptedResponse:
    return ScriptedResponse(
        model="gpt-4o-mini-2024-07-18",
        input_tokens=USAGE.input_tokens,
        cached_tokens=USAGE.cached_tokens,
        output_tokens=USAGE.output_tokens,
        **fields,
    )


def test_chat_span_attributes_usage_and_cost(
    traced: Pipeline, fake: FakeLLMServer, client: openai.OpenAI
) -> None:
    fake.script(scripted(text="Hi there"))
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,  # type: ignore[arg-type]
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        stop=["\n\n"],
        seed=7,
        frequency_penalty=0.1,
        presence_penalty=0.3,
    )
    assert completion.choices[0].message.content == "Hi there"
    (span,) = traced.spans()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attributes = span.attributes
    assert attributes[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert attributes[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert attributes[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert attributes[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert attributes[sc.SERVER_PORT] == int(fake.openai_base_url.split(":")[2].split("/")[0])
    assert attributes["gen_ai.request.temperature"] == 0.2
    assert attributes["gen_ai.request.top_p"] == 0.9
    assert attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.request.stop_sequences"] == ("\n\n",)
    assert attributes["gen_ai.request.seed"] == 7
    assert attributes["gen_ai.request.frequency_penalty"] == 0.1
    assert attributes["gen_ai.request.presence_penalty"] == 0.3
    assert sc.GEN_AI_REQUEST_STREAM not in attributes
    assert attributes[sc.GEN_AI_RESPONSE_ID] == completion.id
    assert attributes[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert sc.GEN_AI_INPUT_MESSAGES not in attributes  # content capture is off by default
    assert_priced(traced, attributes)


def test_start_attributes_are_given_at_span_start(
    pipeline: Pipeline, fake: FakeLLMServer, client: openai.OpenAI
) -> None:
    seen: list[dict[str, Any]] = []

    class Recorder(SimpleSpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            seen.append(dict(span.attributes))

    pipeline.provider.add_span_processor(Recorder(InMemorySpanExporter()))
    instrumentor = instrument(pipeline)
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    finally:
        instrumentor.uninstrument()
    assert seen[0][sc.GEN_AI_OPERATION_NAME] == "chat"
    assert seen[0][sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert seen[0][sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert seen[0][sc.SERVER_ADDRESS] == "127.0.0.1"


def test_chat_async(
    traced: Pipeline, fake: FakeLLMServer, async_client: openai.AsyncOpenAI
) -> None:
    fake.script(scripted())

    async def main() -> None:
        async with async_client:
            await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    asyncio.run(main())
    (span,) = traced.spans()
    assert span.name == "chat gpt-4o-mini"
    assert_priced(traced, span.attributes)


def test_chat_stream_with_include_usage_injected(
    pipeline: Pipeline, fake: FakeLLMServer, client: openai.OpenAI
) -> None:
    fake.script(scripted(text="Hello there you", chunks=3, first_chunk_delay_ms=30))
    instrumentor = instrument(pipeline, stream_include_usage=True)
    try:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    finally:
        instrumentor.uninstrument()
    assert text == "Hello there you"
    assert fake.last_request.body["stream_options"] == {"include_usage": True}
    (span,) = pipeline.spans()
    attributes = span.attributes
    assert attributes[sc.GEN_AI_REQUEST_STREAM] is True
    assert attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0.03
    assert attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attributes[sc.GEN_AI_RESPONSE_ID].startswith("chatcmpl")
    assert sc.OTEL_LLM_USAGE_MISSING not in attributes
    assert_priced(pipeline, attributes)
    assert pipeline.sample(sc.PROM_TIME_TO_FIRST_CHUNK + "_count", **labels()) == 1


def test_chat_stream_without_usage_is_marked_missing_not_priced(
    traced: Pipeline, fake: FakeLLMServer, client: openai.OpenAI
) -> None:
    fake.script(scripted())
    for _ in client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    ):
        pass
    assert "stream_options" not in fake.last_request.body  # the setting is off by default
    (span,) = traced.spans()
    assert span.attributes[sc.OTEL_LLM_USAGE_MISSING] is True
    assert sc.GEN_AI_USAGE_INPUT_TOKENS not in span.attributes
    assert span.attributes[sc.OTEL_LLM_COST_UNPRICED_REASON] == "missing_usage"
    assert traced.sample(sc.PROM_UNPRICED, **labels(reason="missing_usage")) == 1


def test_stream_options_set_by_the_caller_are_kept(
    pipeline: Pipeline, fake: FakeLLMServer, client: openai.OpenAI
) -> None:
    instrumentor = instrument(pipeline, stream_include_usage=True)
    try:
        for _ in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": False},
        ):
            pass
    finally:
        instrumentor.uninstrument()
    assert fake.last_request.body["stream_options"] == {"include_usage": False}
    (span,) = pipeline.spans()
    assert span.attributes[sc.OTEL_LLM_USAGE_MISSING] is True


def test_chat_stream_async(
    pipeline: Pipeline, fake: FakeLLMServer, async_client: openai.AsyncOpenAI
) -> None:
    fake.script(scripted())
    instrumentor = instrument(pipeline, stream_include_usage=True)

    async def main() -> list[Any]:
        async with async_client:
            stream = await async_client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,  # type: ignore[arg-type]
                stream=True,
            )
            return [chunk async for chunk in stream]

    try:
        chunks = asyncio.run(main())
    finally:
        instrumentor.uninstrument()
    assert chunks[-1].usage is not None
    (span,) = pipeline.spans()
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True
    assert sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in span.attributes
    assert_priced(pipeline, span.attributes)


def test_stream_helper_goes_through_create(
    pipeline: Pipeline, fake: FakeLLMServer, client: openai.OpenAI
) -> None:
    fake.script(scripted(text="Hi there"))
    instrumentor = instrument(pipeline, stream_include_usage=True)
    try:
        with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:  # type: ignore[arg-type]
            final = stream.get_final_completion()
    finally:
        instrumentor.uninstrument()
    assert final.choices[0].message.content == "Hi there"
    (span,) = pipeline.spans()
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True
    assert_priced(pipeline, span.attributes)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError)],
)
def test_http_errors_mark_the_span_and_are_reraised(
    traced: Pipeline,
    fake: FakeLLMServer,
    client: openai.OpenAI,
    status: int,
    error_class: type[Exception],
) -> None:
    fake.script(ScriptedResponse(status=status))
    with pytest.raises(error_class) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert type(raised.value) is error_class
    (span,) = traced.spans()
    assert span.status.status_code is StatusCode.ERROR
    error_type = f"openai.{error_class.__name__}"
    assert span.attributes[sc.ERROR_TYPE] == error_type
    assert span.attributes["http.response.status_code"] == status
    assert span.events[0].name == "exception"
    assert span.attributes[sc.OTEL_LLM_COST_UNPRICED_REASON] == "failed_without_usage"
    duration = traced.sample(
        sc.PROM_DURATION + "_count",
        **labels(error_type=error_type, gen_ai_response_model=""),
    )
    assert duration == 1


def test_sdk_retries_are_one_call(traced: Pipeline, fake: FakeLLMServer) -> None:
    fake.script(ScriptedResponse(status=429), scripted())
    with openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=1) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert len(fake.requests) == 2
    (span,) = traced.spans()
    assert span.status.status_code is StatusCode.UNSET
    assert_priced(traced, span.attributes)


def test_async_error(
    traced: Pipeline, fake: FakeLLMServer, async_client: openai.AsyncOpenAI
) -> None:
    fake.script(ScriptedResponse(status=429))

    async def main() -> None:
        async with async_client:
            await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    with pytest.raises(openai.RateLimitError):
        asyncio.run(main())
    (span,) = traced.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "openai.RateLimitError"


def test_responses_create_and_stream(
    traced: Pipeline, fake: FakeLLMServer, client: openai.OpenAI
) -> None:
    fake.script(scripted(text="Hi"), scripted(text="Hi again"))
    response = client.responses.create(model="gpt-4o-mini", input="Say hi", max_output_tokens=64)
    assert response.output_text == "Hi"
    events = list(client.responses.create(model="gpt-4o-mini", input="Again", stream=True))
    assert events[-1].type == "response.completed"
    plain, streamed = traced.spans()
    assert plain.name == streamed.name == "chat gpt-4o-mini"
    assert plain.attributes["gen_ai.request.max_tokens"] == 64
    assert plain.attributes[sc.GEN_AI_RESPONSE_ID] == response.id
    assert streamed.attributes[sc.GEN_AI_REQUEST_STREAM] is True
    assert sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in streamed.attributes
    for span in (plain, streamed):
        assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1000
        assert span.attributes[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 400
        assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == pytest.approx(COST)
    assert traced.sample(sc.PROM_COST, **labels()) == pytest.approx(2 * COST)


def test_responses_stream_helper(
    traced: Pipeline, fake: FakeLLMServer, client: openai.OpenAI
) -> None:
    fake.script(scripted(text="Hi"))
    with client.responses.stream(model="gpt-4o-mini", input="Say hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Hi"
    (span,) = traced.spans()
    assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == pytest.approx(COST)


def test_raw_response_and_parse_helpers(
    traced: Pipeline, fake: FakeLLMServer, client: openai.OpenAI
) -> None:
    fake.script(scripted(), scripted(text='{"answer": 4}'))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert raw.headers["x-request-id"]
    assert raw.parse().usage is not None
    parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert parsed.choices[0].message.content == '{"answer": 4}'
    spans = traced.spans()
    assert len(spans) == 2
    for span in spans:
        assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == pytest.approx(COST)


def test_embeddings(traced: Pipeline, fake: FakeLLMServer, client: openai.OpenAI) -> None:
    fake.script(ScriptedResponse(input_tokens=1_000_000))
    result = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(result.data) == 2
    (span,) = traced.spans()
    assert span.name == "embeddings text-embedding-3-small"
    assert span.attributes[sc.GEN_AI_OPERATION_NAME] == "embeddings"
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1_000_000
    # text-embedding-3-small: $0.02 per million input tokens.
    assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("base_url", "provider", "address", "port"),
    [
        ("https://api.openai.com/v1", "openai", "api.openai.com", 443),
        (
            "https://my-team.openai.azure.com/openai/v1",
            "azure.ai.openai",
            "my-team.openai.azure.com",
            443,
        ),
        ("https://openrouter.ai/api/v1", "openrouter", "openrouter.ai", 443),
        ("http://localhost:11434/v1", "ollama", "localhost", 11434),
        ("http://10.0.0.5:8000/v1", "openai", "10.0.0.5", 8000),
    ],
)
def test_provider_and_server_from_base_url(
    base_url: str, provider: str, address: str, port: int
) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="test")
    assert provider_name(client) == provider
    assert values.server_attributes(client.base_url) == (address, port)


def _setter_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """The calls made from now on into SDK spans' ``set_attribute`` and ``set_attributes``, in
    order: (method, arguments)."""
    calls: list[tuple[str, Any]] = []
    for method in ("set_attribute", "set_attributes"):
        original = getattr(SdkSpan, method)

        def counted(
            self: SdkSpan, *args: Any, _method: str = method, _original: Any = original
        ) -> Any:
            calls.append((_method, args))
            return _original(self, *args)

        monkeypatch.setattr(SdkSpan, method, counted)
    return calls


def test_a_response_is_set_on_the_span_in_one_call(
    traced: Pipeline, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One set_attributes for what the response said (with the HTTP status it came with) and its
    # usage, and nothing else on the way: each call into the SDK takes the span's lock and
    # checks its values again.
    calls = _setter_calls(monkeypatch)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert [name for name, _ in calls] == ["set_attributes"]
    ((_, (response,)),) = calls
    assert list(response)[:4] == [
        sc.GEN_AI_RESPONSE_MODEL,
        sc.GEN_AI_RESPONSE_ID,
        sc.GEN_AI_RESPONSE_FINISH_REASONS,
        sc.HTTP_RESPONSE_STATUS_CODE,
    ]
    assert sc.GEN_AI_USAGE_INPUT_TOKENS in response
    (span,) = traced.spans()
    assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] > 0


def test_a_stream_sets_its_first_chunk_with_the_response_in_one_call(
    traced: Pipeline, fake: FakeLLMServer, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Time to first chunk rides with the response's attributes and its usage: one call into
    # the SDK.
    calls = _setter_calls(monkeypatch)
    for _ in client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    ):
        pass
    assert [name for name, _ in calls] == ["set_attributes"]
    ((_, (response,)),) = calls
    assert list(response)[:2] == [sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, sc.GEN_AI_RESPONSE_MODEL]
    assert sc.GEN_AI_USAGE_INPUT_TOKENS in response
    (span,) = traced.spans()
    assert span.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True


def test_values_read_mappings_objects_and_proxies_of_either() -> None:
    # The Mapping check is cached per type; a proxy's type answers for what it wraps, so it is
    # never cached: the same proxy class around a dict and around an object reads both right.
    class Box:
        content = "from an attribute"

    for _ in range(2):  # the second time from the cache
        assert values.get({"content": "from a key"}, "content") == "from a key"
        assert values.field(Box(), "content") == "from an attribute"
        assert values.field(ObjectProxy({"content": "proxied key"}), "content") == "proxied key"
        assert values.field(ObjectProxy(Box()), "content") == "from an attribute"
        assert values.get({"a": Box()}, "a", "content") == "from an attribute"
        assert values.field(None, "content") is None
        assert values.field(Box(), "missing") is None


def test_the_base_url_is_parsed_once_per_url_and_again_when_it_changes(
    traced: Pipeline, fake: FakeLLMServer, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    original = values.urlsplit

    def counted(url: str, *args: Any, **kwargs: Any) -> Any:
        parsed.append(url)
        return original(url, *args, **kwargs)

    monkeypatch.setattr(values, "urlsplit", counted)
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert len(parsed) == 1
    # The SDK lets a client's base URL be replaced: the next call reads the new one.
    client.base_url = fake.openai_base_url.replace("127.0.0.1", "localhost")  # type: ignore[assignment]
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert len(parsed) == 2
    first, *_, last = traced.spans()
    assert first.attributes[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert last.attributes[sc.SERVER_ADDRESS] == "localhost"
    assert last.attributes[sc.SERVER_PORT] == first.attributes[sc.SERVER_PORT]


def test_content_capture(pipeline: Pipeline, fake: FakeLLMServer, client: openai.OpenAI) -> None:
    fake.script(scripted(text="Hi there"), scripted(text="Streamed"))
    instrumentor = instrument(pipeline, capture_content=True)
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        for _ in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
        ):
            pass
    finally:
        instrumentor.uninstrument()
    plain, streamed = pipeline.spans()
    assert json.loads(plain.attributes[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Say hi"}]},
    ]
    for span, text in ((plain, "Hi there"), (streamed, "Streamed")):
        assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": text}],
                "finish_reason": "stop",
            }
        ]


def test_failing_instrumentation_never_breaks_the_call(
    traced: Pipeline, fake: FakeLLMServer, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(lifecycle.CallSpan, "__init__", broken)
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.choices[0].message.content
    assert traced.spans() == ()


def test_uninstrument_restores_the_originals(
    pipeline: Pipeline, fake: FakeLLMServer, client: openai.OpenAI
) -> None:
    from openai.resources.chat.completions import AsyncCompletions, Completions
    from openai.resources.embeddings import Embeddings
    from openai.resources.responses import Responses

    originals = [
        vars(cls)["create"] for cls in (Completions, AsyncCompletions, Embeddings, Responses)
    ]
    instrumentor = instrument(pipeline)
    assert isinstance(vars(Completions)["create"], FunctionWrapper)
    instrumentor.uninstrument()
    restored = [
        vars(cls)["create"] for cls in (Completions, AsyncCompletions, Embeddings, Responses)
    ]
    assert restored == originals
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert pipeline.spans() == ()


def test_instrument_attaches_the_processor_unless_told_not_to(
    fake: FakeLLMServer, client: openai.OpenAI, registry: CollectorRegistry
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider, configure=False)
    instrumentor.uninstrument()
    assert not isinstance(provider._active_span_processor._span_processors[0], LLMSpanProcessor)

    instrumentor.instrument(tracer_provider=provider)
    try:
        fake.script(scripted())
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    finally:
        instrumentor.uninstrument()
    assert isinstance(provider._active_span_processor._span_processors[0], LLMSpanProcessor)
    (span,) = exporter.get_finished_spans()
    assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == pytest.approx(COST)


def test_registered_as_opentelemetry_instrumentors() -> None:
    from importlib.metadata import entry_points

    from otel_llm.instrumentation.anthropic import AnthropicInstrumentor

    found = {ep.name: ep.load() for ep in entry_points(group="opentelemetry_instrumentor")}
    assert found["otel_llm_openai"] is OpenAIInstrumentor
    assert found["otel_llm_anthropic"] is AnthropicInstrumentor


ZERO_CODE_APP = """
import os
import urllib.request

import openai

client = openai.OpenAI(base_url=os.environ["FAKE_LLM_URL"], api_key="test", max_retries=0)
client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
port = os.environ["OTEL_LLM_PROMETHEUS_PORT"]
print(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
"""


def run_instrumented(
    fake: FakeLLMServer, tmp_path: Path, receiver: OTLPReceiver, **more_env: str
) -> subprocess.CompletedProcess[str]:
    """ZERO_CODE_APP under the real ``opentelemetry-instrument`` and ``opentelemetry-distro``."""
    app = tmp_path / "app.py"
    app.write_text(ZERO_CODE_APP)
    fake.script(scripted())
    env = {
        **os.environ,
        "FAKE_LLM_URL": fake.openai_base_url,
        "OTEL_SERVICE_NAME": "zero-code",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.http_endpoint,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_LLM_PROMETHEUS_PORT": str(free_port()),
        **more_env,
    }
    command = [str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable]
    done = subprocess.run(
        [*command, str(app)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def test_zero_code_under_opentelemetry_instrument(fake: FakeLLMServer, tmp_path: Path) -> None:
    """Our entry point instruments the SDK and prices the spans of the provider the distro set
    up, and /metrics serves their series."""
    with OTLPReceiver() as receiver:
        done = run_instrumented(fake, tmp_path, receiver)
        (span,) = receiver.wait_for_spans(1)
    assert span.name == "chat gpt-4o-mini"
    assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == pytest.approx(COST)
    assert span.resource["service.name"] == "zero-code"
    assert "gen_ai_client_cost_usd_total{" in done.stdout
    assert 'service_name="zero-code"' in done.stdout


def test_zero_code_instrumentation_can_be_switched_off(fake: FakeLLMServer, tmp_path: Path) -> None:
    with OTLPReceiver() as receiver:
        done = run_instrumented(
            fake, tmp_path, receiver, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="otel_llm_openai"
        )
        # The Anthropic instrumentor still attached the processor: /metrics is served, empty.
        assert "# TYPE gen_ai_client_cost_usd_total counter" in done.stdout
        assert "gen_ai_client_cost_usd_total{" not in done.stdout
        assert receiver.spans == []
