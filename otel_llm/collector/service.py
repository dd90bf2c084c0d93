"""``CollectorService``: OTLP in, GenAI spans priced and measured, OTLP out.

Data flow of one export request::

    receive (gRPC / HTTP) -> enrich (price, in place) -> queue.put (durable) -> record metrics
        -> reply OK
    ... Forwarder thread(s): queue -> upstream
    ... CallFeeder thread:   queue -> LLM calls of the batch -> call sink (the call log)

A request is acknowledged only once it is on disk, so an upstream outage, a call log outage or
a restart loses no acknowledged span; when the queue is full the client is told to retry, and
nothing is counted (metrics) until a request is accepted, so a retried request is counted once.
A request accepted and sent again all the same (its reply was lost, the client timed out) is
queued and forwarded again, but its priced spans seen among the last ``dedup_window`` are not
counted in the GenAI metrics again (``otel_llm_collector_duplicate_spans_total``).
The batch file is the durable record for both consumers: it is deleted once the upstream has
it and the call sink has stored its calls (``feed.py``), so after a SIGKILL at any instant the
restarted service forwards and logs exactly what was acknowledged (at least once; the call log
ignores a call id it already has). Without an upstream the queue feeds the call sink alone;
without either there is no queue: spans are priced and measured, then dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from otel_llm import settings
from otel_llm.background import Background
from otel_llm.collector.codec import DecodingBudget, Refused, Transport
from otel_llm.collector.config import CollectorConfig
from otel_llm.collector.enrich import ERROR_STAGE, Enricher, detach
from otel_llm.collector.feed import CALLS, CallFeeder, CallSink, SpanSink
from otel_llm.collector.grpc_receiver import GrpcReceiver
from otel_llm.collector.http_receiver import HttpReceiver
from otel_llm.collector.metrics_server import MetricsServer
from otel_llm.collector.queue import UPSTREAM, DiskQueue, QueueClosed, QueueFull
from otel_llm.collector.telemetry import CollectorMetrics
from otel_llm.metrics.labels import extra_metric_labels
from otel_llm.metrics.prometheus import PrometheusRecorder
from otel_llm.pricer import Pricer, PricingOptions
from otel_llm.pricing import Discount, PriceBook, PriceOverride

if TYPE_CHECKING:
    from otel_llm.collector.forward import Forwarder
    from otel_llm.collector.policies import CollectorPolicies
    from otel_llm.collector.upstream import SendResult, Upstream
    from otel_llm.policies import SpendHistory

_logger = logging.getLogger(__name__)

CALL_SINK_STAGE = "call_sink"
"""The ``stage`` label of ``otel_llm_processor_errors_total`` for failures of the call sink."""

QUEUE_KEEP_BYTES = 32 << 20
"""Payload bytes the queue keeps in memory for its consumers (``DiskQueue``'s ``keep_bytes``):
a few seconds of traffic, so batches forwarded as they come are never read back from disk,
while a backlog (an upstream down) does not make the memory grow with the queue."""

QUEUE_MEMO_BYTES = 128 << 20
"""What the memos of queued batches (their calls and tree spans, for the call feeder) may keep in
memory, as ``enrich.detach`` weighs them: ~100 batches of 512 GenAI spans, ~350 of 512 spans
of which 10 % GenAI (the benchmarks' loads) -- the feeder's backlog when the call log is slower
than the traffic, which it would otherwise parse and enrich again. Before the weights were
honest (found in review), 32 MiB of them weighed by payload held about as much for those loads,
and ~1 GB for hostile ones."""

POLICY_RECOVERY_WAIT = 30.0
"""Seconds start-up waits for the last run's unstored calls before reading budgets back."""

__all__ = ["CALL_SINK_STAGE", "CallSink", "CollectorService", "StartError"]


class StartError(Exception):
    """The service cannot start (an address in use, an unusable queue directory)."""


class CollectorService(Background):
    """The ``otel-llm collector`` service; importable, a context manager.

    Args:
        config: what it listens on, forwards to and queues in (default:
            ``CollectorConfig.from_settings()``, i.e. the ``OTEL_LLM_COLLECTOR_*`` settings).
            The bound ports are the ``grpc_port``, ``http_port`` and ``metrics_port``
            properties.
        registry: where the service's metrics (GenAI and its own) go; default: a new registry
            with the process collectors, served on the metrics endpoint.
        call_sink: stores the LLM calls of the accepted requests (the call log plugs in
            here): called from the service's call feeder thread with the calls of one or more
            queued batches, read back from the queue, and expected to return once they are
            stored (``feed.CallSink``). A failure is logged and counted
            (``otel_llm_processor_errors_total{stage="call_sink"}``) and the same calls are
            offered again after a backoff: they stay on the queue until stored. With a sink
            the service keeps a queue even without an upstream.
        policies: the budgets and policies every accepted call is evaluated against (default:
            those of ``config.policies_file``, if set; ``PolicyFileError`` when that file is
            invalid). Their states go on the metrics endpoint.
        policy_history: where the budgets' spend is read back at start-up (the call log's
            store), once the call sink has stored what the queue held from the last run.
        span_sink: with a call sink, keeps the other spans of the traces' cost trees (roots,
            agents, tools) of the accepted requests (``feed.SpanSink``), with the same
            guarantees.

    The pricing options left as None take their ``OTEL_LLM_*`` setting.
    """

    def __init__(
        self,
        config: CollectorConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        call_sink: CallSink | None = None,
        span_sink: SpanSink | None = None,
        price_book: PriceBook | None = None,
        price_overrides: str | Path | Sequence[PriceOverride | Discount] | None = None,
        extra_labels: Mapping[str, str] | Sequence[str] | None = None,
        max_label_values: int | None = None,
        max_tokens: int | None = None,
        price_cache_size: int | None = None,
        agent_label: bool | None = None,
        policies: CollectorPolicies | None = None,
        policy_history: SpendHistory | None = None,
    ):
        self.config = config if config is not None else CollectorConfig.from_settings()
        self._call_sink = call_sink
        self._span_sink = span_sink if call_sink is not None else None
        if policies is None and self.config.policies_file is not None:
            # Only with a policy file: the policies' modules load otherwise not at all.
            from otel_llm.collector.policies import CollectorPolicies  # noqa: PLC0415

            policies = CollectorPolicies.open(self.config.policies_file)
        self.policies = policies
        """The budgets and policies evaluated (None: none)."""
        if policies is not None and policy_history is not None:
            # Replicas on one store: each resyncs its budgets from it (``policies.py``).
            policies.follow(policy_history, self.config.policy_sync_interval)

        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.registry = registry
        self.metrics = CollectorMetrics(registry)
        recorder = PrometheusRecorder.for_registry(
            registry,
            extra_labels=extra_metric_labels(extra_labels, agent_label),
            max_label_values=settings.MAX_LABEL_VALUES.resolve(max_label_values),
        )
        # At 0 from start-up, like the service's own series: an alert's increase() then sees
        # the first failure too.
        for stage in (ERROR_STAGE, CALL_SINK_STAGE):
            recorder.record_error(stage, 0)
        pricing = PricingOptions.from_settings(
            price_book=price_book,
            price_overrides=price_overrides,
            price_cache_size=price_cache_size,
            max_tokens=max_tokens,
            extra_attributes=recorder.extra_labels.values(),
        )
        self.enricher = Enricher(
            Pricer(pricing),
            recorder,
            dedup_window=self.config.dedup_window,
            tree_spans=self._span_sink is not None,
        )
        if policies is not None:
            policies.register(registry)

        self._state = "new"  # new -> running -> stopping -> stopped
        self._lock = threading.Lock()
        self._queue: DiskQueue | None = None
        self._forwarder: Forwarder | None = None
        self._feeder: CallFeeder | None = None
        self._upstream: _WatchedUpstream | None = None
        self._grpc: GrpcReceiver | None = None
        self._http: HttpReceiver | None = None
        self._metrics_server: MetricsServer | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> CollectorService:
        """Open the queue, start forwarding, then listen. Raises ``StartError`` (with what was
        started stopped again) when an address is taken or the queue cannot be opened."""
        with self._lock:
            if self._state != "new":
                raise StartError(f"a service can be started once (it is {self._state})")
            self._state = "starting"
        try:
            self._start()
        except Exception as exc:
            self._shutdown(timeout=1.0)
            self._state = "stopped"
            if isinstance(exc, StartError):
                raise
            raise StartError(str(exc)) from exc
        self._state = "running"
        return self

    def _start(self) -> None:
        config = self.config
        # The queue's consumers: each batch is kept until all of them have it.
        consumers: tuple[str, ...] = (UPSTREAM,) if config.upstream_endpoint is not None else ()
        consumers += (CALLS,) if self._call_sink is not None else ()
        if consumers:
            self._queue = self._open_queue(consumers)
        if self._queue is not None and config.upstream_endpoint is not None:
            # Only with an upstream: the forwarding side is not loaded otherwise.
            from otel_llm.collector.forward import Forwarder  # noqa: PLC0415
            from otel_llm.collector.upstream import make_upstream  # noqa: PLC0415

            upstream = make_upstream(
                config.upstream_endpoint,
                config.upstream_protocol,
                insecure=config.upstream_insecure,
                ca_file=config.upstream_ca_file,
                client_cert=config.upstream_client_cert,
                client_key=config.upstream_client_key,
                headers=config.upstream_headers,
                compression=config.upstream_compression,
                timeout=config.upstream_timeout,
            )
            self._upstream = _WatchedUpstream(upstream, config.upstream_timeout)
            self._forwarder = Forwarder(
                self._queue,
                self._upstream,
                self.metrics,
                workers=config.forward_workers,
                initial_backoff=config.retry_initial_backoff,
                max_backoff=max(config.retry_max_backoff, config.retry_initial_backoff),
            )
            self._forwarder.start()
        if self._queue is not None and self._call_sink is not None:
            self._feeder = CallFeeder(
                self._queue,
                self.enricher,
                (
                    self._call_sink
                    if self.policies is None
                    else self.policies.storing(self._call_sink)
                ),
                self.metrics,
                on_failure=lambda: self.enricher.recorder.record_error(CALL_SINK_STAGE),
                span_sink=self._span_sink,
                settle=self.policies.settle if self.policies is not None else None,
                initial_backoff=config.retry_initial_backoff,
                max_backoff=max(config.retry_max_backoff, config.retry_initial_backoff),
            )
            self._feeder.start()
        if self.policies is not None:
            self._start_policies()
        if config.metrics_endpoint is not None:
            metrics_server = MetricsServer(config.metrics_endpoint, self.registry, self.health)
            try:
                self._metrics_server = metrics_server.start()
            except OSError as exc:
                message = f"cannot listen on {config.metrics_endpoint} (metrics): {exc}"
                raise StartError(message) from exc
        # One budget for both receivers: what they decode at once is bounded together.
        decoding = DecodingBudget.for_requests(config.max_request_bytes)
        if config.grpc_endpoint is not None:
            self._grpc = GrpcReceiver(
                self._accept,
                self.metrics,
                endpoint=config.grpc_endpoint,
                max_request_bytes=config.max_request_bytes,
                workers=config.grpc_workers,
                decoding=decoding,
            )
            self._grpc.start()
        if config.http_endpoint is not None:
            self._http = HttpReceiver(
                self._accept,
                self.metrics,
                endpoint=config.http_endpoint,
                max_request_bytes=config.max_request_bytes,
                decoding=decoding,
            )
            try:
                self._http.start()
            except OSError as exc:
                self._http = None
                raise StartError(f"cannot listen on {config.http_endpoint} (HTTP): {exc}") from exc

    def _start_policies(self) -> None:
        assert self.policies is not None
        if self.policies.history is not None and self._feeder is not None:
            # What the last run accepted but had not stored yet is stored first, so the spend
            # read back includes it (the store keeps one copy of a call offered twice).
            queue = self._queue
            deadline = time.monotonic() + POLICY_RECOVERY_WAIT
            while queue is not None and queue.waiting(CALLS) and time.monotonic() < deadline:
                time.sleep(0.05)
            if queue is not None and queue.waiting(CALLS):
                _logger.warning(
                    "otel-llm collector: %d batch(es) of the last run are not stored yet; the "
                    "budgets read back do not include them",
                    queue.waiting(CALLS),
                )
        try:
            self.policies.start()
        except Exception as exc:
            raise StartError(
                f"cannot read the budgets' spend back from the call log: {exc}"
            ) from exc

    def _open_queue(self, consumers: tuple[str, ...]) -> DiskQueue:
        config = self.config
        if config.queue_max_bytes < config.max_request_bytes:
            _logger.warning(
                "otel-llm collector: the queue (%d bytes) is smaller than the largest request "
                "accepted (%d bytes): such a request would be refused forever",
                config.queue_max_bytes,
                config.max_request_bytes,
            )
        try:
            queue = DiskQueue(
                Path(config.queue_dir),
                max_bytes=config.queue_max_bytes,
                consumers=consumers,
                memo_consumer=CALLS if CALLS in consumers else None,
                memo_max_bytes=QUEUE_MEMO_BYTES,
                keep_bytes=QUEUE_KEEP_BYTES,
            )
        except OSError as exc:
            raise StartError(f"cannot open the queue in {config.queue_dir}: {exc}") from exc
        self.metrics.watch_queue(queue)
        return queue

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully: refuse new requests (``shutting_down``), finish those being handled,
        stop forwarding. What is still queued stays on disk for the next start. Idempotent."""
        with self._lock:
            if self._state in ("stopping", "stopped", "new"):
                self._state = "stopped" if self._state == "new" else self._state
                return
            self._state = "stopping"
        self._shutdown(timeout)
        self._state = "stopped"

    def _shutdown(self, timeout: float) -> None:
        # Receivers first (their in-flight requests still reach the queue), then the queue's
        # consumers -- the call feeder hands over what was accepted while the store is still
        # open -- then the queue; the metrics endpoint last, so a scrape sees the end.
        if self._grpc is not None:
            self._grpc.stop(grace=timeout / 2)
            self._grpc = None
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self._forwarder is not None:
            self._forwarder.stop(timeout / 2)
            self._forwarder = None
        if self._feeder is not None:
            self._feeder.stop(timeout / 2)
            self._feeder = None
        if self._queue is not None:
            self._queue.close()
        if self.policies is not None:
            self.policies.stop()
        if self._metrics_server is not None:
            self._metrics_server.stop()
            self._metrics_server = None

    # --- what it is listening on ----------------------------------------------------------------
    @property
    def grpc_port(self) -> int | None:
        return self._grpc.port if self._grpc is not None else None

    @property
    def http_port(self) -> int | None:
        return self._http.port if self._http is not None else None

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_server.port if self._metrics_server is not None else None

    @property
    def state(self) -> str:
        """``new``, ``starting``, ``running``, ``stopping`` or ``stopped``."""
        return self._state

    @property
    def queue(self) -> DiskQueue | None:
        """The queue to the upstream and the call sink (None without either)."""
        return self._queue

    # --- one request ----------------------------------------------------------------------------
    def _accept(
        self, request: ExportTraceServiceRequest, payload: bytes | None, transport: Transport
    ) -> None:
        retry_after = self.config.retry_after
        if self._state != "running":
            raise Refused("shutting_down", retry_after, "the service is stopping")
        result = self.enricher.enrich(request, raw=payload, record=False)
        ticket: int | None = None
        if self._queue is not None and result.spans:
            data = result.payload if result.payload is not None else request.SerializeToString()
            # The calls found here go with the batch, so the call feeder need not find them
            # again (it does for a batch replayed after a restart).
            memo: Any = None
            if self._span_sink is not None:
                memo = (result.calls, result.tree)
            elif self._call_sink is not None:
                memo = result.calls
            if self.policies is not None and memo is not None:
                # The feeder waits for their verdicts (for the request's, if it derives them).
                ticket = self.policies.expect(result.calls)
            # The memo keeps copies of its spans, not the request's parse (``detach``).
            weight = detach(result, len(data)) if memo is not None else None
            try:
                self._put(data, result.spans, memo, weight)
            except BaseException:
                if ticket is not None and self.policies is not None:
                    self.policies.abandon(ticket)  # not queued: never evaluated
                raise
        # The call sink is not called here: the call feeder reads this batch back from the
        # queue, so its calls are stored even if the process dies right after the reply.
        try:
            self.enricher.record(result)
            self.metrics.received(result.spans, transport)
            self.metrics.duplicate(result.duplicates)
        finally:  # queued: evaluated whatever happens here (the feeder waits for it)
            if self.policies is not None:
                self.policies.observe(result.calls, ticket)

    def _put(self, data: bytes, spans: int, memo: Any, weight: int | None) -> None:
        assert self._queue is not None
        retry_after = self.config.retry_after
        try:
            self._queue.put(data, spans, memo, memo_weight=weight)
        except QueueClosed:
            raise Refused("shutting_down", retry_after, "the service is stopping") from None
        except QueueFull:
            raise Refused("queue_full", retry_after, "the queue is full; retry later") from None
        except OSError as exc:  # a full or failing disk: the client keeps the spans
            _logger.error("otel-llm collector: cannot queue a request: %s", exc)
            raise Refused("queue_full", retry_after, "cannot queue now") from None

    # --- health ---------------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details): healthy while running; the details are served on ``/health``."""
        queue, config = self._queue, self.config
        details: dict[str, Any] = {
            "status": self._state,
            "upstream": (
                {"endpoint": config.upstream_endpoint, "protocol": config.upstream_protocol}
                if config.upstream_endpoint is not None
                else None
            ),
            "queue": (
                {
                    "batches": queue.batches,
                    "spans": queue.spans,
                    "bytes": queue.bytes,
                    "max_bytes": queue.max_bytes,
                    # Batches each consumer has still to take: a call log behind shows here.
                    "waiting": {name: queue.waiting(name) for name in queue.consumers},
                }
                if queue is not None
                else None
            ),
        }
        if self._upstream is not None and details["upstream"] is not None:
            details["upstream"].update(self._upstream.state())
        return self._state == "running", details


class _WatchedUpstream:
    """The upstream, remembering how its last export went (for ``/health``)."""

    def __init__(self, upstream: Upstream, timeout: float):
        self._upstream = upstream
        self.timeout = timeout  # the Forwarder's per-send timeout
        self._last_ok: float | None = None
        self._last_error: tuple[float, str] | None = None

    def send(self, payload: bytes, timeout: float) -> SendResult:
        result = self._upstream.send(payload, timeout)
        if result.ok:
            self._last_ok = time.time()
        else:
            self._last_error = (time.time(), result.detail)
        return result

    def close(self) -> None:
        self._upstream.close()

    def state(self) -> dict[str, Any]:
        """``state``: ``ok`` (the last export succeeded), ``failing`` (it failed: the queue
        holds the spans and retries) or ``unknown`` (nothing sent yet)."""
        last_ok, last_error = self._last_ok, self._last_error
        if last_error is not None and (last_ok is None or last_error[0] > last_ok):
            state = "failing"
        else:
            state = "ok" if last_ok is not None else "unknown"
        return {
            "state": state,
            "last_success": _iso(last_ok),
            "last_error": last_error[1] if last_error is not None else None,
            "last_error_at": _iso(last_error[0] if last_error is not None else None),
        }


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
