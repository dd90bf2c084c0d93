"""A call record held to the catalogue's limits before it is stored: what no column can take
is corrected here, the same way for SQLite and PostgreSQL, and counted.

A span's values come from whoever can reach the collector. Before this, one value that a
database refused failed the write of its whole batch: a time to first chunk of 1e306 s (``inf``
ms: the aggregates' sketch raised OverflowError), an HTTP status of 2**70 (no SQLite integer)
or 3,000,000,000 (no PostgreSQL INTEGER), a NUL in a model name (PostgreSQL rejects it in text).

The rules, per field of the catalogue (``catalogue.py`` holds the limits):

- text: NUL and lone surrogates become U+FFFD (``otel_llm.text.clean_text``); longer than the
  field's ``max_length`` is cut; a value that is no text is written as its ``str``;
- numbers: NaN, infinities, values outside the field's ``minimum``/``maximum`` or outside its
  column's integer width become unknown (None) -- a clamped latency or status would be a
  made-up measurement, an unknown one is honest -- as does a value of the wrong type;
- ``completed_at`` outside [2000-01-01, now + 1 day]: unknown. ``created_at`` is the call's key
  and its day: a start outside that range is not corrected here but quarantined by the store
  (``time_problem``; see ``sqlstore.SQLCallStore.write_batch`` for why not clamped);
- ``context``: at most ``CONTEXT_MAX_KEYS`` keys, text cleaned and cut, non-finite numbers
  unknown.

Each corrected value is counted per field (``corrections()``; the metric
``otel_llm_call_log_corrected_calls_total``). A record that needs nothing is returned as is.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from otel_llm.calllog.catalogue import (
    CALL_FIELDS,
    CONTENT_FIELDS,
    CONTEXT_MAX_KEYS,
    CONTEXT_MAX_LENGTH,
    FUTURE_SLACK,
    INTEGER_RANGES,
    TEXT_MAX_LENGTH,
    TIME_FLOOR,
    Field,
)
from otel_llm.text import clean_text

if TYPE_CHECKING:  # record.py builds records through this module
    from otel_llm.calllog.record import CallRecord

__all__ = ["checked", "corrections", "time_problem"]

Check = Callable[[Any], Any]
"""A field's check: the value as it may be stored (the same object when it needs nothing)."""


def _text(max_length: int) -> Check:
    def check(value: Any) -> Any:
        text = value if type(value) is str else str(value)
        return clean_text(text[:max_length] if len(text) > max_length else text)

    return check


def _bounds(field: Field) -> tuple[Any, Any]:
    low: Any
    high: Any
    low, high = INTEGER_RANGES.get(field.sql, (None, None))
    if field.minimum is not None:
        low = field.minimum if low is None else max(low, field.minimum)
    if field.maximum is not None:
        high = field.maximum if high is None else min(high, field.maximum)
    return low, high


def _integer(field: Field) -> Check:
    low, high = _bounds(field)

    def check(value: Any) -> Any:
        if type(value) is not int or not low <= value <= high:
            return None
        return value

    return check


def _number(field: Field) -> Check:
    low, high = _bounds(field)
    low = -math.inf if low is None else low
    high = math.inf if high is None else high

    def check(value: Any) -> Any:
        if type(value) not in (float, int) or not low <= value <= high:  # NaN compares False
            return None
        return value

    return check


def _money(field: Field) -> Check:
    # In USD; the bounds keep the nano-USD integer far inside a BIGINT.
    low, high = Decimal(field.minimum or 0), Decimal(field.maximum or 0)

    def check(value: Any) -> Any:
        if not isinstance(value, Decimal) or not value.is_finite():
            return None
        return value if low <= value <= high else None

    return check


def _flag(value: Any) -> Any:
    return value if type(value) is bool else bool(value)


_CONTEXT_TEXT = _text(CONTEXT_MAX_LENGTH)
_CONTEXT_KEY = _text(TEXT_MAX_LENGTH)


def _context_value(value: Any) -> Any:
    if type(value) is float and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float) or value is None:
        return value
    return _CONTEXT_TEXT(value)


