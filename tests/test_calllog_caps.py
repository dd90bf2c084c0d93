"""Issue 10, finding 2: distinct model names made call-log stats unusable, for ever.

200,000 distinct model names added 200,000 daily rows, kept for ever: ``stats`` took 4 s and
15 MB, ``stats?group_by=model`` 30 s, 146 MB and 3 GB of RSS (measured on the code before the
fix with these tests' flood). Now the daily aggregates keep at most
``call_log_max_daily_values`` values per day and dimension (the rest fold into ``other``,
counted; records keep the real name), stats list at most ``limit`` groups (the rest summed into
``other``: totals stay exact), run within a time budget and at most two at once.

Real SQLite files and the real PostgreSQL cluster; expectations computed here from the records.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from otel_llm.calllog import cardinality
from otel_llm.calllog.api import CallLogAPI
from otel_llm.calllog.app import CallLogApp
from otel_llm.calllog.auth import ApiKey, KeyRing
from otel_llm.calllog.cardinality import CAPPED, OTHER
from otel_llm.calllog.catalogue import DAILY_DIMENSIONS, DAILY_VALUES
from otel_llm.calllog.dailyrows import Deadline
from otel_llm.calllog.query import CallFilter, QueryError, StatsQuery, StatsTimeout
from otel_llm.calllog.ratelimit import RateLimits
from otel_llm.calllog.record import NANO, CallRecord
from otel_llm.calllog.sketch import Sketch
from otel_llm.calllog.sql import Statement
from otel_llm.calllog.store import SQLCallStore, open_store
from tests.support.postgres import BACKENDS, empty_store_url, pg_cluster, store_url  # noqa: F401
from tests.test_calllog_isolation import _postgres
from tests.test_calllog_store import _check_totals

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
DAY = NOW.date().isoformat()
KEY = "caps-test-key"
KEYS = KeyRing([ApiKey.plain("all", KEY)])


def call(index: int, model: str | None, *, at: datetime = NOW, **fields: Any) -> CallRecord:
    """A priced call; latency, tokens and cost vary with ``index`` (cost exact in nano-USD)."""
    created = at - timedelta(microseconds=index + 1)
    values: dict[str, Any] = {
        "id": f"{index + 1:032x}-{index + 1:016x}",
        "trace_id": f"{index + 1:032x}",
        "span_id": f"{index + 1:016x}",
        "created_at": created,
        "completed_at": None,
        "latency_ms": 50.0 + index % 997,
        "time_to_first_chunk_ms": None,
        "service": "svc",
        "provider": "openai",
        "model": model,
        "response_model": None,
        "operation": "chat",
        "streaming": False,
        "status": "error" if index % 11 == 0 else "success",
        "input_tokens": 10 + index % 13,
        "output_tokens": index % 7,
        "total_tokens": 10 + index % 13 + index % 7,
        "cost": NANO * (index + 1),
        "cost_input": NANO * (index + 1),
    }
    values.update(fields)
    return CallRecord(**values)


@pytest.fixture
def store(store_url: str) -> Iterator[SQLCallStore]:  # noqa: F811 - the fixture it uses
    opened = open_store(store_url, clock=lambda: NOW, max_daily_values=3)
    try:
        yield opened
    finally:
        opened.close()


def daily_values(
    store: SQLCallStore, dimension: str, day: str = DAY, *, table: str = "llm_call_daily"
) -> set[str]:
    rows = store._read(
        Statement(f"SELECT DISTINCT {dimension} FROM {table} WHERE day = ?", (day,))  # noqa: S608
    )
    return {row[0] for row in rows}


def groups_of(answer: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    return {group["group"]: group for group in answer["groups"]}


# --- the cap ------------------------------------------------------------------------------------


def test_values_past_the_cap_fold_into_other_and_the_records_keep_their_names(
    store: SQLCallStore,
    store_url: str,  # noqa: F811 - the fixture it uses
) -> None:
    # m0..m4, two calls each, in one write: the cap (3) admits three (the busiest, then by
    # name); the unnamed model ('') is "none", never counted or folded.
    calls = [call(i, f"m{i % 5}") for i in range(10)] + [call(10, None)]
    assert store.write(calls) == 11
    assert daily_values(store, "model") == {"m0", "m1", "m2", OTHER, ""}
    assert store.daily_caps.folded == {**dict.fromkeys(CAPPED, 0), "model": 4}
    answer = store.stats(StatsQuery(group_by="model"))
    _check_totals(answer["stats"], calls)  # every total exact, to the nano-USD
    groups = groups_of(answer)
    assert set(groups) == {"m0", "m1", "m2", None, OTHER}
    _check_totals(groups[OTHER], [c for c in calls if c.model in ("m3", "m4")])
    # The records keep the real name: they answer a filter on it.
    assert store.count(CallFilter(model="m4")) == 2
    assert store.stats(StatsQuery(CallFilter(model="m4")))["stats"]["total_requests"] == 0

    # After a restart (an empty cache) the table still says which values are in.
    store.close()
    reopened = open_store(store_url, clock=lambda: NOW, max_daily_values=3)
    try:
        assert reopened.write([call(20, "m5"), call(21, "m1"), call(22, "m2")]) == 3
        assert daily_values(reopened, "model") == {"m0", "m1", "m2", OTHER, ""}
        assert reopened.daily_caps.folded["model"] == 1
        assert groups_of(reopened.stats(StatsQuery(group_by="model")))["m1"]["total_requests"] == 3
        # Each day has its own cap.
        tomorrow = NOW + timedelta(days=1)
        assert reopened.write([call(30 + i, f"n{i}", at=tomorrow) for i in range(5)]) == 5
        assert daily_values(reopened, "model", tomorrow.date().isoformat()) == {
            "n0",
            "n1",
            "n2",
            OTHER,
        }
        # A redelivered call is stored and counted once, folded or not.
        assert reopened.write([call(20, "m5")]) == 0
        assert reopened.daily_caps.folded["model"] == 3
    finally:
        reopened.close()


def test_a_key_limited_to_projects_is_refused_stats_its_folded_projects_would_miss(
    store: SQLCallStore,
) -> None:
    """Found in review: past the cap, a project's calls are in the rows of ``other``, where a
    key limited to it did not find them -- its stats said 0 calls where its count said 2 --
    and a key limited to a project named ``other`` summed every folded project's calls."""
    yesterday = NOW - timedelta(days=1)
    calls = [call(i, "m", at=yesterday, project=f"p{i % 5}") for i in range(10)]
    assert store.write(calls) == 10
    folded_day = yesterday.date().isoformat()
    assert daily_values(store, "project", folded_day) == {"p0", "p1", "p2", OTHER}
    mine = [c for c in calls if c.project == "p0"]
    for projects in ({"p0"}, {"p0", "never-seen"}):  # admitted, or without calls that day
        answer = store.stats(StatsQuery(CallFilter(projects=frozenset(projects))))
        _check_totals(answer["stats"], mine)
    for projects in ({"p4"}, {"p0", "p3"}):
        with pytest.raises(QueryError, match=f"limited to projects over {folded_day}"):
            store.stats(StatsQuery(CallFilter(projects=frozenset(projects))))
    # Its look at the daily rows is within the answer's time budget, as the rest of stats.
    with pytest.raises(StatsTimeout):
        store.stats(StatsQuery(CallFilter(projects=frozenset({"p4"})), timeout=1e-9))
    assert store.count(CallFilter(projects=frozenset({"p4"}))) == 2  # the records have them
    assert store.write([call(40, "m", project="p4")]) == 1  # today: admitted
    today = store.stats(StatsQuery(CallFilter(projects=frozenset({"p4"}), start=NOW)))
    assert today["stats"]["total_requests"] == 1
    with pytest.raises(ValueError, match="cannot list 'other'"):
        ApiKey.plain("folded", "a-key-of-the-test", ["team", OTHER])


