"""Serving ``/metrics`` for Prometheus: OpenMetrics (with exemplars) when the scraper asks for
it, and prometheus_client's multiprocess collector when ``PROMETHEUS_MULTIPROC_DIR`` is set."""

from __future__ import annotations

import os
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server


def metrics_registry(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """The registry to expose: the given one; else, in multiprocess mode (gunicorn workers), a
    fresh one that reads every worker's files; else the global one."""
    if registry is None and "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged
    return registry if registry is not None else REGISTRY


def start_metrics_server(
    port: int, host: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the server and thread."""
    return start_http_server(port, addr=host, registry=metrics_registry(registry))
