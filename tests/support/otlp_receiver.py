"""A real OTLP trace receiver for tests: gRPC and HTTP/protobuf, on 127.0.0.1.

Why a real one: an in-memory exporter hands the test the very ``ReadableSpan`` objects the
processor produced, so it cannot catch what only the wire shows -- an attribute the OTLP encoder
cannot encode, a dropped count or event a span copy lost, a resource that went missing, an
exporter configured from the environment that talks to the wrong port or protocol. This
receiver decodes exactly what an exporter sent, the way a Collector would.

    with OTLPReceiver() as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True)
        ...
        (span,) = receiver.wait_for_spans(1)

It can also play a troubled upstream for the collector's forwarder: ``script()`` queues the
answers to the next requests (a gRPC code or HTTP status, a RetryInfo or Retry-After, a partial
success, a delay), and ``tls`` makes it require mutual TLS.

    with OTLPReceiver() as upstream:
        upstream.script(Reply(grpc_code=grpc.StatusCode.UNAVAILABLE, retry_after=0.6))
"""

from __future__ import annotations

import gzip
import ssl
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal, Self

import grpc
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.message import DecodeError
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped,unused-ignore]
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PBSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.support.certs import Certs
from tests.support.servers import HOST, Background, GRPCServer, HTTPServer, HTTPServerThread

Transport = Literal["grpc", "http"]

# OTLP numbers kinds from 1 (0 is UNSPECIFIED, which receivers may read as INTERNAL); the API's
# SpanKind numbers them from 0. Status codes share their numbering.
_KINDS = {PBSpan.SpanKind.Value(f"SPAN_KIND_{kind.name}"): kind for kind in SpanKind}
_KINDS[PBSpan.SpanKind.SPAN_KIND_UNSPECIFIED] = SpanKind.INTERNAL


@dataclass(frozen=True)
class ReceivedRequest:
    """One export request as it arrived."""

    transport: Transport
    content_encoding: str
    """The HTTP Content-Encoding (``identity`` when none); ``""`` over gRPC."""
    message: ExportTraceServiceRequest
    payload: bytes
    """The request's bytes as sent (after HTTP decompression)."""
    headers: dict[str, str]
    """gRPC metadata, or HTTP headers (lower case) with the request path as ``:path``."""
    at: float
    """When it arrived, by the receiver's ``clock``."""


@dataclass(frozen=True)
class Reply:
    """How the receiver answers one export request (see ``OTLPReceiver.script``)."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.OK
    http_status: int = 200
    retry_after: float | None = None
    """gRPC: a RetryInfo in the status details; HTTP: a Retry-After header (seconds)."""
    http_date: bool = False
    """Send Retry-After as an HTTP-date instead of seconds."""
    rejected: int = 0
    """Spans reported rejected in a partial success."""
    delay: float = 0.0
    """Seconds to wait before answering (a slow upstream)."""

    def accepts(self, transport: Transport) -> bool:
        return (
            self.grpc_code == grpc.StatusCode.OK if transport == "grpc" else self.http_status == 200
        )


_ACCEPT = Reply()


@dataclass(frozen=True)
class ReceivedEvent:
    """A span event as it arrived (a priced span copy must not lose these)."""

    name: str
    attributes: dict[str, Any]
    dropped_attributes_count: int


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived, decoded into plain Python values."""

    name: str
    trace_id: str
    """32 hex digits, as ``opentelemetry.trace.format_trace_id`` writes it."""
    span_id: str
    parent_span_id: str
    """``""`` for a root span."""
    kind: SpanKind
    status_code: StatusCode
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope_name: str
    events: tuple[ReceivedEvent, ...]
    links: tuple[tuple[str, str], ...]
    """(trace_id, span_id) of each link."""
    dropped_attributes_count: int
    dropped_events_count: int
    dropped_links_count: int
    transport: Transport
    """How the span arrived: tells a test which exporter the environment selected."""


