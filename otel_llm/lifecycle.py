"""One GenAI client span's life, shared by ``llm_call``, the SDK instrumentors and their streams.

start -> attributes set safely -> time to first chunk -> usage and response -> failed (an
exception, or an error the response reported as data) -> ended exactly once.

``CallSpan`` is what every caller drives, so a span says the same things the same way whether
``llm_call`` or an instrumentor made it (as opentelemetry-util-genai's ``TelemetryHandler``
serves every instrumentation). Nothing in here raises into the application: a value of a type
an attribute cannot hold is skipped and logged at debug level (``attribute_value``), and a bad
value of a good type (a negative token count, a NaN cost) is left for the processor to reject and
count. ``llm_call`` hands the application's arguments straight to these methods, so they take
anything, including values whose own methods raise and iterables that never end.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from otel_llm import _semconv as sc
from otel_llm.redaction import REDACTED, redact_secrets

__all__ = [
    "CallSpan",
    "attribute_value",
    "error_code",
    "error_type",
    "ignored",
    "start_attributes",
    "text_value",
]

_logger = logging.getLogger(__name__)

Scalar = bool | str | int | float
AttributeValue = Scalar | list[bool] | list[str] | list[int] | list[float]

_INT64 = range(-(1 << 63), 1 << 63)
"""What OTLP can carry in an int attribute: a larger one fails the whole batch's encoding."""
_MAX_FINISH_REASONS = 64
"""Finish reasons kept from one response (one per choice): an endless iterable must not hang."""


_EXCEPTION_MESSAGE = "exception.message"
_EXCEPTION_STACKTRACE = "exception.stacktrace"
_SHORTEST_SECRET = 8
"""A key shorter than this is not looked for in text (it would take ordinary words with it)."""


def _scrubbed(text: str, secret: str | None) -> str:
    """``text`` without ``secret`` (as given and stripped) and with ``redact_secrets`` applied:
    what an exception recorded on a span may say."""
    if secret:
        for form in {secret, secret.strip()}:
            if len(form) >= _SHORTEST_SECRET:
                text = text.replace(form, REDACTED)
    return redact_secrets(text)


def ignored(name: str, value: object) -> None:
    """Log at debug level that the argument ``name`` was ignored for its type."""
    # The type's name only: the value's own methods (repr, str) are the application's code.
    _logger.debug("otel-llm: ignored %s: a %s is not a valid value", name, type(value).__name__)


def _scalar(value: object) -> Scalar | None:
    # Subclasses are copied to their base type: their own methods, which the processor or an
    # exporter would run later, could raise there (the base type's never do).
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        number = int.__int__(value)
        return number if number in _INT64 else None
    if isinstance(value, float):
        return float.__float__(value)
    return None


def attribute_value(name: str, value: object) -> AttributeValue | None:
    """``value`` as a span attribute value -- a bool, str, int (64-bit), float, or a list of one
    of them -- or None (logged at debug level) for anything else: a mapping, a mixed list, an
    iterator, an object. The processor judges the values of these types (a negative count)."""
    if value is None:
        return None
    try:
        scalar = _scalar(value)
        if scalar is not None:
            return scalar
        if isinstance(value, list | tuple):
            items = [_scalar(item) for item in value]
            kinds = {type(item) for item in items}
            if len(kinds) <= 1 and type(None) not in kinds:
                return items  # type: ignore[return-value]  # one kind: a list[that kind]
    except Exception:
        _logger.debug("otel-llm: could not read %s", name, exc_info=True)
        return None
    ignored(name, value)
    return None


def text_value(name: str, value: object) -> str | None:
    """``value`` as a plain str, or None (logged at debug level unless it was None)."""
    if isinstance(value, str):
        return str.__str__(value)
    if value is not None:
        ignored(name, value)
    return None


def _all_str(items: list[Any]) -> bool:
    for item in items:  # noqa: SIM110 - all() of a generator is ~3x slower on a short list
        if type(item) is not str:
            return False
    return True


def _finish_reasons(value: object) -> list[str] | None:
    if isinstance(value, str):
        return [str.__str__(value)]  # one reason, not its characters
    if type(value) is list and value and len(value) <= _MAX_FINISH_REASONS and _all_str(value):
        # What the instrumentors give, every call (a list of plain strs): ~1.2 µs less.
        return value[:]
    if type(value) is list or type(value) is tuple:
        # What the instrumentors give, every call: sliced, sparing the ABC check (~0.3 µs).
        items = list(value[: _MAX_FINISH_REASONS + 1])
    elif not isinstance(value, Iterable):
        ignored("finish_reasons", value)
        return None
    else:
        try:
            items = list(itertools.islice(value, _MAX_FINISH_REASONS + 1))
        except Exception:
            _logger.debug("otel-llm: could not read finish_reasons", exc_info=True)
            return None
    reasons = [str.__str__(item) for item in items[:_MAX_FINISH_REASONS] if isinstance(item, str)]
    if len(reasons) < len(items):
        _logger.debug("otel-llm: ignored %d finish reasons", len(items) - len(reasons))
        if not reasons:
            return None  # none was a reason: the response said nothing usable
    return reasons


