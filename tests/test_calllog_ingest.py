"""The write path made faster for issue 12 (100,000 users, 1,000 keys): the roll-up that groups
a write's calls per daily row, and SQLite's day-first user and API key indexes (migration v9)
-- the same answers as before, exactly, on both backends."""

from __future__ import annotations

import dataclasses
import gc
import random
import sqlite3
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from otel_llm.calllog import rollup, schema, sql
from otel_llm.calllog.catalogue import ROLLUPS
from otel_llm.calllog.config import CallLogConfig
from otel_llm.calllog.query import CallFilter, CallQuery, StatsQuery
from otel_llm.calllog.record import CallRecord, micros_of
from otel_llm.calllog.service import CollectorCallLog
from otel_llm.calllog.sketch import EMPTY_BYTES, Sketch, bucket, buckets_bytes, merged_bytes
from otel_llm.calllog.sqlite import SQLiteCallStore
from otel_llm.calllog.store import SQLCallStore, open_store
from otel_llm.calllog.traces import TraceQuery
from tests.support.postgres import pg_cluster, store_url  # noqa: F401 - fixtures
from tests.test_calllog_store import NOW, make_records


def varied(count: int, seed: int) -> list[CallRecord]:
    """``make_records``' calls with more users and keys (some absent), some on credits with a
    discount and some with a policy violation (every counter of a daily row moves)."""
    rng = random.Random(seed)  # noqa: S311 - test data
    return [
        dataclasses.replace(
            record,
            user=rng.choice([*(f"user-{n}" for n in range(30)), None]),
            api_key_id=rng.choice([*(f"key-{n}" for n in range(6)), None]),
            billing=rng.choice(["credits", "own_key", None]),
            list_cost=record.cost * 2 if record.cost is not None and index % 3 else None,
            discount=record.cost / 4 if record.cost is not None and index % 4 == 0 else None,
            policy="p" if index % 9 == 0 else None,
            policy_rule="r" if index % 9 == 0 else None,
            policy_action=("alert", "block", "log")[index % 3] if index % 9 == 0 else None,
        )
        for index, record in enumerate(make_records(count, days=6, seed=seed))
    ]


def one_by_one(rows: list[tuple[Any, ...]]) -> dict[str, dict[rollup.DailyKey, tuple[Any, ...]]]:
    """Each table's rows as ``Totals.add`` makes them, call after call (the reference)."""
    column = {name: index for index, name in enumerate(sql.INSERT_COLUMNS)}
    summed = [column[name] for name in rollup.SUMMED]
    billed = [column[name] for name in rollup.BILLED]
    tables: dict[str, dict[rollup.DailyKey, rollup.Totals]] = {}
    for daily in ROLLUPS:
        rows_of: dict[rollup.DailyKey, rollup.Totals] = defaultdict(rollup.Totals)
        for row in rows:
            day = (rollup._EPOCH + timedelta(days=row[column["day"]])).isoformat()
            key = (day, *(row[column[name]] or "" for name in daily.key[1:]))
            rows_of[key].add(
                row[column["status"]] == "error",
                [row[index] for index in summed],
                row[column["latency_ms"]],
                row[column["ttfc_ms"]],
                [row[index] for index in billed],
                policy_action=row[column["policy_action"]],
            )
        tables[daily.table] = dict(rows_of)
    return {
        table: {key: totals.row_values() for key, totals in rows_of.items()}
        for table, rows_of in tables.items()
    }


def test_sqlite_rows_hold_the_nan_stand_in_where_values_are_absent_and_roll_up_the_same() -> None:
    """SQLite's writer binds and rolls up one row per call, an absent value as the NaN
    ``SQLITE_NULL`` (stored as NULL): the row is ``row_of``'s with each None so, and its roll-up
    is ``row_of``'s to the byte -- sparse calls (no tokens, cost, latency, user...) included."""
    records = varied(600, seed=12)
    sparse = [
        dataclasses.replace(
            record,
            input_tokens=None,
            output_tokens=None,
            total_tokens=None,
            cost=None,
            cost_input=None,
            cost_output=None,
            latency_ms=None,
            time_to_first_chunk_ms=None,
            service=None,
            feature=None,
            user=None,
            api_key_id=None,
            project=None,
        )
        for record in records[:100]
    ]
    records += sparse
    plain = [sql.row_of(record) for record in records]
    bound = [sql.sqlite_row_of(record) for record in records]
    for row, nan_row in zip(plain, bound, strict=True):
        assert [value is None for value in row] == [v is sql.SQLITE_NULL for v in nan_row]
        assert [v for v in row if v is not None] == [v for v in nan_row if v is not sql.SQLITE_NULL]
    expected = rollup.rollup(plain)
    got = rollup.rollup(bound, sqlite=True)
    assert got.keys() == expected.keys()
    for table, rows_of in expected.items():
        assert {key: row.row_values() for key, row in got[table].items()} == {
            key: row.row_values() for key, row in rows_of.items()
        }, table
    assert "" in {key[1] for key in got["llm_call_daily_user"]}  # absent users rolled up as ''


