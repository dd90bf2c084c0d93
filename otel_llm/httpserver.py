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
  longer than ``timeout`` seconds.

This module is foundation-level: it imports nothing else from the package.
"""

from __future__ import annotations

import io
import logging
import queue
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType
from typing import Any, ClassVar, Literal

__all__ = [
    "DEFAULT_BACKLOG",
    "DEFAULT_THREADS",
    "BackgroundHTTPServer",
    "RequestHandler",
    "split_endpoint",
]

_logger = logging.getLogger(__name__)

DEFAULT_THREADS = 64
"""Handler threads per server: far more than the requests a collector or an API handles at
once, far fewer than an unbounded thread per connection."""
DEFAULT_BACKLOG = 1024
"""Connections the kernel holds before they are accepted (the OS may cap it: somaxconn)."""
_WAITING_PER_THREAD = 4
"""Accepted connections queued per thread before accepting pauses (each holds a descriptor)."""
_SLICE = 0.2
"""Seconds between checks of an idle connection for a stop or a queued connection."""

_STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""Methods answered 405 unless the handler serves them; others get 501 (not recognised)."""


class RequestHandler(BaseHTTPRequestHandler):
    """The base of every handler: one connection, served by one of the server's threads.

    Subclasses set ``server_version`` (the whole ``Server`` header: no Python version leaks),
    ``protocol_version`` (``HTTP/1.1`` for keep-alive) and the time limits below, and define the
    ``do_<METHOD>`` they serve; ``send`` writes an answer.
    """

    server: _PooledServer
    server_version = "otel-llm"
    header_timeout: float = 10.0
    """Seconds for a request's line and headers to arrive, from their first byte."""
    timeout: ClassVar[float | None] = 30.0
    """Seconds a body (or the client reading the answer) may stall; http.server's name."""
    keep_alive_timeout: float = 120.0
    """Seconds an idle HTTP/1.1 connection waits for its next request."""

    # --- answering ------------------------------------------------------------------------------
    def send(self, status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> None:
        """The whole answer: status, headers, ``Content-Length`` and (but for HEAD) the body."""
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection and self.protocol_version == "HTTP/1.1":
            self.send_header("Connection", "close")
        self.end_headers()
        if getattr(self, "command", None) != "HEAD":
            self.wfile.write(body)

    def method_not_allowed(self) -> None:
        """The answer to a standard method the handler does not serve: 405 with ``Allow``."""
        self.close_connection = True  # a body we do not read must not be taken for a request
        self.send(
            405,
            f"{self.command} is not allowed\n".encode(),
            [("Content-Type", "text/plain; charset=utf-8"), ("Allow", self.allow())],
        )

    @classmethod
    def allow(cls) -> str:
        """The ``Allow`` header: the standard methods this handler serves."""
        served = [
            method
            for method in _STANDARD_METHODS
            if getattr(cls, "do_" + method) is not getattr(RequestHandler, "do_" + method)
        ]
        return ", ".join(served)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (a malformed request line, headers too long, an unknown
        # method): plain text instead of its HTML page.
        self.close_connection = True
        body = f"{code} {message or HTTPStatus(code).phrase}\n".encode()
        self.send(code, body, [("Content-Type", "text/plain; charset=utf-8")])

    def _unserved(self) -> None:
        self.method_not_allowed()

    # http.server's naming; a subclass defines those it serves.
    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _unserved

    def version_string(self) -> str:
        return self.server_version  # not the Python version: nothing a client needs

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a line per request (or per refusal) would flood the log; debug only."""
        _logger.debug("%s %s: " + format, self.server.name, self.address_string(), *args)

    # --- time limits ----------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        # Reads go through _TimedReader, which applies the limits; the socket file that
        # StreamRequestHandler opened is closed, or the socket would stay open after close().
        self.rfile.close()
        self._reader = _TimedReader(self.connection, self)
        self.rfile = io.BufferedReader(self._reader)
        self._reader.wait(self.header_timeout)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        self._reader.body(self.timeout)  # the head is in: the body's limit applies now
        return True

    def handle_one_request(self) -> None:
        super().handle_one_request()
        if self.server.closing:
            self.close_connection = True
        self._reader.wait(self.keep_alive_timeout)


class _TimedReader(io.RawIOBase):
    """The connection's input, read under the handler's time limits.

    ``wait``: nothing of the next request has arrived; give up at the limit, at a stop, or
    (after the first request) when another connection waits for a thread. ``head``: its first
    byte arrived; the line and headers must be complete by a deadline. ``body``: each read may
    wait ``timeout`` seconds.
    """

    def __init__(self, connection: socket.socket, handler: RequestHandler):
        self._connection = connection
        self._handler = handler
        self._phase: Literal["wait", "head", "body"] = "wait"
        self._until = 0.0
        self._timeout: float | None = connection.gettimeout()
        self._served = 0  # requests begun on this connection

    def wait(self, limit: float) -> None:
        self._phase = "wait"
        self._until = time.monotonic() + limit

    def body(self, timeout: float | None) -> None:
        self._phase = "body"
        self._set_timeout(timeout)  # also bounds writing the answer

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._phase == "body":
            return self._connection.recv_into(buffer)
        if self._phase == "wait":
            return self._first_read(buffer)
        left = self._until - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's line and headers took too long")
        self._set_timeout(left)
        return self._connection.recv_into(buffer)

    def _first_read(self, buffer: Any) -> int:
        server = self._handler.server
        while True:
            left = self._until - time.monotonic()
            if left <= 0:
                raise TimeoutError("no request")
            self._set_timeout(min(_SLICE, left))
            try:
                count = self._connection.recv_into(buffer)  # 0 at the end of input
            except TimeoutError:
                if server.closing or (self._served and server.make_room()):
                    raise TimeoutError("the connection is idle and its thread is needed") from None
                continue
            self._served += 1
            self._phase = "head"
            self._until = time.monotonic() + self._handler.header_timeout
            return count

    def _set_timeout(self, timeout: float | None) -> None:
        if timeout != self._timeout:  # each change is a system call
            self._connection.settimeout(timeout)
            self._timeout = timeout


class _PooledServer(HTTPServer):
    """An HTTPServer handing connections to a bounded pool of daemon threads."""

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[RequestHandler],
        *,
        name: str,
        threads: int,
        backlog: int,
    ):
        self.address_family = _family(address[0])
        self.request_queue_size = backlog
        self.name = name
        self.closing = False
        self._threads = threads
        self._max_waiting = threads * _WAITING_PER_THREAD
        self._work: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        self._condition = threading.Condition()
        self._waiting = 0  # connections queued, not yet taken by a thread
        self._yielding = 0  # idle connections closing to make room for those
        self._idle = threading.Semaphore(0)  # threads free for another connection
        self._workers: list[threading.Thread] = []
        super().__init__(address, handler, bind_and_activate=False)

    def server_bind(self) -> None:
        # HTTPServer.server_bind also looks the host's name up (socket.getfqdn): a DNS query
        # for a name nothing uses.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def make_room(self) -> bool:
        """Whether an idle connection should close for one waiting for a thread: one idle
        connection per waiting one, once no more threads may start."""
        with self._condition:
            if self._waiting > self._yielding and len(self._workers) >= self._threads:
                self._yielding += 1
                return True
            return False

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._condition:
            # Past the queue's bound, accepting pauses: further clients wait in the backlog.
            while self._waiting >= self._max_waiting and not self.closing:
                self._condition.wait(_SLICE)
            self._waiting += 1
        self._work.put((request, client_address))
        if self._idle.acquire(blocking=False):
            return  # a thread is free and will take it
        with self._condition:
            if len(self._workers) < self._threads:
                worker = threading.Thread(
                    target=self._serve_connections,
                    name=f"{self.name}-{len(self._workers) + 1}",
                    daemon=True,  # a server never stopped must not keep the process alive
                )
                self._workers.append(worker)
                worker.start()

    def _serve_connections(self) -> None:
        while (item := self._work.get()) is not None:
            with self._condition:
                self._waiting -= 1
                self._yielding = max(0, self._yielding - 1)
                self._condition.notify()
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:  # noqa: BLE001 - one connection's failure must not end the thread
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
            self._idle.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up or timing out is not worth a traceback; a handler's bug is.
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            _logger.debug("%s: connection from %s failed: %s", self.name, client_address, error)
        else:
            _logger.exception("%s: connection from %s failed", self.name, client_address)

    def shutdown(self) -> None:
        self._close()
        super().shutdown()

    def server_close(self) -> None:
        super().server_close()
        self._close()
        with self._condition:
            workers = list(self._workers)
        for _ in workers:  # after the queued connections: those are still answered
            self._work.put(None)

    def _close(self) -> None:
        with self._condition:
            self.closing = True
            self._condition.notify_all()

    def join(self, deadline: float | None) -> None:
        """Wait for the threads to finish their connections (until ``deadline``, monotonic)."""
        with self._condition:
            workers = list(self._workers)
        for worker in workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


def _family(host: str) -> socket.AddressFamily:
    """IPv6 for an IPv6 host (HTTPServer alone binds IPv4 only)."""
    try:
        infos = socket.getaddrinfo(
            host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return socket.AF_INET  # binding reports the real problem
    return infos[0][0] if host else socket.AF_INET


class BackgroundHTTPServer:
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
        self._server = _PooledServer(
            (host, port), handler, name=name, threads=threads, backlog=backlog
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _SLICE},
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

    def __enter__(self) -> BackgroundHTTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` (IPv6 as ``[::1]:4318``) as (host, port)."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, got {endpoint!r}")
    return host.strip("[]"), int(port)
