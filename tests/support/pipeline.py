"""The in-process pipeline most tests run spans through (the ``pipeline`` fixture's value)."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor


@dataclass
class Pipeline:
    """A TracerProvider whose spans go through an LLMSpanProcessor into memory."""

    provider: TracerProvider
    exporter: InMemorySpanExporter
    registry: CollectorRegistry
    processor: LLMSpanProcessor

    def spans(self):  # type: ignore[no-untyped-def]
        return self.exporter.get_finished_spans()

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)
