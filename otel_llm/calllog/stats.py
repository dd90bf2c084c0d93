"""Statistics from the daily aggregates, bounded in time, memory and size.

The sums are added up by the database (``GROUP BY``), which also picks the groups to list: the
``limit`` busiest, and each day's ``limit`` busiest models. Everything else is one ``other``
group whose sums are the total less the groups listed, so the totals stay exact however many
values there are. Only the sketches (percentiles) need Python: their rows are streamed through
once and merged into the group they belong to (``other`` included), never all held in memory.

Before, every daily row became a Python object per group and per day: 200,000 distinct models
took 30 s and 3 GB for a 146 MB answer. Every read runs within the stats' time budget
(``Deadline``): the backends stop the statement itself, and the merging loops check it too.

Grouped by user, key or status, what the days before today add up to is kept between answers
while it is exact (``pastdays.py``, ``_kept_groups``): ranking 100,000 users over 30 days is
a ``GROUP BY`` over ~1,000,000 rows, done once a day instead of per answer.
"""

from __future__ import annotations

import itertools
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
    ROLLUPS,
    STATS_MATCHES,
    Rollup,
    column_of,
)
from otel_llm.calllog.pastdays import Kept, PastDays, Signature
from otel_llm.calllog.query import CallFilter, QueryError, StatsTimeout
from otel_llm.calllog.rollup import Totals, week_of
from otel_llm.calllog.sketch import BytesSum

Rows = Iterable[Sequence[Any]]
Scan = Callable[[sql.Statement, "Deadline", Callable[[Rows], None]], None]
"""Runs one read within a deadline and hands its rows, as they come, to a consumer."""

_SUMMED = (*DAILY_SUMS, DAILY_LATENCY_SUM)
_SUMS = ", ".join(f"SUM({name})" for name in _SUMMED)
_LATENCY_SKETCH, _TTFC_SKETCH = DAILY_SKETCHES.values()
_SKETCHES = f"{_LATENCY_SKETCH}, {_TTFC_SKETCH}"
_HAVING = f"({_LATENCY_SKETCH} IS NOT NULL OR {_TTFC_SKETCH} IS NOT NULL)"
_CHECK_EVERY = 1024  # rows merged between two looks at the clock
_GROUP_FIELDS = {
    "model": "model",
    "provider": "provider",
    "feature": "feature",
    "service": "service",
    "api_key": "api_key_id",
    "user": "user",
    "status": "status",
}
"""The groups that are values of a field (listed up to the limit, the rest ``other``)."""
_GROUPED = tuple(_GROUP_FIELDS)
_KEPT_RANKED = 10_000
_KEPT_PER_LISTED = 10
"""What stats keep of past days ranks the busiest ``max(10,000, 10 * limit)`` groups (~1 MB):
every other group's requests are at most the last one's, which decides without them unless
today's calls could lift them to the ``limit``-th (then they are looked up) or they tie with it
(``_rank``). At 100,000 users over 7 days (2-3 calls each), keeping 1,000 had every user of
today looked up."""
_FOLD_LOOKUPS = 1000
"""A day added to a kept entry (``_derived``): the groups not kept with the most calls that day
whose requests are looked up (seeks per day and group) and kept, so that the most any other
can have had rises by one or two calls, not by the busiest newcomer's."""
_IN_CHUNK = 1000
"""Values per ``IN (...)`` of a look-up by value."""
_IN_DAYS = 1000
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


@dataclass(frozen=True, slots=True)
class DailyStats:
    overall: Totals
    groups: list[tuple[str | None, Totals]]
    """In the answer's order; empty unless grouped by day, week or a dimension."""
    by_day: list[dict[str, Any]]
    by_model: list[dict[str, Any]]
    """The ``limit`` busiest models of the range (seed 001's ``by_model``), the rest as
    ``other``."""


