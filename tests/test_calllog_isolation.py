"""One bad call never costs its batch (issue 10, items 1 and 11), on SQLite and a real
PostgreSQL: values held to the catalogue's limits where a record is built, a record a store
still refuses quarantined in the dead-letter table (shown and replayed by ``otel-llm calls``),
the rest of its batch stored; a start in year 2554 quarantined, not stored.

The reproductions go through the real in-process ``CallLogExporter`` (real SDK spans) and
through the store itself; the constraint a record still breaks is a real one (a trigger, a
CHECK), not a mock.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_llm import _semconv as sc
from otel_llm.calllog import deadletter, limits, schema, sql
from otel_llm.calllog.exporter import CallLogExporter
from otel_llm.calllog.query import CallFilter, CallQuery, StatsQuery
from otel_llm.calllog.record import CallRecord
from otel_llm.calllog.store import SQLCallStore, open_store
from otel_llm.calllog.writer import CallLogWriter
from otel_llm.cli import main
from tests.support.postgres import pg_cluster, store_at_version, store_url  # noqa: F401
from tests.test_calllog_store import make_records

REPLACEMENT = "\ufffd"


def _postgres(url: str) -> bool:
    return url.startswith("postgresql://")


class App:
    """A real SDK pipeline into a ``CallLogExporter`` whose writer holds every call for one
    batch, written at shutdown: the batch the issue saw lost whole."""

    def __init__(self, url: str) -> None:
        self.calls = CallLogExporter(url, flush_interval=600, batch_size=5000, retention_interval=0)
        self.provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.calls))
        self.tracer = self.provider.get_tracer("other.instrumentation")

    def call(
        self,
        *,
        status: str | None = None,
        start: int | None = None,
        **attributes: Any,
    ) -> None:
        base = {
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_PROVIDER_NAME: "openai",
            sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 100,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 20,
        }
        span = self.tracer.start_span(
            "chat", kind=SpanKind.CLIENT, attributes={**base, **attributes}, start_time=start
        )
        if status is not None:
            span.set_status(Status(StatusCode.ERROR, status))
        span.end(end_time=start)

    def good_calls(self, count: int) -> None:
        for _ in range(count):
            self.call()

    def close(self) -> None:
        self.provider.shutdown()  # the exporter's shutdown writes the batch


@pytest.fixture
def app(store_url: str) -> Iterator[App]:  # noqa: F811
    started = App(store_url)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def store(store_url: str) -> Iterator[SQLCallStore]:  # noqa: F811
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


def _all(store: SQLCallStore) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    while True:
        page = store.list(
            CallQuery(limit=100, offset=len(calls), select=("id", "model", "status_code"))
        )
        calls += page.calls
        if not page.has_more:
            return calls


# --- issue 10 item 1: through the in-process exporter -------------------------------------------


def _stored(url: str) -> list[dict[str, Any]]:
    store = open_store(url)
    try:
        return _all(store)
    finally:
        store.close()


def test_a_ttfc_of_1e306_among_1000_calls_loses_none(app: App, store_url: str) -> None:  # noqa: F811
    """Before: ``inf`` ms failed the aggregates' sketch (OverflowError), 1,000 calls dropped."""
    before = limits.corrections()["time_to_first_chunk_ms"]
    app.good_calls(500)
    app.call(**{sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: 1e306})  # finite: passes derive
    app.good_calls(500)
    app.close()
    assert len(_stored(store_url)) == 1001
    assert app.calls.writer.written == 1001
    assert app.calls.writer.dropped == app.calls.writer.quarantined == 0
    assert limits.corrections()["time_to_first_chunk_ms"] == before + 1
    store = open_store(store_url)
    try:
        assert store.stats(StatsQuery())["stats"]["total_requests"] == 1001  # aggregates too
    finally:
        store.close()


@pytest.mark.parametrize("status_code", [2**70, 3_000_000_000, -1, True, 99])
def test_an_impossible_http_status_loses_no_call(
    app: App,
    store_url: str,  # noqa: F811
    status_code: int,
) -> None:
    """Before: 2**70 lost 500 of 500 (SQLite), 3,000,000,000 the batch (PostgreSQL INTEGER)."""
    for _ in range(500):
        app.call(**{sc.HTTP_RESPONSE_STATUS_CODE: status_code})
    app.close()
    calls = _stored(store_url)
    assert len(calls) == 500
    assert {call["status_code"] for call in calls} == {None}