def _usage_values(
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_tokens: int | None,
    cache_creation_tokens: int | None,
    reasoning_tokens: int | None,
) -> tuple[tuple[str, Any], ...]:
    return (
        (sc.GEN_AI_USAGE_INPUT_TOKENS, input_tokens),
        (sc.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens),
        (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, cache_read_tokens),
        (sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, cache_creation_tokens),
        (sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, reasoning_tokens),
    )


def error_type(exc: BaseException) -> str:
    """A failed call's ``error.type``: the exception's class qualified by its module (builtins
    unqualified). The provider SDKs define their errors at the package's top level, so an
    OpenAI 429 is ``openai.RateLimitError``."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


_MAX_ERROR_CODE = 128
"""Characters of a provider's error code kept: a code is a short identifier; a server that
sends a long one does not get it onto every span."""


def error_code(exc: BaseException) -> str | None:
    """The provider's code of a failed call, from the SDK's error: OpenAI's ``code``
    (``rate_limit_exceeded``), Anthropic's ``error.type`` (its error body ``{"type": "error",
    "error": {"type": "rate_limit_error"}}``), else OpenAI's ``type`` (``server_error``: the
    code of a 500 is null). None when the error says none (a connection error)."""
    code = getattr(exc, "code", None)
    if not isinstance(code, str) or not code:
        body = getattr(exc, "body", None)
        inner = body.get("error") if isinstance(body, Mapping) else None
        code = inner.get("type") if isinstance(inner, Mapping) else None
        if not isinstance(code, str) and isinstance(body, Mapping):
            code = body.get("type")
    if not isinstance(code, str) or not code:
        return None
    return str.__str__(code)[:_MAX_ERROR_CODE]


def start_attributes(
    *,
    operation: str,
    provider: str | None,
    model: str | None,
    stream: bool = False,
    server_address: str | None = None,
    server_port: int | None = None,
) -> dict[str, Any]:
    """What every GenAI client span says from its start (samplers see only these): the values
    given, without the Nones; ``server.port`` only with ``server.address``."""
    # Built in place, not filtered out of a dict of six: every instrumented call runs this.
    attributes: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: operation}
    if provider is not None:
        attributes[sc.GEN_AI_PROVIDER_NAME] = provider
    if model is not None:
        attributes[sc.GEN_AI_REQUEST_MODEL] = model
    if stream:
        attributes[sc.GEN_AI_REQUEST_STREAM] = True
    if server_address is not None:
        attributes[sc.SERVER_ADDRESS] = server_address
        if server_port is not None:
            attributes[sc.SERVER_PORT] = server_port
    return attributes


class CallSpan:
    """One LLM call's span; ends exactly once, whichever thread or finalizer gets there first."""

    def __init__(self, span: Span, start_ns: int, *, streaming: bool = False):
        self.span = span
        self.start_ns = start_ns
        self.streaming = streaming
        """The request asked for a stream (``gen_ai.request.stream`` was set at the start)."""
        self._lock = threading.Lock()
        self.ended = False
        """The span has ended (or is ending); read only. A plain attribute, not a property: a
        stream checks it for every chunk."""
        self._first_chunk_seen = False
        self.http_status: int | None = None
        """The HTTP status of the answer the SDK returned (instrumentors set it): written with
        the response (``set_response``, in the same call into the SDK) or at the end; an error's
        own status (``fail``) replaces it."""
        self._first_chunk: tuple[tuple[str, Any], ...] = ()
        """What ``first_chunk`` found, set with the next batch of attributes (or at the end)."""
        self.secret: str | None = None
        """The provider key of the call's client (instrumentors set it): never written; an
        exception recorded by ``fail`` has it taken out of its text."""

    @classmethod
    def start(
        cls, tracer: Tracer, operation: str, model: str | None, attributes: Mapping[str, Any]
    ) -> Self:
        """Start the span ``{operation} {model}`` (``{operation}`` without a model), kind CLIENT,
        with ``attributes``."""
        start_ns = time.time_ns()
        span = tracer.start_span(
            f"{operation} {model}" if model else operation,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=start_ns,
        )
        return cls(span, start_ns, streaming=attributes.get(sc.GEN_AI_REQUEST_STREAM) is True)

    def set_attribute(self, name: str, value: Any) -> None:
        """Set an attribute; a name that is not a str or a value an attribute cannot hold
        (``attribute_value``) is logged at debug level and ignored, never raised."""
        key = text_value("an attribute name", name)
        if not key:
            return
        cleaned = attribute_value(key, value)
        if cleaned is None:
            return
        try:
            self.span.set_attribute(key, cleaned)
        except Exception:
            _logger.debug("otel-llm: could not set %s", key, exc_info=True)

    def _set_values(self, values: Iterable[tuple[str, Any]]) -> None:
        """``set`` for several attributes of ours (valid names), in one ``set_attributes``: one
        lock and one call into the SDK instead of one per attribute."""
        cleaned: dict[str, AttributeValue] = {}
        if self._first_chunk:
            values = itertools.chain(self._first_chunk, values)
            self._first_chunk = ()
        for name, value in values:
            if value is None:
                continue
            kind = type(value)
            if kind is str or kind is float or kind is bool or (kind is int and value in _INT64):
                # What attribute_value would return for a value of exactly these types, without
                # its calls (~0.25 µs a value, 8 values a call).
                cleaned[name] = value
                continue
            if kind is list and value and _all_str(value):
                # Finish reasons, every call: attribute_value's answer, without its ~1.5 µs.
                cleaned[name] = value
                continue
            attribute = attribute_value(name, value)
            if attribute is not None:
                cleaned[name] = attribute
        if not cleaned:
            return
        try:
            if not _store(self.span, cleaned):
                self.span.set_attributes(cleaned)
        except Exception:
            _logger.debug("otel-llm: could not set %s", ", ".join(cleaned), exc_info=True)

    def set(self, name: str, value: Any) -> None:
        """``set_attribute`` unless the value is None (what a response did not say)."""
        if value is not None:
            self.set_attribute(name, value)

    def set_all(self, attributes: Mapping[str, Any]) -> None:
        try:
            items = list(attributes.items())
        except Exception:
            _logger.debug("otel-llm: could not read the attributes", exc_info=True)
            return
        for name, value in items:
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
        self._set_values(
            _usage_values(
                input_tokens,
                output_tokens,
                cache_read_tokens,
                cache_creation_tokens,
                reasoning_tokens,
            )
        )

    def usage_missing(self) -> None:
        """Say the token counts are unknown (e.g. a stream that reported none)."""
        self.set(sc.OTEL_LLM_USAGE_MISSING, True)

    def set_response(
        self,
        *,
        model: str | None = None,
        id: str | None = None,
        finish_reasons: Iterable[str] | str | None = None,
    ) -> None:
        """What the response said about itself; None leaves a value unset. ``finish_reasons``:
        a str is one reason; of any other iterable the strs are kept (at most 64)."""
        self._set_values(self._response_values(model, id, finish_reasons))

    def set_response_and_usage(
        self,
        *,
        model: str | None = None,
        id: str | None = None,
        finish_reasons: Iterable[str] | str | None = None,
        usage: Mapping[str, int | None] | None,
    ) -> None:
        """``set_response`` and ``set_usage(**usage)`` in one call into the SDK (its lock and
        checks once, ~1.5 µs less than two); ``usage`` None: ``usage_missing``."""
        counts = (
            ((sc.OTEL_LLM_USAGE_MISSING, True),)
            if usage is None
            else _usage_values(
                usage.get("input_tokens"),
                usage.get("output_tokens"),
                usage.get("cache_read_tokens"),
                usage.get("cache_creation_tokens"),
                usage.get("reasoning_tokens"),
            )
        )
        self._set_values(self._response_values(model, id, finish_reasons) + counts)

    def _response_values(
        self, model: Any, id: Any, finish_reasons: Any
    ) -> tuple[tuple[str, Any], ...]:
        return (
            (sc.GEN_AI_RESPONSE_MODEL, text_value("the response model", model)),
            (sc.GEN_AI_RESPONSE_ID, text_value("the response id", id)),
            (
                sc.GEN_AI_RESPONSE_FINISH_REASONS,
                _finish_reasons(finish_reasons) if finish_reasons is not None else None,
            ),
            (sc.HTTP_RESPONSE_STATUS_CODE, self._take_http_status()),
        )

    def _take_http_status(self) -> int | None:
        status, self.http_status = self.http_status, None
        return status

    def first_chunk(self) -> None:
        """The first chunk with content arrived: time it (later calls are ignored) and say the
        call streamed, had the request not said so (set on the span with the next attributes,
        at the latest when it ends)."""
        if self._first_chunk_seen:
            return
        self._first_chunk_seen = True
        elapsed = (time.time_ns() - self.start_ns) / 1e9
        # Set with the response's attributes rather than on its own: a stream's span then costs
        # one call into the SDK (its lock, its checks) fewer, ~1.5 µs.
        self._first_chunk = (
            (sc.GEN_AI_REQUEST_STREAM, None if self.streaming else True),
            (sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, elapsed),
        )

    def fail(self, exc: BaseException) -> None:
        """Mark the call failed by ``exc``: ``error.type``, the HTTP status when the error carries
        one, the exception recorded, status ERROR. The caller still ends the span."""
        try:
            self.span.set_attribute(sc.ERROR_TYPE, error_type(exc))
            status = getattr(exc, "status_code", None)
            if isinstance(status, int) and not isinstance(status, bool):
                self.http_status = None
                self.span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
            code = error_code(exc)
            if code is not None:
                self.span.set_attribute(sc.OTEL_LLM_ERROR_CODE, code)
            # An exception's text can hold the key: httpx refuses a key read from a file with
            # its newline, quoting the whole header in the error the SDK chains to its own
            # (found in review). The SDK's own record would write that text as it is.
            message = _scrubbed(str(exc), self.secret)
            stacktrace = _scrubbed("".join(traceback.format_exception(exc)), self.secret)
            self.span.record_exception(
                exc, {_EXCEPTION_MESSAGE: message, _EXCEPTION_STACKTRACE: stacktrace}
            )
            self.span.set_status(Status(StatusCode.ERROR, message))
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
            if self.ended:
                return False
            self.ended = True
        try:
            if before is not None:
                before()
        except Exception:
            _logger.debug("otel-llm: could not complete the span", exc_info=True)
        if self.http_status is not None or self._first_chunk:
            # No response was read (it could not be), or nothing was set after the first chunk.
            self._set_values(((sc.HTTP_RESPONSE_STATUS_CODE, self._take_http_status()),))
        try:
            price = _price_ending(self.span)
            if price is None:
                self.span.end()
            else:
                end_ns = time.time_ns()
                try:
                    price(self.span, end_ns)
                finally:  # ended whatever pricing did: an unended span is never exported
                    self.span.end(end_ns)
        except Exception:
            _logger.debug("otel-llm: could not end the span", exc_info=True)
        return True