def choose(call_filter: CallFilter, group_by: str | None) -> Rollup:
    """The daily table that keeps every field the query filters or groups on: the first of
    ``ROLLUPS`` that does (the smallest), or ``QueryError`` naming the parameters."""
    asked = {name: name for name in STATS_MATCHES if getattr(call_filter, name) is not None}
    if group_by in _GROUP_FIELDS:
        asked[_GROUP_FIELDS[group_by]] = f"group_by={group_by}"
    for rollup in ROLLUPS:
        if asked.keys() <= set(rollup.fields):
            return rollup
    kept = "; ".join(
        f"{rollup.fields[0]} with {', '.join(rollup.fields[1:])}"
        for rollup in ROLLUPS[1:]
        if rollup.capped is not None
    )
    raise QueryError(
        f"stats cannot combine {' and '.join(asked.values())}: the daily aggregates keep "
        f"{kept}; status with every other field but user and api_key_id. Leave one out, or "
        "list and count the calls (the records answer any combination)"
    )


def daily_where(
    call_filter: CallFilter, start: datetime, end: datetime, rollup: Rollup = ROLLUPS[0]
) -> sql.Statement:
    """The rows of ``rollup``'s table of the days [start, end) that the filter (stats'
    fields, which ``rollup`` keeps, and access control's projects) selects."""
    return _days_and(rollup.capped is not None, start.date(), end.date(), matches(call_filter))


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


def _days_and(capped: bool, first: date, last: date, condition: sql.Statement) -> sql.Statement:
    """``condition`` on the days [first, last)."""
    if capped and (last - first).days <= _IN_DAYS:
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
            rollup.table, _days_and(capped, first, last, condition), condition, capped, first, last
        )

    def between(self, first: date, last: date) -> sql.Statement:
        """Its rows of the days [first, last) only."""
        assert self.matches is not None
        return _days_and(self.capped, first, last, self.matches)


def daily_stats(
    scan: Scan,
    base: Source,
    grouped: Source,
    group_by: str | None,
    limit: int,
    *,
    deadline: Deadline,
    kept: PastDays | None = None,
    today: date | None = None,
) -> DailyStats:
    """Totals of the ``base`` rows, their groups (``group_by``: day, week, or a field; hour and
    None: no groups here) and the by_day breakdown. Groups by a field come from ``grouped``:
    the same calls in a table that keeps the field (by user: 100,000 users' rows a day), read
    for the ``limit`` busiest values and their sketches only; the rest is ``base`` less them.
    With ``kept``, those of the days before ``today`` come from what earlier answers kept of
    them while still exact (``pastdays.py``), and only today's rows are read."""
    table, where = base.table, base.where
    days = _sums_by(scan, table, "day", where, deadline)
    overall = Totals()
    for totals in days.values():
        overall.merge(totals)
    by_day = _by_day(scan, table, where, days, limit, deadline=deadline)
    if group_by in _GROUP_FIELDS and grouped.table != table:
        column = column_of(_GROUP_FIELDS[group_by])
        found = None
        if kept is not None and today is not None:
            found = _kept_groups(
                scan,
                base,
                grouped,
                column=column,
                days=days,
                limit=limit,
                kept=kept,
                today=today,
                deadline=deadline,
            )
        listed, others = _apart(
            scan, base, grouped, column, overall, limit=limit, found=found, deadline=deadline
        )
        by_model = _by_model(scan, base, overall, None, limit, deadline=deadline)
        return DailyStats(overall, _ordered(listed, others, group_by), by_day, by_model)
    groups: dict[str, Totals] = {}
    rest: Totals | None = None
    column = "day"
    if group_by == "day":
        groups = days
    elif group_by == "week":
        for day, totals in days.items():
            _entry(groups, week_of(day)).merge(totals)
    elif group_by in _GROUP_FIELDS:
        column = column_of(_GROUP_FIELDS[group_by])
        groups = _top(scan, grouped.table, column, grouped.where, limit, deadline=deadline)
        rest = _remainder(overall, groups.values())
    models = groups if group_by == "model" else None
    by_model = _by_model(scan, base, overall, models, limit, deadline=deadline)
    week = group_by == "week"

    sketches = _Sketches()

    def merge(rows: Rows) -> None:
        named = groups
        fallback = rest if rest is not None else overall
        for count, (value, requests, latency, ttfc) in enumerate(rows):
            if not count % _CHECK_EVERY:
                deadline.check()
            sketches.add(
                named.get(week_of(value) if week else value) or fallback, requests, latency, ttfc
            )

    # Rows of no group listed: the rest's (grouped by a field), or every row (ungrouped; days
    # and weeks have a group for every row).
    scan(
        sql.Statement(
            f"SELECT {column}, requests, {_SKETCHES} FROM {table} "  # noqa: S608
            f"WHERE {where.text} AND {_HAVING}",
            where.params,
        ),
        deadline,
        merge,
    )
    sketches.done()
    if group_by in ("day", "week", *_GROUPED):  # the overall sketches: the groups' merged
        for totals in (*groups.values(), *([rest] if rest is not None else [])):
            overall.latency.merge(totals.latency)
            overall.ttfc.merge(totals.ttfc)
    return DailyStats(overall, _ordered(groups, rest, group_by), by_day, by_model)