def test_nul_and_lone_surrogates_in_any_text_are_replaced(app: App, store_url: str) -> None:  # noqa: F811
    """Before (PostgreSQL): a NUL in the model, a context field or the status message failed
    the batch (DataError); a lone surrogate failed it on SQLite too (UnicodeEncodeError)."""
    app.good_calls(100)
    app.call(**{sc.GEN_AI_REQUEST_MODEL: "gpt-4o\x00mini"})
    app.call(**{sc.GEN_AI_REQUEST_MODEL: "gpt-4o\ud800"})
    # What llm_context(feature=..., tenant=...) stamps on a span (a client's values).
    app.call(
        **{
            sc.CONTEXT_PREFIX + "feature": "sum\x00mary",
            sc.CONTEXT_PREFIX + "tenant": "t\x00\udfff1",
        }
    )
    app.call(status="429 \x00 too many", **{sc.ERROR_TYPE: "RateLimitError\ud800"})
    app.good_calls(100)
    app.close()
    store = open_store(store_url)
    try:
        assert store.count(CallFilter()) == 204
        models = {call["model"] for call in _all(store)}
        assert models == {"gpt-4o-mini", f"gpt-4o{REPLACEMENT}mini", f"gpt-4o{REPLACEMENT}"}
        (featured,) = store.list(
            CallQuery(filter=CallFilter(feature=f"sum{REPLACEMENT}mary"), select=("context",))
        ).calls
        assert featured["context"] == {"tenant": f"t{REPLACEMENT}{REPLACEMENT}1"}
        (failed,) = store.list(
            CallQuery(filter=CallFilter(status="error"), select=("error_message", "error_type"))
        ).calls
        assert failed["error_message"] == f"429 {REPLACEMENT} too many"
        assert failed["error_type"] == f"RateLimitError{REPLACEMENT}"
    finally:
        store.close()


# --- issue 10 item 11: a start in year 2554 ------------------------------------------------------


def test_a_start_in_year_2554_is_quarantined_not_stored(app: App, store_url: str) -> None:  # noqa: F811
    """Before: stored as 2554-07-21, it headed every newest-first list, retention never
    removed it, and each unknown-id look-up probed 193,000 days."""
    app.good_calls(50)
    app.call(start=2**64 - 1)
    app.good_calls(50)
    app.close()
    assert app.calls.writer.quarantined == 1
    assert app.calls.writer.written == 100
    store = open_store(store_url)
    try:
        assert store.count(CallFilter()) == 100
        now = datetime.now(UTC)
        newest = store.list(CallQuery(limit=1, select=("created_at",))).calls[0]
        assert now - timedelta(minutes=5) < newest["created_at"] <= now
        first, last = store._read(sql.day_range_statement())[0]
        assert (last - first) < 86_400_000_000  # the look-up by id probes one or two days
        (letter,) = store.dead_letters()
        assert letter.error.startswith("created_at more than 1 day, 0:00:00 after now")
        assert "2554-07-21" in letter.error
        assert json.loads(letter.record)["created_at"].startswith("2554-07-21")
        # Retention: everything but the aggregates goes once old enough, dead letters too.
        result = store.apply_retention(now + timedelta(days=91), content_days=30, record_days=90)
        assert (result.records_deleted, result.dead_letters_deleted) == (100, 1)
        assert store.count(CallFilter()) == store.dead_letter_count() == 0
    finally:
        store.close()


