"""The past days' ranks by user and by API key (``dailyranks.py``, schema v10).

Checked on SQLite and the real PostgreSQL: the ranks are written by the store's job only (when
it opens, at its first write of a day, as the day turns at the retention job's ask, after the
first answer of a day, when an answer found days missing), never on an answer's path: that
answer is ranked from the daily rows, exact; the ranks written equal the daily rows' sums by
value and day; an answer with nothing kept ranks from them, also after a restart, and equals the
database's ranking of the daily rows and the sums of the records; late calls of a past day have
the day written again; days out of the window are deleted; a filtered range or one reaching past
the window is ranked from the daily rows; ranks that changed after the answer's sums were read
are not used; a failing write leaves the answers exact; a closing store's job stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from otel_llm.calllog import dailyranks, retention
from otel_llm.calllog.dailyrows import Deadline, sums_by
from otel_llm.calllog.pastdays import PastDays
from otel_llm.calllog.query import CallFilter, StatsQuery
from otel_llm.calllog.record import CallRecord
from otel_llm.calllog.retention import RetentionJob
from otel_llm.calllog.schema import DAILY, DAILY_RANKS, DAILY_SINCE
from otel_llm.calllog.sql import Statement
from otel_llm.calllog.store import SQLCallStore, open_store
from tests.support.clock import SettableClock, wait_until
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


def opened(url: str, clock: SettableClock) -> SQLCallStore:
    """The store at ``url``, once its job's catch-up on opening is done."""
    store = open_store(url, clock=clock)
    settled(store)
    return store


def settled(store: SQLCallStore) -> SQLCallStore:
    """``store`` once its job is done (what an answer asked it to write, written)."""
    store.join_background(timeout=120)
    assert store._job is None or not store._job.is_alive()
    return store


@pytest.fixture
def store(url: str, clock: SettableClock) -> Iterator[SQLCallStore]:
    store = opened(url, clock)
    try:
        yield store
    finally:
        store.close()


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


def spy_on_writes(store: SQLCallStore) -> list[tuple[str, str]]:
    """The ranks ``store`` writes from now on: (the thread's name, the statement)."""
    written: list[tuple[str, str]] = []
    write = store._write_ranks

    def spy(statement: Statement) -> bool:
        written.append((threading.current_thread().name, statement.text))
        return write(statement)

    store._write_ranks = spy  # type: ignore[method-assign]
    return written


JOB = "otel-llm-calllog-ranks"
"""The name of the store's job's thread (``SQLCallStore._later``)."""


def ranked_from(read: list[str]) -> set[str]:
    """Where the statements ``read`` ranked the range's groups from."""
    tables = {*dailyranks.TABLES.values(), DAILY_RANKS}
    return {
        table for text in read if "LIMIT" in text for table in tables if f"FROM {table} " in text
    }


def query(group_by: str, **fields: Any) -> StatsQuery:
    return StatsQuery(filter=replace(RANGE, **fields), group_by=group_by, limit=3)  # type: ignore[arg-type]


def answered_from(
    store: SQLCallStore, asked: StatsQuery, records: list[CallRecord], table: str
) -> dict[str, Any]:
    """The answer with nothing kept, checked: ranked from ``table``, exact."""
    read = spy_on(store)
    answer = cold(store, asked)
    assert ranked_from(read) == {table}
    check_groups(answer, records, asked.group_by or "")
    assert_same(answer, uncached(store, asked))
    return answer


