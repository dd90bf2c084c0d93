"""Pricing: the cost of one LLM call from genai-prices' data and the user's overrides."""

from otel_llm.pricing.book import PriceBook, Unpriced
from otel_llm.pricing.cost import Cost
from otel_llm.pricing.overrides import OverrideError, PriceOverride, load_overrides

__all__ = ["Cost", "OverrideError", "PriceBook", "PriceOverride", "Unpriced", "load_overrides"]
