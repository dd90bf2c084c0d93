"""Queries as parameterised SQL, one text for SQLite and PostgreSQL.

Every value a caller gives is a bound parameter; only names from the fixed tables below (columns,
sort keys) are ever written into SQL text, so no input can change a statement. The placeholder
is the only difference between the two databases (``?`` for sqlite3, ``%s`` for psycopg).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from otel_llm.calllog.query import CallFilter, CallQuery
from otel_llm.calllog.record import NANO, CallRecord, from_nanos, micros_of, to_nanos
from otel_llm.calllog.record import utc_from_micros as _utc
from otel_llm.calllog.schema import CALLS, CONTENT
from otel_llm.calllog.sketch import Sketch

Decoder = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _time(value: Any) -> Any:
    return None if value is None else _utc(int(value))


def _money(value: Any) -> Any:
    return None if value is None else from_nanos(int(value))


def _bool(value: Any) -> Any:
    return None if value is None else bool(value)


def _json(value: Any) -> Any:
    return {} if value is None else json.loads(value)


HAS_CONTENT = (
    f"EXISTS (SELECT 1 FROM {CONTENT} c "  # noqa: S608 - fixed names
    f"WHERE c.created_us = {CALLS}.created_us AND c.id = {CALLS}.id)"
)

COLUMNS: dict[str, tuple[str, Decoder]] = {
    "id": ("id", _same),
    "trace_id": ("trace_id", _same),
    "span_id": ("span_id", _same),
    "created_at": ("created_us", _time),
    "started_at": ("created_us", _time),
    "completed_at": ("completed_us", _time),
    "latency_ms": ("latency_ms", _same),
    "time_to_first_chunk_ms": ("ttfc_ms", _same),
    "service": ("service", _same),
    "provider": ("provider", _same),
    "model": ("model", _same),
    "response_model": ("response_model", _same),
    "operation": ("operation", _same),
    "streaming": ("streaming", _bool),
    "status": ("status", _same),
    "status_code": ("status_code", _same),
    "error_type": ("error_type", _same),
    "error_code": ("error_code", _same),
    "error_message": ("error_message", _same),
    "input_tokens": ("input_tokens", _same),
    "output_tokens": ("output_tokens", _same),
    "total_tokens": ("total_tokens", _same),
    "cache_read_tokens": ("cache_read_tokens", _same),
    "cache_write_tokens": ("cache_write_tokens", _same),
    "reasoning_tokens": ("reasoning_tokens", _same),
    "cost": ("cost_nusd", _money),
    "cost_input": ("cost_input_nusd", _money),
    "cost_output": ("cost_output_nusd", _money),
    "cost_cache_read": ("cost_cache_read_nusd", _money),
    "cost_cache_write": ("cost_cache_write_nusd", _money),
    "cost_request": ("cost_request_nusd", _money),
    "cost_source": ("cost_source", _same),
    "price_data": ("price_data", _same),
    "unpriced_reason": ("unpriced_reason", _same),
    "feature": ("feature", _same),
    "user": ("user_id", _same),
    "project": ("project", _same),
    "api_key_id": ("api_key_id", _same),
    "pipeline_step": ("pipeline_step", _same),
    "context": ("context", _json),
    "has_content": (HAS_CONTENT, _bool),
}
"""API field -> (SQL expression over the calls table, decoder of its value)."""

SORT_COLUMNS = {
    "created_at": "created_us",
    "cost": "cost_nusd",
    "latency": "latency_ms",
    "tokens": "total_tokens",
}

_TEXT_FILTERS = (
    ("provider", "provider"),
    ("model", "model"),
    ("operation", "operation"),
    ("status", "status"),
    ("service", "service"),
    ("feature", "feature"),
    ("user", "user_id"),
    ("project", "project"),
    ("api_key_id", "api_key_id"),
)

INSERT_COLUMNS = (
    "id",
    "trace_id",
    "span_id",
    "created_us",
    "day",
    "span_key",
    "completed_us",
    "latency_ms",
    "ttfc_ms",
    "service",
    "provider",
    "model",
    "response_model",
    "operation",
    "streaming",
    "status",
    "status_code",
    "error_type",
    "error_code",
    "error_message",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nusd",
    "cost_input_nusd",
    "cost_output_nusd",
    "cost_cache_read_nusd",
    "cost_cache_write_nusd",
    "cost_request_nusd",
    "cost_source",
    "price_data",
    "unpriced_reason",
    "feature",
    "user_id",
    "project",
    "api_key_id",
    "pipeline_step",
    "context",
)
CONTENT_COLUMNS = ("id", "created_us", "request_prompt", "response_preview")


def _nanos(amount: Decimal | None) -> int | None:
    return None if amount is None else to_nanos(amount)


def merge_sketches(old: bytes | None, new: bytes | None) -> bytes | None:
    """Two serialised sketches as one (SQLite calls it inside its upsert)."""
    if not old:
        return new
    if not new:
        return old
    merged = Sketch.from_bytes(old)
    merged.merge_bytes(new)
    return merged.to_bytes()


_DAY_US = 86_400_000_000


def span_key(span_id: str) -> int:
    """The 64 bits of a span id (16 hex) as a signed integer, the look-up index's key."""
    key = int(span_id, 16)
    return key - (1 << 64) if key >= 1 << 63 else key


