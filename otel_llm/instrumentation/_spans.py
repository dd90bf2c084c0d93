"""What the SDK instrumentors share: starting a GenAI client span, setting values, failing it.

Everything here is defensive: a bad value or an unexpected SDK object is skipped (and logged at
debug level), never raised into the application's call.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from wrapt import wrap_function_wrapper

from otel_llm import _semconv as sc
from otel_llm._version import __version__
from otel_llm.configure import configure
from otel_llm.instrumentation.content import text_message
from otel_llm.manual import error_type

_logger = logging.getLogger(__name__)


def get_tracer(tracer_provider: trace.TracerProvider | None) -> Tracer:
    return trace.get_tracer(
        "otel_llm.instrumentation", __version__, tracer_provider=tracer_provider
    )


def number(value: Any) -> float | int | None:
    """A request parameter that is a real number (not the SDKs' ``omit``/``NOT_GIVEN``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def strings(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def server_attributes(base_url: Any) -> tuple[str | None, int | None]:
    """``server.address`` and ``server.port`` of a client's base URL (default ports filled in)."""
    try:
        parts = urlsplit(str(base_url))
        host = parts.hostname
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        return None, None
    return host, port


class CallSpan:
    """One LLM call's span; ends exactly once, whichever thread or finalizer gets there first."""

    def __init__(self, tracer: Tracer, operation: str, model: str, attributes: dict[str, Any]):
        self.start_ns = time.time_ns()
        self.span: Span = tracer.start_span(
            f"{operation} {model}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=self.start_ns,
        )
        self.streaming = attributes.get(sc.GEN_AI_REQUEST_STREAM) is True
        self._lock = threading.Lock()
        self._ended = False
        self._first_chunk_seen = False

    @property
    def ended(self) -> bool:
        return self._ended

    def set(self, name: str, value: Any) -> None:
        if value is None:
            return
        try:
            self.span.set_attribute(name, value)
        except Exception:
            _logger.debug("otel-llm: could not set %s", name, exc_info=True)

    def set_all(self, attributes: Mapping[str, Any]) -> None:
        for name, value in attributes.items():
            self.set(name, value)

    def first_chunk(self) -> None:
        if not self._first_chunk_seen:
            self._first_chunk_seen = True
            self.set(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, (time.time_ns() - self.start_ns) / 1e9)

    def fail(self, exc: BaseException) -> None:
        """Mark the call failed; the caller still ends it."""
        try:
            self.span.set_attribute(sc.ERROR_TYPE, error_type(exc))
            status = getattr(exc, "status_code", None)
            if isinstance(status, int) and not isinstance(status, bool):
                self.span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, str(exc)))
        except Exception:
            _logger.debug("otel-llm: could not mark the span failed", exc_info=True)

    def failed(self, error: str, message: str) -> None:
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


def get(obj: Any, *path: str) -> Any:
    """``obj.a.b`` (or ``obj["a"]["b"]``), None when any step is missing."""
    for name in path:
        if obj is None:
            return None
        obj = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
    return obj


def integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def total(values: Iterable[int | None]) -> int | None:
    given = [v for v in values if v is not None]
    return sum(given) if given else None


def configure_processor(tracer_provider: trace.TracerProvider | None) -> None:
    """Attach ``LLMSpanProcessor`` to the SDK TracerProvider the instrumentor reports to (the
    given one, else the global one) -- as ``opentelemetry-instrument`` sets one up before it
    loads instrumentors. Without an SDK provider it does nothing: instrumenting must not install
    an exporting provider of its own; call ``otel_llm.configure()`` for that."""
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return
    try:
        configure(tracer_provider=provider)
    except Exception:
        _logger.warning("otel-llm: could not attach the LLM span processor", exc_info=True)


Start = Callable[[], tuple[CallSpan, dict[str, Any]] | None]
"""Starts a call's span; returns it and the keyword arguments to call the SDK with, or None to
leave the call untraced."""
Finish = Callable[[CallSpan, Any], Any]
"""Reads the SDK's result onto the span (or wraps the stream); returns what the caller gets."""


Other = tuple[str, str]
"""(module, class) of another library's instrumentor of the same SDK."""