def test_every_dimension_is_capped(store: SQLCallStore) -> None:
    fields = {"service", "provider", "model", "operation", "feature", "project"}
    assert set(CAPPED) == {*fields, "user", "api_key_id"}
    calls = [
        call(i, f"model-{i}", **{name: f"{name}-{i}" for name in fields - {"model"}})
        for i in range(6)
    ]
    store.write(calls)
    for name in fields:
        assert daily_values(store, name) == {f"{name}-0", f"{name}-1", f"{name}-2", OTHER}, name
        assert store.daily_caps.folded[name] == 3


def test_users_and_keys_have_their_own_cap_and_other_fields_fold_as_in_the_first_table(
    store_url: str,  # noqa: F811
) -> None:
    """Issue 12: the tables by user and by key cap users and keys at ``max_daily_users``; a
    model folded in the first table is folded in them too, so every table sums the same calls
    under the same names, and stats by user stay exact, ``other`` included."""
    store = open_store(store_url, clock=lambda: NOW, max_daily_values=2, max_daily_users=3)
    try:
        calls = [
            call(i, f"m{i % 4}", user=f"u{i % 5}", api_key_id=f"k{i % 6}", project="p")
            for i in range(30)
        ]
        assert store.write(calls) == 30
        # The busiest of the write first, then by name.
        assert daily_values(store, "user_id", table="llm_call_daily_user") == {
            "u0",
            "u1",
            "u2",
            OTHER,
        }
        assert daily_values(store, "api_key_id", table="llm_call_daily_api_key") == {
            "k0",
            "k1",
            "k2",
            OTHER,
        }
        for table in ("llm_call_daily", "llm_call_daily_user", "llm_call_daily_api_key"):
            assert daily_values(store, "model", table=table) == {"m0", "m1", OTHER}, table
        assert store.daily_caps.folded["user"] == sum(c.user in ("u3", "u4") for c in calls)
        assert store.daily_caps.folded["api_key_id"] == sum(
            c.api_key_id in ("k3", "k4", "k5") for c in calls
        )
        assert store.daily_caps.folded["model"] == sum(c.model in ("m2", "m3") for c in calls)
        answer = store.stats(StatsQuery(group_by="user"))
        _check_totals(answer["stats"], calls)
        groups = groups_of(answer)
        assert set(groups) == {"u0", "u1", "u2", OTHER}
        _check_totals(groups[OTHER], [c for c in calls if c.user in ("u3", "u4")])
        for user in ("u0", "u1", "u2"):
            _check_totals(groups[user], [c for c in calls if c.user == user])
        folded_models = store.stats(StatsQuery(CallFilter(api_key_id="k1", model=OTHER)))
        _check_totals(
            folded_models["stats"],
            [c for c in calls if c.api_key_id == "k1" and c.model in ("m2", "m3")],
        )
        # A later user of the day folds without changing what is kept.
        assert store.write([call(40, "m0", user="u9", api_key_id="k0", project="p")]) == 1
        assert store.daily_caps.folded["user"] == sum(c.user in ("u3", "u4") for c in calls) + 1
    finally:
        store.close()


