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
while it is exact (``pastdays.py``, ``pastranking.py``): ranking 100,000 users over 30 days is
a ``GROUP BY`` over ~1,000,000 rows, done once a day instead of per answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from otel_llm.calllog import sql
from otel_llm.calllog.cardinality import OTHER
from otel_llm.calllog.catalogue import (
    ROLLUPS,
    STATS_MATCHES,
    Rollup,
    column_of,
)
from otel_llm.calllog.dailyranks import Later, Write
from otel_llm.calllog.dailyrows import (
    CHECK_EVERY,
    HAVING,
    SKETCHES,
    SUMMED,
    SUMS,
    Deadline,
    Rows,
    Scan,
    SketchSums,
    Source,
    add_sketches,
    days_and,
    group_totals,
    matches,
    rows_of_groups,
    sums_by,
)
from otel_llm.calllog.pastdays import PastDays
from otel_llm.calllog.pastranking import kept_groups
from otel_llm.calllog.query import CallFilter, QueryError
from otel_llm.calllog.rollup import Totals, week_of

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
    return days_and(rollup.capped is not None, start.date(), end.date(), matches(call_filter))


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
    write: Write | None = None,
    later: Later | None = None,
) -> DailyStats:
    """Totals of the ``base`` rows, their groups (``group_by``: day, week, or a field; hour and
    None: no groups here) and the by_day breakdown. Groups by a field come from ``grouped``:
    the same calls in a table that keeps the field (by user: 100,000 users' rows a day), read
    for the ``limit`` busiest values and their sketches only; the rest is ``base`` less them.
    With ``kept``, those of the days before ``today`` come from what earlier answers kept of
    them while still exact (``pastdays.py``), and only today's rows are read; with ``write``
    too, an answer with nothing kept ranks them from the days' ranks (``dailyranks.py``), and
    ``later`` (the store's job) writes those missing, and the day that closed after the first
    answer of a day."""
    table, where = base.table, base.where
    days = sums_by(scan, table, "day", where, deadline)
    overall = Totals()
    for totals in days.values():
        overall.merge(totals)
    by_day = _by_day(scan, table, where, days, limit, deadline=deadline)
    if group_by in _GROUP_FIELDS and grouped.table != table:
        column = column_of(_GROUP_FIELDS[group_by])
        found = None
        if kept is not None and today is not None:
            found = kept_groups(
                scan,
                base,
                grouped,
                column=column,
                days=days,
                limit=limit,
                kept=kept,
                today=today,
                deadline=deadline,
                write=write,
                later=later,
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
            group_totals(groups, week_of(day)).merge(totals)
    elif group_by in _GROUP_FIELDS:
        column = column_of(_GROUP_FIELDS[group_by])
        groups = _top(scan, grouped.table, column, grouped.where, limit, deadline=deadline)
        rest = _remainder(overall, groups.values())
    models = groups if group_by == "model" else None
    by_model = _by_model(scan, base, overall, models, limit, deadline=deadline)
    week = group_by == "week"

    sketches = SketchSums()

    def merge(rows: Rows) -> None:
        named = groups
        fallback = rest if rest is not None else overall
        for count, (value, requests, latency, ttfc) in enumerate(rows):
            if not count % CHECK_EVERY:
                deadline.check()
            sketches.add(
                named.get(week_of(value) if week else value) or fallback, requests, latency, ttfc
            )

    # Rows of no group listed: the rest's (grouped by a field), or every row (ungrouped; days
    # and weeks have a group for every row).
    scan(
        sql.Statement(
            f"SELECT {column}, requests, {SKETCHES} FROM {table} "  # noqa: S608
            f"WHERE {where.text} AND {HAVING}",
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
        listed = rows_of_groups(scan, grouped, column, ranked, grouped.where, deadline=deadline)
        everything = Totals()
        add_sketches(scan, base.table, base.where, everything, deadline)
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
            group_totals(found, row[0]).add_sums(row[1:])

    marks = ", ".join("?" for _ in listed)
    scan(
        sql.Statement(
            f"SELECT {column}, {SUMS} FROM {table} "  # noqa: S608
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
    names = ", ".join(f"s{index}" for index in range(len(SUMMED)))
    inner = ", ".join(f"SUM({name}) AS s{index}" for index, name in enumerate(SUMMED))

    def add(rows: Rows) -> None:
        for row in rows:
            if row[1] != OTHER:
                group_totals(models[row[0]], row[1]).add_sums(row[2:])

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
