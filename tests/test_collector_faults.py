"""The collector service under faults, as the real CLI subprocess: an upstream that is down,
a SIGKILL under load, bad requests. Acknowledged means delivered: every span whose export
request got an OK reaches the upstream (at least once), whatever happens in between."""

from __future__ import annotations

import gzip
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from tests.support.collector_process import CollectorProcess
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.ports import free_port

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
FAST_RETRIES = {
    "OTEL_LLM_COLLECTOR_RETRY_INITIAL_BACKOFF": "0.05",
    "OTEL_LLM_COLLECTOR_RETRY_MAX_BACKOFF": "0.3",
}


def request(first: int, count: int = 20) -> ExportTraceServiceRequest:
    """``count`` spans (every 5th a GenAI call) with span ids first..first+count-1."""
    spans = []
    for n in range(first, first + count):
        attributes = [KeyValue(key="n", value=AnyValue(int_value=n))]
        if n % 5 == 0:
            attributes += [
                KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value="chat")),
                KeyValue(key="gen_ai.provider.name", value=AnyValue(string_value="openai")),
                KeyValue(key="gen_ai.request.model", value=AnyValue(string_value="gpt-4o-mini")),
                KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=100)),
                KeyValue(key="gen_ai.usage.output_tokens", value=AnyValue(int_value=10)),
            ]
        now = time.time_ns()
        spans.append(
            Span(
                trace_id=(n + 1).to_bytes(16, "big"),
                span_id=(n + 1).to_bytes(8, "big"),
                name=f"span {n}",
                start_time_unix_nano=now - 1_000_000,
                end_time_unix_nano=now,
                attributes=attributes,
            )
        )
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
    )


class Sender:
    """Sends requests over raw gRPC and remembers exactly which span ids were acknowledged."""

    def __init__(self, endpoint: str):
        self.channel = grpc.insecure_channel(endpoint)
        self.export = self.channel.unary_unary(
            EXPORT, request_serializer=None, response_deserializer=None
        )
        self.acknowledged: set[int] = set()
        self.refused = 0
        self.next = 0

    def send(self, count: int = 20) -> bool:
        first, self.next = self.next, self.next + count
        try:
            self.export(request(first, count).SerializeToString(), timeout=5)
        except grpc.RpcError:
            self.refused += 1
            return False
        self.acknowledged.update(range(first + 1, first + count + 1))
        return True

    def close(self) -> None:
        self.channel.close()


def delivered(receiver: OTLPReceiver) -> set[int]:
    return {int(span.span_id, 16) for span in receiver.spans}