def test_the_cap_holds_with_several_writers_at_once(store_url: str) -> None:  # noqa: F811
    """Two stores (two collectors' writers) racing to add new models: never more than the cap,
    every call counted once."""
    limit, writers, batches = 10, 2, 15
    stores = [open_store(store_url, clock=lambda: NOW, max_daily_values=limit) for _ in range(2)]
    barrier = threading.Barrier(writers)
    failures: list[Exception] = []

    def write(number: int) -> None:
        try:
            barrier.wait()
            for batch in range(batches):
                base = (number * batches + batch) * 3
                stores[number].write(
                    [
                        call(base, f"w{number}-{batch}-a"),
                        call(base + 1, f"w{number}-{batch}-b"),
                        call(base + 2, "shared"),
                    ]
                )
        except Exception as exc:  # noqa: BLE001 - reported by the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(number,)) for number in range(writers)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not failures
        models = daily_values(stores[0], "model") - {OTHER}
        assert len(models) == limit
        total = writers * batches * 3
        answer = stores[0].stats(StatsQuery(group_by="model"))
        assert answer["stats"]["total_requests"] == total
        folded = sum(store.daily_caps.folded["model"] for store in stores)
        assert (
            groups_of(answer)[OTHER]["total_requests"]
            == folded
            == total
            - sum(group["total_requests"] for group in answer["groups"] if group["group"] != OTHER)
        )
    finally:
        for opened in stores:
            opened.close()


# --- bounded answers ------------------------------------------------------------------------------


