"""One background HTTP server for every listener of the package: the collector's OTLP/HTTP
receiver, its ``/metrics`` + ``/health``, the in-process ``/metrics`` and the call-log API.

``BackgroundHTTPServer(handler, host, port)`` binds on ``start()`` (port 0: a free one, read
back from ``port``), serves from a background thread and stops with ``stop()`` or at the end of a
``with`` block. A handler subclasses ``RequestHandler`` and defines ``do_<METHOD>`` for what it
serves; every other standard method gets 405 with ``Allow``.

What a hostile or careless client can cost is bounded (it was not with the standard library's
``ThreadingHTTPServer``: 50 parallel clients waited on SYN retransmits behind its backlog of 5,
and 2,000 slow connections made 1,744 threads):

- a listen backlog of ``DEFAULT_BACKLOG`` instead of 5;
- at most ``threads`` handler threads; more connections wait in a bounded queue, and past it
  in the kernel's backlog, instead of each getting a thread;
- a connection waiting between requests (keep-alive) gives its thread up as soon as another
  connection waits for one, and on ``stop()``;
- a request's line and headers must arrive within ``header_timeout`` seconds in all (a client
  sending one byte at a time cannot hold a thread for long), and a body may not pause for
  longer than ``timeout`` seconds nor arrive slower than ``min_body_rate`` bytes a second on
  the whole (past its first ``timeout`` seconds).

The package is foundation-level: it imports nothing else from otel_llm. ``handler.py`` holds
``RequestHandler`` and its time limits, ``pool.py`` the bounded pool of threads; this module
the server they make up.
"""

from __future__ import annotations

import threading
import time
from http.server import HTTPServer

from otel_llm.background import Background
from otel_llm.httpserver.handler import RequestHandler
from otel_llm.httpserver.pool import SLICE, PooledServer

__all__ = [
    "DEFAULT_BACKLOG",
    "DEFAULT_THREADS",
    "BackgroundHTTPServer",
    "RequestHandler",
    "split_endpoint",
]

DEFAULT_THREADS = 64
"""Handler threads per server: far more than the requests a collector or an API handles at
once, far fewer than an unbounded thread per connection."""
DEFAULT_BACKLOG = 1024
"""Connections the kernel holds before they are accepted (the OS may cap it: somaxconn)."""


class BackgroundHTTPServer(Background):
    """``handler`` served on ``host:port`` from a background thread.

    Args:
        handler: the ``RequestHandler`` subclass serving each connection.
        host, port: where to listen; port 0 takes a free port (see ``port`` once started).
        name: names the threads and prefixes the log lines.
        threads: at most this many connections are served at once; more wait their turn.
        backlog: the listen backlog.
    """

    def __init__(
        self,
        handler: type[RequestHandler],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str = "otel-llm-http",
        threads: int = DEFAULT_THREADS,
        backlog: int = DEFAULT_BACKLOG,
    ):
        self.host = host
        self._port = port
        self._server = PooledServer(
            (host, port), handler, name=name, threads=threads, backlog=backlog
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SLICE},
            name=name,
            daemon=True,
        )
        self._running = False

    @property
    def port(self) -> int:
        """The bound port (the requested one until started)."""
        return self._server.server_port if self._running else self._port

    @property
    def server(self) -> HTTPServer:
        """The underlying ``http.server`` server (``server_port``, ``shutdown``,
        ``server_close``), for callers of the older ``(server, thread)`` interface."""
        return self._server

    @property
    def thread(self) -> threading.Thread:
        """The thread accepting connections."""
        return self._thread

    def start(self) -> BackgroundHTTPServer:
        """Bind, listen and serve. Raises OSError when the address is unavailable (the
        server cannot be started again then). Started once: later calls do nothing."""
        if self._running or self._server.closing:
            return self
        try:
            self._server.server_bind()
            self._server.server_activate()
        except OSError:
            self._server.server_close()
            raise
        self._running = True
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, close idle connections and wait up to ``timeout`` seconds (None:
        as long as it takes) for the requests being handled to be answered. Idempotent."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._running:
            self._running = False
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        self._server.join(deadline)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` (IPv6 as ``[::1]:4318``) as (host, port)."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, got {endpoint!r}")
    return host.strip("[]"), int(port)
