"""The OTLP/HTTP trace receiver: ``POST /v1/traces``, protobuf or JSON, gzip or deflate.

Every refusal is counted (``CollectorMetrics.refused``); a failure while handling one request is
answered 500 and never stops the server.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

# No stubs for google.rpc (googleapis-common-protos ships none).
from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from otel_llm.collector.codec import (
    BUSY_DECODING,
    JSON,
    PROTOBUF,
    TRACES_PATH,
    Accept,
    DecodingBudget,
    Refused,
    TooLarge,
    UnsupportedEncoding,
    decompress,
    parse_json,
    retry_after_header,
    status_message,
)
from otel_llm.collector.telemetry import CollectorMetrics
from otel_llm.httpserver import BackgroundHTTPServer, RequestHandler, split_endpoint
from otel_llm.text import clean_text

__all__ = ["HttpReceiver"]

_logger = logging.getLogger(__name__)


class _HttpHandler(RequestHandler):
    """One connection; the receiver is set on a subclass by ``HttpReceiver.start``."""

    receiver: HttpReceiver
    protocol_version = "HTTP/1.1"  # keep-alive: SDK exporters reuse their connection
    keep_alive_timeout = 120.0  # seconds an idle keep-alive connection is kept
    server_version = "otel-llm-collector"

    def do_POST(self) -> None:  # http.server's naming
        as_json = self.content_type() == JSON
        try:
            self.receiver.handle_post(self, as_json)
        except Exception:
            _logger.exception("otel-llm collector: HTTP export failed")
            self.close_connection = True
            with contextlib.suppress(OSError):  # the client may be gone already
                self.reply(500, status_message(code_pb2.INTERNAL, "internal error"), as_json)

    def method_not_allowed(self) -> None:
        self.close_connection = True  # a body we do not read must not be taken for a request
        as_json = self.content_type() == JSON
        self.receiver.metrics.refused("http", "malformed")
        if self.path.split("?", 1)[0] == TRACES_PATH:
            status = status_message(code_pb2.UNIMPLEMENTED, "only POST")
            self.reply(405, status, as_json, {"Allow": self.allow()})
        else:
            self.reply(404, status_message(code_pb2.NOT_FOUND, "not found"), as_json)

    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    def reply(
        self,
        code: int,
        message: Message,
        as_json: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        """``message`` (a response or a ``google.rpc.Status``) in the request's content type."""
        if as_json:
            body = json_format.MessageToJson(message, indent=None).encode()
        else:
            body = message.SerializeToString()
        content_type = JSON if as_json else PROTOBUF
        self.send(code, body, [("Content-Type", content_type), *(headers or {}).items()])