def _store(span: Span, values: dict[str, AttributeValue]) -> bool:
    """``span.set_attributes(values)`` for ``_set_values``' values (str, bool, int in 64 bits,
    float, non-empty lists of str), written into the SDK span's own attribute dict as its
    ``BoundedAttributes`` stores them -- a list as a tuple, a value set again moved to the end
    -- without its check and copy of each value (~0.3 µs a value, 8-10 values a call). True
    when done; False (nothing written) when the span's ``set_attributes`` is not the SDK's own
    (another span class, or one wrapped by someone: theirs must run), for an ended span, or
    with limits that could cut a value or drop one: then ``set_attributes`` sets them."""
    method = type(span).set_attributes
    if method is not _SDK_SET_ATTRIBUTES[0]:
        # Told by name: this module imports no SDK.
        if (
            getattr(method, "__module__", None) != "opentelemetry.sdk.trace"
            or getattr(method, "__qualname__", None) != "Span.set_attributes"
        ):
            return False
        _SDK_SET_ATTRIBUTES[0] = method
    try:
        attributes = span._attributes  # type: ignore[attr-defined]
        if type(attributes) is not BoundedAttributes or attributes.max_value_len is not None:
            return False
        with span._lock:  # type: ignore[attr-defined]  # as Span.set_attributes
            stored = attributes._dict
            if (
                span._end_time is not None  # type: ignore[attr-defined]  # the SDK warns
                or attributes._immutable
                or (attributes.maxlen is not None and len(stored) + len(values) > attributes.maxlen)
            ):
                return False
            with attributes._lock:
                for name, value in values.items():
                    if name in stored:
                        del stored[name]
                    stored[name] = tuple(value) if type(value) is list else value
    except AttributeError:  # another release of the SDK, laid out otherwise
        return False
    return True


_SDK_SET_ATTRIBUTES: list[Any] = [None]
"""The SDK's ``Span.set_attributes`` once seen (a list: set from inside ``_store``)."""


def _price_ending(span: Span) -> Callable[[Any, int], bool] | None:
    """``LLMSpanProcessor.price_ending`` when that processor is the only one of the SDK provider
    that made ``span``: the call is then priced on its live span and handed on with no copy.
    With other processors beside it, none is used: they would see a cost on the span they never
    saw before. Found by name, so that this module imports no processor."""
    # The SDK span's processor: the provider's SynchronousMultiSpanProcessor (or Concurrent).
    processors = getattr(getattr(span, "_span_processor", None), "_span_processors", None)
    if type(processors) is not tuple or len(processors) != 1:
        return None
    return getattr(processors[0], "price_ending", None)
