"""``AnthropicInstrumentor``: a GenAI client span for every Anthropic Messages call.

Instrumented: ``messages.create`` (sync and async, ``stream=True`` included), the
``messages.stream(...)`` helper and ``messages.parse`` (structured outputs), neither of which
goes through ``create``. The provider is
``anthropic``; ``server.address`` / ``server.port`` are the client's base URL's.

Not read: ``with_raw_response`` / ``with_streaming_response`` results (their span says usage
is missing) and the ``beta`` messages API.

Usage per the conventions: ``gen_ai.usage.input_tokens`` counts ALL input tokens, so it is
Anthropic's ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens``.

One call, one span: the anthropic SDK (2.x) makes spans of its own when an SDK TracerProvider is
installed. While this instrumentor is active it sets ``ANTHROPIC_OPEN_TELEMETRY=false`` unless the
variable is already set (removed again on uninstrument), so clients created from then on leave
the span to us. The SDK reads the variable when a client is created: create clients after
instrumenting (``opentelemetry-instrument`` does), or pass ``open_telemetry=False`` to a client.
Setting ``ANTHROPIC_OPEN_TELEMETRY`` yourself is respected.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Collection, Generator
from typing import Any

from opentelemetry import trace

from otel_llm import _semconv as sc
from otel_llm import settings
from otel_llm.instrumentation.content import ContentCapture, text_message, text_part
from otel_llm.instrumentation.instrumentor import SDKInstrumentor
from otel_llm.instrumentation.streams import AsyncStreamProxy, StreamState, SyncStreamProxy
from otel_llm.instrumentation.traced import start_call, traced_call, traced_call_async
from otel_llm.instrumentation.values import (
    api_key_hint,
    field,
    get,
    integer,
    number,
    server_attributes,
    strings,
    text_messages,
    text_of,
    url_path,
)
from otel_llm.instrumentation.wrapping import Other, Target
from otel_llm.lifecycle import CallSpan

_MESSAGES = "anthropic.resources.messages.messages"
_PATH = "/v1/messages"
"""Where the SDK sends a Messages request, under the client's base URL."""
_SDK_SPANS_ENV = "ANTHROPIC_OPEN_TELEMETRY"


def _request_attributes(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        sc.GEN_AI_REQUEST_MAX_TOKENS: number(kwargs.get("max_tokens")),
        sc.GEN_AI_REQUEST_TEMPERATURE: number(kwargs.get("temperature")),
        sc.GEN_AI_REQUEST_TOP_P: number(kwargs.get("top_p")),
        sc.GEN_AI_REQUEST_TOP_K: number(kwargs.get("top_k")),
        sc.GEN_AI_REQUEST_STOP_SEQUENCES: strings(kwargs.get("stop_sequences")),
    }


def _set_usage(call: CallSpan, usage: dict[str, int | None]) -> None:
    cache_creation = usage.get("cache_creation_input_tokens")
    cache_read = usage.get("cache_read_input_tokens")
    uncached = usage.get("input_tokens")
    call.set_usage(
        input_tokens=(
            None if uncached is None else uncached + (cache_creation or 0) + (cache_read or 0)
        ),
        output_tokens=usage.get("output_tokens"),
        cache_creation_tokens=cache_creation,
        cache_read_tokens=cache_read,
    )


_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def _usage_of(usage: Any) -> dict[str, int | None]:
    return {name: integer(get(usage, name)) for name in _USAGE_FIELDS}


def _record_output(capture: ContentCapture, call: CallSpan, text: str, stop_reason: Any) -> None:
    if capture.enabled:
        reason = stop_reason if isinstance(stop_reason, str) else None
        capture.record(call.span, output_messages=[text_message("assistant", text, reason)])


def _on_message(capture: ContentCapture, call: CallSpan, message: Any) -> None:
    _record_output(
        capture, call, text_of(get(message, "content")) or "", get(message, "stop_reason")
    )
    call.set_response(
        id=get(message, "id"),
        model=get(message, "model"),
        finish_reasons=strings(get(message, "stop_reason")),
    )
    usage = get(message, "usage")
    if usage is None:
        call.usage_missing()
    else:
        _set_usage(call, _usage_of(usage))