@pytest.mark.parametrize("group_by", ["user", "api_key"])
def test_ranks_equal_the_daily_rows_after_late_calls_and_a_restart(
    url: str, clock: SettableClock, group_by: str
) -> None:
    records = calls(400)
    today = NOW.date().isoformat()
    daily = dailyranks.TABLES[COLUMN[group_by]]
    store = opened(url, clock)
    try:
        store.write(records)
        written = spy_on_writes(store)
        # Days missing: this answer is ranked from the daily rows, and has the job write them.
        answered_from(store, query(group_by), records, daily)
        settled(store)
        assert written
        assert {thread for thread, _ in written} == {JOB}
        assert kept_ranks(store, COLUMN[group_by]) == daily_sums(store, group_by, today)
        answered_from(store, query(group_by), records, DAILY_RANKS)
        # Late calls of two past days: new values and known ones, the day written again.
        lately = [
            late(record, index, user=f"late-{index % 3}", api_key_id=f"kl-{index % 2}")
            for index, record in enumerate(records[:40])
            if record.created_at.date() < NOW.date()
        ] + [late(record, 100 + index) for index, record in enumerate(records[40:60])]
        store.write(lately)
        records += lately
        answered_from(store, query(group_by), records, daily)
        settled(store)
        assert kept_ranks(store, COLUMN[group_by]) == daily_sums(store, group_by, today)
        answered_from(store, query(group_by), records, DAILY_RANKS)
    finally:
        store.close()
    store = opened(url, clock)  # a restart: nothing kept in memory, nothing to write
    try:
        written = spy_on_writes(store)
        answered_from(store, query(group_by), records, DAILY_RANKS)
        settled(store)
        assert not written
    finally:
        store.close()


def test_an_answer_finding_days_missing_asks_the_job_and_writes_nothing(
    store: SQLCallStore,
) -> None:
    """Days missing: the answer is the daily rows' ranking (exact), writes nothing itself and
    hands the days to the store's job once it is done (held back here until it is checked)."""
    records = calls(300)
    store.write(records)
    read = spy_on(store)
    asked: list[tuple[Any, int]] = []

    def later(job: Any) -> None:
        asked.append((job, len(read)))

    store._later = later  # type: ignore[method-assign]
    written = spy_on_writes(store)
    answer = cold(store, query("user"))
    assert [after for _, after in asked] == [len(read)], "asked once, after the answer's reads"
    assert ranked_from(read) == {dailyranks.TABLES["user_id"]}
    check_groups(answer, records, "user")
    assert not written
    assert not kept_ranks(store, "user_id")
    asked[0][0]()  # the job
    assert written
    assert kept_ranks(store, "user_id") == daily_sums(store, "user", NOW.date().isoformat())
    answered_from(store, query("user"), records, DAILY_RANKS)


def test_an_opened_store_writes_the_missing_days_without_an_answer(
    url: str, clock: SettableClock
) -> None:
    """A restart (or an upgrade) finds days no answer had written: the job of the store
    opened writes every kept column's before any answer asks, so that the first ranks from
    them; days before an upgrade's last partial day are not written (never ranked)."""
    records = calls(300)
    today = NOW.date().isoformat()
    store = opened(url, clock)
    try:
        store.write(records)
        assert not kept_ranks(store, "user_id")
    finally:
        store.close()
    store = opened(url, clock)
    try:
        for group_by, column in COLUMN.items():
            assert kept_ranks(store, column) == daily_sums(store, group_by, today)
        answered_from(store, query("user"), records, DAILY_RANKS)
        # An upgrade to the tables by user and key: the days up to its last partial day only
        # have their calls in the first table.
        partial = (NOW - timedelta(days=3)).date().isoformat()
        store._execute(Statement(f"DELETE FROM {DAILY_RANKS}", ()))  # noqa: S608
        store._execute(Statement(f"UPDATE {DAILY_SINCE} SET last_partial_day = ?", (partial,)))  # noqa: S608
    finally:
        store.close()
    store = opened(url, clock)
    try:
        # Fewer days than a ranking reads from the ranks: none written.
        assert not kept_ranks(store, "user_id")
        assert not kept_ranks(store, "api_key_id")
    finally:
        store.close()


