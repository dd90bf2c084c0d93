"""Retention: content kept N days, call records M days, daily aggregates forever.

``prune`` applies it once (the ``prune`` command); ``RetentionJob`` applies it periodically
in a background thread (the exporter and the collector start one). Deleting is idempotent, so
several replicas running the job against one PostgreSQL database is harmless.

The job also wakes as each UTC day turns, to have the store rank the day that closed
(``SQLCallStore.rank_closed_day``): a store that writes through midnight asks at its first write
of the day, but an idle one (a quiet night) would leave the day's first rankings to the daily
rows -- on the 1,000,000-call store, by API key over 30 days 542 ms against 389 with the
day ranked, by user 582 against 346 (``benchmarks/calllog_day_turn.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from otel_llm import settings
from otel_llm.calllog.store import CallStore, RetentionResult

_logger = logging.getLogger(__name__)


def prune(
    store: CallStore,
    *,
    now: datetime | None = None,
    content_days: int | None = None,
    record_days: int | None = None,
) -> RetentionResult:
    """Apply retention once; days default to the ``call_log_content_days`` and
    ``call_log_record_days`` settings, ``now`` to the current time."""
    return store.apply_retention(
        now or datetime.now(UTC),
        content_days=settings.CALL_LOG_CONTENT_DAYS.resolve(content_days),
        record_days=settings.CALL_LOG_RECORD_DAYS.resolve(record_days),
    )


DAY_TURN_DELAY = 5.0
"""Seconds after midnight UTC the job has the closed day ranked: calls of the day still in
flight at midnight are stored by then (a later one has the day ranked again, once a ranking
finds its total changed: ``dailyranks.py``)."""


class RetentionJob:
    """Runs ``prune`` every ``interval`` seconds (first run right after start) until stopped,
    and has the store rank the day that closed as each UTC day turns.

    Never raises: a failed run is logged and retried at the next interval (the day turn's ask,
    at the store's first write of the day).
    """

    def __init__(
        self,
        store: CallStore,
        *,
        interval: float | None = None,
        content_days: int | None = None,
        record_days: int | None = None,
        clock: Callable[[], datetime] | None = None,
    ):
        """``clock``: the time the job reads (its tests'); the store's own clock must agree."""
        self._store = store
        self._clock = clock or (lambda: datetime.now(UTC))
        self.interval = settings.CALL_LOG_RETENTION_INTERVAL.resolve(interval)
        self._content_days = settings.CALL_LOG_CONTENT_DAYS.resolve(content_days)
        self._record_days = settings.CALL_LOG_RECORD_DAYS.resolve(record_days)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.last_result: RetentionResult | None = None

    def start(self) -> RetentionJob:
        """Start the thread (not when the interval is 0)."""
        if self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="otel-llm-calllog-retention", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        next_prune = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() >= next_prune:
                self._prune()
                next_prune = time.monotonic() + self.interval
            try:
                self._store.rank_closed_day()  # asks only once the day turned
            except Exception:  # the store's first write of the day asks again
                _logger.exception("otel-llm: call log: asking for the day's ranks failed")
            now = self._clock().astimezone(UTC)
            # Waits on the monotonic clock, so the day's turn is looked up again on each wake:
            # a wall clock set back or forward is followed at the next one.
            turn = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
            until_turn = (turn - now).total_seconds() + DAY_TURN_DELAY
            self._stop.wait(max(0.0, min(next_prune - time.monotonic(), until_turn)))

    def _prune(self) -> None:
        try:
            self.last_result = prune(
                self._store,
                now=self._clock(),
                content_days=self._content_days,
                record_days=self._record_days,
            )
            self.runs += 1
        except Exception:  # a retention failure must not stop the job
            _logger.exception("otel-llm: call log retention failed; retrying later")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
