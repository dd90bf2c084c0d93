"""``RequestHandler``, the base of every handler of ``BackgroundHTTPServer``, and the time
limits its connection's input is read under (``_TimedReader``)."""

from __future__ import annotations

import io
import logging
import math
import re
import socket
import time
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar, Literal

from otel_llm.httpserver.pool import SLICE, PooledServer

# One logger for the whole server (its modules log as "otel_llm.httpserver", as before they were
# split), so a single logging configuration covers it.
_logger = logging.getLogger("otel_llm.httpserver")

_LENGTH = re.compile(r"[0-9]{1,18}")
"""A ``Content-Length`` value: ASCII digits only, short of what a 64-bit int holds."""

_STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""Methods answered 405 unless the handler serves them; others get 501 (not recognised)."""


class RequestHandler(BaseHTTPRequestHandler):
    """The base of every handler: one connection, served by one of the server's threads.

    Subclasses set ``server_version`` (the whole ``Server`` header: no Python version leaks),
    ``protocol_version`` (``HTTP/1.1`` for keep-alive) and the time limits below, and define the
    ``do_<METHOD>`` they serve; ``send`` writes an answer.
    """

    server: PooledServer
    server_version = "otel-llm"
    header_timeout: float = 10.0
    """Seconds for a request's line and headers to arrive, from their first byte."""
    timeout: ClassVar[float | None] = 30.0
    """Seconds a body (or the client reading the answer) may stall; http.server's name."""
    min_body_rate: float = 16 * 1024
    """Bytes a second a body must average once its first ``timeout`` seconds are spent: each
    read waiting ``timeout`` at most did not bound the whole, and a byte every few seconds held
    a thread for good (enough such connections held them all)."""
    keep_alive_timeout: float = 120.0
    """Seconds an idle HTTP/1.1 connection waits for its next request."""

    # --- reading ------------------------------------------------------------------------------
    def body_length(self) -> int | None:
        """The body's length the request declares: None without a ``Content-Length``;
        ``ValueError`` unless it is one number in ASCII digits -- two different values (found in
        review: the first was taken, the rest of the body read as the next request), a sign, an
        underscore or another script's digits, which ``int`` takes, make a request RFC 9112
        (6.3) calls invalid."""
        values = {value.strip() for value in self.headers.get_all("Content-Length") or ()}
        if not values:
            return None
        (value,) = values if len(values) == 1 else ("",)
        if not _LENGTH.fullmatch(value):
            raise ValueError("Content-Length must be one number of bytes")
        return int(value)

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
        self._reader.body(self.timeout, self.min_body_rate)  # the head is in: the body's limits
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
    wait ``timeout`` seconds, and the body must be in by a deadline: ``timeout`` seconds, plus
    one for every ``min_body_rate`` bytes received.
    """

    def __init__(self, connection: socket.socket, handler: RequestHandler):
        self._connection = connection
        self._handler = handler
        self._phase: Literal["wait", "head", "body"] = "wait"
        self._until = 0.0
        self._rate = 1.0
        self._timeout: float | None = connection.gettimeout()
        self._served = 0  # requests begun on this connection

    def wait(self, limit: float) -> None:
        self._phase = "wait"
        self._until = time.monotonic() + limit

    def body(self, timeout: float | None, rate: float) -> None:
        self._phase = "body"
        self._set_timeout(timeout)  # also bounds writing the answer
        self._until = math.inf if timeout is None else time.monotonic() + timeout
        self._rate = rate

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._phase == "body":
            if time.monotonic() > self._until:
                raise TimeoutError("the request's body arrives too slowly")
            count = self._connection.recv_into(buffer)
            self._until += count / self._rate
            return count
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
            self._set_timeout(min(SLICE, left))
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
