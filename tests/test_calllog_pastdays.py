"""Stats grouped by user, API key and status from what earlier answers kept of past days.

``pastdays.py``: an answer keeps, per filter and range, every group's requests and the listed
groups' sums of the days before today; the next reads today's rows only. Checked here, on
SQLite and the real PostgreSQL: the kept answers equal the database's own ranking (the store
with nothing kept) and the sums computed from the records, after late calls of past days and
new calls of today too; and that a kept entry is used (no past day's rows read again).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from otel_llm.calllog import pastranking
from otel_llm.calllog.cardinality import OTHER
from otel_llm.calllog.pastdays import Kept, PastDays, Signature
from otel_llm.calllog.query import CallFilter, StatsQuery
from otel_llm.calllog.record import CallRecord, call_id
from otel_llm.calllog.rollup import Totals
from otel_llm.calllog.schema import DAILY_API_KEY, DAILY_STATUS, DAILY_USER
from otel_llm.calllog.store import SQLCallStore, open_store
from tests.support.postgres import BACKENDS, empty_store_url, pg_cluster  # noqa: F401
from tests.test_calllog_store import NOW, _check_totals, make_records

FIELD = {"user": "user", "api_key": "api_key_id", "status": "status"}
TABLE = {"user": DAILY_USER, "api_key": DAILY_API_KEY, "status": DAILY_STATUS}
TODAY = NOW.date()


def calls(count: int = 300, *, seed: int = 3) -> list[CallRecord]:
    """``make_records``' calls over the 10 days before NOW (today included) with 14 users (and
    none) and 5 keys (and none), drawn so that some have as many calls as others (ties)."""
    rng = random.Random(seed)  # noqa: S311 - test data
    users = [f"u{letter}" for letter in "abcdefghijklmn"]
    return [
        replace(
            record,
            user=rng.choice([*users, None]),
            api_key_id=rng.choice(["ka", "kb", "kc", "kd", "ke", None]),
        )
        for record in make_records(count, days=10, seed=seed)
    ]


def late(record: CallRecord, index: int, **fields: Any) -> CallRecord:
    """A new call like ``record`` (its own id), with ``fields``."""
    trace, span = 0xABC0 + index, 0xDEF0 + index
    return replace(
        record,
        id=call_id(trace, span),
        trace_id=f"{trace:032x}",
        span_id=f"{span:016x}",
        **fields,
    )


@pytest.fixture(params=BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SQLCallStore]:
    url = empty_store_url(request.param, request, tmp_path_factory.mktemp("pastdays"))
    opened = open_store(url, clock=lambda: NOW)
    try:
        yield opened
    finally:
        opened.close()


def uncached(store: SQLCallStore, query: StatsQuery) -> dict[str, Any]:
    """The answer with nothing kept: the database ranks every group over the whole range."""
    kept = store._past_days
    store._past_days = None
    try:
        return store.stats(query)
    finally:
        store._past_days = kept


def assert_same(got: Any, want: Any, where: str = "") -> None:
    """Equal, but for float means (added in another order: to their last digits)."""
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for key in want:
            assert_same(got[key], want[key], f"{where}/{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for index, (mine, theirs) in enumerate(zip(got, want, strict=True)):
            assert_same(mine, theirs, f"{where}[{index}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-12), where
    else:
        assert got == want, where


def check_groups(answer: dict[str, Any], records: list[CallRecord], group_by: str) -> None:
    """Every listed group's and the rest's totals against the calls of the range."""
    start, end = answer["start"], answer["end"]
    mine = [r for r in records if start <= r.created_at < end]
    _check_totals(answer["stats"], mine)
    by_group: dict[str | None, list[CallRecord]] = defaultdict(list)
    for record in mine:
        by_group[getattr(record, FIELD[group_by])].append(record)
    listed = [group["group"] for group in answer["groups"] if group["group"] != OTHER]
    for group in answer["groups"]:
        if group["group"] == OTHER:
            _check_totals(group, [r for key in set(by_group) - set(listed) for r in by_group[key]])
        else:
            _check_totals(group, by_group[group["group"]])
    # The busiest listed, ties by name, the unnamed last of its tie; none left out busier.
    counts = {key: len(found) for key, found in by_group.items()}
    order = sorted(counts, key=lambda key: (-counts[key], key is None, key or ""))
    assert listed == order[: len(listed)]


FILTERS = {
    "all": CallFilter(),
    "errors": CallFilter(status="error"),
    "project": CallFilter(projects=frozenset({"alpha"})),
    "past-only": CallFilter(start=NOW - timedelta(days=4), end=NOW - timedelta(days=1)),
}


@pytest.mark.parametrize("limit", [1, 3, 100])
@pytest.mark.parametrize(
    ("group_by", "f"),
    [
        pytest.param(group_by, f, id=f"{group_by}-{name}")
        for group_by in ("user", "api_key", "status")
        for name, f in FILTERS.items()
        if not (group_by == "status" and f.status)  # one group: nothing to rank
    ],
)
@pytest.mark.parametrize("kept_ranked", [None, 2], ids=["kept-1000", "kept-few"])
def test_kept_answers_equal_the_database_ranking(
    store: SQLCallStore,
    *,
    group_by: str,
    limit: int,
    f: CallFilter,
    kept_ranked: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if kept_ranked is not None:
        monkeypatch.setattr(pastranking, "_KEPT_RANKED", kept_ranked)
        monkeypatch.setattr(pastranking, "_KEPT_PER_LISTED", 1)
    records = calls()
    store.write(records)
    query = StatsQuery(filter=f, group_by=group_by, limit=limit)  # type: ignore[arg-type]
    expected = uncached(store, query)
    first = store.stats(query)  # keeps what it read of the days before today
    again = store.stats(query)  # from what it kept
    assert_same(first, expected)
    assert_same(again, expected)
    in_filter = [r for r in records if r.status == (f.status or r.status)]
    in_filter = [r for r in in_filter if f.projects is None or r.project in f.projects]
    check_groups(again, in_filter, group_by)


@pytest.mark.parametrize("group_by", ["user", "api_key"])
def test_late_calls_of_past_days_and_todays_calls_count_exactly(
    store: SQLCallStore, group_by: str
) -> None:
    records = calls()
    store.write(records)
    query = StatsQuery(group_by=group_by, limit=3)  # type: ignore[arg-type]
    before = store.stats(query)
    listed = [group["group"] for group in before["groups"] if group["group"] != OTHER]
    field = FIELD[group_by]
    # The last of the ranking gains calls three days ago (late: that day's sums change);
    # a value without calls so far gets enough today to be the busiest.
    quiet = listed[-1]
    past = next(r for r in records if r.created_at.date() == TODAY - timedelta(days=3))
    today = next(r for r in records if r.created_at.date() == TODAY)
    added = [late(past, n, **{field: quiet}) for n in range(6)]
    added += [late(today, 10 + n, **{field: "zz-new"}) for n in range(150)]
    store.write(added)
    after = store.stats(query)
    assert after["groups"][0]["group"] == "zz-new"
    assert_same(after, uncached(store, query))
    check_groups(after, records + added, group_by)


def test_an_unchanged_past_is_not_read_again(store: SQLCallStore) -> None:
    records = calls()
    store.write(records)
    query = StatsQuery(group_by="user", limit=3)
    busiest = store.stats(query)["groups"][0]["group"]
    # A call of today only, of a user listed already: the days before are as they were.
    today = next(r for r in records if r.created_at.date() == TODAY)
    added = late(today, 0, user=busiest)
    store.write([added])
    read: list[tuple[str, tuple[Any, ...]]] = []
    scan = store._scan

    def spy(statement: Any, deadline: Any, consume: Any) -> None:
        read.append((statement.text, statement.params))
        scan(statement, deadline, consume)

    store._scan = spy  # type: ignore[method-assign]
    answer = store.stats(query)
    check_groups(answer, [*records, added], "user")
    on_user = [params for text, params in read if f"FROM {DAILY_USER}" in text]
    assert on_user, "today's rows by user are read"
    days = {value for params in on_user for value in params if isinstance(value, str)}
    assert TODAY.isoformat() in days
    assert not any(value < TODAY.isoformat() and value[:2] == "20" for value in days)


def test_the_next_day_keeps_anew() -> None:
    """Today moves on: the kept days of yesterday's answers are not today's key."""
    records = calls()
    moments = [NOW]
    opened = open_store(":memory:", clock=lambda: moments[0])
    try:
        opened.write(records)
        query = StatsQuery(group_by="api_key", limit=2)
        first = opened.stats(query)
        moments[0] = NOW + timedelta(days=1)
        opened.write([late(records[0], 1, created_at=NOW + timedelta(days=1))])
        answer = opened.stats(query)
        assert answer["start"] == first["start"] + timedelta(days=1)
        assert_same(answer, uncached(opened, query))
    finally:
        opened.close()


def kept(groups: int, signature: Signature = ()) -> Kept:
    return Kept(signature, {f"g{n}": groups - n for n in range(groups)}, True, Totals())


def test_past_days_keep_a_bounded_number_of_entries_and_listed_groups() -> None:
    past = PastDays(max_entries=2, max_listed=3)
    a, b, c = kept(5), kept(5), kept(5)
    past.put("a", a)
    past.put("b", b)
    assert past.get("a", ()) is a
    past.put("c", c)  # over 2: the least recently used goes (b)
    assert past.get("b", ()) is None
    assert past.get("a", ()) is a
    assert past.get("c", ()) is c
    past.keep_listed(a, {"g0": Totals(), "g1": Totals()})
    past.keep_listed(c, {"g0": Totals(), "g1": Totals()})  # 4 > 3: not kept
    assert set(a.listed) == {"g0", "g1"}
    assert c.listed == {}
    past.put("d", kept(5))  # a goes, and its listed groups with it
    past.keep_listed(c, {"g0": Totals(), "g1": Totals()})
    assert set(c.listed) == {"g0", "g1"}


def test_an_entry_of_other_sums_is_dropped() -> None:
    past = PastDays()
    signature = (("2026-03-14", (5, 1)),)
    past.put("a", kept(3, signature))
    assert past.get("a", (("2026-03-14", (6, 1)),)) is None
    assert past.get("a", signature) is None  # dropped, not kept for a later match


def test_refused_keys_are_remembered_and_their_entries_dropped() -> None:
    past = PastDays()
    past.put("a", kept(3))
    past.refuse("a")
    assert past.refused("a")
    assert past.get("a", ()) is None
    assert not past.refused("b")


@pytest.fixture
def few_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the 3 busiest groups (or ``limit``; 1,000 at least otherwise)."""
    monkeypatch.setattr(pastranking, "_KEPT_RANKED", 3)
    monkeypatch.setattr(pastranking, "_KEPT_PER_LISTED", 1)