_stepped_aside: set[str] = set()


def other_instrumentation(others: Iterable[Other]) -> str | None:
    """The module of another library's instrumentor of the same SDK that is active, if any.

    With two instrumentations of one SDK, each call would make two spans; nesting usually lets
    the processor price only one, but not when the other library never makes its span current
    (its span and ours then land in different traces). Stepping aside is the sure way to one
    span per call, and their span is priced just the same (semconv/dialects.yaml).
    """
    for module_name, class_name in others:
        module = sys.modules.get(module_name)
        instrumentor = getattr(getattr(module, class_name, None), "_instance", None)
        if getattr(instrumentor, "_is_instrumented_by_opentelemetry", False) is True:
            if module_name not in _stepped_aside:
                _stepped_aside.add(module_name)
                _logger.warning(
                    "otel-llm: %s is active, so otel-llm's instrumentation of the same SDK "
                    "steps aside; its spans are priced (disable it to get otel-llm's spans)",
                    module_name,
                )
            return module_name
    return None


def _started(start: Start) -> tuple[CallSpan, dict[str, Any]] | None:
    try:
        return start()
    except Exception:
        _logger.debug("otel-llm: could not start the span", exc_info=True)
        return None


def _finished(finish: Finish, call: CallSpan, result: Any) -> Any:
    try:
        return finish(call, result)
    except Exception:
        _logger.debug("otel-llm: could not read the response", exc_info=True)
        call.end()
        return result


def traced_call(
    start: Start, finish: Finish, wrapped: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    """Call ``wrapped`` inside its span; an exception marks the span and is re-raised as is.
    When starting the span fails, ``wrapped`` is called untouched."""
    started = _started(start)
    if started is None:
        return wrapped(*args, **kwargs)
    call, call_kwargs = started
    try:
        with trace.use_span(call.span, record_exception=False, set_status_on_exception=False):
            result = wrapped(*args, **call_kwargs)
    except BaseException as exc:
        call.fail(exc)
        call.end()
        raise
    return _finished(finish, call, result)


async def traced_call_async(
    start: Start, finish: Finish, wrapped: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    """``traced_call`` for coroutine functions."""
    started = _started(start)
    if started is None:
        return await wrapped(*args, **kwargs)
    call, call_kwargs = started
    try:
        with trace.use_span(call.span, record_exception=False, set_status_on_exception=False):
            result = await wrapped(*args, **call_kwargs)
    except BaseException as exc:
        call.fail(exc)
        call.end()
        raise
    return _finished(finish, call, result)


def text_of(content: Any) -> str | None:
    """The text of a message's content: a string, or the text parts of a list of parts (OpenAI
    ``{"type": "text"|"input_text"|"output_text", "text": ...}``, Anthropic text blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        texts = [get(part, "text") for part in content]
        joined = "".join(text for text in texts if isinstance(text, str))
        return joined or None
    return None


def text_messages(messages: Any) -> list[dict[str, Any]]:
    """Request messages (``{"role", "content"}``) as the conventions' text messages."""
    result = []
    for message in messages if isinstance(messages, list | tuple) else ():
        role, text = get(message, "role"), text_of(get(message, "content"))
        if isinstance(role, str) and text is not None:
            result.append(text_message(role, text))
    return result


Target = tuple[str, str, str, Callable[..., Any]]
"""(module, class, method, wrapper): a method to wrap, if this SDK version has it."""


def wrap_methods(targets: Iterable[Target]) -> list[tuple[type, str]]:
    """Wrap each target the installed SDK version has (older ones lack some APIs); returns what
    was wrapped, for ``unwrap_methods``."""
    wrapped: list[tuple[type, str]] = []
    for module_name, class_name, method, wrapper in targets:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            _logger.debug("otel-llm: %s.%s not found; not instrumented", module_name, class_name)
            continue
        if callable(getattr(cls, method, None)):
            wrap_function_wrapper(cls, method, wrapper)
            wrapped.append((cls, method))
    return wrapped


def unwrap_methods(wrapped: list[tuple[type, str]]) -> None:
    for cls, method in wrapped:
        unwrap(cls, method)
    wrapped.clear()
