"""otel-llm: every LLM call in a traced application visible, priced and alertable.

instrument (``llm_call``) -> span -> ``LLMSpanProcessor`` -> (Prometheus / OTel metrics | export)
"""

from otel_llm._version import __version__
from otel_llm.configure import configure
from otel_llm.context import llm_context
from otel_llm.exposition import start_metrics_server
from otel_llm.manual import LLMCallHandle, current_llm_call, llm_call
from otel_llm.pricing import Cost, OverrideError, PriceBook, PriceOverride, Unpriced
from otel_llm.processor import LLMSpanProcessor

__all__ = [
    "Cost",
    "LLMCallHandle",
    "LLMSpanProcessor",
    "OverrideError",
    "PriceBook",
    "PriceOverride",
    "Unpriced",
    "__version__",
    "configure",
    "current_llm_call",
    "llm_call",
    "llm_context",
    "start_metrics_server",
]
