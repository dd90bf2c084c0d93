"""A fixed set of LLM calls and the Prometheus exposition they produce, to pin the exposition
down byte for byte (tests/test_exposition_golden.py).

The golden files next to the test (tests/data/exposition/) were written by this module running
against the implementation that recorded into prometheus_client's own metric objects (main at
25dad46), before the metrics moved to plain accumulators rendered by a custom Collector:

    PYTHONPATH=/old/checkout python tests/support/exposition_scenario.py tests/data/exposition

so it imports nothing from ``tests`` (run as a script, only ``otel_llm`` comes from
PYTHONPATH). Since then the collector files gained the service's own
``otel_llm_collector_duplicate_spans_total`` (a prometheus_client counter, written by this
module), and nothing else. Time is virtual: ``time.time`` and ``time.monotonic`` are replaced
while the calls are made and the exposition rendered, so ``_created`` samples, exemplar
timestamps and the exemplar throttle (one per second per series and bucket) come out the same
in every run.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

from otel_llm import LLMSpanProcessor

T0_NS = 1_760_000_000_000_000_000  # the calls' start: the same prices in every run
WALL0 = 1_760_000_000.0
MONOTONIC0 = 5_000.0
FEATURE = "otel_llm.context.feature"

FILES = ("processor.txt", "processor.openmetrics", "collector.txt", "collector.openmetrics")


class _Clock:
    """Virtual seconds since the scenario's start; ``advance`` is the only way they pass."""

    def __init__(self) -> None:
        self.elapsed = 0.0

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds

    def time(self) -> float:
        return WALL0 + self.elapsed

    def monotonic(self) -> float:
        return MONOTONIC0 + self.elapsed


@contextlib.contextmanager
def _virtual_time() -> Iterator[_Clock]:
    # Replaced on the time module itself: prometheus_client and otel_llm call time.time() and
    # time.monotonic() through it.
    clock = _Clock()
    saved = time.time, time.monotonic
    time.time, time.monotonic = clock.time, clock.monotonic  # type: ignore[assignment]
    try:
        yield clock
    finally:
        time.time, time.monotonic = saved  # type: ignore[assignment]


class _CountingIds(IdGenerator):
    """Trace ids 1, 2, 3...: the exemplars name the same traces in every run."""

    def __init__(self) -> None:
        self._next = 0

    def generate_span_id(self) -> int:
        self._next += 1
        return self._next

    def generate_trace_id(self) -> int:
        self._next += 1
        return 0xABC0_0000_0000_0000_0000_0000_0000_0000 + self._next


# (service, seconds to advance first, start offset s, duration s, failed, attributes)
_CALLS: list[tuple[str, float, float, float, bool, dict[str, Any]]] = [
    # A priced call with cached input and a response model.
    ("checkout", 0.0, 0.0, 0.35, False, {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 300, "gen_ai.usage.cache_read.input_tokens": 400,
        FEATURE: "search",
    }),
    # The same series within the second: other buckets get exemplars, the counters do not.
    ("checkout", 0.2, 0.2, 0.012, False, {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": 50,
        "gen_ai.usage.output_tokens": 5, FEATURE: "search",
    }),
    # Anthropic with both cache parts.
    ("checkout", 0.2, 0.4, 2.0, False, {
        "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 26_000, "gen_ai.usage.cache_creation.input_tokens": 5_000,
        "gen_ai.usage.cache_read.input_tokens": 20_000, "gen_ai.usage.output_tokens": 700,
        FEATURE: "summarize",
    }),
    # Streamed, with a time to first chunk.
    ("checkout", 0.2, 0.6, 3.1, False, {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.stream": True, "gen_ai.response.time_to_first_chunk": 0.25,
        "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 900, FEATURE: "search",
    }),
    # A model name a client poisoned: cleaned before it becomes a label.
    ("batch-jobs", 0.2, 0.7, 0.4, False, {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o\ud800\x00",
        "gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 2, FEATURE: "search",
    }),
    # The first series 0.9 s after its first call: exemplars only in buckets that had none.
    ("checkout", 0.1, 0.9, 0.5, False, {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": 1500,
        "gen_ai.usage.output_tokens": 200, FEATURE: "search",
    }),
    # Refused before any token: an error type, unpriced for that reason.
    ("checkout", 0.2, 0.8, 0.05, True, {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "error.type": "RateLimitError", FEATURE: "search",
    }),
    # Failed without saying how, yet with usage: _OTHER, priced.
    ("checkout", 0.2, 1.0, 0.5, True, {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 0, FEATURE: "search",
    }),
    # A model nobody prices; its name is the fifth request model: over the cap of 4.
    ("checkout", 0.2, 1.2, 0.08, False, {
        "gen_ai.provider.name": "acme", "gen_ai.request.model": "acme-large",
        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 10, FEATURE: "internal",
    }),
    # No usage at all; no feature either ("" is the fourth feature value, the last under the cap).
    ("checkout", 0.2, 1.4, 0.2, False, {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
    }),
    # Reasoning tokens; a fifth feature value: over the cap.
    ("checkout", 0.2, 1.6, 9.0, False, {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "o3-mini",
        "gen_ai.usage.input_tokens": 500, "gen_ai.usage.output_tokens": 2000,
        "gen_ai.usage.reasoning.output_tokens": 1500, FEATURE: "experiment",
    }),
    # Embeddings: input tokens only.
    ("batch-jobs", 0.2, 1.8, 0.03, False, {
        "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "text-embedding-3-small", "gen_ai.usage.input_tokens": 8000,
        FEATURE: "search",
    }),
    # Values that are not trusted: counted as invalid attributes.
    ("batch-jobs", 0.2, 2.2, 0.1, False, {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": "1200", "gen_ai.usage.output_tokens": -5,
        FEATURE: "search",
    }),
    # The streamed series again, over a second later: fresh exemplars, new trace id.
    ("checkout", 1.5, 3.8, 2.9, False, {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.stream": True, "gen_ai.response.time_to_first_chunk": 0.3,
        "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 950, FEATURE: "search",
    }),
]  # fmt: skip


