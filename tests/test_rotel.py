"""Spans from the real OTel SDK pass through Rotel (an independent OTLP peer) intact.

Each span is exported twice by the same TracerProvider: directly to a reference receiver and
through Rotel to a second receiver. What arrives through Rotel must equal, protobuf message for
protobuf message, what the SDK put on the wire -- and the decoded view is checked field by field
too, so a span both paths lost would still fail.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PBSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, format_span_id

from tests.support.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.support.rotel import Rotel, RotelError

ATTRIBUTES: dict[str, Any] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.request.temperature": 0.25,
    "gen_ai.request.stream": True,
    "gen_ai.response.finish_reasons": ["stop", "length"],
    "test.ints": [1, -2, 2**62],
    "test.floats": [0.5, -1e-9],
    "test.bools": [True, False],
    "test.unicode": "prix: 3 € — ok",
    "test.empty": "",
}
RESOURCE: dict[str, str | int] = {
    "service.name": "rotel-interop",
    "service.version": "1.2.3",
    "deployment.id": 7,
}


def _proto_spans(receiver: OTLPReceiver) -> dict[bytes, PBSpan]:
    return {
        span.span_id: span
        for request in receiver.requests
        for resource_spans in request.message.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    }


def _emit(provider: TracerProvider) -> None:
    """A parent with an event and an error status, a GenAI child with links, a plain sibling."""
    tracer = provider.get_tracer("rotel.interop.test", "0.1")
    with tracer.start_as_current_span("checkout", kind=SpanKind.SERVER) as parent:
        parent.add_event("cart.loaded", {"items": 3, "total": 12.5, "currency": "EUR"})
        link_ctx = parent.get_span_context()
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes=ATTRIBUTES,
            links=[Link(link_ctx, {"link.reason": "retry-of", "link.attempt": 2})],
        ) as child:
            child.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "hello"})
            child.add_event("empty")
        with tracer.start_as_current_span("GET /v1/items", kind=SpanKind.INTERNAL):
            pass
        parent.set_status(Status(StatusCode.ERROR, "payment declined"))


def _grpc(direct: str, through: str) -> tuple[SpanExporter, SpanExporter]:
    return (
        GrpcSpanExporter(endpoint=direct, insecure=True),
        GrpcSpanExporter(endpoint=through, insecure=True),
    )


@pytest.fixture
def receivers() -> Iterator[tuple[OTLPReceiver, OTLPReceiver]]:
    with OTLPReceiver() as reference, OTLPReceiver() as downstream:
        yield reference, downstream


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_spans_pass_through_rotel_intact(
    clean_otel_environment: None,
    receivers: tuple[OTLPReceiver, OTLPReceiver],
    protocol: str,
) -> None:
    reference, downstream = receivers
    # gRPC in and out, or HTTP/protobuf in and out (the receiver's HTTP side).
    upstream = f"127.0.0.1:{downstream.grpc_port if protocol == 'grpc' else downstream.http_port}"
    with Rotel(upstream, protocol="grpc" if protocol == "grpc" else "http") as rotel:
        if protocol == "grpc":
            direct, through = _grpc(reference.grpc_endpoint, rotel.grpc_endpoint)
        else:
            direct = HttpSpanExporter(endpoint=reference.http_endpoint)
            through = HttpSpanExporter(endpoint=rotel.http_endpoint)
        provider = TracerProvider(
            sampler=ALWAYS_ON, resource=Resource.create(RESOURCE), shutdown_on_exit=False
        )
        provider.add_span_processor(SimpleSpanProcessor(direct))
        provider.add_span_processor(SimpleSpanProcessor(through))
        try:
            _emit(provider)
            sent = _proto_spans(reference)
            assert len(sent) == 3
            arrived = downstream.wait_for_spans(3, timeout=15)
        finally:
            provider.shutdown()

    assert {span.transport for span in arrived} == {protocol}
    assert len(arrived) == 3, [span.name for span in arrived]
    # Byte-for-byte the spans the SDK sent (ids, times, attributes, events, links, status...).
    received = _proto_spans(downstream)
    assert received.keys() == sent.keys()
    for span_id, span in sent.items():
        assert received[span_id] == span, span.name

    by_name: dict[str, ReceivedSpan] = {span.name: span for span in arrived}
    parent, child = by_name["checkout"], by_name["chat gpt-4o-mini"]
    plain = by_name["GET /v1/items"]
    assert child.attributes == ATTRIBUTES
    assert child.kind is SpanKind.CLIENT
    assert parent.kind is SpanKind.SERVER
    assert plain.kind is SpanKind.INTERNAL
    assert child.trace_id == parent.trace_id == plain.trace_id
    assert child.parent_span_id == parent.span_id
    assert parent.parent_span_id == ""
    assert child.links == ((parent.trace_id, parent.span_id),)
    (link,) = received[bytes.fromhex(child.span_id)].links
    assert {kv.key for kv in link.attributes} == {"link.reason", "link.attempt"}
    assert [event.name for event in child.events] == ["gen_ai.content.prompt", "empty"]
    assert parent.events[0].attributes == {"items": 3, "total": 12.5, "currency": "EUR"}
    assert (parent.status_code, parent.status_message) == (StatusCode.ERROR, "payment declined")
    assert child.status_code is StatusCode.UNSET
    for got in arrived:
        assert got.scope_name == "rotel.interop.test"
        assert {k: got.resource[k] for k in RESOURCE} == RESOURCE
        assert format_span_id(int(got.span_id, 16)) == got.span_id


def test_debug_log_prints_received_spans(receiver: OTLPReceiver) -> None:
    """The debug flags the README documents print each span (a tool for debugging a pipeline)."""
    with Rotel(receiver.grpc_endpoint, debug_traces=True) as rotel:
        exporter = GrpcSpanExporter(endpoint=rotel.grpc_endpoint, insecure=True)
        provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        try:
            with provider.get_tracer("t").start_as_current_span("debug-me-span"):
                pass
        finally:
            provider.shutdown()
        receiver.span("debug-me-span", timeout=15)
        output = rotel.output()
    assert "debug-me-span" in output


def test_stop_ends_the_agent_and_frees_its_ports(receiver: OTLPReceiver) -> None:
    rotel = Rotel(receiver.grpc_endpoint).start()
    pid, port = rotel.pid, rotel.grpc_port
    rotel.stop()
    rotel.stop()  # twice is fine
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, and reaped (no zombie left behind)
    with socket.socket() as probe:  # the port is free again
        probe.bind(("127.0.0.1", port))


def test_a_bad_flag_is_a_clear_error(receiver: OTLPReceiver) -> None:
    with pytest.raises(RotelError, match=r"unexpected argument|error"):
        Rotel(receiver.grpc_endpoint, extra_args=("--no-such-flag",), startup_timeout=5).start()


def test_throughput_benchmark_harness_drains_through_rotel() -> None:
    """The benchmark's harness (load generator -> Rotel -> counting sink) runs and every span
    the generator had accepted reaches the sink, so its Rotel figure measures delivered spans."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "collector_throughput.py"
    flags = ["--only", "rotel", "--json", "--rounds", "1", "--seconds", "1", "--warmup", "0.5"]
    result = subprocess.run(
        [sys.executable, str(script), *flags],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    (only,) = report["rounds"]
    assert only["target"] == "rotel"
    assert only["drained"] is True
    assert only["sink_spans_per_s"] > 1000


def test_batch_max_spans_caps_the_requests_rotel_sends(receiver: OTLPReceiver) -> None:
    """In front of the otel-llm service Rotel must send requests under the service's size limit:
    ``batch_max_spans`` (``--traces-batch-max-size``) splits what it merged. (Rotel splits an
    incoming request in at most two: one of more than twice the cap is dropped, logged "Too
    many batch items split, dropping data" -- so 3 for 5 spans, not 2.)"""
    with Rotel(receiver.grpc_endpoint, batch_max_spans=3) as rotel:
        exporter = GrpcSpanExporter(endpoint=rotel.grpc_endpoint, insecure=True)
        provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
        processor = BatchSpanProcessor(exporter, schedule_delay_millis=60_000)
        provider.add_span_processor(processor)
        try:
            for index in range(5):
                with provider.get_tracer("t").start_as_current_span(f"span-{index}"):
                    pass
            assert processor.force_flush()  # the five spans in one export request
        finally:
            provider.shutdown()
        spans = receiver.wait_for_spans(5, timeout=15)
    assert sorted(span.name for span in spans) == [f"span-{index}" for index in range(5)]
    sizes = [
        sum(len(ss.spans) for rs in request.message.resource_spans for ss in rs.scope_spans)
        for request in receiver.requests
    ]
    assert max(sizes) <= 3, sizes