def test_starts_before_2000_or_past_tomorrow_are_quarantined_and_replayed_once_valid(
    store_url: str,  # noqa: F811
) -> None:
    """A clock a little ahead is kept; a start 2 days ahead waits in the dead letters and is
    stored by a replay once it is no longer in the future."""
    clock = [datetime(2026, 3, 15, 12, tzinfo=UTC)]
    store = open_store(store_url, clock=lambda: clock[0])
    try:
        good = make_records(20, now=clock[0])
        ahead = replace(good[0], created_at=clock[0] + timedelta(hours=20))
        early = replace(good[1], created_at=datetime(1999, 12, 31, 23, 59, tzinfo=UTC))
        late = replace(good[2], created_at=clock[0] + timedelta(days=2))
        result = store.write_batch([ahead, early, late, *good[3:]])
        assert result.stored == 18
        assert sorted(result.quarantined) == sorted([early.id, late.id])
        assert store.replay_dead_letters().failed == 2
        assert {letter.attempts for letter in store.dead_letters()} == {2}
        clock[0] += timedelta(days=2)
        replayed = store.replay_dead_letters()
        assert (replayed.stored, replayed.failed) == (1, 1)  # the late one; 1999 stays
        (left,) = store.dead_letters()
        assert left.id == early.id
        assert "before 2000-01-01" in left.error
        assert store.count(CallFilter()) == 19
    finally:
        store.close()


# --- the store: isolation, the dead letters, replay -----------------------------------------------


def test_through_the_store_one_unstorable_record_costs_only_itself(store: SQLCallStore) -> None:
    """A record built elsewhere (not held to the limits): the 1,000 others are stored, it is
    quarantined with its error, and a replay (which re-validates) stores it."""
    records = make_records(1000, now=datetime.now(UTC))
    bad = replace(records[400], time_to_first_chunk_ms=1e306 * 1000)  # inf
    assert math.isinf(bad.time_to_first_chunk_ms or 0)
    assert store.write([*records[:400], bad, *records[401:]]) == 999
    (letter,) = store.dead_letters()
    assert letter.id == bad.id
    assert letter.error.startswith("OverflowError")
    assert store.get(bad.id) is None
    replayed = store.replay_dead_letters()
    assert (replayed.stored, replayed.duplicates, replayed.failed) == (1, 0, 0)
    assert store.dead_letter_count() == 0
    assert store.count(CallFilter()) == 1000
    assert store.get(bad.id)["time_to_first_chunk_ms"] is None  # type: ignore[index]


def _hostile(record: CallRecord, index: int) -> CallRecord:
    changes: list[dict[str, Any]] = [
        {"status_code": 2**70},
        {"status_code": 3_000_000_000},
        {"model": "gpt\x00"},
        {"model": "gpt\ud800"},
        {"feature": "f\x00"},
        {"error_message": "boom\x00"},
        {"latency_ms": math.nan},
        {"input_tokens": 2**64},
        {"cost": Decimal("1e30")},
        {"context": {"k\x00": "v\ud800"}},
        {"model": "m" * 5000},
    ]
    return replace(record, **changes[index % len(changes)])


def test_every_hostile_value_straight_into_the_store_loses_no_good_call(
    store: SQLCallStore,
) -> None:
    """Whatever each database refuses (they differ: SQLite takes a NUL and 3e9, PostgreSQL
    neither) is quarantined; every other call is stored; a replay stores the rest corrected."""
    records = make_records(300, now=datetime.now(UTC))
    hostile = [_hostile(record, index) for index, record in enumerate(records[:11])]
    result = store.write_batch([*hostile, *records[11:]])
    assert result.stored + len(result.quarantined) == 300
    assert store.count(CallFilter()) == result.stored
    assert store.dead_letter_count() == len(result.quarantined) > 0
    replayed = store.replay_dead_letters()
    assert (replayed.stored, replayed.failed) == (len(result.quarantined), 0)
    assert store.count(CallFilter()) == 300


def _refuse(url: str) -> None:
    """A real constraint the calls table did not have: model 'refused-model' is refused."""
    if _postgres(url):
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(
                "ALTER TABLE llm_calls ADD CONSTRAINT refuse_model "
                "CHECK (model IS DISTINCT FROM 'refused-model')"
            )
    else:
        with sqlite3.connect(url) as connection:
            connection.execute(
                "CREATE TRIGGER refuse_model BEFORE INSERT ON llm_calls "
                "WHEN NEW.model = 'refused-model' BEGIN SELECT RAISE(ABORT, 'refuse_model'); END"
            )


def _allow(url: str) -> None:
    if _postgres(url):
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("ALTER TABLE llm_calls DROP CONSTRAINT refuse_model")
    else:
        with sqlite3.connect(url) as connection:
            connection.execute("DROP TRIGGER refuse_model")


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["calls", *args])
    return code, capsys.readouterr().out


