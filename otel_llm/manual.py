"""Manual instrumentation for any provider (Ollama, vLLM, an in-house gateway).

``llm_call`` opens a conformant GenAI client span -- name ``{operation} {model}``, kind CLIENT
-- and yields an ``LLMCallHandle`` to report what the response said. Used as a decorator it
opens one span per invocation; the function reaches its handle with ``current_llm_call()``.
An exception from the body marks the span failed (``error.type``, status ERROR) and is re-raised
unchanged. Nothing in here raises into the caller: a bad value is left for the processor to
reject and count.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar, cast

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from otel_llm import _semconv as sc
from otel_llm._version import __version__

_logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_current_call: ContextVar[LLMCallHandle | None] = ContextVar("otel_llm_call", default=None)


def error_type(exc: BaseException) -> str:
    """A failed call's ``error.type``: the exception's class qualified by its module (builtins
    unqualified). The provider SDKs define their errors at the package's top level, so an
    OpenAI 429 is ``openai.RateLimitError``."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def current_llm_call() -> LLMCallHandle | None:
    """The handle of the innermost ``llm_call`` in progress, if any."""
    return _current_call.get()


class LLMCallHandle:
    """What the caller reports about a call in progress."""

    def __init__(self, span: Span, start_ns: int):
        self.span = span
        self._start_ns = start_ns
        self._first_chunk_seen = False

    def set_usage(
        self,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: int | None = None,
        cache_creation_tokens: int | None = None,
        reasoning_tokens: int | None = None,
    ) -> None:
        """Token counts as the conventions count them: ``input_tokens`` includes cached input,
        ``output_tokens`` includes reasoning."""
        for name, value in (
            (sc.GEN_AI_USAGE_INPUT_TOKENS, input_tokens),
            (sc.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens),
            (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, cache_read_tokens),
            (sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, cache_creation_tokens),
            (sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, reasoning_tokens),
        ):
            if value is not None:
                self.set_attribute(name, value)

    def set_response(
        self,
        *,
        model: str | None = None,
        id: str | None = None,
        finish_reasons: Sequence[str] | None = None,
    ) -> None:
        if model is not None:
            self.set_attribute(sc.GEN_AI_RESPONSE_MODEL, model)
        if id is not None:
            self.set_attribute(sc.GEN_AI_RESPONSE_ID, id)
        if finish_reasons is not None:
            self.set_attribute(sc.GEN_AI_RESPONSE_FINISH_REASONS, list(finish_reasons))

    def set_cost(self, amount_usd: float) -> None:
        """A cost the provider reported itself; it wins over the local price."""
        self.set_attribute(sc.GEN_AI_USAGE_COST_AMOUNT, amount_usd)
        self.set_attribute(sc.GEN_AI_USAGE_COST_SOURCE, sc.COST_SOURCE_PROVIDER)

    def first_chunk(self) -> None:
        """Call when the first chunk with content arrives; later calls are ignored."""
        if not self._first_chunk_seen:
            self._first_chunk_seen = True
            elapsed = (time.time_ns() - self._start_ns) / 1e9
            self.set_attribute(sc.GEN_AI_REQUEST_STREAM, True)
            self.set_attribute(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, elapsed)

    def usage_missing(self) -> None:
        """Say the token counts are unknown (e.g. a stream that reported none)."""
        self.set_attribute(sc.OTEL_LLM_USAGE_MISSING, True)

    def set_attribute(self, name: str, value: Any) -> None:
        try:
            self.span.set_attribute(name, value)
        except Exception:
            _logger.debug("otel-llm: could not set %s", name, exc_info=True)


class llm_call:
    """A GenAI client span around one LLM call; context manager (sync and async) and decorator.

    Args:
        provider: ``gen_ai.provider.name`` (openai, anthropic, aws.bedrock, or your own).
        model: the requested model.
        operation: ``chat`` (default), ``text_completion``, ``embeddings``, ...
        stream: the call streams its response.
        server_address, server_port: the endpoint called.
        attributes: more attributes to set at the start (request parameters, ...).
        tracer_provider: defaults to the global one.
    """

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        operation: str = "chat",
        stream: bool = False,
        server_address: str | None = None,
        server_port: int | None = None,
        attributes: dict[str, Any] | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ):
        self._attributes: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: operation,
            sc.GEN_AI_PROVIDER_NAME: provider,
            sc.GEN_AI_REQUEST_MODEL: model,
        }
        if stream:
            self._attributes[sc.GEN_AI_REQUEST_STREAM] = True
        if server_address is not None:
            self._attributes[sc.SERVER_ADDRESS] = server_address
            if server_port is not None:
                self._attributes[sc.SERVER_PORT] = server_port
        self._attributes.update(attributes or {})
        self._name = f"{operation} {model}"
        self._tracer_provider = tracer_provider
        self._active: list[tuple[Span, Token[Any], Token[LLMCallHandle | None]]] = []

    def __enter__(self) -> LLMCallHandle:
        tracer = trace.get_tracer("otel_llm", __version__, tracer_provider=self._tracer_provider)
        start_ns = time.time_ns()
        span = tracer.start_span(
            self._name, kind=SpanKind.CLIENT, attributes=self._attributes, start_time=start_ns
        )
        handle = LLMCallHandle(span, start_ns)
        context_token = context_api.attach(trace.set_span_in_context(span))
        self._active.append((span, context_token, _current_call.set(handle)))
        return handle

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span, context_token, call_token = self._active.pop()
        try:
            if exc is not None:
                span.set_attribute(sc.ERROR_TYPE, error_type(exc))
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
            span.end()
        except Exception:
            _logger.debug("otel-llm: ending the span failed", exc_info=True)
        finally:
            _current_call.reset(call_token)
            context_api.detach(context_token)

    async def __aenter__(self) -> LLMCallHandle:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, function: F) -> F:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh():
                    return await function(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return function(*args, **kwargs)

        return cast(F, wrapper)

    def _fresh(self) -> llm_call:
        # Each invocation gets its own span stack: concurrent calls of one decorated function
        # (threads, tasks) must not end each other's spans.
        fresh = copy.copy(self)
        fresh._active = []
        return fresh
