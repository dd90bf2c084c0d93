"""LLMSpanProcessor in front of real OTLP exporters: what arrives at a real receiver.

The processor hands exporters a priced copy of each LLM span; these tests check, on the wire,
that the copy carries the cost and loses nothing the original had, and that other spans pass
through untouched -- over gRPC, HTTP and gzip-compressed HTTP.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, SpanKind, StatusCode, format_span_id, format_trace_id
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor, llm_call
from tests.support.otlp_receiver import OTLPReceiver, ReceivedEvent
from tests.support.pipeline import counter_total

TransportName = Literal["grpc", "http", "http-gzip"]

MTOK = Decimal(1_000_000)
# gpt-4o-mini in the bundled genai-prices data, USD per million tokens.
GPT_4O_MINI_INPUT = Decimal("0.15")
GPT_4O_MINI_CACHED_INPUT = Decimal("0.075")
GPT_4O_MINI_OUTPUT = Decimal("0.60")


def gpt_4o_mini_cost(*, input_tokens: int, output_tokens: int, cache_read_tokens: int) -> Decimal:
    """By hand: input_tokens includes the cached ones, which are charged at the cached rate."""
    uncached = input_tokens - cache_read_tokens
    return (
        uncached * GPT_4O_MINI_INPUT
        + cache_read_tokens * GPT_4O_MINI_CACHED_INPUT
        + output_tokens * GPT_4O_MINI_OUTPUT
    ) / MTOK


EXPECTED_COST = gpt_4o_mini_cost(input_tokens=1000, output_tokens=200, cache_read_tokens=400)


@dataclass
class Exporting:
    """A TracerProvider whose spans go through an LLMSpanProcessor to the receiver."""

    provider: TracerProvider
    processor: LLMSpanProcessor
    registry: CollectorRegistry
    receiver: OTLPReceiver
    transport: TransportName

    def flush(self) -> None:
        assert self.provider.force_flush(10_000), "the exporter did not flush in time"


def make_exporter(transport: TransportName, receiver: OTLPReceiver) -> SpanExporter:
    if transport == "grpc":
        return GrpcSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=10)
    compression = Compression.Gzip if transport == "http-gzip" else Compression.NoCompression
    return HttpSpanExporter(endpoint=receiver.http_endpoint, compression=compression, timeout=10)


@contextmanager
def exporting(
    receiver: OTLPReceiver, transport: TransportName, span_limits: SpanLimits | None = None
) -> Iterator[Exporting]:
    registry = CollectorRegistry()
    processor = LLMSpanProcessor(
        BatchSpanProcessor(make_exporter(transport, receiver)), registry=registry
    )
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout"}), span_limits=span_limits
    )
    provider.add_span_processor(processor)
    try:
        yield Exporting(provider, processor, registry, receiver, transport)
    finally:
        provider.shutdown()


pytestmark = pytest.mark.usefixtures("clean_otel_environment")


@pytest.fixture(params=["grpc", "http", "http-gzip"])
def transport(request: pytest.FixtureRequest) -> TransportName:
    name: TransportName = request.param
    return name


@pytest.fixture
def otlp(receiver: OTLPReceiver, transport: TransportName) -> Iterator[Exporting]:
    with exporting(receiver, transport) as started:
        yield started


def assert_arrived_over(otlp: Exporting) -> None:
    """The spans came by the transport under test (and compressed when asked to be)."""
    requests = otlp.receiver.requests
    assert requests
    expected = {
        "grpc": ("grpc", ""),
        "http": ("http", "identity"),
        "http-gzip": ("http", "gzip"),
    }[otlp.transport]
    assert {(r.transport, r.content_encoding) for r in requests} == {expected}


def test_expected_cost_is_the_hand_computed_one() -> None:
    # (600 * 0.15 + 400 * 0.075 + 200 * 0.60) / 1e6
    assert Decimal("0.00024") == EXPECTED_COST


def test_llm_call_arrives_with_its_cost(otlp: Exporting) -> None:
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=otlp.provider) as handle:
        handle.set_usage(input_tokens=1000, output_tokens=200, cache_read_tokens=400)
    otlp.flush()

    (span,) = otlp.receiver.wait_for_spans(1)
    assert_arrived_over(otlp)
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.resource["service.name"] == "checkout"
    attributes = span.attributes
    assert attributes["gen_ai.usage.cost.amount"] == pytest.approx(float(EXPECTED_COST), rel=1e-9)
    assert isinstance(attributes["gen_ai.usage.cost.amount"], float)
    assert attributes["gen_ai.usage.cost.currency"] == "USD"
    assert attributes["gen_ai.usage.cost.source"] == "local"
    assert attributes["otel_llm.cost.model_id"] == "gpt-4o-mini"
    assert attributes["otel_llm.cost.input"] == pytest.approx(600 * 0.15 / 1e6)
    assert attributes["otel_llm.cost.cache_read"] == pytest.approx(400 * 0.075 / 1e6)
    assert attributes["otel_llm.cost.output"] == pytest.approx(200 * 0.60 / 1e6)
    assert "otel_llm.cost.unpriced_reason" not in attributes
    # What the call reported is still there, with its types.
    assert {
        key: attributes[key]
        for key in (
            "gen_ai.operation.name",
            "gen_ai.provider.name",
            "gen_ai.request.model",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.cache_read.input_tokens",
        )
    } == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 200,
        "gen_ai.usage.cache_read.input_tokens": 400,
    }
    # The same call is measured once.
    assert counter_total(otlp.registry, "gen_ai_client_cost_usd_total") == pytest.approx(
        float(EXPECTED_COST)
    )


def test_plain_spans_pass_through_unchanged_in_the_same_trace(otlp: Exporting) -> None:
    tracer = otlp.provider.get_tracer("app")
    with tracer.start_as_current_span(
        "POST /checkout", kind=SpanKind.SERVER, attributes={"http.request.method": "POST"}
    ) as root:
        root.set_attribute("http.route", "/checkout")
        with llm_call(
            provider="openai", model="gpt-4o-mini", tracer_provider=otlp.provider
        ) as handle:
            handle.set_usage(input_tokens=1000, output_tokens=200, cache_read_tokens=400)
        with tracer.start_as_current_span(
            "SELECT orders",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system.name": "postgresql",
                "db.response.returned_rows": 3,
                "app.ratio": 0.5,
                "app.cached": False,
                "app.tags": ["a", "b"],
            },
        ) as query:
            query.set_status(StatusCode.ERROR, "deadlock")
    otlp.flush()

    spans = {span.name: span for span in otlp.receiver.wait_for_spans(3)}
    assert set(spans) == {"POST /checkout", "chat gpt-4o-mini", "SELECT orders"}
    root_context = root.get_span_context()
    trace_id = format_trace_id(root_context.trace_id)
    assert {span.trace_id for span in spans.values()} == {trace_id}

    server, call, db = spans["POST /checkout"], spans["chat gpt-4o-mini"], spans["SELECT orders"]
    assert server.span_id == format_span_id(root_context.span_id)
    assert server.parent_span_id == ""
    assert call.parent_span_id == server.span_id
    assert db.parent_span_id == server.span_id
    assert db.span_id == format_span_id(query.get_span_context().span_id)

    # The root is the trace's local root: it gains its calls' roll-up, nothing else.
    own = {k: v for k, v in server.attributes.items() if not k.startswith("otel_llm.rollup.")}
    assert own == {"http.request.method": "POST", "http.route": "/checkout"}
    assert server.attributes["otel_llm.rollup.calls"] == 1
    assert server.attributes["otel_llm.rollup.cost.exact"] == str(EXPECTED_COST)
    assert server.kind is SpanKind.SERVER
    assert db.attributes == {
        "db.system.name": "postgresql",
        "db.response.returned_rows": 3,
        "app.ratio": 0.5,
        "app.cached": False,
        "app.tags": ["a", "b"],
    }
    assert (db.status_code, db.status_message) == (StatusCode.ERROR, "deadlock")
    assert not any(name.startswith(("gen_ai.", "otel_llm.")) for name in db.attributes)
    assert call.attributes["gen_ai.usage.cost.amount"] == pytest.approx(float(EXPECTED_COST))


def test_unknown_model_arrives_unpriced_with_the_reason(otlp: Exporting) -> None:
    with llm_call(
        provider="openai", model="no-such-model-xyz", tracer_provider=otlp.provider
    ) as handle:
        handle.set_usage(input_tokens=1000, output_tokens=200)
    otlp.flush()

    (span,) = otlp.receiver.wait_for_spans(1)
    assert span.name == "chat no-such-model-xyz"
    assert "gen_ai.usage.cost.amount" not in span.attributes
    assert "gen_ai.usage.cost.currency" not in span.attributes
    assert span.attributes["otel_llm.cost.unpriced_reason"] == "unknown_model"
    assert span.attributes["gen_ai.usage.input_tokens"] == 1000
    assert counter_total(otlp.registry, "gen_ai_client_cost_usd_total") == 0
    assert counter_total(otlp.registry, "gen_ai_client_unpriced_operations_total") == 1


def test_drops_events_and_links_survive_the_processor(
    receiver: OTLPReceiver, transport: TransportName
) -> None:
    limits = SpanLimits(max_span_attributes=6, max_events=1, max_event_attributes=1, max_links=1)
    with exporting(receiver, transport, span_limits=limits) as otlp:
        tracer = otlp.provider.get_tracer("app")
        links = []
        for name in ("upstream", "other upstream"):
            with tracer.start_as_current_span(name) as upstream:
                links.append(Link(upstream.get_span_context()))

        def span_with_drops(name: str, payload: dict[str, str | int]) -> ReadableSpan:
            # Three attributes too many: the SDK evicts the oldest (the noise) and counts them.
            noise = {f"app.noise.{i}": i for i in range(3)}
            with tracer.start_as_current_span(
                name, kind=SpanKind.CLIENT, attributes=noise, links=links
            ) as span:
                span.set_attributes(payload)
                span.add_event("first chunk", {"index": 0})
                span.add_event("done", {"finish_reason": "stop", "choice": 0})
            assert isinstance(span, ReadableSpan)
            return span

        call = span_with_drops(
            "chat gpt-4o-mini",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 200,
                "gen_ai.usage.cache_read.input_tokens": 400,
            },
        )
        plain = span_with_drops(
            "not a call",
            {"app.a": "a", "app.b": 2, "app.c": "c", "app.d": 4, "app.e": "e", "app.f": 6},
        )
        otlp.flush()

        received = {span.name: span for span in receiver.wait_for_spans(4)}
    priced = received["chat gpt-4o-mini"]
    assert priced.attributes["gen_ai.usage.cost.amount"] == pytest.approx(float(EXPECTED_COST))
    assert dict(call.attributes or {}).items() <= priced.attributes.items()
    assert received["not a call"].attributes == dict(plain.attributes or {})
    for sent in (call, plain):
        arrived = received[sent.name]
        # Not vacuous: the limits did drop something of each kind.
        assert (sent.dropped_attributes, sent.dropped_events, sent.dropped_links) == (3, 1, 1)
        assert sent.events[0].dropped_attributes == 1
        assert arrived.dropped_attributes_count == sent.dropped_attributes
        assert arrived.dropped_events_count == sent.dropped_events
        assert arrived.dropped_links_count == sent.dropped_links
        assert arrived.events == tuple(
            ReceivedEvent(event.name, dict(event.attributes or {}), event.dropped_attributes)
            for event in sent.events
        )
        assert [event.name for event in arrived.events] == ["done"]
        assert arrived.links == tuple(
            (format_trace_id(link.context.trace_id), format_span_id(link.context.span_id))
            for link in sent.links
        )
        newest = received["other upstream"]
        assert arrived.links == ((newest.trace_id, newest.span_id),)


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "application/json"}, b"{}", 415),
        ({"Content-Type": "application/x-protobuf", "Content-Encoding": "br"}, b"", 415),
        ({"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}, b"nope", 400),
        ({"Content-Type": "application/x-protobuf"}, b"\xff\xff\xff", 400),
    ],
)
def test_the_receiver_refuses_what_it_cannot_decode(
    receiver: OTLPReceiver, headers: dict[str, str], body: bytes, status: int
) -> None:
    """The receiver is a test tool: it must fail loudly rather than record an empty request."""
    url = receiver.http_endpoint  # http://127.0.0.1:PORT/v1/traces, built by the receiver
    request = urllib.request.Request(url, body, headers, method="POST")  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert refused.value.code == status
    refused.value.close()
    assert receiver.requests == []
