"""The queries both call-store backends share: ``SQLCallStore``, and what it answers with.

A backend (``sqlite.py``, ``postgres.py``) adds the connections, the migration and the write
path; the listing, look-up, statistics and retention here run the same SQL (``sql.py``) on both.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from otel_llm import settings
from otel_llm.calllog import dailyranks, deadletter, rollup, schema, sql, traces, tracespans
from otel_llm.calllog.callgroups import call_groups
from otel_llm.calllog.cardinality import OTHER, DailyCaps
from otel_llm.calllog.catalogue import (
    CALL_GROUPS,
    FIELDS,
    ROLLUPS,
    STATS_MATCHES,
    SUMMARY_FIELDS,
    SUMMED,
    Rollup,
    column_of,
)
from otel_llm.calllog.dailyrows import Deadline, Rows, Source
from otel_llm.calllog.isolation import IsolatingStore, WriteResult
from otel_llm.calllog.pastdays import PastDays
from otel_llm.calllog.query import (
    MAX_GROUP_LIMIT,
    MAX_LIMIT,
    CallFilter,
    CallQuery,
    QueryError,
    StatsQuery,
)
from otel_llm.calllog.record import CallRecord, from_nanos, micros_of
from otel_llm.calllog.schema import CALLS, CONTENT, DAILY_SINCE
from otel_llm.calllog.stats import choose, daily_stats, model_entries

MAX_HOURLY_DAYS = 7
"""Hourly stats read call records; a longer range is refused (use day or week)."""

_logger = logging.getLogger(__name__)

DEFAULT_STATS_DAYS = 30
"""The range of stats when the query gives no start: the last 30 days (today included)."""

DETAILS_FIELDS = (
    "id",
    "trace_id",
    "span_id",
    "created_at",
    "provider",
    "model",
    "status",
    "latency_ms",
    "total_tokens",
    "cost",
)
"""Summary fields ``details`` returns next to the content."""

_STATS_ATTRIBUTES = frozenset({*STATS_MATCHES, "start", "end", "projects"})
"""The ``CallFilter`` attributes stats apply: the daily aggregates' fields, the time range
and access control's projects."""

_Groups = list[tuple[str | None, rollup.Totals]]
_Fetched = list[tuple[Any, ...]]
"""The rows of one read (``_read``)."""

_UNREAD = object()
"""The first day of the tables by status, user and key: not read yet."""
_RETENTION_BATCH = 10_000
_DAY_US = 86_400_000_000
_DAYS_PER_LOOKUP = 1000  # days probed by one statement (bound parameters stay few)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: the calls (selected fields only), how many match, whether more."""

    calls: list[dict[str, Any]]
    total: int
    has_more: bool


@dataclass(frozen=True, slots=True)
class Summary:
    """Totals of the calls a filter selects (the enhanced list's ``summary``)."""

    requests: int
    priced: int
    """Calls with a cost (the others' is unknown, not 0)."""
    cost: Decimal | None
    """USD, exact; None when no call was priced."""
    tokens: int


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What ``apply_retention`` deleted."""

    content_deleted: int
    records_deleted: int
    content_cutoff: datetime
    records_cutoff: datetime
    dead_letters_deleted: int = 0
    """Quarantined calls older than the records' retention (``deadletter.py``)."""