def processor_expositions() -> tuple[bytes, bytes]:
    """The calls through ``LLMSpanProcessor``: (text format, OpenMetrics)."""
    with _virtual_time() as clock:
        registry = CollectorRegistry()
        processor = LLMSpanProcessor(
            registry=registry, extra_labels={"feature": FEATURE}, max_label_values=4
        )
        ids = _CountingIds()
        providers: dict[str, TracerProvider] = {}
        for service, advance, start, duration, failed, attributes in _CALLS:
            clock.advance(advance)
            provider = providers.get(service)
            if provider is None:
                provider = providers[service] = TracerProvider(
                    resource=Resource.create({"service.name": service}), id_generator=ids
                )
                provider.add_span_processor(processor)
            tracer = provider.get_tracer("other.instrumentation")
            start_ns = T0_NS + int(start * 1e9)
            span = tracer.start_span(
                "chat",
                kind=SpanKind.CLIENT,
                attributes={"gen_ai.operation.name": "chat", **attributes},
                start_time=start_ns,
            )
            if failed:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=start_ns + int(duration * 1e9))
        processor.prometheus.record_error("downstream")
        processor.prometheus.record_error("downstream")
        return generate_latest(registry), openmetrics(registry)


def _otlp_request(
    service: str, spans: list[tuple[int, int, dict[str, Any]]], first_span_id: int = 1
) -> Any:
    # Distinct calls need distinct span ids: the collector counts a (trace id, span id) it has
    # just recorded as a redelivery, not as a call.
    from otel_llm.collector.otlp import set_value  # as collector_expositions' import

    resource_spans = ResourceSpans(scope_spans=[ScopeSpans()])
    resource_spans.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value=service))
    )
    for index, (start_ns, end_ns, attributes) in enumerate(spans, start=1):
        span = resource_spans.scope_spans[0].spans.add()
        span.name = "chat"
        span.trace_id = (0xC011EC7 + index).to_bytes(16, "big")
        span.span_id = (first_span_id + index - 1).to_bytes(8, "big")
        span.start_time_unix_nano = start_ns
        span.end_time_unix_nano = end_ns
        for key, value in attributes.items():
            set_value(span.attributes.add(key=key).value, value)
    return ExportTraceServiceRequest(resource_spans=[resource_spans])


def collector_expositions() -> tuple[bytes, bytes]:
    """The collector service's registry after its enricher recorded OTLP calls, one of them
    without a start time (no duration): (text format, OpenMetrics)."""
    # Imported here: the collector's modules are not what the processor scenario measures.
    from otel_llm.collector import CollectorService

    with _virtual_time() as clock:
        registry = CollectorRegistry()
        service = CollectorService(
            registry=registry,
            extra_labels={"team": "app.team"},
            max_label_values=5,
        )
        chat = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}
        request = _otlp_request(
            "gateway",
            [
                (T0_NS, T0_NS + 700_000_000, {
                    **chat, "gen_ai.request.model": "gpt-4o-mini", "app.team": "search",
                    "gen_ai.usage.input_tokens": 3000, "gen_ai.usage.output_tokens": 120,
                }),
                (0, T0_NS + 10**9, {
                    **chat, "gen_ai.request.model": "gpt-4o", "app.team": "ads",
                    "gen_ai.usage.input_tokens": 40, "gen_ai.usage.output_tokens": 4,
                }),
            ],
        )  # fmt: skip
        service.enricher.enrich(request)
        clock.advance(0.5)
        service.enricher.enrich(
            _otlp_request(
                "gateway",
                [(T0_NS, T0_NS + 1_300_000_000, {**chat, "gen_ai.request.model": "gpt-4o-mini"})],
                first_span_id=3,
            )
        )
        return generate_latest(registry), openmetrics(registry)


def expositions() -> dict[str, bytes]:
    """Every exposition of the scenario, by golden file name."""
    processor_text, processor_om = processor_expositions()
    collector_text, collector_om = collector_expositions()
    bodies = (processor_text, processor_om, collector_text, collector_om)
    return dict(zip(FILES, bodies, strict=True))


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    for name, body in expositions().items():
        (target / name).write_bytes(body)
        print(f"wrote {target / name} ({len(body)} bytes)")
