"""The traces list's default page (newest first) is read off the calls' time order: its
answer is the full aggregation's (written here as it was, the oracle) on random stores whose
traces span days, with filters and offsets, on SQLite and PostgreSQL; and on 50,000 calls it
reads a bounded part of the store where the aggregation reads all of it."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from otel_llm.calllog import sql, traces
from otel_llm.calllog.query import CallFilter
from otel_llm.calllog.store import SQLCallStore, open_store
from otel_llm.calllog.traces import SLACK, TraceQuery
from tests.support.postgres import BACKENDS, empty_store_url, pg_cluster  # noqa: F401
from tests.test_calllog_caps import NOW, call

_TOTALS = (
    "COUNT(*) AS calls, SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors, "
    "COUNT(cost_nusd) AS priced, SUM(cost_nusd) AS cost, SUM(input_tokens) AS input_tokens, "
    "SUM(output_tokens) AS output_tokens, SUM(total_tokens) AS total_tokens, "
    "MIN(created_us) AS first_us, MAX(created_us) AS last_us"
)


def aggregated(query: TraceQuery) -> sql.Statement:
    """The list as it was read before: every matching trace's totals, then ordered."""
    matching = sql.where(query.filter)
    near = CallFilter(
        projects=query.filter.projects,
        start=query.filter.start - SLACK if query.filter.start else None,
        end=query.filter.end + SLACK if query.filter.end else None,
    )
    visible = sql.where(near)
    return sql.Statement(
        f"SELECT trace_id, {_TOTALS}, MAX(root_span_name) AS root_span_name "  # noqa: S608
        "FROM llm_calls WHERE trace_id IN (SELECT trace_id FROM llm_calls WHERE "
        f"{matching.text}) AND {visible.text} GROUP BY trace_id "
        "ORDER BY first_us DESC, trace_id DESC LIMIT ? OFFSET ?",
        (*matching.params, *visible.params, query.limit, query.offset),
    )


