"""The call store on SQLite and on a real PostgreSQL: filters, sorts, pages, stats, writes.

Every expected value is computed here from the records written, independently of the store:
sums exactly (Decimal, int), percentiles from the sorted values (within the sketch's 1%).
"""

from __future__ import annotations

import random
import struct
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from otel_llm.calllog import schema
from otel_llm.calllog.catalogue import DAILY_SUMS, DAILY_VALUES, ROLLUPS
from otel_llm.calllog.query import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    CallFilter,
    CallQuery,
    QueryError,
    StatsQuery,
)
from otel_llm.calllog.record import FIELDS, NANO, SUMMARY_FIELDS, CallRecord, call_id
from otel_llm.calllog.sketch import Sketch, bucket, merged_bytes, one_value_bytes
from otel_llm.calllog.sql import Statement
from otel_llm.calllog.store import SQLCallStore, open_store
from tests.support.postgres import (  # noqa: F401 - fixtures
    BACKENDS,
    empty_store_url,
    pg_cluster,
    store_at_version,
    store_url,
)

NOW = datetime(2026, 3, 15, 12, 30, tzinfo=UTC)
RELATIVE_ERROR = 0.01

PROVIDERS = {"gpt-4o": "openai", "gpt-4o-mini": "openai", "claude-sonnet-4-5": "anthropic"}
TEXT_FILTERS = (
    "provider",
    "model",
    "operation",
    "status",
    "service",
    "feature",
    "user",
    "project",
    "api_key_id",
    "request_id",
    "api_key_hint",
)
INJECTIONS = (
    "x' OR '1'='1",
    "'; DROP TABLE llm_calls; --",
    'gpt-4o" OR "1"="1',
    "%",
    "?",
    "%s",
    "\\",
    "gpt-4o' --",
    "1; DELETE FROM llm_call_daily",
)


def make_records(
    count: int = 240, *, days: float = 10, seed: int = 7, now: datetime = NOW
) -> list[CallRecord]:
    """Calls spread over the ``days`` before ``now``, every field varied, some unpriced,
    some failed, some with content."""
    rng = random.Random(seed)  # noqa: S311 - test data, not cryptography
    records = []
    for index in range(count):
        model = rng.choice(list(PROVIDERS))
        created = now - timedelta(microseconds=rng.randrange(int(days * 86_400e6)))
        latency = round(rng.lognormvariate(6.5, 0.8), 3)
        streaming = rng.random() < 0.4
        failed = rng.random() < 0.15
        priced = rng.random() < 0.85
        input_tokens = rng.randrange(1, 5000) if rng.random() < 0.95 else None
        output_tokens = rng.randrange(0, 2000) if input_tokens is not None else None
        cache_read = rng.randrange(0, input_tokens) if input_tokens and rng.random() < 0.3 else None
        parts = {
            name: Decimal(rng.randrange(0, 10**7)) * NANO
            for name in ("cost_input", "cost_output", "cost_cache_read", "cost_request")
        }
        trace, span = rng.getrandbits(128) | 1, rng.getrandbits(64) | 1
        records.append(
            CallRecord(
                id=call_id(trace, span),
                trace_id=f"{trace:032x}",
                span_id=f"{span:016x}",
                created_at=created,
                completed_at=created + timedelta(milliseconds=latency),
                latency_ms=latency if index % 37 else None,
                time_to_first_chunk_ms=round(latency * rng.random(), 3) if streaming else None,
                service=rng.choice(["checkout", "search"]),
                provider=PROVIDERS[model],
                model=model,
                response_model=model + "-2024" if rng.random() < 0.5 else None,
                operation=rng.choice(["chat", "chat", "embeddings"]),
                streaming=streaming,
                status="error" if failed else "success",
                status_code=rng.choice([429, 500]) if failed else 200,
                error_type="RateLimitError" if failed else None,
                error_code="rate_limit_exceeded" if failed else None,
                error_message="slow down" if failed else None,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                total_tokens=(
                    input_tokens + (output_tokens or 0) if input_tokens is not None else None
                ),
                cache_read_tokens=cache_read,
                cache_write_tokens=rng.randrange(0, 100) if rng.random() < 0.1 else None,
                reasoning_tokens=rng.randrange(0, 50) if rng.random() < 0.2 else None,
                cost=sum(parts.values(), Decimal(0)) if priced else None,
                cost_input=parts["cost_input"] if priced else None,
                cost_output=parts["cost_output"] if priced else None,
                cost_cache_read=parts["cost_cache_read"] if priced else None,
                cost_cache_write=None,
                cost_request=parts["cost_request"] if priced else None,
                cost_source="local" if priced else None,
                price_data="genai-prices 0.0.30" if priced else None,
                unpriced_reason=None if priced else "unknown_model",
                feature=rng.choice(["summary", "chat", None]),
                user=rng.choice(["u1", "u2", "u3", None]),
                project=rng.choice(["alpha", "beta"]),
                api_key_id=rng.choice(["k1", "k2", None]),
                pipeline_step=rng.choice(["draft", None]),
                context={"tenant": "t1", "tier": index % 3} if index % 4 == 0 else {},
                # Derived, not drawn: the random sequence of the fields above stays as it was.
                request_id=f"chatcmpl-{span:016x}" if index % 7 != 6 else None,
                endpoint="/v1/messages"
                if PROVIDERS[model] == "anthropic"
                else "/v1/chat/completions",
                method="POST",
                api_key_hint=(None, "sk-proj-...Ab3d", "sk-ant-api03-...Zz9Q")[index % 3],
                request_prompt='[{"role": "user"}]' if index % 5 == 0 else None,
                response_preview="Paris" if index % 5 == 0 else None,
            )
        )
    return records