class _MessageStream:
    """Reads ``RawMessageStreamEvent``s: ``message_start`` has the id, model and input usage,
    ``message_delta`` the stop reason and the cumulative output usage."""

    def __init__(self, capture: ContentCapture) -> None:
        self.capture = capture
        self.texts: list[str] = []
        self.message: Any = None
        self.stop_reason: Any = None
        self.usage: dict[str, int | None] = {}

    def on_item(self, call: CallSpan, event: Any) -> None:
        kind = field(event, "type")  # every event: field, not get (see values.field)
        if kind == "content_block_delta":
            call.first_chunk()
            text = field(field(event, "delta"), "text")
            if self.capture.enabled and isinstance(text, str):
                self.texts.append(text)
        elif kind == "message_start":
            self.message = get(event, "message")
            self.usage = _usage_of(get(self.message, "usage"))
        elif kind == "message_delta":
            self.stop_reason = get(event, "delta", "stop_reason") or self.stop_reason
            for name, value in _usage_of(get(event, "usage")).items():
                if value is not None:
                    self.usage[name] = value

    def complete(self, call: CallSpan) -> None:
        _record_output(self.capture, call, "".join(self.texts), self.stop_reason)
        call.set_response(
            id=get(self.message, "id"),
            model=get(self.message, "model"),
            finish_reasons=strings(self.stop_reason),
        )
        if self.usage.get("input_tokens") is None and self.usage.get("output_tokens") is None:
            call.usage_missing()
        else:
            _set_usage(call, self.usage)


OTHER_INSTRUMENTATIONS: tuple[Other, ...] = (
    ("opentelemetry.instrumentation.anthropic", "AnthropicInstrumentor"),  # OpenLLMetry
    ("openinference.instrumentation.anthropic", "AnthropicInstrumentor"),
    ("openlit.instrumentation.anthropic", "AnthropicInstrumentor"),
)
"""Other libraries' Anthropic instrumentors: while one is active, ours steps aside."""


