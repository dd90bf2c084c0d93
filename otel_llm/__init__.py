"""otel-llm: every LLM call in a traced application visible, priced and alertable.

instrument (``llm_call``) -> span -> ``LLMSpanProcessor`` -> (Prometheus / OTel metrics | export)

The public names load on first use (PEP 562): every ``otel_llm.*`` import runs this module
first, so ``otel-llm --version`` or the call log's API must not pay here for the SDK,
prometheus_client and the processor they do not use. (``configure()`` lives in the private
``_configure`` module: a submodule named like a lazy attribute would shadow it once imported.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_llm._lazy import lazy_attributes
from otel_llm._version import __version__

if TYPE_CHECKING:
    from otel_llm._configure import configure
    from otel_llm.context import llm_context
    from otel_llm.enforcement import PolicyBlocked
    from otel_llm.exposition import start_metrics_server
    from otel_llm.manual import LLMCallHandle, current_llm_call, llm_call
    from otel_llm.pricing import Cost, Discount, OverrideError, PriceBook, PriceOverride, Unpriced
    from otel_llm.processor import LLMSpanProcessor

_HOMES = {
    "Cost": "otel_llm.pricing",
    "Discount": "otel_llm.pricing",
    "LLMCallHandle": "otel_llm.manual",
    "LLMSpanProcessor": "otel_llm.processor",
    "OverrideError": "otel_llm.pricing",
    "PolicyBlocked": "otel_llm.enforcement",
    "PriceBook": "otel_llm.pricing",
    "PriceOverride": "otel_llm.pricing",
    "Unpriced": "otel_llm.pricing",
    "configure": "otel_llm._configure",
    "current_llm_call": "otel_llm.manual",
    "llm_call": "otel_llm.manual",
    "llm_context": "otel_llm.context",
    "start_metrics_server": "otel_llm.exposition",
}

__all__ = [
    "Cost",
    "Discount",
    "LLMCallHandle",
    "LLMSpanProcessor",
    "OverrideError",
    "PolicyBlocked",
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


__getattr__ = lazy_attributes(__name__, _HOMES)


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
