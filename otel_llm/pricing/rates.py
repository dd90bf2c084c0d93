"""A model's prices compiled for the hot path, and the exact cost of one call.

``genai_prices.calc_price`` matches the model and walks its unit registry on every call
(~100 µs). A call only ever reports five token counts, so the prices that can apply are
compiled once per price entry into a ``Rates``. The result equals genai-prices' own
calculation for every model of its snapshot (tests/test_pricing_oracle.py checks that).

Flat prices -- every price of the entry one Decimal, the common case -- are compiled further
into whole units of ``1/divisor`` USD per token (and per request): pricing a call is then a few
int multiplications (~0.1 µs) instead of Decimal ones (~3 µs), and just as exact. The unit is a
pico-dollar unless a price has more decimal places (a few entries of the data carry float
artefacts such as 0.0833333333333333 per million): the entry then gets a finer unit of its own,
so every finite flat price is compiled. Tiered prices keep the Decimal path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from otel_llm.pricing.cost import Cost

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

    Units = tuple[int, int, int, int, int, int, int]
    """(amount, uncached input, cache read, cache write, output, request, divisor): the first six
    in int units, the divisor (a power of ten) making them USD."""

FlatPrices = tuple[int, int | None, int | None, int, int | None, int, int]
"""(input, cache read, cache write, output, reasoning, request, divisor): the flat prices in int
units of ``1/divisor`` USD per token (per request), None where a part has no price of its own."""

_PICO_PLACES = 12
"""Decimal places of the default unit: 10**-12 USD."""

_EXACT_BELOW = 10**28
"""The Decimal path computes in the default context, 28 significant digits: a cost whose
magnitudes reach that would be rounded there, as in genai-prices. The integer path only takes
calls it can price below it, where both are exact and so equal."""


class _Compiled(NamedTuple):
    """A Rates' flat prices in int units of ``1/divisor`` USD per token (per request). A tuple:
    the hot path unpacks it in one step."""

    input: int
    cache_read: int | None
    """None where the entry has no cache-read price: those tokens are charged as input."""
    cache_write: int | None
    output: int
    reasoning: int | None
    request: int
    divisor: int
    bound: int
    """A power of two: with every token count below it, each part is below _EXACT_BELOW."""


@dataclass(frozen=True, slots=True)
class Rates:
    """The prices of one model in force at one time; ``None`` where the model sets no price."""

    input_mtok: Price | None
    cache_read_mtok: Price | None
    cache_write_mtok: Price | None
    output_mtok: Price | None
    output_reasoning_mtok: Price | None
    requests_kcount: Price | None
    compiled: _Compiled | None = field(default=None, init=False, repr=False, compare=False)
    """The integer form, when every price is flat (compiled once, with the Rates)."""
    flat: FlatPrices | None = field(default=None, init=False, repr=False, compare=False)
    """``compiled`` without its bound, as ``flat_units`` takes it (None with it)."""
    prices_tokens: bool = field(default=False, init=False, repr=False, compare=False)
    """The entry sets at least one token price (a free model sets them to 0)."""

    def __post_init__(self) -> None:
        compiled = _compile(self)
        object.__setattr__(self, "compiled", compiled)
        object.__setattr__(self, "flat", None if compiled is None else tuple(compiled[:7]))
        object.__setattr__(
            self, "prices_tokens", self.input_mtok is not None or self.output_mtok is not None
        )

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

    def units(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
        reasoning_tokens: int,
    ) -> Units | None:
        """The cost in int units and their divisor (see ``Units``); None when the prices are not
        all flat or the counts are too large (or negative) for the integer path to match the
        Decimal one."""
        compiled = self.compiled
        if compiled is None:
            return None
        # One test for all five: the OR of non-negative ints is below a power of two exactly
        # when each of them is, and negative when any is negative.
        if not (
            0
            <= (
                input_tokens
                | output_tokens
                | cache_read_tokens
                | cache_write_tokens
                | reasoning_tokens
            )
            < compiled.bound
        ):
            return None
        return flat_units(
            self.flat,  # type: ignore[arg-type]  # compiled: so is flat
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
            reasoning_tokens,
        )

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
        counts = (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
        found = self.units(*counts, reasoning_tokens)
        if found is None:
            return self.decimal_price(*counts, reasoning_tokens)
        cost = Cost.of_units(found[:6], found[6], "", "", None, None)
        parts = (cost.input, cost.cache_read, cost.cache_write, cost.output, cost.request)
        return parts  # type: ignore[return-value]

    def decimal_price(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
        reasoning_tokens: int,
    ) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        """``price`` computed with Decimals only: the path of tiered prices, and the reference
        the integer path is tested against."""
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


def flat_units(  # noqa: PLR0917 - the hot path: positional
    prices: FlatPrices,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    reasoning_tokens: int,
) -> Units:
    """The cost of a call at flat ``prices`` (``Rates.flat``) in int units (see ``Units``), for
    counts that ``Rates.units`` takes: each non-negative and below its ``compiled.bound``.

    The one integer pricing: ``Rates.units`` checks the counts and calls it; the processor's
    one pass calls it directly with the prices it keeps per call shape (``PriceBook.flat_rates``),
    whose counts were checked against ``max_tokens``, below every bound it keeps. ``prices`` is
    an exact tuple, not ``_Compiled``: the interpreter unpacks a tuple in one specialised step,
    a NamedTuple through the generic iteration (~70 ns a call)."""
    (
        input_price,
        cache_read_price,
        cache_write_price,
        output_price,
        reasoning_price,
        request,
        divisor,
    ) = prices
    # The same conventions as price(): a part without its own price stays in its whole.
    cache_read = cache_write = 0
    if cache_read_price is not None and cache_read_tokens:
        cache_read = cache_read_tokens * cache_read_price
    else:
        cache_read_tokens = 0
    if cache_write_price is not None and cache_write_tokens:
        cache_write = cache_write_tokens * cache_write_price
    else:
        cache_write_tokens = 0
    uncached = (input_tokens - cache_read_tokens - cache_write_tokens) * input_price
    if reasoning_price is not None and reasoning_tokens:
        output = (output_tokens - reasoning_tokens) * output_price
        output += reasoning_tokens * reasoning_price
    else:
        output = output_tokens * output_price
    return (
        uncached + cache_read + cache_write + output + request,
        uncached,
        cache_read,
        cache_write,
        output,
        request,
        divisor,
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


def _compile(rates: Rates) -> _Compiled | None:
    """The integer form of ``rates``, or None when a price is tiered (or not a finite number)."""
    # (price, its unit in tokens as a power of ten: per million tokens, per thousand requests)
    prices = (
        (rates.input_mtok, 6),
        (rates.cache_read_mtok, 6),
        (rates.cache_write_mtok, 6),
        (rates.output_mtok, 6),
        (rates.output_reasoning_mtok, 6),
        (rates.requests_kcount, 3),
    )
    places = _PICO_PLACES
    for price, per in prices:
        if price is None:
            continue
        if not isinstance(price, Decimal) or not price.is_finite():
            return None
        # USD per token (request) has -exponent + per decimal places; the unit must hold them.
        exponent = price.as_tuple().exponent
        assert isinstance(exponent, int)  # finite
        places = max(places, per - exponent)
    divisor = 10**places
    units: list[int | None] = []
    for price, per in prices:
        if price is None:
            units.append(None)
            continue
        assert isinstance(price, Decimal)
        numerator, denominator = price.as_integer_ratio()
        # Exact: the unit was chosen finer than the price's last decimal place.
        unit, remainder = divmod(numerator * divisor, denominator * 10**per)
        assert remainder == 0
        units.append(unit)
    input_, cache_read, cache_write, output, reasoning, request = units
    # Each count below bound: |uncached input| < 2 bound, every other count < bound; the parts'
    # magnitudes, summed, stay below _EXACT_BELOW (and so does each part, and the total).
    weight = 2 * abs(input_ or 0) + sum(abs(unit or 0) for unit in units[1:5])
    largest = (_EXACT_BELOW - 1 - abs(request or 0)) // max(weight, 1)
    if largest < 1:
        return None
    bound = 1 << (largest.bit_length() - 1)  # the largest power of two <= largest
    return _Compiled(
        input_ or 0,
        cache_read,
        cache_write,
        output or 0,
        reasoning,
        request or 0,
        divisor,
        bound,
    )
