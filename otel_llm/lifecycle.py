"""One GenAI client span's life, shared by ``llm_call``, the SDK instrumentors and their streams.

start -> attributes set safely -> time to first chunk -> usage and response -> failed (an
exception, or an error the response reported as data) -> ended exactly once.

``CallSpan`` is what every caller drives, so a span says the same things the same way whether
``llm_call`` or an instrumentor made it (as opentelemetry-util-genai's ``TelemetryHandler``
serves every instrumentation). Nothing in here raises into the application: a value the span
refuses is skipped and logged at debug level, and a bad value it accepts is left for the
processor to reject and count.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from otel_llm import _semconv as sc

__all__ = ["CallSpan", "error_type", "start_attributes"]

_logger = logging.getLogger(__name__)


def error_type(exc: BaseException) -> str:
    """A failed call's ``error.type``: the exception's class qualified by its module (builtins
    unqualified). The provider SDKs define their errors at the package's top level, so an
    OpenAI 429 is ``openai.RateLimitError``."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def start_attributes(
    *,
    operation: str,
    provider: str,
    model: str | None,
    stream: bool = False,
    server_address: str | None = None,
    server_port: int | None = None,
) -> dict[str, Any]:
    """What every GenAI client span says from its start (samplers see only these): the values
    given, without the Nones; ``server.port`` only with ``server.address``."""
    attributes = {
        sc.GEN_AI_OPERATION_NAME: operation,
        sc.GEN_AI_PROVIDER_NAME: provider,
        sc.GEN_AI_REQUEST_MODEL: model,
        sc.GEN_AI_REQUEST_STREAM: True if stream else None,
        sc.SERVER_ADDRESS: server_address,
        sc.SERVER_PORT: server_port if server_address is not None else None,
    }
    return {name: value for name, value in attributes.items() if value is not None}


class CallSpan:
    """One LLM call's span; ends exactly once, whichever thread or finalizer gets there first."""

    def __init__(self, span: Span, start_ns: int, *, streaming: bool = False):
        self.span = span
        self.start_ns = start_ns
        self.streaming = streaming
        """The request asked for a stream (``gen_ai.request.stream`` was set at the start)."""
        self._lock = threading.Lock()
        self._ended = False
        self._first_chunk_seen = False

    @classmethod
    def start(
        cls, tracer: Tracer, operation: str, model: str, attributes: Mapping[str, Any]
    ) -> Self:
        """Start the span ``{operation} {model}``, kind CLIENT, with ``attributes``."""
        start_ns = time.time_ns()
        span = tracer.start_span(
            f"{operation} {model}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=start_ns,
        )
        return cls(span, start_ns, streaming=attributes.get(sc.GEN_AI_REQUEST_STREAM) is True)

    @property
    def ended(self) -> bool:
        return self._ended

    def set_attribute(self, name: str, value: Any) -> None:
        """Set an attribute as given; a value the span refuses is logged, never raised."""
        try:
            self.span.set_attribute(name, value)
        except Exception:
            _logger.debug("otel-llm: could not set %s", name, exc_info=True)

    def set(self, name: str, value: Any) -> None:
        """``set_attribute`` unless the value is None (what a response did not say)."""
        if value is not None:
            self.set_attribute(name, value)

    def set_all(self, attributes: Mapping[str, Any]) -> None:
        for name, value in attributes.items():
            self.set(name, value)

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
        ``output_tokens`` includes reasoning. None leaves a count unset."""
        self.set(sc.GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
        self.set(sc.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)
        self.set(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, cache_read_tokens)
        self.set(sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, cache_creation_tokens)
        self.set(sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, reasoning_tokens)

    def usage_missing(self) -> None:
        """Say the token counts are unknown (e.g. a stream that reported none)."""
        self.set(sc.OTEL_LLM_USAGE_MISSING, True)

    def set_response(
        self,
        *,
        model: str | None = None,
        id: str | None = None,
        finish_reasons: Sequence[str] | None = None,
    ) -> None:
        """What the response said about itself; None leaves a value unset."""
        self.set(sc.GEN_AI_RESPONSE_MODEL, model)
        self.set(sc.GEN_AI_RESPONSE_ID, id)
        if finish_reasons is not None:
            self.set(sc.GEN_AI_RESPONSE_FINISH_REASONS, list(finish_reasons))

    def first_chunk(self) -> None:
        """The first chunk with content arrived: time it (later calls are ignored) and say the
        call streamed, had the request not said so."""
        if self._first_chunk_seen:
            return
        self._first_chunk_seen = True
        elapsed = (time.time_ns() - self.start_ns) / 1e9
        if not self.streaming:
            self.set(sc.GEN_AI_REQUEST_STREAM, True)
        self.set(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, elapsed)

    def fail(self, exc: BaseException) -> None:
        """Mark the call failed by ``exc``: ``error.type``, the HTTP status when the error carries
        one, the exception recorded, status ERROR. The caller still ends the span."""
        try:
            self.span.set_attribute(sc.ERROR_TYPE, error_type(exc))
            status = getattr(exc, "status_code", None)
            if isinstance(status, int) and not isinstance(status, bool):
                self.span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, str(exc)))
        except Exception:
            _logger.debug("otel-llm: could not mark the span failed", exc_info=True)

    def fail_as(self, error: str, message: str) -> None:
        """Mark the call failed without an exception (an error the stream reported as data)."""
        self.set(sc.ERROR_TYPE, error)
        try:
            self.span.set_status(Status(StatusCode.ERROR, message))
        except Exception:
            _logger.debug("otel-llm: could not mark the span failed", exc_info=True)

    def end(self, before: Callable[[], None] | None = None) -> bool:
        """End the span unless it already ended; ``before`` runs first (once). True if it ended
        now."""
        with self._lock:
            if self._ended:
                return False
            self._ended = True
        try:
            if before is not None:
                before()
        except Exception:
            _logger.debug("otel-llm: could not complete the span", exc_info=True)
        try:
            self.span.end()
        except Exception:
            _logger.debug("otel-llm: could not end the span", exc_info=True)
        return True
