"""The OTLP/gRPC trace receiver: ``TraceService/Export`` on grpcio.

Every refusal is counted (``CollectorMetrics.refused``); a failure while handling one request is
answered ``INTERNAL`` and never stops the server.

Overload is answered here, not by grpcio: grpcio's own ``maximum_concurrent_rpcs`` answers
``RESOURCE_EXHAUSTED "Concurrent RPC limit exceeded!"`` with no RetryInfo and without telling
this service -- and OTLP exporters (Go, Java) retry ``RESOURCE_EXHAUSTED`` only with a RetryInfo,
so a burst of more than 32 concurrent calls could lose batches. An interceptor admits a call only
while fewer than the limit are waiting for or holding a worker; past it the call gets a refusal
with RetryInfo, counted, answered on a thread of its own so it does not wait behind the calls
admitted. grpcio's limit stays only as a far backstop on the calls it keeps in memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import grpc
from google.protobuf.message import DecodeError

# No stubs for google.rpc (googleapis-common-protos ships none).
from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from otel_llm.collector.codec import (
    BUSY_DECODING,
    Accept,
    DecodingBudget,
    Refused,
    retry_info,
    status_message,
)
from otel_llm.collector.telemetry import CollectorMetrics

__all__ = ["GrpcReceiver"]

_logger = logging.getLogger(__name__)

_GRPC_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
# The Python SDK's gRPC exporter reads a bare RetryInfo under this key (exporter.py in
# opentelemetry-exporter-otlp-proto-grpc); others (Go, Java) read the standard status details.
_PYTHON_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"

_MAX_PENDING_REFUSALS = 1024
"""Calls grpcio may hold beyond the admitted ones, waiting for their refusal to be sent. A
refusal takes microseconds, so reaching it takes a flood far past any exporter's burst; only
then does grpcio answer its own bare ``RESOURCE_EXHAUSTED``, which bounds the memory."""

if TYPE_CHECKING:  # grpc-stubs make it generic; grpcio's class is not subscriptable
    _Interceptor = grpc.ServerInterceptor[bytes, bytes]
else:
    _Interceptor = grpc.ServerInterceptor

_P = ParamSpec("_P")
_T = TypeVar("_T")


class GrpcReceiver:
    """``TraceService/Export`` on grpcio, with a bounded thread pool.

    grpcio's own message limit is set to twice ``max_request_bytes``: a message between the two
    reaches the handler, which refuses it with ``RESOURCE_EXHAUSTED`` and counts it; grpcio
    refuses anything larger itself (also ``RESOURCE_EXHAUSTED``), before it is read whole.

    At most ``4 * workers`` calls are admitted at once (running or waiting for a worker: each
    waiting call may hold its message in memory); more are refused with ``RESOURCE_EXHAUSTED``,
    a RetryInfo of ``retry_after`` seconds, and counted as ``queue_full``.
    """

    def __init__(
        self,
        accept: Accept,
        metrics: CollectorMetrics,
        *,
        endpoint: str,
        max_request_bytes: int,
        workers: int = 8,
        retry_after: float = 1.0,
        decoding: DecodingBudget | None = None,
    ):
        self._accept = accept
        self._decoding = decoding or DecodingBudget.for_requests(max_request_bytes)
        self._metrics = metrics
        self._endpoint = endpoint
        self._max_request_bytes = max_request_bytes
        self._workers = workers
        self._retry_after = retry_after
        self._server: grpc.Server | None = None
        self._executor: _CountingExecutor | None = None
        self._refusals: futures.ThreadPoolExecutor | None = None
        self.port = 0

    def start(self) -> int:
        """Bind and serve; returns the bound port. Raises OSError when the address is taken."""
        self._executor = _CountingExecutor(
            max_workers=self._workers, thread_name_prefix="otel-llm-grpc"
        )
        self._refusals = futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="otel-llm-grpc-refuse"
        )
        admitted = self._workers * 4
        admission = _Admission(self._executor, admitted, _Refusal(self, self._refusals).handler())
        limit = 2 * self._max_request_bytes
        server = grpc.server(
            self._executor,
            interceptors=[admission],
            options=[
                ("grpc.max_receive_message_length", limit),
                # One port, one service: a second process on it would split the traffic.
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=admitted + _MAX_PENDING_REFUSALS,
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
            self._refusals.shutdown(wait=False)
            raise OSError(f"cannot listen on {self._endpoint} (gRPC): {exc}") from exc
        server.start()
        self._server = server
        return self.port

    def stop(self, grace: float) -> None:
        """Stop taking requests; wait up to ``grace`` seconds for those being handled."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        for pool in (self._executor, self._refusals):
            if pool is not None:
                pool.shutdown(wait=True)
        self._executor = self._refusals = None

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
        taken = self._decoding.take(len(payload))
        if not taken:
            return self.refuse(context, "queue_full", BUSY_DECODING, self._retry_after)
        try:
            try:
                request = ExportTraceServiceRequest.FromString(payload)
            except DecodeError as exc:
                self._metrics.refused("grpc", "malformed")
                message = f"malformed request: {exc}"
                return _fail(context, grpc.StatusCode.INVALID_ARGUMENT, message)
            try:
                self._accept(request, payload, "grpc")
            except Refused as refused:
                return self.refuse(context, refused.reason, refused.message, refused.retry_after)
        finally:
            self._decoding.give(taken)
        return ExportTraceServiceResponse().SerializeToString()

    def refuse(
        self, context: grpc.ServicerContext, reason: str, message: str, retry_after: float
    ) -> bytes:
        """Answers a call the client should send again (``RESOURCE_EXHAUSTED``, or
        ``UNAVAILABLE`` while shutting down) with its RetryInfo, and counts it."""
        self._metrics.refused("grpc", reason)
        stopping = reason == "shutting_down"
        status = status_message(
            code_pb2.UNAVAILABLE if stopping else code_pb2.RESOURCE_EXHAUSTED, message, retry_after
        )
        context.set_trailing_metadata(
            (
                (_STATUS_DETAILS_KEY, status.SerializeToString()),
                (_PYTHON_RETRY_INFO_KEY, retry_info(retry_after).SerializeToString()),
            )
        )
        code = grpc.StatusCode.UNAVAILABLE if stopping else grpc.StatusCode.RESOURCE_EXHAUSTED
        return _fail(context, code, message)

    @property
    def retry_after(self) -> float:
        return self._retry_after

    @property
    def pending(self) -> int:
        """Calls admitted and not yet done (queued for a worker or running)."""
        return 0 if self._executor is None else self._executor.pending


