"""gRPC bursts against the real collector CLI: more concurrent Export calls than it takes at once.

Each refusal must be one an OTLP exporter retries (RESOURCE_EXHAUSTED with a RetryInfo in the
standard status details -- Go and Java exporters retry it only then -- and under the key the
Python SDK reads) and must be counted; and nothing acknowledged may be missing upstream.
grpcio's own concurrency limit answered bare "Concurrent RPC limit exceeded!", uncounted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from prometheus_client import CollectorRegistry

from otel_llm.collector.grpc_receiver import GrpcReceiver
from otel_llm.collector.telemetry import PROM_REFUSED, CollectorMetrics
from tests.support.collector_process import CollectorProcess
from tests.support.otlp_receiver import OTLPReceiver
from tests.test_collector_faults import (
    EXPORT,
    refused,
    request,
    sdk_spans,
    start,
    wait_until_delivered,
)

BURST = 100
SPANS_PER_CALL = 100  # enough that handling a call takes a while, so that the calls overlap
ROUNDS = 10  # bursts tried until one is refused in part: one taken whole proves nothing


def burst(calls: list[Callable[[], None]]) -> None:
    """Runs ``calls`` at once, one thread each, released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], None]) -> None:
        barrier.wait(timeout=30)
        call()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()


def retry_delay(error: grpc.RpcError) -> float | None:
    """The RetryInfo delay in the error's standard status details, None without one."""
    trailers = dict(error.trailing_metadata() or ())
    raw = trailers.get("grpc-status-details-bin")
    if raw is None:
        return None
    status = status_pb2.Status.FromString(raw)
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


def raw_export(
    channel: grpc.Channel,
    first: int,
    acknowledged: set[int],
    errors: list[grpc.RpcError],
    lock: threading.Lock,
) -> Callable[[], None]:
    """One Export call of spans first+1.. over raw gRPC, noting its outcome."""
    export = channel.unary_unary(EXPORT)
    body = request(first, SPANS_PER_CALL).SerializeToString()

    def send() -> None:
        try:
            export(body, timeout=30)
        except grpc.RpcError as error:
            with lock:
                errors.append(error)
            return
        with lock:
            acknowledged.update(range(first + 1, first + SPANS_PER_CALL + 1))

    return send


def test_a_raw_grpc_burst_is_refused_retryably_counted_and_loses_nothing(
    tmp_path: Path, collectors: list[CollectorProcess]
) -> None:
    with OTLPReceiver() as upstream:
        collector = start(collectors, tmp_path, upstream.grpc_port)
        channels = [grpc.insecure_channel(collector.grpc) for _ in range(BURST)]
        try:
            for channel in channels:
                grpc.channel_ready_future(channel).result(timeout=10)
            acknowledged: set[int] = set()
            errors: list[grpc.RpcError] = []
            lock = threading.Lock()
            before = refused(collector, "grpc", "queue_full")
            first = 0
            # Bursts until one is refused in part (the first usually is): a burst that happens
            # to be taken whole proves nothing about the refusals.
            for _ in range(ROUNDS):
                calls = []
                for channel in channels:
                    calls.append(raw_export(channel, first, acknowledged, errors, lock))
                    first += SPANS_PER_CALL
                burst(calls)
                if errors:
                    break
            assert errors, "no burst was refused even in part"
            for error in errors:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                delay = retry_delay(error)
                assert delay is not None, (error.details(), error.trailing_metadata())
                assert delay > 0
                trailers = dict(error.trailing_metadata())
                assert "google.rpc.retryinfo-bin" in trailers  # what the Python SDK reads
            assert refused(collector, "grpc", "queue_full") - before == len(errors)
            assert acknowledged
            wait_until_delivered(upstream, acknowledged)
        finally:
            for channel in channels:
                channel.close()
        assert collector.terminate() == 0


def sdk_export(
    exporter: GrpcSpanExporter,
    spans: list[ReadableSpan],
    results: list[SpanExportResult | None],
    n: int,
) -> Callable[[], None]:
    def export() -> None:
        results[n] = exporter.export(spans)

    return export


SDK_EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.grpc.exporter"


def sdk_was_told_to_retry(caplog: pytest.LogCaptureFixture) -> bool:
    """The SDK exporter logs each refusal it retries as a transient RESOURCE_EXHAUSTED."""
    return any(
        record.name == SDK_EXPORTER_LOGGER and "RESOURCE_EXHAUSTED" in record.getMessage()
        for record in caplog.records
    )


