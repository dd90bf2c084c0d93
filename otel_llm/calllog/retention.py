"""Retention: content kept N days, call records M days, daily aggregates forever.

``prune`` applies it once (the ``prune`` command); ``RetentionJob`` applies it periodically
in a background thread (the exporter and the collector start one). Deleting is idempotent, so
several replicas running the job against one PostgreSQL database is harmless.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

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


class RetentionJob:
    """Runs ``prune`` every ``interval`` seconds (first run right after start) until stopped.

    Never raises: a failed run is logged and retried at the next interval.
    """

    def __init__(
        self,
        store: CallStore,
        *,
        interval: float | None = None,
        content_days: int | None = None,
        record_days: int | None = None,
    ):
        self._store = store
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
        while not self._stop.is_set():
            try:
                self.last_result = prune(
                    self._store,
                    content_days=self._content_days,
                    record_days=self._record_days,
                )
                self.runs += 1
            except Exception:  # a retention failure must not stop the job
                _logger.exception("otel-llm: call log retention failed; retrying later")
            self._stop.wait(self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
