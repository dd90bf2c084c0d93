"""The integer pricing path against the Decimal one, and ``Cost`` built from int units.

Flat prices are compiled into int units of 1/divisor USD (``Rates.compiled``) and priced with
ints (``Rates.units``). These tests hold that path to the Decimal path (``Rates.decimal_price``,
itself held to genai-prices by tests/test_pricing_oracle.py): for every flat price of the
snapshot, on a grid of token counts up to the largest the integer path takes, every part, the
total, its float and its nano-USD are the same.
"""

from __future__ import annotations

import pickle
from datetime import date, time, timedelta, timezone
from decimal import Decimal, localcontext
from fractions import Fraction
from itertools import product

import pytest
from genai_prices import types as gp
from hypothesis import given
from hypothesis import strategies as st

from otel_llm.calllog.record import to_nanos
from otel_llm.pricing import Cost, PriceBook
from otel_llm.pricing.book import _changes_on_whole_seconds
from otel_llm.pricing.rates import PRICE_KEYS, Rates
from tests.test_pricing import make_call, priced
from tests.test_pricing_oracle import ALL_PRICES, PriceCase

PICO = 10**12
PER = {key: 10**6 for key in PRICE_KEYS} | {"requests_kcount": 10**3}
"""Tokens (requests) each price is for."""

FLAT = [
    case
    for case in ALL_PRICES
    if not any(isinstance(getattr(case.price, key), gp.TieredPrices) for key in PRICE_KEYS)
]