def test_sdk_grpc_exporters_in_a_burst_deliver_every_span_they_were_told_was_accepted(
    tmp_path: Path, collectors: list[CollectorProcess], caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK exporter retries a refusal as told (its own RetryInfo key); every export it
    reports a success is delivered upstream. The SDK encodes its spans in Python, under the
    client's GIL, so its calls alone arrive too spread out to fill the service: a burst of
    pre-encoded raw calls goes with them, and the SDK's log shows one of its calls was refused
    and retried. One gRPC worker (four calls admitted at once): with the default eight, a fast
    machine took ten bursts without refusing an SDK call."""
    caplog.set_level(logging.WARNING, logger=SDK_EXPORTER_LOGGER)
    with OTLPReceiver() as upstream:
        collector = start(collectors, tmp_path, upstream.grpc_port, grpc_workers="1")
        exporters = [
            GrpcSpanExporter(endpoint=collector.grpc, insecure=True, timeout=30)
            for _ in range(BURST)
        ]
        channels = [grpc.insecure_channel(collector.grpc) for _ in range(BURST)]
        accepted: list[ReadableSpan] = []
        try:
            for channel in channels:
                grpc.channel_ready_future(channel).result(timeout=10)
            raw_acknowledged: set[int] = set()
            raw_errors: list[grpc.RpcError] = []
            lock = threading.Lock()
            first = 0
            for round_ in range(ROUNDS):
                batches = [sdk_spans(f"burst-{round_}-{n}", SPANS_PER_CALL) for n in range(BURST)]
                results: list[SpanExportResult | None] = [None] * BURST
                calls = [sdk_export(exporters[n], batches[n], results, n) for n in range(BURST)]
                for channel in channels:
                    calls.append(raw_export(channel, first, raw_acknowledged, raw_errors, lock))
                    first += SPANS_PER_CALL
                burst(calls)
                # Each refusal was retried as told and the retry accepted.
                assert results == [SpanExportResult.SUCCESS] * BURST
                accepted += [span for batch in batches for span in batch]
                if sdk_was_told_to_retry(caplog):
                    break
        finally:
            for exporter in exporters:
                exporter.shutdown()
            for channel in channels:
                channel.close()
        wait_until_delivered(upstream, {span.context.span_id for span in accepted})
        assert sdk_was_told_to_retry(caplog), "no SDK export was refused and retried"
        assert collector.terminate() == 0


def test_calls_cancelled_while_waiting_free_their_place_and_refusals_do_not_wait() -> None:
    """In process, one worker held by a slow ``accept``: the calls waiting behind it and then
    cancelled by their deadline give their place back (grpcio never runs their handler, so a
    count kept in the handler would leak until every call was refused), and an overload
    refusal is answered while the worker is still held."""
    release = threading.Event()
    entered = threading.Event()
    registry = CollectorRegistry()

    def accept(request: ExportTraceServiceRequest, payload: object, transport: str) -> None:
        entered.set()
        release.wait(30)

    receiver = GrpcReceiver(
        accept,
        CollectorMetrics(registry),
        endpoint="127.0.0.1:0",
        max_request_bytes=1 << 20,
        workers=1,  # 4 calls admitted at once
        retry_after=0.25,
    )
    port = receiver.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    export = channel.unary_unary(EXPORT)
    body = request(0, 1).SerializeToString()
    try:
        held = export.future(body, timeout=30)
        assert entered.wait(10)
        waiting = [export.future(body, timeout=2) for _ in range(3)]
        time.sleep(0.5)  # the three have reached the server and wait for the worker
        with pytest.raises(grpc.RpcError) as overloaded:
            export(body, timeout=5)
        assert overloaded.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert retry_delay(overloaded.value) == 0.25
        for call in waiting:
            assert call.exception(10).code() == grpc.StatusCode.DEADLINE_EXCEEDED
        release.set()
        held.result(10)
        # The client has its answer before grpcio's worker is done with the call, and the
        # cancelled calls still pass through the worker: their places are given back soon after.
        deadline = time.monotonic() + 10
        while receiver.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert receiver.pending == 0
        # All four places are free again: four concurrent calls are all taken.
        assert all(call.result(10) == b"" for call in [export.future(body) for _ in range(4)])
        refusals = registry.get_sample_value(
            PROM_REFUSED, {"transport": "grpc", "reason": "queue_full"}
        )
        assert refusals == 1
    finally:
        release.set()
        channel.close()
        receiver.stop(grace=1)
