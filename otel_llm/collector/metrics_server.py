"""The collector's ``/metrics`` (OpenMetrics with exemplars when the scraper asks for it) and
``/health`` (JSON; 503 while not running) endpoint."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from otel_llm.exposition import MetricsHandler
from otel_llm.httpserver import BackgroundHTTPServer, split_endpoint

__all__ = ["Health", "MetricsServer"]

_logger = logging.getLogger(__name__)

Health = Callable[[], tuple[bool, dict[str, Any]]]
"""(healthy, details): ``CollectorService.health``."""

_TEXT = "text/plain; charset=utf-8"


class _Handler(MetricsHandler):
    """One scrape or health check; ``registry`` and ``health`` are set on a subclass."""

    health: Health
    server_version = "otel-llm-collector"

    def do_GET(self) -> None:  # http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self.send_metrics(self.registry)
            return
        try:
            if path in ("/health", "/healthz"):
                healthy, details = self.health()
                body = json.dumps(details).encode()
                self.send(200 if healthy else 503, body, [("Content-Type", "application/json")])
            else:
                self.send(404, b"not found: try /metrics\n", [("Content-Type", _TEXT)])
        except Exception:
            _logger.exception("otel-llm collector: %s failed", path)
            self.send(500, b"internal error\n", [("Content-Type", _TEXT)])

    def do_HEAD(self) -> None:
        self.do_GET()


class MetricsServer:
    """Serves ``registry`` on ``/metrics`` and ``health()`` on ``/health`` at ``endpoint``
    (``host:port``; port 0: a free one). OSError from ``start`` when the address is taken."""

    def __init__(self, endpoint: str, registry: CollectorRegistry, health: Health):
        host, port = split_endpoint(endpoint)
        attributes = {"registry": registry, "health": staticmethod(health)}
        handler = type("CollectorMetricsHandler", (_Handler,), attributes)
        self._server = BackgroundHTTPServer(handler, host, port, name="otel-llm-metrics")

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> MetricsServer:
        self._server.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._server.stop(timeout)
