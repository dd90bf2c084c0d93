"""The embedded call store: one SQLite file, zero set-up.

WAL lets readers (the query API) run while a batch is written; ``synchronous=NORMAL`` makes a
commit cost no fsync (WAL keeps the database consistent; a power cut may lose the last
batches, which for a call log is the right trade). Writes take the database's write lock at the
start of the transaction (``BEGIN IMMEDIATE``), so checking which ids are new and adding them to
the aggregates cannot race another writer, even in another process.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from otel_llm.calllog import rollup, schema, sql
from otel_llm.calllog.catalogue import (
    DAILY_LATENCY_SUM,
    DAILY_SKETCHES,
    DAILY_SUMS,
    ROLLUPS,
)
from otel_llm.calllog.dailyrows import Deadline, Rows
from otel_llm.calllog.query import StatsTimeout
from otel_llm.calllog.record import CallRecord, micros_of
from otel_llm.calllog.sqlstore import SQLCallStore

_IN_CHUNK = 500  # ids per "IN (...)" look-up, well within SQLite's parameter limit
_MERGE = "calllog_merge_sketches"

_INSERT_CALLS = (
    f"INSERT INTO {schema.CALLS} ({', '.join(sql.INSERT_COLUMNS)}) "  # noqa: S608 - fixed names
    f"VALUES ({', '.join('?' * len(sql.INSERT_COLUMNS))})"
)
_INSERT_CONTENT = (
    f"INSERT OR REPLACE INTO {schema.CONTENT} ({', '.join(sql.CONTENT_COLUMNS)}) "  # noqa: S608
    "VALUES (?, ?, ?, ?)"
)
_ADDED = (*DAILY_SUMS, DAILY_LATENCY_SUM)


def _upsert(table: str, key: tuple[str, ...]) -> str:
    # One statement adds a batch to a table's daily rows: sums in SQL, sketches merged by a
    # Python function SQLite calls -- no read-modify-write round trips (the write lock is
    # held anyway).
    columns = (*key, *_ADDED, *DAILY_SKETCHES.values())
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - catalogue names
        f"VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET "
        + ", ".join(f"{n} = {table}.{n} + excluded.{n}" for n in _ADDED)
        + "".join(f", {n} = {_MERGE}({table}.{n}, excluded.{n})" for n in DAILY_SKETCHES.values())
    )


_UPSERT_DAILY = {rollup.table: _upsert(rollup.table, rollup.key) for rollup in ROLLUPS}


class _CyclesUncollected:
    """Python's cycle collector held off while a write builds its rows (``with``; nested and
    threads' writes share one hold; it resumes as the last ends, unless it was off before).

    A write makes no reference cycles (a test checks), so every collection during one finds
    nothing -- yet its ~15 container objects a call trigger one every 700 allocations, each
    scanning the batch's live rows again: ~6 of a call's ~53 us, 7-10 % of the ingest rate,
    measured at 100,000 users (``benchmarks/calllog_benchmark.py``). Held only inside the
    transaction (never while waiting for the database's lock), for one batch at most:
    other threads' cyclic garbage waits that long, no more; reference counting frees the rest
    as always.

    The collector is a process of its own and asks for it (``hold_cycle_collector``); a store
    in an application's process (``CallLogExporter``) leaves the application's collector alone:
    it is process-wide state, which the application may be switching itself."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._resume = False

    def __enter__(self) -> None:
        with self._lock:
            if not self._holders:
                self._resume = gc.isenabled()
                gc.disable()
            self._holders += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._holders -= 1
            if not self._holders and self._resume:
                gc.enable()


_uncollected = _CyclesUncollected()


class SQLiteCallStore(SQLCallStore):
    """Call store in a SQLite file (created, with its directory, if absent)."""

    _day_indexes = True

    def __init__(
        self,
        path: str,
        *,
        record_days: int | None = None,
        clock: Callable[[], datetime] | None = None,
        hold_cycle_collector: bool = False,
    ):
        """``hold_cycle_collector``: hold Python's cycle collector off while a write builds
        and inserts its rows (``_CyclesUncollected``) -- for a process the call log owns."""
        super().__init__(record_days=record_days, clock=clock)
        self.path = path
        self._hold: contextlib.AbstractContextManager[None] = (
            _uncollected if hold_cycle_collector else contextlib.nullcontext()
        )
        memory = path in {":memory:", ""}
        if not memory:
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
        self._write_lock = threading.Lock()
        self._writer = self._connect(path)
        self._migrate()
        # A second connection for queries: under WAL it reads while the first writes.
        self._reader = self._writer if memory else self._connect(path)
        self._read_lock = self._write_lock if memory else threading.Lock()

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        connection = sqlite3.connect(
            path or ":memory:", isolation_level=None, check_same_thread=False, timeout=30.0
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA busy_timeout=30000")
        # Index pages of a day's inserts stay cached (the default cache is 2 MB); a larger
        # WAL between checkpoints writes each hot page back once instead of several times.
        connection.execute("PRAGMA cache_size=-65536")
        connection.execute("PRAGMA wal_autocheckpoint=10000")
        connection.create_function(_MERGE, 2, sql.merge_sketches, deterministic=True)
        return connection

    def _migrate(self) -> None:
        connection = self._writer
        with self._write_lock:
            connection.execute("BEGIN IMMEDIATE")
            try:
                schema.upgrade(connection.execute, schema.SQLITE_TYPES)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        return int(
            self._read(sql.Statement(f"SELECT version FROM {schema.VERSION_TABLE}", ()))[0][0]  # noqa: S608
        )

    def _read(self, statement: sql.Statement) -> list[tuple[Any, ...]]:
        with self._read_lock:
            return self._reader.execute(statement.text, statement.params).fetchall()

    def _scan(
        self,
        statement: sql.Statement,
        deadline: Deadline,
        consume: Callable[[Rows], None],
    ) -> None:
        # SQLite calls the handler every N virtual-machine steps; a true answer interrupts the
        # statement. The rows are streamed off the cursor, so memory stays that of one row.
        def past() -> bool:
            return deadline.passed()

        with self._read_lock:
            reader = self._reader
            if deadline.at is not None:
                reader.set_progress_handler(past, 10_000)
            try:
                consume(reader.execute(statement.text, statement.params))
            except sqlite3.OperationalError as exc:
                if deadline.passed():
                    raise StatsTimeout(deadline.seconds) from exc
                raise
            finally:
                reader.set_progress_handler(None, 0)

    def _execute(self, statement: sql.Statement) -> int:
        with self._write_lock:
            cursor = self._writer.execute(statement.text, statement.params)
            return cursor.rowcount

    def _transient(self, error: Exception) -> bool:
        # Locked, busy, I/O, disk full: the database's. A constraint (IntegrityError), a value
        # it cannot bind or hold (DataError, ProgrammingError, OverflowError...): the record's.
        return isinstance(error, sqlite3.OperationalError | sqlite3.InterfaceError) or (
            self._closed.is_set()
        )

    def _write(self, records: Sequence[CallRecord]) -> int:
        if not records:
            return 0
        unique = list({record.id: record for record in records}.values())
        connection = self._writer
        with self._write_lock:
            connection.execute("BEGIN IMMEDIATE")
            try:
                with self._hold:
                    new = self._new_records(connection, unique)
                    if new:
                        self._insert(connection, new)
                connection.execute("COMMIT")
            except BaseException:
                self.daily_caps.rolled_back()
                connection.execute("ROLLBACK")
                raise
            self.daily_caps.committed()
        return len(new)

    def _insert(self, connection: sqlite3.Connection, new: list[CallRecord]) -> None:
        # None bound as a NaN (``sql.SQLITE_NULL``), which SQLite stores as NULL.
        rows = [sql.sqlite_row_of(record) for record in new]
        connection.executemany(_INSERT_CALLS, rows)
        with_content = [sql.sqlite_content_row_of(record) for record in new if record.has_content]
        if with_content:
            connection.executemany(_INSERT_CONTENT, with_content)
        # The write lock is held (BEGIN IMMEDIATE): the cap's count cannot race another writer.
        added = self.daily_caps.fold(
            rollup.rollup(rows, sqlite=True),
            lambda text, params: connection.execute(text, params).fetchall(),
            advisory_locks=False,
        )
        for table, daily in added.items():
            connection.executemany(
                _UPSERT_DAILY[table],
                [(*key, *totals.row_values()) for key, totals in daily.items()],
            )

    @staticmethod
    def _new_records(connection: sqlite3.Connection, records: list[CallRecord]) -> list[CallRecord]:
        stored: set[tuple[int, str]] = set()
        keys = [(micros_of(record.created_at), record.id) for record in records]
        for start in range(0, len(keys), _IN_CHUNK):
            times = sorted({created for created, _ in keys[start : start + _IN_CHUNK]})
            # Seeks on the primary key's first column; the ids are matched here.
            stored.update(
                connection.execute(
                    f"SELECT created_us, id FROM {schema.CALLS} "  # noqa: S608 - fixed names
                    f"WHERE created_us IN ({', '.join('?' * len(times))})",
                    times,
                )
            )
        if not stored:
            return records
        return [record for record, key in zip(records, keys, strict=True) if key not in stored]

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.join_background()
        with self._write_lock:
            if self._reader is not self._writer:
                with self._read_lock:
                    self._reader.close()
            self._writer.close()
