"""A model's prices compiled for the hot path, and the exact cost of one call.

``genai_prices.calc_price`` matches the model and walks its unit registry on every call
(~100 µs). A call only ever reports five token counts, so the prices that can apply are
compiled once per price entry into a ``Rates`` and applied with a handful of Decimal
operations. The result equals genai-prices' own calculation for every model of its snapshot
(tests/test_pricing_oracle.py checks that).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    # genai-prices is loaded with its data on the first price look-up (pricing/book.py).
    from genai_prices import types as gp

_MILLION = Decimal(1_000_000)
_THOUSAND = Decimal(1_000)

# The price keys the five reported token counts (and the request itself) can reach. Every other
# key of genai-prices prices usage a span never reports (audio, images, searches...): its count
# is zero, so it adds nothing.
PRICE_KEYS = (
    "input_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "output_mtok",
    "output_reasoning_mtok",
    "requests_kcount",
)

if TYPE_CHECKING:
    Price = Decimal | gp.TieredPrices


class Cost(NamedTuple):
    """The cost of one call in USD, exact until it is emitted.

    A NamedTuple rather than a frozen dataclass: as immutable, and built in half the time on
    the processor's hot path (a frozen dataclass sets each field through object.__setattr__).
    """

    amount: Decimal
    source: str
    """``local`` (from price data) or ``provider`` (reported by the API)."""
    price_data: str
    """Identity of the prices used, e.g. ``genai-prices 0.2.3``."""
    provider_id: str | None = None
    model_id: str | None = None
    input: Decimal | None = None
    """Uncached input tokens."""
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    output: Decimal | None = None
    """Output tokens, reasoning included."""
    request: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Rates:
    """The prices of one model in force at one time; ``None`` where the model sets no price."""

    input_mtok: Price | None
    cache_read_mtok: Price | None
    cache_write_mtok: Price | None
    output_mtok: Price | None
    output_reasoning_mtok: Price | None
    requests_kcount: Price | None

    @classmethod
    def from_model_price(
        cls, model_price: gp.ModelPrice | None, patch: Mapping[str, Decimal] | None = None
    ) -> Rates:
        """Rates of a genai-prices entry, with the keys of ``patch`` replacing its own."""
        values: dict[str, Any] = {
            key: getattr(model_price, key, None) if model_price is not None else None
            for key in PRICE_KEYS
        }
        values.update(patch or {})
        return cls(**values)

    @property
    def prices_tokens(self) -> bool:
        """The entry sets at least one token price (a free model sets them to 0)."""
        return self.input_mtok is not None or self.output_mtok is not None

    def price(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
        reasoning_tokens: int,
    ) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        """(uncached input, cache read, cache write, output, request) costs in USD.

        Token counts follow the conventions: cached tokens are inside ``input_tokens`` and
        reasoning tokens inside ``output_tokens``. A part without its own price stays in its
        whole and is charged the whole's rate, which is how the providers bill it.
        """
        cache_read = cache_read_tokens if self.cache_read_mtok is not None else 0
        cache_write = cache_write_tokens if self.cache_write_mtok is not None else 0
        reasoning = reasoning_tokens if self.output_reasoning_mtok is not None else 0
        # Tiers are cliffs on the call's total input: past a threshold the tier's rate applies to
        # every token of that kind, output included.
        uncached = input_tokens - cache_read - cache_write
        return (
            _cost(self.input_mtok, uncached, input_tokens) / _MILLION,
            _cost(self.cache_read_mtok, cache_read, input_tokens) / _MILLION,
            _cost(self.cache_write_mtok, cache_write, input_tokens) / _MILLION,
            (
                _cost(self.output_mtok, output_tokens - reasoning, input_tokens)
                + _cost(self.output_reasoning_mtok, reasoning, input_tokens)
            )
            / _MILLION,
            _cost(self.requests_kcount, 1, input_tokens) / _THOUSAND,
        )


def _cost(price: Price | None, count: int, total_input_tokens: int) -> Decimal:
    if price is None or count == 0:
        return Decimal(0)
    if isinstance(price, Decimal):
        return price * count
    rate = price.base  # genai-prices' TieredPrices
    for tier in reversed(price.tiers):
        if total_input_tokens > tier.start:
            rate = tier.price
            break
    return rate * count
