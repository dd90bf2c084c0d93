"""The fake LLM server is faithful: the real ``openai`` and ``anthropic`` clients parse it.

No instrumentation here -- these tests pin down the fake server the instrumentation tests rely
on, through the SDKs' own parsing (sync, async, streamed, stream helpers, errors, retries).
"""

from __future__ import annotations

import asyncio
import base64
import struct
import threading
import time
from collections.abc import AsyncIterable, Iterable, Iterator
from typing import TypeVar

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import RawMessageStreamEvent
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent

from tests.support.fake_llm import FakeLLMServer, ScriptedResponse, ToolCall

MESSAGES = [{"role": "user", "content": "Say hello"}]
TIMEOUT = 5.0
T = TypeVar("T")


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as started:
        yield started


@pytest.fixture
def oai(server: FakeLLMServer) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(
        base_url=server.openai_base_url, api_key="test", max_retries=0, timeout=TIMEOUT
    )
    yield client
    client.close()


@pytest.fixture
def claude(server: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(
        base_url=server.anthropic_base_url, api_key="test", max_retries=0, timeout=TIMEOUT
    )
    yield client
    client.close()


def async_clients(server: FakeLLMServer) -> tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]:
    return (
        openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key="test", max_retries=0, timeout=TIMEOUT
        ),
        anthropic.AsyncAnthropic(
            base_url=server.anthropic_base_url, api_key="test", max_retries=0, timeout=TIMEOUT
        ),
    )


def collect(items: Iterable[T], into: list[T]) -> None:
    """Append everything ``items`` yields to ``into`` (which keeps what came before a raise)."""
    into.extend(items)


async def acollect(items: AsyncIterable[T]) -> list[T]:
    return [item async for item in items]


# -- the server itself ----------------------------------------------------------------------------


def test_base_urls_and_close_stops_everything() -> None:
    before = set(threading.enumerate())
    with FakeLLMServer() as server:
        assert server.openai_base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.anthropic_base_url == f"http://127.0.0.1:{server.port}"
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0)
        # A stream left open on a keep-alive connection must not block close().
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        next(iter(stream))
        started = time.monotonic()
    assert time.monotonic() - started < 1
    assert set(threading.enumerate()) <= before
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.close()


def test_script_queue_then_default_and_request_recording(
    server: FakeLLMServer, oai: openai.OpenAI
) -> None:
    server.script(ScriptedResponse(text="first"), ScriptedResponse(text="second"))
    assert server.pending == 2
    texts = [
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0].message.content
        for _ in range(3)
    ]
    assert texts == ["first", "second", ScriptedResponse().text]
    assert server.pending == 0

    (first, *_) = server.requests
    assert first.method == "POST"
    assert first.path == "/v1/chat/completions"
    assert first.headers["authorization"] == "Bearer test"
    assert first.headers["content-type"] == "application/json"
    assert first.body == {"model": "gpt-4o", "messages": MESSAGES}
    assert len(server.requests_to("/v1/chat/completions")) == 3
    assert server.requests_to("/v1/messages") == []

    server.clear()
    assert server.requests == []
    with pytest.raises(AssertionError):
        _ = server.last_request