def test_a_failing_write_leaves_the_answers_exact(
    store: SQLCallStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The database refuses the ranks (a trigger raising here): the job logs it, the answers
    are ranked from the daily rows, exact, and keep asking."""
    if store._day_indexes:  # SQLite
        store._execute(
            Statement(
                f"CREATE TRIGGER refuse BEFORE INSERT ON {DAILY_RANKS} "
                "BEGIN SELECT RAISE(ABORT, 'ranks refused'); END",
                (),
            )
        )
    else:
        store._execute(
            Statement(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "'BEGIN RAISE EXCEPTION ''ranks refused''; END'",
                (),
            )
        )
        store._execute(
            Statement(
                f"CREATE TRIGGER refuse BEFORE INSERT ON {DAILY_RANKS} "
                "FOR EACH ROW EXECUTE FUNCTION refuse()",
                (),
            )
        )
    records = calls(300)
    store.write(records)
    daily = dailyranks.TABLES["user_id"]
    with caplog.at_level(logging.ERROR, logger="otel_llm.calllog.sqlstore"):
        for _ in range(2):
            answered_from(store, query("user"), records, daily)
            settled(store)
    failed = [entry for entry in caplog.records if "ranks failed" in entry.getMessage()]
    assert len(failed) == 2
    assert "ranks refused" in caplog.text
    assert not kept_ranks(store, "user_id")


def test_days_out_of_the_window_are_deleted(store: SQLCallStore, clock: SettableClock) -> None:
    records = calls(300)
    store.write(records)
    cold(store, query("user"))
    settled(store)
    first = min(day for _, day in kept_ranks(store, "user_id"))
    # Time passes: the window's first day is after the first day written.
    clock.now = NOW + timedelta(days=dailyranks.RANKED_DAYS + dailyranks.FORGET_AFTER - 2)
    later = [
        late(record, index, created_at=clock.now - timedelta(hours=30))
        for index, record in enumerate(records[:20])
    ]
    store.write(later)  # the day's first write: the job writes the days missing
    records += later
    recent = StatsQuery(filter=CallFilter(start=clock.now - timedelta(days=DAYS)), group_by="user")
    settled(store)
    kept_days = {day for _, day in kept_ranks(store, "user_id")}
    window = (clock.now.date() - timedelta(days=dailyranks.RANKED_DAYS)).isoformat()
    assert first < window <= min(kept_days)
    answered_from(store, recent, records, DAILY_RANKS)
    # A range reaching before the window: ranked from the daily rows, exact as ever.
    whole = StatsQuery(filter=CallFilter(start=NOW - timedelta(days=12)), group_by="user")
    answered_from(store, whole, records, dailyranks.TABLES["user_id"])


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
    asked: list[Any] = []
    store._later = asked.append  # type: ignore[method-assign]
    read = spy_on(store)
    answer = cold(store, query("user", **fields))
    assert ranked_from(read) == {dailyranks.TABLES["user_id"]}
    assert not asked
    assert_same(answer, uncached(store, query("user", **fields)))


def test_ranks_newer_than_the_answers_sums_are_not_used(store: SQLCallStore) -> None:
    """The answer read its days' sums; a late call of a past day was stored and its day
    written again (by the job another answer asked) before it ranked: its ranks are not those
    sums'."""
    records = calls(300)
    store.write(records)
    first, split = (NOW - timedelta(days=DAYS)).date(), NOW.date()
    scan = store._scan
    deadline = Deadline(None)
    asked: list[bool] = []

    def sums() -> dict[str, Any]:
        where = Statement("day >= ? AND day < ?", (first.isoformat(), split.isoformat()))
        return sums_by(scan, DAILY, "day", where, deadline)

    def busiest(days: dict[str, Any]) -> dict[str, int] | None:
        return dailyranks.busiest(
            scan,
            column="user_id",
            days=days,
            first=first,
            split=split,
            today=split,
            count=100,
            deadline=deadline,
            ask=lambda: asked.append(True),
        )

    def job(days: dict[str, Any]) -> None:
        dailyranks.catch_up(
            scan,
            store._write_ranks,
            column="user_id",
            days=days,
            first=first,
            split=split,
            today=split,
        )

    before = sums()
    assert busiest(before) is None
    assert asked == [True]
    job(before)
    assert busiest(before) is not None
    past = next(record for record in records if record.created_at.date() < split)
    store.write([late(past, 1, user="newcomer")])
    assert busiest(sums()) is None
    assert len(asked) == 2
    job(sums())  # the day written again, with the newcomer
    assert busiest(sums()) is not None
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
    answered_from(store, query("user"), records, dailyranks.TABLES["user_id"])
    settled(store)
    answered_from(store, query("user"), records, DAILY_RANKS)
    assert ("", (NOW - timedelta(days=1)).date().isoformat()) in kept_ranks(store, "user_id")


@pytest.mark.parametrize("group_by", ["user", "api_key"])
def test_the_day_that_closed_is_written_after_the_first_answer_of_the_next(
    url: str, clock: SettableClock, group_by: str
) -> None:
    """The first answer of a day is made from yesterday's kept in memory; the day that closed
    is written off its path (the store's job), so a restart finds every day written."""
    records = calls(300)

    def last_days() -> StatsQuery:
        start = clock.now - timedelta(days=DAYS)
        return StatsQuery(filter=CallFilter(start=start), group_by=group_by, limit=3)  # type: ignore[arg-type]

    store = opened(url, clock)
    try:
        store.write(records)
        store.stats(last_days())
        settled(store)  # every past day written
        todays = [
            late(record, index, created_at=NOW - timedelta(minutes=index + 1))
            for index, record in enumerate(records[:30])
        ]
        store.write(todays)
        records += todays
        clock.now = NOW + timedelta(days=1)
        job = store._job
        read = spy_on(store)
        written = spy_on_writes(store)
        store.stats(last_days())
        assert not ranked_from(read), "made from yesterday's answer, not ranked"
        assert store._job is not job, "the store's job asked"
        settled(store)
        assert {thread for thread, _ in written} == {JOB}
        column = COLUMN[group_by]
        assert NOW.date().isoformat() in {day for _, day in kept_ranks(store, column)}
        assert kept_ranks(store, column) == daily_sums(
            store, group_by, clock.now.date().isoformat()
        )
    finally:
        store.close()
    store = opened(url, clock)  # a restart
    try:
        written = spy_on_writes(store)
        answer = answered_from(store, last_days(), records, DAILY_RANKS)
        check_groups(answer, records, group_by)
        assert not written
    finally:
        store.close()


def test_the_first_write_of_a_day_has_the_days_before_written(
    url: str, clock: SettableClock
) -> None:
    """A store at work when the day turns: its first write of the new day has the store's job
    write the day that closed (and any other missing), so that the day's first answers, with
    nothing kept, rank from the ranks instead of the daily rows; later writes of the day ask
    nothing more."""
    records = calls(300)
    store = opened(url, clock)
    try:
        store.write(records)  # today's day: the job asked when the store opened, not again
        settled(store)
        assert not kept_ranks(store, "user_id")
        clock.now = NOW + timedelta(days=1)
        written = spy_on_writes(store)
        todays = [late(records[0], 0, created_at=clock.now - timedelta(minutes=1))]
        store.write(todays)
        settled(store)
        assert written, "the first write of the day had the days before written"
        assert {thread for thread, _ in written} == {JOB}
        today = clock.now.date().isoformat()
        for group_by, column in COLUMN.items():
            assert NOW.date().isoformat() in {day for _, day in kept_ranks(store, column)}
            assert kept_ranks(store, column) == daily_sums(store, group_by, today)
        job = store._job
        todays.append(late(records[1], 1, created_at=clock.now - timedelta(seconds=30)))
        store.write(todays[-1:])
        assert store._job is job, "a second write of the day started no job"
        records += todays
        last_days = StatsQuery(
            filter=CallFilter(start=clock.now - timedelta(days=DAYS)), group_by="user", limit=3
        )
        answered_from(store, last_days, records, DAILY_RANKS)
    finally:
        store.close()


def test_an_idle_store_has_the_closed_day_ranked_as_the_day_turns(
    url: str, clock: SettableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store with no write and no answer when the day turns (a quiet night): the retention
    job, woken by the turn, has the store's job write the day that closed, so that the new
    day's first rankings read the ranks; before the turn it asks nothing."""
    monkeypatch.setattr(retention, "DAY_TURN_DELAY", 0.0)
    records = calls(300)
    store = opened(url, clock)
    job = None
    try:
        store.write(records)
        settled(store)
        clock.now = NOW.replace(hour=23, minute=59, second=59)  # NOW's day, its last second
        written = spy_on_writes(store)
        job = RetentionJob(store, interval=3600, clock=clock).start()
        wait_until(lambda: job.runs == 1)  # its first round done, before the turn
        time.sleep(0.3)
        assert not written, "nothing asked before the day turned"
        clock.now = NOW + timedelta(days=1)
        wait_until(
            lambda: NOW.date().isoformat() in {day for _, day in kept_ranks(store, "user_id")}
        )
        settled(store)
        assert written
        assert {thread for thread, _ in written} == {JOB}
        today = clock.now.date().isoformat()
        for group_by, column in COLUMN.items():
            assert kept_ranks(store, column) == daily_sums(store, group_by, today)
        assert job.runs == 1, "the day's turn pruned nothing more than the interval asks"
    finally:
        if job is not None:
            job.stop()
        store.close()


def test_replicas_writing_the_same_days_at_once_agree(
    url: str, clock: SettableClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Replicas on one store each have their job write the day that closed at their first
    write of a day, at about the same moment: the same rows, written twice, never an error."""
    records = calls(300)
    first = opened(url, clock)
    try:
        first.write(records)
    finally:
        first.close()
    clock.now = NOW + timedelta(days=1)
    replicas = [opened(url, clock) for _ in range(3)]
    together = threading.Barrier(len(replicas))
    try:
        replicas[0]._execute(Statement(f"DELETE FROM {DAILY_RANKS}", ()))  # noqa: S608
        for replica in replicas:
            write, first_write = replica._write_ranks, threading.Event()

            def at_once(statement: Statement, write: Any = write, first: Any = first_write) -> bool:
                if not first.is_set():  # the three jobs' first writes, together
                    first.set()
                    together.wait(timeout=10)
                return bool(write(statement))

            replica._write_ranks = at_once  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR):
            for replica in replicas:
                replica.catch_up_ranks()
            for replica in replicas:
                settled(replica)
        assert not together.broken, "the three jobs wrote at once"
        assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
        today = clock.now.date().isoformat()
        for group_by, column in COLUMN.items():
            assert kept_ranks(replicas[0], column) == daily_sums(replicas[0], group_by, today)
        for replica in replicas:
            answered_from(replica, query("user"), records, DAILY_RANKS)
    finally:
        for replica in replicas:
            replica.close()


def test_closing_the_store_waits_for_its_job(url: str, clock: SettableClock) -> None:
    """A closed store leaves no thread behind: close waits for the day's ranks being written
    (slowed here so that they are still being written when it is called)."""
    store = opened(url, clock)
    try:
        store.write(calls(300))
        write = store._write_ranks

        def slow_write(statement: Statement) -> bool:
            time.sleep(0.5)
            return write(statement)

        store._write_ranks = slow_write  # type: ignore[method-assign]
        cold(store, query("user"))
        job = store._job
        assert job is not None
        assert job.is_alive()
    finally:
        store.close()
    assert not job.is_alive()


def test_a_closing_stores_job_stops_after_the_day_it_writes(
    url: str, clock: SettableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closed while its job has days to write (a store just upgraded, closed at once: a
    command's): the job stops after the day it is writing, instead of writing them all."""
    store = opened(url, clock)
    try:
        store.write(calls(300))
    finally:
        store.close()
    written: list[str] = []
    write = SQLCallStore._write_ranks

    def slow_write(self: SQLCallStore, statement: Statement) -> bool:
        time.sleep(0.3)
        done = write(self, statement)
        if done:
            written.append(statement.text)
        return done

    monkeypatch.setattr(SQLCallStore, "_write_ranks", slow_write)
    store = open_store(url, clock=clock)
    job = store._job
    store.close()
    assert job is not None
    assert not job.is_alive()
    assert len(written) <= 1, written
    monkeypatch.undo()
    store = opened(url, clock)  # opened again: the job writes the rest
    try:
        assert kept_ranks(store, "user_id") == daily_sums(store, "user", NOW.date().isoformat())
    finally:
        store.close()
