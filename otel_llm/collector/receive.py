"""The OTLP trace receivers: gRPC (grpcio) and HTTP (``/v1/traces``, protobuf or JSON).

Both decode a request, enforce the size limit and hand it to an ``accept`` callable; what
``accept`` refuses is answered with the OTLP back-pressure signals, so SDK exporters retry
instead of dropping: gRPC ``RESOURCE_EXHAUSTED`` with a ``google.rpc.RetryInfo``, HTTP 503 with
``Retry-After``. Every refusal is counted (``CollectorMetrics.refused``); a failure while
handling one request is answered (gRPC ``INTERNAL``, HTTP 500) and never stops the server.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import socket
import threading
import zlib
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import grpc
from google.protobuf import duration_pb2, json_format
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.message import DecodeError, Message

# No stubs for google.rpc (googleapis-common-protos ships none).
from google.rpc import (  # type: ignore[import-untyped,unused-ignore]
    code_pb2,
    error_details_pb2,
    status_pb2,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from otel_llm.collector.telemetry import CollectorMetrics

_logger = logging.getLogger(__name__)

Transport = Literal["grpc", "http"]

TRACES_PATH = "/v1/traces"
_GRPC_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# The Python SDK's gRPC exporter reads a bare RetryInfo under this key (exporter.py in
# opentelemetry-exporter-otlp-proto-grpc); others (Go, Java) read the standard status details.
_PYTHON_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class Refused(Exception):
    """Raised by ``accept``: the request was not taken; the client should send it again."""

    def __init__(self, reason: str, retry_after: float, message: str):
        super().__init__(message)
        self.reason = reason
        """``queue_full`` or ``shutting_down`` (a label of the refused counter)."""
        self.retry_after = retry_after
        self.message = message


class TooLarge(ValueError):
    """The request (or what it decompresses to) is larger than the limit."""


class UnsupportedEncoding(ValueError):
    """A Content-Encoding other than gzip, deflate and identity."""


Accept = Callable[[ExportTraceServiceRequest, bytes | None, Transport], None]
"""Takes a decoded request, its protobuf bytes as received (None for JSON: the caller
serializes) and the transport; returns once the request is accepted, or raises ``Refused``."""


# --- decoding -----------------------------------------------------------------------------------


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded from its Content-Encoding (``gzip``, ``deflate`` or ``identity``),
    never producing more than ``limit`` bytes: a small gzip bomb must not fill the memory.

    Raises ``TooLarge``, ``UnsupportedEncoding`` or ``zlib.error`` (corrupt data).
    """
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise UnsupportedEncoding(f"unsupported content encoding {encoding!r}")
    parts: list[bytes] = []
    size = 0
    data = body
    while data:  # gzip allows several members one after the other
        inflater = zlib.decompressobj(wbits)
        part = inflater.decompress(data, limit + 1 - size)
        size += len(part)
        if size > limit or inflater.unconsumed_tail:
            raise TooLarge(f"the request decompresses to more than {limit} bytes")
        parts.append(part)
        if not inflater.eof:
            raise zlib.error("truncated compressed data")
        data = inflater.unused_data if encoding == "gzip" else b""
    return b"".join(parts)


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """An OTLP/JSON request: as protobuf's JSON mapping, except that trace and span ids are
    hex strings (not base64), and unknown fields are ignored (the OTLP specification)."""
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("an OTLP/JSON request is a JSON object")
    for resource_spans in _items(document, "resourceSpans", "resource_spans"):
        for scope_spans in _items(resource_spans, "scopeSpans", "scope_spans"):
            for span in _items(scope_spans, "spans"):
                _hex_ids(span, "traceId", "trace_id", "spanId", "span_id")
                _hex_ids(span, "parentSpanId", "parent_span_id")
                for link in _items(span, "links"):
                    _hex_ids(link, "traceId", "trace_id", "spanId", "span_id")
    request = ExportTraceServiceRequest()
    json_format.ParseDict(document, request, ignore_unknown_fields=True)
    return request


