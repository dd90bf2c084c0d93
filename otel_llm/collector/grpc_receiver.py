"""The OTLP/gRPC trace receiver: ``TraceService/Export`` on grpcio.

Every refusal is counted (``CollectorMetrics.refused``); a failure while handling one request is
answered ``INTERNAL`` and never stops the server.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from google.protobuf.message import DecodeError

# No stubs for google.rpc (googleapis-common-protos ships none).
from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from otel_llm.collector.codec import Accept, Refused, retry_info, status_message
from otel_llm.collector.telemetry import CollectorMetrics

__all__ = ["GrpcReceiver"]

_logger = logging.getLogger(__name__)

_GRPC_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
# The Python SDK's gRPC exporter reads a bare RetryInfo under this key (exporter.py in
# opentelemetry-exporter-otlp-proto-grpc); others (Go, Java) read the standard status details.
_PYTHON_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


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