def test_the_roll_up_of_a_write_is_the_sum_of_its_calls_one_by_one() -> None:
    rows = [sql.row_of(record) for record in varied(600, seed=3)]
    added = rollup.rollup(rows)
    expected = one_by_one(rows)
    assert added.keys() == expected.keys()
    for table, rows_of in expected.items():
        got = {key: row.row_values() for key, row in added[table].items()}
        assert got.keys() == rows_of.keys(), table
        for key, values in rows_of.items():
            # Integer sums and sketches exact; the latency sum (a float) up to its rounding.
            assert got[key][:-3] == values[:-3], (table, key)
            assert got[key][-3] == pytest.approx(values[-3], rel=1e-12)
            assert got[key][-2:] == values[-2:], (table, key)
    # The first table's rows are made of the rows by status: every call is in one of each.
    for daily in ROLLUPS:
        assert sum(row.requests for row in added[daily.table].values()) == len(rows)


@pytest.fixture
def filled(store_url: str) -> Iterator[tuple[SQLCallStore, list[CallRecord]]]:  # noqa: F811
    store = open_store(store_url, clock=lambda: NOW)
    records = varied(500, seed=11)
    try:
        # In several writes, one of them redelivering calls: stored and counted once.
        assert store.write(records[:200]) == 200
        assert store.write(records[150:]) == 300
        yield store, records
    finally:
        store.close()


def newest_first(records: list[CallRecord]) -> list[str]:
    ordered = sorted(records, key=lambda r: (micros_of(r.created_at), r.id), reverse=True)
    return [r.id for r in ordered]


FILTERS = [
    {"user": "user-3"},
    {"user": ("user-1", "user-2", "user-29")},
    {"api_key_id": "key-2"},
    {"api_key_id": ("key-0", "key-5"), "user": ("user-4", "user-7", "user-8")},
    {"user": "user-9", "start": NOW - timedelta(days=3), "end": NOW - timedelta(days=1)},
    {"api_key_id": "key-1", "start": NOW - timedelta(days=2)},
    {"api_key_id": "key-1", "end": NOW - timedelta(days=4, hours=5)},
    {"user": "nobody"},
    {"api_key_id": "key-3", "start": NOW + timedelta(days=2)},
]


def selected(records: list[CallRecord], conditions: dict[str, Any]) -> list[CallRecord]:
    def matches(record: CallRecord) -> bool:
        for name, wanted in conditions.items():
            if name == "start" and record.created_at < wanted:
                return False
            if name == "end" and record.created_at >= wanted:
                return False
            if name in ("user", "api_key_id"):
                value = getattr(record, name)
                if value not in ((wanted,) if isinstance(wanted, str) else wanted):
                    return False
        return True

    return [record for record in records if matches(record)]


@pytest.mark.parametrize("conditions", FILTERS, ids=[",".join(c) for c in FILTERS])
def test_user_and_key_filters_list_count_and_sum_every_matching_call(
    filled: tuple[SQLCallStore, list[CallRecord]], conditions: dict[str, Any]
) -> None:
    store, records = filled
    mine = selected(records, conditions)
    call_filter = CallFilter(**conditions)
    assert store.count(call_filter) == len(mine)
    expected = newest_first(mine)
    for offset in (0, 7):
        page = store.list(CallQuery(filter=call_filter, limit=10, offset=offset))
        assert [call["id"] for call in page.calls] == expected[offset : offset + 10]
        assert page.total == len(mine)
    oldest = store.list(CallQuery(filter=call_filter, limit=100, descending=False))
    assert [call["id"] for call in oldest.calls] == expected[::-1][:100]
    by_cost = store.list(CallQuery(filter=call_filter, sort="cost", limit=100))
    costs = [call["cost"] for call in by_cost.calls]
    priced = sorted((r.cost for r in mine if r.cost is not None), reverse=True)
    assert costs[: len(priced)] == priced
    summary = store.summary(call_filter)
    assert summary.requests == len(mine)
    assert summary.priced == len([r for r in mine if r.cost is not None])
    assert summary.cost == (sum(priced) if priced else None)


