"""``CallLogService``: the call log as a running part of the collector service.

It owns what a call log needs at run time -- the store, the ``CallLogWriter`` in front of it,
the ``RetentionJob`` and, when API keys are configured, the query API -- and offers ``sink``,
the callable ``CollectorService(call_sink=...)`` hands the LLM calls of the accepted requests
to::

    with CallLogService(CallLogConfig.from_settings()) as call_log:
        with CollectorService(CollectorConfig.from_settings(), call_sink=call_log.sink):
            ...

The collector calls ``sink`` from its call feeder thread with the calls of batches it reads
back from its durable queue (``otel_llm.collector.feed``), and deletes a batch only once
``sink`` returned: so ``sink`` writes in that thread (the writer's ``write_now``) and returns
once the store committed, or raises and gets the same calls again later. Nothing is buffered in
memory, so a crash loses no acknowledged call (the writer's buffer, batch interval and
``max_pending`` serve the in-process exporter, not the collector). Stop the collector first,
then this service, so calls the collector accepted last are still written.
``CollectorCallLog`` does all that for ``otel-llm collector``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from otel_llm._cli_types import CommandError
from otel_llm.background import Background
from otel_llm.calllog import telemetry, tracespans
from otel_llm.calllog.config import CallLogConfig
from otel_llm.calllog.policyspend import StoreSpendHistory
from otel_llm.calllog.record import CallRecord, build_record
from otel_llm.calllog.retention import RetentionJob
from otel_llm.calllog.store import CallStore, SQLCallStore, open_store
from otel_llm.calllog.writer import CallLogWriter
from otel_llm.collector.otlp import id_to_int
from otel_llm.policies.model import SCOPE_FIELDS

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from otel_llm.calllog.api import CallLogAPI
    from otel_llm.collector.enrich import EnrichedCall, EnrichedSpan
    from otel_llm.policies import PolicyFile, SpendHistory
    from otel_llm.policies.model import ScopeKey

_logger = logging.getLogger(__name__)
_DAY_NS = 86_400 * 10**9


class CallLogStartError(Exception):
    """The call log cannot start: its store cannot be opened, or the API cannot be served as
    configured (unusable key file, address in use)."""


class CallLogService(Background):
    """The store, writer, retention job and (with API keys) query API, started and stopped
    together; a context manager.

    Args:
        config: the call log's settings (default: ``CallLogConfig.from_settings()``).
        store: a ready ``CallStore`` to use instead of ``config.store`` (not closed by
            ``stop``).
        policies: the collector's budgets and policies, whose states the API serves
            (``/api/v1/policies``).
        own_process: the call log runs in a process of its own (the collector's), whose
            store may hold Python's cycle collector off during a write (``open_store``'s
            ``hold_cycle_collector``); never in an application's process.
    """

    def __init__(
        self,
        config: CallLogConfig | None = None,
        *,
        store: CallStore | None = None,
        policies: PolicyFile | None = None,
        own_process: bool = False,
    ):
        self.config = config if config is not None else CallLogConfig.from_settings()
        self.policies = policies
        self._own_process = own_process
        if store is None and self.config.off:
            raise ValueError("the call log store is 'none': there is no call log to run")
        self._store = store
        self._owns_store = store is None
        self._writer: CallLogWriter | None = None
        self._retention: RetentionJob | None = None
        self._api: CallLogAPI | None = None
        self.api_off_reason: str | None = None
        """Why the query API is not served (None while it is, or before ``start``)."""
        self.skipped = 0
        """Calls the sink could not turn into a record (logged; the span was still forwarded)."""
        self.roots = tracespans.RootKeeper()
        """Root spans waiting for a call of their trace (``span_sink``)."""
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False

    # --- life cycle -----------------------------------------------------------------------------
    def start(self) -> CallLogService:
        """Open the store, start the writer and the retention job, serve the API if keys are
        configured. ``CallLogStartError`` (everything started so far stopped again) when the
        store cannot be opened or the API cannot be served as configured."""
        with self._lock:
            if self._started:
                return self
            self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        config = self.config
        if self._store is None:
            try:
                self._store = open_store(
                    config.store,
                    record_days=config.record_days,
                    max_daily_values=config.max_daily_values,
                    max_daily_users=config.max_daily_users,
                    hold_cycle_collector=self._own_process,
                )
            except Exception as exc:
                raise CallLogStartError(
                    f"cannot open the call log store {self.store_name}: {exc} "
                    "(fix it, or turn the call log off with --call-log-store none)"
                ) from exc
        self._writer = CallLogWriter(
            self._store,
            batch_size=config.batch_size,
            flush_interval=config.flush_interval,
            max_pending=config.max_pending,
        )
        self._retention = RetentionJob(
            self._store,
            interval=config.retention_interval,
            content_days=config.content_days,
            record_days=config.record_days,
        ).start()
        self._start_api(self._store)

    def _start_api(self, store: CallStore) -> None:
        config = self.config
        if not config.serve_api:
            self.api_off_reason = "not requested"
            return
        if config.api_endpoint is None:
            self.api_off_reason = "call_log_api_endpoint is 'none'"
            return
        # The API's modules (auth, rate limits, HTTP) load only when it is served.
        from otel_llm.calllog.api import CallLogAPI  # noqa: PLC0415
        from otel_llm.calllog.auth import KeyRing  # noqa: PLC0415

        try:
            keys = KeyRing.from_settings(config.api_keys_file, config.api_keys)
        except ValueError as exc:
            raise CallLogStartError(f"the call-log API keys are unusable: {exc}") from exc
        if not len(keys):
            self.api_off_reason = (
                "no API keys; to serve it, give --call-log-api-keys-file FILE (or set "
                "OTEL_LLM_CALL_LOG_API_KEYS_FILE / OTEL_LLM_CALL_LOG_API_KEYS; make a key with "
                "`otel-llm calls keygen`)"
            )
            return
        api = CallLogAPI.from_settings(
            store, endpoint=config.api_endpoint, keys=keys, policies=self.policies
        )
        try:
            api.start()
        except OSError as exc:
            raise CallLogStartError(
                f"cannot serve the call-log API on {config.api_endpoint}: {exc.strerror or exc}"
            ) from exc
        self._api = api

    def stop(self, timeout: float = 10.0) -> bool:
        """Write what is queued (within ``timeout`` seconds), stop the retention job and the
        API, close the store if this service opened it. True if every call was written.
        Idempotent."""
        with self._lock:
            if self._stopped:
                return True
            self._stopped = True
        written = True
        if self._writer is not None:
            # Before the API goes: a client reading right up to the end sees the last calls.
            written = self._writer.close(timeout)
        if self._retention is not None:
            self._retention.stop()
        if self._api is not None:
            self._api.stop()
            self._api = None
        if self._store is not None and self._owns_store:
            try:
                self._store.close()
            except Exception:  # closing must not hide how the rest of the stop went
                _logger.exception("otel-llm: closing the call log store failed")
        return written

    # --- the collector's call sink --------------------------------------------------------------
    def sink(self, calls: Sequence[EnrichedCall]) -> None:
        """Store the records of the collector's LLM calls; returns once the store committed
        them, raises when it could not (the collector keeps them and offers them again). A
        call whose record cannot be built is skipped, logged and counted (``skipped``)."""
        writer = self._writer
        if writer is None:
            raise RuntimeError("the call log is not started")
        records: list[CallRecord] = []
        for call in calls:
            try:
                record = self.record_of(call)
            except Exception:  # one odd span must not lose the others
                self.skipped += 1
                _logger.exception("otel-llm: could not build the call record of a span")
                continue
            if record is not None:
                records.append(record)
        if records:
            writer.write_now(records)

    def span_sink(self, spans: Sequence[EnrichedSpan], calls: Sequence[EnrichedCall]) -> None:
        """Keep the roots, agents and tools of the traces (``tracespans.py``): agents and
        tools now, a root once its trace has a call (``calls``: those just stored). Returns
        once stored, raises when the store failed (offered again)."""
        store = self._store
        if store is None or self._writer is None:
            raise RuntimeError("the call log is not started")
        kept: list[tracespans.TraceSpan] = []
        for found in spans:
            span = found.span
            try:
                record = tracespans.trace_span(
                    trace_id=id_to_int(span.trace_id),
                    span_id=id_to_int(span.span_id),
                    parent_span_id=id_to_int(span.parent_span_id),
                    name=span.name,
                    kind=found.kind,
                    service=found.service,
                    agent_name=found.agent_name,
                    start_time_ns=span.start_time_unix_nano,
                    end_time_ns=span.end_time_unix_nano or None,
                )
            except Exception:  # one odd span must not lose the others
                _logger.exception("otel-llm: could not keep a span of a trace's tree")
                continue
            if record is not None:
                kept.append(record)
        stored = sorted(
            {
                (call.span.trace_id.hex(), call.span.start_time_unix_nano // _DAY_NS)
                for call in calls
                if call.span.trace_id
            }
        )
        if isinstance(store, SQLCallStore):
            store.keep_trace_spans(self.roots, kept, stored)

    def record_of(self, call: EnrichedCall) -> CallRecord | None:
        """The record of one enriched call; None for a span without ids (its id would
        collide with every other such span)."""
        span = call.span
        trace_id, span_id = id_to_int(span.trace_id), id_to_int(span.span_id)
        if not trace_id or not span_id:
            self.skipped += 1
            return None
        return build_record(
            call.derived,
            call.attributes,
            trace_id=trace_id,
            span_id=span_id,
            start_time_ns=span.start_time_unix_nano,
            end_time_ns=span.end_time_unix_nano or None,
            status_message=span.status.message or None,
            content_max_length=self.config.content_max_length,
            parent_span_id=id_to_int(span.parent_span_id),
            policy=call.policy,
        )

    # --- what is running ------------------------------------------------------------------------
    @property
    def store(self) -> CallStore:
        """The store (opened by ``start`` when given as a path or URL)."""
        if self._store is None:
            raise RuntimeError("the call log is not started")
        return self._store

    @property
    def store_name(self) -> str:
        """The store's path or URL for logs, without a password."""
        if self._owns_store:
            return _without_password(self.config.store)
        return type(self._store).__name__

    @property
    def writer(self) -> CallLogWriter | None:
        """The writer (its counters: written, duplicates, dropped); None until started."""
        return self._writer

    @property
    def api_port(self) -> int | None:
        """The query API's bound port; None when it is not served."""
        return self._api.port if self._api is not None else None

    @property
    def api_url(self) -> str | None:
        """``http://host:port/api/v1/calls``; None when the API is not served."""
        return self._api.url if self._api is not None else None


