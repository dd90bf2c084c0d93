"""Queries as parameterised SQL, one text for SQLite and PostgreSQL.

Every value a caller gives is a bound parameter; only names from the catalogue
(``catalogue.py``: columns, sort keys) are ever written into SQL text, so no input can change a
statement. The placeholder is the only difference between the two databases (``?`` for sqlite3,
``%s`` for psycopg).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, cast

from otel_llm.calllog.catalogue import (
    CHOICE_MATCHES,
    CONTENT_FIELDS,
    CONTENT_KEY,
    FIELDS,
    FLAG_MATCHES,
    RANGES,
    SORTS,
    STORED,
    TEXT_MATCHES,
    TIME_FIELD,
    Codec,
    Field,
    column_of,
)
from otel_llm.calllog.query import CallFilter, CallQuery, Comparison
from otel_llm.calllog.record import (
    CallRecord,
    from_nanos,
    is_call_id,
    micros_of,
    to_nanos,
)
from otel_llm.calllog.record import utc_from_micros as _utc
from otel_llm.calllog.schema import CALLS, CONTENT, DAY_INDEXED
from otel_llm.calllog.sketch import EMPTY_BYTES, merged_bytes
from otel_llm.pricing.cost import nanos_bound

Decoder = Callable[[Any], Any]
Encoder = Callable[[Any], Any]

_DAY_US = 86_400_000_000


def span_key(span_id: str) -> int:
    """The 64 bits of a span id (16 hex) as a signed integer, the look-up index's key."""
    key = int(span_id, 16)
    return key - (1 << 64) if key >= 1 << 63 else key


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


def _micros(moment: datetime | None) -> int | None:
    return None if moment is None else micros_of(moment)


def _nanos(amount: Decimal | None) -> int | None:
    return None if amount is None else to_nanos(amount)


def _flag(value: bool) -> int:
    return 1 if value else 0


def _json_text(mapping: Mapping[str, Any]) -> str | None:
    return json.dumps(dict(mapping), sort_keys=True, default=str) if mapping else None


def _day(moment: datetime) -> int:
    return micros_of(moment) // _DAY_US


_DECODERS: dict[Codec, Decoder] = {
    "plain": _same,
    "time": _time,
    "money": _money,
    "flag": _bool,
    "json": _json,
}
_ENCODERS: dict[Codec, Encoder] = {
    "time": _micros,
    "money": _nanos,
    "flag": _flag,
    "json": _json_text,
    "day": _day,
    "span_key": span_key,
}

HAS_CONTENT = (
    f"EXISTS (SELECT 1 FROM {CONTENT} c "  # noqa: S608 - fixed names
    f"WHERE c.created_us = {CALLS}.created_us AND c.id = {CALLS}.id)"
)
_COMPUTED = {"has_content": HAS_CONTENT}
"""The SQL of the fields without a column."""

COLUMNS: dict[str, tuple[str, Decoder]] = {
    name: (field.column or _COMPUTED[name], _DECODERS[field.codec])
    for name, field in FIELDS.items()
}
"""API field -> (SQL expression over the calls table, decoder of its value)."""

SORT_COLUMNS = {key: column_of(name) for key, name in SORTS.items()}

_EXACT = tuple((match.name, column_of(match.name)) for match in (*TEXT_MATCHES, *CHOICE_MATCHES))
"""(CallFilter attribute, column) of each exact-match filter."""
_FLAGS = tuple((match.name, column_of(match.name)) for match in FLAG_MATCHES)

_OPERATORS = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
"""A comparison's operator as SQL: a fixed table, never text from a request."""

_TIME = column_of(TIME_FIELD)
_PROJECT = column_of("project")
"""Access control's column (``CallFilter.projects``)."""

_BOUNDS = tuple(
    (f"{bound}_{rng.attribute}", column_of(rng.field), operator, FIELDS[rng.field].codec)
    for rng in RANGES
    for bound, operator in (("min", ">="), ("max", "<="))
)
"""(CallFilter attribute, column, operator, codec) of each range bound."""

INSERT_COLUMNS: tuple[str, ...] = tuple(str(field.column) for field in STORED)
_CONTENT = (*CONTENT_KEY, *CONTENT_FIELDS.values())
CONTENT_COLUMNS: tuple[str, ...] = tuple(str(field.column) for field in _CONTENT)


