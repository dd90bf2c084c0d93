"""Retention with a controlled clock: content goes after N days, records after M days, and the
daily statistics of those days still answer (on SQLite and on a real PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from otel_llm.calllog import sql
from otel_llm.calllog.query import CallFilter, QueryError, StatsQuery
from otel_llm.calllog.record import CallRecord
from otel_llm.calllog.retention import RetentionJob, prune
from otel_llm.calllog.store import SQLCallStore, open_store
from tests.support.postgres import pg_cluster, store_url  # noqa: F401 - fixtures
from tests.test_calllog_store import make_records

NOW = datetime(2026, 6, 30, 6, 0, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[SQLCallStore]:  # noqa: F811 - the fixture it uses
    opened = open_store(store_url, clock=lambda: NOW)
    try:
        yield opened
    finally:
        opened.close()


def _ages(records: list[CallRecord], older_than: int, younger_than: int | None = None) -> set[str]:
    return {
        r.id
        for r in records
        if r.created_at < NOW - timedelta(days=older_than)
        and (younger_than is None or r.created_at >= NOW - timedelta(days=younger_than))
    }


def test_content_after_n_days_records_after_m_days_aggregates_kept(
    store: SQLCallStore,
) -> None:
    records = make_records(400, days=150, now=NOW, seed=11)
    store.write(records)
    with_content = {r.id for r in records if r.has_content}
    old_window = StatsQuery(
        filter=CallFilter(start=NOW - timedelta(days=140), end=NOW - timedelta(days=100)),
        group_by="model",
    )
    before = store.stats(old_window)
    assert before["stats"]["total_requests"] > 0

    result = store.apply_retention(NOW, content_days=30, record_days=90)

    expired = _ages(records, 90)
    content_gone = (_ages(records, 30) | expired) & with_content
    assert result.records_deleted == len(expired)
    assert result.content_deleted == len(content_gone)
    remaining = {r.id for r in records} - expired
    assert store.count(CallFilter()) == len(remaining)
    for record in records:
        if record.id in expired:
            assert store.get(record.id) is None
            continue
        details = store.details(record.id)
        assert details is not None
        has_content = record.id in with_content and record.id not in content_gone
        assert details["has_content"] is has_content
        assert details["request_prompt"] == (record.request_prompt if has_content else None)
    # Records of 100-140 days ago are gone, their daily statistics are not.
    after = store.stats(old_window)
    assert after["stats"] == before["stats"]
    assert after["groups"] == before["groups"]
    assert after["by_day"] == before["by_day"]
    # A second run finds nothing more to delete.
    again = store.apply_retention(NOW, content_days=30, record_days=90)
    assert (again.content_deleted, again.records_deleted) == (0, 0)


def test_content_of_expired_records_goes_with_them(store: SQLCallStore) -> None:
    # Content kept longer than records makes no sense: it goes when its record goes.
    records = make_records(100, days=20, now=NOW, seed=12)
    store.write(records)
    store.apply_retention(NOW, content_days=60, record_days=10)
    kept = {r.id for r in records} - _ages(records, 10)
    assert store.count(CallFilter()) == len(kept)
    # No content row outlives its call: every stored prompt belongs to a kept call.
    rows = store._read(sql.Statement("SELECT id FROM llm_call_content", ()))
    assert {row[0] for row in rows} <= kept


def test_hourly_stats_beyond_record_retention_are_refused(store_url: str) -> None:  # noqa: F811
    opened = open_store(store_url, clock=lambda: NOW, record_days=3)
    try:
        old = CallFilter(start=NOW - timedelta(days=5), end=NOW - timedelta(days=4))
        with pytest.raises(QueryError, match="kept 3 days"):
            opened.stats(StatsQuery(filter=old, group_by="hour"))
        # By day, the same range answers (from the aggregates).
        assert opened.stats(StatsQuery(filter=old, group_by="day"))["groups"] == []
    finally:
        opened.close()


def test_prune_uses_the_settings(store: SQLCallStore, monkeypatch: pytest.MonkeyPatch) -> None:
    records = make_records(60, days=10, now=NOW, seed=13)
    store.write(records)
    monkeypatch.setenv("OTEL_LLM_CALL_LOG_RECORD_DAYS", "5")
    monkeypatch.setenv("OTEL_LLM_CALL_LOG_CONTENT_DAYS", "2")
    result = prune(store, now=NOW)
    assert result.records_cutoff == NOW - timedelta(days=5)
    assert result.content_cutoff == NOW - timedelta(days=2)
    assert result.records_deleted == len(_ages(records, 5))


def test_the_background_job_prunes_and_stops(store_url: str) -> None:  # noqa: F811
    opened = open_store(store_url)
    try:
        now = datetime.now(UTC)
        records = make_records(50, days=20, now=now, seed=14)
        opened.write(records)
        job = RetentionJob(opened, interval=3600, content_days=1, record_days=7).start()
        deadline = time.monotonic() + 10
        while job.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        job.stop()
        assert job.runs == 1
        assert job.last_result is not None
        kept = [r for r in records if r.created_at >= job.last_result.records_cutoff]
        assert opened.count(CallFilter()) == len(kept)
        assert job._thread is None  # stopped and joined
    finally:
        opened.close()