def decode_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as a Python value (arrays as lists, kvlists as dicts)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [decode_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    return getattr(value, kind)


def decode_attributes(attributes: Any) -> dict[str, Any]:
    """A repeated ``KeyValue`` field as a dict."""
    pairs: list[KeyValue] = list(attributes)
    return {pair.key: decode_value(pair.value) for pair in pairs}


def decode_request(request: ExportTraceServiceRequest, transport: Transport) -> list[ReceivedSpan]:
    """Every span of one export request, with its resource's and scope's details."""
    spans = []
    for resource_spans in request.resource_spans:
        resource = decode_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=_KINDS[span.kind],
                        status_code=StatusCode(span.status.code),
                        status_message=span.status.message,
                        attributes=decode_attributes(span.attributes),
                        resource=resource,
                        scope_name=scope_spans.scope.name,
                        events=tuple(
                            ReceivedEvent(
                                event.name,
                                decode_attributes(event.attributes),
                                event.dropped_attributes_count,
                            )
                            for event in span.events
                        ),
                        links=tuple((ln.trace_id.hex(), ln.span_id.hex()) for ln in span.links),
                        dropped_attributes_count=span.dropped_attributes_count,
                        dropped_events_count=span.dropped_events_count,
                        dropped_links_count=span.dropped_links_count,
                        transport=transport,
                    )
                )
    return spans


def _response(rejected: int) -> bytes:
    """A serialized ExportTraceServiceResponse: full success, or ``rejected`` spans refused."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = "scripted rejection"
    return response.SerializeToString()


def _grpc_status(reply: Reply) -> tuple[tuple[str, bytes], ...]:
    """The trailing metadata of a refusal: a google.rpc.Status, with a RetryInfo if asked."""
    status = Status(code=reply.grpc_code.value[0], message="scripted")
    if reply.retry_after is not None:
        info = RetryInfo()
        info.retry_delay.FromNanoseconds(int(reply.retry_after * 1e9))
        detail = AnyProto()
        detail.Pack(info)
        status.details.append(detail)
    return (("grpc-status-details-bin", status.SerializeToString()),)


class _HttpHandler(BaseHTTPRequestHandler):
    """POST /v1/traces with a binary protobuf body, optionally gzip/deflate compressed."""

    server: HTTPServer

    def do_POST(self) -> None:  # http.server's naming
        receiver: OTLPReceiver = self.server.owner
        if self.path.split("?")[0] != "/v1/traces":
            self.send_error(404)
            return
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != "application/x-protobuf":
            self.send_error(415, f"unsupported content type {content_type!r}")
            return
        length = self.headers.get("Content-Length")
        if length is None:  # OTLP exporters send a sized body; chunked would be read as empty
            self.send_error(411)
            return
        body = self.rfile.read(int(length))
        encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
        headers = {key.lower(): value for key, value in self.headers.items()}
        headers[":path"] = self.path
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding != "identity":
                self.send_error(415, f"unsupported content encoding {encoding!r}")
                return
            reply = receiver._arrive("http", encoding, body, headers)
        except (OSError, EOFError, zlib.error, DecodeError) as exc:
            self.send_error(400, f"undecodable body: {exc}")
            return
        receiver._delay(reply)
        answer = _response(reply.rejected) if reply.http_status == 200 else b"scripted"
        self.send_response(reply.http_status)
        if reply.retry_after is not None:
            when = time.time() + reply.retry_after
            value = formatdate(when, usegmt=True) if reply.http_date else reply.retry_after
            self.send_header("Retry-After", str(value))
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: pytest output is for test failures, not access logs."""