def wait_until_delivered(receiver: OTLPReceiver, wanted: set[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not wanted <= delivered(receiver):
        assert time.monotonic() < deadline, f"{len(wanted - delivered(receiver))} spans missing"
        time.sleep(0.1)


def start(
    collectors: list[CollectorProcess], tmp_path: Path, upstream_port: int, **extra: str
) -> CollectorProcess:
    args = [
        "--grpc-endpoint=127.0.0.1:0",
        "--http-endpoint=127.0.0.1:0",
        "--metrics-endpoint=127.0.0.1:0",
        f"--upstream=127.0.0.1:{upstream_port}",
        "--upstream-insecure",
        f"--queue-dir={tmp_path / 'queue'}",
        "--call-log-store=none",
        *(f"--{flag.replace('_', '-')}={value}" for flag, value in extra.items()),
    ]
    collector = CollectorProcess(args, FAST_RETRIES)
    collectors.append(collector)
    assert collector.grpc, collector.text
    return collector


def metric(collector: CollectorProcess, sample: str) -> float:
    for line in collector.scrape().splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[1])
    raise AssertionError(f"{sample} not exposed")


def refused(collector: CollectorProcess, transport: str, reason: str) -> float:
    """``otel_llm_collector_refused_requests_total`` for one transport and reason."""
    for family in text_string_to_metric_families(collector.scrape()):
        for sample in family.samples:
            if sample.name == "otel_llm_collector_refused_requests_total" and sample.labels == {
                "transport": transport,
                "reason": reason,
            }:
                return float(sample.value)
    raise AssertionError(f"no refused series for {transport}/{reason}")


def test_upstream_down_then_back_loses_no_acknowledged_span(
    tmp_path: Path, collectors: list[CollectorProcess]
) -> None:
    port = free_port()
    collector = start(collectors, tmp_path, port)
    sender = Sender(collector.grpc)
    try:
        for _ in range(10):
            assert sender.send()
        time.sleep(0.5)  # forwarding attempts fail against the closed port
        assert metric(collector, "otel_llm_collector_retried_spans_total") > 0
        assert metric(collector, "otel_llm_collector_forwarded_spans_total") == 0
        with OTLPReceiver(grpc_port=port) as upstream:
            for _ in range(5):
                assert sender.send()
            wait_until_delivered(upstream, sender.acknowledged)
        assert metric(collector, "otel_llm_collector_forwarded_spans_total") >= 300
    finally:
        sender.close()
    assert collector.terminate() == 0


def test_sigkill_under_load_then_restart_delivers_every_acknowledged_span(
    tmp_path: Path, collectors: list[CollectorProcess]
) -> None:
    with OTLPReceiver() as upstream:
        collector = start(collectors, tmp_path, upstream.grpc_port)
        sender = Sender(collector.grpc)
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                sender.send()

        thread = threading.Thread(target=load)
        thread.start()
        try:
            time.sleep(1.0)
            os.kill(collector.process.pid, signal.SIGKILL)
            collector.process.wait(timeout=10)
            time.sleep(0.3)  # requests now fail: not acknowledged, not expected
        finally:
            stop.set()
            thread.join(timeout=10)
            sender.close()
        assert len(sender.acknowledged) > 200, "too little load to mean anything"
        restarted = start(collectors, tmp_path, upstream.grpc_port)
        wait_until_delivered(upstream, sender.acknowledged)
        assert restarted.terminate() == 0


def test_queue_full_refuses_with_retry_signals_and_keeps_what_it_took(
    tmp_path: Path, collectors: list[CollectorProcess]
) -> None:
    port = free_port()
    collector = start(collectors, tmp_path, port, queue_max_bytes="20000")
    sender = Sender(collector.grpc)
    try:
        while sender.send():  # until the bounded queue refuses
            assert sender.next < 10_000
        assert sender.refused == 1
        body = request(10_000).SerializeToString()
        http = urllib.request.Request(
            f"http://{collector.http}/v1/traces",
            data=body,
            headers={"Content-Type": "application/x-protobuf"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(http, timeout=5)  # noqa: S310 - 127.0.0.1
        assert refused.value.code == 503
        assert refused.value.headers["Retry-After"]
        with OTLPReceiver(grpc_port=port) as upstream:
            wait_until_delivered(upstream, sender.acknowledged)
            assert sender.send()  # room again
    finally:
        sender.close()
    assert collector.terminate() == 0


def sdk_spans(service: str, count: int = 10) -> list[ReadableSpan]:
    """Finished spans of a real SDK tracer (every other one a GenAI call)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("faults.sdk")
    for n in range(count):
        attributes: dict[str, str | int] = {"n": n}
        if n % 2 == 0:
            attributes.update(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 100,
                    "gen_ai.usage.output_tokens": 10,
                }
            )
        tracer.start_span(f"{service} {n}", attributes=attributes).end()
    provider.shutdown()
    return list(memory.get_finished_spans())


def test_sdk_exporters_retry_on_back_pressure_and_their_spans_are_delivered(
    tmp_path: Path, collectors: list[CollectorProcess]
) -> None:
    """The SDK's own OTLP exporters, gRPC and HTTP, are refused while the queue is full, retry
    as told (RetryInfo / Retry-After) and succeed once the upstream is back: nothing the SDK
    was told was accepted is missing upstream."""
    port = free_port()
    collector = start(collectors, tmp_path, port, queue_max_bytes="20000")
    sender = Sender(collector.grpc)
    try:
        while sender.send():  # fill the bounded queue: the upstream is down
            assert sender.next < 10_000
    finally:
        sender.close()
    grpc_refused = refused(collector, "grpc", "queue_full")
    batches: dict[str, tuple[SpanExporter, Sequence[ReadableSpan]]] = {
        "grpc": (
            GrpcSpanExporter(endpoint=collector.grpc, insecure=True, timeout=20),
            sdk_spans("sdk-grpc"),
        ),
        "http": (
            HttpSpanExporter(endpoint=f"http://{collector.http}/v1/traces", timeout=20),
            sdk_spans("sdk-http"),
        ),
    }
    results: dict[str, SpanExportResult] = {}

    def export(transport: str) -> None:
        exporter, spans = batches[transport]
        results[transport] = exporter.export(spans)

    threads = [threading.Thread(target=export, args=(t,)) for t in batches]
    for thread in threads:
        thread.start()
    try:
        # Both exporters were refused for a full queue before anything could drain it.
        deadline = time.monotonic() + 10
        while (
            refused(collector, "grpc", "queue_full") <= grpc_refused
            or refused(collector, "http", "queue_full") < 1
        ):
            assert time.monotonic() < deadline, collector.text[-3000:]
            time.sleep(0.05)
        assert not results, results  # still retrying, not given up
        with OTLPReceiver(grpc_port=port) as upstream:
            for thread in threads:
                thread.join(timeout=30)
            assert results == {"grpc": SpanExportResult.SUCCESS, "http": SpanExportResult.SUCCESS}
            sdk_ids = {span.context.span_id for _, spans in batches.values() for span in spans}
            wait_until_delivered(upstream, sender.acknowledged | sdk_ids)
            got = {span.name: span for span in upstream.spans}
            assert got["sdk-http 0"].attributes["gen_ai.usage.cost.amount"] > 0
            assert got["sdk-grpc 1"].resource["service.name"] == "sdk-grpc"
    finally:
        for thread in threads:
            thread.join(timeout=30)
        for exporter, _ in batches.values():
            exporter.shutdown()
    assert collector.terminate() == 0


def json_request(span_id: int) -> bytes:
    """One GenAI span in OTLP/JSON (ids in hex, as the OTLP JSON mapping wants them)."""
    now = time.time_ns()
    attributes = {
        "gen_ai.operation.name": {"stringValue": "chat"},
        "gen_ai.provider.name": {"stringValue": "openai"},
        "gen_ai.request.model": {"stringValue": "gpt-4o-mini"},
        "gen_ai.usage.input_tokens": {"intValue": "100"},
        "gen_ai.usage.output_tokens": {"intValue": "10"},
    }
    span = {
        "traceId": f"{span_id:032x}",
        "spanId": f"{span_id:016x}",
        "name": f"json span {span_id}",
        "kind": 3,
        "startTimeUnixNano": str(now - 1_000_000),
        "endTimeUnixNano": str(now),
        "attributes": [{"key": k, "value": v} for k, v in attributes.items()],
    }
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    return json.dumps(document).encode()


def post(url: str, body: bytes, content_type: str) -> int:
    headers = {"Content-Type": content_type}
    answer = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - 127.0.0.1
    with urllib.request.urlopen(answer, timeout=5) as response:  # noqa: S310 - 127.0.0.1
        return int(response.status)


def test_bad_requests_get_their_codes_and_the_service_keeps_serving(
    tmp_path: Path, collectors: list[CollectorProcess]
) -> None:
    with OTLPReceiver() as upstream:
        collector = start(collectors, tmp_path, upstream.grpc_port, max_request_bytes="10000")
        url = f"http://{collector.http}/v1/traces"
        cases = [
            ("POST", b"\xff\x00garbage", {"Content-Type": "application/x-protobuf"}, 400),
            ("POST", b"{not json", {"Content-Type": "application/json"}, 400),
            ("POST", b"x" * 20_000, {"Content-Type": "application/x-protobuf"}, 413),
            ("POST", b"<xml/>", {"Content-Type": "text/xml"}, 415),
            (
                "POST",
                gzip.compress(request(0).SerializeToString())[:30],
                {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
                400,
            ),
            ("PUT", b"", {"Content-Type": "application/x-protobuf"}, 405),
        ]
        for method, body, headers, code in cases:
            bad = urllib.request.Request(url, data=body, headers=headers, method=method)
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(bad, timeout=5)  # noqa: S310 - 127.0.0.1
            assert answer.value.code == code, (method, headers, answer.value.code)
        sender = Sender(collector.grpc)
        try:
            with pytest.raises(grpc.RpcError) as garbage:
                sender.export(b"\xff\x00garbage", timeout=5)
            assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            # ~15 kB: over the 10 kB limit, refused (and counted) by the service; ~30 kB: over
            # grpcio's own limit (twice the service's), refused before it is read whole.
            for spans in (150, 300):
                with pytest.raises(grpc.RpcError) as oversized:
                    sender.export(request(0, spans).SerializeToString(), timeout=5)
                assert oversized.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, spans
            assert sender.send()  # still serving, over gRPC ...
        finally:
            sender.close()
        # ... and over HTTP, protobuf and JSON.
        assert post(url, request(5000).SerializeToString(), "application/x-protobuf") == 200
        assert post(url, json_request(6001), "application/json") == 200
        wanted = sender.acknowledged | set(range(5001, 5021)) | {6001}
        wait_until_delivered(upstream, wanted)
        json_span = next(s for s in upstream.spans if s.name == "json span 6001")
        assert json_span.trace_id == f"{6001:032x}"
        assert json_span.attributes["gen_ai.usage.cost.amount"] > 0
        # Each refusal counted once, under its reason: bad protobuf, bad JSON, truncated gzip and
        # the wrong method are malformed; grpcio's own refusal is not seen by the service.
        expected = {
            ("http", "malformed"): 4,
            ("http", "too_large"): 1,
            ("http", "unsupported_media_type"): 1,
            ("grpc", "malformed"): 1,
            ("grpc", "too_large"): 1,
            ("grpc", "unsupported_media_type"): 0,
        }
        counted = {key: refused(collector, *key) for key in expected}
        assert counted == expected
        assert collector.terminate() == 0