def _items(container: Any, *names: str) -> list[Any]:
    if not isinstance(container, dict):
        raise ValueError("expected a JSON object")
    for name in names:
        value = container.get(name)
        if value is not None:
            if not isinstance(value, list):
                raise ValueError(f"{name} must be a list")
            return value
    return []


def _hex_ids(container: dict[str, Any], *names: str) -> None:
    for name in names:
        value = container.get(name)
        if isinstance(value, str):
            # bytes.fromhex raises ValueError on anything but hex digits: a 400, not a guess.
            container[name] = base64.b64encode(bytes.fromhex(value)).decode("ascii")


def status_message(code: int, message: str, retry_after: float | None = None) -> status_pb2.Status:
    """A ``google.rpc.Status`` (the OTLP error body), with a RetryInfo when to retry is known."""
    status = status_pb2.Status(code=code, message=message)
    if retry_after is not None:
        detail = AnyMessage()
        detail.Pack(retry_info(retry_after))
        status.details.append(detail)
    return status


def retry_info(retry_after: float) -> error_details_pb2.RetryInfo:
    seconds = math.floor(retry_after)
    delay = duration_pb2.Duration(seconds=seconds, nanos=int((retry_after - seconds) * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


# --- gRPC ---------------------------------------------------------------------------------------


class GrpcReceiver:
    """``TraceService/Export`` on grpcio, with a bounded thread pool.

    grpcio's own message limit is set to twice ``max_request_bytes``: a message between the two
    reaches the handler, which refuses it with ``RESOURCE_EXHAUSTED`` and counts it; grpcio
    refuses anything larger itself (also ``RESOURCE_EXHAUSTED``), before it is read whole.
    """

    def __init__(
        self,
        accept: Accept,
        metrics: CollectorMetrics,
        *,
        endpoint: str,
        max_request_bytes: int,
        workers: int = 8,
    ):
        self._accept = accept
        self._metrics = metrics
        self._endpoint = endpoint
        self._max_request_bytes = max_request_bytes
        self._workers = workers
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self.port = 0

    def start(self) -> int:
        """Bind and serve; returns the bound port. Raises OSError when the address is taken."""
        self._executor = futures.ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix="otel-llm-grpc"
        )
        limit = 2 * self._max_request_bytes
        server = grpc.server(
            self._executor,
            options=[
                ("grpc.max_receive_message_length", limit),
                # One port, one service: a second process on it would split the traffic.
                ("grpc.so_reuseport", 0),
            ],
            # Beyond this, grpcio itself answers RESOURCE_EXHAUSTED: requests waiting for a
            # thread hold their messages in memory, so their number is bounded too.
            maximum_concurrent_rpcs=self._workers * 4,
        )
        handler = grpc.unary_unary_rpc_method_handler(
            self._export,
            # Raw bytes in and out: a malformed message must be answered INVALID_ARGUMENT,
            # which grpcio's own deserialization failure does not do, and an unchanged request
            # can be queued as it came.
            request_deserializer=None,
            response_serializer=None,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(_GRPC_SERVICE, {"Export": handler}),)
        )
        try:
            self.port = server.add_insecure_port(self._endpoint)
        except RuntimeError as exc:
            self._executor.shutdown(wait=False)
            raise OSError(f"cannot listen on {self._endpoint} (gRPC): {exc}") from exc
        server.start()
        self._server = server
        return self.port

    def stop(self, grace: float) -> None:
        """Stop taking requests; wait up to ``grace`` seconds for those being handled."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _export(self, payload: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            return self._handle(payload, context)
        except Exception:
            _logger.exception("otel-llm collector: gRPC export failed")
            return _fail(context, grpc.StatusCode.INTERNAL, "internal error")

    def _handle(self, payload: bytes, context: grpc.ServicerContext) -> bytes:
        # Errors are set on the context, not raised with context.abort: abort raises a bare
        # Exception, indistinguishable from a real failure of this handler.
        if len(payload) > self._max_request_bytes:
            self._metrics.refused("grpc", "too_large")
            message = f"request of {len(payload)} bytes exceeds the limit of "
            message += str(self._max_request_bytes)
            return _fail(context, grpc.StatusCode.RESOURCE_EXHAUSTED, message)
        try:
            request = ExportTraceServiceRequest.FromString(payload)
        except DecodeError as exc:
            self._metrics.refused("grpc", "malformed")
            return _fail(context, grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {exc}")
        try:
            self._accept(request, payload, "grpc")
        except Refused as refused:
            self._metrics.refused("grpc", refused.reason)
            stopping = refused.reason == "shutting_down"
            status = status_message(
                code_pb2.UNAVAILABLE if stopping else code_pb2.RESOURCE_EXHAUSTED,
                refused.message,
                refused.retry_after,
            )
            context.set_trailing_metadata(
                (
                    (_STATUS_DETAILS_KEY, status.SerializeToString()),
                    (_PYTHON_RETRY_INFO_KEY, retry_info(refused.retry_after).SerializeToString()),
                )
            )
            code = grpc.StatusCode.UNAVAILABLE if stopping else grpc.StatusCode.RESOURCE_EXHAUSTED
            return _fail(context, code, refused.message)
        return ExportTraceServiceResponse().SerializeToString()


def _fail(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> bytes:
    context.set_code(code)
    context.set_details(message)
    return b""


# --- HTTP ---------------------------------------------------------------------------------------


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the handlers: a graceful stop drains
    block_on_close = True

    def __init__(self, address: tuple[str, int], receiver: HttpReceiver):
        self.receiver = receiver
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _HttpHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def end_reading(self) -> None:
        """Let every open connection finish: an idle keep-alive connection sees the end of
        its input and closes; one whose request is being handled still gets its answer."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RD)

    def handle_error(self, request: Any, client_address: Any) -> None:
        _logger.exception("otel-llm collector: HTTP connection from %s failed", client_address)