@pytest.fixture
def store(store_url: str) -> Iterator[SQLCallStore]:  # noqa: F811 - the fixture it uses
    opened = open_store(store_url, clock=lambda: NOW)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module", params=BACKENDS)
def loaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SQLCallStore, list[CallRecord]]]:
    """One store per backend with the same calls, shared by the tests that only read."""
    url = empty_store_url(request.param, request, tmp_path_factory.mktemp("loaded"))
    opened = open_store(url, clock=lambda: NOW)
    made = make_records()
    try:
        assert opened.write(made) == len(made)
        yield opened, made
    finally:
        opened.close()


@pytest.fixture
def reader(loaded: tuple[SQLCallStore, list[CallRecord]]) -> SQLCallStore:
    return loaded[0]


@pytest.fixture
def records(loaded: tuple[SQLCallStore, list[CallRecord]]) -> list[CallRecord]:
    return loaded[1]


# --- expectations computed here ----------------------------------------------------------------


def _matches(record: CallRecord, f: CallFilter) -> bool:
    for name in TEXT_FILTERS:
        wanted = getattr(f, name)
        if wanted is not None and getattr(record, name) != wanted:
            return False
    checks: list[tuple[Any, Any, Callable[[Any, Any], bool]]] = [
        (f.start, record.created_at, lambda bound, value: value >= bound),
        (f.end, record.created_at, lambda bound, value: value < bound),
        (f.min_latency_ms, record.latency_ms, lambda bound, value: value >= bound),
        (f.max_latency_ms, record.latency_ms, lambda bound, value: value <= bound),
        (f.min_cost, record.cost, lambda bound, value: value >= bound),
        (f.max_cost, record.cost, lambda bound, value: value <= bound),
        (f.min_tokens, record.total_tokens, lambda bound, value: value >= bound),
        (f.max_tokens, record.total_tokens, lambda bound, value: value <= bound),
    ]
    for bound, value, ok in checks:
        if bound is not None and (value is None or not ok(bound, value)):
            return False
    return f.projects is None or record.project in f.projects


def _text_filter(name: str, records: list[CallRecord]) -> CallFilter:
    return CallFilter(**{name: getattr(records[11], name)})


def _all_pages(store: SQLCallStore, query: CallQuery) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = store.list(
            CallQuery(
                filter=query.filter,
                sort=query.sort,
                descending=query.descending,
                limit=MAX_LIMIT,
                offset=offset,
                select=query.select,
            )
        )
        calls.extend(page.calls)
        assert page.total >= len(calls)
        if not page.has_more:
            assert len(calls) == page.total
            return calls
        offset += MAX_LIMIT


def _ids(store: SQLCallStore, f: CallFilter) -> set[str]:
    return {call["id"] for call in _all_pages(store, CallQuery(filter=f))}


def _exact_percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def _close(got: float | None, exact: float) -> bool:
    return got is not None and abs(got - exact) <= RELATIVE_ERROR * exact + 1e-9


def _money_sum(values: Iterable[Decimal | None]) -> Decimal:
    return sum((value for value in values if value is not None), Decimal(0))


def _check_totals(stats: dict[str, Any], calls: list[CallRecord]) -> None:
    """Every field of a stats entry against the calls it covers."""
    assert stats["total_requests"] == len(calls)
    failed = sum(1 for call in calls if call.status == "error")
    assert stats["failed_requests"] == failed
    assert stats["successful_requests"] == len(calls) - failed
    assert stats["error_rate"] == pytest.approx(100 * failed / len(calls), abs=1e-3)
    assert stats["success_rate"] == pytest.approx(
        100 * (len(calls) - failed) / len(calls), abs=1e-3
    )
    for name in (
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    ):
        assert stats[name] == sum(getattr(call, name) or 0 for call in calls), name
    input_tokens = sum(call.input_tokens or 0 for call in calls)
    cache_read = sum(call.cache_read_tokens or 0 for call in calls)
    if input_tokens:
        assert stats["cache_hit_rate"] == pytest.approx(100 * cache_read / input_tokens, abs=1e-3)
    else:
        assert stats["cache_hit_rate"] is None
    priced = [call for call in calls if call.cost is not None]
    assert stats["unpriced_requests"] == len(calls) - len(priced)
    if priced:
        assert stats["total_cost"] == _money_sum(call.cost for call in calls)
        breakdown = stats["cost_breakdown"]
        assert breakdown["input"] == _money_sum(call.cost_input for call in calls)
        assert breakdown["output"] == _money_sum(call.cost_output for call in calls)
        assert breakdown["cache_read"] == _money_sum(call.cost_cache_read for call in calls)
        assert breakdown["request"] == _money_sum(call.cost_request for call in calls)
    else:
        assert stats["total_cost"] is None  # unknown, never 0
    latencies = [call.latency_ms for call in calls if call.latency_ms is not None]
    if not latencies:
        assert stats["avg_latency_ms"] is stats["p50_latency_ms"] is None
        return
    assert stats["avg_latency_ms"] == pytest.approx(sum(latencies) / len(latencies))
    for q, name in ((0.5, "p50_latency_ms"), (0.95, "p95_latency_ms"), (0.99, "p99_latency_ms")):
        exact = _exact_percentile(latencies, q)
        assert _close(stats[name], exact), (name, stats[name], exact)
    chunks = [call.time_to_first_chunk_ms for call in calls if call.time_to_first_chunk_ms]
    for q, name in ((0.5, "p50_time_to_first_chunk_ms"), (0.95, "p95_time_to_first_chunk_ms")):
        if chunks:
            assert _close(stats[name], _exact_percentile(chunks, q)), name


# --- list, count, get ---------------------------------------------------------------------------


