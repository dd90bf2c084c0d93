"""The past days' ranks by user and by API key (``dailyranks.py``, schema v10).

Checked on SQLite and the real PostgreSQL: the ranks written equal the daily rows' sums by
value and day; an answer with nothing kept ranks from them, also after a restart, and equals
the database's ranking of the daily rows and the sums of the records; late calls of a past day
have the day written again; days out of the window are deleted; a filtered range or one
reaching past the window is ranked from the daily rows; ranks that changed after the answer's
sums were read are not used.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from otel_llm.calllog import dailyranks
from otel_llm.calllog.dailyrows import Deadline, sums_by
from otel_llm.calllog.pastdays import PastDays
from otel_llm.calllog.query import CallFilter, StatsQuery
from otel_llm.calllog.record import CallRecord
from otel_llm.calllog.schema import DAILY, DAILY_RANKS
from otel_llm.calllog.sql import Statement
from otel_llm.calllog.store import SQLCallStore, open_store
from tests.support.clock import SettableClock
from tests.support.postgres import BACKENDS, empty_store_url, pg_cluster  # noqa: F401
from tests.test_calllog_pastdays import (
    assert_same,
    calls,
    check_groups,
    late,
    spy_on,
    uncached,
)
from tests.test_calllog_store import NOW

COLUMN = {"user": "user_id", "api_key": "api_key_id"}
DAYS = dailyranks.MIN_DAYS + 5
"""Ranges of this many days (``calls``' 10 days and more): long enough to rank from the ranks."""
RANGE = CallFilter(start=NOW - timedelta(days=DAYS))


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(NOW)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return empty_store_url(request.param, request, tmp_path_factory.mktemp("ranks"))


@pytest.fixture
def store(url: str, clock: SettableClock) -> Iterator[SQLCallStore]:
    opened = open_store(url, clock=clock)
    try:
        yield opened
    finally:
        opened.close()


def cold(store: SQLCallStore, query: StatsQuery) -> dict[str, Any]:
    """The answer with nothing kept in memory (a restarted store's first)."""
    store._past_days = PastDays()
    return store.stats(query)


def kept_ranks(store: SQLCallStore, column: str) -> dict[tuple[str, str], int]:
    """The ranks written: (value, day) -> requests."""
    rows = store._read(
        Statement(
            f"SELECT name, day, requests FROM {DAILY_RANKS} WHERE dimension = ?",  # noqa: S608
            (column,),
        )
    )
    return {(name, day): int(requests) for name, day, requests in rows}


def daily_sums(store: SQLCallStore, group_by: str, before: str) -> dict[tuple[str, str], int]:
    """What the daily rows add up to by value and day, for the days before ``before``."""
    column = COLUMN[group_by]
    table = dailyranks.TABLES[column]
    rows = store._read(
        Statement(
            f"SELECT {column}, day, SUM(requests) FROM {table} "  # noqa: S608
            f"WHERE day < ? GROUP BY {column}, day",
            (before,),
        )
    )
    return {(value, day): int(requests) for value, day, requests in rows}


def spy_on_writes(store: SQLCallStore) -> list[str]:
    """The statements ``store``'s stats write from now on (the ranks)."""
    written: list[str] = []
    write = store._write_ranks

    def spy(statement: Statement) -> bool:
        written.append(statement.text)
        return write(statement)

    store._write_ranks = spy  # type: ignore[method-assign]
    return written


def ranked_from(read: list[str]) -> set[str]:
    """Where the statements ``read`` ranked the range's groups from."""
    tables = {*dailyranks.TABLES.values(), DAILY_RANKS}
    return {
        table for text in read if "LIMIT" in text for table in tables if f"FROM {table} " in text
    }


def query(group_by: str, **fields: Any) -> StatsQuery:
    return StatsQuery(filter=replace(RANGE, **fields), group_by=group_by, limit=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("group_by", ["user", "api_key"])
def test_ranks_equal_the_daily_rows_after_late_calls_and_a_restart(
    url: str, clock: SettableClock, group_by: str
) -> None:
    records = calls(400)
    today = NOW.date().isoformat()
    store = open_store(url, clock=clock)
    try:
        store.write(records)
        read = spy_on(store)
        answer = cold(store, query(group_by))
        assert ranked_from(read) == {DAILY_RANKS}
        assert kept_ranks(store, COLUMN[group_by]) == daily_sums(store, group_by, today)
        check_groups(answer, records, group_by)
        assert_same(answer, uncached(store, query(group_by)))
        # Late calls of two past days: new values and known ones, the day written again.
        lately = [
            late(record, index, user=f"late-{index % 3}", api_key_id=f"kl-{index % 2}")
            for index, record in enumerate(records[:40])
            if record.created_at.date() < NOW.date()
        ] + [late(record, 100 + index) for index, record in enumerate(records[40:60])]
        store.write(lately)
        records += lately
        answer = cold(store, query(group_by))
        assert kept_ranks(store, COLUMN[group_by]) == daily_sums(store, group_by, today)
        check_groups(answer, records, group_by)
        assert_same(answer, uncached(store, query(group_by)))
    finally:
        store.close()
    store = open_store(url, clock=clock)  # a restart: nothing kept in memory
    try:
        read = spy_on(store)
        written = spy_on_writes(store)
        answer = store.stats(query(group_by))
        assert ranked_from(read) == {DAILY_RANKS}
        assert not written
        check_groups(answer, records, group_by)
        assert_same(answer, uncached(store, query(group_by)))
    finally:
        store.close()


def test_days_out_of_the_window_are_deleted(store: SQLCallStore, clock: SettableClock) -> None:
    records = calls(300)
    store.write(records)
    cold(store, query("user"))
    first = min(day for _, day in kept_ranks(store, "user_id"))
    # Time passes: the window's first day is after the first day written.
    clock.now = NOW + timedelta(days=dailyranks.RANKED_DAYS + dailyranks.FORGET_AFTER - 2)
    later = [
        late(record, index, created_at=clock.now - timedelta(hours=30))
        for index, record in enumerate(records[:20])
    ]
    store.write(later)
    records += later
    recent = StatsQuery(filter=CallFilter(start=clock.now - timedelta(days=DAYS)), group_by="user")
    read = spy_on(store)
    answer = cold(store, recent)
    assert ranked_from(read) == {DAILY_RANKS}
    kept_days = {day for _, day in kept_ranks(store, "user_id")}
    window = (clock.now.date() - timedelta(days=dailyranks.RANKED_DAYS)).isoformat()
    assert first < window <= min(kept_days)
    check_groups(answer, records, "user")
    assert_same(answer, uncached(store, recent))
    # A range reaching before the window: ranked from the daily rows, exact as ever.
    whole = StatsQuery(filter=CallFilter(start=NOW - timedelta(days=12)), group_by="user")
    read = spy_on(store)
    answer = cold(store, whole)
    assert ranked_from(read) == {dailyranks.TABLES["user_id"]}
    check_groups(answer, records, "user")
    assert_same(answer, uncached(store, whole))


@pytest.mark.parametrize(
    "fields",
    [
        {"projects": frozenset({"alpha"})},
        {"status": "error"},
        {"start": NOW - timedelta(days=dailyranks.MIN_DAYS - 1)},
    ],
    ids=["project", "errors", "fewer-days"],
)
def test_a_filtered_or_short_range_is_ranked_from_the_daily_rows(
    store: SQLCallStore, fields: dict[str, Any]
) -> None:
    records = calls(300)
    store.write(records)
    read = spy_on(store)
    answer = cold(store, query("user", **fields))
    assert ranked_from(read) == {dailyranks.TABLES["user_id"]}
    assert not kept_ranks(store, "user_id")
    assert_same(answer, uncached(store, query("user", **fields)))


def test_ranks_newer_than_the_answers_sums_are_not_used(store: SQLCallStore) -> None:
    """The answer read its days' sums; a late call of a past day was stored and its day
    written again (by another answer) before it ranked: its ranks are not those sums'."""
    records = calls(300)
    store.write(records)
    cold(store, query("user"))
    first, split = (NOW - timedelta(days=DAYS)).date(), NOW.date()
    scan = store._scan
    deadline = Deadline(None)

    def sums() -> dict[str, Any]:
        where = Statement("day >= ? AND day < ?", (first.isoformat(), split.isoformat()))
        return sums_by(scan, DAILY, "day", where, deadline)

    def busiest(days: dict[str, Any]) -> dict[str, int] | None:
        return dailyranks.busiest(
            scan,
            store._write_ranks,
            column="user_id",
            days=days,
            first=first,
            split=split,
            today=split,
            count=100,
            deadline=deadline,
        )

    before = sums()
    assert busiest(before) is not None
    past = next(record for record in records if record.created_at.date() < split)
    store.write([late(past, 1, user="newcomer")])
    assert busiest(sums()) is not None  # the day written again, with the newcomer
    assert "newcomer" in kept_ranks_of(store)
    assert busiest(before) is None


def kept_ranks_of(store: SQLCallStore) -> set[str]:
    return {name for name, _ in kept_ranks(store, "user_id")}


def test_records_of_no_user_are_ranked_as_the_unnamed(store: SQLCallStore) -> None:
    """The unnamed user ('' in the daily rows) is a value like any other, apart from the
    days' totals."""
    records: list[CallRecord] = [replace(record, user=None) for record in calls(120)]
    records += calls(60, seed=5)
    store.write(records)
    answer = cold(store, query("user"))
    check_groups(answer, records, "user")
    assert_same(answer, uncached(store, query("user")))
    assert ("", (NOW - timedelta(days=1)).date().isoformat()) in kept_ranks(store, "user_id")


def test_each_answer_writes_within_a_third_of_its_budget(store: SQLCallStore) -> None:
    """Days left unwritten (a spent budget) are ranked from the daily rows this time."""
    store.write(calls(300))
    spent = Deadline(10.0)
    spent.at -= 4.0  # type: ignore[operator]
    first, split = (NOW - timedelta(days=DAYS)).date(), NOW.date()
    where = Statement("day >= ? AND day < ?", (first.isoformat(), split.isoformat()))
    days = sums_by(store._scan, DAILY, "day", where, Deadline(None))
    kwargs: dict[str, Any] = {"column": "user_id", "first": first, "split": split}
    found = dailyranks.busiest(
        store._scan, store._write_ranks, days=days, today=split, count=10, deadline=spent, **kwargs
    )
    assert found is None
    assert not kept_ranks(store, "user_id")
    found = dailyranks.busiest(
        store._scan,
        store._write_ranks,
        days=days,
        today=split,
        count=10,
        deadline=Deadline(10.0),
        **kwargs,
    )
    assert found is not None
    assert kept_ranks(store, "user_id")


@pytest.mark.parametrize("group_by", ["user", "api_key"])
def test_the_day_that_closed_is_written_after_the_first_answer_of_the_next(
    url: str, clock: SettableClock, group_by: str
) -> None:
    """The first answer of a day is made from yesterday's kept in memory; the day that closed
    is written off its path (a thread of the store's), so a restart finds every day written."""
    records = calls(300)

    def last_days() -> StatsQuery:
        start = clock.now - timedelta(days=DAYS)
        return StatsQuery(filter=CallFilter(start=start), group_by=group_by, limit=3)  # type: ignore[arg-type]

    store = open_store(url, clock=clock)
    try:
        store.write(records)
        store.stats(last_days())  # writes every past day
        assert store._job is None
        todays = [
            late(record, index, created_at=NOW - timedelta(minutes=index + 1))
            for index, record in enumerate(records[:30])
        ]
        store.write(todays)
        records += todays
        clock.now = NOW + timedelta(days=1)
        read = spy_on(store)
        store.stats(last_days())
        assert not ranked_from(read), "made from yesterday's answer, not ranked"
        assert store._job is not None
        store._job.join(timeout=60)
        column = COLUMN[group_by]
        assert NOW.date().isoformat() in {day for _, day in kept_ranks(store, column)}
        assert kept_ranks(store, column) == daily_sums(
            store, group_by, clock.now.date().isoformat()
        )
    finally:
        store.close()
    store = open_store(url, clock=clock)  # a restart
    try:
        written = spy_on_writes(store)
        read = spy_on(store)
        answer = store.stats(last_days())
        assert ranked_from(read) == {DAILY_RANKS}
        assert not written
        check_groups(answer, records, group_by)
        assert_same(answer, uncached(store, last_days()))
    finally:
        store.close()


def test_closing_the_store_waits_for_the_ranks_thread(url: str, clock: SettableClock) -> None:
    """A closed store leaves no thread behind: close waits for the day's ranks being written
    (slowed here so that they are still being written when it is called)."""
    query = StatsQuery(filter=CallFilter(start=NOW - timedelta(days=DAYS)), group_by="user")
    store = open_store(url, clock=clock)
    try:
        store.write(calls(300))
        store.stats(query)
        clock.now = NOW + timedelta(days=1)
        write = store._write_ranks

        def slow_write(statement: Statement) -> bool:
            time.sleep(0.5)
            return write(statement)

        store._write_ranks = slow_write  # type: ignore[method-assign]
        store.stats(replace(query, filter=CallFilter(start=clock.now - timedelta(days=DAYS))))
        job = store._job
        assert job is not None
        assert job.is_alive()
    finally:
        store.close()
    assert not job.is_alive()
    store = open_store(url, clock=clock)
    try:
        assert NOW.date().isoformat() in {day for _, day in kept_ranks(store, "user_id")}
    finally:
        store.close()
