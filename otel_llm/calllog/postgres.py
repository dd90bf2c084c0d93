"""The shared call store: PostgreSQL, for several collector replicas writing at once.

Same schema and queries as SQLite (``schema.py``, ``sql.py``). Writes COPY a batch into a
temporary table, then ``INSERT ... SELECT ... ON CONFLICT (created_us, id) DO NOTHING
RETURNING id``: only the calls that are really new are added to the daily aggregates, so a
span delivered twice (or to two replicas) counts once. Aggregate rows are merged in Python
under ``SELECT ... FOR UPDATE``, locked in key order, so concurrent writers serialise per row
instead of losing each other's counts; a deadlock or serialisation failure retries the whole batch.

Reads take a connection of a pool (psycopg_pool, ``call_log_pg_pool_size``): concurrent API
requests each have their own, so a slow one does not hold the others up. A connection is
checked as it is taken, so one broken by a restart of the server is replaced, not handed out;
a server that is down fails a read after ``call_log_pg_pool_timeout`` with an error naming it.

Writes keep one connection of their own, behind a lock: a process's writes are serialised
anyway (its daily caps are its state), and a pool would make a write wait its timeout for a
server that is down, where a direct connection fails at once -- the writer's transient-failure
path then keeps the calls (``isolation.py``, the durable queue) and retries. A broken write
connection is replaced on the next write.

The calls table is partitioned by day (``partitions.py``): each write first makes sure the
partitions of its calls' days exist.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool, PoolTimeout

from otel_llm import settings
from otel_llm.calllog import partitions, rollup, schema, sql
from otel_llm.calllog.cardinality import DailyCaps
from otel_llm.calllog.catalogue import DAILY_VALUES, ROLLUPS
from otel_llm.calllog.dailyrows import Deadline, Rows
from otel_llm.calllog.query import StatsTimeout
from otel_llm.calllog.record import CallRecord
from otel_llm.calllog.sqlstore import SQLCallStore

_MIGRATION_LOCK = 0x6F746C6C  # pg_advisory_xact_lock key: replicas starting together migrate once
_INCOMING = "llm_calls_incoming"
_RETRIES = 5
_LOCK_CHUNK = 2000
_TRANSIENT_CLASSES = frozenset(
    {"08", "25", "28", "3D", "3F", "40", "42", "53", "55", "57", "58", "XX"}
)
"""SQLSTATE classes of the database's failures, not a record's: connection, transaction
state, authorization, a missing database or schema, rollback (deadlock), a missing table or a
revoked grant (42: every record would fail alike, and the dead letters keep only so many),
insufficient resources (disk full), object state (lock not available), operator intervention
(shutdown), system and internal errors. Others -- data exceptions (22: NUL in text, out of
range), integrity (23), program limits (54: an index row too big) -- are a record's: it is
quarantined (``isolation.py``)."""


def _pg(text: str) -> str:
    # The shared SQL uses ? placeholders and never a literal ? or %.
    return text.replace("?", "%s")


class PostgresCallStore(SQLCallStore):
    """Call store in a PostgreSQL database (which must exist; the tables are created)."""

    def __init__(
        self,
        url: str,
        *,
        record_days: int | None = None,
        clock: Callable[[], datetime] | None = None,
        pool_size: int | None = None,
        pool_timeout: float | None = None,
    ):
        super().__init__(record_days=record_days, clock=clock)
        self.url = url
        self.pool_size = settings.CALL_LOG_PG_POOL_SIZE.resolve(pool_size)
        self.pool_timeout = settings.CALL_LOG_PG_POOL_TIMEOUT.resolve(pool_timeout)
        self._write_lock = threading.Lock()
        self._writer: psycopg.Connection[Any] | None = None
        self._migrate()
        self._partitions = partitions.Partitions(self._clock, self.record_days)
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=self.pool_size,
            timeout=self.pool_timeout,
            check=ConnectionPool.check_connection,
            name="otel-llm-calllog",
            num_workers=2,
            open=True,
        )

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool; a PoolTimeout said as what it means, naming the server."""
        try:
            with self._pool.connection() as connection:
                yield connection
        except PoolTimeout as exc:
            raise psycopg.OperationalError(
                f"call log PostgreSQL {_where(self.url)}: no connection within "
                f"{self.pool_timeout:g} s (call_log_pg_pool_timeout): the server is unreachable "
                f"or all {self.pool_size} connections of the pool (call_log_pg_pool_size) are "
                f"busy ({exc})"
            ) from exc

    def _write_connection(self) -> psycopg.Connection[Any]:
        if self._writer is None or self._writer.closed or self._writer.broken:
            if self._writer is not None:
                self._writer.close()
            connection = psycopg.connect(self.url, autocommit=True)
            try:
                connection.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {_INCOMING} "
                    f"(LIKE {schema.CALLS} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
            except BaseException:
                # Kept, it would fail every later write for want of its temp table: the next
                # write connects again instead.
                connection.close()
                raise
            self._writer = connection
        return self._writer

    def _migrate(self) -> None:
        with (
            self._write_lock,
            psycopg.connect(self.url) as connection,
            connection.transaction(),
        ):
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            schema.upgrade(connection.execute, schema.POSTGRES_TYPES)

    def schema_version(self) -> int:
        return int(
            self._read(sql.Statement(f"SELECT version FROM {schema.VERSION_TABLE}", ()))[0][0]  # noqa: S608
        )

    def _read(self, statement: sql.Statement) -> list[tuple[Any, ...]]:
        with self._connection() as connection:
            return connection.execute(_pg(statement.text), statement.params).fetchall()

    @contextmanager
    def _bounded(self, deadline: Deadline) -> Iterator[psycopg.Connection[Any]]:
        """A pool connection in a transaction whose statements the server stops at
        ``deadline`` (statement_timeout, local to the transaction): ``StatsTimeout`` then."""
        with self._connection() as connection:
            try:
                with connection.transaction():
                    remaining = deadline.remaining()
                    if remaining is not None:
                        connection.execute(
                            "SELECT set_config('statement_timeout', %s, true)",
                            (str(max(1, int(remaining * 1000))),),
                        )
                    yield connection
            except errors.QueryCanceled as exc:
                raise StatsTimeout(deadline.seconds) from exc

    def _scan(
        self,
        statement: sql.Statement,
        deadline: Deadline,
        consume: Callable[[Rows], None],
    ) -> None:
        # A server-side cursor streams the rows in chunks, so memory stays that of one chunk.
        with (
            self._bounded(deadline) as connection,
            connection.cursor(name="otel_llm_stats") as cursor,
        ):
            cursor.itersize = 2000
            cursor.execute(_pg(statement.text), statement.params)
            consume(cursor)

    def _read_by(self, statement: sql.Statement, deadline: Deadline) -> list[tuple[Any, ...]]:
        # An answer's rows are a page: a plain cursor, planned as ``_read``'s (a server-side
        # cursor is planned for its first rows, and costs round trips: a look-up took 9x).
        with self._bounded(deadline) as connection:
            return connection.execute(_pg(statement.text), statement.params).fetchall()

    def _execute(self, statement: sql.Statement) -> int:
        with self._write_lock:
            cursor = self._write_connection().execute(_pg(statement.text), statement.params)
            return cursor.rowcount

    def _lookup(
        self,
        read: Callable[[sql.Statement], list[tuple[Any, ...]]],
        call_id: str,
        fields: Sequence[str],
        projects: frozenset[str] | None,
    ) -> tuple[Any, ...] | None:
        # A partition holds one day: its look-up index is the span key alone, probed once per
        # partition by one statement (not once per day by each partition).
        statement = sql.get_statement(call_id, fields, projects, None)
        if statement is None:
            return None
        rows = read(statement)
        return rows[0] if rows else None

    def _drop_days_before(self, cutoff_us: int) -> int:
        with self._write_lock:
            return self._partitions.drop_before(self._write_connection(), cutoff_us)

    def _transient(self, error: Exception) -> bool:
        if self._closed.is_set() or isinstance(error, psycopg.InterfaceError):
            return True
        if not isinstance(error, psycopg.Error):
            return False  # raised in Python, by a record's value
        if error.sqlstate is None:  # no answer from the server: the connection
            return isinstance(error, psycopg.OperationalError)
        return error.sqlstate[:2] in _TRANSIENT_CLASSES

    def _write(self, records: Sequence[CallRecord]) -> int:
        if not records:
            return 0
        unique = sorted({record.id: record for record in records}.values(), key=_id)
        for attempt in range(_RETRIES):
            try:
                with self._write_lock:
                    connection = self._write_connection()
                    self._partitions.ensure(connection, (record.created_at for record in unique))
                    try:
                        written = self._write_once(connection, unique, self.daily_caps)
                    except BaseException:
                        self.daily_caps.rolled_back()
                        raise
                    self.daily_caps.committed()
                    return written
            except (errors.DeadlockDetected, errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        return 0  # unreachable

    @staticmethod
    def _write_once(
        connection: psycopg.Connection[Any], records: list[CallRecord], caps: DailyCaps
    ) -> int:
        columns = ", ".join(sql.INSERT_COLUMNS)
        with connection.transaction(), connection.cursor() as cursor:
            with cursor.copy(f"COPY {_INCOMING} ({columns}) FROM STDIN") as copy:
                for record in records:
                    copy.write_row(sql.row_of(record))
            # Sorted: two writers inserting overlapping batches lock their rows in one order.
            cursor.execute(
                f"INSERT INTO {schema.CALLS} ({columns}) SELECT {columns} FROM {_INCOMING} "  # noqa: S608
                "ORDER BY created_us, id ON CONFLICT (created_us, id) DO NOTHING RETURNING id"
            )
            inserted = {row[0] for row in cursor.fetchall()}
            if not inserted:
                return 0
            new = [record for record in records if record.id in inserted]
            with_content = [sql.content_row_of(record) for record in new if record.has_content]
            if with_content:
                cursor.executemany(
                    f"INSERT INTO {schema.CONTENT} ({', '.join(sql.CONTENT_COLUMNS)}) "  # noqa: S608
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (created_us, id) DO NOTHING",
                    with_content,
                )
            added = caps.fold(
                rollup.rollup(sql.row_of(record) for record in new),
                lambda text, params: cursor.execute(_pg(text), params).fetchall(),
                advisory_locks=True,
            )
            for daily in ROLLUPS:
                _add_to_daily(cursor, daily.table, daily.key, added[daily.table])
        return len(new)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.join_background()
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
        self._pool.close()


def _where(url: str) -> str:
    """The server of a URL, without its password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparsable URL)"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def _id(record: CallRecord) -> str:
    return record.id


def _add_to_daily(
    cursor: psycopg.Cursor[Any],
    table: str,
    dimensions_key: tuple[str, ...],
    added: dict[rollup.DailyKey, rollup.Row],
) -> None:
    """Merge into one table's daily rows, locking each (in key order) from read to update."""
    if not added:
        return
    keys = sorted(added)
    dimensions = ", ".join(dimensions_key)
    marks = ", ".join(["%s"] * len(dimensions_key))
    key_match = " AND ".join(f"{name} = %s" for name in dimensions_key)
    cursor.executemany(
        f"INSERT INTO {table} ({dimensions}) VALUES ({marks}) ON CONFLICT DO NOTHING",  # noqa: S608
        keys,
    )
    # One statement per chunk reads (and locks, in key order) the rows the batch adds to; a
    # chunk's parameters stay far below the protocol's 65,535 (a row per user of a batch).
    width = len(dimensions_key)
    found: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for start in range(0, len(keys), _LOCK_CHUNK):
        chunk = keys[start : start + _LOCK_CHUNK]
        rows_marks = ", ".join([f"({marks})"] * len(chunk))
        cursor.execute(
            f"SELECT {dimensions}, {', '.join(DAILY_VALUES)} FROM {table} "  # noqa: S608
            f"WHERE ({dimensions}) IN (VALUES {rows_marks}) ORDER BY {dimensions} FOR UPDATE",
            [value for key in chunk for value in key],
        )
        found.update((tuple(row[:width]), row[width:]) for row in cursor.fetchall())
    updates = []
    for key in keys:
        stored = found.get(key)
        merged = rollup.Totals.from_row(stored) if stored is not None else rollup.Totals()
        merged.merge(added[key])
        updates.append((*merged.row_values(), *key))
    assignments = ", ".join(f"{name} = %s" for name in DAILY_VALUES)
    cursor.executemany(
        f"UPDATE {table} SET {assignments} WHERE {key_match}",  # noqa: S608
        updates,
    )