def test_a_constraint_violation_is_quarantined_shown_and_replayed(
    store_url: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    open_store(store_url).close()  # migrated
    _refuse(store_url)
    store = open_store(store_url)
    records = make_records(10, now=datetime.now(UTC))
    refused = replace(records[6], model="refused-model")
    writer = CallLogWriter(store, flush_interval=600, batch_size=100)
    try:
        writer.add([*records[:6], refused, *records[7:]])
        assert writer.close()
        assert (writer.written, writer.quarantined, writer.dropped) == (9, 1, 0)
    finally:
        store.close()

    code, out = _cli(capsys, "dead-letters", "--store", store_url, "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["total"] == 1
    (letter,) = answer["dead_letters"]
    assert letter["id"] == refused.id
    assert letter["attempts"] == 1
    assert "refuse_model" in letter["error"]
    assert letter["record"]["model"] == "refused-model"
    code, out = _cli(capsys, "dead-letters", "--store", store_url)
    assert refused.id in out
    assert "1 of 1 dead letters" in out

    code, out = _cli(capsys, "replay-dead-letters", "--store", store_url)  # not fixed yet
    assert code == 1
    assert "1 still failed; 1 dead letters left" in out
    _allow(store_url)
    code, out = _cli(capsys, "replay-dead-letters", "--store", store_url, "--json")
    assert code == 0
    assert json.loads(out) == {"stored": 1, "duplicates": 0, "failed": 0, "left": 0}
    code, out = _cli(capsys, "dead-letters", "--store", store_url)
    assert "no dead letters" in out
    store = open_store(store_url)
    try:
        assert store.count(CallFilter()) == 10
        assert store.get(refused.id)["model"] == "refused-model"  # type: ignore[index]
    finally:
        store.close()


def test_the_dead_letters_are_bounded(
    store_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood of bad calls keeps the newest few; the others are counted as dropped."""
    monkeypatch.setattr(deadletter, "MAX_DEAD_LETTERS", 3)
    clock = [datetime(2026, 3, 15, tzinfo=UTC)]

    def tick() -> datetime:
        clock[0] += timedelta(seconds=1)
        return clock[0]

    store = open_store(store_url, clock=tick)
    writer = CallLogWriter(store, flush_interval=600, batch_size=1)
    try:
        bad = [replace(r, created_at=datetime(1990, 1, 1, tzinfo=UTC)) for r in make_records(5)]
        writer.add(bad)
        assert writer.close()
        assert (writer.quarantined, writer.dropped) == (5, 2)
        assert [letter.id for letter in store.dead_letters()] == [r.id for r in bad[:1:-1]]
    finally:
        store.close()


def test_a_database_failure_is_retried_not_quarantined(pg_cluster: Any) -> None:  # noqa: F811
    """A lost connection is the database's fault: the write raises (the writer retries the
    batch); nothing is quarantined."""
    url = pg_cluster.create_database()
    store = open_store(url)
    try:
        assert store.write(make_records(5)) == 5
        pid = store._writer.info.backend_pid  # type: ignore[attr-defined]
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("SELECT pg_terminate_backend(%s)", (pid,))
        later = make_records(5, seed=8)
        with pytest.raises(psycopg.OperationalError):
            store.write(later)
        assert store.dead_letter_count() == 0
        assert store.write(later) == 5  # a new connection
    finally:
        store.close()


def test_a_revoked_grant_is_the_databases_failure_not_the_records(
    pg_cluster: Any,  # noqa: F811
) -> None:
    """A table renamed away (SQLSTATE class 42) would make every record fail alike: the write
    raises for the writer to retry, and no call is sent to the bounded dead letters."""
    url = pg_cluster.create_database()
    store = open_store(url)
    try:
        assert store.write(make_records(5)) == 5
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("ALTER TABLE llm_calls RENAME TO llm_calls_away")
        later = make_records(5, seed=8)
        with pytest.raises(psycopg.errors.UndefinedTable):
            store.write(later)
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("ALTER TABLE llm_calls_away RENAME TO llm_calls")
        assert store.dead_letter_count() == 0
        assert store.write(later) == 5
    finally:
        store.close()


# --- the limits, one by one ---------------------------------------------------------------------

_NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)
LIMIT_CASES: list[tuple[str, Any, Any]] = [
    ("latency_ms", 1e306, None),
    ("latency_ms", math.inf, None),
    ("latency_ms", math.nan, None),
    ("latency_ms", -1.0, None),
    ("latency_ms", 1e9, 1e9),
    ("time_to_first_chunk_ms", 1e309, None),
    ("status_code", 2**70, None),
    ("status_code", 3_000_000_000, None),
    ("status_code", 99, None),
    ("status_code", "200", None),
    ("status_code", 599, 599),
    ("input_tokens", -5, None),
    ("input_tokens", 10**13, None),
    ("input_tokens", 1.5, None),
    ("cost", Decimal("1e30"), None),
    ("cost", Decimal("-0.01"), None),
    ("cost", Decimal("NaN"), None),
    ("cost", Decimal("12.5"), Decimal("12.5")),
    ("model", "a\x00b", f"a{REPLACEMENT}b"),
    ("model", "a\udc80b", f"a{REPLACEMENT}b"),
    ("model", "m" * 300, "m" * 256),
    ("model", 42, "42"),
    ("error_message", "e" * 5000, "e" * 4096),
    ("user", "\x00", REPLACEMENT),
    ("streaming", 1, True),
    (
        "context",
        {"a\x00": "b\ud800", "n": math.inf, "ok": 1},
        {f"a{REPLACEMENT}": f"b{REPLACEMENT}", "n": None, "ok": 1},
    ),
    ("context", {f"k{i}": i for i in range(100)}, {f"k{i}": i for i in range(64)}),
    ("request_prompt", "p\x00", f"p{REPLACEMENT}"),
    ("completed_at", datetime(2554, 7, 21, tzinfo=UTC), None),
    ("completed_at", datetime(1970, 1, 1, tzinfo=UTC), None),
]


@pytest.mark.parametrize(("name", "value", "expected"), LIMIT_CASES)
def test_each_limit_of_the_catalogue(name: str, value: Any, expected: Any) -> None:
    record = replace(make_records(1, now=_NOW)[0], **{name: value})
    before = limits.corrections()[name]
    fixed = limits.checked(record, now=_NOW)
    assert getattr(fixed, name) == expected
    assert limits.corrections()[name] == before + (0 if getattr(fixed, name) is value else 1)


def test_a_good_record_is_returned_as_is() -> None:
    for record in make_records(200, now=_NOW):
        assert limits.checked(record, now=_NOW) is record


def test_corrected_records_read_back_the_same_from_either_database(
    store: SQLCallStore,
) -> None:
    """The limits are the narrower of the two databases': what one stores, the other does."""
    base = make_records(len(LIMIT_CASES), now=_NOW - timedelta(days=1))
    fixed = [
        limits.checked(replace(record, **{name: value}), now=_NOW)
        for record, (name, value, _) in zip(base, LIMIT_CASES, strict=True)
    ]
    assert store.write_batch(fixed).quarantined == ()
    for record, (name, _, expected) in zip(fixed, LIMIT_CASES, strict=True):
        if name in ("request_prompt",):
            assert store.details(record.id)[name] == expected  # type: ignore[index]
        elif name != "streaming":
            assert store.get(record.id)[name] == expected, name  # type: ignore[index]


# --- the migration -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_v1_database_upgrades_to_the_dead_letters_keeping_its_calls(
    backend: str,
    tmp_path: Any,
    request: pytest.FixtureRequest,
) -> None:
    """A store made by the previous release (v1 only) gains the dead-letter table on open."""
    records = make_records(5, now=datetime.now(UTC))
    url = store_at_version(backend, request, tmp_path, 1)
    store = open_store(url)
    try:
        assert store.schema_version() == schema.LATEST  # type: ignore[attr-defined]
        late = replace(records[0], created_at=datetime(2554, 7, 21, tzinfo=UTC))
        assert store.write_batch([late, *records[1:]]).quarantined == (late.id,)
        assert store.count(CallFilter()) == 4
    finally:
        store.close()
