"""``CollectorConfig``: what the collector service listens on, forwards to and queues in.

Every field is an ``OTEL_LLM_COLLECTOR_*`` setting (``otel_llm.settings``), resolved once by
``CollectorConfig.from_settings``; each field also names the ``otel-llm collector`` flag that
sets it. The pricing options are the service's own keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from otel_llm import settings
from otel_llm._setting import Configured, bound


@dataclass(frozen=True)
class CollectorConfig(Configured):
    """The collector service's configuration; build it with ``from_settings(**overrides)``.

    An endpoint of None (``none`` in a setting or flag) turns that listener off; port 0 picks a
    free port. ``upstream_endpoint`` None: spans are priced and measured, then dropped.
    """

    grpc_endpoint: str | None = bound(
        settings.COLLECTOR_GRPC_ENDPOINT, "--grpc-endpoint", "HOST:PORT"
    )
    http_endpoint: str | None = bound(
        settings.COLLECTOR_HTTP_ENDPOINT, "--http-endpoint", "HOST:PORT"
    )
    metrics_endpoint: str | None = bound(
        settings.COLLECTOR_METRICS_ENDPOINT, "--metrics-endpoint", "HOST:PORT"
    )
    upstream_endpoint: str | None = bound(
        settings.COLLECTOR_UPSTREAM_ENDPOINT, "--upstream", "ENDPOINT"
    )
    upstream_protocol: str = bound(
        settings.COLLECTOR_UPSTREAM_PROTOCOL, "--upstream-protocol", "PROTOCOL"
    )
    upstream_headers: Mapping[str, str] = bound(
        settings.COLLECTOR_UPSTREAM_HEADERS, "--upstream-headers", "K=V,..."
    )
    upstream_insecure: bool = bound(settings.COLLECTOR_UPSTREAM_INSECURE, "--upstream-insecure")
    upstream_ca_file: str | None = bound(
        settings.COLLECTOR_UPSTREAM_CA_FILE, "--upstream-ca-file", "FILE"
    )
    upstream_client_cert: str | None = bound(
        settings.COLLECTOR_UPSTREAM_CLIENT_CERT, "--upstream-client-cert", "FILE"
    )
    upstream_client_key: str | None = bound(
        settings.COLLECTOR_UPSTREAM_CLIENT_KEY, "--upstream-client-key", "FILE"
    )
    upstream_timeout: float = bound(
        settings.COLLECTOR_UPSTREAM_TIMEOUT, "--upstream-timeout", "SECONDS"
    )
    upstream_compression: str = bound(
        settings.COLLECTOR_UPSTREAM_COMPRESSION, "--upstream-compression", "none|gzip"
    )
    queue_dir: str = bound(settings.COLLECTOR_QUEUE_DIR, "--queue-dir", "DIR")
    queue_max_bytes: int = bound(settings.COLLECTOR_QUEUE_MAX_BYTES, "--queue-max-bytes", "SIZE")
    max_request_bytes: int = bound(
        settings.COLLECTOR_MAX_REQUEST_BYTES, "--max-request-bytes", "SIZE"
    )
    forward_workers: int = bound(settings.COLLECTOR_FORWARD_WORKERS, "--forward-workers", "N")
    retry_initial_backoff: float = bound(
        settings.COLLECTOR_RETRY_INITIAL_BACKOFF, "--retry-initial-backoff", "SECONDS"
    )
    retry_max_backoff: float = bound(
        settings.COLLECTOR_RETRY_MAX_BACKOFF, "--retry-max-backoff", "SECONDS"
    )
    retry_after: float = bound(settings.COLLECTOR_RETRY_AFTER, "--retry-after", "SECONDS")
    """Seconds a refused client is told to wait (RetryInfo / Retry-After)."""
    dedup_window: int = bound(settings.COLLECTOR_DEDUP_WINDOW, "--dedup-window", "N")
    """Priced spans remembered by id, so a redelivered one is not counted twice (0: off)."""
    policies_file: str | None = bound(settings.POLICIES_FILE, "--policies", "FILE")
    policy_sync_interval: float = bound(
        settings.POLICY_SYNC_INTERVAL, "--policy-sync-interval", "SECONDS"
    )
    grpc_workers: int = bound(settings.COLLECTOR_GRPC_WORKERS, "--grpc-workers", "N")
    """Threads handling gRPC Export calls; four times as many are admitted at once."""
