"""The first answer of a day, made from what yesterday's answer kept (``pastranking._derived``).

When the day turns, an answer over the last N days has a range a day later: instead of
ranking every group of it again, the entry of yesterday's range has its first day taken away
and yesterday added (a day's rows by group each). Checked on SQLite and the real PostgreSQL:
the answers equal the database's own ranking and the sums from the records, the range is not
ranked again, and an entry whose floor has risen too far, or whose days changed, gives way to
the database's ranking.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest

from otel_llm.calllog import pastranking
from otel_llm.calllog.cardinality import OTHER
from otel_llm.calllog.pastdays import Kept, PastDays
from otel_llm.calllog.query import CallFilter, StatsQuery
from otel_llm.calllog.record import CallRecord
from otel_llm.calllog.rollup import Totals
from otel_llm.calllog.schema import DAILY_API_KEY, DAILY_RANKS, DAILY_USER
from otel_llm.calllog.store import SQLCallStore, open_store
from tests.support.clock import SettableClock
from tests.support.postgres import BACKENDS, empty_store_url, pg_cluster  # noqa: F401
from tests.test_calllog_pastdays import (
    FIELD,
    assert_same,
    calls,
    check_groups,
    late,
    spy_on,
    uncached,
)
from tests.test_calllog_store import NOW, make_records

TABLE = {"user": DAILY_USER, "api_key": DAILY_API_KEY}


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(NOW)


@pytest.fixture(params=BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, clock: SettableClock
) -> Iterator[SQLCallStore]:
    url = empty_store_url(request.param, request, tmp_path_factory.mktemp("turn"))
    opened = open_store(url, clock=clock)
    try:
        yield opened
    finally:
        opened.close()


def last_days(clock: SettableClock, days: int, group_by: str, limit: int) -> StatsQuery:
    """The page's query: the last ``days`` days of the clock."""
    start = clock.now - timedelta(days=days)
    return StatsQuery(filter=CallFilter(start=start), group_by=group_by, limit=limit)  # type: ignore[arg-type]


def ranked_again(read: list[str], group_by: str) -> bool:
    """Whether the database ranked the range's groups (``busiest_groups``, ``_ranked``, or
    from the days' ranks: ``dailyranks.busiest``)."""
    tables = (f"FROM {TABLE[group_by]}", f"FROM {DAILY_RANKS}")
    return any(table in text and "LIMIT" in text for text in read for table in tables)


@pytest.fixture(params=["kept-1000", "kept-few"])
def kept_ranked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "kept-few":  # a floor: the groups not kept are bounded, not known
        monkeypatch.setattr(pastranking, "_KEPT_RANKED", 4)
        monkeypatch.setattr(pastranking, "_KEPT_PER_LISTED", 1)
    return str(request.param)


@pytest.mark.parametrize("limit", [1, 3])
@pytest.mark.parametrize("group_by", ["user", "api_key"])
@pytest.mark.parametrize("window", [None, 5], ids=["fixed-start", "last-5-days"])
def test_the_first_answer_of_a_day_is_made_from_yesterdays(
    store: SQLCallStore,
    clock: SettableClock,
    kept_ranked: str,
    *,
    group_by: str,
    limit: int,
    window: int | None,
) -> None:
    records = calls()
    store.write(records)
    start = NOW - timedelta(days=8)

    def query() -> StatsQuery:
        if window is None:
            return StatsQuery(filter=CallFilter(start=start), group_by=group_by, limit=limit)  # type: ignore[arg-type]
        return last_days(clock, window, group_by, limit)

    store.stats(query())
    field = FIELD[group_by]
    everyone = list(records)
    for turn in (1, 2):
        clock.now = NOW + timedelta(days=turn)
        # Today's calls, some of a value with none so far, some of the busiest's.
        today = [
            late(
                records[n],
                100 * turn + n,
                created_at=clock.now - timedelta(hours=n % 5),
                **{field: "zz-new" if n % 2 else getattr(records[n], field)},
            )
            for n in range(12)
        ]
        store.write(today)
        everyone += today
        read = spy_on(store)
        answer = store.stats(query())
        if kept_ranked == "kept-1000":  # every group kept: no floor to rise
            assert not ranked_again(read, group_by), "made from yesterday's entry"
        assert_same(answer, uncached(store, query()))
        check_groups(answer, everyone, group_by)
        assert_same(store.stats(query()), answer)


def on_day(record: CallRecord, index: int, day: date, user: str) -> CallRecord:
    moment = datetime.combine(day, NOW.timetz()) - timedelta(hours=1)
    return late(record, index, created_at=moment, user=user)


@pytest.fixture
def four_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pastranking, "_KEPT_RANKED", 4)
    monkeypatch.setattr(pastranking, "_KEPT_PER_LISTED", 1)


def users(counts: dict[str, int], day: date, first: int) -> list[CallRecord]:
    model = make_records(1)[0]
    return [
        on_day(model, first + 100 * n + i, day, user)
        for n, (user, count) in enumerate(counts.items())
        for i in range(count)
    ]