def test_stats_by_agent_of_one_user_read_the_users_calls(
    filled: tuple[SQLCallStore, list[CallRecord]],
) -> None:
    store, records = filled
    mine = [r for r in records if r.user == "user-5"]
    answer = store.stats(
        StatsQuery(
            filter=CallFilter(user="user-5", start=NOW - timedelta(days=7)), group_by="agent"
        )
    )
    assert answer["stats"]["total_requests"] == len(mine)
    assert sum(group["total_requests"] for group in answer["groups"]) == len(mine)


def test_traces_of_one_user_or_key_are_those_of_their_calls(
    filled: tuple[SQLCallStore, list[CallRecord]],
) -> None:
    store, records = filled
    for conditions in ({"user": "user-6"}, {"api_key_id": ("key-0", "key-2")}):
        mine = selected(records, conditions)
        answer = store.traces(TraceQuery(filter=CallFilter(**conditions), limit=100))
        assert answer["pagination"]["total"] == len({r.trace_id for r in mine})
        listed = {t["trace_id"] for t in answer["data"]}
        assert listed <= {r.trace_id for r in mine}
        assert len(listed) == min(100, len({r.trace_id for r in mine}))


def plan(path: Path, statement: sql.Statement) -> str:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(f"EXPLAIN QUERY PLAN {statement.text}", statement.params)
        return " / ".join(str(row[-1]) for row in rows)


def test_sqlite_seeks_a_user_or_key_day_by_day_and_reads_newest_first_off_the_index(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calls.db"
    store = SQLiteCallStore(str(path), clock=lambda: NOW)
    try:
        store.write(varied(300, seed=5))
        days = store._days(CallFilter(user="user-1"))
        assert days is not None
        # The stored calls' days (within the six before NOW), one statement parameter each.
        day_us = 86_400_000_000
        assert days[0] >= micros_of(NOW - timedelta(days=6)) // day_us
        assert days[-1] <= micros_of(NOW) // day_us
        assert len(days) >= 6
        for name, index in (
            ("user", "llm_calls_user_day"),
            ("api_key_id", "llm_calls_api_key_day"),
        ):
            query = CallQuery(filter=CallFilter(**{name: "x"}), limit=20)
            listed = plan(path, sql.list_statement(query, ("id",), days))
            assert f"USING INDEX {index}" in listed
            # The page's order comes off the index (only ties of one time are sorted).
            assert "RIGHT PART OF ORDER BY" in listed
            counted = plan(path, sql.count_statement(query.filter, days))
            assert f"USING COVERING INDEX {index}" in counted
        # A filter on neither names no days (its indexes are keyed by the dimension).
        assert store._days(CallFilter(model="gpt-4o")) is None
    finally:
        store.close()


def test_a_sqlite_store_before_v9_upgrades_to_the_day_indexes_answering_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "calls.db")
    records = varied(300, seed=9)
    before_v9 = schema.MIGRATIONS.index(schema._v9)
    queries = [CallFilter(user="user-2"), CallFilter(api_key_id=("key-1", "key-4"))]
    with monkeypatch.context() as old:
        old.setattr(schema, "LATEST", before_v9)
        old.setattr(SQLiteCallStore, "_day_indexes", False)
        old_store = SQLiteCallStore(path, clock=lambda: NOW)
        try:
            assert old_store.schema_version() == before_v9
            old_store.write(records)
            before = [old_store.list(CallQuery(filter=f, limit=50)).calls for f in queries]
        finally:
            old_store.close()
    store = SQLiteCallStore(path, clock=lambda: NOW)
    try:
        assert store.schema_version() == schema.LATEST
        indexes = {
            row[0]
            for row in store._read(
                sql.Statement("SELECT name FROM sqlite_master WHERE type = 'index'", ())
            )
        }
        assert {"llm_calls_user_day", "llm_calls_api_key_day"} <= indexes
        assert not {"llm_calls_user", "llm_calls_api_key"} & indexes
        after = [store.list(CallQuery(filter=f, limit=50)).calls for f in queries]
        assert after == before
        assert [len(page) for page in after] == [
            min(50, len(selected(records, {"user": "user-2"}))),
            min(50, len(selected(records, {"api_key_id": ("key-1", "key-4")}))),
        ]
    finally:
        store.close()


