"""The daily aggregates' cardinality cap: at most ``call_log_max_daily_values`` distinct values
per day and dimension (service, provider, model, operation, feature, project); a call whose
value comes later is added to that day's ``other`` row instead. The call record keeps the real
value; only the aggregates fold -- as the Prometheus labels do (``max_label_values``).

Without it, a client sending a new model name per call adds a daily row per call, kept for
ever: 200,000 names made ``stats`` take 4 s and 15 MB, and ``group_by=model`` 30 s and 3 GB.

The daily table itself is the truth, so the cap holds across restarts and several writers:
a value is admitted if that day's rows already have it, or if they have fewer than the cap
distinct values -- counted inside the write's transaction. SQLite's ``BEGIN IMMEDIATE`` already
serialises writers; PostgreSQL writers take a transaction-scoped advisory lock per (day,
dimension) before counting, so two replicas cannot both take the last place. Daily rows are
never deleted, so what a query found stays true: the values seen present, and "full" once the
count reached the cap. A bounded cache of those facts makes the usual batch (known values
only) cost no query at all; once a day's dimension is full and every value of it is cached, a
new value folds without a query either. Nothing this transaction adds is cached (it might roll
back): the next batch finds it with one query.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from otel_llm.calllog.catalogue import DAILY_DIMENSIONS
from otel_llm.calllog.rollup import DailyKey, Totals
from otel_llm.calllog.schema import DAILY

OTHER = "other"
"""What a value past the cap becomes (the same word as ``otel_llm.metrics.labels.OVERFLOW``)."""

CAPPED: tuple[str, ...] = DAILY_DIMENSIONS[1:]
"""The capped dimensions: every daily key column but the day."""

_EXEMPT = ("", OTHER)
"""Never folded, never counted: '' is "none" (a NULL dimension), ``other`` the fold itself."""

_REMEMBERED = 8 * len(CAPPED)
"""(day, dimension) entries cached: a week and a day of every dimension (writes land on today)."""
_MAX_CACHED_VALUES = 4
"""Times the cap: a day that holds more values (written before the cap) is not cached whole."""
_IN_CHUNK = 500
_LOCK_CLASS = 0x6F746C64  # pg_advisory_xact_lock(class, key): "otld", apart from the migration's

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
"""Runs one statement (``?`` placeholders) in the write's transaction; its rows."""


class _Known:
    """What queries found of one day's dimension: committed facts, true for ever."""

    __slots__ = ("complete", "full", "values")

    def __init__(self) -> None:
        self.values: set[str] = set()
        """Values its rows have."""
        self.full = False
        """It has the cap's number of values: no new one is admitted."""
        self.complete = False
        """``values`` is every value it has (so one not in it folds without a query)."""


