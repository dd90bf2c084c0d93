"""The daily aggregates' cardinality cap: at most ``call_log_max_daily_values`` distinct values
per day and dimension (service, provider, model, operation, feature, project), and
``call_log_max_daily_users`` users and API keys; a call whose value comes later is added to
that day's ``other`` row instead. The call record keeps the real
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
new value folds without a query either. When a day's dimension has room for all of a write's
unknown values, which of them are present is not asked (one count, not a look-up per value).
What a transaction adds is cached once it committed, never before (it might roll back).
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from otel_llm.calllog.catalogue import ROLLUPS, Rollup
from otel_llm.calllog.rollup import Added, DailyKey, Row, merged

OTHER = "other"
"""What a value past the cap becomes (the same word as ``otel_llm.metrics.labels.OVERFLOW``)."""

_MAIN = ROLLUPS[0]
CAPPED: tuple[str, ...] = (
    *_MAIN.fields,
    *(rollup.capped for rollup in ROLLUPS if rollup.capped is not None),
)
"""The capped dimensions (API names): the first daily table's fields, each counted there, and
the user and API key, each counted in its own table. Every other table folds a field as the
first table does (its values are a subset of the first table's: every call is in each)."""

_COUNTED: dict[str, tuple[str, ...]] = {
    **{rollup.table: (rollup.capped,) for rollup in ROLLUPS if rollup.capped is not None},
    _MAIN.table: _MAIN.fields,
}
"""Table -> the fields whose values are counted in it."""

_EXEMPT = ("", OTHER)
"""Never folded, never counted: '' is "none" (a NULL dimension), ``other`` the fold itself."""

_REMEMBERED = 8 * len(CAPPED)
"""(day, dimension) entries cached: a week and a day of every dimension (writes land on today)."""
_MAX_CACHED_VALUES = 4
"""Times the cap: a day that holds more values (written before the cap) is not cached whole."""
_MOST_CACHED = 20_000
"""Values cached of one day's dimension at most (100,000 users a day: not all of them)."""
_IN_CHUNK = 500
_LOCK_CLASS = 0x6F746C64  # pg_advisory_xact_lock(class, key): "otld", apart from the migration's

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
"""Runs one statement (``?`` placeholders) in the write's transaction; its rows."""
Place = tuple[str, str, int]
"""(day, table, position in its key) of a counted dimension."""


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
    """The caps of one store, applied to what a write adds to the daily rows: ``limit``
    values per day of each dimension of the first table, ``user_limit`` users (and API keys).

    ``folded[dimension]`` counts the calls added to ``other`` since the store opened (a call
    folded in two dimensions counts in each); a write counts once committed (``committed``).
    """

    def __init__(self, limit: int, user_limit: int | None = None):
        if limit < 1 or (user_limit is not None and user_limit < 1):
            raise ValueError("the cap on daily values must be >= 1")
        self.limit = limit
        self.user_limit = limit if user_limit is None else user_limit
        self.folded: dict[str, int] = dict.fromkeys(CAPPED, 0)
        self._staged: dict[str, int] = {}
        self._admitted: list[tuple[_Known, list[str], int]] = []
        """Values a write added unlooked-up (``_refused``), remembered once it commits."""
        self._known: OrderedDict[Place, _Known] = OrderedDict()

    def fold(self, added: Added, run: Run, *, advisory_locks: bool) -> Added:
        """``added`` (``rollup.rollup``'s result) with every value past a cap as ``other``,
        rows that became one merged. Call under the write's transaction; ``advisory_locks``:
        PostgreSQL (SQLite's transaction holds the database's write lock already)."""
        self._staged = {}
        self._admitted = []
        wanted: dict[Place, dict[str, int]] = {}
        for rollup in ROLLUPS:
            counted = _COUNTED.get(rollup.table, ())
            positions = [rollup.fields.index(name) + 1 for name in counted]
            for key, totals in added[rollup.table].items():
                for index in positions:
                    value = key[index]
                    if value not in _EXEMPT:
                        calls = wanted.setdefault((key[0], rollup.table, index), {})
                        calls[value] = calls.get(value, 0) + totals.requests
        refused: dict[tuple[str, str], set[str]] = {}
        for place in sorted(wanted):  # sorted: advisory locks are always taken in one order
            out = self._refused(place, wanted[place], run, advisory_locks)
            if out:
                day, table, index = place
                refused[day, _field(table, index)] = out
        if not refused:
            return added
        return {
            rollup.table: self._folded(rollup, added[rollup.table], refused) for rollup in ROLLUPS
        }

    def _folded(
        self,
        rollup: Rollup,
        rows: dict[DailyKey, Row],
        refused: dict[tuple[str, str], set[str]],
    ) -> dict[DailyKey, Row]:
        counted = _COUNTED.get(rollup.table, ())
        folded: dict[DailyKey, Row] = {}
        for key, totals in rows.items():
            day = key[0]
            new_key = list(key)
            for index, name in enumerate(rollup.fields, 1):
                refused_here = refused.get((day, name))
                if refused_here is not None and key[index] in refused_here:
                    new_key[index] = OTHER
                    if name in counted:
                        self._staged[name] = self._staged.get(name, 0) + totals.requests
            target = tuple(new_key)
            folded[target] = merged(folded.get(target), totals)
        return folded

    def committed(self) -> None:
        """The write whose ``fold`` ran last committed: count its folded calls; the values it
        added are in the daily rows now, for ever."""
        for name, calls in self._staged.items():
            self.folded[name] += calls
        self._staged = {}
        for known, values, cached in self._admitted:
            self._remember(known, set(values), cached)
        self._admitted = []

    def rolled_back(self) -> None:
        """The write whose ``fold`` ran last rolled back: nothing it staged happened (a write
        that commits later without folding -- all duplicates -- must not count it)."""
        self._staged = {}
        self._admitted = []

    def _refused(
        self, place: Place, calls: dict[str, int], run: Run, advisory_locks: bool
    ) -> set[str]:
        """The values of ``calls`` (value -> calls in this write) that must fold."""
        known = self._entry(place)
        unknown = [value for value in calls if value not in known.values]
        if not unknown:
            return set()
        if known.full and known.complete:
            return set(unknown)
        day, table, index = place
        column = _TABLES[table].key[index]
        limit = self.limit if table == _MAIN.table else self.user_limit
        cached = min(limit * _MAX_CACHED_VALUES, _MOST_CACHED)
        if advisory_locks and not known.full:
            # Held to the end of the transaction: the count below and the rows this write adds
            # are one step for every other writer of this day's dimension.
            run(
                "SELECT pg_advisory_xact_lock(CAST(? AS INTEGER), CAST(? AS INTEGER))",
                (_LOCK_CLASS, _lock_key(day, column)),
            )
        count = 0
        if not known.full:
            count = _count(run, table, day, column)
            if count + len(unknown) <= limit:
                # Room for them all, present or not: which are present is not asked (a write's
                # 5,000 users a day: 10 look-ups of 500, 1.3 us a call).
                self._admitted.append((known, unknown, cached))
                return set()
        present = _present(run, table, day, column, unknown)
        self._remember(known, present, cached)
        new = [value for value in unknown if value not in present]
        if new and not known.full:
            if count >= limit:
                known.full = True
                every = _values(run, table, day, column, cached)
                if len(every) < cached:
                    known.values = every
                    known.complete = True
            elif len(new) <= limit - count:
                new = []  # all fit: no need to rank them
            else:
                # The busiest of this write first, then by name: the same input, the same rows.
                new.sort(key=lambda value: (-calls[value], value))
                new = new[limit - count :]
        return set(new)

    def _entry(self, place: Place) -> _Known:
        known = self._known.get(place)
        if known is None:
            known = self._known[place] = _Known()
            if len(self._known) > _REMEMBERED:
                self._known.popitem(last=False)
        else:
            self._known.move_to_end(place)
        return known

    def _remember(self, known: _Known, present: set[str], cached: int) -> None:
        if len(known.values) + len(present) <= cached:
            known.values |= present


_TABLES = {rollup.table: rollup for rollup in ROLLUPS}


def _field(table: str, index: int) -> str:
    return _TABLES[table].fields[index - 1]


def _lock_key(day: str, column: str) -> int:
    """A signed 32-bit key for (day, dimension); a collision only serialises two of them."""
    key = zlib.crc32(f"{day}\x00{column}".encode())
    return key - (1 << 32) if key >= 1 << 31 else key


def _present(run: Run, table: str, day: str, column: str, values: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(values), _IN_CHUNK):
        chunk = values[start : start + _IN_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        found.update(
            row[0]
            for row in run(
                f"SELECT DISTINCT {column} FROM {table} "  # noqa: S608 - catalogue names
                f"WHERE day = ? AND {column} IN ({marks})",
                (day, *chunk),
            )
        )
    return found


def _count(run: Run, table: str, day: str, column: str) -> int:
    rows = run(
        f"SELECT COUNT(DISTINCT {column}) FROM {table} "  # noqa: S608 - catalogue names
        f"WHERE day = ? AND {column} NOT IN (?, ?)",
        (day, *_EXEMPT),
    )
    return int(rows[0][0])


def _values(run: Run, table: str, day: str, column: str, at_most: int) -> set[str]:
    rows = run(
        f"SELECT DISTINCT {column} FROM {table} "  # noqa: S608 - catalogue names
        f"WHERE day = ? AND {column} NOT IN (?, ?) LIMIT ?",
        (day, *_EXEMPT, at_most),
    )
    return {row[0] for row in rows}