def test_a_call_is_found_by_id_through_the_trace_index_as_before_the_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # v12: the look-up index (day, span_key) is gone; the trace index, now (day, trace_id,
    # span_key), finds a call by its id with one seek a day.
    path = tmp_path / "calls.db"
    records = varied(200, seed=12)
    before_v12 = schema.MIGRATIONS.index(schema._v12)
    with monkeypatch.context() as old:
        old.setattr(schema, "LATEST", before_v12)
        old_store = SQLiteCallStore(str(path), clock=lambda: NOW)
        try:
            assert old_store.schema_version() == before_v12
            old_store.write(records)
            before = [old_store.get(record.id) for record in records[:30]]
        finally:
            old_store.close()
    store = SQLiteCallStore(str(path), clock=lambda: NOW)
    try:
        assert store.schema_version() == schema.LATEST
        with sqlite3.connect(path) as connection:
            names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
            trace = [row[2] for row in connection.execute("PRAGMA index_info(llm_calls_trace)")]
        assert "llm_calls_lookup" not in names
        assert trace == ["day", "trace_id", "span_key"]
        assert all(found is not None for found in before)
        assert [store.get(record.id) for record in records[:30]] == before
        # The id's two halves are both matched: another span of the trace, or the span id
        # under another trace, is no call.
        first, second = records[0], records[1]
        assert store.get(f"{first.trace_id}-{second.span_id}") is None
        assert store.get(f"{second.trace_id}-{first.span_id}") is None
        statement = sql.get_statement(first.id, ("id",), None, [micros_of(NOW) // 86_400_000_000])
        assert statement is not None
        assert "USING INDEX llm_calls_trace (day=? AND trace_id=? AND span_key=?)" in plan(
            path, statement
        )
    finally:
        store.close()


def test_sketch_bytes_of_buckets_are_those_of_a_sketch_of_them() -> None:
    rng = random.Random(4)  # noqa: S311 - test data
    for size in (0, 1, 2, 3, 7, 40):
        values = [rng.choice([0.0, rng.lognormvariate(6.5, 1.5)]) for _ in range(size)]
        sketch = Sketch()
        sketch.add_all(values)
        assert buckets_bytes([bucket(value) for value in values]) == sketch.to_bytes()


def test_the_stored_time_range_is_read_off_the_primary_key(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    store = SQLiteCallStore(str(path), clock=lambda: NOW)
    try:
        records = varied(50, seed=2)
        store.write(records)
        first, last = store._read(sql.day_range_statement())[0]
        assert first == min(micros_of(r.created_at) for r in records)
        assert last == max(micros_of(r.created_at) for r in records)
        # Two seeks, no scan (a MIN and a MAX in one select scanned an index).
        assert "SCAN llm_calls" not in plan(path, sql.day_range_statement())
    finally:
        store.close()


def _noting_collections(inside: list[bool]) -> Any:
    """A ``gc.callbacks`` entry noting, for each collection, whether it ran inside a write's
    finding of its new calls or building and inserting of their rows."""

    def collecting(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            frame = sys._getframe(1)
            names = set()
            while frame is not None:
                names.add(frame.f_code.co_name)
                frame = frame.f_back
            inside.append(bool(names & {"_insert", "_new_records"}))

    return collecting


@pytest.fixture
def cycles_collected() -> Iterator[None]:
    """Python's cycle collector as the tests found it, whatever a test did to it."""
    enabled, threshold = gc.isenabled(), gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        (gc.enable if enabled else gc.disable)()


def test_a_write_makes_no_reference_cycles(tmp_path: Path, cycles_collected: None) -> None:
    """Why SQLite's writer may hold the cycle collector off: nothing it leaves needs it."""
    store = SQLiteCallStore(
        str(tmp_path / "calls.db"), clock=lambda: NOW, hold_cycle_collector=True
    )
    try:
        records = varied(2000, seed=5)
        store.write(records[:100])
        gc.collect()
        gc.disable()
        assert store.write(records[100:]) == 1900
        assert gc.collect() == 0
    finally:
        store.close()


def test_no_cycle_collection_runs_inside_a_sqlite_write_and_it_resumes_after(
    tmp_path: Path, cycles_collected: None
) -> None:
    path = tmp_path / "calls.db"
    store = SQLiteCallStore(str(path), clock=lambda: NOW, hold_cycle_collector=True)
    inside: list[bool] = []
    records = varied(600, seed=6)
    gc.set_threshold(1)  # a collection at nearly every allocation, were it enabled
    gc.callbacks.append(collecting := _noting_collections(inside))
    try:
        assert store.write(records[:200]) == 200
        assert gc.isenabled()
        # A batch the database refuses (a call it will not take) is rolled back inside the
        # hold, then written call by call: the collector resumes all the same.
        with sqlite3.connect(path) as connection:
            connection.execute(
                "CREATE TRIGGER refuse_model BEFORE INSERT ON llm_calls "
                "WHEN NEW.model = 'refused-model' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        refused = dataclasses.replace(records[200], model="refused-model")
        result = store.write_batch([refused, *records[201:400]])
        assert (result.stored, result.quarantined) == (199, (refused.id,))
        assert gc.isenabled()
        # Off before a write, off after it.
        gc.disable()
        assert store.write(records[400:]) == 200
        assert not gc.isenabled()
    finally:
        gc.callbacks.remove(collecting)
        store.close()
    assert inside.count(False) > 0  # collections ran around the writes
    assert inside.count(True) == 0  # and none inside one


def test_writes_of_several_threads_leave_the_cycle_collector_running(
    tmp_path: Path, cycles_collected: None
) -> None:
    stores = [
        SQLiteCallStore(str(tmp_path / f"{n}.db"), clock=lambda: NOW, hold_cycle_collector=True)
        for n in range(3)
    ]
    records = varied(900, seed=8)

    def write(store: SQLiteCallStore) -> None:
        for start in range(0, 900, 50):
            store.write(records[start : start + 50])

    try:
        threads = [threading.Thread(target=write, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [store.count(CallFilter()) for store in stores] == [900] * 3
        assert gc.isenabled()
    finally:
        for store in stores:
            store.close()


def test_a_store_in_an_applications_process_leaves_its_cycle_collector_alone(
    tmp_path: Path, cycles_collected: None
) -> None:
    """``CallLogExporter``'s store (the default) never switches the application's collector:
    collections run inside its writes as anywhere else, and a collector the application turns
    off during a write stays off."""
    store = open_store(str(tmp_path / "calls.db"), clock=lambda: NOW)
    inside: list[bool] = []
    records = varied(400, seed=10)
    gc.set_threshold(1)
    gc.callbacks.append(collecting := _noting_collections(inside))
    try:
        assert store.write(records[:200]) == 200
        assert inside.count(True) > 0
        switched: list[bool] = []
        original = store._insert  # type: ignore[attr-defined]

        def insert_with_the_application_switching(*args: Any) -> None:
            gc.disable()  # the application's thread, while the write runs
            original(*args)
            switched.append(gc.isenabled())

        store._insert = insert_with_the_application_switching  # type: ignore[attr-defined]
        assert store.write(records[200:]) == 200
        assert switched == [False]
        assert not gc.isenabled()
    finally:
        gc.callbacks.remove(collecting)
        store.close()


def test_the_collectors_call_log_holds_the_cycle_collector_off_in_writes(
    tmp_path: Path, cycles_collected: None
) -> None:
    """The collector's process is the call log's own: its store's writes hold the collector."""
    call_log = CollectorCallLog(
        CallLogConfig.from_settings(environ={}, store=str(tmp_path / "calls.db"), serve_api=False)
    )
    assert call_log.service is not None
    call_log.service.start()
    inside: list[bool] = []
    gc.set_threshold(1)
    gc.callbacks.append(collecting := _noting_collections(inside))
    try:
        assert call_log.service.store.write(varied(300, seed=11)) == 300
        assert inside.count(True) == 0
        assert inside.count(False) > 0
    finally:
        gc.callbacks.remove(collecting)
        call_log.service.stop()


def test_merging_a_sketch_of_no_values_gives_the_others_bytes() -> None:
    """SQLite's upsert skips the merge when one side has no values: the bytes it keeps are
    those the merge makes, for every kind of sketch the writer stores."""
    rng = random.Random(9)  # noqa: S311 - test data
    sketches = [EMPTY_BYTES, Sketch().to_bytes(), buckets_bytes([-1, -1])]
    for size in (1, 2, 5, 40, 300):
        values = [rng.choice([0.0, rng.lognormvariate(6.5, 2.5)]) for _ in range(size)]
        sketch = Sketch()
        sketch.add_all(values)
        sketches += [sketch.to_bytes(), buckets_bytes([bucket(value) for value in values])]
    grown = Sketch()
    grown.add_all([5.0, 7.0])
    grown.merge_bytes(buckets_bytes([bucket(5.0)]))
    sketches.append(grown.to_bytes())
    for data in sketches:
        assert sql.merge_sketches(data, EMPTY_BYTES) == merged_bytes(data, EMPTY_BYTES) == data
        assert sql.merge_sketches(EMPTY_BYTES, data) == merged_bytes(EMPTY_BYTES, data) == data
