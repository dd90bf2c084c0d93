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

import sys
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry import trace

from otel_llm import settings
from otel_llm.instrumentation.content import ContentCapture
from otel_llm.instrumentation.instrumentor import SDKInstrumentor
from otel_llm.instrumentation.openai_apis import Api, Chat, Embeddings, Responses
from otel_llm.instrumentation.streams import (
    AsyncStreamProxy,
    StreamState,
    SyncStreamProxy,
    end_stream_of,
)
from otel_llm.instrumentation.traced import start_call, traced_call, traced_call_async
from otel_llm.instrumentation.values import api_key_hint, server_attributes, url_path
from otel_llm.instrumentation.wrapping import Other, Target
from otel_llm.lifecycle import CallSpan

_CHAT = ("openai.resources.chat.completions.completions", "Completions", "AsyncCompletions")
_RESPONSES = ("openai.resources.responses.responses", "Responses", "AsyncResponses")
_EMBEDDINGS = ("openai.resources.embeddings", "Embeddings", "AsyncEmbeddings")
_HELPERS = (
    ("openai.lib.streaming.chat._completions", "ChatCompletionStream", "AsyncChatCompletionStream"),
    ("openai.lib.streaming.responses._responses", "ResponseStream", "AsyncResponseStream"),
)


def provider_name(client: Any) -> str:
    """``gen_ai.provider.name`` for an OpenAI SDK client (see the module docstring)."""
    return _client_server(client)[0]


def _provider_of(client_type: type, host: str | None, port: int | None) -> str:
    host = (host or "").lower()
    azure_client = client_type.__name__.startswith(("Azure", "AsyncAzure"))
    if azure_client or host.endswith(".openai.azure.com"):
        return "azure.ai.openai"
    if host == "openrouter.ai" or host.endswith(".openrouter.ai"):
        return "openrouter"
    if port == 11434:
        return "ollama"
    return "openai"


# What a client's provider and server are, once per client: its base URL (an immutable object
# the client keeps; replacing it gives a new one) and its class decide them, and working them
# out on every call cost ~1.5 µs. The entry holds the URL, so its id is not reused while the
# entry lives; the bound keeps a program that makes many clients flat.
_MAX_CLIENTS = 64
_Server = tuple[str, tuple[str | None, int | None], str]
_clients: dict[int, tuple[Any, type, _Server]] = {}


def _client_server(client: Any) -> _Server:
    """The client's ``gen_ai.provider.name``, its (``server.address``, ``server.port``) and its
    ``url.path`` prefix (``url_path`` of ""): ``base_url`` is a property, read once a call."""
    base_url = client.base_url
    client_type = type(client)
    entry = _clients.get(id(base_url))
    if entry is not None and entry[0] is base_url and entry[1] is client_type:
        return entry[2]
    server = server_attributes(base_url)
    found = (_provider_of(client_type, *server), server, url_path(base_url, ""))
    if len(_clients) >= _MAX_CLIENTS:
        _clients.clear()
    _clients[id(base_url)] = (base_url, client_type, found)
    return found


def _include_usage(kwargs: dict[str, Any], include_usage: bool) -> dict[str, Any]:
    """The chat stream request, with ``stream_options`` added when asked to and not set."""
    given = kwargs.get("stream_options", ...)
    if not include_usage or given is None or isinstance(given, dict):
        return kwargs
    return {**kwargs, "stream_options": {"include_usage": True}}


OTHER_INSTRUMENTATIONS: tuple[Other, ...] = (
    ("opentelemetry.instrumentation.openai_v2", "OpenAIInstrumentor"),
    ("opentelemetry.instrumentation.genai.openai", "OpenAIInstrumentor"),
    ("opentelemetry.instrumentation.openai", "OpenAIInstrumentor"),  # OpenLLMetry
    ("openinference.instrumentation.openai", "OpenAIInstrumentor"),
    ("openlit.instrumentation.openai", "OpenAIInstrumentor"),
)
"""Other libraries' OpenAI instrumentors: while one is active, ours steps aside."""


class _Instrumented:
    """Starts and finishes the span of one call of one SDK method."""

    def __init__(self, tracer: trace.Tracer, api: Api, include_usage: bool, key_hint: bool):
        self.tracer = tracer
        self.api = api
        self.include_usage = include_usage
        self.key_hint = key_hint

    def start(
        self, instance: Any, kwargs: dict[str, Any]
    ) -> tuple[CallSpan, dict[str, Any]] | None:
        client = instance._client
        provider, server, prefix = _client_server(client)
        streaming = kwargs.get("stream") is True
        call = start_call(
            self.tracer,
            others=OTHER_INSTRUMENTATIONS,
            operation=self.api.operation,
            provider=provider,
            server=server,
            endpoint=prefix + self.api.path,
            key_hint=api_key_hint(client.api_key) if self.key_hint else None,
            api_key=client.api_key,
            kwargs=kwargs,
            streaming=streaming,
            request=self.api.request_attributes(kwargs),
        )
        if call is None:
            return None
        if streaming and isinstance(self.api, Chat):
            kwargs = _include_usage(kwargs, self.include_usage)
        self.api.record_input(call, kwargs)
        return call, kwargs

    def finish(self, call: CallSpan, result: Any) -> Any:
        openai = sys.modules["openai"]  # imported by the time its methods are called
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
        return traced_call(self.start, instance, self.finish, wrapped, args, kwargs)

    async def async_(
        self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
    ) -> Any:
        return await traced_call_async(self.start, instance, self.finish, wrapped, args, kwargs)


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


class OpenAIInstrumentor(SDKInstrumentor):
    """Instruments the ``openai`` SDK.

    ``instrument(tracer_provider=..., stream_include_usage=None, capture_content=None,
    content_max_length=None, redact=None, api_key_hint=None, configure=True)`` (None: the
    ``OTEL_LLM_*`` setting or its default; see ``otel_llm.instrumentation.content`` for
    capture). Unless ``configure=False``, it also attaches ``LLMSpanProcessor`` to the SDK
    TracerProvider in use (``otel_llm.configure``, idempotent), which is what makes
    ``opentelemetry-instrument`` price calls with no code change.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 1.0",)

    def targets(
        self, tracer: trace.Tracer, capture: ContentCapture, options: dict[str, Any]
    ) -> list[Target]:
        include_usage = settings.STREAM_INCLUDE_USAGE.resolve(options.get("stream_include_usage"))
        key_hint = settings.API_KEY_HINT.resolve(options.get("api_key_hint"))
        targets: list[Target] = []
        for (module, sync_class, async_class), api, methods in (
            (_CHAT, Chat(capture), ("create", "parse")),
            (_RESPONSES, Responses(capture), ("create", "parse")),
            (_EMBEDDINGS, Embeddings(capture), ("create",)),
        ):
            instrumented = _Instrumented(tracer, api, include_usage, key_hint)
            for method in methods:
                targets.append((module, sync_class, method, instrumented.sync))
                targets.append((module, async_class, method, instrumented.async_))
        for module, sync_class, async_class in _HELPERS:
            targets.append((module, sync_class, "close", _helper_close_sync))
            targets.append((module, async_class, "close", _helper_close_async))
        return targets