def _context(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return {}
    changed = len(value) > CONTEXT_MAX_KEYS
    fixed = {}
    for index, (key, item) in enumerate(value.items()):
        if index == CONTEXT_MAX_KEYS:
            break
        good_key, good_item = _CONTEXT_KEY(key), _context_value(item)
        changed = changed or good_key is not key or good_item is not item
        fixed[good_key] = good_item
    return fixed if changed else value


def _check_of(field: Field) -> Check | None:  # noqa: PLR0911 - one return per kind
    if field.type == "string":
        return _text(field.max_length)
    if field.codec == "money":
        return _money(field)
    if field.type == "integer":
        return _integer(field)
    if field.type == "number":
        return _number(field)
    if field.type == "boolean":
        return _flag
    if field.type == "object":
        return _context
    return None  # times: below


def _fast_ok(field: Field) -> str:
    """A Python expression over ``v``, true of most good values of ``field`` (then its check
    is not called): the common case costs an attribute read and a compare or two."""
    if field.type == "string":
        return (
            f"v.__class__ is str and len(v) <= {field.max_length} and v.isascii() "
            'and "\\x00" not in v'
        )
    if field.codec == "money":  # is_finite first: a NaN Decimal raises when compared
        return (
            f"v.__class__ is Decimal and v.is_finite() and {field.minimum} <= v <= {field.maximum}"
        )
    if field.type in ("integer", "number"):
        low, high = _bounds(field)
        kind = "int" if field.type == "integer" else "float"
        return f"v.__class__ is {kind} and {low!r} <= v <= {high!r}"
    if field.type == "boolean":
        return "v.__class__ is bool"
    if field.type == "object":
        return "not v"  # the common empty context
    return "False"


_FIELDS: tuple[tuple[Field, Check], ...] = tuple(
    (field, check)
    for field in (*CALL_FIELDS, *CONTENT_FIELDS.values())
    if field.stored and field.api and (check := _check_of(field)) is not None
)
"""Every value field and its check; times are checked apart."""


def _checker() -> Callable[[Any], dict[str, Any]]:
    """``changes(record)``: the corrected values of a record's fields, by attribute.

    Made from the catalogue once, as ``sql.row_of`` is: a loop over the fields calling each
    check cost 11.7 us a record, this 3 us (measured) -- it runs for every call, on the
    collector's request path."""
    namespace: dict[str, Any] = {"Decimal": Decimal}
    lines = ["def changes(record):", "    found = {}"]
    for index, (field, check) in enumerate(_FIELDS):
        namespace[f"_check{index}"] = check
        name = field.source
        lines += [
            f"    v = record.{name}",
            f"    if v is not None and not ({_fast_ok(field)}):",
            f"        fixed = _check{index}(v)",
            "        if fixed is not v:",
            f"            found[{name!r}] = fixed",
        ]
    lines.append("    return found")
    # Only the catalogue's own names (identifiers) and numbers are in the text.
    exec("\n".join(lines), namespace)  # noqa: S102
    return cast(Callable[[Any], dict[str, Any]], namespace["changes"])


_changes = _checker()
_counts: dict[str, int] = dict.fromkeys((*(f.source for f, _ in _FIELDS), "completed_at"), 0)
_lock = threading.Lock()


def corrections() -> dict[str, int]:
    """Values corrected so far in this process, per field (every field with a limit)."""
    with _lock:
        return dict(_counts)


def time_problem(moment: Any, now: datetime) -> str | None:
    """Why ``moment`` cannot be a call's time (a message), or None when it can."""
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        return f"not a timezone-aware time: {moment!r}"
    if moment < TIME_FLOOR:
        return f"before {TIME_FLOOR.date().isoformat()}: {moment.isoformat()}"
    if moment > now + FUTURE_SLACK:
        return f"more than {FUTURE_SLACK} after now ({now.isoformat()}): {moment.isoformat()}"
    return None


def checked(record: CallRecord, *, now: datetime | None = None) -> CallRecord:
    """``record`` with every value a store could refuse corrected (counted per field)."""
    changes = _changes(record)
    completed = record.completed_at
    if completed is not None:
        try:
            in_range = TIME_FLOOR <= completed <= (now or datetime.now(UTC)) + FUTURE_SLACK
        except TypeError:  # not an aware datetime
            in_range = False
        if not in_range:
            changes["completed_at"] = None
    if not changes:
        return record
    with _lock:
        for name in changes:
            _counts[name] += 1
    return replace(record, **changes)