def parse_call_id(call_id: str) -> int | None:
    """The span key of a well-formed call id (32 hex, "-", 16 hex); None otherwise."""
    trace, dash, span = call_id.partition("-")
    if not dash or len(trace) != 32 or len(span) != 16:
        return None
    try:
        int(trace, 16)
        return span_key(span)
    except ValueError:
        return None


def row_of(record: CallRecord) -> tuple[Any, ...]:
    """The values of ``INSERT_COLUMNS`` for one record."""
    created_us = micros_of(record.created_at)
    return (
        record.id,
        record.trace_id,
        record.span_id,
        created_us,
        created_us // _DAY_US,
        span_key(record.span_id),
        micros_of(record.completed_at) if record.completed_at is not None else None,
        record.latency_ms,
        record.time_to_first_chunk_ms,
        record.service,
        record.provider,
        record.model,
        record.response_model,
        record.operation,
        1 if record.streaming else 0,
        record.status,
        record.status_code,
        record.error_type,
        record.error_code,
        record.error_message,
        record.input_tokens,
        record.output_tokens,
        record.total_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.reasoning_tokens,
        _nanos(record.cost),
        _nanos(record.cost_input),
        _nanos(record.cost_output),
        _nanos(record.cost_cache_read),
        _nanos(record.cost_cache_write),
        _nanos(record.cost_request),
        record.cost_source,
        record.price_data,
        record.unpriced_reason,
        record.feature,
        record.user,
        record.project,
        record.api_key_id,
        record.pipeline_step,
        json.dumps(dict(record.context), sort_keys=True, default=str) if record.context else None,
    )


def content_row_of(record: CallRecord) -> tuple[Any, ...]:
    return (
        record.id,
        micros_of(record.created_at),
        record.request_prompt,
        record.response_preview,
    )


@dataclass(frozen=True)
class Statement:
    """SQL text with ``?`` placeholders and its parameters."""

    text: str
    params: tuple[Any, ...]


