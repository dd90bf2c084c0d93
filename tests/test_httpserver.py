"""The package's background HTTP server (otel_llm/httpserver.py) with real sockets: what a
careless or hostile client can cost it (issue 10, finding 9) and the answers every server of
the package shares."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from otel_llm.httpserver import BackgroundHTTPServer, RequestHandler, split_endpoint

HOST = "127.0.0.1"


class Hello(RequestHandler):
    """GET /: hello; GET /boom: the handler raises; GET /slow: answers after a pause."""

    server_version = "hello-test"
    protocol_version = "HTTP/1.1"
    header_timeout = 0.5
    keep_alive_timeout = 60.0
    entered = threading.Event()
    release = threading.Event()

    def do_GET(self) -> None:  # http.server's naming
        if self.path == "/boom":
            raise RuntimeError("a bug in a handler")
        if self.path == "/slow":
            type(self).entered.set()
            type(self).release.wait(10)
        self.send(200, b"hello", [("Content-Type", "text/plain")])


def server_threads(name: str) -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith(name + "-"))


def get(port: int, path: str = "/", method: str = "GET") -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    connection.request(method, path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@contextmanager
def hello_server(**options: int) -> Iterator[BackgroundHTTPServer]:
    Hello.entered.clear()
    Hello.release.clear()
    server = BackgroundHTTPServer(Hello, HOST, 0, name="hello-test", **options)
    with server:
        yield server
    Hello.release.set()


def test_serves_on_a_free_port_and_stops() -> None:
    server = BackgroundHTTPServer(Hello, HOST, 0)
    assert server.port == 0  # the requested one until started
    with server:
        port = server.port
        assert port > 0
        response = get(port)
        assert (response.status, response.headers["Server"]) == (200, "hello-test")
    server.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError), socket.create_connection((HOST, port), timeout=2):
        pass


def test_unserved_methods_get_405_with_allow_and_unknown_ones_501() -> None:
    with hello_server() as server:
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"):
            response = get(server.port, method=method)
            assert response.status == 405, method
            assert response.headers["Allow"] == "GET"
        assert get(server.port, method="FROB").status == 501
        # Every answer, errors included, names the server without Python's version.
        assert "Python" not in (get(server.port, method="FROB").headers["Server"] or "")


def test_a_failing_handler_does_not_stop_the_server(caplog: pytest.LogCaptureFixture) -> None:
    with hello_server() as server:
        connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
        connection.request("GET", "/boom")
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            connection.getresponse()
        connection.close()
        assert get(server.port).status == 200
    assert "a bug in a handler" in caplog.text  # a handler's bug is logged with its traceback


def test_threads_are_bounded_and_connections_queue_in_a_real_backlog() -> None:
    # One thread, busy; 4 connections wait for it, then accepting pauses; 150 more connect at
    # once. With the standard library's backlog of 5 most of those connects would hang on SYN
    # retransmits (1 s, 3 s, ...); here every one completes at once and is answered in turn.
    with hello_server(threads=1) as server, ExitStack() as stack:
        busy = threading.Thread(target=get, args=(server.port, "/slow"))
        busy.start()
        assert Hello.entered.wait(10)
        started = time.monotonic()
        clients = []
        for _ in range(155):
            client = socket.socket()
            stack.enter_context(client)
            client.settimeout(2)
            client.connect((HOST, server.port))
            clients.append(client)
        assert time.monotonic() - started < 1.5
        assert server_threads("hello-test") == 1
        Hello.release.set()
        busy.join(10)
        for client in clients:
            client.settimeout(10)
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = [client.recv(64)[:12] for client in clients]
        assert answers == [b"HTTP/1.1 200"] * len(clients), [
            i for i, a in enumerate(answers) if not a
        ]
        assert server_threads("hello-test") == 1


def test_slow_clients_are_cut_off_and_cost_no_more_threads() -> None:
    with hello_server(threads=4) as server, ExitStack() as stack:
        # 20 connections that say nothing, and one sending its head a byte every 0.1 s: each
        # read is quick, the whole head is not.
        silent = [
            stack.enter_context(socket.create_connection((HOST, server.port))) for _ in range(20)
        ]
        trickler = stack.enter_context(socket.create_connection((HOST, server.port)))
        trickler.settimeout(10)
        started = time.monotonic()
        cut_off = None
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200:
            try:
                trickler.sendall(bytes([byte]))
            except OSError:
                cut_off = time.monotonic() - started
                break
            time.sleep(0.1)
        if cut_off is None:  # the kernel took every byte: the close shows on reading
            assert trickler.recv(64) == b""
            cut_off = time.monotonic() - started
        assert cut_off < 15
        assert server_threads("hello-test") <= 4
        # A well-behaved client still gets through, once the silent ones time out (0.5 s each,
        # 4 at a time).
        started = time.monotonic()
        assert get(server.port).status == 200
        assert time.monotonic() - started < 10
        for connection in silent:  # each was closed without an answer
            connection.settimeout(10)
            assert connection.recv(64) == b""


class Echo(RequestHandler):
    """POST /: the body's length; a body may stall 1 s per read and must average 100 B/s."""

    server_version = "echo-test"
    timeout = 1.0
    min_body_rate = 100.0

    def do_POST(self) -> None:  # http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send(200, str(len(body)).encode(), [("Content-Type", "text/plain")])


