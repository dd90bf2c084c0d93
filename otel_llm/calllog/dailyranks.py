"""Each past day's requests by user and by API key, kept narrow and in the value's order.

Ranking 100,000 users over 30 days from the table by user groups ~1,000,000 wide daily rows by
user: SQLite sorts them (~400 ms), the first answer after a restart's most. The ranking only
needs each value's requests, so each past day's are written once, after the day closed, to
``DAILY_RANKS`` (schema v10), keyed (dimension, value, day): a range's sums come out of its
narrow rows in the value's order, without a sort (~150 ms).

Written by the store's job (a thread of its own, ``Later``), never by the writer nor on an
answer's path, one statement a day: when the store opens (``catch_up_window``: the days a
restart or an upgrade finds unwritten), at the store's first write of a day and after the first
answer of a day (made from yesterday's entry in memory: the day that closed), and when a
ranking finds a day of its range missing (or changed; the daily rows rank that answer, as
before the ranks). The days out of the window (``RANKED_DAYS``) are deleted a week at a time. A
day is only ever read while exact: the same statement writes the day's total as a row of its
own, and a ranking is used only if every day's total equals the day's calls in the daily table
(``days``: read by the same answer) before and after it is read. Daily rows are only added to,
so equal totals mean the same rows (a late call of a past day has the day written again, once a
ranking found it changed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from otel_llm.calllog import sql
from otel_llm.calllog.cardinality import OTHER
from otel_llm.calllog.dailyrows import Deadline, Scan, counted, days_and, sums_by
from otel_llm.calllog.rollup import Totals
from otel_llm.calllog.schema import DAILY, DAILY_API_KEY, DAILY_RANKS, DAILY_USER

RANKED_DAYS = 31
"""How many days before today are kept (the longest range ranked from them: the default 30
days and a month's): a ranking reads every day kept of its dimension."""

FORGET_AFTER = 7
"""Days out of the window kept until they are deleted at once (``_forget_before``); a ranking
reads them too (up to ~20 % more rows)."""
MIN_DAYS = RANKED_DAYS // 2
"""The fewest days ranked from the kept ones: a ranking reads all of them (~6 ms a day at
100,000 users), the daily rows only the range's (~14 ms a day, sorted): by user over 7 days
the daily rows were faster (~170 against ~185 ms)."""

TABLES = {"user_id": DAILY_USER, "api_key_id": DAILY_API_KEY}
"""The columns kept, and their daily tables."""

Write = Callable[[sql.Statement], bool]
"""Runs one write; False: the database refused it for now (read-only, busy) or the store is
closing."""
Later = Callable[[Callable[[], None]], None]
"""Runs a job off the request path (the store's thread; not if one is running: the next
answer to find a day missing asks again)."""


def catch_up(
    scan: Scan,
    write: Write,
    *,
    column: str,
    days: dict[str, Totals],
    first: date,
    split: date,
    today: date,
) -> None:
    """Write the days of [first, split) whose ranks are missing or have other totals than
    ``days`` (their sums, as an answer read them), if a ranking would read them: the store's
    job (``Later``), never an answer. Stops at a refused write (read-only, busy, closing)."""
    ranged = _ranged(column, days, first, split, today)
    if ranged is None:
        return
    start, end, wanted = ranged
    kept = _totals(scan, column, start, end, Deadline(None))
    if kept.keys() - wanted.keys():
        return  # a kept day has no calls now: never ranked from, whatever is written
    missing = sorted(day for day in wanted if kept.get(day) != wanted[day])
    for day in missing:  # ~200 ms a day at 100,000 users; 31 days after an upgrade
        if not write(_written(column, day)):
            return
    if missing:
        _forget_before(scan, write, column, today - timedelta(days=RANKED_DAYS), Deadline(None))


def catch_up_window(scan: Scan, write: Write, *, first: date, today: date) -> None:
    """``catch_up`` every kept column over the days [first, today) (the window's, or those
    after an upgrade's last partial day): the store's job when it opens, so that the first
    rankings after a restart find the days no answer had written."""
    if first >= today:
        return
    where = days_and(False, first, today, sql.Statement("", ()))
    days = sums_by(scan, DAILY, "day", where, Deadline(None))
    for column in TABLES:
        catch_up(scan, write, column=column, days=days, first=first, split=today, today=today)


def _ranged(
    column: str, days: dict[str, Totals], first: date, split: date, today: date
) -> tuple[str, str, dict[str, int]] | None:
    """The days [first, split) as text and the calls of each that had any (``days``: their
    sums), if ``column``'s ranking of them reads the kept days (``catch_up`` writes what
    ``busiest`` reads); None: the daily rows rank them."""
    kept_for = first >= today - timedelta(days=RANKED_DAYS) and split <= today
    if column not in TABLES or not kept_for or (split - first).days < MIN_DAYS:
        return None
    start, end = first.isoformat(), split.isoformat()
    wanted = {
        day: sums.requests for day, sums in days.items() if start <= day < end and sums.requests
    }
    return start, end, wanted


def busiest(
    scan: Scan,
    *,
    column: str,
    days: dict[str, Totals],
    first: date,
    split: date,
    today: date,
    count: int,
    deadline: Deadline,
    ask: Callable[[], None],
) -> dict[str, int] | None:
    """The ``count`` busiest values of ``column`` but ``other`` over the days [first, split)
    and their requests, busiest first (ties in the database's order), from the kept days
    (``days``: every day's sums of the range, unfiltered); None: the daily rows are to rank
    them (a column or range not kept, a day not written or changed meanwhile). Days not
    written (or written with other totals): ``ask`` has the store's job write them
    (``catch_up``), off this answer's path."""
    ranged = _ranged(column, days, first, split, today)
    if ranged is None:
        return None
    start, end, wanted = ranged
    if _totals(scan, column, start, end, deadline) != wanted:
        ask()
        return None
    found = counted(
        scan,
        sql.Statement(
            f"SELECT name, SUM(requests) FROM {DAILY_RANKS} WHERE dimension = ? "  # noqa: S608
            "AND day >= ? AND day < ? AND name <> ? GROUP BY name "
            "ORDER BY SUM(requests) DESC LIMIT ?",
            (column, start, end, OTHER, count),
        ),
        deadline,
    )
    # Read again after: what was ranked had these totals too (they only grow, together).
    if _totals(scan, column, start, end, deadline) != wanted:
        return None
    return found


def _total(column: str) -> str:
    """The dimension of ``column``'s day totals."""
    return f"{column} total"


def _totals(scan: Scan, column: str, start: str, end: str, deadline: Deadline) -> dict[str, int]:
    """The requests of each kept day of [start, end), as they were when it was written."""
    return counted(
        scan,
        sql.Statement(
            f"SELECT day, requests FROM {DAILY_RANKS} WHERE dimension = ? "  # noqa: S608
            "AND name = '' AND day >= ? AND day < ?",
            (_total(column), start, end),
        ),
        deadline,
    )


def _written(column: str, day: str) -> sql.Statement:
    """One statement (one snapshot) writing ``day``'s requests by value and its total; a day
    written again is overwritten (its values can only have grown in number and requests)."""
    table = TABLES[column]
    return sql.Statement(
        f"INSERT INTO {DAILY_RANKS} (dimension, name, day, requests) "  # noqa: S608
        "SELECT dimension, name, day, requests FROM ("
        f"SELECT CAST(? AS TEXT) AS dimension, {column} AS name, day, SUM(requests) AS requests "
        f"FROM {table} WHERE day = ? GROUP BY {column}, day "
        "UNION ALL SELECT CAST(? AS TEXT), '', CAST(? AS TEXT), SUM(requests) "
        f"FROM {table} WHERE day = ?"
        ") AS made WHERE requests IS NOT NULL "
        "ON CONFLICT (dimension, name, day) DO UPDATE SET requests = excluded.requests",
        (column, day, _total(column), day, day),
    )


def _forget_before(scan: Scan, write: Write, column: str, first: date, deadline: Deadline) -> None:
    """Delete the kept days before ``first`` (the window's) once the oldest is
    ``FORGET_AFTER`` days older: a day's rows are on every leaf page of the dimension (~0.5 s
    to delete one day at 100,000 users, about as long as several), so a week at a time."""
    oldest: list[str | None] = []
    scan(
        sql.Statement(
            f"SELECT MIN(day) FROM {DAILY_RANKS} WHERE dimension = ? AND name = ''",  # noqa: S608
            (_total(column),),
        ),
        deadline,
        lambda rows: oldest.extend(row[0] for row in rows),
    )
    due = (first - timedelta(days=FORGET_AFTER)).isoformat()
    if not oldest or oldest[0] is None or oldest[0] >= due:
        return
    write(
        sql.Statement(
            f"DELETE FROM {DAILY_RANKS} WHERE dimension IN (?, ?) AND day < ?",  # noqa: S608
            (column, _total(column), first.isoformat()),
        )
    )