def _apart(
    scan: Scan,
    base: Source,
    grouped: Source,
    column: str,
    overall: Totals,
    *,
    limit: int,
    found: tuple[dict[str, Totals], Totals] | None,
    deadline: Deadline,
) -> tuple[dict[str, Totals], Totals]:
    """Groups by a field ``base``'s table does not keep (user, key, status): the ``limit``
    busiest from ``grouped`` (or ``found``: from what was kept), the rest ``overall`` less
    them; the overall's sketches merged from every base row."""
    if found is None:
        ranked = _ranked(scan, grouped.table, column, grouped.where, limit, deadline=deadline)
        listed = _rows_of(scan, grouped, column, ranked, grouped.where, deadline=deadline)
        everything = Totals()
        _sketches(scan, base.table, base.where, everything, deadline)
    else:
        listed, everything = found
    overall.latency.merge(everything.latency)
    overall.ttfc.merge(everything.ttfc)
    rest = _remainder(overall, listed.values())
    # The rest's sketches: every call's less the listed groups' (bucket counts, exact).
    rest.latency.merge(overall.latency)
    rest.ttfc.merge(overall.ttfc)
    for totals in listed.values():
        rest.latency.subtract(totals.latency)
        rest.ttfc.subtract(totals.ttfc)
    return listed, rest