def test_stats_list_limit_groups_and_sum_the_rest_as_other(store_url: str) -> None:  # noqa: F811
    store = open_store(store_url, clock=lambda: NOW)
    try:
        # 30 models, model k with 30 - k calls, over three days.
        calls = [
            call(index, f"model-{k:02d}", at=NOW - timedelta(days=index % 3))
            for index, k in enumerate(k for k in range(30) for _ in range(30 - k))
        ]
        store.write(calls)
        answer = store.stats(StatsQuery(group_by="model", limit=5))
        _check_totals(answer["stats"], calls)
        names = [group["group"] for group in answer["groups"]]
        assert names == [f"model-{k:02d}" for k in range(5)] + [OTHER]
        rest = [c for c in calls if c.model not in names]
        _check_totals(answer["groups"][-1], rest)  # sums exact, percentiles from its own rows
        for day in answer["by_day"]:
            listed = [entry["model"] for entry in day["models"]]
            assert listed[-1] == OTHER
            assert len(listed) == 6
            assert sum(entry["requests"] for entry in day["models"]) == day["requests"]
        assert store.stats(StatsQuery(group_by="model"))["groups"][-1]["group"] == "model-29"
        for bad in (0, 1001):
            with pytest.raises(QueryError, match="limit"):
                store.stats(StatsQuery(limit=bad))
    finally:
        store.close()


def test_a_statement_past_its_time_budget_is_stopped(store: SQLCallStore) -> None:
    """The database stops the statement itself: SQLite's progress handler, PostgreSQL's
    statement_timeout. The store answers normally afterwards."""
    slow = (
        "SELECT pg_sleep(30), 1"
        if type(store).__name__ == "PostgresCallStore"
        else "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        "WHERE x < 2000000000) SELECT COUNT(*), 1 FROM c"
    )
    started = time.monotonic()
    with pytest.raises(StatsTimeout, match="time budget"):
        store._scan(Statement(slow, ()), Deadline(0.3), list)
    assert time.monotonic() - started < 3
    store.write([call(1, "m")])
    assert store.stats(StatsQuery(timeout=5))["stats"]["total_requests"] == 1


# --- the API --------------------------------------------------------------------------------------


def request(app: CallLogApp, target: str) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {KEY}"}
    response = app.handle("GET", target, headers.get, b"")
    return response.status, json.loads(response.body), dict(response.headers)