def merge_sketches(old: bytes | None, new: bytes | None) -> bytes | None:
    """Two serialised sketches as one (SQLite calls it inside its upsert). A sketch of no values
    adds nothing: the other's bytes are the merge's (the writer's sketches are as ``to_bytes``
    makes them) -- 38 % of a write's merges at 100,000 users, mostly the time to first chunk of
    calls that did not stream."""
    if not old:
        return new
    if not new or new == EMPTY_BYTES:
        return old
    if old == EMPTY_BYTES:
        return new
    return merged_bytes(bytes(old), bytes(new))


def parse_call_id(call_id: str) -> int | None:
    """The span key of a well-formed call id (32 hex, "-", 16 hex); None otherwise."""
    return span_key(call_id[33:]) if is_call_id(call_id) else None


SQLITE_NULL = float("nan")
"""SQLite's writer's stand-in for an absent value (``sqlite_row_of``): SQLite stores a bound NaN
as NULL (``sqlite3_bind_double``), and Python's sqlite3 binds a float at once while a None goes
through its adapter look-up first -- 0.25 us a value, 7 of the 11 us binding a call's row cost
(about 20 of its 56 values are None for a typical call), measured. The roll-up knows it by
identity (``rollup.rollup``'s ``sqlite``): no value a call has is this object."""


def _encoder(
    name: str, fields: Sequence[Field], doc: str, *, sqlite: bool = False
) -> Callable[[CallRecord], tuple[Any, ...]]:
    """A function ``name(record)``: the stored values of ``fields`` of a record, in order;
    ``sqlite``: each None as ``SQLITE_NULL``.

    Its text is made from the catalogue once, as ``dataclasses`` makes ``__init__``, so it runs
    as fast as the hand-written tuple it replaced (3.9 against 3.6 us a call, measured); a loop
    over the columns took 5.3 us. The writer calls it for every call, and SQLite's ingest is
    just short of its 20,000 calls/s target (docs/calllog.md)."""
    namespace: dict[str, Any] = {f"_{codec}": encode for codec, encode in _ENCODERS.items()}
    namespace["_NULL"] = SQLITE_NULL
    encoded = [
        f"record.{field.source}"
        if field.codec == "plain"
        else f"_{field.codec}(record.{field.source})"
        for field in fields
    ]
    if sqlite:  # in the same pass: 0.5 us a call, a second pass over the row 0.95 (measured)
        encoded = [f"_NULL if (v := {value}) is None else v" for value in encoded]
    # Only the catalogue's own names (identifiers) are in the text; nothing from input.
    exec(f"def {name}(record):\n    return ({', '.join(encoded)},)", namespace)  # noqa: S102
    function = namespace[name]
    function.__doc__ = doc
    return cast(Callable[[CallRecord], tuple[Any, ...]], function)


row_of = _encoder("row_of", STORED, "The values of ``INSERT_COLUMNS`` for one record.")
content_row_of = _encoder(
    "content_row_of", _CONTENT, "The values of ``CONTENT_COLUMNS`` for one record."
)
sqlite_row_of = _encoder(
    "sqlite_row_of", STORED, "``row_of`` with each None as ``SQLITE_NULL``.", sqlite=True
)
sqlite_content_row_of = _encoder(
    "sqlite_content_row_of",
    _CONTENT,
    "``content_row_of`` with each None as ``SQLITE_NULL``.",
    sqlite=True,
)


@dataclass(frozen=True)
class Statement:
    """SQL text with ``?`` placeholders and its parameters."""

    text: str
    params: tuple[Any, ...]


def day_indexed(call_filter: CallFilter) -> bool:
    """Whether the filter matches a column SQLite indexes by (day, column, created_us)
    (``schema.DAY_INDEXED``): its query must name the days to use that index."""
    return any(getattr(call_filter, name) is not None for name in DAY_INDEXED)