def _kept_groups(
    scan: Scan,
    base: Source,
    grouped: Source,
    *,
    column: str,
    days: dict[str, Totals],
    limit: int,
    kept: PastDays,
    today: date,
    deadline: Deadline,
) -> tuple[dict[str, Totals], Totals] | None:
    """The ``limit`` busiest groups (sums and sketches) and every call's sketches, from what
    ``kept`` has of the range's days before ``today`` (made now if it has none that is still
    exact) and today's rows; None: the database is to rank them (the range has no day before
    today, or too many groups tie with the last kept)."""
    if base.first is None or base.last is None or grouped.matches is None:
        return None
    first, last = base.first, base.last
    split = min(max(today, first), last)
    if split == first:
        return None
    signature = _signature(days, first, split)
    ranked = max(_KEPT_RANKED, _KEPT_PER_LISTED * limit)
    family = (base.table, grouped.table, column, grouped.matches, ranked)
    key = (*family, first, split)
    if kept.refused(key):
        return None
    before = grouped.between(first, split)
    entry = kept.get(key, signature)
    derived = False
    if entry is None:
        entry = _derived(
            scan,
            base,
            grouped,
            column=column,
            days=days,
            family=family,
            first=first,
            split=split,
            limit=limit,
            kept=kept,
            deadline=deadline,
        )
        derived = entry is not None
    if entry is None:
        entry = _build(
            scan,
            base,
            grouped,
            column,
            first=first,
            split=split,
            signature=signature,
            ranked=ranked,
            deadline=deadline,
        )
        kept.put(key, entry)
    now = grouped.between(split, last)
    current = _requests_by(scan, grouped.table, column, now, deadline) if split < last else {}
    current.pop(OTHER, None)

    def requests_of(values: list[str]) -> dict[str, int]:
        return _requests_of(scan, grouped, column, values, before, deadline=deadline)

    listed = _rank(entry, current, limit, requests_of)
    if listed is None and derived:  # its bound is too loose to rank: the database ranks
        entry = _build(
            scan,
            base,
            grouped,
            column,
            first=first,
            split=split,
            signature=signature,
            ranked=ranked,
            deadline=deadline,
        )
        kept.put(key, entry)
        listed = _rank(entry, current, limit, requests_of)
    if listed is None:
        kept.refuse(key)
        return None
    groups = {group: Totals() for group in listed}
    missing = [group for group in groups if group not in entry.listed]
    fetched = _rows_of(scan, grouped, column, missing, before, deadline=deadline)
    fetched.update((group, Totals()) for group in missing if group not in fetched)
    kept.keep_listed(entry, fetched)
    for group, totals in groups.items():
        totals.merge(entry.listed[group] if group in entry.listed else fetched[group])
    everything = Totals()
    everything.latency.merge(entry.everything.latency)
    everything.ttfc.merge(entry.everything.ttfc)
    if split < last:
        for group, totals in _rows_of(
            scan, grouped, column, groups, now, deadline=deadline
        ).items():
            groups[group].merge(totals)
        _sketches(scan, base.table, base.between(split, last), everything, deadline)
    return groups, everything


def _signature(days: dict[str, Totals], first: date, last: date) -> Signature:
    """The sums of the days [first, last) among ``days`` (days without calls have none)."""
    start, end = first.isoformat(), last.isoformat()
    return tuple(
        sorted((day, tuple(sums.sums)) for day, sums in days.items() if start <= day < end)
    )


def _build(
    scan: Scan,
    base: Source,
    grouped: Source,
    column: str,
    *,
    first: date,
    split: date,
    signature: Signature,
    ranked: int,
    deadline: Deadline,
) -> Kept:
    """What is kept of the days [first, split), read from the database (the ranking of every
    group of those days: most of a first answer's time)."""
    busiest = _busiest(
        scan, grouped.table, column, grouped.between(first, split), ranked + 1, deadline=deadline
    )
    complete = len(busiest) <= ranked
    if not complete:
        busiest.popitem()
    everything = Totals()
    _sketches(scan, base.table, base.between(first, split), everything, deadline)
    return Kept(signature, busiest, complete, everything)


