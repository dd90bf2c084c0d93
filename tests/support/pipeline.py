"""The in-process pipeline most tests run spans through (the ``pipeline`` fixture's value), and the
reading of its metrics: the labels of the tests' usual call, a counter's total."""

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


def chat_labels(**labels: str) -> dict[str, str]:
    """The Prometheus labels of the tests' usual call (an OpenAI gpt-4o-mini chat, no response
    model, no error, of the service ``checkout``), ``labels`` adding or replacing."""
    return {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o-mini",
        "gen_ai_response_model": "",
        "error_type": "",
        "service_name": "checkout",
        **labels,
    }


def counter_total(registry: CollectorRegistry, sample_name: str) -> float:
    """The sum of a counter over all its label sets (0 when it has none)."""
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == sample_name
    )