def test_schema_is_versioned_and_reopening_keeps_the_data(
    store_url: str,  # noqa: F811
) -> None:
    first = open_store(store_url)
    try:
        assert first.write(make_records(10)) == 10
        version = first.schema_version()  # type: ignore[attr-defined]
        assert version >= 1
    finally:
        first.close()
    second = open_store(store_url)
    try:
        assert second.schema_version() == version  # type: ignore[attr-defined]
        assert second.count(CallFilter()) == 10
    finally:
        second.close()


@pytest.mark.parametrize(
    "make_filter",
    [
        *(partial(_text_filter, name) for name in TEXT_FILTERS),
        lambda r: CallFilter(start=NOW - timedelta(days=3)),
        lambda r: CallFilter(end=NOW - timedelta(days=3)),
        lambda r: CallFilter(start=NOW - timedelta(days=6), end=NOW - timedelta(days=2)),
        lambda r: CallFilter(min_latency_ms=700.0),
        lambda r: CallFilter(max_latency_ms=r[3].latency_ms),  # inclusive bound
        lambda r: CallFilter(min_cost=r[5].cost),
        lambda r: CallFilter(max_cost=Decimal("0.015")),
        lambda r: CallFilter(min_cost=Decimal("0.01"), max_cost=Decimal("0.02")),
        lambda r: CallFilter(min_tokens=2500),
        lambda r: CallFilter(max_tokens=r[8].total_tokens),
        lambda r: CallFilter(projects=frozenset({"alpha"})),
        lambda r: CallFilter(projects=frozenset()),
        lambda r: CallFilter(model="gpt-4o", status="error", project="beta"),
        lambda r: CallFilter(model="no-such-model"),
    ],
)
def test_every_filter_in_list_and_count(
    reader: SQLCallStore, records: list[CallRecord], make_filter: Callable[[Any], CallFilter]
) -> None:
    f = make_filter(records)
    expected = {record.id for record in records if _matches(record, f)}
    if f.model != "no-such-model" and f.projects != frozenset():
        assert 0 < len(expected) < len(records), "the filter must select something, not all"
    assert _ids(reader, f) == expected
    assert reader.count(f) == len(expected)


@pytest.mark.parametrize("sort", ["created_at", "cost", "latency", "tokens"])
@pytest.mark.parametrize("descending", [True, False])
def test_each_sort_key_both_ways(
    reader: SQLCallStore, records: list[CallRecord], sort: str, descending: bool
) -> None:
    attribute = {
        "created_at": "created_at",
        "cost": "cost",
        "latency": "latency_ms",
        "tokens": "total_tokens",
    }[sort]

    def key(record: CallRecord) -> tuple[bool, Any, str]:
        # Unknown values (unpriced cost, missing latency) sort as the smallest; ties by id.
        value = getattr(record, attribute)
        return (value is not None, value if value is not None else 0, record.id)

    expected = [r.id for r in sorted(records, key=key, reverse=descending)]
    query = CallQuery(sort=sort, descending=descending)  # type: ignore[arg-type]
    assert [call["id"] for call in _all_pages(reader, query)] == expected


def test_pagination_edges(reader: SQLCallStore, records: list[CallRecord]) -> None:
    total = len(records)
    first = reader.list(CallQuery(limit=MAX_LIMIT))
    assert len(first.calls) == MAX_LIMIT
    assert first.total == total
    assert first.has_more
    last_offset = total - total % MAX_LIMIT
    last = reader.list(CallQuery(limit=MAX_LIMIT, offset=last_offset))
    assert len(last.calls) == total % MAX_LIMIT
    assert not last.has_more
    exact = reader.list(CallQuery(limit=10, offset=total - 10))
    assert len(exact.calls) == 10
    assert not exact.has_more
    past = reader.list(CallQuery(limit=10, offset=total + 5))
    assert past.calls == []
    assert past.total == total
    assert not past.has_more
    default = reader.list(CallQuery())
    assert len(default.calls) == DEFAULT_LIMIT
    newest = max(records, key=lambda r: r.created_at)
    assert default.calls[0]["id"] == newest.id
    for bad in (CallQuery(limit=MAX_LIMIT + 1), CallQuery(limit=0), CallQuery(offset=-1)):
        with pytest.raises(QueryError):
            reader.list(bad)


def test_select_returns_only_the_fields_asked(
    reader: SQLCallStore, records: list[CallRecord]
) -> None:
    page = reader.list(CallQuery(select=("id", "cost", "context", "has_content"), limit=100))
    assert all(set(call) == {"id", "cost", "context", "has_content"} for call in page.calls)
    by_id = {record.id: record for record in records}
    for call in page.calls:
        record = by_id[call["id"]]
        assert call["cost"] == record.cost
        assert call["context"] == dict(record.context)
        assert call["has_content"] is record.has_content
    summary = reader.list(CallQuery())
    assert all(tuple(call) == SUMMARY_FIELDS for call in summary.calls)
    with pytest.raises(QueryError, match="password"):
        reader.list(CallQuery(select=("id", "password")))


def test_get_returns_every_field_as_written(
    reader: SQLCallStore, records: list[CallRecord]
) -> None:
    for record in records[:40]:
        got = reader.get(record.id)
        assert got is not None
        assert set(got) == set(FIELDS)
        for name in FIELDS:
            expected = getattr(record, name)
            if name == "context":
                expected = dict(expected)
            assert got[name] == expected, name
        assert got["created_at"].tzinfo is not None
    assert reader.get("0" * 32 + "-" + "0" * 16) is None