class OTLPReceiver(Background):
    """Receives OTLP traces over gRPC and HTTP on 127.0.0.1 until stopped (a context manager).

    ``grpc_port``/``http_port``: fixed ports (a test that brings an upstream back where it was),
    else ephemeral ones. ``tls``: both transports require TLS with a client certificate signed
    by ``tls.ca_cert``. ``clock``: what ``ReceivedRequest.at`` is read from.
    """

    def __init__(
        self,
        grpc_port: int = 0,
        http_port: int = 0,
        *,
        tls: Certs | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fixed_ports = (grpc_port, http_port)
        self._tls = tls
        self._clock = clock
        self._arrived = threading.Condition()
        self._replies: deque[Reply] = deque()
        self._requests: list[ReceivedRequest] = []
        self._spans: list[ReceivedSpan] = []
        self._stopping = threading.Event()
        self._grpc: GRPCServer | None = None
        self._http: HTTPServerThread | None = None
        self.grpc_port = 0
        self.http_port = 0

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Self:
        self._stopping.clear()
        grpc_port, http_port = self._fixed_ports
        self._grpc = GRPCServer(
            self._register, name="otlp-grpc", port=grpc_port, credentials=self._grpc_tls()
        )
        self.grpc_port = self._grpc.port
        self._http = HTTPServerThread(
            _HttpHandler, self, name="otlp-http", port=http_port, tls=self._http_tls()
        )
        self.http_port = self._http.port
        return self

    def stop(self) -> None:
        """Stops both servers (a scripted delay under way ends early) and waits for their
        threads; safe to call twice."""
        self._stopping.set()
        if self._grpc is not None:
            self._grpc.stop()
            self._grpc = None
        if self._http is not None:
            self._http.stop()
            self._http = None

    def _register(self, server: grpc.Server) -> None:
        # No deserializer: the handler gets the bytes as sent, as the HTTP handler does.
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(self._grpc_export)},
        )
        server.add_generic_rpc_handlers((handler,))

    def _grpc_tls(self) -> grpc.ServerCredentials | None:
        if self._tls is None:
            return None
        return grpc.ssl_server_credentials(
            [(self._tls.server_key.read_bytes(), self._tls.server_cert.read_bytes())],
            root_certificates=self._tls.ca_cert.read_bytes(),
            require_client_auth=True,
        )

    def _http_tls(self) -> ssl.SSLContext | None:
        if self._tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._tls.server_cert, self._tls.server_key)
        context.load_verify_locations(self._tls.ca_cert)
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    # --- endpoints ------------------------------------------------------------------------------
    @property
    def grpc_endpoint(self) -> str:
        """``host:port`` for the gRPC exporter's ``endpoint`` (with ``insecure=True``)."""
        return f"{HOST}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """The full traces URL for the HTTP exporter's ``endpoint`` argument."""
        return f"http://{HOST}:{self.http_port}/v1/traces"

    def base_url(self, transport: Transport) -> str:
        """``scheme://host:port`` of one transport (``https`` with ``tls``), as the collector's
        upstream setting names it."""
        scheme = "https" if self._tls else "http"
        port = self.grpc_port if transport == "grpc" else self.http_port
        return f"{scheme}://{HOST}:{port}"

    # --- answers --------------------------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        """Queue answers: each request takes the next one, then requests are accepted."""
        with self._arrived:
            self._replies.extend(replies)

    def _grpc_export(self, payload: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = {key: str(value) for key, value in context.invocation_metadata()}
        try:
            reply = self._arrive("grpc", "", payload, metadata)
        except DecodeError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"undecodable request: {exc}")
        self._delay(reply)
        if reply.grpc_code != grpc.StatusCode.OK:
            context.set_trailing_metadata(_grpc_status(reply))
            context.set_code(reply.grpc_code)
            context.set_details("scripted")
            return b""
        return _response(reply.rejected)

    def _delay(self, reply: Reply) -> None:
        if reply.delay:
            self._stopping.wait(reply.delay)

    # --- what arrived ---------------------------------------------------------------------------
    def _arrive(
        self, transport: Transport, encoding: str, payload: bytes, headers: dict[str, str]
    ) -> Reply:
        """Records one request and takes its answer; the spans of an accepted one become
        ``spans``. DecodeError if ``payload`` is no export request."""
        message = ExportTraceServiceRequest.FromString(payload)
        request = ReceivedRequest(transport, encoding, message, payload, headers, self._clock())
        with self._arrived:
            reply = self._replies.popleft() if self._replies else _ACCEPT
            self._requests.append(request)
            if reply.accepts(transport):
                self._spans.extend(decode_request(message, transport))
            self._arrived.notify_all()
        return reply

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Every span accepted so far, in arrival order."""
        with self._arrived:
            return list(self._spans)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every export request received, refused ones included, in arrival order: for tests
        that need what the decoded view leaves out."""
        with self._arrived:
            return list(self._requests)

    def wait_for_spans(self, n: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Every span received, once there are at least ``n``; AssertionError on timeout.

        Waits on a condition the servers notify, so it returns as soon as the spans are in and
        a test never depends on a guessed sleep."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._spans) >= n, timeout):
                names = [span.name for span in self._spans]
                raise AssertionError(
                    f"expected at least {n} span(s) within {timeout}s, "
                    f"received {len(names)}: {names}"
                )
            return list(self._spans)

    def span(self, name: str, timeout: float = 10.0) -> ReceivedSpan:
        """The one span called ``name``, waiting for it; AssertionError if none or several."""
        with self._arrived:
            self._arrived.wait_for(lambda: any(s.name == name for s in self._spans), timeout)
            matches = [span for span in self._spans if span.name == name]
            if len(matches) != 1:
                names = [span.name for span in self._spans]
                raise AssertionError(f"expected one span {name!r}, received: {names}")
            return matches[0]

    def clear(self) -> None:
        with self._arrived:
            self._requests.clear()
            self._spans.clear()
            self._replies.clear()