class SQLCallStore(IsolatingStore, ABC):
    """The queries, shared by both backends; subclasses connect, migrate and write (writes
    isolate each record: ``isolation.py``)."""

    _day_indexes = False
    """The user and API key indexes are (day, column, created_us) (SQLite, ``schema._v9``)."""

    def __init__(
        self,
        *,
        record_days: int | None = None,
        clock: Callable[[], datetime] | None = None,
    ):
        self.record_days = settings.CALL_LOG_RECORD_DAYS.resolve(record_days)
        """How long records are kept: hourly stats further back are refused."""
        self._clock = clock or (lambda: datetime.now(UTC))
        self.daily_caps = DailyCaps(
            settings.CALL_LOG_MAX_DAILY_VALUES.resolve(None),
            settings.CALL_LOG_MAX_DAILY_USERS.resolve(None),
        )
        """The caps on distinct values per day and dimension of the daily aggregates
        (``call_log_max_daily_values``, ``call_log_max_daily_users``); ``open_store`` sets
        others when told."""
        self._closed = threading.Event()
        self._last_partial_day: object = _UNREAD
        self._past_days: PastDays | None = PastDays()
        """What stats keep of the days before today (``pastdays.py``); None: nothing."""
        self._job_lock = threading.Lock()
        self._job: threading.Thread | None = None
        """The store's job: the thread writing past days' ranks (``_later``), if one was
        started."""
        self._ranks_asked: date | None = None
        """The day ``catch_up_ranks`` last asked on: a write on a later one asks again."""

    # --- backend primitives ----------------------------------------------------------------

    @abstractmethod
    def _read(self, statement: sql.Statement) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement (``?`` placeholders)."""

    @abstractmethod
    def close(self) -> None: ...

    # --- writes ----------------------------------------------------------------------------

    def write_batch(self, records: Sequence[CallRecord]) -> WriteResult:
        result = super().write_batch(records)
        try:
            self.rank_closed_day()
        except Exception:  # the calls are stored: never fail their write
            _logger.exception("call log: starting to write past days' ranks failed")
        return result

    def rank_closed_day(self) -> None:
        """Once a day: have the store's job rank the day that closed (``catch_up_ranks``), if
        nothing asked since the day turned. The first write of a day calls it, and so does the
        retention job as the day turns (a store idle at midnight), so that the day's first
        rankings find it written (without, the first answer to miss it asked, and it and those
        before the job was done ranked from the daily rows: over 30 days on the 1 M store, by
        key 542 ms against 389, by user 582 against 346, ``benchmarks/calllog_day_turn.py``). A
        late call of that day after this has it written again, once a ranking finds its total
        changed."""
        if _floor_day(self._clock()).date() != self._ranks_asked:
            self.catch_up_ranks()

    # --- queries ---------------------------------------------------------------------------

    def list(self, query: CallQuery, *, timeout: float | None = None) -> Page:
        """A page of calls and how many match; within ``timeout`` seconds (``QueryTimeout``
        past them; None: no limit), the count included."""
        if not 1 <= query.limit <= MAX_LIMIT:
            raise QueryError(f"limit must be between 1 and {MAX_LIMIT}, got {query.limit}")
        if query.offset < 0:
            raise QueryError(f"offset must be >= 0, got {query.offset}")
        if query.sort not in sql.SORT_COLUMNS:
            raise QueryError(f"unknown sort key {query.sort!r}")
        fields = _checked_fields(query.select)
        read = self._within(timeout)
        days = self._days(query.filter, read)
        rows = read(sql.list_statement(query, fields, days))
        calls = [sql.decode(fields, row) for row in rows]
        total = self._count(query.filter, days, read)
        return Page(calls=calls, total=total, has_more=query.offset + len(calls) < total)

    def count(self, filter: CallFilter, *, timeout: float | None = None) -> int:
        read = self._within(timeout)
        return self._count(filter, self._days(filter, read), read)

    def _count(self, filter: CallFilter, days: Sequence[int] | None, read: tracespans.Read) -> int:
        return int(read(sql.count_statement(filter, days))[0][0])

    def summary(self, filter: CallFilter, *, timeout: float | None = None) -> Summary:
        read = self._within(timeout)
        statement = sql.summary_statement(filter, self._days(filter, read))
        requests, priced, cost, tokens = read(statement)[0]
        return Summary(
            int(requests),
            int(priced),
            from_nanos(int(cost)) if priced else None,
            int(tokens or 0),
        )

    def _days(
        self, filter: CallFilter, read: tracespans.Read | None = None
    ) -> Sequence[int] | None:
        """The days a query on a day-indexed filter names (``sql.where``): those of its range
        within the stored calls' (None: this backend has no such index, the filter none of
        those fields, or the range more days than one statement binds -- then it scans).
        ``read``: the answer's (``_within``), else ``_read``."""
        if not self._day_indexes or not sql.day_indexed(filter):
            return None
        first, last = (read or self._read)(sql.day_range_statement())[0]
        if first is None:
            return ()
        low, high = int(first) // _DAY_US, int(last) // _DAY_US
        if filter.start is not None:
            low = max(low, micros_of(filter.start) // _DAY_US)
        if filter.end is not None:
            high = min(high, (micros_of(filter.end) - 1) // _DAY_US)
        if high - low >= _DAYS_PER_LOOKUP:
            return None
        return range(low, high + 1)

    def get(
        self,
        call_id: str,
        projects: frozenset[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any] | None:
        fields = tuple(FIELDS)
        row = self._lookup(self._within(timeout), call_id, fields, projects)
        return sql.decode(fields, row[:-1]) if row is not None else None

    def details(
        self,
        call_id: str,
        projects: frozenset[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any] | None:
        read = self._within(timeout)
        row = self._lookup(read, call_id, DETAILS_FIELDS, projects)
        if row is None:
            return None
        result = sql.decode(DETAILS_FIELDS, row[:-1])
        content = read(sql.content_statement(int(row[-1]), call_id))
        prompt, preview = content[0] if content else (None, None)
        result["request_prompt"] = prompt
        result["response_preview"] = preview
        result["has_content"] = bool(content)
        return result

    def _lookup(
        self,
        read: tracespans.Read,
        call_id: str,
        fields: Sequence[str],
        projects: frozenset[str] | None,
    ) -> tuple[Any, ...] | None:
        """The row of the fields (then created_us) of one call, or None."""
        first, last = read(sql.day_range_statement())[0]
        if first is None:
            return None
        days = range(int(first) // _DAY_US, int(last) // _DAY_US + 1)
        for start in range(0, len(days), _DAYS_PER_LOOKUP):
            statement = sql.get_statement(
                call_id, fields, projects, days[start : start + _DAYS_PER_LOOKUP]
            )
            if statement is None:
                return None
            rows = read(statement)
            if rows:
                return rows[0]
        return None

    def _within(self, timeout: float | None) -> tracespans.Read:
        """``_read`` for the statements of one answer, all within ``timeout`` seconds from
        now (None: ``_read`` itself): each runs through ``_read_by``, the stats' ``_scan`` (or
        its transaction on PostgreSQL), which has the database stop the statement at the
        deadline (``QueryTimeout``) and lets the connection go at once."""
        if timeout is None:
            return self._read
        return self._reading(Deadline(timeout))

    def _reading(self, deadline: Deadline) -> tracespans.Read:
        """``_within``'s reads, all within ``deadline``."""

        def read(statement: sql.Statement) -> list[tuple[Any, ...]]:
            deadline.check()  # spent between two statements (or waiting for the reader)
            return self._read_by(statement, deadline)

        return read

    def _read_by(self, statement: sql.Statement, deadline: Deadline) -> _Fetched:
        """The rows of one statement, stopped at ``deadline``: ``_scan``'s, kept."""
        rows: _Fetched = []

        def keep(scanned: Rows) -> None:
            rows.extend(tuple(row) for row in scanned)

        self._scan(statement, deadline, keep)
        return rows

    # --- statistics ------------------------------------------------------------------------

    def stats(self, query: StatsQuery) -> dict[str, Any]:
        """Totals over whole UTC days (the response's start/end say which), from the daily
        aggregates; hourly groups from the call records (at most 7 days, within retention)."""
        asked: list[Callable[[], None]] = []
        try:
            return self._stats(query, asked.append)
        finally:
            # The store's job, once the answer is done: it does not slow the answer that
            # asked for it (~0.2 s a day written at 100,000 users).
            for job in asked:
                self._later(job)

    def _stats(self, query: StatsQuery, later: dailyranks.Later) -> dict[str, Any]:
        call_filter = query.filter
        refused = [
            attribute.name
            for attribute in dataclass_fields(call_filter)
            if attribute.name not in _STATS_ATTRIBUTES
            and getattr(call_filter, attribute.name) not in (None, ())
        ]
        if refused:
            raise QueryError(
                f"stats cannot filter on {', '.join(refused)}: they filter only list and "
                f"count; stats accept {', '.join(STATS_MATCHES)}, start and end"
            )
        now = self._clock()
        end = _ceil_day(call_filter.end) if call_filter.end else _floor_day(now) + timedelta(1)
        if call_filter.start is not None:
            start = _floor_day(call_filter.start)
        elif query.group_by == "hour":
            start = end - timedelta(days=1)
        else:
            start = end - timedelta(days=DEFAULT_STATS_DAYS)
        if end <= start:
            raise QueryError("stats need start before end")
        if query.group_by == "hour" or query.group_by in CALL_GROUPS:
            self._check_records_range(query.group_by, start, end, now)
        if not 1 <= query.limit <= MAX_GROUP_LIMIT:
            raise QueryError(f"limit must be between 1 and {MAX_GROUP_LIMIT}, got {query.limit}")
        deadline = Deadline(query.timeout)
        self._check_projects_kept(call_filter.projects, start, end, self._reading(deadline))
        grouped = choose(call_filter, query.group_by)
        base = choose(call_filter, None)  # the smallest table for the totals and by_day
        if grouped is not ROLLUPS[0]:
            start = self._complete_from(grouped, start, end)
        daily = daily_stats(
            self._scan,
            Source.of(base, call_filter, start, end),
            Source.of(grouped, call_filter, start, end),
            query.group_by,
            query.limit,
            deadline=deadline,
            kept=self._past_days,
            today=_floor_day(now).date(),
            write=self._write_ranks if schema.LATEST >= schema.RANKS_SINCE else None,
            later=later,
        )
        result: dict[str, Any] = {
            "start": start,
            "end": end,
            "group_by": query.group_by,
            "stats": daily.overall.stats(),
        }
        groups = daily.groups
        hour_models: dict[str, _ModelEntries] = {}
        if query.group_by == "hour":
            # Each hour's cost by model (the page stacks it), for the range's busiest models
            # only: at most ``limit`` totals an hour, whatever model names the calls carry.
            busiest = {entry["model"] or "" for entry in daily.by_model} - {OTHER}
            groups, hour_models = self._hourly(
                replace(call_filter, start=start, end=end), deadline, busiest
            )
        elif query.group_by in CALL_GROUPS:
            ranged = replace(call_filter, start=start, end=end)
            groups = call_groups(
                self._scan,
                ranged,
                query.group_by,
                query.limit,
                deadline=deadline,
                overall=daily.overall,
                days=self._days(ranged),
            )
        if query.group_by is not None:
            result["groups"] = [{"group": key, **totals.stats()} for key, totals in groups]
            for group in result["groups"] if hour_models else ():
                group["models"] = hour_models[group["group"]]
        result["by_day"] = daily.by_day
        result["by_model"] = daily.by_model
        return result

    def _check_projects_kept(
        self,
        projects: frozenset[str] | None,
        start: datetime,
        end: datetime,
        read: tracespans.Read,
    ) -> None:
        """A key limited to projects is answered from its projects' daily rows. On a day that
        had more projects than the cap, the later ones' calls are in the rows of ``other``,
        where its filter does not find them (found in review: its stats said 0 calls where its
        count said 4): a range with such a day, when one of the key's projects is missing
        from the day's rows and the records have calls of it (or no longer say), is refused,
        not answered short. A project is in a day's rows for the whole day or not at all, and
        ``other`` itself is no project a key may be limited to (``auth``). Its statements
        run within the answer's time budget (``read``): the daily rows of a range are many
        when a client varies every dimension."""
        if projects is None:
            return
        folded = [
            str(row[0])
            for row in read(
                sql.Statement(
                    f"SELECT DISTINCT day FROM {schema.DAILY} "  # noqa: S608 - fixed names
                    "WHERE day >= ? AND day < ? AND project = ?",
                    (start.date().isoformat(), end.date().isoformat(), OTHER),
                )
            )
        ]
        if not folded:
            return
        wanted = sorted(projects)
        admitted = {
            (str(day), str(project))
            for day, project in read(
                sql.Statement(
                    f"SELECT DISTINCT day, project FROM {schema.DAILY} "  # noqa: S608
                    f"WHERE day IN ({', '.join('?' for _ in folded)}) "
                    f"AND project IN ({', '.join('?' for _ in wanted)})",
                    (*folded, *wanted),
                )
            )
        }
        records_from = (self._clock() - timedelta(days=self.record_days)).date()
        for day in sorted(folded):
            missing = frozenset(p for p in wanted if (day, p) not in admitted)
            if not missing:
                continue
            first = datetime.combine(date.fromisoformat(day), time(), UTC)
            calls = CallFilter(projects=missing, start=first, end=first + timedelta(days=1))
            if first.date() < records_from or self._count(calls, self._days(calls, read), read):
                raise QueryError(
                    f"stats cannot answer a key limited to projects over {day}: that day had "
                    "more projects than call_log_max_daily_values, and the daily aggregates "
                    f"keep the later ones' calls as '{OTHER}'; start after it, or list and count "
                    "the calls (the records keep every call's project)"
                )

    def _write_ranks(self, statement: sql.Statement) -> bool:
        """One write of the past days' ranks (``dailyranks.py``), by the store's job; False:
        the database refused it for now (busy, read-only) or the store is closing: the daily
        rows rank, as before."""
        if self._closed.is_set():
            return False
        try:
            self._execute(statement)
        except Exception as error:
            if self._transient(error):
                return False
            raise
        return True

    def catch_up_ranks(self) -> None:
        """Have the store's job write the past days' ranks a ranking would read and no answer
        wrote (``dailyranks.catch_up_window``): ``open_store`` does, so that the rankings after
        a restart or an upgrade find them (the answers meanwhile rank from the daily rows), and
        ``rank_closed_day``, for the day that closed."""
        self._ranks_asked = _floor_day(self._clock()).date()
        if schema.LATEST >= schema.RANKS_SINCE:  # not a store older code made (its tests)
            self._later(self._catch_up_window)

    def _catch_up_window(self) -> None:
        today = _floor_day(self._clock()).date()
        first = today - timedelta(days=dailyranks.RANKED_DAYS)
        complete = self._first_complete_day()
        dailyranks.catch_up_window(
            self._scan,
            self._write_ranks,
            first=first if complete is None else max(first, complete),
            today=today,
        )

    def _later(self, job: Callable[[], None]) -> None:
        """Run ``job`` (writing past days' ranks) in a thread of its own, off the answer's
        path; not if one is still running (it would write the same days), nor once closing."""
        with self._job_lock:
            if self._closed.is_set() or (self._job is not None and self._job.is_alive()):
                return
            self._job = threading.Thread(
                target=self._run_job, args=(job,), name="otel-llm-calllog-ranks", daemon=True
            )
            self._job.start()

    def join_background(self, timeout: float = 30.0) -> None:
        """Wait for the store's job (``_later``) to be done: ``close`` does, so that a closed
        store leaves no thread behind (a closing store's job stops after the day it is
        writing, ~0.2 s at 100,000 users); tests and benchmarks, to find its writes done."""
        with self._job_lock:
            job = self._job
        if job is not None and job is not threading.current_thread():
            job.join(timeout=timeout)

    def _run_job(self, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception as error:  # a background write must never take the store down
            if not self._transient(error):
                _logger.exception("call log: writing past days' ranks failed")

    def _check_records_range(
        self, group_by: str, start: datetime, end: datetime, now: datetime
    ) -> None:
        """Groups read from the call records (hour, agent, conversation) need them kept."""
        if group_by == "hour" and end - start > timedelta(days=MAX_HOURLY_DAYS):
            raise QueryError(
                f"hourly stats cover at most {MAX_HOURLY_DAYS} days; "
                "group by day or week for longer ranges"
            )
        if start < now - timedelta(days=self.record_days):
            raise QueryError(
                f"{group_by} stats need call records, which are kept "
                f"{self.record_days} days; group by day or week for older ranges"
            )

    def _complete_from(self, rollup: Rollup, start: datetime, end: datetime) -> datetime:
        """``start``, or the first day the tables by status, user and key have every call of
        (``_first_complete_day``)."""
        complete = self._first_complete_day()
        if complete is None:
            return start
        first = datetime.combine(complete, time(), tzinfo=UTC)
        if end <= first:
            raise QueryError(
                f"stats by {', '.join(rollup.fields[:1])} count the calls stored from "
                f"{complete.isoformat()} on (when this store was upgraded to keep them); "
                "ask for a range after that day"
            )
        return max(start, first)

    def _first_complete_day(self) -> date | None:
        """The first day the tables by status, user and key have every call of (a store
        upgraded to them has the earlier calls in the first table only); None: every day."""
        if self._last_partial_day is _UNREAD:
            rows = self._read(sql.Statement(f"SELECT last_partial_day FROM {DAILY_SINCE}", ()))  # noqa: S608
            self._last_partial_day = rows[0][0] if rows else None
        last = self._last_partial_day
        return date.fromisoformat(last) + timedelta(1) if isinstance(last, str) else None

    def _hourly(
        self, call_filter: CallFilter, deadline: Deadline, models: Collection[str]
    ) -> tuple[_Groups, dict[str, _ModelEntries]]:
        """The range's totals per hour, and each hour's ``models`` (the rest as ``other``)."""
        condition = sql.where(call_filter)
        by_hour: dict[int, rollup.Totals] = {}
        by_hour_model: dict[int, dict[str, rollup.Totals]] = {}
        last = len(_HOURLY_COLUMNS) - 4 - len(rollup.BILLED)

        def add(rows: Rows) -> None:
            for count, row in enumerate(rows):
                if not count % 1024:
                    deadline.check()
                hour = int(row[0]) // 3_600_000_000
                totals = by_hour.get(hour)
                if totals is None:
                    totals = by_hour[hour] = rollup.Totals()
                    by_hour_model[hour] = {}
                parts = (
                    row[1] == "error",
                    row[2:last],
                    row[last],
                    row[last + 1],
                    row[last + 2 : -2],
                )
                totals.add(*parts, policy_action=row[-2])
                model = row[-1] or ""
                if model in models:
                    hour_models = by_hour_model[hour]
                    if model not in hour_models:
                        hour_models[model] = rollup.Totals()
                    hour_models[model].add(*parts, policy_action=row[-2])

        self._scan(
            sql.Statement(
                f"SELECT {', '.join(_HOURLY_COLUMNS)} FROM {CALLS} WHERE {condition.text}",  # noqa: S608
                condition.params,
            ),
            deadline,
            add,
        )
        keys = {h: (_EPOCH + timedelta(hours=h)).isoformat() for h in sorted(by_hour)}
        return (
            [(key, by_hour[h]) for h, key in keys.items()],
            {key: model_entries(by_hour[h], by_hour_model[h]) for h, key in keys.items()},
        )

    def _scan(
        self,
        statement: sql.Statement,
        deadline: Deadline,
        consume: Callable[[Rows], None],
    ) -> None:
        """Hand the rows of one read to ``consume``, within ``deadline`` (``StatsTimeout``
        past it). This default reads every row first and can only check afterwards: the
        backends stop the statement itself, and stream."""
        rows = self._read(statement)
        deadline.check()
        consume(rows)

    # --- traces (``traces.py``, ``tracespans.py``) ----------------------------------------

    def traces(self, query: traces.TraceQuery, *, timeout: float | None = None) -> dict[str, Any]:
        """A page of traces with LLM calls and their totals."""
        read = self._within(timeout)
        return traces.list_traces(read, query, self._days(query.filter, read))

    def trace(
        self,
        trace_id: str,
        projects: frozenset[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any] | None:
        """One trace's totals and tree of calls, agents and tools; None: no call of it."""
        return traces.get_trace(self._within(timeout), trace_id, projects)

    def conversation(
        self,
        conversation_id: str,
        projects: frozenset[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any] | None:
        """The totals of a conversation's calls; None: no call of it."""
        return traces.get_conversation(self._within(timeout), conversation_id, projects)

    def write_trace_spans(self, spans: Sequence[tracespans.TraceSpan]) -> int:
        """Keep a trace's root, agent and tool spans (bounded per trace); the number new."""
        return tracespans.write(self._read, self._execute, spans)

    def keep_trace_spans(
        self,
        keeper: tracespans.RootKeeper,
        spans: Sequence[tracespans.TraceSpan],
        calls: Sequence[tuple[str, int]] = (),
    ) -> int:
        """``write_trace_spans`` of what ``keeper`` says to keep now (roots wait for a call
        of their trace); ``calls``: (trace id, day) of the calls just stored."""
        kept = keeper.to_store(self._read, spans, {trace_id for trace_id, _ in calls})
        stored = self.write_trace_spans(kept)
        if calls:
            tracespans.name_from_roots(self._execute, calls)
        return stored

    # --- retention -------------------------------------------------------------------------

    def apply_retention(
        self, now: datetime, *, content_days: int, record_days: int
    ) -> RetentionResult:
        """Delete content older than ``content_days`` and records older than ``record_days``
        (with their content); daily aggregates are kept. Whole days by dropping their
        partition (PostgreSQL), the rest in batches, so writers wait little."""
        if content_days < 1 or record_days < 1:
            raise ValueError("retention days must be >= 1")
        records_cutoff = now - timedelta(days=record_days)
        content_cutoff = max(now - timedelta(days=content_days), records_cutoff)
        content_deleted = self._delete_all(CONTENT, micros_of(content_cutoff))
        records_deleted = self._drop_days_before(micros_of(records_cutoff))
        records_deleted += self._delete_all(CALLS, micros_of(records_cutoff))
        dead = self._execute(deadletter.older_than(micros_of(records_cutoff)))
        self._execute(tracespans.older_than(micros_of(records_cutoff)))
        return RetentionResult(
            content_deleted, records_deleted, content_cutoff, records_cutoff, dead
        )

    def _drop_days_before(self, cutoff_us: int) -> int:
        """Drop the whole days of calls before ``cutoff_us`` a backend keeps apart (PostgreSQL's
        daily partitions); the calls dropped. What is left before it is deleted row by row."""
        return 0

    def _delete_all(self, table: str, cutoff_us: int) -> int:
        # In slices of the primary key's time order, each its own short transaction, so
        # writers wait little; the slice ends at the created_us of the batch's last row.
        deleted = 0
        while True:
            edge = self._read(
                sql.Statement(
                    f"SELECT created_us FROM {table} WHERE created_us < ? "  # noqa: S608
                    f"ORDER BY created_us LIMIT 1 OFFSET {_RETENTION_BATCH - 1}",
                    (cutoff_us,),
                )
            )
            bound = int(edge[0][0]) + 1 if edge else cutoff_us
            deleted += self._execute(
                sql.Statement(
                    f"DELETE FROM {table} WHERE created_us < ?",  # noqa: S608
                    (bound,),
                )
            )
            if not edge:
                return deleted


_ModelEntries = list[dict[str, Any]]
"""A day's or an hour's cost by model, as ``stats.model_entries`` answers it."""

_HOURLY_COLUMNS = (
    column_of("created_at"),
    column_of("status"),
    *SUMMED,
    column_of("latency_ms"),
    column_of("time_to_first_chunk_ms"),
    *rollup.BILLED,
    column_of("policy_action"),
    column_of("model"),
)
"""What hourly stats read of each call: its time, its status, ``Totals.add``'s values, its
model."""


def _checked_fields(select: Sequence[str] | None) -> tuple[str, ...]:
    if select is None:
        return SUMMARY_FIELDS
    unknown = [name for name in select if name not in FIELDS]
    if unknown:
        raise QueryError(f"unknown field(s): {', '.join(unknown)}")
    if not select:
        raise QueryError("select names no field")
    return tuple(dict.fromkeys(select))


def _floor_day(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(), tzinfo=UTC)


def _ceil_day(moment: datetime) -> datetime:
    floor = _floor_day(moment)
    return floor if floor == moment else floor + timedelta(days=1)
