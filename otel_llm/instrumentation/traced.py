"""One SDK call inside its span: starting it from the request, calling the SDK, finishing it.

The SDK call always happens: when starting the span fails the call runs untraced, and when
reading the response fails the span still ends and the caller gets the SDK's result as it was.
An exception from the SDK marks the span failed and is re-raised as is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import Tracer

from otel_llm import _semconv as sc
from otel_llm import enforcement
from otel_llm._version import __version__
from otel_llm.instrumentation.values import http_status
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
    server: tuple[str | None, int | None],
    endpoint: str,
    key_hint: str | None,
    kwargs: Mapping[str, Any],
    api_key: object = None,
    streaming: bool,
    request: Mapping[str, Any],
) -> CallSpan | None:
    """Start the span of an SDK call made with ``kwargs`` by a client at ``server`` (its
    ``server_attributes``) to the API path ``endpoint`` (``url_path``; a POST), with the API's
    ``request`` attributes (Nones left out) and the client key's ``key_hint`` (None: none; the
    key itself, ``api_key``, is only kept out of a failure's recorded exception); None
    while another instrumentation of the same SDK is active (``other_instrumentation``).
    Raises ``PolicyBlocked`` (its span ended) when policy enforcement refuses the call."""
    model = kwargs.get("model")
    model = model if isinstance(model, str) else ""
    enforcer = enforcement.active
    block = (
        None
        if enforcer is None
        else enforcer.check(provider, model or None, request.get(sc.GEN_AI_REQUEST_MAX_TOKENS))
    )
    if other_instrumentation(others) is not None:
        if block is not None:
            enforcement.refuse(None, block)  # the other instrumentation's span says the rest
        return None
    attributes = start_attributes(
        operation=operation,
        provider=provider,
        model=model or None,
        stream=streaming,
        server_address=server[0],
        server_port=server[1],
    )
    attributes[sc.URL_PATH] = endpoint
    attributes[sc.HTTP_REQUEST_METHOD] = "POST"
    if key_hint is not None:
        attributes[sc.OTEL_LLM_API_KEY_HINT] = key_hint
    for name, value in request.items():
        if value is not None:
            attributes[name] = value
    if block is not None:
        try:
            refused = CallSpan.start(tracer, operation, model, attributes)
        except Exception:
            _logger.debug("otel-llm: could not start the span", exc_info=True)
            refused = None  # refused all the same, untraced
        enforcement.refuse(refused, block)
    call = CallSpan.start(tracer, operation, model, attributes)
    if isinstance(api_key, str):
        call.secret = api_key
    return call


Start = Callable[[Any, dict[str, Any]], tuple[CallSpan, dict[str, Any]] | None]
"""Starts a call's span from the SDK resource (``self`` of the wrapped method) and the call's
keyword arguments; returns the span and the keyword arguments to call the SDK with, or None to
leave the call untraced. (Taking them, rather than closing over them, spares a closure a call.)"""
Finish = Callable[[CallSpan, Any], Any]
"""Reads the SDK's result onto the span (or wraps the stream); returns what the caller gets."""


def _started(start: Start, instance: Any, kwargs: Any) -> tuple[CallSpan, dict[str, Any]] | None:
    try:
        return start(instance, kwargs)
    except enforcement.PolicyBlocked:
        raise  # the one exception on purpose: the call must not be made
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


def traced_call(  # noqa: PLR0917 - positional: called on every SDK call
    start: Start,
    instance: Any,
    finish: Finish,
    wrapped: Callable[..., Any],
    args: Any,
    kwargs: Any,
) -> Any:
    """Call ``wrapped`` inside its span (``start(instance, kwargs)``); an exception marks the span
    and is re-raised as is. When starting the span fails, ``wrapped`` is called untouched."""
    started = _started(start, instance, kwargs)
    if started is None:
        return wrapped(*args, **kwargs)
    call, call_kwargs = started
    # The span made current by hand: ``trace.use_span`` with its exception handling switched
    # off does the same through a generator-based context manager, ~1.3 µs more per call.
    token = context.attach(trace.set_span_in_context(call.span))
    try:
        try:
            result = wrapped(*args, **call_kwargs)
        finally:
            context.detach(token)
    except BaseException as exc:
        call.fail(exc)
        call.end()
        raise
    return _finished(finish, call, result)


async def traced_call_async(  # noqa: PLR0917 - as traced_call
    start: Start,
    instance: Any,
    finish: Finish,
    wrapped: Callable[..., Any],
    args: Any,
    kwargs: Any,
) -> Any:
    """``traced_call`` for coroutine functions."""
    started = _started(start, instance, kwargs)
    if started is None:
        return await wrapped(*args, **kwargs)
    call, call_kwargs = started
    token = context.attach(trace.set_span_in_context(call.span))
    try:
        try:
            result = await wrapped(*args, **call_kwargs)
        finally:
            context.detach(token)
    except BaseException as exc:
        call.fail(exc)
        call.end()
        raise
    return _finished(finish, call, result)