def random_calls(seed: int) -> list[Any]:
    """Traces of 1 to 6 calls over 6 days, some spread over up to 3 days (beyond the
    slack), many calls sharing a second; models, projects and users at random."""
    rng = random.Random(seed)  # noqa: S311 - a store's shape, not a secret
    calls = []
    for number in range(120):
        trace_id = f"{seed:04x}{number:028x}"
        start = NOW - timedelta(seconds=rng.randrange(6 * 86_400 // 600) * 600)
        spread = rng.choice((0, 60, 3_600, 3 * 86_400))
        for _ in range(rng.randint(1, 6)):
            at = start + timedelta(seconds=rng.randrange(spread + 1) // 600 * 600)
            calls.append(
                call(
                    len(calls),
                    rng.choice(("m1", "m2", "m3")),
                    at=min(at, NOW) + timedelta(microseconds=1),
                    trace_id=trace_id,
                    project=rng.choice(("a", "b")),
                    user=rng.choice(("u1", "u2", None)),
                    cost=None if rng.random() < 0.1 else call(len(calls), None).cost,
                )
            )
    return calls


FILTERS = [
    CallFilter(),
    CallFilter(model="m1"),
    CallFilter(projects=frozenset({"a"})),
    CallFilter(user="u1"),
    CallFilter(user="u2", projects=frozenset({"b"}), model=("m2", "m3")),
    CallFilter(start=NOW - timedelta(days=4), end=NOW - timedelta(days=1, hours=3)),
    CallFilter(start=NOW - timedelta(days=2), model="m2"),
    CallFilter(end=NOW - timedelta(days=3), user="u1"),
]


@pytest.fixture(params=BACKENDS)
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLCallStore]:
    store = open_store(empty_store_url(request.param, request, tmp_path), clock=lambda: NOW)
    try:
        store.write(random_calls(7) + random_calls(8))
        yield store
    finally:
        store.close()


@pytest.mark.parametrize("first_batch", [200, 3])
def test_the_newest_page_is_the_full_aggregations(
    stored: SQLCallStore, first_batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A first batch of 3 calls makes the scan stop on its rule, mid-store, every time.
    monkeypatch.setattr(traces, "_MIN_BATCH", first_batch)
    compared = 0
    for call_filter in FILTERS:
        for limit, offset in ((1, 0), (5, 0), (7, 3), (20, 40), (50, 200)):
            query = TraceQuery(filter=call_filter, limit=limit, offset=offset)
            expected = stored._read(aggregated(query))
            days = stored._days(call_filter)
            assert traces._newest(stored._read, query, days) == expected, (call_filter, offset)
            answer = stored.traces(query)
            assert [t["trace_id"] for t in answer["data"]] == [str(r[0]) for r in expected]
            compared += len(expected)
    assert compared > 150  # the pages were not empty


def test_other_orders_and_bounds_on_the_total_still_aggregate(stored: SQLCallStore) -> None:
    for query in (
        TraceQuery(sort="cost"),
        TraceQuery(sort="time", descending=False),
        TraceQuery(min_cost=None, max_cost=traces.Decimal("0.001")),
        TraceQuery(offset=10_000),
    ):
        assert traces._newest(stored._read, query, None) is None
    query = TraceQuery(limit=30)
    oracle = stored._read(aggregated(query))
    assert [t["trace_id"] for t in stored.traces(query)["data"]] == [str(r[0]) for r in oracle]


def _instructions(path: Path, work: Any) -> tuple[int, Any]:
    """SQLite virtual-machine steps (in thousands) ``work(read)`` takes on the file, and
    its answer."""
    connection = sqlite3.connect(path)
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    connection.set_progress_handler(tick, 1000)
    try:
        answer = work(
            lambda statement: connection.execute(statement.text, statement.params).fetchall()
        )
    finally:
        connection.close()
    return steps[0], answer


def test_the_newest_page_reads_a_bounded_part_of_50000_calls(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    store = open_store(str(path), clock=lambda: NOW)
    try:
        store.write(
            [
                call(i, f"m{i % 3}", at=NOW - timedelta(seconds=i), project="ab"[i % 2])
                for i in range(500)
            ]
        )
        columns = ", ".join(sql.INSERT_COLUMNS)
        changed = {
            "id": "id || '-' || CAST(n AS TEXT)",
            "trace_id": "trace_id || CAST(n AS TEXT)",
            "span_id": "span_id || CAST(n AS TEXT)",
            "span_key": "span_key + n",
            "created_us": "created_us - n * 500000000",
        }
        chosen = ", ".join(changed.get(name, name) for name in sql.INSERT_COLUMNS)
        store._execute(
            sql.Statement(
                f"INSERT INTO llm_calls ({columns}) "  # noqa: S608 - the catalogue's names
                "WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 99) "
                f"SELECT {chosen} FROM llm_calls CROSS JOIN k",
                (),
            )
        )
        assert store.count(CallFilter()) == 50_000
    finally:
        store.close()
    for query in (
        TraceQuery(),
        TraceQuery(offset=450),
        TraceQuery(filter=CallFilter(model="m1")),
        # A key limited to a project: its traces' totals by the trace index, not the project's.
        TraceQuery(filter=CallFilter(projects=frozenset({"a"}))),
    ):
        new, rows = _instructions(path, lambda read, q=query: traces._newest(read, q, None))
        old, oracle = _instructions(path, lambda read, q=query: read(aggregated(q)))
        assert new * 20 < old, (query, new, old)
        assert rows == oracle
        assert len(oracle) == query.limit


def test_a_range_without_calls_lists_nothing(stored: SQLCallStore) -> None:
    far = CallFilter(start=NOW + timedelta(days=30), end=NOW + timedelta(days=31))
    query = replace(TraceQuery(), filter=far)
    assert traces._newest(stored._read, query, stored._days(far)) == []
    assert stored.traces(query)["data"] == []
