"""PostgreSQL's call log at scale: reads from a pool run side by side, the calls table is
partitioned by UTC day (a day's query reads one partition, retention drops whole days, a call
outside the partitions made is still stored once), and a store of the schema before the
partitioning upgrades to it answering every question as before. Real PostgreSQL throughout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from otel_llm.calllog import partitions, schema, sql, traces
from otel_llm.calllog.api import CallLogAPI
from otel_llm.calllog.postgres import PostgresCallStore
from otel_llm.calllog.query import CallFilter, CallQuery, StatsQuery
from tests.support.postgres import PostgresCluster, pg_cluster  # noqa: F401 - fixture
from tests.test_calllog_api import KEYS, UNLIMITED, Client
from tests.test_calllog_store import make_records

# Close to the real date: the upgrade makes partitions for the days around it.
NOW = datetime.now(UTC).replace(hour=6, minute=30, second=0, microsecond=0)
DAY_US = 86_400_000_000


@pytest.fixture
def url(pg_cluster: PostgresCluster) -> str:  # noqa: F811 - the fixture
    return pg_cluster.create_database()


@pytest.fixture
def store(url: str) -> Iterator[PostgresCallStore]:
    opened = PostgresCallStore(url, clock=lambda: NOW)
    try:
        yield opened
    finally:
        opened.close()


def written(url: str, records: list[Any]) -> list[Any]:
    """``records``, written to the store at ``url`` by a writer of their day (then closed)."""
    writer = PostgresCallStore(url, clock=lambda: NOW)
    try:
        writer.write(records)
    finally:
        writer.close()
    return records


def partition_of(url: str, call_id: str) -> str:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            f"SELECT tableoid::regclass::text FROM {schema.CALLS} WHERE id = %s",  # noqa: S608
            (call_id,),
        ).fetchone()
    assert row is not None
    return str(row[0])


def day_partitions(url: str) -> dict[int, str]:
    with psycopg.connect(url) as connection:
        return partitions.existing(connection)


def explain(url: str, statement: sql.Statement) -> str:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "EXPLAIN " + statement.text.replace("?", "%s"),  # type: ignore[call-overload]
            statement.params,
        ).fetchall()
    return "\n".join(row[0] for row in rows)


# --- the pool ------------------------------------------------------------------------------


def test_a_slow_api_read_does_not_hold_up_another(url: str) -> None:
    store = PostgresCallStore(url, pool_size=4)
    records = make_records(60, now=datetime.now(UTC), seed=3)
    store.write(records)
    blocker = psycopg.connect(url)
    try:
        with CallLogAPI(store, keys=KEYS, limits=UNLIMITED) as served:
            client = Client(served.url)
            # A stats request made slow for real: the daily table it reads is locked by
            # another session until the list below has been answered.
            blocker.execute(f"LOCK TABLE {schema.DAILY} IN ACCESS EXCLUSIVE MODE")
            slow: dict[str, Any] = {}

            def stats() -> None:
                slow["started"] = time.monotonic()
                slow["answer"] = client.ok("/stats?group_by=model")
                slow["done"] = time.monotonic()

            thread = threading.Thread(target=stats)
            thread.start()
            deadline = time.monotonic() + 10
            while not _waiting_on_lock(url):  # the stats query holds its connection, waiting
                assert time.monotonic() < deadline, "the stats request never reached the lock"
                time.sleep(0.05)
            listed = client.ok("?limit=5")
            answered = time.monotonic()
            assert listed["pagination"]["total"] == len(records)
            assert "done" not in slow  # answered while the stats request still waits
            blocker.rollback()  # the lock goes: the stats answer
            thread.join(10)
            assert slow["done"] > answered
            assert slow["answer"]["stats"]["total_requests"] == len(records)
    finally:
        blocker.close()
        store.close()


def _waiting_on_lock(url: str) -> bool:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        ).fetchone()
    return bool(row and row[0])


def test_reads_of_a_server_that_is_down_fail_naming_it(url: str) -> None:
    store = PostgresCallStore(url, pool_size=2, pool_timeout=0.5)
    base, _, database = url.rpartition("/")
    try:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')  # type: ignore[call-overload]
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )
            try:
                with pytest.raises(psycopg.OperationalError) as failed:
                    store.count(CallFilter())
                message = str(failed.value)
                assert database in message
                assert "call_log_pg_pool_timeout" in message
            finally:
                admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')  # type: ignore[call-overload]
        deadline = time.monotonic() + 15
        while True:  # the pool connects again by itself
            try:
                assert store.count(CallFilter()) == 0
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        store.close()


# --- partitions ----------------------------------------------------------------------------


def test_a_days_queries_read_one_partition(store: PostgresCallStore, url: str) -> None:
    store.write(make_records(300, days=5, now=NOW, seed=5))
    made = day_partitions(url)
    today = partitions.day_of(NOW)
    assert set(range(today - 5, today + partitions.AHEAD_DAYS + 1)) <= set(made)
    day = today - 2
    start = datetime.fromtimestamp(day * 86_400, UTC)
    one_day = CallFilter(start=start, end=start + timedelta(days=1), model="gpt-4o")
    for statement in (
        sql.list_statement(CallQuery(filter=one_day, limit=50), ("id", "model")),
        sql.count_statement(one_day),
    ):
        plan = explain(url, statement)
        read = {name for name in (*made.values(), partitions.DEFAULT) if name in plan}
        assert read == {made[day]}, plan


def test_a_call_is_found_by_id_through_each_partitions_trace_index(
    store: PostgresCallStore, url: str
) -> None:
    # v12: no look-up index; the trace index, (trace_id, span_key) in each partition, is
    # probed with both (sequential scans off: the test's partitions are too small to need it).
    records = make_records(60, days=3, now=NOW, seed=6)
    store.write(records)
    statement = sql.get_statement(records[0].id, ("id",), None, None)
    assert statement is not None
    with psycopg.connect(url) as connection:
        connection.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in connection.execute(
                "EXPLAIN " + statement.text.replace("?", "%s"),  # type: ignore[call-overload]
                statement.params,
            ).fetchall()
        )
    assert "Seq Scan" not in plan, plan
    assert "Index Cond" in plan, plan
    assert "trace_id = " in plan, plan
    assert "span_key = " in plan, plan
    found = store.get(records[0].id)
    assert found is not None
    assert found["id"] == records[0].id


def test_retention_drops_whole_days_and_cuts_the_boundary_day_to_the_microsecond(
    url: str,
) -> None:
    records = written(url, make_records(400, days=12, now=NOW, seed=8))
    later = NOW + timedelta(days=3)  # 06:30, not midnight: the boundary day is cut in two
    store = PostgresCallStore(url, clock=lambda: later)
    try:
        result = store.apply_retention(later, content_days=5, record_days=9)
        cutoff = later - timedelta(days=9)
        expired = {r.id for r in records if r.created_at < cutoff}
        assert 0 < len(expired) < len(records)
        assert result.records_deleted == len(expired)
        kept = {r.id for r in records} - expired
        assert store.count(CallFilter()) == len(kept)
        listed = [
            call["id"]
            for offset in range(0, len(kept) + 100, 100)
            for call in store.list(CallQuery(limit=100, offset=offset, select=("id",))).calls
        ]
        assert sorted(listed) == sorted(kept)
        cutoff_day = partitions.day_of(cutoff)
        remaining = day_partitions(url)
        assert min(remaining) == cutoff_day  # the days before it: dropped, not emptied
        assert store.apply_retention(later, content_days=5, record_days=9).records_deleted == 0
    finally:
        store.close()


def test_retention_held_off_a_drop_by_an_open_read_deletes_the_calls_row_by_row(
    url: str,
) -> None:
    # Any open read of the calls (even of another day) holds off DROP's lock: retention must
    # still delete exactly the expired calls, and drop the days on a later run.
    records = written(url, make_records(200, days=12, now=NOW, seed=10))
    later = NOW + timedelta(days=3)
    cutoff = later - timedelta(days=9)
    expired = {r.id for r in records if r.created_at < cutoff}
    store = PostgresCallStore(url, clock=lambda: later)
    try:
        with psycopg.connect(url) as reader:
            reader.execute(f"SELECT count(*) FROM {schema.CALLS}").fetchone()  # noqa: S608
            result = store.apply_retention(later, content_days=5, record_days=9)  # waits 2 s
            assert result.records_deleted == len(expired) > 0
            assert min(day_partitions(url)) < partitions.day_of(cutoff)  # not dropped yet
        assert store.count(CallFilter()) == len(records) - len(expired)
        assert store.apply_retention(later, content_days=5, record_days=9).records_deleted == 0
        assert min(day_partitions(url)) == partitions.day_of(cutoff)  # dropped now
    finally:
        store.close()


def test_a_call_from_outside_the_partitions_is_kept_once_and_moves_in_when_its_day_comes(
    url: str,
) -> None:
    # A call older than retention (a late span; one more than a day ahead is quarantined, and
    # the days ahead have their partitions already): no partition is made for its day.
    old, other = make_records(2, days=1, now=NOW - timedelta(days=200), seed=9)
    store = PostgresCallStore(url, clock=lambda: NOW, record_days=90)
    try:
        assert store.write([old]) == 1
        assert partition_of(url, old.id) == partitions.DEFAULT
        assert partitions.day_of(old.created_at) not in day_partitions(url)
        assert store.write([old]) == 0  # redelivered: still once
        assert store.get(old.id) is not None
    finally:
        store.close()
    # A writer keeping records longer makes the partition of that day: the call moves in.
    store = PostgresCallStore(url, clock=lambda: NOW, record_days=365)
    try:
        assert store.write([old, other]) == 1
        day = partitions.day_of(old.created_at)
        assert partition_of(url, old.id) == partitions.name_of(day)
        assert store.count(CallFilter()) == 2
        got = store.get(old.id)
        assert got is not None
        assert got["id"] == old.id
        assert store.write([old, other]) == 0
        start = datetime.fromtimestamp(day * 86_400, UTC)
        stats = store.stats(StatsQuery(filter=CallFilter(start=start, end=NOW)))
        assert stats["stats"]["total_requests"] == 2  # the daily rows counted each once
    finally:
        store.close()


def test_a_partition_that_cannot_be_made_leaves_its_calls_in_the_default_one(url: str) -> None:
    (late,) = make_records(1, days=1, now=NOW - timedelta(days=20), seed=12)
    store = PostgresCallStore(url, clock=lambda: NOW)
    holder = psycopg.connect(url)
    try:
        store.write(make_records(1, days=0.1, now=NOW, seed=13))  # today's partitions made
        # A long read of the default partition: attaching a partition needs it exclusively.
        holder.execute(f"LOCK TABLE {partitions.DEFAULT} IN ACCESS SHARE MODE")
        started = time.monotonic()
        assert store.write([late]) == 1
        assert time.monotonic() - started < 30
        assert partition_of(url, late.id) == partitions.DEFAULT
        assert partitions.day_of(late.created_at) not in day_partitions(url)
        holder.rollback()
        assert store.write([late]) == 0  # still once (its day is retried a minute later)
        assert store.get(late.id) is not None
    finally:
        holder.close()
        store.close()


# --- the upgrade ---------------------------------------------------------------------------


def _answers(store: PostgresCallStore, records: list[Any]) -> dict[str, Any]:
    models = sorted({r.model for r in records if r.model})
    queries = [
        *(CallQuery(limit=100, offset=offset) for offset in range(0, len(records), 100)),
        CallQuery(limit=37, offset=11, sort="cost", descending=True),
        *(CallQuery(filter=CallFilter(model=model), limit=100) for model in models),
        CallQuery(filter=CallFilter(status="error", start=NOW - timedelta(days=3)), limit=100),
    ]
    answers: dict[str, Any] = {
        "lists": [store.list(query) for query in queries],
        "gets": [store.get(r.id) for r in records],
        "details": [store.details(r.id) for r in records[:40]],
        "summary": store.summary(CallFilter()),
    }
    stats_start = NOW - timedelta(days=15)
    for group_by in (None, "model", "day", "week", "status", "user", "api_key_id", "hour"):
        start = NOW - timedelta(days=6) if group_by == "hour" else stats_start
        answers[f"stats {group_by}"] = store.stats(
            StatsQuery(filter=CallFilter(start=start), group_by=group_by, limit=500)
        )
    answers["traces"] = store.traces(traces.TraceQuery(limit=200))
    answers["trace trees"] = [store.trace(r.trace_id) for r in records[:20]]
    return answers


def test_a_store_of_the_schema_before_partitions_upgrades_answering_the_same(
    pg_cluster: PostgresCluster,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"unpartitioned_{time.monotonic_ns()}"
    with psycopg.connect(pg_cluster.url(), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')  # type: ignore[call-overload]
    url = pg_cluster.url(name)
    records = make_records(500, days=12, now=NOW, seed=21)
    unpartitioned = schema.MIGRATIONS.index(schema._v8)  # the schema before the partitioning
    with monkeypatch.context() as old:
        old.setattr(schema, "LATEST", unpartitioned)
        old.setattr(partitions.Partitions, "ensure", lambda *_: None)
        before_store = PostgresCallStore(url, clock=lambda: NOW)
        try:
            assert before_store.schema_version() == unpartitioned
            assert before_store.write(records) == len(records)
            before = _answers(before_store, records)
        finally:
            before_store.close()
    assert not day_partitions(url)  # a plain table

    store = PostgresCallStore(url, clock=lambda: NOW)
    try:
        assert store.schema_version() == schema.LATEST
        made = day_partitions(url)
        assert {partitions.day_of(r.created_at) for r in records} <= set(made)
        for record in records[:50]:
            assert partition_of(url, record.id) == made[partitions.day_of(record.created_at)]
        after = _answers(store, records)
        assert after.keys() == before.keys()
        for name in before:
            assert after[name] == before[name], name
        assert store.write(records) == 0  # redelivered after the upgrade: still once
        assert store.count(CallFilter()) == len(records)
    finally:
        store.close()