def _derived(
    scan: Scan,
    base: Source,
    grouped: Source,
    *,
    column: str,
    days: dict[str, Totals],
    family: tuple[Any, ...],
    first: date,
    split: date,
    limit: int,
    kept: PastDays,
    deadline: Deadline,
) -> Kept | None:
    """What is kept of the days [first, split), made from an entry of other days of the same
    filter (``PastDays.nearest``: yesterday's answer's, when the day has turned) that is still
    exact: the days it has before ``first`` taken away and those it lacks before ``split``
    added, a day's rows by group each (~33,000 at 100,000 users) instead of ranking every
    group of the range again; None: there is none.

    Taking days away leaves every group's requests exact or lower: a group not kept had at
    most ``floor`` still. A day added raises the kept groups' exactly; one not kept, with
    calls that day, had at most ``floor`` plus them: the busiest of those (up to
    ``_FOLD_LOOKUPS`` with more than one call) are looked up and kept, and the floor rises by
    the most any other had. When it has risen too far to rank, ``_kept_groups`` ranks anew."""
    near = kept.nearest(family, first, split)
    if near is None:
        return None
    start, end = near
    sums = dict(days)
    if start < first:
        sums.update(_sums_by(scan, base.table, "day", base.between(start, first), deadline))
    signature = _signature(sums, start, end)
    entry = kept.get((*family, start, end), signature)
    if entry is None:
        return None
    busiest = dict(entry.busiest)
    listed = {group: _copy(totals) for group, totals in entry.listed.items()}
    everything = _copy(entry.everything)
    bound = entry.floor
    if start < first and not _taken_away(
        scan,
        base,
        grouped,
        column=column,
        days=(start, first),
        sums=sums,
        busiest=busiest,
        listed=listed,
        everything=everything,
        deadline=deadline,
    ):
        return None
    if end < split:
        bound += _added(
            scan,
            grouped,
            column=column,
            days=(end, split),
            complete=entry.complete,
            busiest=busiest,
            whole=grouped.between(first, split),
            deadline=deadline,
        )
    ordered = sorted(
        ((group, count) for group, count in busiest.items() if count > 0),
        key=lambda item: -item[1],
    )
    if not entry.complete and (len(ordered) < limit or bound >= ordered[limit - 1][1]):
        return None  # too loose to rank ``limit`` groups whatever today's calls: rank anew
    if end < split:
        new = grouped.between(end, split)
        for group, totals in _rows_of(
            scan, grouped, column, listed, new, deadline=deadline
        ).items():
            listed[group].merge(totals)
        _sketches(scan, base.table, base.between(end, split), everything, deadline)
    made = Kept(
        _signature(days, first, split), dict(ordered), entry.complete, everything, bound=bound
    )
    kept.put((*family, first, split), made)
    kept.keep_listed(made, listed)
    return made


def _taken_away(
    scan: Scan,
    base: Source,
    grouped: Source,
    *,
    column: str,
    days: tuple[date, date],
    sums: dict[str, Totals],
    busiest: dict[str, int],
    listed: dict[str, Totals],
    everything: Totals,
    deadline: Deadline,
) -> bool:
    """Take the calls of ``days`` away from what an entry kept (its ``busiest`` groups',
    ``listed`` groups' and ``everything``); False: a call was stored on those days since their
    ``sums`` were compared with the entry's (what was taken is not what it had)."""
    gone = grouped.between(*days)
    for group, count in _requests_by(scan, grouped.table, column, gone, deadline).items():
        if group in busiest:
            busiest[group] -= count
    for group, totals in _rows_of(scan, grouped, column, listed, gone, deadline=deadline).items():
        _take(listed[group], totals)
    old = Totals()
    _sketches(scan, base.table, base.between(*days), old, deadline)
    _take(everything, old)
    again = _sums_by(scan, base.table, "day", base.between(*days), deadline)
    return _signature(again, *days) == _signature(sums, *days)


def _added(
    scan: Scan,
    grouped: Source,
    *,
    column: str,
    days: tuple[date, date],
    complete: bool,
    busiest: dict[str, int],
    whole: sql.Statement,
    deadline: Deadline,
) -> int:
    """Add the requests of ``days`` to an entry's ``busiest`` groups (every group with calls
    then too if it is ``complete``); the others' busiest of those days (``_FOLD_LOOKUPS``) are
    looked up over the ``whole`` range and kept. What the floor rises by: the most requests
    one of the rest had on those days."""
    others: dict[str, int] = {}
    added = _requests_by(scan, grouped.table, column, grouped.between(*days), deadline)
    added.pop(OTHER, None)
    for group, count in added.items():
        if group in busiest:
            busiest[group] += count
        elif complete:  # it had no calls before
            busiest[group] = count
        else:
            others[group] = count
    heavy = sorted((group for group in others if others[group] > 1), key=others.__getitem__)
    heavy = heavy[-_FOLD_LOOKUPS:]
    if heavy:
        busiest.update(_requests_of(scan, grouped, column, heavy, whole, deadline=deadline))
        for group in heavy:
            del others[group]
    return max(others.values(), default=0)


def _copy(totals: Totals) -> Totals:
    copied = Totals()
    copied.merge(totals)
    return copied