def test_sqlite_stores_absent_values_as_null(tmp_path: Path) -> None:
    # SQLite's writer binds None as a NaN (Python's sqlite3 binds a float faster), which SQLite
    # stores as NULL: every absent value must read back as SQL NULL, never as a real.
    bare = CallRecord(
        id=call_id(7, 9),
        trace_id=f"{7:032x}",
        span_id=f"{9:016x}",
        created_at=NOW,
        completed_at=None,
        latency_ms=None,
        time_to_first_chunk_ms=None,
        service=None,
        provider=None,
        model=None,
        response_model=None,
        operation="chat",
        streaming=False,
        status="success",
        request_prompt="hi",  # the content row too (its other value is None)
    )
    store = open_store(str(tmp_path / "calls.db"), clock=lambda: NOW)
    try:
        assert store.write([bare]) == 1
        got = store.get(bare.id)
        assert got is not None
        assert (got["latency_ms"], got["model"], got["cost"], got["user"]) == (None,) * 4
        columns = [row[1] for row in store._read(Statement("PRAGMA table_info(llm_calls)", ()))]
        types = store._read(
            Statement(
                f"SELECT {', '.join(f'typeof({c})' for c in columns)} FROM llm_calls",  # noqa: S608
                (),
            )
        )[0]
        stored = dict(zip(columns, types, strict=True))
        absent = {c for c, kind in stored.items() if kind == "null"}
        assert {"latency_ms", "ttfc_ms", "completed_us", "cost_nusd", "model", "user_id"} <= absent
        assert set(stored.values()) <= {"null", "text", "integer"}  # no NaN real anywhere
        preview = store._read(
            Statement("SELECT typeof(response_preview) FROM llm_call_content", ())
        )
        assert preview == [("null",)]
    finally:
        store.close()


def test_project_scope_hides_other_projects(
    reader: SQLCallStore, records: list[CallRecord]
) -> None:
    record = next(r for r in records if r.project == "alpha" and r.has_content)
    assert reader.get(record.id, projects=frozenset({"alpha"})) is not None
    assert reader.get(record.id, projects=frozenset({"beta"})) is None
    assert reader.details(record.id, projects=frozenset({"beta"})) is None
    assert reader.get(record.id, projects=frozenset()) is None


def test_details_serve_the_content(reader: SQLCallStore, records: list[CallRecord]) -> None:
    with_content = next(r for r in records if r.has_content)
    details = reader.details(with_content.id)
    assert details is not None
    assert details["request_prompt"] == with_content.request_prompt
    assert details["response_preview"] == with_content.response_preview
    assert details["has_content"] is True
    assert details["cost"] == with_content.cost
    assert details["trace_id"] == with_content.trace_id
    without = next(r for r in records if not r.has_content)
    plain = reader.details(without.id)
    assert plain is not None
    assert plain["request_prompt"] is None
    assert plain["has_content"] is False


@pytest.mark.parametrize("name", TEXT_FILTERS)
def test_sql_injection_in_every_text_filter_finds_nothing_and_breaks_nothing(
    reader: SQLCallStore, records: list[CallRecord], name: str
) -> None:
    for attack in INJECTIONS:
        f = CallFilter(**{name: attack})
        assert reader.list(CallQuery(filter=f)).calls == []
        assert reader.count(f) == 0
        if name in ("provider", "model", "operation", "service", "feature", "project"):
            assert reader.stats(StatsQuery(filter=f))["stats"]["total_requests"] == 0
    assert reader.get("' OR '1'='1") is None
    assert (
        reader.list(
            CallQuery(select=("id",), filter=CallFilter(projects=frozenset(INJECTIONS)))
        ).calls
        == []
    )
    assert reader.count(CallFilter()) == len(records)  # the table is still there, whole
    assert reader.stats(StatsQuery())["stats"]["total_requests"] == len(records)


# --- writes -------------------------------------------------------------------------------------


def test_duplicates_are_ignored_and_never_double_counted(store: SQLCallStore) -> None:
    batch = make_records(50, seed=1)
    assert store.write(batch) == 50
    before = store.stats(StatsQuery(group_by="model"))
    assert store.write(batch) == 0  # redelivered
    more = make_records(20, seed=2)
    assert store.write([*batch[:10], *more, more[0]]) == 20  # overlap, and a repeat inside
    after = store.stats(StatsQuery())
    assert store.count(CallFilter()) == 70
    _check_totals(after["stats"], [*batch, *more])
    assert before["stats"]["total_requests"] == 50


