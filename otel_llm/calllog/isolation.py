"""Per-record isolation of a store's writes: one call that cannot be stored never costs the
others of its batch.

A batch is written in one transaction (``_write``, the backend's). When that fails for a reason
of the data -- not of the database (a lost connection, a lock, a full disk: ``_transient``,
raised so the writer retries the batch) -- the batch is split in halves, each written on its
own, down to the one call at fault, which is quarantined in the dead-letter table
(``deadletter.py``) with its error. k bad calls in a batch of n cost O(k log n) extra
transactions, not n. Each transaction either commits a half whole (calls and aggregates) or
nothing, so no call is counted twice; one already stored is skipped by id as ever.

A call whose start lies outside [2000-01-01, now + 1 day] is quarantined before the write,
not clamped: a clamped start would be a time the call did not happen, and clamping to "now"
would give a redelivered span another key (created_us, id), so it would be stored twice. A
span of year 2554 (start 2**64-1 ns) was kept for ever (retention goes by age), headed every
newest-first list and made unknown-id look-ups probe 193,000 days. Quarantined, it is shown by
``otel-llm calls dead-letters`` and stores on replay once its time is in range.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from otel_llm.calllog import deadletter
from otel_llm.calllog.catalogue import FUTURE_SLACK, TIME_FLOOR
from otel_llm.calllog.deadletter import DeadLetter
from otel_llm.calllog.limits import checked, time_problem
from otel_llm.calllog.record import CallRecord, micros_of
from otel_llm.calllog.sql import Statement

_logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What ``write_batch`` did with a batch."""

    stored: int
    """Calls newly stored (the rest were stored already, or quarantined)."""
    quarantined: tuple[str, ...] = ()
    """Dead-letter ids of the calls quarantined."""
    evicted: int = 0
    """Older dead letters deleted to keep the table's bound (lost)."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What ``replay_dead_letters`` did."""

    stored: int
    duplicates: int
    """Already stored (e.g. redelivered after the fix): removed from the dead letters too."""
    failed: int
    """Still not storable: kept, their attempts and error updated."""


class IsolatingStore(ABC):
    """Batch writes with per-record isolation, and the dead-letter table (a store's part)."""

    _clock: Callable[[], datetime]

    @abstractmethod
    def _write(self, records: Sequence[CallRecord]) -> int:
        """Store the records not stored yet (by id) and add them to the daily aggregates, in
        one transaction; the number newly stored."""

    @abstractmethod
    def _transient(self, error: Exception) -> bool:
        """Whether ``error`` is the database's (retry the batch), not a record's."""

    @abstractmethod
    def _execute(self, statement: Statement) -> int:
        """Run one statement in its own transaction; the number of rows it changed."""

    @abstractmethod
    def _read(self, statement: Statement) -> list[tuple[Any, ...]]: ...

    def write(self, records: Sequence[CallRecord]) -> int:
        """Store the records not stored yet; the number newly stored (``write_batch``)."""
        return self.write_batch(records).stored

    def write_batch(self, records: Sequence[CallRecord]) -> WriteResult:
        """Store the records not stored yet, each on its own if the batch fails; quarantine
        those that cannot be stored. Raises only when the database fails (retry later)."""
        if not records:
            return WriteResult(0)
        now = self._clock()
        low, high = TIME_FLOOR, now + FUTURE_SLACK
        good: list[CallRecord] = []
        late: list[CallRecord] = []
        for record in records:
            try:
                in_range = low <= record.created_at <= high
            except TypeError:  # not an aware datetime
                in_range = False
            (good if in_range else late).append(record)
        quarantined: list[str] = []
        for record in late:
            problem = time_problem(record.created_at, now)
            self._quarantine(record, f"created_at {problem}", now, quarantined)
        stored = self._isolated(good, now, quarantined)
        evicted = self._execute(deadletter.trim()) if quarantined else 0
        if evicted:
            _logger.warning(
                "otel-llm: call log dead letters full (%d); %d oldest dropped",
                deadletter.MAX_DEAD_LETTERS,
                evicted,
            )
        return WriteResult(stored, tuple(quarantined), evicted)

    def _isolated(self, records: list[CallRecord], now: datetime, quarantined: list[str]) -> int:
        if not records:
            return 0
        try:
            return self._write(records)
        except Exception as error:
            if self._transient(error):
                raise
            if len(records) == 1:
                self._quarantine(records[0], error, now, quarantined)
                return 0
        half = len(records) // 2
        return self._isolated(records[:half], now, quarantined) + self._isolated(
            records[half:], now, quarantined
        )

    def _quarantine(
        self,
        record: CallRecord,
        error: BaseException | str,
        now: datetime,
        quarantined: list[str],
    ) -> None:
        # If even this fails the database is at fault: raised, and the writer retries.
        self._execute(deadletter.upsert(record, error, micros_of(now)))
        quarantined.append(deadletter.key_of(record))
        _logger.warning(
            "otel-llm: call %s quarantined (see `otel-llm calls dead-letters`): %s",
            deadletter.key_of(record),
            deadletter.error_text(error),
        )

    # --- the dead letters ------------------------------------------------------------------

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest quarantined calls, at most ``limit``."""
        return [deadletter.letter_of(row) for row in self._read(deadletter.newest(limit))]

    def dead_letter_count(self) -> int:
        return int(self._read(deadletter.count())[0][0])

    def replay_dead_letters(self) -> ReplayResult:
        """Re-validate (``limits.checked``) and write every dead letter again; those stored (or
        found stored already) leave the table, the others stay with their new error."""
        stored = duplicates = failed = 0
        after = ""
        while rows := self._read(deadletter.page_after(after)):
            after = str(rows[-1][0])
            now = self._clock()
            records: dict[str, CallRecord] = {}
            for row in rows:
                letter = deadletter.letter_of(row)
                try:
                    records[letter.id] = checked(deadletter.decode(letter.record), now=now)
                # Anything may be wrong with stored JSON: kept, with why.
                except Exception as error:  # noqa: BLE001
                    self._execute(deadletter.failed_again(letter.id, f"cannot replay: {error}"))
                    failed += 1
            result = self.write_batch(list(records.values()))
            again = set(result.quarantined)
            done = [
                key for key, record in records.items() if deadletter.key_of(record) not in again
            ]
            if done:
                self._execute(deadletter.remove(done))
            stored += result.stored
            duplicates += len(done) - result.stored
            failed += len(again)
        return ReplayResult(stored, duplicates, failed)
