"""``OpenAIInstrumentor``: a GenAI client span for every OpenAI SDK call (openai >= 1.0).

Instrumented: ``chat.completions.create`` and ``.parse`` (``chat``), ``responses.create`` and
``.parse`` (``chat``), ``embeddings.create`` (``embeddings``), sync and async, with
``stream=True`` streams, the ``chat.completions.stream(...)`` / ``responses.stream(...)`` helpers
(they call ``create``) and ``with_raw_response`` (read from the parsed response, which the SDK
caches for the caller). Not instrumented: ``with_streaming_response`` bodies (the span has no
usage), the legacy ``completions`` API, ``beta`` and realtime APIs.

``gen_ai.provider.name`` comes from the client's ``base_url``: ``*.openai.azure.com`` (or an
``AzureOpenAI`` client) -> ``azure.ai.openai``; ``openrouter.ai`` -> ``openrouter``; port 11434
(Ollama's) -> ``ollama``; anything else -- api.openai.com and every other OpenAI-compatible
server (vLLM, a gateway, a proxy) -> ``openai``, since the model names it is given are OpenAI's
as far as anyone can tell. ``server.address`` / ``server.port`` are the base URL's.

Streams without usage: with ``stream_include_usage`` (``OTEL_LLM_STREAM_INCLUDE_USAGE``) a chat
stream request that does not set ``stream_options`` gets ``{"include_usage": True}``; otherwise a
stream that reports no usage marks its span ``otel_llm.usage.missing``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from otel_llm import _semconv as sc
from otel_llm import settings
from otel_llm.instrumentation import _spans as s
from otel_llm.instrumentation._spans import CallSpan, get, integer
from otel_llm.instrumentation.content import ContentCapture, text_message, text_part
from otel_llm.instrumentation.streams import (
    AsyncStreamProxy,
    StreamState,
    SyncStreamProxy,
    end_stream_of,
)

_logger = logging.getLogger(__name__)

_CHAT = ("openai.resources.chat.completions.completions", "Completions", "AsyncCompletions")
_RESPONSES = ("openai.resources.responses.responses", "Responses", "AsyncResponses")
_EMBEDDINGS = ("openai.resources.embeddings", "Embeddings", "AsyncEmbeddings")
_HELPERS = (
    ("openai.lib.streaming.chat._completions", "ChatCompletionStream", "AsyncChatCompletionStream"),
    ("openai.lib.streaming.responses._responses", "ResponseStream", "AsyncResponseStream"),
)


def provider_name(client: Any) -> str:
    """``gen_ai.provider.name`` for an OpenAI SDK client (see the module docstring)."""
    host, port = s.server_attributes(client.base_url)
    host = (host or "").lower()
    azure_client = type(client).__name__.startswith(("Azure", "AsyncAzure"))
    if azure_client or host.endswith(".openai.azure.com"):
        return "azure.ai.openai"
    if host == "openrouter.ai" or host.endswith(".openrouter.ai"):
        return "openrouter"
    if port == 11434:
        return "ollama"
    return "openai"


class _Api:
    """What one SDK method's span says, from its request and its response."""

    operation = "chat"

    def __init__(self, capture: ContentCapture):
        self.capture = capture

    def record_input(self, call: CallSpan, kwargs: dict[str, Any]) -> None:
        """Record the request's messages when content capture is on."""

    def request_attributes(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {}

    def on_response(self, call: CallSpan, response: Any) -> None:
        call.set(sc.GEN_AI_RESPONSE_ID, get(response, "id"))
        call.set(sc.GEN_AI_RESPONSE_MODEL, get(response, "model"))

    def stream_handler(self) -> Any:
        raise NotImplementedError


# Where each API reports the conventions' counts (both include cached input in the input
# count and reasoning in the output count, as the conventions do).
_CHAT_USAGE = {
    sc.GEN_AI_USAGE_INPUT_TOKENS: ("prompt_tokens",),
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: ("completion_tokens",),
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: ("prompt_tokens_details", "cached_tokens"),
    sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: ("completion_tokens_details", "reasoning_tokens"),
}
_RESPONSES_USAGE = {
    sc.GEN_AI_USAGE_INPUT_TOKENS: ("input_tokens",),
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: ("output_tokens",),
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: ("input_tokens_details", "cached_tokens"),
    sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: ("output_tokens_details", "reasoning_tokens"),
}


def _set_usage(call: CallSpan, usage: Any, fields: dict[str, tuple[str, ...]]) -> None:
    if usage is None:
        call.set(sc.OTEL_LLM_USAGE_MISSING, True)
        return
    for attribute, path in fields.items():
        call.set(attribute, integer(get(usage, *path)))


class _Chat(_Api):
    def request_attributes(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        max_tokens = kwargs.get("max_completion_tokens")
        if s.number(max_tokens) is None:
            max_tokens = kwargs.get("max_tokens")
        choices = s.number(kwargs.get("n"))
        return {
            sc.GEN_AI_REQUEST_TEMPERATURE: s.number(kwargs.get("temperature")),
            sc.GEN_AI_REQUEST_TOP_P: s.number(kwargs.get("top_p")),
            sc.GEN_AI_REQUEST_MAX_TOKENS: s.number(max_tokens),
            sc.GEN_AI_REQUEST_STOP_SEQUENCES: s.strings(kwargs.get("stop")),
            sc.GEN_AI_REQUEST_SEED: s.number(kwargs.get("seed")),
            sc.GEN_AI_REQUEST_FREQUENCY_PENALTY: s.number(kwargs.get("frequency_penalty")),
            sc.GEN_AI_REQUEST_PRESENCE_PENALTY: s.number(kwargs.get("presence_penalty")),
            sc.GEN_AI_REQUEST_CHOICE_COUNT: choices if choices != 1 else None,
        }

    def record_input(self, call: CallSpan, kwargs: dict[str, Any]) -> None:
        if self.capture.enabled:
            messages = s.text_messages(kwargs.get("messages"))
            self.capture.record(call.span, input_messages=messages)

    def on_response(self, call: CallSpan, response: Any) -> None:
        super().on_response(call, response)
        choices = get(response, "choices") or ()
        reasons = [get(choice, "finish_reason") for choice in choices]
        call.set(sc.GEN_AI_RESPONSE_FINISH_REASONS, s.strings([r for r in reasons if r]))
        _set_usage(call, get(response, "usage"), _CHAT_USAGE)
        if self.capture.enabled:
            output = [
                text_message(
                    "assistant",
                    s.text_of(get(choice, "message", "content")) or "",
                    get(choice, "finish_reason"),
                )
                for choice in choices
            ]
            self.capture.record(call.span, output_messages=output)

    def stream_handler(self) -> _ChatStream:
        return _ChatStream(self.capture)


class _ChatStream:
    def __init__(self, capture: ContentCapture) -> None:
        self.capture = capture
        self.id: Any = None
        self.model: Any = None
        self.finish_reasons: dict[int, str] = {}
        self.texts: dict[int, list[str]] = {}
        self.usage: Any = None

    def on_item(self, call: CallSpan, chunk: Any) -> None:
        self.id = self.id or get(chunk, "id")
        self.model = self.model or get(chunk, "model")
        for choice in get(chunk, "choices") or ():
            delta = get(choice, "delta")
            index = integer(get(choice, "index")) or 0
            content = get(delta, "content")
            if content or get(delta, "tool_calls") or get(delta, "refusal"):
                call.first_chunk()
            if self.capture.enabled and isinstance(content, str):
                self.texts.setdefault(index, []).append(content)
            reason = get(choice, "finish_reason")
            if isinstance(reason, str):
                self.finish_reasons[index] = reason
        usage = get(chunk, "usage")
        if usage is not None:
            self.usage = usage

    def complete(self, call: CallSpan) -> None:
        call.set(sc.GEN_AI_RESPONSE_ID, self.id)
        call.set(sc.GEN_AI_RESPONSE_MODEL, self.model)
        if self.finish_reasons:
            reasons = [self.finish_reasons[i] for i in sorted(self.finish_reasons)]
            call.set(sc.GEN_AI_RESPONSE_FINISH_REASONS, reasons)
        _set_usage(call, self.usage, _CHAT_USAGE)
        if self.capture.enabled and self.texts:
            output = [
                text_message("assistant", "".join(self.texts[i]), self.finish_reasons.get(i))
                for i in sorted(self.texts)
            ]
            self.capture.record(call.span, output_messages=output)


class _Responses(_Api):
    def request_attributes(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {
            sc.GEN_AI_REQUEST_TEMPERATURE: s.number(kwargs.get("temperature")),
            sc.GEN_AI_REQUEST_TOP_P: s.number(kwargs.get("top_p")),
            sc.GEN_AI_REQUEST_MAX_TOKENS: s.number(kwargs.get("max_output_tokens")),
        }

    def record_input(self, call: CallSpan, kwargs: dict[str, Any]) -> None:
        if not self.capture.enabled:
            return
        given = kwargs.get("input")
        messages = (
            [text_message("user", given)] if isinstance(given, str) else s.text_messages(given)
        )
        instructions = kwargs.get("instructions")
        system = [text_part(instructions)] if isinstance(instructions, str) else None
        self.capture.record(call.span, input_messages=messages, system_instructions=system)

    def on_response(self, call: CallSpan, response: Any) -> None:
        super().on_response(call, response)
        _set_usage(call, get(response, "usage"), _RESPONSES_USAGE)
        _record_output_text(self.capture, call, get(response, "output_text"))

    def stream_handler(self) -> _ResponsesStream:
        return _ResponsesStream(self.capture)


def _record_output_text(capture: ContentCapture, call: CallSpan, text: Any) -> None:
    if capture.enabled and isinstance(text, str) and text:
        capture.record(call.span, output_messages=[text_message("assistant", text)])


class _ResponsesStream:
    def __init__(self, capture: ContentCapture) -> None:
        self.capture = capture
        self.response: Any = None
        self.texts: list[str] = []

    def on_item(self, call: CallSpan, event: Any) -> None:
        kind = get(event, "type")
        if kind in {"response.output_text.delta", "response.refusal.delta"}:
            call.first_chunk()
            delta = get(event, "delta")
            if self.capture.enabled and kind == "response.output_text.delta" and delta:
                self.texts.append(delta)
        response = get(event, "response")
        if response is not None:  # created, in_progress, completed, incomplete, failed
            self.response = response

    def complete(self, call: CallSpan) -> None:
        call.set(sc.GEN_AI_RESPONSE_ID, get(self.response, "id"))
        call.set(sc.GEN_AI_RESPONSE_MODEL, get(self.response, "model"))
        _set_usage(call, get(self.response, "usage"), _RESPONSES_USAGE)
        _record_output_text(self.capture, call, "".join(self.texts))
        if get(self.response, "status") == "failed":
            # The SDK yields a failed response's events rather than raising: the call failed.
            code = get(self.response, "error", "code")
            message = get(self.response, "error", "message")
            call.failed(
                code if isinstance(code, str) else "response.failed",
                message if isinstance(message, str) else "response failed",
            )


class _Embeddings(_Api):
    operation = "embeddings"

    def on_response(self, call: CallSpan, response: Any) -> None:
        call.set(sc.GEN_AI_RESPONSE_MODEL, get(response, "model"))
        call.set(sc.GEN_AI_USAGE_INPUT_TOKENS, integer(get(response, "usage", "prompt_tokens")))


def _include_usage(kwargs: dict[str, Any], include_usage: bool) -> dict[str, Any]:
    """The chat stream request, with ``stream_options`` added when asked to and not set."""
    given = kwargs.get("stream_options", ...)
    if not include_usage or given is None or isinstance(given, dict):
        return kwargs
    return {**kwargs, "stream_options": {"include_usage": True}}


OTHER_INSTRUMENTATIONS: tuple[s.Other, ...] = (
    ("opentelemetry.instrumentation.openai_v2", "OpenAIInstrumentor"),
    ("opentelemetry.instrumentation.genai.openai", "OpenAIInstrumentor"),
    ("opentelemetry.instrumentation.openai", "OpenAIInstrumentor"),  # OpenLLMetry
    ("openinference.instrumentation.openai", "OpenAIInstrumentor"),
    ("openlit.instrumentation.openai", "OpenAIInstrumentor"),
)
"""Other libraries' OpenAI instrumentors: while one is active, ours steps aside."""


class _Instrumented:
    """Starts and finishes the span of one call of one SDK method."""

    def __init__(self, tracer: trace.Tracer, api: _Api, include_usage: bool):
        self.tracer = tracer
        self.api = api
        self.include_usage = include_usage

    def start(
        self, instance: Any, kwargs: dict[str, Any]
    ) -> tuple[CallSpan, dict[str, Any]] | None:
        if s.other_instrumentation(OTHER_INSTRUMENTATIONS) is not None:
            return None
        client = instance._client
        model = kwargs.get("model")
        model = model if isinstance(model, str) else ""
        streaming = kwargs.get("stream") is True
        host, port = s.server_attributes(client.base_url)
        attributes = {
            sc.GEN_AI_OPERATION_NAME: self.api.operation,
            sc.GEN_AI_PROVIDER_NAME: provider_name(client),
            sc.GEN_AI_REQUEST_MODEL: model or None,
            sc.SERVER_ADDRESS: host,
            sc.SERVER_PORT: port if host else None,
            sc.GEN_AI_REQUEST_STREAM: True if streaming else None,
            **self.api.request_attributes(kwargs),
        }
        if streaming and isinstance(self.api, _Chat):
            kwargs = _include_usage(kwargs, self.include_usage)
        call = CallSpan(
            self.tracer,
            self.api.operation,
            model,
            {name: value for name, value in attributes.items() if value is not None},
        )
        self.api.record_input(call, kwargs)
        return call, kwargs

    def finish(self, call: CallSpan, result: Any) -> Any:
        import openai  # noqa: PLC0415 - imported by the time its methods are called

        if not call.streaming and type(result).__name__ == "LegacyAPIResponse":
            # ``with_raw_response``: parsing is cached, the caller's parse() gets the same object.
            call.end(before=lambda: self.api.on_response(call, result.parse()))
            return result
        if isinstance(result, openai.Stream):
            return SyncStreamProxy(result, StreamState(call, self.api.stream_handler()))
        if isinstance(result, openai.AsyncStream):
            return AsyncStreamProxy(result, StreamState(call, self.api.stream_handler()))
        call.end(before=lambda: self.api.on_response(call, result))
        return result

    def sync(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        return s.traced_call(
            lambda: self.start(instance, kwargs), self.finish, wrapped, args, kwargs
        )

    async def async_(
        self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
    ) -> Any:
        return await s.traced_call_async(
            lambda: self.start(instance, kwargs), self.finish, wrapped, args, kwargs
        )


def _helper_close_sync(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        return wrapped(*args, **kwargs)
    finally:
        end_stream_of(instance)


async def _helper_close_async(
    wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    finally:
        end_stream_of(instance)


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments the ``openai`` SDK.

    ``instrument(tracer_provider=..., stream_include_usage=None, capture_content=None,
    content_max_length=None, redact=None, configure=True)`` (None: the ``OTEL_LLM_*`` setting
    or its default; see ``otel_llm.instrumentation.content`` for capture). Unless
    ``configure=False``, it also attaches ``LLMSpanProcessor`` to the SDK TracerProvider in use
    (``otel_llm.configure``, idempotent), which is what makes ``opentelemetry-instrument``
    price calls with no code change.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 1.0",)

    _wrapped: list[tuple[type, str]]

    def _instrument(self, **kwargs: Any) -> None:
        tracer_provider = kwargs.get("tracer_provider")
        tracer = s.get_tracer(tracer_provider)
        include_usage = settings.STREAM_INCLUDE_USAGE.resolve(kwargs.get("stream_include_usage"))
        capture = ContentCapture(
            enabled=kwargs.get("capture_content"),
            max_length=kwargs.get("content_max_length"),
            redact=kwargs.get("redact"),
        )
        targets: list[s.Target] = []
        for (module, sync_class, async_class), api, methods in (
            (_CHAT, _Chat(capture), ("create", "parse")),
            (_RESPONSES, _Responses(capture), ("create", "parse")),
            (_EMBEDDINGS, _Embeddings(capture), ("create",)),
        ):
            instrumented = _Instrumented(tracer, api, include_usage)
            for method in methods:
                targets.append((module, sync_class, method, instrumented.sync))
                targets.append((module, async_class, method, instrumented.async_))
        for module, sync_class, async_class in _HELPERS:
            targets.append((module, sync_class, "close", _helper_close_sync))
            targets.append((module, async_class, "close", _helper_close_async))
        self._wrapped = s.wrap_methods(targets)
        if kwargs.get("configure", True):
            s.configure_processor(tracer_provider)

    def _uninstrument(self, **kwargs: Any) -> None:
        s.unwrap_methods(self._wrapped)
