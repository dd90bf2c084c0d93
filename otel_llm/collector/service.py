"""``CollectorService``: OTLP in, GenAI spans priced and measured, OTLP out.

Data flow of one export request::

    receive (gRPC / HTTP) -> enrich (price, in place) -> queue.put (durable) -> record metrics
        -> call sink -> reply OK                 ... Forwarder thread(s): queue -> upstream

A request is acknowledged only once it is on disk, so an upstream outage or a restart loses no
acknowledged span; when the queue is full the client is told to retry, and nothing is counted
(metrics, call sink) until a request is accepted, so a retried request is counted once.
Without an upstream there is no queue: spans are priced, measured and handed to the call sink,
then dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from otel_llm import settings
from otel_llm.collector.enrich import ERROR_STAGE, EnrichedCall, Enricher
from otel_llm.collector.queue import DiskQueue, QueueClosed, QueueFull
from otel_llm.collector.receive import (
    GrpcReceiver,
    HttpReceiver,
    Refused,
    Transport,
    split_endpoint,
)
from otel_llm.collector.telemetry import CollectorMetrics
from otel_llm.metrics.prometheus import PrometheusRecorder
from otel_llm.pricer import Pricer, PricingOptions
from otel_llm.pricing import PriceBook, PriceOverride

if TYPE_CHECKING:
    from otel_llm.collector.forward import Forwarder
    from otel_llm.collector.upstream import SendResult, Upstream

_logger = logging.getLogger(__name__)

CALL_SINK_STAGE = "call_sink"
"""The ``stage`` label of ``otel_llm_processor_errors_total`` for failures of the call sink."""

CallSink = Callable[[Sequence[EnrichedCall]], None]
"""Receives the LLM calls of each accepted request (the call log of issue 5 plugs in here)."""

DISABLED = "none"


class StartError(Exception):
    """The service cannot start (an address in use, an unusable queue directory)."""


class CollectorService:
    """The ``otel-llm collector`` service; importable, a context manager.

    Every argument left as None takes its ``OTEL_LLM_*`` setting (see ``otel_llm.settings``);
    an endpoint of ``"none"`` turns that listener off, port 0 picks a free port (the bound
    ports are the ``grpc_port``, ``http_port`` and ``metrics_port`` properties).

    Args:
        registry: where the service's metrics (GenAI and its own) go; default: a new registry
            with the process collectors, served on the metrics endpoint.
        call_sink: called with the LLM calls of each accepted request, after the request is on
            the queue and before the client is answered. Its failures are logged and counted
            (``otel_llm_processor_errors_total{stage="call_sink"}``), never refused to the
            client: the spans are already accepted.
        retry_after: seconds a refused client is told to wait (RetryInfo / Retry-After).
        grpc_workers: threads handling gRPC requests.
    """

    def __init__(
        self,
        *,
        grpc_endpoint: str | None = None,
        http_endpoint: str | None = None,
        metrics_endpoint: str | None = None,
        upstream_endpoint: str | None = None,
        upstream_protocol: str | None = None,
        upstream_headers: Mapping[str, str] | None = None,
        upstream_insecure: bool | None = None,
        upstream_ca_file: str | None = None,
        upstream_client_cert: str | None = None,
        upstream_client_key: str | None = None,
        upstream_timeout: float | None = None,
        upstream_compression: str | None = None,
        queue_dir: str | Path | None = None,
        queue_max_bytes: int | None = None,
        max_request_bytes: int | None = None,
        forward_workers: int | None = None,
        retry_initial_backoff: float | None = None,
        retry_max_backoff: float | None = None,
        registry: CollectorRegistry | None = None,
        call_sink: CallSink | None = None,
        price_book: PriceBook | None = None,
        price_overrides: str | Path | Sequence[PriceOverride] | None = None,
        extra_labels: Mapping[str, str] | Sequence[str] | None = None,
        max_label_values: int | None = None,
        max_tokens: int | None = None,
        price_cache_size: int | None = None,
        retry_after: float | None = None,
        grpc_workers: int = 8,
    ):
        self._grpc_endpoint = settings.COLLECTOR_GRPC_ENDPOINT.resolve(grpc_endpoint)
        self._http_endpoint = settings.COLLECTOR_HTTP_ENDPOINT.resolve(http_endpoint)
        self._metrics_endpoint = settings.COLLECTOR_METRICS_ENDPOINT.resolve(metrics_endpoint)
        self._upstream_endpoint = settings.COLLECTOR_UPSTREAM_ENDPOINT.resolve(upstream_endpoint)
        self._upstream_protocol = settings.COLLECTOR_UPSTREAM_PROTOCOL.resolve(upstream_protocol)
        self._upstream_headers = settings.COLLECTOR_UPSTREAM_HEADERS.resolve(upstream_headers)
        self._upstream_insecure = settings.COLLECTOR_UPSTREAM_INSECURE.resolve(upstream_insecure)
        self._upstream_ca_file = settings.COLLECTOR_UPSTREAM_CA_FILE.resolve(upstream_ca_file)
        self._upstream_client_cert = settings.COLLECTOR_UPSTREAM_CLIENT_CERT.resolve(
            upstream_client_cert
        )
        self._upstream_client_key = settings.COLLECTOR_UPSTREAM_CLIENT_KEY.resolve(
            upstream_client_key
        )
        self._upstream_timeout = settings.COLLECTOR_UPSTREAM_TIMEOUT.resolve(upstream_timeout)
        self._upstream_compression = settings.COLLECTOR_UPSTREAM_COMPRESSION.resolve(
            upstream_compression
        )
        self._queue_dir = Path(
            settings.COLLECTOR_QUEUE_DIR.resolve(str(queue_dir) if queue_dir else None)
        )
        self._queue_max_bytes = settings.COLLECTOR_QUEUE_MAX_BYTES.resolve(queue_max_bytes)
        self._max_request_bytes = settings.COLLECTOR_MAX_REQUEST_BYTES.resolve(max_request_bytes)
        self._forward_workers = settings.COLLECTOR_FORWARD_WORKERS.resolve(forward_workers)
        self._retry_initial_backoff = settings.COLLECTOR_RETRY_INITIAL_BACKOFF.resolve(
            retry_initial_backoff
        )
        self._retry_max_backoff = settings.COLLECTOR_RETRY_MAX_BACKOFF.resolve(retry_max_backoff)
        self._retry_after = settings.COLLECTOR_RETRY_AFTER.resolve(retry_after)
        self._grpc_workers = grpc_workers
        self._call_sink = call_sink

        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.registry = registry
        self.metrics = CollectorMetrics(registry)
        recorder = PrometheusRecorder.for_registry(
            registry,
            extra_labels=settings.EXTRA_LABELS.resolve(extra_labels),
            max_label_values=settings.MAX_LABEL_VALUES.resolve(max_label_values),
        )
        # At 0 from start-up, like the service's own series: an alert's increase() then sees
        # the first failure too.
        for stage in (ERROR_STAGE, CALL_SINK_STAGE):
            recorder.errors.labels(stage=stage)
        pricing = PricingOptions.from_settings(
            price_book=price_book,
            price_overrides=price_overrides,
            price_cache_size=price_cache_size,
            max_tokens=max_tokens,
            extra_attributes=recorder.extra_labels.values(),
        )
        self.enricher = Enricher(Pricer(pricing), recorder)

        self._state = "new"  # new -> running -> stopping -> stopped
        self._lock = threading.Lock()
        self._queue: DiskQueue | None = None
        self._forwarder: Forwarder | None = None
        self._upstream: _WatchedUpstream | None = None
        self._grpc: GrpcReceiver | None = None
        self._http: HttpReceiver | None = None
        self._metrics_server: _MetricsServer | None = None

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
        if self._upstream_endpoint is not None:
            # Only with an upstream: the forwarding side is not loaded otherwise.
            from otel_llm.collector.forward import Forwarder  # noqa: PLC0415
            from otel_llm.collector.upstream import make_upstream  # noqa: PLC0415

            if self._queue_max_bytes < self._max_request_bytes:
                _logger.warning(
                    "otel-llm collector: the queue (%d bytes) is smaller than the largest request "
                    "accepted (%d bytes): such a request would be refused forever",
                    self._queue_max_bytes,
                    self._max_request_bytes,
                )
            try:
                self._queue = DiskQueue(self._queue_dir, max_bytes=self._queue_max_bytes)
            except OSError as exc:
                raise StartError(f"cannot open the queue in {self._queue_dir}: {exc}") from exc
            self.metrics.watch_queue(self._queue)
            upstream = make_upstream(
                self._upstream_endpoint,
                self._upstream_protocol,
                insecure=self._upstream_insecure,
                ca_file=self._upstream_ca_file,
                client_cert=self._upstream_client_cert,
                client_key=self._upstream_client_key,
                headers=self._upstream_headers,
                compression=self._upstream_compression,
                timeout=self._upstream_timeout,
            )
            self._upstream = _WatchedUpstream(upstream, self._upstream_timeout)
            self._forwarder = Forwarder(
                self._queue,
                self._upstream,
                self.metrics,
                workers=self._forward_workers,
                initial_backoff=self._retry_initial_backoff,
                max_backoff=max(self._retry_max_backoff, self._retry_initial_backoff),
            )
            self._forwarder.start()
        if self._metrics_endpoint != DISABLED:
            self._metrics_server = _MetricsServer(self._metrics_endpoint, self)
        if self._grpc_endpoint != DISABLED:
            self._grpc = GrpcReceiver(
                self._accept,
                self.metrics,
                endpoint=self._grpc_endpoint,
                max_request_bytes=self._max_request_bytes,
                workers=self._grpc_workers,
            )
            self._grpc.start()
        if self._http_endpoint != DISABLED:
            self._http = HttpReceiver(
                self._accept,
                self.metrics,
                endpoint=self._http_endpoint,
                max_request_bytes=self._max_request_bytes,
            )
            try:
                self._http.start()
            except OSError as exc:
                self._http = None
                raise StartError(f"cannot listen on {self._http_endpoint} (HTTP): {exc}") from exc

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
        # Receivers first (their in-flight requests still reach the queue), then the forwarder,
        # then the queue; the metrics endpoint last, so a scrape sees the end.
        if self._grpc is not None:
            self._grpc.stop(grace=timeout / 2)
            self._grpc = None
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self._forwarder is not None:
            self._forwarder.stop(timeout / 2)
            self._forwarder = None
        if self._queue is not None:
            self._queue.close()
        if self._metrics_server is not None:
            self._metrics_server.stop()
            self._metrics_server = None

    def __enter__(self) -> CollectorService:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

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
        """The queue to the upstream (None without an upstream)."""
        return self._queue

    # --- one request ----------------------------------------------------------------------------
    def _accept(
        self, request: ExportTraceServiceRequest, payload: bytes | None, transport: Transport
    ) -> None:
        if self._state != "running":
            raise Refused("shutting_down", self._retry_after, "the service is stopping")
        result = self.enricher.enrich(request, raw=payload, record=False)
        if self._queue is not None and result.spans:
            data = payload if payload is not None and not result.modified else None
            if data is None:
                data = request.SerializeToString()
            try:
                self._queue.put(data, result.spans)
            except QueueClosed:
                raise Refused(
                    "shutting_down", self._retry_after, "the service is stopping"
                ) from None
            except QueueFull:
                raise Refused(
                    "queue_full", self._retry_after, "the queue is full; retry later"
                ) from None
            except OSError as exc:  # a full or failing disk: the client keeps the spans
                _logger.error("otel-llm collector: cannot queue a request: %s", exc)
                raise Refused("queue_full", self._retry_after, "cannot queue now") from None
        self.enricher.record(result)
        self.metrics.received(result.spans, transport)
        if self._call_sink is not None and result.calls:
            try:
                self._call_sink(result.calls)
            except Exception:
                _logger.exception("otel-llm collector: the call sink failed")
                with contextlib.suppress(Exception):
                    self.enricher.recorder.record_error(CALL_SINK_STAGE)

    # --- health ---------------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details): healthy while running; the details are served on ``/health``."""
        queue = self._queue
        details: dict[str, Any] = {
            "status": self._state,
            "upstream": (
                {"endpoint": self._upstream_endpoint, "protocol": self._upstream_protocol}
                if self._upstream_endpoint is not None
                else None
            ),
            "queue": (
                {
                    "batches": queue.batches,
                    "spans": queue.spans,
                    "bytes": queue.bytes,
                    "max_bytes": queue.max_bytes,
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


class _MetricsHandler(BaseHTTPRequestHandler):
    server: _MetricsHttpServer
    server_version = "otel-llm-collector"

    def do_GET(self) -> None:  # http.server's naming
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                body = encoder(self.server.service.registry)
                self._send(200, content_type, body)
            elif path in ("/health", "/healthz"):
                healthy, details = self.server.service.health()
                body = json.dumps(details).encode()
                self._send(200 if healthy else 503, "application/json", body)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics\n")
        except Exception:
            _logger.exception("otel-llm collector: %s failed", path)
            self._send(500, "text/plain; charset=utf-8", b"internal error\n")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: every scrape would log a line."""


class _MetricsHttpServer(ThreadingHTTPServer):
    daemon_threads = True  # HTTP/1.0, one request per connection: nothing to drain

    def __init__(self, address: tuple[str, int], service: CollectorService):
        self.service = service
        super().__init__(address, _MetricsHandler)


class _MetricsServer:
    """``/metrics`` (OpenMetrics with exemplars when the scraper asks for it) and ``/health``."""

    def __init__(self, endpoint: str, service: CollectorService):
        host, port = split_endpoint(endpoint)
        try:
            self._server = _MetricsHttpServer((host, port), service)
        except OSError as exc:
            raise StartError(f"cannot listen on {endpoint} (metrics): {exc}") from exc
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="otel-llm-metrics",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