class CollectorCallLog:
    """The call log as ``otel-llm collector`` runs it (``otel_llm.collector.cli.Running``): a
    ``CallLogService`` -- or nothing, when the store is ``none`` -- whose writer's counters go
    on the service's ``/metrics``, and one log line that says where it is."""

    def __init__(self, config: CallLogConfig):
        self.service = None if config.off else CallLogService(config, own_process=True)

    @property
    def sink(self) -> Callable[[Sequence[EnrichedCall]], None] | None:
        return self.service.sink if self.service is not None else None

    @property
    def span_sink(
        self,
    ) -> Callable[[Sequence[EnrichedSpan], Sequence[EnrichedCall]], None] | None:
        return self.service.span_sink if self.service is not None else None

    def start(self, registry: CollectorRegistry) -> None:
        """Start before the collector: its sink must be ready for the first request."""
        if self.service is None:
            return
        try:
            self.service.start()
        except CallLogStartError as exc:
            raise CommandError(str(exc)) from exc
        if self.service.writer is not None:  # its losses belong on the service's /metrics
            store = self.service.store
            caps = store.daily_caps if isinstance(store, SQLCallStore) else None
            telemetry.register(self.service.writer, registry, caps)

    def stop(self) -> None:
        """Stop after the collector: the writer flushes the last accepted calls before its API
        goes. Idempotent."""
        if self.service is not None and not self.service.stop():
            _logger.warning("otel-llm collector: some calls were not written to the call log")

    def attach_policies(self, policies: PolicyFile) -> SpendHistory | None:
        """Before ``start``: the API serves the policies' states; returns where their spend
        is read back (the store, once opened), or None without a call log."""
        if self.service is None:
            return None
        self.service.policies = policies
        return _StartedStoreHistory(self.service)

    def describe(self) -> str:
        """Where the call log is, and where its query API is served or why it is not."""
        service = self.service
        if service is None:
            return "call log off (--call-log-store none)"
        if service.api_url is not None:
            page = service.api_url.removesuffix("/api/v1/calls") + "/"
            api = service.api_url  # followed by a space: tests and scripts read it up to there
            return f"call log in {service.store_name}; query API on {api} and its page on {page}"
        return f"call log in {service.store_name}; query API not served: {service.api_off_reason}"


class _StartedStoreHistory:
    """The store's spend history, found when asked (the store opens with the service)."""

    def __init__(self, service: CallLogService):
        self._service = service

    def spend(
        self, start_ns: int, end_ns: int, per_minute: bool, fields: Sequence[str] = SCOPE_FIELDS
    ) -> Iterator[tuple[ScopeKey, int | None, int, int, int, int]]:
        store = self._service.store
        if not isinstance(store, SQLCallStore):
            return iter(())
        return StoreSpendHistory(store).spend(start_ns, end_ns, per_minute, fields)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