class _Instrumented:
    def __init__(self, tracer: trace.Tracer, capture: ContentCapture, key_hint: bool):
        self.tracer = tracer
        self.capture = capture
        self.key_hint = key_hint

    def start(
        self, instance: Any, kwargs: dict[str, Any], streaming: bool
    ) -> tuple[CallSpan, dict[str, Any]] | None:
        client = instance._client
        call = start_call(
            self.tracer,
            others=OTHER_INSTRUMENTATIONS,
            operation="chat",
            provider="anthropic",
            server=server_attributes(client.base_url),
            endpoint=url_path(client.base_url, _PATH),
            key_hint=api_key_hint(client.api_key) if self.key_hint else None,
            api_key=client.api_key,
            kwargs=kwargs,
            streaming=streaming,
            request=_request_attributes(kwargs),
        )
        if call is None:
            return None
        if self.capture.enabled:
            system = text_of(kwargs.get("system"))
            self.capture.record(
                call.span,
                input_messages=text_messages(kwargs.get("messages")),
                system_instructions=[text_part(system)] if system else None,
            )
        return call, kwargs

    def start_create(
        self, instance: Any, kwargs: dict[str, Any]
    ) -> tuple[CallSpan, dict[str, Any]] | None:
        return self.start(instance, kwargs, kwargs.get("stream") is True)

    def finish(self, call: CallSpan, result: Any) -> Any:
        import anthropic  # noqa: PLC0415 - imported by the time its methods are called

        if isinstance(result, anthropic.Stream):
            return SyncStreamProxy(result, StreamState(call, _MessageStream(self.capture)))
        if isinstance(result, anthropic.AsyncStream):
            return AsyncStreamProxy(result, StreamState(call, _MessageStream(self.capture)))
        call.end(before=lambda: _on_message(self.capture, call, result))
        return result

    def create(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        return traced_call(self.start_create, instance, self.finish, wrapped, args, kwargs)

    async def create_async(
        self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
    ) -> Any:
        return await traced_call_async(
            self.start_create, instance, self.finish, wrapped, args, kwargs
        )

    def stream(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        """``messages.stream(...)`` returns a manager that makes the request when entered: the
        span starts then, around the manager's request (the manager's private request callable
        is replaced; a manager without one is returned as it is, untraced)."""
        manager = wrapped(*args, **kwargs)
        attribute = "_MessageStreamManager__api_request"
        request = getattr(manager, attribute, None)
        if not callable(request):
            return manager

        def traced_request() -> Any:
            return traced_call(
                lambda _instance, _kwargs: self.start(instance, kwargs, True),
                None,
                self.finish,
                lambda **_: request(),
                (),
                {},
            )

        with contextlib.suppress(Exception):
            setattr(manager, attribute, traced_request)
        return manager

    def stream_async(
        self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
    ) -> Any:
        manager = wrapped(*args, **kwargs)
        attribute = "_AsyncMessageStreamManager__api_request"
        request = getattr(manager, attribute, None)
        if request is None or not hasattr(request, "__await__"):
            return manager
        with contextlib.suppress(Exception):
            setattr(manager, attribute, _Deferred(self, instance, kwargs, request))
        return manager


class _Deferred:
    """The async stream manager's request, traced; its coroutine is only made when awaited, so a
    manager never entered warns about nothing more than the SDK's own request does."""

    def __init__(
        self, instrumented: _Instrumented, instance: Any, kwargs: dict[str, Any], request: Any
    ):
        self._instrumented = instrumented
        self._instance = instance
        self._kwargs = kwargs
        self._request = request

    async def _awaited(self, **_: Any) -> Any:
        return await self._request

    def __await__(self) -> Generator[Any, None, Any]:
        instrumented = self._instrumented
        return traced_call_async(
            lambda _instance, _kwargs: instrumented.start(self._instance, self._kwargs, True),
            None,
            instrumented.finish,
            self._awaited,
            (),
            {},
        ).__await__()


class AnthropicInstrumentor(SDKInstrumentor):
    """Instruments the ``anthropic`` SDK.

    ``instrument(tracer_provider=..., capture_content=None, content_max_length=None,
    redact=None, api_key_hint=None, configure=True)`` (None: the ``OTEL_LLM_*`` setting or its
    default; see ``otel_llm.instrumentation.content``). Unless ``configure=False``, it also
    attaches ``LLMSpanProcessor`` to the SDK TracerProvider in use (``otel_llm.configure``).
    """

    _env_set = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("anthropic >= 0.30",)

    def targets(
        self, tracer: trace.Tracer, capture: ContentCapture, options: dict[str, Any]
    ) -> list[Target]:
        key_hint = settings.API_KEY_HINT.resolve(options.get("api_key_hint"))
        instrumented = _Instrumented(tracer, capture, key_hint)
        return [
            (_MESSAGES, "Messages", "create", instrumented.create),
            (_MESSAGES, "AsyncMessages", "create", instrumented.create_async),
            # Structured outputs: posts the request itself, not through create (found in
            # review: a billed call without a span). SDKs before it have no such method.
            (_MESSAGES, "Messages", "parse", instrumented.create),
            (_MESSAGES, "AsyncMessages", "parse", instrumented.create_async),
            (_MESSAGES, "Messages", "stream", instrumented.stream),
            (_MESSAGES, "AsyncMessages", "stream", instrumented.stream_async),
        ]

    def _instrument(self, **kwargs: Any) -> None:
        super()._instrument(**kwargs)
        if _SDK_SPANS_ENV not in os.environ:
            os.environ[_SDK_SPANS_ENV] = "false"
            self._env_set = True

    def _uninstrument(self, **kwargs: Any) -> None:
        super()._uninstrument(**kwargs)
        if self._env_set:
            os.environ.pop(_SDK_SPANS_ENV, None)
            self._env_set = False