def where(call_filter: CallFilter, days: Sequence[int] | None = None) -> Statement:
    """The WHERE clause (``"1=1"`` when empty) of a filter on the calls table. ``days``: the
    UTC days (since the epoch) the filter's range covers, given when ``day_indexed``: one seek
    per day in the (day, user_id) or (day, api_key_id) index instead of a scan."""
    clauses: list[str] = []
    params: list[Any] = []
    if days is not None:
        clauses.append(f"day IN ({', '.join('?' for _ in days)})" if days else "1 = 0")
        params.extend(days)
    for attribute, column in _EXACT:
        value = getattr(call_filter, attribute)
        if value is not None:
            text, values = match(column, value)
            clauses.append(text)
            params.extend(values)
    _other_matches(call_filter, clauses, params)
    if call_filter.projects is not None:
        if not call_filter.projects:
            clauses.append("1 = 0")  # allowed no project: sees nothing
        else:
            marks = ", ".join("?" for _ in call_filter.projects)
            clauses.append(f"{_PROJECT} IN ({marks})")
            params.extend(sorted(call_filter.projects))
    if call_filter.start is not None:
        clauses.append(f"{_TIME} >= ?")
        params.append(micros_of(call_filter.start))
    if call_filter.end is not None:
        clauses.append(f"{_TIME} < ?")
        params.append(micros_of(call_filter.end))
    for attribute, column, operator, codec in _BOUNDS:
        bound = getattr(call_filter, attribute)
        if bound is not None:
            clauses.append(f"{column} {operator} ?")
            params.append(_bound(bound, operator, codec))
    for comparison in call_filter.comparisons or ():
        text, values = _compare(comparison)
        clauses.append(text)
        params.extend(values)
    return Statement(" AND ".join(clauses) if clauses else "1=1", tuple(params))


def _other_matches(call_filter: CallFilter, clauses: list[str], params: list[Any]) -> None:
    """The excluded values and the boolean filters."""
    for attribute, values in call_filter.excluded or ():
        column = column_of(attribute)
        marks = ", ".join("?" for _ in values)
        # A call without a value is not one of those excluded.
        clauses.append(f"({column} IS NULL OR {column} NOT IN ({marks}))")
        params.extend(values)
    for attribute, column in _FLAGS:
        flag = getattr(call_filter, attribute)
        if flag is not None:
            clauses.append(f"{column} = ?")
            params.append(_flag(flag))


