"""Serving ``/metrics`` for Prometheus: OpenMetrics (with exemplars) when the scraper asks for
it, and prometheus_client's multiprocess collector when ``PROMETHEUS_MULTIPROC_DIR`` is set.

``MetricsHandler`` is the one exposition of the package: ``start_metrics_server`` serves it
in-process and the collector's ``/metrics`` endpoint reuses it.
"""

from __future__ import annotations

import gzip
import logging
import os
import threading
from http.server import HTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

from otel_llm.httpserver import BackgroundHTTPServer, RequestHandler

_logger = logging.getLogger(__name__)

_TEXT = "text/plain; charset=utf-8"


def metrics_registry(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """The registry to expose: the given one; else, in multiprocess mode (gunicorn workers), a
    fresh one that reads every worker's files; else the global one."""
    if registry is None and "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged
    return registry if registry is not None else REGISTRY


class MetricsHandler(RequestHandler):
    """``GET`` (any path, as prometheus_client serves it): the registry's metrics in the
    format the scraper accepts (``Accept``), gzip-compressed when it accepts that, restricted
    to ``?name[]=...`` when given. ``registry`` is set on a subclass."""

    registry: Collector = REGISTRY

    def do_GET(self) -> None:  # http.server's naming
        self.send_metrics(self.registry)

    def do_HEAD(self) -> None:
        self.send_metrics(self.registry)

    def send_metrics(self, registry: Collector) -> None:
        """Answer with ``registry``'s metrics; 500 (logged) when collecting them fails."""
        try:
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            names = parse_qs(urlsplit(self.path).query).get("name[]")
            if names and isinstance(registry, CollectorRegistry):
                registry = registry.restricted_registry(names)
            body = encoder(registry)
        except Exception:
            _logger.exception("otel-llm: collecting the metrics for %s failed", self.path[:200])
            self.send(500, b"internal error\n", [("Content-Type", _TEXT)])
            return
        headers = [("Content-Type", content_type)]
        if gzip_accepted(self.headers.get("Accept-Encoding", "")):
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        self.send(200, body, headers)


def start_metrics_server(
    port: int, host: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> tuple[HTTPServer, threading.Thread]:
    """Serve ``/metrics`` on ``host:port`` in a background thread; returns the server (its
    ``server_port``; ``shutdown()`` and ``server_close()`` stop it) and the thread."""
    handler = type("MetricsHandler", (MetricsHandler,), {"registry": metrics_registry(registry)})
    server = BackgroundHTTPServer(handler, host, port, name="otel-llm-metrics").start()
    return server.server, server.thread
