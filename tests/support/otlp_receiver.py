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
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PBSpan
from opentelemetry.trace import SpanKind, StatusCode

HOST = "127.0.0.1"
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


class _GrpcTraceService(TraceServiceServicer):
    """The collector's TraceService: stores each request, answers full success."""

    def __init__(self, store: Callable[[ReceivedRequest], None]):
        self._store = store

    def Export(  # the generated servicer's name
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        self._store(ReceivedRequest("grpc", "", request))
        return ExportTraceServiceResponse()


class _HttpHandler(BaseHTTPRequestHandler):
    """POST /v1/traces with a binary protobuf body, optionally gzip/deflate compressed."""

    server: _HttpServer

    def do_POST(self) -> None:  # http.server's naming
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
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding != "identity":
                self.send_error(415, f"unsupported content encoding {encoding!r}")
                return
            request = ExportTraceServiceRequest.FromString(body)
        except (OSError, EOFError, zlib.error, DecodeError) as exc:
            self.send_error(400, f"undecodable body: {exc}")
            return
        self.server.store(ReceivedRequest("http", encoding, request))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: pytest output is for test failures, not access logs."""


class _HttpServer(ThreadingHTTPServer):
    def __init__(self, store: Callable[[ReceivedRequest], None]):
        super().__init__((HOST, 0), _HttpHandler)
        self.store = store


class OTLPReceiver:
    """Receives OTLP traces over gRPC and HTTP on ephemeral 127.0.0.1 ports until stopped.

    A context manager; ``stop()`` shuts down both servers and their threads.
    """

    def __init__(self, grpc_port: int = 0) -> None:
        """``grpc_port``: a fixed port (a test that brings an upstream back where it was)."""
        self._fixed_grpc_port = grpc_port
        self._arrived = threading.Condition()
        self._requests: list[ReceivedRequest] = []
        self._spans: list[ReceivedSpan] = []
        self._executor: futures.ThreadPoolExecutor | None = None
        self._grpc_server: grpc.Server | None = None
        self._http_server: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self.grpc_port = 0
        self.http_port = 0

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> OTLPReceiver:
        self._executor = futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-grpc")
        self._grpc_server = grpc.server(self._executor)
        service = _GrpcTraceService(self._store)
        add_TraceServiceServicer_to_server(service, self._grpc_server)  # type: ignore[no-untyped-call]
        self.grpc_port = self._grpc_server.add_insecure_port(f"{HOST}:{self._fixed_grpc_port}")
        self._grpc_server.start()
        self._http_server = _HttpServer(self._store)
        self.http_port = self._http_server.server_address[1]
        # A short poll interval: shutdown() waits up to one interval for the loop to notice.
        self._http_thread = threading.Thread(
            target=self._http_server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="otlp-http",
            daemon=True,
        )
        self._http_thread.start()
        return self

    def stop(self) -> None:
        """Stops both servers and waits for their threads; safe to call twice."""
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait()
            self._grpc_server = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
        if self._http_thread is not None:
            self._http_thread.join()
            self._http_thread = None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- endpoints ------------------------------------------------------------------------------
    @property
    def grpc_endpoint(self) -> str:
        """``host:port`` for the gRPC exporter's ``endpoint`` (with ``insecure=True``)."""
        return f"{HOST}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """The full traces URL for the HTTP exporter's ``endpoint`` argument."""
        return f"http://{HOST}:{self.http_port}/v1/traces"

    # --- what arrived ---------------------------------------------------------------------------
    def _store(self, request: ReceivedRequest) -> None:
        spans = decode_request(request.message, request.transport)
        with self._arrived:
            self._requests.append(request)
            self._spans.extend(spans)
            self._arrived.notify_all()

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in arrival order."""
        with self._arrived:
            return list(self._spans)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """The raw export requests, for tests that need what the decoded view leaves out."""
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
