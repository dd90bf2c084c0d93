"""Where the simulated calls become real spans: priced by the processor, kept in memory."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from prometheus_client import CollectorRegistry

from otel_llm import _semconv as sc
from otel_llm.context import llm_context
from otel_llm.demo import ProviderError
from otel_llm.demo.scenario import SimulatedCall
from otel_llm.lifecycle import CallSpan
from otel_llm.manual import llm_call
from otel_llm.processor import LLMSpanProcessor

SERVICE_NAME = "otel-llm-demo"
FEATURE_LABEL = "feature"


def tracer_provider(processor: SpanProcessor, service: str = SERVICE_NAME) -> TracerProvider:
    """A TracerProvider of the demo's own for ``service``, every span handed to ``processor``."""
    # Explicit sampler: an OTEL_TRACES_SAMPLER in the environment must not empty the demo.
    provider = TracerProvider(
        sampler=ALWAYS_ON,
        resource=Resource.create({"service.name": service}),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(processor)
    return provider


@dataclass
class Pipeline:
    """The demo's own TracerProvider -> LLMSpanProcessor -> in-memory exporter, and registry."""

    provider: TracerProvider
    exporter: InMemorySpanExporter
    registry: CollectorRegistry
    processor: LLMSpanProcessor

    @classmethod
    def create(cls) -> Pipeline:
        registry = CollectorRegistry()
        exporter = InMemorySpanExporter()
        processor = LLMSpanProcessor(
            SimpleSpanProcessor(exporter),
            registry=registry,
            extra_labels={FEATURE_LABEL: sc.OTEL_LLM_CONTEXT_FEATURE},
        )
        return cls(tracer_provider(processor), exporter, registry, processor)

    def run(self, calls: Sequence[SimulatedCall]) -> None:
        for call in calls:
            context = llm_context(
                feature=call.feature, user_id=call.user_id, project_id=call.project_id
            )
            # A failed call's error is the application's to handle; its span has error.type.
            with context, contextlib.suppress(ProviderError):
                self._call(call)
        self.provider.force_flush()

    def _call(self, call: SimulatedCall) -> None:
        model, provider = call.model, call.model.provider
        with llm_call(
            provider=provider.name,
            model=model.model,
            stream=call.stream,
            server_address=provider.server_address,
            server_port=443,
            tracer_provider=self.provider,
        ) as handle:
            time.sleep(call.latency_s)
            if call.fails:
                raise provider.error(provider.error_message)
            if call.stream:
                handle.first_chunk()
                time.sleep(call.latency_s / 2)  # the rest of the stream
            report(handle, call)

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def shutdown(self) -> None:
        self.provider.shutdown()


def report(handle: CallSpan, call: SimulatedCall) -> None:
    """What the response of a successful simulated call says: its model, id and usage."""
    handle.set_response(
        model=call.model.response_model,
        id=call.response_id,
        finish_reasons=[call.model.provider.finish_reason],
    )
    handle.set_usage(
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        cache_read_tokens=call.cache_read_tokens or None,
        cache_creation_tokens=call.cache_creation_tokens or None,
        reasoning_tokens=call.reasoning_tokens or None,
    )