# (input, output, cache_read, cache_write, reasoning): inside the conventions (parts within their
# wholes) and outside them (a cache larger than the input), small and large.
GRID = [
    (input_tokens, output_tokens, cache_read, cache_write, reasoning)
    for input_tokens, output_tokens in product((0, 1, 1_234, 987_654_321), (0, 1, 777, 10**9))
    for cache_read, cache_write, reasoning in (
        (0, 0, 0),
        (input_tokens // 3, 0, output_tokens // 2),
        (input_tokens // 2, input_tokens // 4, output_tokens),
        (5, 3, 0),
    )
]


def _parts(cost: Cost) -> tuple[Decimal | None, ...]:
    return (cost.input, cost.cache_read, cost.cache_write, cost.output, cost.request)


def _assert_paths_agree(case: PriceCase, rates: Rates, usage: tuple[int, ...]) -> None:
    found = rates.units(*usage)
    assert found is not None, (case.label, usage)
    cost = Cost.of_units(found[:6], found[6], "local", "test", None, None)
    decimals = rates.decimal_price(*usage)
    total = sum(decimals, Decimal(0))
    where = (case.label, usage)
    assert _parts(cost) == decimals, where
    assert cost.amount == total, where
    assert cost.floats() == (float(total), *map(float, decimals)), where
    assert to_nanos(cost.amount) == to_nanos(total), where


def test_every_flat_price_of_the_snapshot_is_compiled_exactly() -> None:
    """Every flat price becomes a whole number of units; the unit is a pico-dollar except for
    the few entries whose prices carry more decimal places (float artefacts in the data)."""
    assert len(FLAT) > 2_000
    finer = []
    for case in FLAT:
        rates = Rates.from_model_price(case.price)
        compiled = rates.compiled
        assert compiled is not None, case.label
        units = (
            compiled.input,
            compiled.cache_read,
            compiled.cache_write,
            compiled.output,
            compiled.reasoning,
            compiled.request,
        )
        for key, unit in zip(PRICE_KEYS, units, strict=True):
            price = getattr(case.price, key)
            if price is None:
                assert unit in (None, 0), (case.label, key)
            else:
                # units per token (request) x divisor == USD per million tokens (thousand requests)
                assert Fraction(unit, compiled.divisor) * PER[key] == Fraction(price), case.label
        if compiled.divisor != PICO:
            assert compiled.divisor > PICO
            finer.append(case.label)
            prices = {key: getattr(case.price, key) for key in PRICE_KEYS}
            assert any(
                Fraction(price) * PICO / PER[key] % 1 != 0
                for key, price in prices.items()
                if price is not None
            ), case.label
    assert len(finer) <= len(FLAT) // 20, finer


def test_the_integer_path_equals_the_decimal_path_for_every_flat_price() -> None:
    compared = 0
    for case in FLAT:
        rates = Rates.from_model_price(case.price)
        for usage in GRID:
            _assert_paths_agree(case, rates, usage)
            compared += 1
    assert compared == len(FLAT) * len(GRID) > 100_000


def test_at_the_bound_the_paths_still_agree_and_past_it_the_decimal_path_prices() -> None:
    """The bound is where the Decimal path, in its 28 digits, could start rounding: right below
    it the integer path is still identical; at it, the call goes to the Decimal path."""
    for case in FLAT:
        rates = Rates.from_model_price(case.price)
        assert rates.compiled is not None
        bound = rates.compiled.bound
        # Every count at its largest: cache parts larger than the input, the worst magnitudes.
        _assert_paths_agree(case, rates, (bound - 1,) * 5)
        for usage in ((bound, 0, 0, 0, 0), (0, 0, 0, 0, bound), (-1, 0, 0, 0, 0)):
            assert rates.units(*usage) is None


def test_a_call_too_large_for_28_digits_is_priced_as_genai_prices_would() -> None:
    # 10**25 input tokens at $2.5 per million: the Decimal path rounds to 28 digits there.
    call = make_call("gpt-4o", input_tokens=10**25 + 1, output_tokens=1)
    cost = priced(call)
    assert cost.units is None
    rates = Rates.from_model_price(PriceBook().resolve("openai", "gpt-4o").model.prices)  # type: ignore[union-attr]
    assert cost.amount == sum(rates.decimal_price(10**25 + 1, 1, 0, 0, 0), Decimal(0))


def test_the_book_prices_flat_entries_on_the_integer_path_and_tiers_on_the_decimal_one() -> None:
    flat = priced(
        make_call("gpt-4o-mini", input_tokens=10_000, output_tokens=500, cache_read=4_000)
    )
    assert flat.units is not None
    assert flat.amount == Decimal("0.0015")
    tiered = priced(make_call("claude-sonnet-4-5", "anthropic", input_tokens=200_001))
    assert tiered.units is None
    assert tiered.input == Decimal("1.200006")


def test_an_override_price_with_many_decimals_gets_a_finer_unit() -> None:
    rates = Rates.from_model_price(
        None, {"input_mtok": Decimal("0.123456789123"), "output_mtok": Decimal("1E+1")}
    )
    assert rates.compiled is not None
    assert rates.compiled.divisor == 10**18
    found = rates.units(3, 2, 0, 0, 0)
    assert found is not None
    cost = Cost.of_units(found[:6], found[6], "local", "test", None, None)
    assert cost.amount == Decimal("0.000000370370367369") + Decimal("0.00002")


def test_prices_that_are_not_flat_finite_numbers_are_not_compiled() -> None:
    tiered = gp.TieredPrices(base=Decimal(1), tiers=[gp.Tier(start=10, price=Decimal(2))])
    for price in (tiered, Decimal("Infinity"), Decimal("NaN")):
        rates = Rates(price, None, None, Decimal(1), None, None)  # type: ignore[arg-type]
        assert rates.compiled is None
        assert rates.units(1, 1, 0, 0, 0) is None


# --- Cost -------------------------------------------------------------------------------------


def _pair() -> tuple[Cost, Cost]:
    units = Cost.of_units((2_200, 1_000, 500, 0, 700, 0), PICO, "local", "genai", "openai", "m")
    decimals = Cost(
        amount=Decimal("2.2E-9"),
        source="local",
        price_data="genai",
        provider_id="openai",
        model_id="m",
        input=Decimal("1E-9"),
        cache_read=Decimal("5E-10"),
        cache_write=Decimal(0),
        output=Decimal("7E-10"),
        request=Decimal(0),
    )
    return units, decimals


def test_a_cost_from_units_is_the_same_cost_as_one_from_decimals() -> None:
    units, decimals = _pair()
    assert units == decimals
    assert hash(units) == hash(decimals)
    assert repr(units) == repr(decimals)
    assert units.amount == Decimal("0.0000000022")
    assert units.floats() == decimals.floats() == (2.2e-9, 1e-9, 5e-10, 0.0, 7e-10, 0.0)
    assert units.amount_float == decimals.amount_float == 2.2e-9
    assert units.units == ((2_200, 1_000, 500, 0, 700, 0), PICO)
    assert decimals.units is None
    assert units != Cost.of_units(
        (2_201, 1_001, 500, 0, 700, 0), PICO, "local", "genai", None, None
    )
    restored = pickle.loads(pickle.dumps(units))  # noqa: S301 - our own bytes
    assert restored == units
    assert isinstance(restored.amount, Decimal)


def test_a_cost_is_read_only() -> None:
    cost, _ = _pair()
    with pytest.raises(AttributeError):
        cost.amount = Decimal(1)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cost.extra = 1  # type: ignore[attr-defined]


def test_a_provider_cost_has_no_parts() -> None:
    cost = Cost(Decimal("0.5"), "provider", "provider")
    assert cost.floats() == (0.5, None, None, None, None, None)
    assert cost.input is None
    assert cost.units is None


def test_decimals_from_units_ignore_the_callers_decimal_context() -> None:
    cost, _ = _pair()
    with localcontext() as context:
        context.prec = 2
        assert cost.amount == Decimal("0.0000000022")
        big = Cost.of_units((123_456_789_123,) * 6, PICO, "local", "x", None, None)
        assert big.amount == Decimal("0.123456789123")


@given(
    units=st.integers(0, 10**28 - 1) | st.integers(0, 2**60),
    places=st.sampled_from([12, 15, 22]),
)
def test_floats_from_units_are_the_floats_of_the_decimals(units: int, places: int) -> None:
    """``units / divisor`` is a correctly rounded int division, so it is ``float(Decimal)``:
    also beyond 2**53, where converting the int to a float first would round twice."""
    cost = Cost.of_units((units,) * 6, 10**places, "local", "x", None, None)
    assert cost.amount_float == float(cost.amount)
    assert cost.floats() == (float(cost.amount),) * 6


def test_time_varying_prices_are_reused_within_a_second_only_when_they_change_on_seconds() -> None:
    """The book keeps the last second's prices of a time-varying entry (its boundaries checked
    by tests/test_pricing_oracle.py); that is only right if no boundary falls inside a second."""
    assert _changes_on_whole_seconds(None)
    assert _changes_on_whole_seconds(gp.StartDateConstraint(start_date=date(2025, 6, 10)))
    whole = gp.TimeOfDateConstraint(start_time=time(16, 30), end_time=time(0, 30))
    assert _changes_on_whole_seconds(whole)
    fraction = gp.TimeOfDateConstraint(start_time=time(16, 30, 0, 500), end_time=time(0, 30))
    assert not _changes_on_whole_seconds(fraction)
    odd_zone = timezone(timedelta(hours=1, microseconds=250))
    shifted = gp.TimeOfDateConstraint(start_time=time(1, tzinfo=odd_zone), end_time=time(2))
    assert not _changes_on_whole_seconds(shifted)
    assert not _changes_on_whole_seconds(object())
