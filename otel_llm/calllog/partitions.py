"""Daily partitions of PostgreSQL's calls table: made ahead and on demand, dropped by retention.

The table is partitioned by range of ``created_us``, one partition per UTC day, named
``llm_calls_YYYYMMDD`` (schema v8), plus a default partition that takes any call no day
partition holds -- so nothing is ever refused for want of one. The writer makes, before each
batch, today's and the next ``AHEAD_DAYS`` days' partitions and those of the batch's days
within retention; a call from further back or ahead (a wrong clock, a hostile timestamp) goes
to the default partition: the number of partitions stays bounded by retention, whatever the
timestamps sent.

A partition is made as a table of its own and then attached (ATTACH takes a lighter lock on
the parent than CREATE ... PARTITION OF); calls of its day already in the default partition
move into it first, in the same transaction; it has the parent's CHECK constraints (ATTACH
requires them). Replicas serialise on an advisory lock. A partition that cannot be made -- a
lock not granted within ``LOCK_TIMEOUT`` (a long read holding the default partition), a
missing grant -- leaves the day's calls in the default partition and is tried again a minute
later; only a broken connection fails the write (to be retried).

Retention drops the partitions wholly before the cutoff; the rows of the cutoff's own day,
and old rows in the default partition, are deleted row by row (``sqlstore.py``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from otel_llm.calllog.schema import CALLS

AHEAD_DAYS = 2
"""Days after today whose partitions exist before their first call."""
DEFAULT = f"{CALLS}_default"
LOCK_TIMEOUT = "2s"
_RETRY_AFTER = 60.0
_LOCK = 0x6F746C70  # pg_advisory_xact_lock key of partition changes
_DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1)
_NAME = re.compile(rf"{CALLS}_(\d{{8}})")

_logger = logging.getLogger(__name__)


def name_of(day: int) -> str:
    """The partition of a day (days since the epoch)."""
    return f"{CALLS}_{_EPOCH + timedelta(days=day):%Y%m%d}"


def day_of(moment: datetime) -> int:
    return (moment.astimezone(UTC).date() - _EPOCH).days


def existing(connection: psycopg.Connection[Any]) -> dict[int, str]:
    """The day partitions of the calls table: day -> name."""
    rows = connection.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass",
        (CALLS,),
    ).fetchall()
    days = {}
    for (name,) in rows:
        match = _NAME.fullmatch(name)
        if match:
            digits = match.group(1)
            day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
            days[(day - _EPOCH).days] = name
    return days


class Partitions:
    """The partitions one writer knows exist, and making the missing ones."""

    def __init__(self, clock: Callable[[], datetime], record_days: int):
        self._clock = clock
        self._record_days = record_days
        self._known: set[int] | None = None
        self._failed: dict[int, float] = {}

    def ensure(self, connection: psycopg.Connection[Any], times: Iterable[datetime]) -> None:
        """Make the partitions of today, the days ahead and ``times``' days within retention."""
        today = day_of(self._clock())
        first, last = today - self._record_days, today + AHEAD_DAYS
        wanted = set(range(today, last + 1))
        wanted.update(day for day in map(day_of, times) if first <= day <= last)
        if self._known is None:
            self._known = set(existing(connection))
        now = time.monotonic()
        for day in sorted(wanted - self._known):
            if self._failed.get(day, 0.0) > now:
                continue
            try:
                self._create(connection, day)
            except psycopg.Error as exc:  # a lock not granted, a grant missing, ...
                if _of_the_connection(connection, exc):
                    raise  # the write fails and is retried
                self._failed[day] = now + _RETRY_AFTER
                _logger.warning(
                    "otel-llm: partition %s of the call log not made yet (%s); its calls go "
                    "to %s meanwhile",
                    name_of(day),
                    exc,
                    DEFAULT,
                )
                continue
            self._known.add(day)
            self._failed.pop(day, None)

    @staticmethod
    def _create(connection: psycopg.Connection[Any], day: int) -> None:
        name, low, high = name_of(day), day * _DAY_US, (day + 1) * _DAY_US
        with connection.transaction():
            connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            if connection.execute("SELECT to_regclass(%s)", (name,)).fetchone() != (None,):
                return  # another replica made it
            bounds = f"created_us >= {low} AND created_us < {high}"
            connection.execute(
                f"CREATE TABLE {name} (LIKE {CALLS} INCLUDING DEFAULTS INCLUDING CONSTRAINTS, "
                f"CHECK ({bounds}))"
            )
            # The CHECK spares ATTACH its scan of the new table; the move empties the default
            # partition of the day, which ATTACH still verifies by scanning the whole default
            # partition under its lock (0.75-0.9 s with 2 M calls there, measured; 0.04 s
            # empty): kept small, as the writer quarantines calls more than a day ahead and
            # retention deletes the old ones.
            connection.execute(
                f"WITH moved AS (DELETE FROM {DEFAULT} WHERE {bounds} RETURNING *) "  # noqa: S608
                f"INSERT INTO {name} SELECT * FROM moved"
            )
            connection.execute(
                f"ALTER TABLE {CALLS} ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})"
            )

    def drop_before(self, connection: psycopg.Connection[Any], cutoff_us: int) -> int:
        """Drop the day partitions wholly before ``cutoff_us``; the calls they held."""
        dropped = 0
        for day, name in sorted(existing(connection).items()):
            if (day + 1) * _DAY_US > cutoff_us:
                break
            try:
                with connection.transaction():
                    connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                    connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
                    if connection.execute("SELECT to_regclass(%s)", (name,)).fetchone() == (None,):
                        continue  # another replica dropped it
                    count = connection.execute(f"SELECT count(*) FROM {name}").fetchone()  # noqa: S608
                    connection.execute(f"DROP TABLE {name}")
            except psycopg.Error as exc:
                # DROP needs the parent's ACCESS EXCLUSIVE lock, which any open read of the
                # calls holds off: after LOCK_TIMEOUT the rest of retention goes on (the
                # row-by-row delete removes these days' calls exactly) and the next run drops.
                if _of_the_connection(connection, exc):
                    raise
                _logger.warning(
                    "otel-llm: partition %s of the call log not dropped yet (%s); its calls "
                    "are deleted row by row this time",
                    name,
                    exc,
                )
                break
            dropped += int(count[0]) if count else 0
            if self._known is not None:
                self._known.discard(day)
        return dropped


def _of_the_connection(connection: psycopg.Connection[Any], exc: psycopg.Error) -> bool:
    """Whether ``exc`` is the connection's failure (the caller's operation fails and is
    retried), not a refusal of this statement (a lock not granted, a grant missing)."""
    return connection.broken or exc.sqlstate is None or exc.sqlstate.startswith("08")
