"""Daily rows read under a time budget: the statements stats and the past-days ranking share.

A ``Source`` is a daily table and the condition selecting its rows; ``Scan`` runs one
statement within a ``Deadline`` (the backends stop the statement itself) and streams its rows
to a consumer; the helpers rank groups, look up some groups' requests or sums, and merge the
rows' sketches in bulk, checking the deadline as they go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from time import monotonic
from typing import Any

from otel_llm.calllog import sql
from otel_llm.calllog.cardinality import OTHER
from otel_llm.calllog.catalogue import (
    DAILY_LATENCY_SUM,
    DAILY_SKETCHES,
    DAILY_SUMS,
    STATS_MATCHES,
    Rollup,
    column_of,
)
from otel_llm.calllog.query import CallFilter, StatsTimeout
from otel_llm.calllog.rollup import Totals
from otel_llm.calllog.sketch import BytesSum

Rows = Iterable[Sequence[Any]]
Scan = Callable[[sql.Statement, "Deadline", Callable[[Rows], None]], None]
"""Runs one read within a deadline and hands its rows, as they come, to a consumer."""

SUMMED = (*DAILY_SUMS, DAILY_LATENCY_SUM)
SUMS = ", ".join(f"SUM({name})" for name in SUMMED)
_LATENCY_SKETCH, _TTFC_SKETCH = DAILY_SKETCHES.values()
SKETCHES = f"{_LATENCY_SKETCH}, {_TTFC_SKETCH}"
HAVING = f"({_LATENCY_SKETCH} IS NOT NULL OR {_TTFC_SKETCH} IS NOT NULL)"
CHECK_EVERY = 1024  # rows merged between two looks at the clock

IN_CHUNK = 1000
"""Values per ``IN (...)`` of a look-up by value."""
IN_DAYS = 1000
"""The tables by user and by key are read with ``day IN (...)``: with the user (or users) asked,
one seek per day and user of their (day, user) key instead of every user's rows of the range;
up to this many days."""


class Deadline:
    """When statistics must be done (``monotonic``); ``seconds`` None: never."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.at = None if seconds is None else monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - monotonic()

    def passed(self) -> bool:
        return self.at is not None and monotonic() > self.at

    def check(self) -> None:
        if self.passed():
            raise StatsTimeout(self.seconds)


def matches(call_filter: CallFilter) -> sql.Statement:
    """The filter's condition on a daily table, days aside (empty: none)."""
    clauses: list[str] = []
    params: list[Any] = []
    for name in STATS_MATCHES:
        value = getattr(call_filter, name)
        if value is not None:
            text, values = sql.match(column_of(name), value)
            clauses.append(text)
            params.extend(values)
    if call_filter.projects is not None:
        if call_filter.projects:
            marks = ", ".join("?" for _ in call_filter.projects)
            clauses.append(f"{column_of('project')} IN ({marks})")
            params.extend(sorted(call_filter.projects))
        else:
            clauses.append("1 = 0")
    return sql.Statement(" AND ".join(clauses), tuple(params))


def days_and(capped: bool, first: date, last: date, condition: sql.Statement) -> sql.Statement:
    """``condition`` on the days [first, last)."""
    if capped and (last - first).days <= IN_DAYS:
        days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days)]
        text = f"day IN ({', '.join('?' for _ in days)})"
        params: tuple[Any, ...] = tuple(days)
    else:
        text = "day >= ? AND day < ?"
        params = (first.isoformat(), last.isoformat())
    if condition.text:
        text = f"{text} AND {condition.text}"
    return sql.Statement(text, (*params, *condition.params))


@dataclass(frozen=True, slots=True)
class Source:
    """Daily rows to read: a table and the condition that selects them."""

    table: str
    where: sql.Statement
    matches: sql.Statement | None = None
    """The condition without the days (``matches``): what ``PastDays`` keys its entries on
    and reads some days of; None: nothing is kept of this source."""
    capped: bool = False
    """Its table is by user or key (``day IN`` seeks: ``daily_where``)."""
    first: date | None = None
    last: date | None = None
    """Its days: [first, last)."""

    @classmethod
    def of(cls, rollup: Rollup, call_filter: CallFilter, start: datetime, end: datetime) -> Source:
        condition = matches(call_filter)
        capped = rollup.capped is not None
        first, last = start.date(), end.date()
        return cls(
            rollup.table, days_and(capped, first, last, condition), condition, capped, first, last
        )

    def between(self, first: date, last: date) -> sql.Statement:
        """Its rows of the days [first, last) only."""
        assert self.matches is not None
        return days_and(self.capped, first, last, self.matches)


def busiest_groups(
    scan: Scan, table: str, column: str, where: sql.Statement, count: int, *, deadline: Deadline
) -> dict[str, int]:
    """The ``count`` busiest values of ``column`` but ``other`` and their requests, busiest
    first (ties in the database's order)."""
    return counted(
        scan,
        sql.Statement(
            f"SELECT {column}, SUM(requests) FROM {table} WHERE {where.text} "  # noqa: S608
            f"AND {column} <> ? GROUP BY {column} ORDER BY SUM(requests) DESC LIMIT ?",
            (*where.params, OTHER, count),
        ),
        deadline,
    )


