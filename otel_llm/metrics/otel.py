"""The same GenAI metrics through the OpenTelemetry metrics API, for teams that ship metrics
over OTLP. Attribute names are the conventions' (dots), not Prometheus labels."""

from __future__ import annotations

from typing import Any

from opentelemetry.metrics import MeterProvider

from otel_llm import _semconv as sc
from otel_llm._version import __version__
from otel_llm.derive import Derived
from otel_llm.pricing import Cost
from otel_llm.text import clean_text


class OTelMetricsRecorder:
    """Records derived LLM calls with instruments of the given MeterProvider."""

    def __init__(self, meter_provider: MeterProvider, extra_labels: dict[str, str] | None = None):
        meter = meter_provider.get_meter("otel_llm", __version__)
        self._extra = tuple((extra_labels or {}).values())
        self.duration = meter.create_histogram(
            sc.OTEL_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self.token_usage = meter.create_histogram(
            sc.OTEL_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=[float(b) for b in sc.TOKEN_BUCKETS],
        )
        self.ttfc = meter.create_histogram(
            sc.OTEL_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to the first chunk of streamed GenAI operations.",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self.tokens = meter.create_counter(
            sc.OTEL_TOKENS, unit="{token}", description="Tokens of GenAI operations by type."
        )
        self.cost = meter.create_counter(
            sc.OTEL_COST, unit="USD", description="Cost of GenAI operations in USD."
        )
        self.unpriced = meter.create_counter(
            sc.OTEL_UNPRICED,
            unit="{operation}",
            description="GenAI operations that could not be priced, by reason.",
        )

    def record(self, derived: Derived) -> None:
        call = derived.call
        candidates = (
            (sc.GEN_AI_OPERATION_NAME, call.operation),
            (sc.GEN_AI_PROVIDER_NAME, call.provider),
            (sc.GEN_AI_REQUEST_MODEL, call.request_model),
            (sc.GEN_AI_RESPONSE_MODEL, call.response_model),
            (sc.ERROR_TYPE, derived.error_type),
            *zip(self._extra, derived.extra, strict=True),
        )
        # Cleaned like the Prometheus labels: a lone surrogate would fail the OTLP export of
        # every data point in the batch.
        attributes: dict[str, Any] = {
            name: clean_text(value) for name, value in candidates if value
        }

        if derived.duration is not None:
            self.duration.record(derived.duration, attributes)
        if call.time_to_first_chunk is not None:
            self.ttfc.record(call.time_to_first_chunk, attributes)
        for kind, count in (
            ("input", call.input_tokens),
            ("output", call.output_tokens),
            ("cache_read", call.cache_read_tokens),
            ("cache_creation", call.cache_creation_tokens),
            ("reasoning", call.reasoning_tokens),
        ):
            if count is None or (count == 0 and kind not in ("input", "output")):
                continue
            typed = {**attributes, "gen_ai.token.type": kind}
            if kind in ("input", "output"):
                self.token_usage.record(count, typed)
            self.tokens.add(count, typed)
        if isinstance(derived.priced, Cost):
            self.cost.add(derived.priced.amount_float, attributes)
        else:
            self.unpriced.add(1, {**attributes, "reason": derived.priced.reason})