class DailyCaps:
    """The cap of one store, applied to what a write adds to the daily rows.

    ``folded[dimension]`` counts the calls added to ``other`` since the store opened (a call
    folded in two dimensions counts in each); a write counts once committed (``committed``).
    """

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("the cap on daily values must be >= 1")
        self.limit = limit
        self.folded: dict[str, int] = dict.fromkeys(CAPPED, 0)
        self._staged: dict[str, int] = {}
        self._known: OrderedDict[tuple[str, int], _Known] = OrderedDict()

    def fold(
        self, added: dict[DailyKey, Totals], run: Run, *, advisory_locks: bool
    ) -> dict[DailyKey, Totals]:
        """``added`` (``rollup.rollup``'s result) with every value past the cap as ``other``,
        rows that became one merged. Call under the write's transaction; ``advisory_locks``:
        PostgreSQL (SQLite's transaction holds the database's write lock already)."""
        self._staged = {}
        wanted: dict[tuple[str, int], dict[str, int]] = {}
        for key, totals in added.items():
            for index in range(1, len(key)):
                value = key[index]
                if value not in _EXEMPT:
                    calls = wanted.setdefault((key[0], index), {})
                    calls[value] = calls.get(value, 0) + totals.requests
        refused: dict[tuple[str, int], set[str]] = {}
        for place in sorted(wanted):  # sorted: advisory locks are always taken in one order
            out = self._refused(place, wanted[place], run, advisory_locks)
            if out:
                refused[place] = out
        if not refused:
            return added
        folded: dict[DailyKey, Totals] = {}
        for key, totals in added.items():
            day = key[0]
            new_key = list(key)
            for index in range(1, len(key)):
                refused_here = refused.get((day, index))
                if refused_here is not None and key[index] in refused_here:
                    new_key[index] = OTHER
                    name = CAPPED[index - 1]
                    self._staged[name] = self._staged.get(name, 0) + totals.requests
            target = tuple(new_key)
            entry = folded.get(target)
            if entry is None:
                folded[target] = totals
            else:
                entry.merge(totals)
        return folded

    def committed(self) -> None:
        """The write whose ``fold`` ran last committed: count its folded calls."""
        for name, calls in self._staged.items():
            self.folded[name] += calls
        self._staged = {}

    def _refused(
        self, place: tuple[str, int], calls: dict[str, int], run: Run, advisory_locks: bool
    ) -> set[str]:
        """The values of ``calls`` (value -> calls in this write) that must fold."""
        known = self._entry(place)
        unknown = [value for value in calls if value not in known.values]
        if not unknown:
            return set()
        if known.full and known.complete:
            return set(unknown)
        day, index = place
        column = DAILY_DIMENSIONS[index]
        if advisory_locks and not known.full:
            # Held to the end of the transaction: the count below and the rows this write adds
            # are one step for every other writer of this day's dimension.
            run(
                "SELECT pg_advisory_xact_lock(CAST(? AS INTEGER), CAST(? AS INTEGER))",
                (_LOCK_CLASS, _lock_key(day, column)),
            )
        present = _present(run, day, column, unknown)
        self._remember(known, present)
        new = [value for value in unknown if value not in present]
        if not new:
            return set()
        if not known.full:
            count = _count(run, day, column)
            if count >= self.limit:
                known.full = True
                every = _values(run, day, column, self.limit * _MAX_CACHED_VALUES)
                if len(every) < self.limit * _MAX_CACHED_VALUES:
                    known.values = every
                    known.complete = True
            else:
                # The busiest of this write first, then by name: the same input, the same rows.
                new.sort(key=lambda value: (-calls[value], value))
                return set(new[self.limit - count :])
        return set(new)

    def _entry(self, place: tuple[str, int]) -> _Known:
        known = self._known.get(place)
        if known is None:
            known = self._known[place] = _Known()
            if len(self._known) > _REMEMBERED:
                self._known.popitem(last=False)
        else:
            self._known.move_to_end(place)
        return known

    def _remember(self, known: _Known, present: set[str]) -> None:
        if len(known.values) + len(present) <= self.limit * _MAX_CACHED_VALUES:
            known.values |= present


def _lock_key(day: str, column: str) -> int:
    """A signed 32-bit key for (day, dimension); a collision only serialises two of them."""
    key = zlib.crc32(f"{day}\x00{column}".encode())
    return key - (1 << 32) if key >= 1 << 31 else key


def _present(run: Run, day: str, column: str, values: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(values), _IN_CHUNK):
        chunk = values[start : start + _IN_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        found.update(
            row[0]
            for row in run(
                f"SELECT DISTINCT {column} FROM {DAILY} "  # noqa: S608 - catalogue names
                f"WHERE day = ? AND {column} IN ({marks})",
                (day, *chunk),
            )
        )
    return found


def _count(run: Run, day: str, column: str) -> int:
    rows = run(
        f"SELECT COUNT(DISTINCT {column}) FROM {DAILY} "  # noqa: S608 - catalogue names
        f"WHERE day = ? AND {column} NOT IN (?, ?)",
        (day, *_EXEMPT),
    )
    return int(rows[0][0])


def _values(run: Run, day: str, column: str, at_most: int) -> set[str]:
    rows = run(
        f"SELECT DISTINCT {column} FROM {DAILY} "  # noqa: S608 - catalogue names
        f"WHERE day = ? AND {column} NOT IN (?, ?) LIMIT ?",
        (day, *_EXEMPT, at_most),
    )
    return {row[0] for row in rows}
