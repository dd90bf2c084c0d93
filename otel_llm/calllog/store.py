"""The call store: one interface, SQLite (embedded default) or PostgreSQL (shared by replicas).

``open_store(url)`` picks the backend: a file path or ``sqlite:///path`` -> SQLite,
``postgresql://...`` -> PostgreSQL. Both run the same SQL (``sql.py``) over the same schema
(``schema.py``); ``SQLCallStore`` (``sqlstore.py``) holds everything but the connection handling
and the write path, which the backends implement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from otel_llm import settings
from otel_llm.calllog.cardinality import DailyCaps
from otel_llm.calllog.isolation import WriteResult
from otel_llm.calllog.query import CallFilter, CallQuery, StatsQuery
from otel_llm.calllog.record import CallRecord
from otel_llm.calllog.sqlite import SQLiteCallStore
from otel_llm.calllog.sqlstore import Page, RetentionResult, SQLCallStore, Summary
from otel_llm.calllog.traces import TraceQuery

__all__ = [
    "CallReader",
    "CallStore",
    "Page",
    "RetentionResult",
    "SQLCallStore",
    "Summary",
    "WriteResult",
    "open_store",
]


class CallReader(Protocol):
    """The read side of a store: all the query API needs. ``timeout``: seconds the answer may
    take, past them the statement is stopped and ``QueryTimeout`` raised (None: no limit);
    stats carry theirs in the query."""

    def list(self, query: CallQuery, *, timeout: float | None = None) -> Page: ...

    def count(self, filter: CallFilter, *, timeout: float | None = None) -> int: ...

    def summary(self, filter: CallFilter, *, timeout: float | None = None) -> Summary: ...

    def get(
        self,
        call_id: str,
        projects: frozenset[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any] | None: ...

    def details(
        self,
        call_id: str,
        projects: frozenset[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any] | None: ...

    def stats(self, query: StatsQuery) -> dict[str, Any]: ...

    def traces(self, query: TraceQuery, *, timeout: float | None = None) -> dict[str, Any]: ...

    def trace(
        self,
        trace_id: str,
        projects: frozenset[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any] | None: ...

    def conversation(
        self,
        conversation_id: str,
        projects: frozenset[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any] | None: ...


class CallStore(CallReader, Protocol):
    """What the query API, the CLI and the writer use."""

    def write(self, records: Sequence[CallRecord]) -> int: ...

    def write_batch(self, records: Sequence[CallRecord]) -> WriteResult: ...

    def apply_retention(
        self, now: datetime, *, content_days: int, record_days: int
    ) -> RetentionResult: ...

    def rank_closed_day(self) -> None:
        """Have the day that closed ranked, off the caller's path, once a day
        (``SQLCallStore.rank_closed_day``)."""

    def close(self) -> None: ...


def open_store(
    url: str,
    *,
    record_days: int | None = None,
    clock: Callable[[], datetime] | None = None,
    max_daily_values: int | None = None,
    max_daily_users: int | None = None,
    hold_cycle_collector: bool = False,
) -> SQLCallStore:
    """A store for ``url``: a file path or ``sqlite:///path`` (SQLite, created if absent), or
    ``postgresql://...`` / ``postgres://...`` (PostgreSQL; the database must exist). The
    schema is created or migrated on open. ``max_daily_values``, ``max_daily_users``: the daily
    aggregates' caps (default: the ``call_log_max_daily_values`` and
    ``call_log_max_daily_users`` settings). ``hold_cycle_collector``: SQLite's writes hold
    Python's cycle collector off (a process the call log owns, as the collector; never in an
    application's process). The store's job starts writing the past days' ranks no answer
    wrote (``SQLCallStore.catch_up_ranks``)."""
    store: SQLCallStore
    if url.startswith(("postgresql://", "postgres://")):
        # psycopg is an optional dependency (the "postgres" extra): loaded only when used.
        from otel_llm.calllog.postgres import PostgresCallStore  # noqa: PLC0415

        store = PostgresCallStore(url, record_days=record_days, clock=clock)
    else:
        path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
        if url.startswith("sqlite://") and not url.startswith("sqlite:///"):
            raise ValueError(f"not a SQLite URL (use sqlite:///path): {url}")
        store = SQLiteCallStore(
            path, record_days=record_days, clock=clock, hold_cycle_collector=hold_cycle_collector
        )
    if max_daily_values is not None or max_daily_users is not None:
        store.daily_caps = DailyCaps(
            settings.CALL_LOG_MAX_DAILY_VALUES.resolve(max_daily_values),
            settings.CALL_LOG_MAX_DAILY_USERS.resolve(max_daily_users),
        )
    store.catch_up_ranks()
    return store
