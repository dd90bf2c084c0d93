"""Pricing: the cost of one LLM call from genai-prices' data and the user's overrides."""

from otel_llm.pricing.billing import Billing
from otel_llm.pricing.book import PriceBook, Unpriced
from otel_llm.pricing.cost import Cost
from otel_llm.pricing.overrides import (
    Discount,
    OverrideError,
    PriceOverride,
    load_overrides,
    load_price_rules,
)

__all__ = [
    "Billing",
    "Cost",
    "Discount",
    "OverrideError",
    "PriceBook",
    "PriceOverride",
    "Unpriced",
    "load_overrides",
    "load_price_rules",
]
