"""``otel-llm demo``: simulated LLM calls, priced and measured, with no network and no API key.

The calls are real ``llm_call`` spans of a TracerProvider of the demo's own, with token counts
drawn from a seeded generator (the same seed gives the same calls and the same costs). They go
through ``LLMSpanProcessor`` into memory and into a fresh Prometheus registry; the summary is
read back from the exported spans, each re-priced with the processor's own price book so that
sums are exact Decimals rather than sums of floats.

The modules follow the run: ``scenario`` (what is simulated), ``pipeline`` (the spans through
the processor), ``summary`` (what they cost), ``report`` (the text), ``command`` (the
subcommand) and ``cli`` (its arguments). ``demo --serve`` goes on from the same scenario:
``traffic`` (a month of its calls, in traces), ``sender`` (as applications' spans over OTLP)
and ``serve`` (the collector and call log they go to). Only this module and ``cli`` load with
``otel-llm``: the rest is imported on first use, so ``otel-llm --version`` does not pay for the
demo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_llm._lazy import lazy_attributes

if TYPE_CHECKING:
    from otel_llm.demo.command import run
    from otel_llm.demo.pipeline import Pipeline
    from otel_llm.demo.report import format_text
    from otel_llm.demo.scenario import (
        BEDROCK_HAIKU,
        CLAUDE_SONNET,
        FEATURES,
        GEMINI_FLASH,
        GPT_4O,
        GPT_4O_MINI,
        UNKNOWN_MODEL,
        Model,
        Provider,
        SimulatedCall,
        plan,
    )
    from otel_llm.demo.summary import TOKEN_KINDS, Row, Summary, UnpricedGroup, summarize


# The simulated providers' errors live here, not in ``scenario``: a failed call's span records
# the class's full name as ``error.type`` (``otel_llm.demo.RateLimitError``), and the demo's
# output shows it.
class ProviderError(Exception):
    """A simulated API error; the span records its class as ``error.type``."""


# Each carries the HTTP status and the provider's error code as the SDKs' errors do
# (``status_code``, ``code``), so a failed span says 429 and ``rate_limit_exceeded`` as a real
# one would.
class RateLimitError(ProviderError):
    """HTTP 429 from OpenAI or Gemini."""

    status_code = 429
    code = "rate_limit_exceeded"


class OverloadedError(ProviderError):
    """HTTP 529 from Anthropic."""

    status_code = 529
    code = "overloaded_error"


class ThrottlingException(ProviderError):
    """Bedrock's throttling error."""

    status_code = 429
    code = "ThrottlingException"


# name -> the module (of this package) that defines it. ``_DECK`` too: the tests check that the
# traffic mix holds every priced model.
_LAZY = {
    "run": "command",
    "Pipeline": "pipeline",
    "format_text": "report",
    **dict.fromkeys(
        (
            "BEDROCK_HAIKU", "CLAUDE_SONNET", "FEATURES", "GEMINI_FLASH", "GPT_4O",
            "GPT_4O_MINI", "UNKNOWN_MODEL", "Model", "Provider", "SimulatedCall", "plan", "_DECK",
        ),
        "scenario",
    ),
    **dict.fromkeys(
        ("TOKEN_KINDS", "Row", "Summary", "UnpricedGroup", "summarize"), "summary"
    ),
}  # fmt: skip

__all__ = [
    "BEDROCK_HAIKU",
    "CLAUDE_SONNET",
    "FEATURES",
    "GEMINI_FLASH",
    "GPT_4O",
    "GPT_4O_MINI",
    "TOKEN_KINDS",
    "UNKNOWN_MODEL",
    "Model",
    "OverloadedError",
    "Pipeline",
    "Provider",
    "ProviderError",
    "RateLimitError",
    "Row",
    "SimulatedCall",
    "Summary",
    "ThrottlingException",
    "UnpricedGroup",
    "format_text",
    "plan",
    "run",
    "summarize",
]


__getattr__ = lazy_attributes(
    __name__, {name: f"{__name__}.{module}" for name, module in _LAZY.items()}
)