def test_default_can_be_replaced(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.default = ScriptedResponse(text="always", model="gpt-4o-2024-08-06")
    for _ in range(2):
        completion = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert completion.choices[0].message.content == "always"
        assert completion.model == "gpt-4o-2024-08-06"


def test_text_chunks_split_evenly_and_never_empty() -> None:
    assert ScriptedResponse(text="abcdefg", chunks=3).text_chunks() == ["abc", "de", "fg"]
    assert ScriptedResponse(text="ab", chunks=5).text_chunks() == ["a", "b"]
    assert ScriptedResponse(text="", chunks=3).text_chunks() == []


# -- OpenAI chat completions ----------------------------------------------------------------------


def test_openai_chat_non_stream(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.script(
        ScriptedResponse(
            model="gpt-4o-mini-2024-07-18",
            text="Hello!",
            input_tokens=120,
            output_tokens=40,
            cached_tokens=64,
            reasoning_tokens=16,
            finish_reason="length",
        )
    )
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-request-id"].startswith("req_")
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.choices[0].message.content == "Hello!"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "length"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (120, 40, 160)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 64
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 16


def test_openai_chat_stream_with_usage(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.script(
        ScriptedResponse(
            model="gpt-4o-mini-2024-07-18",
            text="one two three four",
            chunks=4,
            input_tokens=11,
            output_tokens=4,
            cached_tokens=2,
        )
    )
    stream = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert server.last_request.body["stream"] is True
    assert server.last_request.body["stream_options"] == {"include_usage": True}
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert {chunk.model for chunk in chunks} == {"gpt-4o-mini-2024-07-18"}
    assert len({chunk.id for chunk in chunks}) == 1
    # role chunk, 4 content chunks, finish chunk, usage chunk
    assert len(chunks) == 7
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks[1:5]]
    assert content == ["one t", "wo th", "ree ", "four"]
    assert chunks[5].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 4, 15)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 2


def test_openai_chat_stream_without_usage(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.script(ScriptedResponse(text="abc", chunks=3))
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert "stream_options" not in server.last_request.body
    assert len(chunks) == 5
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_chat_stream_helper(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.script(ScriptedResponse(text="streamed text", chunks=2, model="gpt-4o-2024-11-20"))
    with oai.chat.completions.stream(
        model="gpt-4o", messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    deltas = [delta for delta in deltas if delta]  # the role chunk carries content ""
    assert "".join(deltas) == "streamed text"
    assert len(deltas) == 2
    assert final.choices[0].message.content == "streamed text"
    assert final.choices[0].finish_reason == "stop"
    assert final.model == "gpt-4o-2024-11-20"
    assert final.usage is not None
    assert final.usage.total_tokens == 15
    assert server.last_request.body["stream"] is True


def test_openai_async_chat(server: FakeLLMServer) -> None:
    server.script(
        ScriptedResponse(text="async", input_tokens=7, output_tokens=3),
        ScriptedResponse(text="async stream", chunks=2, input_tokens=8, output_tokens=2),
    )

    async def run() -> None:
        client, other = async_clients(server)
        async with client, other:
            completion = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            assert completion.choices[0].message.content == "async"
            assert completion.usage is not None
            assert completion.usage.total_tokens == 10
            stream = await client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == "async stream"
            assert chunks[-1].usage is not None
            assert chunks[-1].usage.prompt_tokens == 8

    asyncio.run(run())


def test_first_chunk_delay_and_chunk_delay(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.script(
        ScriptedResponse(text="abc", chunks=3, first_chunk_delay_ms=150, chunk_delay_ms=50)
    )
    started = time.monotonic()
    stream = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    headers_at = time.monotonic() - started
    arrivals = [time.monotonic() - started for _ in stream]
    assert headers_at < 0.1
    assert arrivals[0] >= 0.15
    assert arrivals[-1] - arrivals[0] >= 0.1  # two 50 ms pauses between three deltas
    assert arrivals[-1] < 0.9

    server.script(ScriptedResponse(first_chunk_delay_ms=100))
    started = time.monotonic()
    oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert 0.1 <= time.monotonic() - started < 0.9


def test_answers_on_a_reused_connection_are_not_held_back(oai: openai.OpenAI) -> None:
    """Each answer arrives at once on a keep-alive connection: without TCP_NODELAY, Nagle held
    the body back until the client's delayed ACK of the headers (>= 40 ms per call on Linux)."""
    oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # opens the connection
    for stream in (False, True):
        seconds = []
        for _ in range(9):
            started = time.perf_counter()
            answer = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=stream)
            if stream:
                assert len(list(answer)) == 5  # role, three deltas, finish
            seconds.append(time.perf_counter() - started)
        # The median: a busy machine delays some calls; Nagle delayed every one of them.
        assert sorted(seconds)[4] < 0.02, (stream, seconds)


# -- OpenAI Responses API -------------------------------------------------------------------------


def test_openai_responses_non_stream(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.script(
        ScriptedResponse(
            model="o4-mini-2025-04-16",
            text="Reasoned answer",
            input_tokens=200,
            output_tokens=90,
            cached_tokens=128,
            reasoning_tokens=64,
        )
    )
    response = oai.responses.create(model="o4-mini", input="Think")
    assert server.last_request.path == "/v1/responses"
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == "o4-mini-2025-04-16"
    assert response.output_text == "Reasoned answer"
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (200, 90, 290)
    assert usage.input_tokens_details.cached_tokens == 128
    assert usage.output_tokens_details.reasoning_tokens == 64


def test_tool_calls_chat_and_responses(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    weather = ToolCall("get_weather", '{"city": "Lisbon"}')
    server.script(
        ScriptedResponse(text="", tool_calls=(weather, ToolCall("noop", call_id="call_mine"))),
        ScriptedResponse(text="Checking.", tool_calls=(weather,)),
        ScriptedResponse(text="", tool_calls=(weather,)),
    )
    chat = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (choice,) = chat.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.function.name, c.function.arguments, c.id) for c in calls] == [  # type: ignore[union-attr]
        ("get_weather", '{"city": "Lisbon"}', "call_fake000001_0"),
        ("noop", "{}", "call_mine"),
    ]

    response = oai.responses.create(model="gpt-4o-mini", input="Weather?")
    kinds = [item.type for item in response.output]
    assert kinds == ["message", "function_call"]
    call = response.output[1]
    assert call.type == "function_call"
    assert (call.name, call.arguments, call.call_id) == (
        "get_weather",
        '{"city": "Lisbon"}',
        "call_fake000002_0",
    )
    assert response.output_text == "Checking."

    # Streams do not carry scripted tool calls: the request fails rather than drop them.
    with pytest.raises(openai.BadRequestError, match="non-streamed"):
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert server.pending == 0


def test_openai_responses_stream(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.script(
        ScriptedResponse(model="gpt-4.1-2025-04-14", text="Hi there", chunks=2, cached_tokens=3)
    )
    events = list(oai.responses.create(model="gpt-4.1", input="Hi", stream=True))
    assert [event.type for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["Hi t", "here"]
    created, completed = events[0], events[-1]
    assert created.type == "response.created"
    assert created.response.usage is None
    assert completed.type == "response.completed"
    assert completed.response.model == "gpt-4.1-2025-04-14"
    assert completed.response.output_text == "Hi there"
    usage = completed.response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (10, 5)
    assert usage.input_tokens_details.cached_tokens == 3
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_openai_responses_stream_helper_and_async(
    server: FakeLLMServer, oai: openai.OpenAI
) -> None:
    server.script(ScriptedResponse(text="helper text", chunks=3))
    with oai.responses.stream(model="gpt-4.1", input="Hi") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "helper text"
    assert final.output_text == "helper text"
    assert final.usage is not None
    assert final.usage.total_tokens == 15

    server.script(ScriptedResponse(text="async responses", chunks=2, output_tokens=9))

    async def run() -> None:
        client, other = async_clients(server)
        async with client, other:
            stream = await client.responses.create(model="gpt-4.1", input="Hi", stream=True)
            events = [event async for event in stream]
            assert events[-1].type == "response.completed"
            assert events[-1].response.output_text == "async responses"
            assert events[-1].response.usage is not None
            assert events[-1].response.usage.output_tokens == 9

    asyncio.run(run())


# -- OpenAI embeddings ----------------------------------------------------------------------------


def test_openai_embeddings(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.script(ScriptedResponse(model="text-embedding-3-small", input_tokens=6))
    result = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=4)
    # The SDK asks for base64 unless told otherwise, and decodes it.
    assert server.last_request.body["encoding_format"] == "base64"
    assert result.model == "text-embedding-3-small"
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 4
    assert result.data[1].embedding[0] == pytest.approx(0.02)
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (6, 6)

    floats = oai.embeddings.create(
        model="text-embedding-3-large", input="x", encoding_format="float"
    )
    assert len(floats.data) == 1
    assert len(floats.data[0].embedding) == 8
    assert floats.data[0].embedding[:2] == [0.01, 0.011]
    assert floats.model == "text-embedding-3-large"


def test_openai_embeddings_base64_wire_format(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    raw = oai.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="x", encoding_format="base64", dimensions=2
    )
    encoded = raw.http_response.json()["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == pytest.approx((0.01, 0.011))


# -- Anthropic messages ---------------------------------------------------------------------------


def test_anthropic_non_stream(server: FakeLLMServer, claude: anthropic.Anthropic) -> None:
    server.script(
        ScriptedResponse(
            model="claude-haiku-4-5-20251001",
            text="Bonjour",
            input_tokens=30,
            output_tokens=12,
            cached_tokens=1000,
            cache_creation_tokens=200,
            finish_reason="max_tokens",
        )
    )
    raw = claude.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES
    )
    assert raw.headers["request-id"].startswith("req_")
    message = raw.parse()
    request = server.last_request
    assert request.path == "/v1/messages"
    # this anthropic version sends the API key as a bearer token (older ones used x-api-key)
    assert request.headers.get("x-api-key", request.headers.get("authorization")) in (
        "test",
        "Bearer test",
    )
    assert "anthropic-version" in request.headers
    assert request.body["max_tokens"] == 64
    assert message.id.startswith("msg_")
    assert message.model == "claude-haiku-4-5-20251001"
    assert message.role == "assistant"
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text"
    assert message.content[0].text == "Bonjour"
    usage = message.usage
    assert usage.input_tokens == 30
    assert usage.output_tokens == 12
    assert usage.cache_read_input_tokens == 1000
    assert usage.cache_creation_input_tokens == 200
    assert usage.output_tokens_details is None


def test_anthropic_thinking_tokens(server: FakeLLMServer, claude: anthropic.Anthropic) -> None:
    server.script(ScriptedResponse(reasoning_tokens=33, output_tokens=50))
    message = claude.messages.create(model="claude-opus-4-1", max_tokens=64, messages=MESSAGES)
    assert message.usage.output_tokens_details is not None
    assert message.usage.output_tokens_details.thinking_tokens == 33


def test_anthropic_raw_stream(server: FakeLLMServer, claude: anthropic.Anthropic) -> None:
    server.script(
        ScriptedResponse(
            model="claude-opus-4-5-20251101",
            text="streaming reply",
            chunks=3,
            input_tokens=21,
            output_tokens=7,
            cached_tokens=5,
            cache_creation_tokens=4,
        )
    )
    events = list(
        claude.messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES, stream=True
        )
    )
    assert server.last_request.body["stream"] is True
    # the ping event is consumed by the SDK
    assert [event.type for event in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert start.message.model == "claude-opus-4-5-20251101"
    assert start.message.usage.input_tokens == 21
    assert start.message.usage.cache_read_input_tokens == 5
    assert start.message.usage.cache_creation_input_tokens == 4
    assert start.message.usage.output_tokens == 1
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")  # type: ignore[union-attr]
    assert text == "streaming reply"
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 7


def test_anthropic_stream_helper(server: FakeLLMServer, claude: anthropic.Anthropic) -> None:
    server.script(
        ScriptedResponse(
            model="claude-opus-4-1-20250805",
            text="helper reply",
            chunks=4,
            input_tokens=9,
            output_tokens=6,
            cached_tokens=100,
        )
    )
    with claude.messages.stream(
        model="claude-opus-4-1", max_tokens=64, messages=MESSAGES
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) == 4
    assert "".join(pieces) == "helper reply"
    assert final.content[0].text == "helper reply"  # type: ignore[union-attr]
    assert final.model == "claude-opus-4-1-20250805"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 9
    assert final.usage.output_tokens == 6  # message_delta overwrites message_start's 1
    assert final.usage.cache_read_input_tokens == 100


def test_anthropic_async(server: FakeLLMServer) -> None:
    server.script(
        ScriptedResponse(text="async claude", output_tokens=3),
        ScriptedResponse(text="async stream", chunks=2, output_tokens=4),
    )

    async def run() -> None:
        other, client = async_clients(server)
        async with client, other:
            message = await client.messages.create(
                model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES
            )
            assert message.content[0].text == "async claude"  # type: ignore[union-attr]
            assert message.usage.output_tokens == 3
            async with client.messages.stream(
                model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES
            ) as stream:
                pieces = [piece async for piece in stream.text_stream]
                final = await stream.get_final_message()
            assert pieces == ["async ", "stream"]
            assert final.usage.output_tokens == 4

    asyncio.run(run())


def test_anthropic_count_tokens(server: FakeLLMServer, claude: anthropic.Anthropic) -> None:
    server.script(ScriptedResponse(input_tokens=17))
    counted = claude.messages.count_tokens(model="claude-haiku-4-5", messages=MESSAGES)
    assert counted.input_tokens == 17
    assert server.last_request.path == "/v1/messages/count_tokens"


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class", "error_type", "code"),
    [
        (429, openai.RateLimitError, "requests", "rate_limit_exceeded"),
        (500, openai.InternalServerError, "server_error", None),
    ],
)
def test_openai_errors(
    server: FakeLLMServer,
    *,
    oai: openai.OpenAI,
    status: int,
    error_class: type[openai.APIStatusError],
    error_type: str,
    code: str | None,
) -> None:
    server.script(ScriptedResponse(status=status), ScriptedResponse(status=status))
    with pytest.raises(error_class) as caught:
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    error = caught.value
    assert error.status_code == status
    assert error.type == error_type
    assert error.code == code
    assert error.param is None
    assert isinstance(error.body, dict)
    assert set(error.body) == {"message", "type", "param", "code"}
    assert error.request_id is not None
    assert error.response.headers["retry-after"] == "0"
    # A stream request fails before any event, the same way.
    with pytest.raises(error_class):
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)


def test_openai_error_overrides(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.script(
        ScriptedResponse(
            status=429, error_type="tokens", error_code="quota", error_message="slow down"
        )
    )
    with pytest.raises(openai.RateLimitError) as caught:
        oai.responses.create(model="gpt-4.1", input="Hi")
    assert (caught.value.type, caught.value.code) == ("tokens", "quota")
    assert "slow down" in caught.value.message


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_anthropic_errors(
    server: FakeLLMServer,
    claude: anthropic.Anthropic,
    status: int,
    error_class: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    server.script(ScriptedResponse(status=status))
    with pytest.raises(error_class) as caught:
        claude.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES)
    error = caught.value
    assert error.status_code == status
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == error_type
    assert error.request_id is not None
    assert error.response.headers["retry-after"] == "0"


def test_retries_are_immediate(server: FakeLLMServer) -> None:
    server.script(
        ScriptedResponse(status=429), ScriptedResponse(status=500), ScriptedResponse(text="ok")
    )
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="test", timeout=TIMEOUT)
    started = time.monotonic()
    with client:
        completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content == "ok"
    assert time.monotonic() - started < 0.5
    retries = [request.headers["x-stainless-retry-count"] for request in server.requests]
    assert retries == ["0", "1", "2"]

    server.script(ScriptedResponse(status=529), ScriptedResponse(text="ok"))
    other = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test", timeout=TIMEOUT)
    started = time.monotonic()
    with other:
        message = other.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=MESSAGES)
    assert message.content[0].text == "ok"  # type: ignore[union-attr]
    assert time.monotonic() - started < 0.5


# -- mid-stream failures --------------------------------------------------------------------------


def test_openai_chat_mid_stream_error_event(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.script(ScriptedResponse(text="abcdef", chunks=3, fail_after_chunks=2))
    received: list[ChatCompletionChunk] = []
    stream = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as caught:
        collect(stream, received)
    assert [chunk.choices[0].delta.content for chunk in received] == ["", "ab", "cd"]
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "server_error"


def test_openai_responses_mid_stream_error_event(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.script(ScriptedResponse(text="abcdef", chunks=3, fail_after_chunks=1))
    events = list(oai.responses.create(model="gpt-4.1", input="Hi", stream=True))
    assert [event.type for event in events][-3:] == [
        "response.output_text.delta",
        "error",
        "response.failed",
    ]
    error, failed = events[-2], events[-1]
    assert error.type == "error"
    assert error.code == "server_error"
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error is not None
    assert failed.response.error.code == "server_error"


def test_anthropic_mid_stream_error_event(
    server: FakeLLMServer, claude: anthropic.Anthropic
) -> None:
    server.script(ScriptedResponse(text="abcdef", chunks=3, fail_after_chunks=1))
    pieces: list[str] = []
    with claude.messages.stream(
        model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES
    ) as stream:
        with pytest.raises(anthropic.APIStatusError) as caught:
            collect(stream.text_stream, pieces)
    assert pieces == ["ab"]
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_openai_disconnects(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.script(
        ScriptedResponse(text="abcdef", chunks=3, fail_after_chunks=1, failure="disconnect")
    )
    received: list[ChatCompletionChunk] = []
    stream = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIConnectionError):
        collect(stream, received)
    assert [chunk.choices[0].delta.content for chunk in received] == ["", "ab"]

    server.script(ScriptedResponse(fail_after_chunks=2, failure="disconnect"))
    events: list[ResponseStreamEvent] = []
    response_stream = oai.responses.create(model="gpt-4.1", input="Hi", stream=True)
    with pytest.raises(openai.APIConnectionError):
        collect(response_stream, events)
    types = [event.type for event in events]
    assert types.count("response.output_text.delta") == 2
    assert "response.completed" not in types

    # A non-stream response cut in the middle of its body.
    server.script(ScriptedResponse(fail_after_chunks=0))
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)


def test_anthropic_disconnect(server: FakeLLMServer, claude: anthropic.Anthropic) -> None:
    server.script(
        ScriptedResponse(text="abcdef", chunks=3, fail_after_chunks=2, failure="disconnect")
    )
    events: list[RawMessageStreamEvent] = []
    stream = claude.messages.create(
        model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES, stream=True
    )
    # This anthropic version lets the transport's own error out of a stream.
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        collect(stream, events)
    types = [event.type for event in events]
    assert types.count("content_block_delta") == 2
    assert "message_stop" not in types


def test_async_mid_stream_failures(server: FakeLLMServer) -> None:
    server.script(
        ScriptedResponse(fail_after_chunks=1),
        ScriptedResponse(fail_after_chunks=1, failure="disconnect"),
        ScriptedResponse(fail_after_chunks=1),
    )

    async def run() -> None:
        client, other = async_clients(server)
        async with client, other:
            stream = await client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, stream=True
            )
            with pytest.raises(openai.APIError):
                await acollect(stream)
            stream = await client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, stream=True
            )
            with pytest.raises(openai.APIConnectionError):
                await acollect(stream)
            async with other.messages.stream(
                model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES
            ) as claude_stream:
                with pytest.raises(anthropic.APIStatusError):
                    await claude_stream.get_final_message()

    asyncio.run(run())