@pytest.mark.usefixtures("four_kept")
def test_a_day_added_looks_up_the_busiest_newcomers(
    store: SQLCallStore, clock: SettableClock
) -> None:
    """Kept: a..d (10, 9, 8, 7 calls three days ago); e, f had 6. Yesterday f got 4 calls
    (10: looked up and kept, it ties a) and e one (7 at most: the floor rises to 7)."""
    three_ago = NOW.date() - timedelta(days=3)
    records = users({"a": 10, "b": 9, "c": 8, "d": 7, "e": 6, "f": 6}, three_ago, 0)
    store.write(records)
    query = StatsQuery(filter=CallFilter(start=NOW - timedelta(days=5)), group_by="user", limit=2)
    assert [g["group"] for g in store.stats(query)["groups"]] == ["a", "b", OTHER]
    yesterday = users({"f": 4, "e": 1}, NOW.date(), 1000)
    store.write(yesterday)
    clock.now = NOW + timedelta(days=1)
    read = spy_on(store)
    answer = store.stats(query)
    assert [g["group"] for g in answer["groups"]] == ["a", "f", OTHER]
    assert not ranked_again(read, "user")
    looked_up = [t for t in read if "SELECT user_id, SUM(requests) FROM" in t and "user_id IN" in t]
    assert looked_up, "f's requests were looked up"
    check_groups(answer, records + yesterday, "user")
    assert_same(answer, uncached(store, query))


@pytest.mark.usefixtures("four_kept")
def test_a_floor_risen_too_far_gives_way_to_the_database(
    store: SQLCallStore, clock: SettableClock
) -> None:
    """Kept: a..d (10, 9, 8, 8, the floor); e had 7. Yesterday e got one call (9 at most, not
    looked up): the second busiest (9) cannot be told apart: ranked anew."""
    three_ago = NOW.date() - timedelta(days=3)
    records = users({"a": 10, "b": 9, "c": 8, "d": 8, "e": 7}, three_ago, 0)
    store.write(records)
    query = StatsQuery(filter=CallFilter(start=NOW - timedelta(days=5)), group_by="user", limit=2)
    store.stats(query)
    yesterday = users({"e": 1}, NOW.date(), 1000)
    store.write(yesterday)
    clock.now = NOW + timedelta(days=1)
    read = spy_on(store)
    answer = store.stats(query)
    assert ranked_again(read, "user")
    assert [g["group"] for g in answer["groups"]] == ["a", "b", OTHER]
    check_groups(answer, records + yesterday, "user")
    assert_same(answer, uncached(store, query))


@pytest.mark.parametrize("when", [2, 5], ids=["a-kept-day", "the-day-taken-away"])
def test_an_entry_whose_days_changed_is_not_made_from(
    store: SQLCallStore, clock: SettableClock, when: int
) -> None:
    """A late call on a day of yesterday's entry (one kept, or the one the turn takes away):
    that entry is not exact any more; the database ranks."""
    records = calls()
    store.write(records)
    query = last_days(clock, 5, "user", 3)
    store.stats(query)
    past = next(r for r in records if r.created_at.date() == NOW.date() - timedelta(days=when))
    added = [late(past, n, user="zz-late") for n in range(30)]
    store.write(added)
    clock.now = NOW + timedelta(days=1)
    query = last_days(clock, 5, "user", 3)
    read = spy_on(store)
    answer = store.stats(query)
    assert ranked_again(read, "user")
    check_groups(answer, records + added, "user")
    assert_same(answer, uncached(store, query))


def test_the_nearest_entry_is_of_the_same_filter_and_overlaps() -> None:
    past = PastDays()
    day = date(2026, 3, 10)

    def put(family: str, first: int, split: int) -> None:
        key = (family, day + timedelta(first), day + timedelta(split))
        past.put(key, Kept((), {}, True, Totals()))

    put("a", 0, 5)
    put("a", 1, 5)
    put("a", 2, 7)  # ends after the split asked: not usable
    put("b", 2, 6)
    put("a", 4, 6)  # starts after the first day asked
    assert past.nearest(("a",), day + timedelta(2), day + timedelta(6)) == (
        day + timedelta(1),
        day + timedelta(5),
    )
    assert past.nearest(("b",), day + timedelta(3), day + timedelta(6)) == (
        day + timedelta(2),
        day + timedelta(6),
    )
    assert past.nearest(("b",), day + timedelta(2), day + timedelta(6)) is None  # itself
    assert past.nearest(("c",), day + timedelta(2), day + timedelta(6)) is None
    assert past.nearest(("a",), day + timedelta(7), day + timedelta(9)) is None  # none overlaps


def test_a_late_call_of_yesterday_after_midnight_is_made_from_yesterdays_entry_again(
    store: SQLCallStore, clock: SettableClock
) -> None:
    """Yesterday's entry ends the day before yesterday: a call of yesterday stored after
    midnight changes today's entry only, which is made from yesterday's again."""
    records = calls()
    store.write(records)
    store.stats(last_days(clock, 5, "api_key", 2))
    clock.now = NOW + timedelta(days=1)
    query = last_days(clock, 5, "api_key", 2)
    store.stats(query)
    yesterday = next(r for r in records if r.created_at.date() == NOW.date())
    added = [late(yesterday, n, api_key_id="kz") for n in range(40)]
    store.write(added)
    read = spy_on(store)
    answer = store.stats(query)
    assert not ranked_again(read, "api_key")
    assert answer["groups"][0]["group"] == "kz"
    check_groups(answer, records + added, "api_key")
    assert_same(answer, uncached(store, query))