def on_day(record: CallRecord, index: int, days_ago: int, user: str) -> CallRecord:
    return late(record, index, created_at=NOW - timedelta(days=days_ago, hours=1), user=user)


@pytest.mark.usefixtures("few_kept")
def test_a_group_not_kept_is_looked_up_when_today_could_lift_it(store: SQLCallStore) -> None:
    """Kept: a, b, c (10, 9, 8 calls three days ago); d..f had 7, 6, 5. Today f gets 5 (15
    at most, 10 in fact) and d 1 (9 at most, 8): both are looked up, and f ties a."""
    model = make_records(1)[0]
    records = [
        on_day(model, 100 * n + i, 3, user)
        for n, (user, count) in enumerate(zip("abcdef", (10, 9, 8, 7, 6, 5), strict=True))
        for i in range(count)
    ]
    store.write(records)
    query = StatsQuery(group_by="user", limit=2)
    assert [g["group"] for g in store.stats(query)["groups"]] == ["a", "b", OTHER]
    today = [on_day(model, 1000 + i, 0, "f") for i in range(5)]
    today.append(on_day(model, 2000, 0, "d"))
    store.write(today)
    read = spy_on(store)
    answer = store.stats(query)
    assert [g["group"] for g in answer["groups"]] == ["a", "f", OTHER]
    check_groups(answer, records + today, "user")
    assert_same(answer, uncached(store, query))
    looked_up = [text for text in read if "user_id IN" in text and "SUM(requests)" in text]
    assert looked_up, "d and f's requests of the days before were looked up"


@pytest.mark.usefixtures("few_kept")
def test_ties_past_the_kept_groups_are_ranked_by_the_database(store: SQLCallStore) -> None:
    """Every user has 2 calls: which of them are the busiest is a tie the kept groups cannot
    break; the database ranks them, as if nothing were kept."""
    model = make_records(1)[0]
    records = [on_day(model, 10 * n + i, 2, f"u{n:02d}") for n in range(12) for i in range(2)]
    store.write(records)
    query = StatsQuery(group_by="user", limit=3)
    first = store.stats(query)
    assert_same(first, uncached(store, query))
    check_groups(first, records, "user")
    read = spy_on(store)
    assert_same(store.stats(query), first)
    ranked = [text for text in read if f"FROM {DAILY_USER}" in text and "LIMIT" in text]
    assert len(ranked) == 1, "ranked once, by the database, with nothing kept to read first"


def spy_on(store: SQLCallStore) -> list[str]:
    """The statements ``store``'s stats read from now on."""
    read: list[str] = []
    scan = store._scan

    def spy(statement: Any, deadline: Any, consume: Any) -> None:
        read.append(statement.text)
        scan(statement, deadline, consume)

    store._scan = spy  # type: ignore[method-assign]
    return read
