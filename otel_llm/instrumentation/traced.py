"""One SDK call inside its span: starting it from the request, calling the SDK, finishing it.

The SDK call always happens: when starting the span fails the call runs untraced, and when
reading the response fails the span still ends and the caller gets the SDK's result as it was.
An exception from the SDK marks the span failed and is re-raised as is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Tracer

from otel_llm import _semconv as sc
from otel_llm._version import __version__
from otel_llm.instrumentation.values import api_key_hint, http_status, server_attributes, url_path
from otel_llm.instrumentation.wrapping import Other, other_instrumentation
from otel_llm.lifecycle import CallSpan, start_attributes

_logger = logging.getLogger(__name__)


def get_tracer(tracer_provider: trace.TracerProvider | None) -> Tracer:
    return trace.get_tracer(
        "otel_llm.instrumentation", __version__, tracer_provider=tracer_provider
    )


def start_call(
    tracer: Tracer,
    *,
    others: Iterable[Other],
    operation: str,
    provider: str,
    base_url: Any,
    path: str,
    api_key: Any,
    kwargs: Mapping[str, Any],
    streaming: bool,
    request: Mapping[str, Any],
) -> CallSpan | None:
    """Start the span of an SDK call made with ``kwargs`` by a client at ``base_url`` to the API
    at ``path`` (a POST), with the API's ``request`` attributes (Nones left out) and the hint of
    ``api_key`` (None: no hint); None while another instrumentation of the same SDK is active
    (``other_instrumentation``)."""
    if other_instrumentation(others) is not None:
        return None
    model = kwargs.get("model")
    model = model if isinstance(model, str) else ""
    host, port = server_attributes(base_url)
    attributes = start_attributes(
        operation=operation,
        provider=provider,
        model=model or None,
        stream=streaming,
        server_address=host,
        server_port=port,
    )
    attributes[sc.URL_PATH] = url_path(base_url, path)
    attributes[sc.HTTP_REQUEST_METHOD] = "POST"
    hint = api_key_hint(api_key)
    if hint is not None:
        attributes[sc.OTEL_LLM_API_KEY_HINT] = hint
    attributes.update((name, value) for name, value in request.items() if value is not None)
    return CallSpan.start(tracer, operation, model, attributes)


Start = Callable[[], tuple[CallSpan, dict[str, Any]] | None]
"""Starts a call's span; returns it and the keyword arguments to call the SDK with, or None to
leave the call untraced."""
Finish = Callable[[CallSpan, Any], Any]
"""Reads the SDK's result onto the span (or wraps the stream); returns what the caller gets."""


def _started(start: Start) -> tuple[CallSpan, dict[str, Any]] | None:
    try:
        return start()
    except Exception:
        _logger.debug("otel-llm: could not start the span", exc_info=True)
        return None


def _finished(finish: Finish, call: CallSpan, result: Any) -> Any:
    try:
        call.http_status = http_status(result)
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
