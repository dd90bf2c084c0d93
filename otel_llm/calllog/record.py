"""One stored LLM call: the record, its field catalogue, and how a derived span becomes one.

A record is built from what ``otel_llm.derive.derive`` made of a span (the call and its price)
plus the span's identity, times, status and context attributes. Its ``id`` is
``<32-hex trace id>-<16-hex span id>``, so a span delivered twice is one call.

Money is a ``Decimal`` of whole nano-USD (9 decimal places): prices per million tokens can give
fractions below a nano-dollar (1 token at $0.0375/M is 37.5 nano-USD); those are rounded half to
even, once, here -- so the stores' integer nano-USD sums are exact sums of the values shown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal, NamedTuple

from otel_llm import _semconv as sc
from otel_llm import settings
from otel_llm.derive import Derived
from otel_llm.pricing import Unpriced

NANO = Decimal("0.000000001")
"""The unit money is stored in: one nano-USD."""

ERROR_CODE_ATTRIBUTE = "error.code"
"""Not a GenAI convention; read when an instrumentation sets it (e.g. a provider error code)."""


class FieldInfo(NamedTuple):
    """One API field of a call: its JSON-ish type and what it means."""

    type: str
    description: str


FIELDS: dict[str, FieldInfo] = {
    "id": FieldInfo("string", "Call id: <32-hex trace id>-<16-hex span id>."),
    "trace_id": FieldInfo("string", "Trace id (32 hex): the link to the trace in Jaeger."),
    "span_id": FieldInfo("string", "Span id (16 hex) of the call's span."),
    "created_at": FieldInfo("datetime", "When the call was made (its span's start), UTC."),
    "started_at": FieldInfo("datetime", "The span's start, UTC (same as created_at)."),
    "completed_at": FieldInfo("datetime", "The span's end, UTC (null if unknown)."),
    "latency_ms": FieldInfo("number", "Duration of the call in milliseconds."),
    "time_to_first_chunk_ms": FieldInfo("number", "Streamed calls: ms to the first chunk."),
    "service": FieldInfo("string", "service.name of the application that made the call."),
    "provider": FieldInfo("string", "GenAI provider (gen_ai.provider.name), e.g. openai."),
    "model": FieldInfo("string", "Requested model (the response model if none was requested)."),
    "response_model": FieldInfo("string", "Model named by the response."),
    "operation": FieldInfo("string", "GenAI operation: chat, embeddings, ..."),
    "streaming": FieldInfo("boolean", "Whether the response was streamed."),
    "status": FieldInfo("string", "success or error."),
    "status_code": FieldInfo("integer", "HTTP status code of the provider's response, if known."),
    "error_type": FieldInfo("string", "error.type of a failed call."),
    "error_code": FieldInfo("string", "Provider error code, when the span carries error.code."),
    "error_message": FieldInfo("string", "The span's status message of a failed call."),
    "input_tokens": FieldInfo("integer", "Input tokens, cache reads and writes included."),
    "output_tokens": FieldInfo("integer", "Output tokens, reasoning included."),
    "total_tokens": FieldInfo("integer", "input_tokens + output_tokens."),
    "cache_read_tokens": FieldInfo("integer", "Input tokens read from the provider's cache."),
    "cache_write_tokens": FieldInfo("integer", "Input tokens written to the provider's cache."),
    "reasoning_tokens": FieldInfo("integer", "Output tokens spent on reasoning."),
    "cost": FieldInfo("number", "Total cost in USD; null when the call could not be priced."),
    "cost_input": FieldInfo("number", "USD for uncached input tokens."),
    "cost_output": FieldInfo("number", "USD for output tokens (reasoning included)."),
    "cost_cache_read": FieldInfo("number", "USD for cached input tokens read."),
    "cost_cache_write": FieldInfo("number", "USD for input tokens written to the cache."),
    "cost_request": FieldInfo("number", "USD charged per request."),
    "cost_source": FieldInfo("string", "local (from price data) or provider (reported by it)."),
    "price_data": FieldInfo("string", "The price data used, e.g. genai-prices 0.0.30."),
    "unpriced_reason": FieldInfo("string", "Why the call has no cost (null when priced)."),
    "feature": FieldInfo("string", "llm_context feature."),
    "user": FieldInfo("string", "llm_context user_id."),
    "project": FieldInfo("string", "llm_context project_id."),
    "api_key_id": FieldInfo("string", "llm_context api_key_id."),
    "pipeline_step": FieldInfo("string", "llm_context pipeline_step."),
    "context": FieldInfo("object", "Other otel_llm.context.* values of the call."),
    "has_content": FieldInfo("boolean", "Whether prompt/response content is stored (details)."),
}
"""Every field of a call as the API names it (``get`` returns all of them)."""

CONTENT_FIELDS: dict[str, FieldInfo] = {
    "request_prompt": FieldInfo("string", "The request's input messages (JSON), truncated."),
    "response_preview": FieldInfo("string", "The response's output messages (JSON), truncated."),
}
"""Served by ``details`` only, and only while content is retained."""

SUMMARY_FIELDS: tuple[str, ...] = (
    "id",
    "trace_id",
    "created_at",
    "service",
    "provider",
    "model",
    "operation",
    "status",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost",
    "feature",
    "project",
)
"""The default ``select`` of a list."""

_CONTEXT_FIELDS = {
    "feature": "feature",
    "user_id": "user",
    "project_id": "project",
    "api_key_id": "api_key_id",
    "pipeline_step": "pipeline_step",
}


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One LLM call as stored. Times are timezone-aware UTC; money is Decimal USD (nano-USD
    precision); None means unknown."""

    id: str
    trace_id: str
    span_id: str
    created_at: datetime
    completed_at: datetime | None
    latency_ms: float | None
    time_to_first_chunk_ms: float | None
    service: str | None
    provider: str | None
    model: str | None
    response_model: str | None
    operation: str
    streaming: bool
    status: Literal["success", "error"]
    status_code: int | None = None
    error_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost: Decimal | None = None
    cost_input: Decimal | None = None
    cost_output: Decimal | None = None
    cost_cache_read: Decimal | None = None
    cost_cache_write: Decimal | None = None
    cost_request: Decimal | None = None
    cost_source: str | None = None
    price_data: str | None = None
    unpriced_reason: str | None = None
    feature: str | None = None
    user: str | None = None
    project: str | None = None
    api_key_id: str | None = None
    pipeline_step: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    request_prompt: str | None = None
    response_preview: str | None = None

    @property
    def started_at(self) -> datetime:
        return self.created_at

    @property
    def has_content(self) -> bool:
        return self.request_prompt is not None or self.response_preview is not None


