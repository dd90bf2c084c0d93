"""The call log's HTTP JSON query API and its page served: ``CallLogAPI`` runs ``CallLogApp``
(``app.py``: routes, keys, rate limits, answers; the page at ``/``: ``webpage.py``) on the
package's ``BackgroundHTTPServer``, on 127.0.0.1 unless told otherwise. This module reads the
request body (bounded, ``Content-Length`` only) and writes the app's answer; everything the API
decides is in ``app.py``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from otel_llm import settings
from otel_llm.background import Background
from otel_llm.calllog.app import (
    JSON_HEADERS,
    MAX_BODY_BYTES,
    PREFIX,
    CallLogApp,
    Refusal,
    Response,
    error_body,
)
from otel_llm.calllog.auth import KeyRing
from otel_llm.calllog.ratelimit import RateLimits
from otel_llm.httpserver import BackgroundHTTPServer, RequestHandler, split_endpoint

if TYPE_CHECKING:  # the stores' module (SQL, drivers) is only needed to type the reader
    from otel_llm.calllog.store import CallReader
    from otel_llm.policies import PolicyFile


class _Handler(RequestHandler):
    """One connection; the app is set on a subclass by ``handler_for``."""

    app: CallLogApp
    server_version = "otel-llm-calllog"
    timeout = 30  # seconds a slow client may stall while sending a body

    def _serve(self) -> None:
        try:
            body = self._body()
        except Refusal as refusal:
            self._send(self.app.error(refusal.status, refusal.message, refusal.headers))
            return
        self._send(self.app.handle(self.command, self.path, self.headers.get, body))

    # Every standard method goes to the app: it answers 405 with the route's own Allow.
    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise Refusal(411, "send the request body with a Content-Length")
        try:
            length = self.body_length()
        except ValueError as exc:
            self.close_connection = True
            raise Refusal(400, str(exc)) from None
        if length is None:
            return b""
        if length > self.app.max_body_bytes:
            self._drain(length)
            raise Refusal(
                413, f"the request body is over {self.app.max_body_bytes} bytes; a query is small"
            )
        return self.rfile.read(length)

    def _drain(self, length: int) -> None:
        # Reading what the client already sent lets it read our answer instead of a reset;
        # past a bound the connection is simply closed.
        self.close_connection = True
        left = min(length, 16 * self.app.max_body_bytes)
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)

    def _send(self, response: Response) -> None:
        self.send(response.status, response.body, response.headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (a malformed request line, an unknown method, headers too
        # long) are JSON like every other answer.
        self.close_connection = True
        text = message or HTTPStatus(code).phrase
        self._send(Response(code, error_body(code, text), JSON_HEADERS))


def handler_for(app: CallLogApp) -> type[RequestHandler]:
    """A handler class serving ``app``, for ``BackgroundHTTPServer``."""
    return type("CallLogHandler", (_Handler,), {"app": app})


class CallLogAPI(Background):
    """The API served on ``host:port`` (port 0: any free one) in a background thread."""

    def __init__(
        self,
        store: CallReader,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        keys: KeyRing,
        limits: RateLimits | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        policies: PolicyFile | None = None,
        trace_url: str | None = None,
    ):
        self.app = CallLogApp(
            store,
            keys=keys,
            limits=limits,
            max_body_bytes=max_body_bytes,
            policies=policies,
            trace_url=trace_url,
        )
        self.host = host
        self._server = BackgroundHTTPServer(
            handler_for(self.app), host, port, name="otel-llm-calllog-api"
        )

    @classmethod
    def from_settings(
        cls,
        store: CallReader,
        *,
        endpoint: str | None = None,
        keys_file: str | None = None,
        keys: KeyRing | None = None,
        policies: PolicyFile | None = None,
    ) -> CallLogAPI:
        """The API as the ``call_log_api_*`` and ``call_log_rate_limit_*`` settings describe it
        (arguments override them). ValueError when the endpoint is ``none`` or no key is
        configured, with a message for the operator."""
        address = settings.CALL_LOG_API_ENDPOINT.resolve(endpoint)
        if address is None:
            raise ValueError("the call-log API is off (call_log_api_endpoint is 'none')")
        host, port = split_endpoint(address)
        ring = keys if keys is not None else KeyRing.from_settings(keys_file)
        return cls(
            store,
            host=host,
            port=port,
            keys=ring,
            limits=RateLimits.from_settings(),
            policies=policies,
        )

    @property
    def port(self) -> int:
        """The bound port (the requested one until started)."""
        return self._server.port

    @property
    def url(self) -> str:
        return self.page_url.removesuffix("/") + PREFIX

    @property
    def page_url(self) -> str:
        """The page's address (``http://host:port/``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> CallLogAPI:
        """Bind and serve in a background thread; OSError if the address is unavailable."""
        self._server.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket (the store stays open: it is the caller's)."""
        self._server.stop(timeout)
