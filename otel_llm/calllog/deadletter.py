"""Dead letters: calls a store could not take, kept with the reason until replayed.

A call whose write failed for a reason of its own (a value a database refused, a constraint,
a start time outside [2000-01-01, now + 1 day]) is not dropped with its batch: the store
writes it here -- one row per call id, the record as JSON, the error, the number of attempts --
and counts it (``otel_llm_call_log_quarantined_calls_total``). ``otel-llm calls dead-letters``
shows them; ``otel-llm calls replay-dead-letters`` re-validates and writes them again after a
fix, removing those that now store.

The JSON is ASCII (``ensure_ascii``): NUL, lone surrogates and any code point become escapes,
so every record, however hostile, fits a TEXT column of either database. The table holds at
most ``MAX_DEAD_LETTERS`` calls (the newest) and follows the records' retention: a flood of bad
spans cannot grow it without bound.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from otel_llm.calllog.catalogue import CALL_FIELDS
from otel_llm.calllog.record import CallRecord, utc_from_micros
from otel_llm.calllog.schema import DEAD_LETTERS
from otel_llm.calllog.sql import Statement
from otel_llm.text import clean_json, clean_text

MAX_DEAD_LETTERS = 10_000
"""Calls kept in the dead-letter table; the oldest go first (counted as dropped)."""

ERROR_MAX_LENGTH = 4096
_ID_MAX_LENGTH = 256
_PAGE = 500

_MONEY = frozenset(f.source for f in CALL_FIELDS if f.codec == "money")
_TIMES = frozenset(f.source for f in CALL_FIELDS if f.type == "datetime" and f.stored)
_NAMES = frozenset(f.name for f in dataclasses.fields(CallRecord))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One quarantined call."""

    id: str
    quarantined_at: datetime
    attempts: int
    """Times it failed to store: first write, redeliveries and replays."""
    error: str
    record: str
    """The record as JSON."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "quarantined_at": self.quarantined_at,
            "attempts": self.attempts,
            "error": self.error,
            # Printable: the record's text may hold what its escapes kept (lone surrogates).
            "record": clean_json(json.loads(self.record)),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def encode(record: CallRecord) -> str:
    """The record as ASCII JSON (anything not JSON becomes its ``str``)."""
    values = {name: _jsonable(getattr(record, name, None)) for name in sorted(_NAMES)}
    return json.dumps(values, ensure_ascii=True, default=str, sort_keys=True)


def decode(text: str) -> CallRecord:
    """The record of ``encode``'s JSON; ValueError or TypeError when it is none."""
    values = {name: value for name, value in json.loads(text).items() if name in _NAMES}
    for name in _TIMES:
        if isinstance(values.get(name), str):
            values[name] = datetime.fromisoformat(values[name])
    for name in _MONEY:
        if values.get(name) is not None:
            values[name] = Decimal(str(values[name]))
    return CallRecord(**values)


def error_text(error: BaseException | str) -> str:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return clean_text(text[:ERROR_MAX_LENGTH])


def key_of(record: CallRecord) -> str:
    """The dead-letter row's id of a record (its call id, made storable)."""
    return clean_text(str(record.id)[:_ID_MAX_LENGTH])


# --- statements (one text for SQLite and PostgreSQL: ``ON CONFLICT ... DO UPDATE``) --------------

_COLUMNS = "id, quarantined_us, attempts, error, record"


def upsert(record: CallRecord, error: BaseException | str, now_us: int) -> Statement:
    """Keep ``record`` (a redelivered or replayed one: its attempts counted up)."""
    return Statement(
        f"INSERT INTO {DEAD_LETTERS} ({_COLUMNS}) VALUES (?, ?, 1, ?, ?) "  # noqa: S608
        "ON CONFLICT (id) DO UPDATE SET quarantined_us = excluded.quarantined_us, "
        f"attempts = {DEAD_LETTERS}.attempts + 1, error = excluded.error, "
        "record = excluded.record",
        (key_of(record), now_us, error_text(error), encode(record)),
    )


def failed_again(key: str, error: str) -> Statement:
    """Count another failed attempt of a dead letter, with its error."""
    return Statement(
        f"UPDATE {DEAD_LETTERS} SET attempts = attempts + 1, error = ? WHERE id = ?",  # noqa: S608
        (error_text(error), key),
    )


def trim() -> Statement:
    """Delete all but the newest ``MAX_DEAD_LETTERS``."""
    return Statement(
        f"DELETE FROM {DEAD_LETTERS} WHERE quarantined_us < (SELECT quarantined_us "  # noqa: S608
        f"FROM {DEAD_LETTERS} ORDER BY quarantined_us DESC LIMIT 1 OFFSET ?)",
        (MAX_DEAD_LETTERS - 1,),
    )


def older_than(cutoff_us: int) -> Statement:
    return Statement(f"DELETE FROM {DEAD_LETTERS} WHERE quarantined_us < ?", (cutoff_us,))  # noqa: S608


def newest(limit: int) -> Statement:
    return Statement(
        f"SELECT {_COLUMNS} FROM {DEAD_LETTERS} "  # noqa: S608
        "ORDER BY quarantined_us DESC, id LIMIT ?",
        (limit,),
    )


def page_after(after: str) -> Statement:
    """The next dead letters by id (replay walks the table with these)."""
    return Statement(
        f"SELECT {_COLUMNS} FROM {DEAD_LETTERS} WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
        (after, _PAGE),
    )


def count() -> Statement:
    return Statement(f"SELECT COUNT(*) FROM {DEAD_LETTERS}", ())  # noqa: S608


def remove(ids: list[str]) -> Statement:
    marks = ", ".join("?" for _ in ids)
    return Statement(f"DELETE FROM {DEAD_LETTERS} WHERE id IN ({marks})", tuple(ids))  # noqa: S608


def letter_of(row: tuple[Any, ...]) -> DeadLetter:
    key, quarantined_us, attempts, error, record = row
    return DeadLetter(str(key), utc_from_micros(int(quarantined_us)), int(attempts), error, record)