def test_the_api_bounds_stats_in_time_in_number_and_in_size(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "calls.db"))
    release = threading.Event()

    class Blocking:
        """The real store, whose stats wait until released (to hold the one place)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def stats(self, query: StatsQuery) -> dict[str, Any]:
            release.wait(10)
            return store.stats(query)

    try:
        store.write([call(i, f"m{i}", at=datetime.now(UTC)) for i in range(5)])
        app = CallLogApp(store, keys=KEYS, limits=RateLimits(0, 0, 0))
        status, answer, _ = request(app, "/api/v1/calls/stats?group_by=model&limit=2")
        assert status == 200
        assert [g["group"] for g in answer["groups"]] == ["m0", "m1", OTHER]
        for bad in ("0", "1001", "x"):
            status, answer, _ = request(app, f"/api/v1/calls/stats?limit={bad}")
            assert status == 400
            assert "limit" in answer["error"]["message"]
        # Past the time budget: 503, saying why.
        hurried = CallLogApp(store, keys=KEYS, limits=RateLimits(0, 0, 0), stats_timeout=1e-9)
        status, answer, _ = request(hurried, "/api/v1/calls/stats")
        assert status == 503
        assert "time budget" in answer["error"]["message"]
        # One place taken: the next waits a second, then gets 503 with Retry-After.
        blocking: Any = Blocking()
        busy = CallLogApp(blocking, keys=KEYS, limits=RateLimits(0, 0, 0), max_concurrent_stats=1)
        first: list[int] = []
        holder = threading.Thread(
            target=lambda: first.append(request(busy, "/api/v1/calls/stats")[0])
        )
        holder.start()
        time.sleep(0.2)
        started = time.monotonic()
        status, answer, headers = request(busy, "/api/v1/calls/stats")
        assert status == 503
        assert headers["Retry-After"] == "1"
        assert 0.9 < time.monotonic() - started < 3
        release.set()
        holder.join(10)
        assert first == [200]
        assert request(busy, "/api/v1/calls/stats")[0] == 200  # the place was given back
    finally:
        release.set()
        store.close()


# --- the flood ------------------------------------------------------------------------------------

FLOOD = 200_000


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _timed_get(url: str) -> tuple[int, bytes, float, float]:
    """Status, body, seconds, and the growth of this process's RSS (MB) while it ran."""
    base = peak = _rss_mb()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return status, body, seconds, peak - base


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_flood_of_distinct_model_names_keeps_stats_fast_small_and_exact(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """200,000 calls, each with its own model name, through the real write path and the
    real API: stats answer in under 1 s and 1 MB, totals equal to the raw sums."""
    store = open_store(empty_store_url(backend, request, tmp_path))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    at = today + timedelta(hours=1)
    try:
        for start in range(0, FLOOD, 20_000):
            batch = [call(i, f"flood-{i}", at=at) for i in range(start, start + 20_000)]
            assert store.write(batch) == len(batch)
        assert len(daily_values(store, "model", today.date().isoformat())) == 201
        assert store.daily_caps.folded["model"] == FLOOD - 200
        # The raw sums, from the store's call records themselves.
        (raw,) = store._read(
            Statement("SELECT COUNT(*), SUM(total_tokens), SUM(cost_nusd) FROM llm_calls", ())
        )
        assert int(raw[0]) == FLOOD
        exact = store.stats(StatsQuery())["stats"]
        assert exact["total_cost"] == Decimal(int(raw[2])) * NANO == NANO * FLOOD * (FLOOD + 1) / 2
        with CallLogAPI(store, keys=KEYS, limits=RateLimits(0, 0, 0)) as api:
            for path in ("/stats", "/stats?group_by=model"):
                status, body, seconds, growth = _timed_get(api.url + path)
                print(
                    f"{backend} {path}: {status} in {seconds:.3f} s, {len(body):,} bytes, "
                    f"RSS +{growth:.1f} MB (process {_rss_mb():.0f} MB)"
                )
                assert status == 200
                assert seconds < 1
                assert len(body) < 1_000_000
                assert growth < 50
                stats = json.loads(body)["stats"]
                assert stats["total_requests"] == FLOOD
                assert stats["total_tokens"] == int(raw[1])
                assert stats["total_cost"] == float(exact["total_cost"])
    finally:
        store.close()


def _pollute(store: SQLCallStore, url: str, day: str, rows: int) -> None:
    """Daily rows as a release before the cap left them: one per distinct model."""
    columns = (*DAILY_DIMENSIONS, *DAILY_VALUES)
    values = []
    for index in range(rows):
        sketch = Sketch()
        sketch.add(50.0 + index % 997)
        sums = [0] * (len(DAILY_VALUES) - 3)
        sums[0] = 1
        values.append(
            (
                day,
                "svc",
                "openai",
                f"old-{index}",
                "chat",
                "",
                "",
                *sums,
                50.0 + index % 997,
                sketch.to_bytes(),
                None,
            )
        )
    text = (
        f"INSERT INTO llm_call_daily ({', '.join(columns)}) "  # noqa: S608
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url) as connection, connection.cursor() as cursor:
            cursor.executemany(text.replace("?", "%s"), values)
    else:
        import sqlite3

        with sqlite3.connect(url) as connection:
            connection.executemany(text, values)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_store_flooded_before_the_cap_answers_within_the_budget(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """200,000 daily rows already there (no cap then): stats still answer small, within the
    time budget or with a 503 when past it -- never unbounded, never large in memory."""
    url = empty_store_url(backend, request, tmp_path)
    store = open_store(url)
    today = datetime.now(UTC).date().isoformat()
    try:
        _pollute(store, url, today, FLOOD)
        # New calls of that day: the table already holds more than the cap, so they fold.
        store.write([call(FLOOD + i, f"new-{i}", at=datetime.now(UTC)) for i in range(3)])
        assert store.daily_caps.folded["model"] == 3
        with CallLogAPI(store, keys=KEYS, limits=RateLimits(0, 0, 0)) as api:
            for path in ("/stats", "/stats?group_by=model"):
                status, body, seconds, growth = _timed_get(api.url + path)
                print(
                    f"{backend} {path}: {status} in {seconds:.3f} s, {len(body):,} bytes, "
                    f"RSS +{growth:.1f} MB"
                )
                assert status in (200, 503)
                assert seconds < api.app.stats_timeout + 1.5
                assert len(body) < 1_000_000
                assert growth < 100
                if status == 200:
                    assert json.loads(body)["stats"]["total_requests"] == FLOOD + 3
    finally:
        store.close()


def test_busiest_values_are_admitted_first(store: SQLCallStore) -> None:
    calls = [call(i, model) for i, model in enumerate(["z"] * 3 + ["y"] * 2 + ["a", "b"])]
    store.write(calls)
    assert daily_values(store, "model") == {"z", "y", "a", OTHER}
    assert store.daily_caps.folded["model"] == 1
    # Full now, and every value cached: a new value folds without asking the database.
    store.write([call(50, "c")])
    assert store.daily_caps.folded["model"] == 2
    assert daily_values(store, "model") == {"z", "y", "a", OTHER}


def test_values_with_room_are_admitted_unlooked_up_and_known_once_committed(
    store_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write whose new values all fit under the cap does not ask which are present (a write
    of 5,000 users a day); they are known, with no query, once it committed -- not before,
    and not if it rolled back -- and a write that could pass the cap looks them up as before."""
    asked: list[str] = []
    for name in ("_present", "_count"):
        original = getattr(cardinality, name)

        def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            asked.append(f"{_name} {args[1]}")
            return _original(*args)

        monkeypatch.setattr(cardinality, name, counted)
    store = open_store(store_url, clock=lambda: NOW, max_daily_values=3, max_daily_users=4)
    users = "llm_call_daily_user"
    try:
        assert store.write([call(i, "m", user=f"u{i % 3}") for i in range(6)]) == 6
        assert f"_count {users}" in asked
        assert not [query for query in asked if query.startswith("_present")]
        asked.clear()
        assert store.write([call(i, "m", user=f"u{i % 3}") for i in range(10, 16)]) == 6
        assert asked == []  # every value known since the first write committed
        # A write the database refuses is rolled back: its new user is not known after it,
        # nor after a write that commits without folding (all duplicates).
        _refuse_daily_user(store_url, "u7")
        refused = call(20, "m", user="u7")
        assert store.write_batch([refused]).quarantined == (refused.id,)
        _refuse_daily_user(store_url, None)
        assert store.write([call(0, "m", user="u0")]) == 0  # commits, folding nothing
        assert not any("u7" in known.values for known in store.daily_caps._known.values())
        asked.clear()
        # Three known, two new for one place left: both looked up, the busier admitted.
        more = [call(30 + i, "m", user=user) for i, user in enumerate(["u3", "u3", "u4", "u1"])]
        assert store.write(more) == 4
        assert f"_present {users}" in asked
        assert daily_values(store, "user_id", table=users) == {"u0", "u1", "u2", "u3", OTHER}
        assert store.daily_caps.folded["user"] == 1
        answer = store.stats(StatsQuery(group_by="user"))
        assert groups_of(answer)[OTHER]["total_requests"] == 1
        assert answer["stats"]["total_requests"] == 16
    finally:
        store.close()


def _refuse_daily_user(url: str, user: str | None) -> None:
    """A real failure after the caps ran: the daily rows by user refuse ``user`` (None: the
    refusal removed)."""
    if _postgres(url):
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("ALTER TABLE llm_call_daily_user DROP CONSTRAINT IF EXISTS refuse")
            if user is not None:
                connection.execute(
                    "ALTER TABLE llm_call_daily_user ADD CONSTRAINT refuse "
                    f"CHECK (user_id <> '{user}')"
                )
    else:
        with sqlite3.connect(url) as connection:
            connection.execute("DROP TRIGGER IF EXISTS refuse")
            if user is not None:
                connection.execute(
                    "CREATE TRIGGER refuse BEFORE INSERT ON llm_call_daily_user "
                    f"WHEN NEW.user_id = '{user}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