def test_a_body_trickled_in_is_cut_off_however_quick_each_read() -> None:
    # Found in review: each read of a body waited up to `timeout`, the body as a whole without
    # end -- 135 connections sending a byte every 10 s held every thread of the OTLP/HTTP
    # receiver (and 70 those of the call-log API), and ingestion stopped.
    with BackgroundHTTPServer(Echo, HOST, 0, name="echo-test", threads=2) as server:
        trickler = socket.create_connection((HOST, server.port))
        trickler.settimeout(10)
        trickler.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        cut_off = None
        for _ in range(1000):  # 20 bytes a second, each read well within its 1 s
            try:
                trickler.sendall(b"x")
            except OSError:
                cut_off = time.monotonic() - started
                break
            time.sleep(0.05)
        if cut_off is None:  # the kernel took every byte: the close shows on reading
            trickler.recv(64)
            cut_off = time.monotonic() - started
        trickler.close()
        # 1 s, plus a second for every 100 bytes received, plus the read under way.
        assert cut_off < 6
        # A body that comes at a decent pace is read whole, however large.
        connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
        connection.request("POST", "/", body=b"y" * 2_000_000)
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"2000000")
        connection.close()


def test_an_idle_keep_alive_connection_gives_its_thread_up() -> None:
    with hello_server(threads=1) as server:
        kept = http.client.HTTPConnection(HOST, server.port, timeout=10)
        kept.request("GET", "/")
        assert kept.getresponse().read() == b"hello"
        # The only thread waits on `kept` for its next request (up to 60 s); a second client is
        # served within a moment instead.
        started = time.monotonic()
        assert get(server.port).status == 200
        assert time.monotonic() - started < 2
        kept.close()


def test_stop_closes_idle_connections_and_answers_requests_in_flight() -> None:
    server = BackgroundHTTPServer(Hello, HOST, 0, name="hello-test").start()
    Hello.entered.clear()
    Hello.release.clear()
    idle = http.client.HTTPConnection(HOST, server.port, timeout=10)
    idle.request("GET", "/")
    idle.getresponse().read()
    statuses: list[int] = []
    in_flight = threading.Thread(target=lambda: statuses.append(get(server.port, "/slow").status))
    in_flight.start()
    assert Hello.entered.wait(10)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    time.sleep(0.5)
    assert stopper.is_alive()  # waiting for the request in flight
    Hello.release.set()
    in_flight.join(10)
    stopper.join(10)
    assert statuses == [200]
    assert not stopper.is_alive()
    assert server_threads("hello-test") == 0
    idle.close()


def test_split_endpoint() -> None:
    assert split_endpoint("127.0.0.1:4318") == ("127.0.0.1", 4318)
    assert split_endpoint("[::1]:0") == ("::1", 0)
    with pytest.raises(ValueError, match="host:port"):
        split_endpoint("localhost")
