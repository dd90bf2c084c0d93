"""The scaffolding of the servers the tests run in their own process (the fake LLM provider, the
OTLP receiver): the package's start/stop lifecycle (``otel_llm.background.Background``), an
HTTP server served from a thread, a gRPC server on a port of 127.0.0.1.

    class MyServer(Background):
        def start(self) -> Self:
            self._http = HTTPServerThread(MyHandler, self, name="my-server")
            return self

        def stop(self) -> None:
            self._http.stop()
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

from otel_llm.background import Background

__all__ = ["HOST", "Background", "GRPCServer", "HTTPServer", "HTTPServerThread"]

HOST = "127.0.0.1"


class HTTPServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` that knows its open connections (to cut them when it stops),
    the object its handlers serve (``owner``) and an event set when it stops (``stopping``), so a
    handler told to delay its answer gives up instead of holding the stop back."""

    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads: nothing outlives a test

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], owner: Any
    ) -> None:
        self.owner = owner
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Without TCP_NODELAY, Nagle's algorithm holds a response's second send (the body after
        # the headers, the next SSE event) until the client has ACKed the first, and the client
        # delays that ACK by ~40 ms: every response on a reused connection waited for it.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that stops reading early (the stream tests do it on purpose) or goes away
        # makes the next write fail: expected, not worth a traceback on stderr.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class HTTPServerThread:
    """``handler`` served on ``HOST:port`` (0: an ephemeral port) from a daemon thread, over TLS
    when ``tls`` is given; handlers reach ``owner`` as ``self.server.owner``."""

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        owner: Any,
        *,
        name: str,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.server = HTTPServer((HOST, port), handler, owner)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port: int = self.server.server_address[1]
        # A short poll interval: shutdown() waits up to one interval for the loop to notice.
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=name,
            daemon=True,
        )
        self._thread.start()
        self._stopped = False

    def stop(self) -> None:
        """Stops serving, cuts the connections still open (a keep-alive client would keep its
        handler thread waiting for the next request) and joins every thread; safe twice."""
        if self._stopped:
            return
        self._stopped = True
        self.server.stopping.set()
        self.server.shutdown()
        with self.server.connections_lock:
            connections = list(self.server.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.server.server_close()  # joins the handler threads (block_on_close)
        self._thread.join(timeout=5)


class GRPCServer:
    """A gRPC server on ``HOST:port`` (0: an ephemeral port), plaintext or with ``credentials``;
    ``register`` adds the services before it starts."""

    def __init__(
        self,
        register: Callable[[grpc.Server], None],
        *,
        name: str,
        port: int = 0,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self._executor: futures.ThreadPoolExecutor | None = futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix=name
        )
        self._server: grpc.Server | None = grpc.server(self._executor)
        register(self._server)
        address = f"{HOST}:{port}"
        if credentials is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, credentials)
        self._server.start()

    def stop(self) -> None:
        """Cancels the calls under way, then waits for the server and its threads; safe twice."""
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