def match(column: str, value: str | tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The condition that ``column`` equals the value, or one of the values."""
    if isinstance(value, str):
        return f"{column} = ?", (value,)
    if not value:  # no value can match (two $in lists without a common value)
        return "1 = 0", ()
    if len(value) == 1:
        return f"{column} = ?", value
    return f"{column} IN ({', '.join('?' for _ in value)})", value


def _compare(comparison: Comparison) -> tuple[str, tuple[Any, ...]]:
    """A comparison as SQL on the field's column, its value stored as the column stores it.
    A bound between two values the column can hold is moved to the one the comparison means
    (cost > 1.5 nano-USD is cost >= 2; latency < a decimal between two doubles is latency <
    the upper one), exactly, and equality with such a bound matches nothing."""
    column = column_of(comparison.field)
    operator = comparison.operator
    value = comparison.value
    if isinstance(value, datetime):
        return f"{column} {_OPERATORS[operator]} ?", (micros_of(value),)
    floor, ceiling = _stored_around(FIELDS[comparison.field], value)
    if floor == ceiling:
        return f"{column} {_OPERATORS[operator]} ?", (floor,)
    if operator in ("gt", "lte"):  # > 1.5 is > 1; <= 1.5 is <= 1
        return f"{column} {_OPERATORS[operator]} ?", (floor,)
    if operator in ("gte", "lt"):  # >= 1.5 is >= 2; < 1.5 is < 2
        return f"{column} {_OPERATORS[operator]} ?", (ceiling,)
    # No stored value equals it: eq matches nothing, ne every known value.
    return (f"{column} IS NOT NULL", ()) if operator == "ne" else ("1 = 0", ())


def _stored_around(field: Field, value: Decimal | float | int) -> tuple[Any, Any]:
    """The largest and the smallest value the field's column can hold at most and at least
    ``value`` (the same when it holds ``value``): nano-USD, a double (REAL), an integer."""
    if field.codec == "money":
        exact = Decimal(value)
        return nanos_bound(exact, ROUND_FLOOR), nanos_bound(exact, ROUND_CEILING)
    if field.sql == "real":
        return _double_around(value)
    exact = Decimal(value)
    return int(exact.to_integral_value(ROUND_FLOOR)), int(exact.to_integral_value(ROUND_CEILING))


def _double_around(value: Decimal | float | int) -> tuple[float, float]:
    # float() rounds to the nearest double, either way: a bound of more digits than a double
    # holds took in a latency on its wrong side (found in review).
    near = float(value)
    exact = Decimal(near)
    if exact == value:
        return near, near
    if exact < value:
        return near, math.nextafter(near, math.inf)
    return math.nextafter(near, -math.inf), near


def _bound(value: Any, operator: str, codec: Codec) -> Any:
    """A range parameter's bound (``>=`` its min, ``<=`` its max) as the column stores values,
    rounded inwards: a call matches exactly when its value is within the bounds."""
    if codec == "money":
        return nanos_bound(value, ROUND_CEILING if operator == ">=" else ROUND_FLOOR)
    if isinstance(value, Decimal):  # latency (REAL): the doubles around it
        low, high = _double_around(value)
        return high if operator == ">=" else low
    return value


def select_fields(fields: Sequence[str]) -> str:
    """The select list of the given API fields (names already checked against COLUMNS)."""
    return ", ".join(COLUMNS[name][0] for name in fields)


def decode(fields: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    return {name: COLUMNS[name][1](value) for name, value in zip(fields, row, strict=True)}


def list_statement(
    query: CallQuery, fields: Sequence[str], days: Sequence[int] | None = None
) -> Statement:
    """One page of calls. Unknown values (an unpriced call's cost) sort as the smallest, as
    both databases' indexes order NULLs by default, so either direction can use one index; the
    id breaks ties (in the last key's direction) so pages never overlap. With ``days``
    (``where``), time order is (day, created_us) -- the same order, since the day is the
    time's -- which the (day, user_id, created_us) index gives a day at a time: a page of
    the newest calls stops after its rows instead of sorting every call of the range."""
    condition = where(query.filter, days)
    keys = ((query.sort, query.descending), *query.then)
    order = ", ".join(_order(key, descending) for key, descending in keys)
    if days is not None and SORT_COLUMNS[query.sort] == _TIME:
        order = f"day {'DESC' if query.descending else 'ASC'}, {order}"
    order += f", id {'DESC' if keys[-1][1] else 'ASC'}"
    return Statement(
        f"SELECT {select_fields(fields)} FROM {CALLS} WHERE {condition.text} "  # noqa: S608
        f"ORDER BY {order} LIMIT ? OFFSET ?",
        (*condition.params, query.limit, query.offset),
    )


def _order(key: str, descending: bool) -> str:
    column = SORT_COLUMNS[key]
    if column == _TIME:
        # Never NULL: the plain order, which both databases read off the primary key.
        return f"{column} {'DESC' if descending else 'ASC'}"
    return f"{column} DESC NULLS LAST" if descending else f"{column} ASC NULLS FIRST"


def summary_statement(call_filter: CallFilter, days: Sequence[int] | None = None) -> Statement:
    """Calls, priced calls, their cost (nano-USD) and tokens, of a filter (seed 001's
    ``summary``)."""
    condition = where(call_filter, days)
    cost, tokens = column_of("cost"), column_of("total_tokens")
    return Statement(
        f"SELECT COUNT(*), COUNT({cost}), SUM({cost}), SUM({tokens}) FROM {CALLS} "  # noqa: S608
        f"WHERE {condition.text}",
        condition.params,
    )


def count_statement(call_filter: CallFilter, days: Sequence[int] | None = None) -> Statement:
    condition = where(call_filter, days)
    return Statement(f"SELECT COUNT(*) FROM {CALLS} WHERE {condition.text}", condition.params)  # noqa: S608


def get_statement(
    call_id: str,
    fields: Sequence[str],
    projects: frozenset[str] | None,
    days: Sequence[int] | None,
) -> Statement | None:
    """One call by id, probing the trace index (the id's trace id, then its span key) once per
    day in ``days`` (the days calls are stored for; None: a store whose trace index starts with
    the trace id, as PostgreSQL's daily partitions'); None when the id is malformed (it then
    names no call)."""
    key = parse_call_id(call_id)
    if key is None or (days is not None and not days):
        return None
    condition = where(CallFilter(projects=projects))
    in_days = "" if days is None else f"day IN ({', '.join('?' for _ in days)}) AND "
    return Statement(
        f"SELECT {select_fields(fields)}, created_us FROM {CALLS} "  # noqa: S608
        f"WHERE {in_days}trace_id = ? AND span_key = ? AND id = ? AND {condition.text}",
        (*(days or ()), call_id[:32], key, call_id, *condition.params),
    )


def day_range_statement() -> Statement:
    """The first and last stored call's time. Two sub-selects: SQLite reads a lone MIN or MAX
    off the primary key's end, but both in one select scanned an index (200 ms at 1 M)."""
    return Statement(
        f"SELECT (SELECT MIN(created_us) FROM {CALLS}), (SELECT MAX(created_us) FROM {CALLS})",  # noqa: S608
        (),
    )


def content_statement(created_us: int, call_id: str) -> Statement:
    return Statement(
        f"SELECT request_prompt, response_preview FROM {CONTENT} "  # noqa: S608
        "WHERE created_us = ? AND id = ?",
        (created_us, call_id),
    )
