"""One stored LLM call: the record, and how a derived span becomes one.

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
from decimal import Decimal
from typing import Any, Literal

from otel_llm import _semconv as sc
from otel_llm import settings
from otel_llm.calllog.catalogue import CONTENT_FIELDS, FIELDS, SUMMARY_FIELDS
from otel_llm.calllog.limits import checked
from otel_llm.derive import Derived
from otel_llm.pricing import Unpriced
from otel_llm.pricing.cost import from_nanos, to_nanos
from otel_llm.redaction import as_key_hint

__all__ = [
    "CONTENT_FIELDS",
    "ERROR_CODE_ATTRIBUTE",
    "FIELDS",
    "NANO",
    "SUMMARY_FIELDS",
    "CallRecord",
    "build_record",
    "call_id",
    "from_nanos",
    "micros_of",
    "to_nanos",
    "utc_from_micros",
]
# The record's fields are described by the catalogue (``catalogue.py``); FIELDS and its kin are
# named here too because the record's readers (the query API) have always found them here.

NANO = Decimal("0.000000001")
"""The unit money is stored in: one nano-USD."""

_BILLING_KEY = sc.OTEL_LLM_CONTEXT_BILLING[len(sc.CONTEXT_PREFIX) :]

ERROR_CODE_ATTRIBUTE = sc.ERROR_CODE
"""Not a GenAI convention; read when the span has no ``otel_llm.error.code`` (ours)."""


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
    precision); None means unknown. An attribute per field of the catalogue (``FIELDS``,
    ``CONTENT_FIELDS``; a test checks)."""

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
    billing: Literal["credits", "own_key"] | None = None
    list_cost: Decimal | None = None
    discount: Decimal | None = None
    request_id: str | None = None
    endpoint: str | None = None
    method: str | None = None
    api_key_hint: str | None = None
    agent_name: str | None = None
    agent_id: str | None = None
    conversation_id: str | None = None
    parent_span_id: str | None = None
    root_span_name: str | None = None
    policy: str | None = None
    policy_rule: str | None = None
    policy_action: str | None = None
    request_prompt: str | None = None
    response_preview: str | None = None

    @property
    def started_at(self) -> datetime:
        return self.created_at

    @property
    def time_to_first_token_ms(self) -> float | None:
        return self.time_to_first_chunk_ms

    @property
    def has_content(self) -> bool:
        return self.request_prompt is not None or self.response_preview is not None


def call_id(trace_id: int, span_id: int) -> str:
    """The id of the call a span describes."""
    return f"{trace_id:032x}-{span_id:016x}"


def is_call_id(text: str) -> bool:
    """Whether ``text`` has the form of a call id (32 hex, "-", 16 hex): the API tells an
    unknown path from an unknown call by it."""
    trace, dash, span = text.partition("-")
    return (
        bool(dash)
        and len(trace) == 32
        and len(span) == 16
        and all(c in "0123456789abcdefABCDEF" for c in trace + span)
    )


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
    now: datetime | None = None,
    parent_span_id: int | None = None,
    root_span_name: str | None = None,
    policy: tuple[str, str, str] | None = None,
) -> CallRecord:
    """The record of one derived LLM call span.

    Content comes only from the ``gen_ai.input.messages`` / ``gen_ai.output.messages``
    attributes (present only when content capture is on), truncated to ``content_max_length``
    characters (default: the ``content_max_length`` setting). ``parent_span_id``: the
    span's parent (None or 0: a root); ``root_span_name``: its trace's root span's name, when
    known as the record is made; ``policy``: its violation (policy, rule, action), if any.

    Every value is held to the catalogue's limits (``limits.checked``, ``now`` the time an end
    time is judged against): a value no store could take is corrected and counted here, so it
    cannot fail the write of the calls batched with it.
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
        elif key == _BILLING_KEY:
            continue  # the billing field says what it decided
        else:
            context[key] = value if isinstance(value, str | bool | int | float) else str(value)
    total_tokens = None
    if call.input_tokens is not None or call.output_tokens is not None:
        total_tokens = (call.input_tokens or 0) + (call.output_tokens or 0)
    status_code = attributes.get(sc.HTTP_RESPONSE_STATUS_CODE)
    failed = bool(derived.error_type)
    money: dict[str, Any] = {}
    billing = derived.billing
    if isinstance(priced, Unpriced):
        money["unpriced_reason"] = priced.reason
        if billing is not None and billing.list_cost is not None:
            money["list_cost"] = _money(billing.list_cost.amount)
    else:
        cost = from_nanos(to_nanos(priced.amount))
        listed: Decimal | None = cost
        if billing is not None:
            listed = _money(billing.list_cost.amount) if billing.list_cost is not None else None
        money = {
            "cost": cost,
            "list_cost": listed,
            # The two stored values' difference, so list_cost = cost + discount exactly.
            "discount": (
                listed - cost
                if billing is not None and billing.discounted and listed is not None
                else Decimal(0)
            ),
            "cost_input": _money(priced.input),
            "cost_output": _money(priced.output),
            "cost_cache_read": _money(priced.cache_read),
            "cost_cache_write": _money(priced.cache_write),
            "cost_request": _money(priced.request),
            "cost_source": priced.source,
            "price_data": priced.price_data,
        }
    record = CallRecord(
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
        error_code=(
            _text(attributes.get(sc.OTEL_LLM_ERROR_CODE) or attributes.get(ERROR_CODE_ATTRIBUTE))
            if failed
            else None
        ),
        error_message=(status_message or None) if failed else None,
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        total_tokens=total_tokens,
        cache_read_tokens=call.cache_read_tokens,
        cache_write_tokens=call.cache_creation_tokens,
        reasoning_tokens=call.reasoning_tokens,
        context=context,
        request_id=_text(attributes.get(sc.GEN_AI_RESPONSE_ID)),
        endpoint=_text(attributes.get(sc.URL_PATH)),
        method=_text(attributes.get(sc.HTTP_REQUEST_METHOD)),
        # Held to a hint's shape: a span with a whole key there (or a collector's sender that
        # put one) has it cut to a hint before it is stored.
        api_key_hint=as_key_hint(attributes.get(sc.OTEL_LLM_API_KEY_HINT)),
        request_prompt=_content(attributes.get(sc.GEN_AI_INPUT_MESSAGES), max_length),
        response_preview=_content(attributes.get(sc.GEN_AI_OUTPUT_MESSAGES), max_length),
        feature=named.get("feature"),
        user=named.get("user"),
        project=named.get("project"),
        api_key_id=named.get("api_key_id"),
        pipeline_step=named.get("pipeline_step"),
        billing="credits" if billing is not None and billing.mode == "credits" else "own_key",
        agent_name=_text(attributes.get(sc.GEN_AI_AGENT_NAME)),
        agent_id=_text(attributes.get(sc.GEN_AI_AGENT_ID)),
        conversation_id=_text(attributes.get(sc.GEN_AI_CONVERSATION_ID)),
        parent_span_id=f"{parent_span_id:016x}" if parent_span_id else None,
        root_span_name=root_span_name or None,
        policy=policy[0] if policy else None,
        policy_rule=policy[1] if policy else None,
        policy_action=policy[2] if policy else None,
        **money,
    )
    return checked(record, now=now)
