"""The bounded pool behind ``BackgroundHTTPServer``: an ``HTTPServer`` handing accepted
connections to at most ``threads`` daemon threads, through a bounded queue."""

from __future__ import annotations

import logging
import queue
import socket
import socketserver
import sys
import threading
import time
from http.server import HTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the handler module imports this one; the class is only needed as a type
    from otel_llm.httpserver.handler import RequestHandler

# One logger for the whole server (its modules log as "otel_llm.httpserver", as before they were
# split), so a single logging configuration covers it.
_logger = logging.getLogger("otel_llm.httpserver")

_WAITING_PER_THREAD = 4
"""Accepted connections queued per thread before accepting pauses (each holds a descriptor)."""
SLICE = 0.2
"""Seconds between checks of an idle connection for a stop or a queued connection."""


class PooledServer(HTTPServer):
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
                self._condition.wait(SLICE)
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