def _take(totals: Totals, part: Totals) -> None:
    """Take ``part``'s calls (some of ``totals``') away, sums and sketches."""
    totals.subtract(part)
    totals.latency.subtract(part.latency)
    totals.ttfc.subtract(part.ttfc)


def _rank(
    entry: Kept,
    current: dict[str, int],
    limit: int,
    requests_of: Callable[[list[str]], dict[str, int]],
) -> list[str] | None:
    """The ``limit`` busiest groups of the days kept and today (``current``: today's requests
    by group), the unnamed last of a tie, then by name (code points, as SQLite's ``ORDER BY``);
    None: too many groups tie with the last kept for it to say which.

    A group not kept had at most ``entry.floor`` requests on those days: it is asked for
    (``requests_of``, a seek per day) only if that and today's could reach the ``limit``-th."""
    floor = entry.floor
    busiest = entry.busiest
    # Kept groups without calls today after the limit-th kept (and its ties) cannot pass it.
    counts = list(busiest.values())
    end = len(counts)
    if end > limit:
        end = limit
        while end < len(counts) and counts[end] == counts[limit - 1]:
            end += 1
    total = {group: busiest[group] for group in itertools.islice(busiest, end)}
    unsure: dict[str, int] = {}
    for group, count in current.items():
        if group in busiest:
            total[group] = busiest[group] + count
        else:
            unsure[group] = count
    if entry.complete:  # no other group had calls then
        total.update(unsure)
        unsure = {}
    ranked = sorted(total, key=lambda group: (-total[group], group == "", group))
    # The limit-th's requests: a group neither kept nor of today can have as many only if
    # the floor is that high (then which of them rank first is unknown here).
    edge = total[ranked[limit - 1]] if len(ranked) >= limit else 0
    if not entry.complete and floor >= edge:
        return None
    maybe = sorted(group for group, count in unsure.items() if floor + count >= edge)
    if maybe:
        before = requests_of(maybe)
        total.update((group, before.get(group, 0) + unsure[group]) for group in maybe)
        ranked = sorted(total, key=lambda group: (-total[group], group == "", group))
    return ranked[:limit]


def _busiest(
    scan: Scan, table: str, column: str, where: sql.Statement, count: int, *, deadline: Deadline
) -> dict[str, int]:
    """The ``count`` busiest values of ``column`` but ``other`` and their requests, busiest
    first (ties in the database's order)."""
    found: dict[str, int] = {}

    def add(rows: Rows) -> None:
        found.update((row[0], int(row[1])) for row in rows)

    scan(
        sql.Statement(
            f"SELECT {column}, SUM(requests) FROM {table} WHERE {where.text} "  # noqa: S608
            f"AND {column} <> ? GROUP BY {column} ORDER BY SUM(requests) DESC LIMIT ?",
            (*where.params, OTHER, count),
        ),
        deadline,
        add,
    )
    return found