class HttpReceiver:
    """``POST /v1/traces`` (OTLP/HTTP): binary protobuf or JSON, gzip or deflate encoded.

    Answers in the request's content type: 200 with an ``ExportTraceServiceResponse``; 400
    malformed, 413 too large, 415 unsupported content type or encoding, 404 other paths, 405
    other methods, 503 with ``Retry-After`` when ``accept`` refuses or the ``decoding`` budget
    (``codec.DecodingBudget``, shared with the gRPC receiver) is taken -- each with a
    ``google.rpc.Status`` body.
    """

    def __init__(
        self,
        accept: Accept,
        metrics: CollectorMetrics,
        *,
        endpoint: str,
        max_request_bytes: int,
        max_concurrent: int = 64,
        decoding: DecodingBudget | None = None,
    ):
        self._accept = accept
        self.metrics = metrics
        self._endpoint = endpoint
        self._max_request_bytes = max_request_bytes
        # Requests being handled at once are bounded so a flood gets 503s instead of exhausting
        # memory; the server has twice as many threads, so the excess is answered, not queued.
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._decoding = decoding or DecodingBudget.for_requests(max_request_bytes)
        self._threads = 2 * max_concurrent
        self._server: BackgroundHTTPServer | None = None
        self.port = 0

    def start(self) -> int:
        """Bind and serve; returns the bound port. Raises OSError when the address is taken."""
        host, port = split_endpoint(self._endpoint)
        handler = type("OtlpHttpHandler", (_HttpHandler,), {"receiver": self})
        server = BackgroundHTTPServer(
            handler, host, port, name="otel-llm-http", threads=self._threads
        )
        self._server = server.start()
        self.port = server.port
        return self.port

    def stop(self) -> None:
        """Stop taking connections and wait for the requests being handled to be answered."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def handle_post(self, handler: _HttpHandler, as_json: bool) -> None:
        try:
            body = self._read_body(handler)
        except _HttpRefusal as refusal:
            self._refuse(handler, refusal, as_json)
            return
        # The slot is taken before decoding: decompressing and parsing are the costly part
        # of a request, and a flood of them must be refused, not decoded.
        if not self._slots.acquire(blocking=False):
            self._busy(handler, "queue_full", "too many requests at once", 1.0, as_json)
            return
        taken = 0
        try:
            body = self._decompress(handler, body)
            taken = self._decoding.take(len(body))
            if not taken:
                raise Refused("queue_full", 1.0, BUSY_DECODING)
            request, payload = self._decode(body, as_json)
            self._accept(request, payload, "http")
        except _HttpRefusal as refusal:
            self._refuse(handler, refusal, as_json)
            return
        except Refused as refused:
            self._busy(handler, refused.reason, refused.message, refused.retry_after, as_json)
            return
        finally:
            self._decoding.give(taken)
            self._slots.release()
        handler.reply(200, ExportTraceServiceResponse(), as_json)

    def _refuse(self, handler: _HttpHandler, refusal: _HttpRefusal, as_json: bool) -> None:
        if not refusal.keep_alive:  # the body was not read: the connection cannot go on
            handler.close_connection = True
        self.metrics.refused("http", refusal.reason)
        if refusal.code:
            rpc_code = _RPC_CODES.get(refusal.code, code_pb2.UNKNOWN)
            handler.reply(refusal.code, status_message(rpc_code, str(refusal)), as_json)

    def _read_body(self, handler: _HttpHandler) -> bytes:
        if handler.path.split("?", 1)[0] != TRACES_PATH:
            raise _HttpRefusal(404, "malformed", "not found")
        content_type = handler.content_type()
        if content_type not in (PROTOBUF, JSON):
            message = f"unsupported content type {content_type!r}"
            raise _HttpRefusal(415, "unsupported_media_type", message)
        try:
            length = handler.body_length()
        except ValueError as exc:
            raise _HttpRefusal(400, "malformed", str(exc)) from None
        if length is None or "Transfer-Encoding" in handler.headers:
            # Chunked bodies are not read: OTLP exporters send the length. With both headers
            # the chunks are the body (RFC 9112): reading the length instead would take the
            # rest for another request, as a proxy in front would not (request smuggling).
            raise _HttpRefusal(411, "malformed", "send the body with a Content-Length only")
        if length > self._max_request_bytes:
            # Refused before reading: the connection closes instead of taking the body.
            message = f"request of {length} bytes exceeds the limit of {self._max_request_bytes}"
            raise _HttpRefusal(413, "too_large", message)
        body = handler.rfile.read(length)
        if len(body) < length:  # the client went away mid-body: nobody to answer
            raise _HttpRefusal(0, "malformed", "truncated body")
        return body

    def _decompress(self, handler: _HttpHandler, body: bytes) -> bytes:
        encoding = handler.headers.get("Content-Encoding", "identity").strip().lower()
        try:
            return decompress(body, encoding, self._max_request_bytes)
        except TooLarge as exc:
            raise _HttpRefusal(413, "too_large", str(exc), keep_alive=True) from None
        except zlib.error as exc:
            message = f"bad {encoding} data: {exc}"
            raise _HttpRefusal(400, "malformed", message, keep_alive=True) from None
        except UnsupportedEncoding as exc:
            raise _HttpRefusal(415, "unsupported_media_type", str(exc), keep_alive=True) from None

    @staticmethod
    def _decode(body: bytes, as_json: bool) -> tuple[ExportTraceServiceRequest, bytes | None]:
        try:
            if as_json:
                return parse_json(body), None
            return ExportTraceServiceRequest.FromString(body), body
        except (DecodeError, json_format.ParseError, ValueError, TypeError, OverflowError) as exc:
            # OverflowError: protobuf's JSON parser on 1e999 as an integer. The message may
            # quote the request: made safe to encode in the answer (``text.py``).
            message = clean_text(f"malformed request: {exc}")
            raise _HttpRefusal(400, "malformed", message, keep_alive=True) from None

    def _busy(
        self, handler: _HttpHandler, reason: str, message: str, retry_after: float, as_json: bool
    ) -> None:
        self.metrics.refused("http", reason)
        status = status_message(code_pb2.UNAVAILABLE, message, retry_after)
        handler.reply(503, status, as_json, {"Retry-After": retry_after_header(retry_after)})


class _HttpRefusal(Exception):
    """An HTTP request answered with an error status (``code`` 0: not answered at all)."""

    def __init__(self, code: int, reason: str, message: str, *, keep_alive: bool = False):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.keep_alive = keep_alive


_RPC_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    404: code_pb2.NOT_FOUND,
    411: code_pb2.INVALID_ARGUMENT,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
}
