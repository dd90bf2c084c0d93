"""Manual instrumentation for any provider (Ollama, vLLM, an in-house gateway).

``llm_call`` opens a conformant GenAI client span -- name ``{operation} {model}``, kind CLIENT
-- and yields an ``LLMCallHandle`` to report what the response said. Used as a decorator it
opens one span per invocation; the function reaches its handle with ``current_llm_call()`` (a
generator function's span is open from its first step to its last).
An exception from the body marks the span failed as the instrumentors mark theirs (``error.type``,
``http.response.status_code`` when the error carries one, status ERROR) and is re-raised
unchanged. The span's life is ``otel_llm.lifecycle.CallSpan``'s. Nothing in here raises into the
caller, whatever it is given: an argument of the wrong type is ignored with a debug log (a model
that is not a str leaves the span named ``{operation}``), and a bad value of the right type is
left for the processor to reject and count.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import numbers
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Mapping,
)
from contextvars import ContextVar, Token
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar, cast

from opentelemetry import context as context_api
from opentelemetry import trace

from otel_llm import _semconv as sc
from otel_llm import enforcement
from otel_llm._version import __version__
from otel_llm.lifecycle import CallSpan, attribute_value, ignored, start_attributes, text_value

F = TypeVar("F", bound=Callable[..., Any])

_logger = logging.getLogger(__name__)

_current_call: ContextVar[LLMCallHandle | None] = ContextVar("otel_llm_call", default=None)

_Open = tuple["llm_call", "LLMCallHandle", Token[Any], Token["LLMCallHandle | None"]]
_open_calls: ContextVar[tuple[_Open, ...]] = ContextVar("otel_llm_open_calls", default=())
"""The ``llm_call`` blocks entered in this thread or task and not yet left, innermost last. Kept
per context, not per instance: one instance entered by two threads or tasks at once (found in
review) had the first to leave end the other's span and raise on the other's context token."""


def current_llm_call() -> LLMCallHandle | None:
    """The handle of the innermost ``llm_call`` in progress, if any."""
    return _current_call.get()


class LLMCallHandle(CallSpan):
    """What the caller reports about a call in progress: ``set_usage``, ``set_response``,
    ``first_chunk``, ``usage_missing`` (``CallSpan``'s, as the instrumentors report theirs),
    ``set_attribute`` and ``set_cost``. ``llm_call`` marks the failure and ends the span."""

    def set_cost(self, amount_usd: float) -> None:
        """A cost the provider reported itself; it wins over the local price. A Decimal or a
        Fraction is recorded as a float (an attribute holds no other number). A value an
        attribute cannot hold is ignored with a debug log (the local price stays); one it can
        but that is no cost (a str, a NaN) is left for the processor to reject and count."""
        amount: object = amount_usd
        # Decimal is no numbers.Real (it does not mix with floats), but a cost may well be one.
        if isinstance(amount, numbers.Real | Decimal) and not isinstance(amount, int | float):
            try:
                amount = float(amount)
            except Exception:  # a Fraction too large for a float, a Real of the app's that fails
                _logger.debug("otel-llm: could not read the cost", exc_info=True)
                return
        if attribute_value("the cost", amount) is None:
            return
        self.set_attribute(sc.GEN_AI_USAGE_COST_AMOUNT, amount)
        self.set_attribute(sc.GEN_AI_USAGE_COST_SOURCE, sc.COST_SOURCE_PROVIDER)


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
        self._operation = text_value("operation", operation) or "chat"
        self._model = text_value("model", model)
        self._attributes = start_attributes(
            operation=self._operation,
            provider=text_value("provider", provider),
            model=self._model,
            stream=_flag("stream", stream),
            server_address=text_value("server_address", server_address),
            server_port=_port(server_port),
        )
        self._attributes.update(_extra_attributes(attributes))
        self._tracer_provider = _provider(tracer_provider)

    def _start(self) -> LLMCallHandle:
        """The call's span, started; ``PolicyBlocked`` (its span ended) when enforcement
        refuses the call."""
        try:
            tracer = trace.get_tracer(
                "otel_llm", __version__, tracer_provider=self._tracer_provider
            )
            call = LLMCallHandle.start(tracer, self._operation, self._model, self._attributes)
        except Exception:
            # A provider of the application's that fails: the call goes on, untraced.
            _logger.debug("otel-llm: could not start the span", exc_info=True)
            call = LLMCallHandle(trace.INVALID_SPAN, 0)
        enforcer = enforcement.active
        if enforcer is not None:
            attributes = self._attributes
            block = enforcer.check(
                attributes.get(sc.GEN_AI_PROVIDER_NAME),
                self._model,
                attributes.get(sc.GEN_AI_REQUEST_MAX_TOKENS),
            )
            if block is not None:
                enforcement.refuse(call, block)
        return call

    def __enter__(self) -> LLMCallHandle:
        call = self._start()
        context_token = context_api.attach(trace.set_span_in_context(call.span))
        _open_calls.set((*_open_calls.get(), (self, call, context_token, _current_call.set(call))))
        return call

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        open_calls = _open_calls.get()
        for place in range(len(open_calls) - 1, -1, -1):
            if open_calls[place][0] is self:
                break
        else:
            _logger.debug("otel-llm: an llm_call left in a context it was not entered in")
            return
        _, call, context_token, call_token = open_calls[place]
        _open_calls.set(open_calls[:place] + open_calls[place + 1 :])
        try:
            if exc is not None:
                call.fail(exc)
            call.end()
        finally:
            try:
                _current_call.reset(call_token)
            except ValueError:  # left in a task made inside the block (it copied the context)
                _logger.debug("otel-llm: llm_call left in another context", exc_info=True)
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
        # A generator's body runs as it is iterated: its span is open from the first step to
        # the last (found in review: it ended as the generator was made, before the body ran).
        if inspect.isgeneratorfunction(function):
            return cast(F, _stepped(self, function))
        if inspect.isasyncgenfunction(function):
            return cast(F, _stepped_async(self, function))
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await function(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return function(*args, **kwargs)

        return cast(F, wrapper)


@contextlib.contextmanager
def _inside(call: LLMCallHandle) -> Iterator[None]:
    """The call's span current, and its handle ``current_llm_call()``, for one step of a
    generator: between steps the consumer's own context is current, as without the span."""
    context_token = context_api.attach(trace.set_span_in_context(call.span))
    call_token = _current_call.set(call)
    try:
        yield
    finally:
        _current_call.reset(call_token)
        context_api.detach(context_token)


@contextlib.contextmanager
def _ending(call: LLMCallHandle) -> Iterator[None]:
    """A generator's whole life: an exception from it marks the call failed, closing it early
    does not (as a stream closed early), and the span ends either way."""
    try:
        yield
    except GeneratorExit:
        raise
    except BaseException as exc:
        call.fail(exc)
        raise
    finally:
        call.end()


def _stepped(
    opened: llm_call, function: Callable[..., Generator[Any, Any, Any]]
) -> Callable[..., Generator[Any, Any, Any]]:
    """``function`` (a generator function) with each step of its generators inside a span of
    its own; values sent and exceptions thrown reach it, and closing it early ends the span as
    a stream closed early does."""

    @functools.wraps(function)
    def stepped(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        call = opened._start()
        with _ending(call):
            with _inside(call):
                inner = function(*args, **kwargs)
            step: Callable[[Any], Any] = inner.send
            given: Any = None
            while True:
                with _inside(call):
                    try:
                        item = step(given)
                    except StopIteration as stop:
                        return stop.value
                try:
                    given = yield item
                    step = inner.send
                except GeneratorExit:
                    with _inside(call):
                        inner.close()
                    raise
                except BaseException as thrown:  # noqa: BLE001 - thrown in by the consumer
                    step, given = inner.throw, thrown

    return stepped


def _stepped_async(
    opened: llm_call, function: Callable[..., AsyncGenerator[Any, Any]]
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """``_stepped`` for an async generator function."""

    @functools.wraps(function)
    async def stepped(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        call = opened._start()
        with _ending(call):
            with _inside(call):
                inner = function(*args, **kwargs)
            step: Callable[[Any], Awaitable[Any]] = inner.asend
            given: Any = None
            while True:
                with _inside(call):
                    try:
                        item = await step(given)
                    except StopAsyncIteration:
                        return
                try:
                    given = yield item
                    step = inner.asend
                except GeneratorExit:
                    with _inside(call):
                        await inner.aclose()
                    raise
                except BaseException as thrown:  # noqa: BLE001 - thrown in by the consumer
                    step, given = inner.athrow, thrown

    return stepped


# --- the constructor's arguments, checked: each bad one is ignored with a debug log ------------


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        ignored(name, value)
        return False
    return value


def _port(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        port = int.__int__(value)  # a plain int: a subclass's comparisons are the app's code
        if 0 <= port <= 65535:
            return port
    ignored("server_port", value)
    return None


def _extra_attributes(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        ignored("attributes", value)
        return {}
    try:
        items = list(value.items())
    except Exception:
        _logger.debug("otel-llm: could not read the attributes", exc_info=True)
        return {}
    cleaned: dict[str, Any] = {}
    for name, item in items:
        key = text_value("an attribute name", name)
        if key:
            attribute = attribute_value(key, item)
            if attribute is not None:
                cleaned[key] = attribute
    return cleaned


def _provider(value: object) -> trace.TracerProvider | None:
    if value is None or isinstance(value, trace.TracerProvider):
        return value
    ignored("tracer_provider", value)  # the global provider is used
    return None
