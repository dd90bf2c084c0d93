"""The chat stream's reader (``ChatStream``): its settled path -- a few getattrs a chunk once only
finish reasons and usage are left -- says what its full path says, chunk for chunk."""

from __future__ import annotations

from typing import Any

from openai.types.chat import ChatCompletionChunk
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llm import _semconv as sc
from otel_llm.instrumentation.content import ContentCapture
from otel_llm.instrumentation.openai_apis import ChatStream
from otel_llm.lifecycle import CallSpan

COMMON = {"id": "chatcmpl-9", "created": 1, "model": "gpt-4o-mini-2024-07-18"}
USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 400},
}


def bodies() -> list[dict[str, Any]]:
    """Two choices that finish in different chunks, then the usage chunk."""

    def chunk(*choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {**COMMON, "object": "chat.completion.chunk", "choices": list(choices), **extra}

    def choice(index: int, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "finish_reason": reason}

    return [
        chunk(choice(0, {"role": "assistant", "content": ""}), choice(1, {"role": "assistant"})),
        chunk(choice(0, {"content": "Hel"}), choice(1, {"content": "Bon"})),
        chunk(choice(0, {"content": "lo"}), choice(1, {"content": "jour"})),
        chunk(choice(1, {}, "length")),
        chunk(choice(0, {"content": "!"})),
        chunk(choice(0, {}, "stop")),
        chunk(usage=USAGE),
    ]


def read(chunks: list[Any], *, capture: bool = False) -> tuple[dict[str, Any], ChatStream]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    call = CallSpan.start(provider.get_tracer("test"), "chat", "gpt-4o-mini", {})
    handler = ChatStream(ContentCapture(enabled=capture))
    for item in chunks:
        handler.on_item(call, item)
    call.end(before=lambda: handler.complete(call))
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes.pop(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK) >= 0
    return attributes, handler


def models(items: list[dict[str, Any]]) -> list[Any]:
    return [ChatCompletionChunk.model_validate(item) for item in items]


def test_the_settled_path_says_what_the_full_path_says() -> None:
    settled, handler = read(models(bodies()))
    assert handler.settled is ChatCompletionChunk  # the models' path was taken
    full, dicts = read(bodies())  # Mappings: never settled
    assert dicts.settled is None
    assert settled == full
    assert settled[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop", "length")
    assert settled[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1200
    assert settled[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 400
    assert settled[sc.GEN_AI_RESPONSE_ID] == "chatcmpl-9"


def test_a_chunk_of_another_form_after_settling_is_read_in_full() -> None:
    mixed: list[Any] = models(bodies())
    mixed[3] = bodies()[3]  # the second choice's finish as a plain dict
    attributes, handler = read(mixed)
    assert handler.settled is ChatCompletionChunk
    assert attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop", "length")


def test_capturing_never_settles_and_keeps_every_text() -> None:
    _, handler = read(models(bodies()), capture=True)
    assert handler.settled is None
    assert {i: "".join(parts) for i, parts in handler.texts.items()} == {0: "Hello!", 1: "Bonjour"}