def counted(scan: Scan, statement: sql.Statement, deadline: Deadline) -> dict[str, int]:
    """The (name, count) rows ``statement`` reads, in their order, as a mapping."""
    found: dict[str, int] = {}

    def add(rows: Rows) -> None:
        found.update((row[0], int(row[1])) for row in rows)

    scan(statement, deadline, add)
    return found


def requests_of_groups(
    scan: Scan,
    source: Source,
    column: str,
    values: list[str],
    where: sql.Statement,
    *,
    deadline: Deadline,
) -> dict[str, int]:
    """The requests of each of ``values`` in the rows ``where`` selects (seeks by value)."""
    found: dict[str, int] = {}
    for start in range(0, len(values), IN_CHUNK):
        chunk = values[start : start + IN_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        found.update(
            requests_by_group(
                scan,
                source.table,
                column,
                sql.Statement(f"{where.text} AND {column} IN ({marks})", (*where.params, *chunk)),
                deadline,
            )
        )
    return found


def requests_by_group(
    scan: Scan, table: str, column: str, where: sql.Statement, deadline: Deadline
) -> dict[str, int]:
    """Each value of ``column``'s requests in the rows ``where`` selects."""
    found: dict[str, int] = {}

    def add(rows: Rows) -> None:
        for count, row in enumerate(rows):
            if not count % CHECK_EVERY:
                deadline.check()
            found[row[0]] = int(row[1])

    scan(
        sql.Statement(
            f"SELECT {column}, SUM(requests) FROM {table} "  # noqa: S608
            f"WHERE {where.text} GROUP BY {column}",
            where.params,
        ),
        deadline,
        add,
    )
    return found


def rows_of_groups(
    scan: Scan,
    source: Source,
    column: str,
    values: Iterable[str],
    where: sql.Statement,
    *,
    deadline: Deadline,
) -> dict[str, Totals]:
    """The sums and sketches of each of ``values`` in the rows ``where`` selects (a seek per
    day and value: the table's key starts with the day and the value). The sums are added up
    by the database: a key's 30 days are ~250 rows of ~30 columns."""
    values = sorted(values)
    if not values:
        return {}
    sketches = SketchSums()

    def merge(rows: Rows) -> None:
        for count, (value, requests, latency, ttfc) in enumerate(rows):
            if not count % CHECK_EVERY:
                deadline.check()
            sketches.add(found[value], requests, latency, ttfc)

    condition = f"{where.text} AND {column} IN ({', '.join('?' for _ in values)})"
    params = (*where.params, *values)
    table = source.table
    found = sums_by(scan, table, column, sql.Statement(condition, params), deadline)
    scan(
        sql.Statement(
            f"SELECT {column}, requests, {SKETCHES} FROM {table} "  # noqa: S608
            f"WHERE {condition} AND {HAVING}",
            params,
        ),
        deadline,
        merge,
    )
    sketches.done()
    return found


def add_sketches(
    scan: Scan, table: str, where: sql.Statement, into: Totals, deadline: Deadline
) -> None:
    """Merge the sketches of the rows ``where`` selects into ``into``."""
    sketches = SketchSums()

    def merge(rows: Rows) -> None:
        for count, (requests, latency, ttfc) in enumerate(rows):
            if not count % CHECK_EVERY:
                deadline.check()
            sketches.add(into, requests, latency, ttfc)

    scan(
        sql.Statement(
            f"SELECT requests, {SKETCHES} FROM {table} WHERE {where.text} AND {HAVING}",  # noqa: S608
            where.params,
        ),
        deadline,
        merge,
    )
    sketches.done()


class SketchSums:
    """Rows' sketches added into their groups' Totals in bulk (a ``BytesSum`` each)."""

    def __init__(self) -> None:
        self._sums: dict[int, tuple[Totals, BytesSum, BytesSum]] = {}

    def add(self, totals: Totals, requests: int, latency: bytes | None, ttfc: bytes | None) -> None:
        sums = self._sums.get(id(totals))
        if sums is None:
            sums = (totals, BytesSum(totals.latency), BytesSum(totals.ttfc))
            self._sums[id(totals)] = sums
        sums[1].add(latency, requests)
        sums[2].add(ttfc, requests)

    def done(self) -> None:
        for _, latency, ttfc in self._sums.values():
            latency.done()
            ttfc.done()


def sums_by(
    scan: Scan, table: str, column: str, where: sql.Statement, deadline: Deadline
) -> dict[str, Totals]:
    """Each value of ``column``'s sums in the rows ``where`` selects, added up by the database
    (no sketches)."""
    found: dict[str, Totals] = {}

    def add(rows: Rows) -> None:
        for row in rows:
            group_totals(found, row[0]).add_sums(row[1:])

    scan(
        sql.Statement(
            f"SELECT {column}, {SUMS} FROM {table} WHERE {where.text} GROUP BY {column}",  # noqa: S608
            where.params,
        ),
        deadline,
        add,
    )
    return found


def group_totals(table: dict[str, Totals], key: str) -> Totals:
    entry = table.get(key)
    if entry is None:
        entry = table[key] = Totals()
    return entry
