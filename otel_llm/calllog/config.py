"""``CallLogConfig``: where the collector's call log is stored, how it is written and kept, and
where its query API is served -- and ``COLLECTOR_COMPANION``, which hands the call log to
``otel-llm collector`` (the collector sits below the call log and does not import it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from otel_llm import settings
from otel_llm._setting import Configured, bound, is_off

if TYPE_CHECKING:
    from otel_llm.calllog.service import CollectorCallLog


@dataclass(frozen=True)
class CallLogConfig(Configured):
    """The call log's configuration; build it with ``from_settings(**overrides)``.

    ``store``: SQLite path, ``sqlite:///path`` or ``postgresql://...`` URL; ``none``: no call
    log (``off``). ``api_endpoint`` None: the query API is not served; neither is it without
    keys (``api_keys_file``, ``api_keys``) or with ``serve_api`` False.
    """

    store: str = bound(settings.CALL_LOG_STORE, "--call-log-store", "PATH_OR_URL|none")
    api_endpoint: str | None = bound(
        settings.CALL_LOG_API_ENDPOINT, "--call-log-api-endpoint", "HOST:PORT|none"
    )
    api_keys_file: str | None = bound(
        settings.CALL_LOG_API_KEYS_FILE, "--call-log-api-keys-file", "FILE"
    )
    api_keys: str | None = bound(settings.CALL_LOG_API_KEYS, "--call-log-api-keys", "NAME=KEY,...")
    # Without a flag: read from the environment and the config file only.
    batch_size: int = bound(settings.CALL_LOG_BATCH_SIZE)
    flush_interval: float = bound(settings.CALL_LOG_FLUSH_INTERVAL)
    max_pending: int = bound(settings.CALL_LOG_MAX_PENDING)
    content_days: int = bound(settings.CALL_LOG_CONTENT_DAYS)
    record_days: int = bound(settings.CALL_LOG_RECORD_DAYS)
    max_daily_values: int = bound(settings.CALL_LOG_MAX_DAILY_VALUES)
    max_daily_users: int = bound(settings.CALL_LOG_MAX_DAILY_USERS)
    retention_interval: float = bound(settings.CALL_LOG_RETENTION_INTERVAL)
    content_max_length: int = bound(settings.CONTENT_MAX_LENGTH)
    serve_api: bool = True
    """False: never serve the API (a store-only call log)."""

    @property
    def off(self) -> bool:
        """True when the store is ``none``: there is no call log."""
        return is_off(self.store)


class _CollectorCompanion:
    """What ``otel-llm collector`` needs of the call log (``otel_llm.collector.cli.Companion``):
    its config, and the running call log that config describes."""

    config_type = CallLogConfig

    def open(self, config: CallLogConfig) -> CollectorCallLog:
        # The store, writer and record building load only when the collector runs, so that
        # `otel-llm --version` does not pay for them.
        from otel_llm.calllog.service import CollectorCallLog  # noqa: PLC0415

        return CollectorCallLog(config)


COLLECTOR_COMPANION = _CollectorCompanion()
"""Given to ``otel_llm.collector.cli.add_parser`` by the CLI's composition root."""