def where(
    call_filter: CallFilter, *, table_prefix: str = "", time_column: str = "created_us"
) -> Statement:
    """The WHERE clause (``"1=1"`` when empty) of a filter on the calls table."""
    clauses: list[str] = []
    params: list[Any] = []
    for attribute, column in _TEXT_FILTERS:
        value = getattr(call_filter, attribute)
        if value is not None:
            clauses.append(f"{table_prefix}{column} = ?")
            params.append(value)
    if call_filter.projects is not None:
        if not call_filter.projects:
            clauses.append("1 = 0")  # allowed no project: sees nothing
        else:
            marks = ", ".join("?" for _ in call_filter.projects)
            clauses.append(f"{table_prefix}project IN ({marks})")
            params.extend(sorted(call_filter.projects))
    if call_filter.start is not None:
        clauses.append(f"{table_prefix}{time_column} >= ?")
        params.append(micros_of(call_filter.start))
    if call_filter.end is not None:
        clauses.append(f"{table_prefix}{time_column} < ?")
        params.append(micros_of(call_filter.end))
    for bound, column, operator in (
        (call_filter.min_latency_ms, "latency_ms", ">="),
        (call_filter.max_latency_ms, "latency_ms", "<="),
        (call_filter.min_tokens, "total_tokens", ">="),
        (call_filter.max_tokens, "total_tokens", "<="),
    ):
        if bound is not None:
            clauses.append(f"{table_prefix}{column} {operator} ?")
            params.append(bound)
    # Bounds in nano-USD, rounded inwards: a call matches exactly when its cost is within them.
    if call_filter.min_cost is not None:
        clauses.append(f"{table_prefix}cost_nusd >= ?")
        params.append(int((call_filter.min_cost / NANO).to_integral_value(ROUND_CEILING)))
    if call_filter.max_cost is not None:
        clauses.append(f"{table_prefix}cost_nusd <= ?")
        params.append(int((call_filter.max_cost / NANO).to_integral_value(ROUND_FLOOR)))
    return Statement(" AND ".join(clauses) if clauses else "1=1", tuple(params))


def select_fields(fields: Sequence[str]) -> str:
    """The select list of the given API fields (names already checked against COLUMNS)."""
    return ", ".join(COLUMNS[name][0] for name in fields)


def decode(fields: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    return {name: COLUMNS[name][1](value) for name, value in zip(fields, row, strict=True)}


def list_statement(query: CallQuery, fields: Sequence[str]) -> Statement:
    """One page of calls. Unknown values (an unpriced call's cost) sort as the smallest, as
    both databases' indexes order NULLs by default, so either direction can use one index; the
    id breaks ties so pages never overlap."""
    condition = where(query.filter)
    column = SORT_COLUMNS[query.sort]
    direction = "DESC" if query.descending else "ASC"
    if query.sort == "created_at":
        # Never NULL: the plain order, which both databases read off the primary key.
        order = f"created_us {direction}, id {direction}"
    elif query.descending:
        order = f"{column} DESC NULLS LAST, id DESC"
    else:
        order = f"{column} ASC NULLS FIRST, id ASC"
    return Statement(
        f"SELECT {select_fields(fields)} FROM {CALLS} WHERE {condition.text} "  # noqa: S608
        f"ORDER BY {order} LIMIT ? OFFSET ?",
        (*condition.params, query.limit, query.offset),
    )


def count_statement(call_filter: CallFilter) -> Statement:
    condition = where(call_filter)
    return Statement(f"SELECT COUNT(*) FROM {CALLS} WHERE {condition.text}", condition.params)  # noqa: S608


def get_statement(
    call_id: str,
    fields: Sequence[str],
    projects: frozenset[str] | None,
    days: Sequence[int],
) -> Statement | None:
    """One call by id, probing the look-up index once per day in ``days`` (the days calls are
    stored for); None when the id is malformed (it then names no call)."""
    key = parse_call_id(call_id)
    if key is None or not days:
        return None
    condition = where(CallFilter(projects=projects))
    marks = ", ".join("?" for _ in days)
    return Statement(
        f"SELECT {select_fields(fields)}, created_us FROM {CALLS} "  # noqa: S608
        f"WHERE day IN ({marks}) AND span_key = ? AND id = ? AND {condition.text}",
        (*days, key, call_id, *condition.params),
    )


def day_range_statement() -> Statement:
    return Statement(f"SELECT MIN(created_us), MAX(created_us) FROM {CALLS}", ())  # noqa: S608


def content_statement(created_us: int, call_id: str) -> Statement:
    return Statement(
        f"SELECT request_prompt, response_preview FROM {CONTENT} "  # noqa: S608
        "WHERE created_us = ? AND id = ?",
        (created_us, call_id),
    )