def _requests_of(
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
    for start in range(0, len(values), _IN_CHUNK):
        chunk = values[start : start + _IN_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        found.update(
            _requests_by(
                scan,
                source.table,
                column,
                sql.Statement(f"{where.text} AND {column} IN ({marks})", (*where.params, *chunk)),
                deadline,
            )
        )
    return found


def _requests_by(
    scan: Scan, table: str, column: str, where: sql.Statement, deadline: Deadline
) -> dict[str, int]:
    """Each value of ``column``'s requests in the rows ``where`` selects."""
    found: dict[str, int] = {}

    def add(rows: Rows) -> None:
        for count, row in enumerate(rows):
            if not count % _CHECK_EVERY:
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


def _rows_of(
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
    found: dict[str, Totals] = {}
    values = sorted(values)
    if not values:
        return found

    def add(rows: Rows) -> None:
        for row in rows:
            _entry(found, row[0]).add_sums(row[1:])

    sketches = _Sketches()

    def merge(rows: Rows) -> None:
        for count, (value, requests, latency, ttfc) in enumerate(rows):
            if not count % _CHECK_EVERY:
                deadline.check()
            sketches.add(found[value], requests, latency, ttfc)

    condition = f"{where.text} AND {column} IN ({', '.join('?' for _ in values)})"
    params = (*where.params, *values)
    table = source.table
    scan(
        sql.Statement(
            f"SELECT {column}, {_SUMS} FROM {table} WHERE {condition} GROUP BY {column}",  # noqa: S608
            params,
        ),
        deadline,
        add,
    )
    scan(
        sql.Statement(
            f"SELECT {column}, requests, {_SKETCHES} FROM {table} "  # noqa: S608
            f"WHERE {condition} AND {_HAVING}",
            params,
        ),
        deadline,
        merge,
    )
    sketches.done()
    return found


def _sketches(
    scan: Scan, table: str, where: sql.Statement, into: Totals, deadline: Deadline
) -> None:
    """Merge the sketches of the rows ``where`` selects into ``into``."""
    latency, ttfc = BytesSum(into.latency), BytesSum(into.ttfc)

    def merge(rows: Rows) -> None:
        for count, (requests, latency_bytes, ttfc_bytes) in enumerate(rows):
            if not count % _CHECK_EVERY:
                deadline.check()
            latency.add(latency_bytes, requests)
            ttfc.add(ttfc_bytes, requests)

    scan(
        sql.Statement(
            f"SELECT requests, {_SKETCHES} FROM {table} WHERE {where.text} AND {_HAVING}",  # noqa: S608
            where.params,
        ),
        deadline,
        merge,
    )
    latency.done()
    ttfc.done()


class _Sketches:
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


def _by_model(
    scan: Scan,
    base: Source,
    overall: Totals,
    models: dict[str, Totals] | None,
    limit: int,
    *,
    deadline: Deadline,
) -> list[dict[str, Any]]:
    """The ``limit`` busiest models (``models``: already summed) and the rest as ``other``;
    from the base table, which keeps the model (every daily table does)."""
    if models is None:
        models = _top(scan, base.table, "model", base.where, limit, deadline=deadline)
    by_model = [_model_entry(model, totals) for model, totals in _ordered(models, None, "model")]
    others = _remainder(overall, models.values())
    if others.requests:
        by_model.append(_model_entry(OTHER, others))
    return by_model


def _sums_by(
    scan: Scan, table: str, column: str, where: sql.Statement, deadline: Deadline
) -> dict[str, Totals]:
    found: dict[str, Totals] = {}

    def add(rows: Rows) -> None:
        for row in rows:
            _entry(found, row[0]).add_sums(row[1:])

    scan(
        sql.Statement(
            f"SELECT {column}, {_SUMS} FROM {table} WHERE {where.text} GROUP BY {column}",  # noqa: S608
            where.params,
        ),
        deadline,
        add,
    )
    return found


def _top(
    scan: Scan, table: str, column: str, where: sql.Statement, limit: int, *, deadline: Deadline
) -> dict[str, Totals]:
    """The ``limit`` busiest values of ``column`` and their sums (``other`` never among them:
    it is the remainder's name)."""
    listed = _ranked(scan, table, column, where, limit, deadline=deadline)
    found: dict[str, Totals] = {}
    if not listed:
        return found

    def add(rows: Rows) -> None:
        for row in rows:
            _entry(found, row[0]).add_sums(row[1:])

    marks = ", ".join("?" for _ in listed)
    scan(
        sql.Statement(
            f"SELECT {column}, {_SUMS} FROM {table} "  # noqa: S608
            f"WHERE {where.text} AND {column} IN ({marks}) GROUP BY {column}",
            (*where.params, *listed),
        ),
        deadline,
        add,
    )
    return found


def _ranked(
    scan: Scan, table: str, column: str, where: sql.Statement, limit: int, *, deadline: Deadline
) -> list[str]:
    """The ``limit`` busiest values of ``column`` but ``other``. Ranked on the request count
    alone, then summed for the values listed only: by user, the range has a row per user and
    day (100,000 a day), and adding up every sum of every user was most of the time."""
    ranked: list[str] = []

    def rank(rows: Rows) -> None:
        ranked.extend(row[0] for row in rows if row[0] != OTHER)

    scan(
        sql.Statement(
            f"SELECT {column} FROM {table} WHERE {where.text} "  # noqa: S608
            f"GROUP BY {column} ORDER BY ({column} = ?), SUM(requests) DESC, ({column} = ?), "
            f"{column} LIMIT ?",
            (*where.params, OTHER, "", limit + 1),
        ),
        deadline,
        rank,
    )
    return ranked[:limit]


def _by_day(
    scan: Scan,
    table: str,
    where: sql.Statement,
    days: dict[str, Totals],
    limit: int,
    *,
    deadline: Deadline,
) -> list[dict[str, Any]]:
    """Each day's totals and its ``limit`` busiest models (the rest as one ``other``)."""
    models: dict[str, dict[str, Totals]] = {day: {} for day in days}
    names = ", ".join(f"s{index}" for index in range(len(_SUMMED)))
    inner = ", ".join(f"SUM({name}) AS s{index}" for index, name in enumerate(_SUMMED))

    def add(rows: Rows) -> None:
        for row in rows:
            if row[1] != OTHER:
                _entry(models[row[0]], row[1]).add_sums(row[2:])

    scan(
        sql.Statement(
            f"SELECT day, model, {names} FROM (SELECT day, model, {inner}, "  # noqa: S608
            "ROW_NUMBER() OVER (PARTITION BY day ORDER BY (model = ?), SUM(requests) DESC, "
            f"(model = ?), model) AS place FROM {table} WHERE {where.text} GROUP BY day, model"
            ") AS ranked WHERE place <= ?",
            (OTHER, "", *where.params, limit),
        ),
        deadline,
        add,
    )
    answer = []
    for day, totals in sorted(days.items()):
        answer.append(
            {
                "date": day,
                "requests": totals.requests,
                "tokens": totals.tokens,
                "cost": totals.cost(),
                "error_rate": totals.error_rate(),
                "cache_hit_rate": totals.cache_hit_rate(),
                **totals.billing(),
                "models": model_entries(totals, models[day]),
            }
        )
    return answer


def model_entries(whole: Totals, models: dict[str, Totals]) -> list[dict[str, Any]]:
    """A day's or an hour's models (``models``: some of ``whole``'s calls by model), the
    busiest first, and the rest of ``whole`` as one ``other``."""
    listed = sorted(models.items(), key=lambda item: (-item[1].requests, item[0]))
    entries = [_model_entry(model or None, entry) for model, entry in listed]
    rest = _remainder(whole, models.values())
    if rest.requests:
        entries.append(_model_entry(OTHER, rest))
    return entries


def _model_entry(model: str | None, totals: Totals) -> dict[str, Any]:
    return {
        "model": model,
        "requests": totals.requests,
        "tokens": totals.tokens,
        "cost": totals.cost(),
    }


def _remainder(whole: Totals, parts: Iterable[Totals]) -> Totals:
    """``whole``'s sums less the parts' (its sketches left for the caller to merge)."""
    rest = Totals()
    rest.sums = list(whole.sums)
    rest.latency_sum = whole.latency_sum
    for part in parts:
        rest.subtract(part)
    return rest


def _ordered(
    groups: dict[str, Totals], rest: Totals | None, group_by: str | None
) -> list[tuple[str | None, Totals]]:
    if group_by in ("day", "week"):
        return sorted(groups.items())
    # The busiest first; ties (and the unnamed) by name; the rest last.
    ordered: list[tuple[str | None, Totals]] = [
        (key or None, totals)
        for key, totals in sorted(
            groups.items(), key=lambda item: (-item[1].requests, item[0] == "", item[0])
        )
    ]
    if rest is not None and rest.requests:
        ordered.append((OTHER, rest))
    return ordered


def _entry(table: dict[str, Totals], key: str) -> Totals:
    entry = table.get(key)
    if entry is None:
        entry = table[key] = Totals()
    return entry