def call_id(trace_id: int, span_id: int) -> str:
    """The id of the call a span describes."""
    return f"{trace_id:032x}-{span_id:016x}"


def to_nanos(amount: Decimal) -> int:
    """USD as whole nano-USD, rounded half to even."""
    scaled = amount.scaleb(9)
    nanos = int(scaled)
    if nanos != scaled:  # a sub-nano fraction (build_record has rounded its own already)
        nanos = int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return nanos


def from_nanos(nanos: int) -> Decimal:
    """Whole nano-USD as USD (exact; 9 decimal places, or plain 0)."""
    return Decimal(nanos).scaleb(-9) if nanos else Decimal(0)


def _money(amount: Decimal | None) -> Decimal | None:
    return None if amount is None else from_nanos(to_nanos(amount))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_from_micros(micros: int) -> datetime:
    """A UTC datetime from microseconds since the epoch (exact, unlike a float timestamp)."""
    return _EPOCH + timedelta(microseconds=micros)


def micros_of(moment: datetime) -> int:
    """Microseconds since the epoch of a timezone-aware datetime (exact)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _utc(time_ns: int) -> datetime:
    # Microseconds: what both databases keep; the nanoseconds of a span are noise here.
    return utc_from_micros(time_ns // 1000)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _content(value: Any, max_length: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, list | tuple):  # a sequence attribute (older instrumentations)
        text = json.dumps(list(value), default=str)
    else:
        text = str(value)
    return text[:max_length]


def build_record(
    derived: Derived,
    attributes: Mapping[str, Any],
    *,
    trace_id: int,
    span_id: int,
    start_time_ns: int,
    end_time_ns: int | None,
    status_message: str | None,
    content_max_length: int | None = None,
) -> CallRecord:
    """The record of one derived LLM call span.

    Content comes only from the ``gen_ai.input.messages`` / ``gen_ai.output.messages``
    attributes (present only when content capture is on), truncated to ``content_max_length``
    characters (default: the ``content_max_length`` setting).
    """
    call = derived.call
    priced = derived.priced
    max_length = settings.CONTENT_MAX_LENGTH.resolve(content_max_length)
    start_ns = start_time_ns or derived.start_time_ns
    latency_ms = derived.duration * 1000 if derived.duration is not None else None
    if latency_ms is None and end_time_ns and start_ns and end_time_ns >= start_ns:
        latency_ms = (end_time_ns - start_ns) / 1e6
    ttfc = call.time_to_first_chunk
    context: dict[str, Any] = {}
    named: dict[str, str | None] = {}
    for name, value in attributes.items():
        if not name.startswith(sc.CONTEXT_PREFIX):
            continue
        key = name[len(sc.CONTEXT_PREFIX) :]
        if key in _CONTEXT_FIELDS:
            named[_CONTEXT_FIELDS[key]] = _text(value)
        else:
            context[key] = value if isinstance(value, str | bool | int | float) else str(value)
    total_tokens = None
    if call.input_tokens is not None or call.output_tokens is not None:
        total_tokens = (call.input_tokens or 0) + (call.output_tokens or 0)
    status_code = attributes.get(sc.HTTP_RESPONSE_STATUS_CODE)
    failed = bool(derived.error_type)
    money: dict[str, Any] = {}
    if isinstance(priced, Unpriced):
        money["unpriced_reason"] = priced.reason
    else:
        money = {
            "cost": _money(priced.amount),
            "cost_input": _money(priced.input),
            "cost_output": _money(priced.output),
            "cost_cache_read": _money(priced.cache_read),
            "cost_cache_write": _money(priced.cache_write),
            "cost_request": _money(priced.request),
            "cost_source": priced.source,
            "price_data": priced.price_data,
        }
    return CallRecord(
        id=call_id(trace_id, span_id),
        trace_id=f"{trace_id:032x}",
        span_id=f"{span_id:016x}",
        created_at=_utc(start_ns),
        completed_at=_utc(end_time_ns) if end_time_ns else None,
        latency_ms=latency_ms,
        time_to_first_chunk_ms=ttfc * 1000 if ttfc is not None else None,
        service=derived.service_name or None,
        provider=call.provider,
        model=call.request_model or call.response_model,
        response_model=call.response_model,
        operation=call.operation,
        streaming=call.streaming,
        status="error" if failed else "success",
        status_code=(
            status_code
            if isinstance(status_code, int) and not isinstance(status_code, bool)
            else None
        ),
        error_type=derived.error_type or None,
        error_code=_text(attributes.get(ERROR_CODE_ATTRIBUTE)) if failed else None,
        error_message=(status_message or None) if failed else None,
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        total_tokens=total_tokens,
        cache_read_tokens=call.cache_read_tokens,
        cache_write_tokens=call.cache_creation_tokens,
        reasoning_tokens=call.reasoning_tokens,
        context=context,
        request_prompt=_content(attributes.get(sc.GEN_AI_INPUT_MESSAGES), max_length),
        response_preview=_content(attributes.get(sc.GEN_AI_OUTPUT_MESSAGES), max_length),
        feature=named.get("feature"),
        user=named.get("user"),
        project=named.get("project"),
        api_key_id=named.get("api_key_id"),
        pipeline_step=named.get("pipeline_step"),
        **money,
    )