def _fail(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> bytes:
    context.set_code(code)
    context.set_details(message)
    return b""


class _CountingExecutor(futures.ThreadPoolExecutor):
    """A thread pool that knows how many of its tasks are not done (queued or running).

    Counted from ``submit`` to the future's completion, not in the handler: grpcio skips the
    handler of a call cancelled while it waited, and a count kept there would leak.
    """

    def __init__(self, max_workers: int, thread_name_prefix: str):
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    def submit(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> futures.Future[_T]:
        future = super().submit(fn, *args, **kwargs)
        with self._lock:
            self._pending += 1
        future.add_done_callback(self._done)  # runs at once if the task is already done
        return future

    def _done(self, _future: futures.Future[_T]) -> None:
        with self._lock:
            self._pending -= 1


class _Admission(_Interceptor):
    """Admits a call while fewer than ``limit`` calls are pending in ``pool``; else hands grpcio
    ``refusal`` instead of the service's handler.

    grpcio calls interceptors on its one polling thread, just before it submits the call to
    ``pool``: the check and the submit cannot interleave with another call's.
    """

    def __init__(
        self, pool: _CountingExecutor, limit: int, refusal: grpc.RpcMethodHandler[bytes, bytes]
    ) -> None:
        self._pool = pool
        self._limit = limit
        self._refusal = refusal

    def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], grpc.RpcMethodHandler[bytes, bytes] | None
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        handler = continuation(handler_call_details)
        if handler is None or self._pool.pending < self._limit:
            return handler  # an unknown method stays grpcio's UNIMPLEMENTED
        return self._refusal


class _Refusal:
    """The handler of a call refused for overload.

    Request-streaming, so the refused message is never read (grpcio reads a unary request
    before calling the handler; a streaming one only when the handler iterates). Run on a pool
    of its own through grpcio's ``experimental_thread_pool`` attribute, so the refusal is sent
    at once rather than after the calls admitted before it; were grpcio to drop that attribute,
    refusals would run on the service's pool, later but the same.
    """

    def __init__(self, receiver: GrpcReceiver, pool: futures.ThreadPoolExecutor):
        self._receiver = receiver
        self.experimental_thread_pool = pool

    def handler(self) -> grpc.RpcMethodHandler[bytes, bytes]:
        return grpc.stream_unary_rpc_method_handler(self)

    def __call__(self, _requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        try:
            message = "too many requests at once; retry later"
            return self._receiver.refuse(context, "queue_full", message, self._receiver.retry_after)
        except Exception:
            _logger.exception("otel-llm collector: gRPC refusal failed")
            return _fail(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded")