class _HttpHandler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"  # keep-alive: SDK exporters reuse their connection
    timeout = 120  # seconds an idle keep-alive connection (and its thread) is kept
    server_version = "otel-llm-collector"

    def do_POST(self) -> None:  # http.server's naming
        receiver = self.server.receiver
        as_json = self._content_type() == JSON
        try:
            receiver.handle_post(self, as_json)
        except Exception:
            _logger.exception("otel-llm collector: HTTP export failed")
            self.close_connection = True
            with contextlib.suppress(OSError):  # the client may be gone already
                self.reply(500, status_message(code_pb2.INTERNAL, "internal error"), as_json)

    def do_GET(self) -> None:
        self._not_post()

    def do_PUT(self) -> None:
        self._not_post()

    def do_DELETE(self) -> None:
        self._not_post()

    def do_PATCH(self) -> None:
        self._not_post()

    def do_HEAD(self) -> None:
        self._not_post()

    def _not_post(self) -> None:
        self.close_connection = True  # a body we do not read must not be taken for a request
        as_json = self._content_type() == JSON
        self.server.receiver.metrics.refused("http", "malformed")
        if self.path.split("?", 1)[0] == TRACES_PATH:
            status = status_message(code_pb2.UNIMPLEMENTED, "only POST")
            self.reply(405, status, as_json, {"Allow": "POST"})
        else:
            self.reply(404, status_message(code_pb2.NOT_FOUND, "not found"), as_json)

    def _content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    def reply(
        self,
        code: int,
        message: Message,
        as_json: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        if as_json:
            body = json_format.MessageToJson(message, indent=None).encode()
        else:
            body = message.SerializeToString()
        self.send_response(code)
        self.send_header("Content-Type", JSON if as_json else PROTOBUF)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: refusals are counted in metrics, not logged per request."""


class HttpReceiver:
    """``POST /v1/traces`` (OTLP/HTTP): binary protobuf or JSON, gzip or deflate encoded.

    Answers in the request's content type: 200 with an ``ExportTraceServiceResponse``; 400
    malformed, 413 too large, 415 unsupported content type or encoding, 404 other paths, 405
    other methods, 503 with ``Retry-After`` when ``accept`` refuses -- each with a
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
    ):
        self._accept = accept
        self.metrics = metrics
        self._endpoint = endpoint
        self._max_request_bytes = max_request_bytes
        # ThreadingHTTPServer starts a thread per connection; requests being handled at once
        # are bounded so a flood gets 503s instead of exhausting memory.
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> int:
        host, port = split_endpoint(self._endpoint)
        self._server = _HttpServer((host, port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="otel-llm-http",
            daemon=True,
        )
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop taking connections and wait for the requests being handled."""
        if self._server is not None:
            self._server.shutdown()
            self._server.end_reading()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def handle_post(self, handler: _HttpHandler, as_json: bool) -> None:
        try:
            body = self._read_body(handler)
            request, payload = self._decode(handler, body, as_json)
        except _HttpRefusal as refusal:
            if not refusal.keep_alive:  # the body was not read: the connection cannot go on
                handler.close_connection = True
            self.metrics.refused("http", refusal.reason)
            if refusal.code:
                rpc_code = _RPC_CODES.get(refusal.code, code_pb2.UNKNOWN)
                handler.reply(refusal.code, status_message(rpc_code, str(refusal)), as_json)
            return
        if not self._slots.acquire(blocking=False):
            self._busy(handler, "queue_full", "too many requests at once", 1.0, as_json)
            return
        try:
            self._accept(request, payload, "http")
        except Refused as refused:
            self._busy(handler, refused.reason, refused.message, refused.retry_after, as_json)
            return
        finally:
            self._slots.release()
        handler.reply(200, ExportTraceServiceResponse(), as_json)

    def _read_body(self, handler: _HttpHandler) -> bytes:
        if handler.path.split("?", 1)[0] != TRACES_PATH:
            raise _HttpRefusal(404, "malformed", "not found")
        content_type = handler._content_type()
        if content_type not in (PROTOBUF, JSON):
            message = f"unsupported content type {content_type!r}"
            raise _HttpRefusal(415, "unsupported_media_type", message)
        length_header = handler.headers.get("Content-Length")
        if length_header is None:
            # Chunked bodies are not read: OTLP exporters send the length.
            raise _HttpRefusal(411, "malformed", "Content-Length required")
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            raise _HttpRefusal(400, "malformed", "bad Content-Length")
        if length > self._max_request_bytes:
            # Refused before reading: the connection closes instead of taking the body.
            message = f"request of {length} bytes exceeds the limit of {self._max_request_bytes}"
            raise _HttpRefusal(413, "too_large", message)
        body = handler.rfile.read(length)
        if len(body) < length:  # the client went away mid-body: nobody to answer
            raise _HttpRefusal(0, "malformed", "truncated body")
        return body

    def _decode(
        self, handler: _HttpHandler, body: bytes, as_json: bool
    ) -> tuple[ExportTraceServiceRequest, bytes | None]:
        encoding = handler.headers.get("Content-Encoding", "identity").strip().lower()
        try:
            body = decompress(body, encoding, self._max_request_bytes)
            if as_json:
                return parse_json(body), None
            return ExportTraceServiceRequest.FromString(body), body
        except TooLarge as exc:
            raise _HttpRefusal(413, "too_large", str(exc), keep_alive=True) from None
        except zlib.error as exc:
            message = f"bad {encoding} data: {exc}"
            raise _HttpRefusal(400, "malformed", message, keep_alive=True) from None
        except UnsupportedEncoding as exc:
            raise _HttpRefusal(415, "unsupported_media_type", str(exc), keep_alive=True) from None
        except (DecodeError, json_format.ParseError, ValueError, TypeError) as exc:
            message = f"malformed request: {exc}"
            raise _HttpRefusal(400, "malformed", message, keep_alive=True) from None

    def _busy(
        self, handler: _HttpHandler, reason: str, message: str, retry_after: float, as_json: bool
    ) -> None:
        self.metrics.refused("http", reason)
        status = status_message(code_pb2.UNAVAILABLE, message, retry_after)
        handler.reply(503, status, as_json, {"Retry-After": _retry_after_header(retry_after)})


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


def _retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))  # whole seconds (RFC 9110)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` (IPv6 as ``[::1]:4318``) as (host, port)."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, got {endpoint!r}")
    return host.strip("[]"), int(port)