def _daily_rows(store: SQLCallStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every daily table's rows, latency sums rounded (their float additions group by batch)."""
    at = len(DAILY_SUMS)  # DAILY_VALUES: the sums, the latency sum, the sketches
    tables = {}
    for daily in ROLLUPS:
        rows = store._read(
            Statement(
                f"SELECT {', '.join((*daily.key, *DAILY_VALUES))} FROM {daily.table}",  # noqa: S608
                (),
            )
        )
        width = len(daily.key)
        tables[daily.table] = sorted(
            (
                *row[: width + at],
                round(row[width + at], 6),
                *(bytes(blob) for blob in row[width + at + 1 :]),
            )
            for row in rows
        )
    return tables


@pytest.mark.parametrize("backend", BACKENDS)
def test_daily_rows_do_not_depend_on_how_calls_are_batched(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A write keeps a daily row of one call apart (``rollup.OneCall``, no sketch built) and
    merges serialised sketches without a Sketch (``sketch.merged_bytes``): rows first made of
    one call, then given calls by later writes, end as the rows of one write of every call;
    their stats are exact by user."""
    calls = [  # some latencies of 0 ms: the sketches' zero count
        replace(call, latency_ms=0.0) if index % 23 == 0 else call
        for index, call in enumerate(make_records(300, days=3, seed=11))
    ]
    together = open_store(empty_store_url(backend, request, tmp_path), clock=lambda: NOW)
    apart = open_store(empty_store_url(backend, request, tmp_path), clock=lambda: NOW)
    try:
        assert together.write(calls) == len(calls)
        rng = random.Random(3)  # noqa: S311 - test data
        written = 0
        while written < len(calls):  # writes of 1 to 6 calls: rows of one call, then more
            size = rng.randint(1, 6)
            assert apart.write(calls[written : written + size]) == len(
                calls[written : written + size]
            )
            written += size
        expected = _daily_rows(together)
        assert sum(len(rows) for rows in expected.values()) > 100
        got = _daily_rows(apart)
        for daily in ROLLUPS:
            assert got[daily.table] == expected[daily.table], daily.table
            # The sketches as a Sketch of each row's calls serialises them.
            sketches: dict[tuple[str, ...], tuple[Sketch, Sketch]] = defaultdict(
                lambda: (Sketch(), Sketch())
            )
            for call in calls:
                key = (
                    call.created_at.date().isoformat(),
                    *(getattr(call, name) or "" for name in daily.fields),
                )
                latency, ttfc = sketches[key]
                if call.latency_ms is not None:
                    latency.add(call.latency_ms)
                if call.time_to_first_chunk_ms is not None:
                    ttfc.add(call.time_to_first_chunk_ms)
            stored = {row[: len(daily.key)]: row[-2:] for row in got[daily.table]}
            assert stored == {
                key: (latency.to_bytes(), ttfc.to_bytes())
                for key, (latency, ttfc) in sketches.items()
            }, daily.table
        result = apart.stats(
            StatsQuery(filter=CallFilter(start=NOW - timedelta(days=4)), group_by="user")
        )
        _check_totals(result["stats"], calls)
        by_user: dict[str | None, list[CallRecord]] = defaultdict(list)
        for call in calls:
            by_user[call.user].append(call)
        groups = {group["group"]: group for group in result["groups"]}
        assert set(groups) == set(by_user)
        for user, mine in by_user.items():
            _check_totals(groups[user], mine)
    finally:
        together.close()
        apart.close()


def test_money_is_exact_in_sums(store: SQLCallStore) -> None:
    # 1000 calls of 0.000000001 + 0.1 USD each: a float sum would drift, nano-USD does not.
    base = make_records(1000, seed=3, days=1)
    exact = [
        CallRecord(
            **{
                **{name: getattr(r, name) for name in r.__dataclass_fields__},
                "cost": Decimal("0.100000001"),
                "cost_input": Decimal("0.100000001"),
                "cost_output": None,
                "cost_cache_read": None,
                "cost_request": None,
            }
        )
        for r in base
    ]
    assert store.write(exact) == 1000
    stats = store.stats(StatsQuery())["stats"]
    assert stats["total_cost"] == Decimal("100.000001")
    assert stats["cost_breakdown"]["input"] == Decimal("100.000001")
    assert stats["unpriced_requests"] == 0


def test_two_concurrent_writers_count_each_call_once(store_url: str) -> None:  # noqa: F811
    # Two replicas (two stores, two connections) receiving overlapping batches at once.
    records = make_records(600, seed=4, days=3)
    stores = [open_store(store_url, clock=lambda: NOW) for _ in range(2)]
    stored = [0, 0]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            for start in range(0, 600, 50):
                # Each writes its half plus half of the other's: every batch overlaps.
                batch = records[start : start + 50]
                stored[index] += stores[index].write(batch[::-1] if index else batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        assert sum(stored) == 600
        assert stores[0].count(CallFilter()) == 600
        stats = stores[1].stats(StatsQuery(group_by="day"))
        _check_totals(stats["stats"], records)
        assert sum(group["total_requests"] for group in stats["groups"]) == 600
    finally:
        for opened in stores:
            opened.close()


# --- stats --------------------------------------------------------------------------------------


def _group_key(record: CallRecord, group_by: str) -> str | None:
    day = record.created_at.date()
    if group_by == "day":
        return day.isoformat()
    if group_by == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    if group_by == "hour":
        return record.created_at.replace(minute=0, second=0, microsecond=0).isoformat()
    value: str | None = getattr(record, "api_key_id" if group_by == "api_key" else group_by)
    return value


@pytest.mark.parametrize(
    "group_by",
    [None, "day", "week", "model", "provider", "feature", "service", "api_key", "user", "status"],
)
def test_stats_for_every_grouping(
    reader: SQLCallStore, records: list[CallRecord], group_by: str | None
) -> None:
    result = reader.stats(StatsQuery(group_by=group_by))  # type: ignore[arg-type]
    assert result["end"] == datetime(2026, 3, 16, tzinfo=UTC)  # whole days, today included
    assert result["start"] == datetime(2026, 2, 14, tzinfo=UTC)
    assert result["group_by"] == group_by
    _check_totals(result["stats"], records)
    if group_by is None:
        assert "groups" not in result
        return
    expected: dict[str | None, list[CallRecord]] = defaultdict(list)
    for record in records:
        expected[_group_key(record, group_by)].append(record)
    groups = {group["group"]: group for group in result["groups"]}
    assert set(groups) == set(expected)
    for key, calls in expected.items():
        _check_totals(groups[key], calls)
    if group_by in ("day", "week"):
        assert [group["group"] for group in result["groups"]] == sorted(expected)  # type: ignore[type-var]
    else:
        counts = [group["total_requests"] for group in result["groups"]]
        assert counts == sorted(counts, reverse=True)


def test_stats_by_hour_read_the_records(reader: SQLCallStore, records: list[CallRecord]) -> None:
    start = NOW - timedelta(days=2)
    result = reader.stats(
        StatsQuery(filter=CallFilter(start=start, model="gpt-4o"), group_by="hour")
    )
    day_start = datetime.combine(start.date(), datetime.min.time(), tzinfo=UTC)
    assert result["start"] == day_start
    in_range = [
        r for r in records if r.model == "gpt-4o" and day_start <= r.created_at < result["end"]
    ]
    _check_totals(result["stats"], in_range)
    expected: dict[str | None, list[CallRecord]] = defaultdict(list)
    for record in in_range:
        expected[_group_key(record, "hour")].append(record)
    assert [group["group"] for group in result["groups"]] == sorted(expected)  # type: ignore[type-var]
    for group in result["groups"]:
        calls = expected[group["group"]]
        assert group["total_requests"] == len(calls)
        assert group["total_tokens"] == sum(call.total_tokens or 0 for call in calls)
        assert group["total_cost"] == (
            _money_sum(call.cost for call in calls)
            if any(call.cost is not None for call in calls)
            else None
        )
        latencies = [call.latency_ms for call in calls if call.latency_ms is not None]
        if latencies:
            assert _close(group["p50_latency_ms"], _exact_percentile(latencies, 0.5))


def test_stats_by_hour_split_each_hour_by_the_busiest_models(
    reader: SQLCallStore, records: list[CallRecord]
) -> None:
    """The page stacks each hour's cost by model: the range's ``limit`` busiest models, the
    rest of the hour as ``other``, each exact."""
    start = NOW - timedelta(days=2)
    result = reader.stats(StatsQuery(filter=CallFilter(start=start), group_by="hour", limit=2))
    busiest = {entry["model"] for entry in result["by_model"]} - {"other"}
    assert len(busiest) == 2
    in_range = [r for r in records if result["start"] <= r.created_at < result["end"]]
    expected: dict[str | None, list[CallRecord]] = defaultdict(list)
    for record in in_range:
        expected[_group_key(record, "hour")].append(record)
    assert len({r.model for r in in_range}) > 2  # so ``other`` has something to hold
    assert [group["group"] for group in result["groups"]] == sorted(expected)  # type: ignore[type-var]
    for group in result["groups"]:
        calls = expected[group["group"]]
        by_model: dict[str, list[CallRecord]] = defaultdict(list)
        for call in calls:
            by_model[call.model if call.model in busiest else "other"].append(call)
        entries = {entry["model"]: entry for entry in group["models"]}
        assert set(entries) == set(by_model)
        for model, model_calls in by_model.items():
            assert entries[model]["requests"] == len(model_calls)
            assert entries[model]["cost"] == (
                _money_sum(call.cost for call in model_calls)
                if any(call.cost is not None for call in model_calls)
                else None
            )


def test_hourly_stats_refuse_long_or_expired_ranges(reader: SQLCallStore) -> None:
    with pytest.raises(QueryError, match="7 days"):
        reader.stats(StatsQuery(filter=CallFilter(start=NOW - timedelta(days=9)), group_by="hour"))
    with pytest.raises(QueryError, match="kept 90 days"):
        reader.stats(
            StatsQuery(
                filter=CallFilter(start=NOW - timedelta(days=200), end=NOW - timedelta(days=199)),
                group_by="hour",
            )
        )


def test_by_day_has_a_model_breakdown(reader: SQLCallStore, records: list[CallRecord]) -> None:
    by_day = reader.stats(StatsQuery(filter=CallFilter(project="alpha")))["by_day"]
    alpha = [r for r in records if r.project == "alpha"]
    days: dict[str, list[CallRecord]] = defaultdict(list)
    for record in alpha:
        days[record.created_at.date().isoformat()].append(record)
    assert [entry["date"] for entry in by_day] == sorted(days)
    for entry in by_day:
        calls = days[entry["date"]]
        assert entry["requests"] == len(calls)
        assert entry["tokens"] == sum(call.total_tokens or 0 for call in calls)
        assert entry["cost"] == _money_sum(call.cost for call in calls)
        failed = sum(1 for call in calls if call.status == "error")
        assert entry["error_rate"] == pytest.approx(100 * failed / len(calls), abs=1e-3)
        models: dict[str, list[CallRecord]] = defaultdict(list)
        for call in calls:
            models[call.model or ""].append(call)
        assert {m["model"]: m["requests"] for m in entry["models"]} == {
            name: len(calls) for name, calls in models.items()
        }
        for model in entry["models"]:
            mine = models[model["model"]]
            assert model["tokens"] == sum(call.total_tokens or 0 for call in mine)
            if any(call.cost is not None for call in mine):
                assert model["cost"] == _money_sum(call.cost for call in mine)
        requests = [model["requests"] for model in entry["models"]]
        assert requests == sorted(requests, reverse=True)


def test_stats_range_is_whole_days_and_filters_dimensions(
    reader: SQLCallStore, records: list[CallRecord]
) -> None:
    start = datetime(2026, 3, 8, 15, 0, tzinfo=UTC)
    end = datetime(2026, 3, 12, 1, 0, tzinfo=UTC)
    result = reader.stats(
        StatsQuery(
            filter=CallFilter(start=start, end=end, provider="openai", service="checkout"),
            group_by="feature",
        )
    )
    assert result["start"] == datetime(2026, 3, 8, tzinfo=UTC)
    assert result["end"] == datetime(2026, 3, 13, tzinfo=UTC)
    calls = [
        r
        for r in records
        if r.provider == "openai"
        and r.service == "checkout"
        and date(2026, 3, 8) <= r.created_at.date() < date(2026, 3, 13)
    ]
    _check_totals(result["stats"], calls)


@pytest.mark.parametrize(
    ("f", "group_by"),
    [
        (CallFilter(status="error"), None),
        (CallFilter(status="success"), "model"),
        (CallFilter(status="error", service="checkout", operation="chat"), "feature"),
        (CallFilter(user="u1"), None),
        (CallFilter(user="u2", status="error"), "model"),
        (CallFilter(user="u3", model="gpt-4o", project="alpha"), "day"),
        (CallFilter(api_key_id="k1"), "day"),
        (CallFilter(api_key_id="k2", provider="openai", status="success"), "model"),
        (CallFilter(project="beta"), "api_key"),
        (CallFilter(status="error", model="gpt-4o-mini"), "user"),
        (CallFilter(provider="anthropic"), "status"),
        (CallFilter(user="u1", projects=frozenset({"alpha"})), "status"),
        (CallFilter(start=NOW - timedelta(days=4), end=NOW - timedelta(days=1)), "user"),
    ],
)
def test_stats_filter_and_group_by_key_user_and_status(
    reader: SQLCallStore, records: list[CallRecord], f: CallFilter, group_by: str | None
) -> None:
    """Issue 12: every total exact and every percentile within 1% of the calls the test picks
    from those it wrote; the groups, the per-day totals and their models alike."""
    result = reader.stats(StatsQuery(filter=f, group_by=group_by))  # type: ignore[arg-type]
    first, end = result["start"], result["end"]
    calls = [r for r in records if _matches(r, replace(f, start=first, end=end))]
    assert calls, "the case selects some calls"
    _check_totals(result["stats"], calls)
    days: dict[str, list[CallRecord]] = defaultdict(list)
    for call in calls:
        days[call.created_at.date().isoformat()].append(call)
    assert [entry["date"] for entry in result["by_day"]] == sorted(days)
    for entry in result["by_day"]:
        mine = days[entry["date"]]
        assert entry["requests"] == len(mine)
        priced = any(call.cost is not None for call in mine)
        assert entry["cost"] == (_money_sum(call.cost for call in mine) if priced else None)
        models: dict[str, int] = defaultdict(int)
        for call in mine:
            models[call.model or ""] += 1
        assert {m["model"]: m["requests"] for m in entry["models"]} == models
    if group_by is None:
        return
    expected: dict[str | None, list[CallRecord]] = defaultdict(list)
    for call in calls:
        expected[_group_key(call, group_by)].append(call)
    groups = {group["group"]: group for group in result["groups"]}
    assert set(groups) == set(expected)
    for key, mine in expected.items():
        _check_totals(groups[key], mine)


@pytest.mark.parametrize(
    ("f", "group_by", "named"),
    [
        (CallFilter(user="u1", api_key_id="k1"), None, "user and api_key_id"),
        (CallFilter(user="u1", feature="chat"), None, "feature and user"),
        (CallFilter(service="checkout"), "user", "service and group_by=user"),
        (CallFilter(api_key_id="k1"), "feature", "api_key_id and group_by=feature"),
        (CallFilter(api_key_id="k1"), "user", "api_key_id and group_by=user"),
    ],
)
def test_stats_refuse_combinations_no_aggregate_keeps(
    reader: SQLCallStore, f: CallFilter, group_by: str | None, named: str
) -> None:
    with pytest.raises(QueryError, match="stats cannot combine") as refused:
        reader.stats(StatsQuery(filter=f, group_by=group_by))  # type: ignore[arg-type]
    assert named in str(refused.value)
    assert "user with status, provider, model, project" in str(refused.value)


@pytest.mark.parametrize(
    "f",
    [
        CallFilter(min_latency_ms=1.0),
        CallFilter(max_cost=Decimal(1)),
        CallFilter(min_tokens=1),
    ],
)
def test_stats_refuse_filters_the_aggregates_cannot_answer(
    reader: SQLCallStore, f: CallFilter
) -> None:
    with pytest.raises(QueryError, match="stats cannot filter"):
        reader.stats(StatsQuery(filter=f))


def test_an_upgraded_store_has_stats_by_user_from_the_day_after_its_last_calls(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A store made before the tables by status, user and key (schema v2) keeps the earlier
    calls in the first table only: stats by user start the day after the last of them."""
    old = make_records(40, days=3, now=NOW - timedelta(days=5))
    path = store_at_version(
        "sqlite",
        request,
        tmp_path,
        2,
        (
            "INSERT INTO llm_call_daily (day, service, provider, model, operation, feature, "
            "project, requests) VALUES (?, 's', 'p', 'm', 'chat', '', '', 1)",
            ((NOW - timedelta(days=5)).date().isoformat(),),
        ),
    )
    store = open_store(path, clock=lambda: NOW)
    try:
        assert store.schema_version() == schema.LATEST  # type: ignore[attr-defined]
        new = make_records(60, days=4, seed=9)
        store.write([*old, *new])
        first_day = datetime.combine((NOW - timedelta(days=4)).date(), time(), tzinfo=UTC)
        answer = store.stats(StatsQuery(filter=CallFilter(user="u1")))
        assert answer["start"] == first_day
        u1 = [r for r in [*old, *new] if r.user == "u1" and r.created_at >= first_day]
        _check_totals(answer["stats"], u1)
        with pytest.raises(QueryError, match="count the calls stored from"):
            store.stats(StatsQuery(CallFilter(status="error", end=NOW - timedelta(days=6))))
    finally:
        store.close()


def test_a_store_newer_than_the_code_is_refused(
    store_url: str,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Opened by an older otel-llm (one that knows a migration fewer), a store is refused and
    keeps its version."""
    open_store(store_url).close()
    latest = schema.LATEST
    monkeypatch.setattr(schema, "LATEST", latest - 1)
    with pytest.raises(RuntimeError, match=f"version {latest} is newer than this otel-llm"):
        open_store(store_url)
    monkeypatch.undo()
    store = open_store(store_url)
    try:
        assert store.schema_version() == latest  # type: ignore[attr-defined]
    finally:
        store.close()


def test_unpriced_calls_have_no_cost_not_zero(store: SQLCallStore) -> None:
    unpriced = [r for r in make_records(60, seed=5) if r.cost is None]
    assert unpriced
    store.write(unpriced)
    call = store.get(unpriced[0].id)
    assert call is not None
    assert call["cost"] is None
    assert call["unpriced_reason"] == "unknown_model"
    stats = store.stats(StatsQuery(group_by="model"))
    assert stats["stats"]["total_cost"] is None
    assert stats["stats"]["unpriced_requests"] == len(unpriced)
    assert all(group["total_cost"] is None for group in stats["groups"])
    assert store.count(CallFilter(max_cost=Decimal(1000))) == 0


# --- the sketch ---------------------------------------------------------------------------------


def test_merged_bytes_are_the_bytes_of_the_merged_sketch() -> None:
    """SQLite's upsert merges serialised sketches without a Sketch (``merged_bytes``), and a
    write serialises a one-value sketch directly (``one_value_bytes``): the same bytes as
    the Sketch path, for any ranges, zero counts and counts past uint32."""
    rng = random.Random(5)  # noqa: S311 - test data

    def sketch() -> bytes:
        made = Sketch()
        for _ in range(rng.choice([0, 1, 2, 5, 50, 400])):
            made.add(rng.choice([0.0, rng.lognormvariate(6, 2), rng.uniform(1, 3)]))
        if made.count and rng.random() < 0.1:  # a count past uint32 (stored as uint64)
            made.merge_bytes(made.to_bytes())
            made._dense()[made.high] += 2**32
        return made.to_bytes()

    def slow(old: bytes, new: bytes) -> bytes:
        merged = Sketch.from_bytes(old)
        merged.merge_bytes(new)
        return merged.to_bytes()

    for index in range(3000):
        old = sketch()
        if index % 3 == 0:
            value = rng.choice([0.0, rng.lognormvariate(6, 2)])
            single = Sketch()
            single.add(value)
            assert one_value_bytes(bucket(value)) == single.to_bytes()
            new = single.to_bytes()
        else:
            new = sketch()
        assert merged_bytes(old, new) == slow(old, new)
        assert merged_bytes(new, old) == slow(new, old)
    full = Sketch()
    full.add(5.0)
    full._dense()[full.low] = 2**32 - 1  # + 1 no longer fits uint32
    one = Sketch()
    one.add(5.0)
    assert merged_bytes(full.to_bytes(), one.to_bytes()) == slow(full.to_bytes(), one.to_bytes())
    assert Sketch.from_bytes(merged_bytes(full.to_bytes(), one.to_bytes())).count == 2**32
    # A row stored before counts were narrowed (uint32 counts, version 1) merges into the
    # narrowest bytes, as the Sketch path writes them.
    stored = Sketch()
    for value in (100.0, 101.0, 130.0):
        stored.add(value)
    used = stored._used()
    header = struct.pack("<BQHH", 1, 0, stored.low, len(used))
    legacy = header + struct.pack(f"<{len(used)}I", *used)
    assert Sketch.from_bytes(legacy)._used() == used
    merged = merged_bytes(legacy, one_value_bytes(bucket(101.0)))
    assert merged == slow(legacy, one_value_bytes(bucket(101.0)))
    assert merged[0] == 3  # 8-bit counts
    # 8-bit counts whose sum passes 255 within the stored range: 16-bit counts, as the Sketch's.
    busy = Sketch()
    for value in (100.0, 101.0, 130.0):
        busy.add(value)
    busy._dense()[bucket(101.0)] = 250
    few = Sketch()
    for _ in range(10):
        few.add(101.0)
    assert busy.to_bytes()[0] == 3
    assert merged_bytes(busy.to_bytes(), few.to_bytes()) == slow(busy.to_bytes(), few.to_bytes())
    assert merged_bytes(busy.to_bytes(), few.to_bytes())[0] == 4


def test_sketch_quantiles_stay_within_one_percent_after_merges_and_bytes() -> None:
    rng = random.Random(3)  # noqa: S311 - test data
    values = [rng.lognormvariate(5, 2) for _ in range(5000)] + [0.0] * 40 + [5e9]
    parts = [Sketch() for _ in range(7)]
    for index, value in enumerate(values):
        parts[index % 7].add(value)
    merged = Sketch.from_bytes(parts[0].to_bytes())
    for part in parts[1:]:
        merged.merge_bytes(part.to_bytes())
    assert merged.count == len(values)
    for q in (0.0, 0.01, 0.5, 0.95, 0.99):
        exact = _exact_percentile(values, q)
        got = merged.quantile(q)
        assert got is not None
        assert (got == 0.0) if exact == 0.0 else _close(got, exact), (q, got, exact)
    assert merged.quantile(1.0) == pytest.approx(1e9, rel=0.01)  # clamped into the top bucket
    assert Sketch().quantile(0.5) is None
    big = Sketch()
    big.add(100.0)
    big.add(200.0)
    big.counts[big.low] = 2**40  # more than uint32 holds: serialised wide, not wrapped
    assert Sketch.from_bytes(big.to_bytes()).count == 2**40 + 1
    one = Sketch()  # one bucket used: no dense counts until a second bucket
    for value in (100.0, 100.5, 0.0, 300.0):
        one.add(value)
        merged = Sketch.from_bytes(one.to_bytes())
        merged.merge(one)
        assert merged.count == 2 * one.count
