"""An application that knows nothing of otel-llm: the plain OpenTelemetry SDK exporting OTLP.

The docker-compose stack runs it as ``example-app``: every ``EXAMPLE_INTERVAL`` seconds it
records a request span with a GenAI chat span inside (the attributes any GenAI instrumentation,
in any language, sets), exported over OTLP/gRPC to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the
Collector). The otel-llm service behind the Collector prices the chat spans; Jaeger shows them
with their cost. ``EXAMPLE_CALLS`` (default: forever) stops it after that many calls.
"""

from __future__ import annotations

import os
import random
import time

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

MODELS = (
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-5"),
    ("gcp.gemini", "gemini-2.5-flash"),
)


def main() -> None:
    calls = int(os.environ.get("EXAMPLE_CALLS", "0"))
    interval = float(os.environ.get("EXAMPLE_INTERVAL", "1"))
    # Endpoint, service name and insecure come from the standard OTEL_* variables.
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("example-app")
    rng = random.Random(1)  # noqa: S311 - made-up token counts, not secrets
    done = 0
    try:
        while calls == 0 or done < calls:
            provider_name, model = rng.choice(MODELS)
            attributes: dict[str, str | int] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider_name,
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": rng.randint(100, 4000),
                "gen_ai.usage.output_tokens": rng.randint(20, 800),
            }
            with (
                tracer.start_as_current_span("POST /answer", kind=SpanKind.SERVER),
                tracer.start_as_current_span(
                    f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes
                ),
            ):
                time.sleep(rng.uniform(0.01, 0.05))
            done += 1
            time.sleep(interval)
    finally:
        provider.shutdown()  # flushes the last batch


if __name__ == "__main__":
    main()
