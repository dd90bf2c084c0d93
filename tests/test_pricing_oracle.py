"""Our prices against genai-prices' own calculation, for every price of its snapshot.

``Rates`` is a re-implementation of ``genai_prices.types.ModelPrice.calc_price`` restricted to
the five token counts a span reports. genai-prices is the oracle: for every model of every
provider, every conditional (time-dependent) price and every request-context variant, and for a
grid of usages chosen to hit each code path (no usage, cache reads only, cache writes only,
reasoning, and both sides of every tier threshold in the data) plus random usages, the total
must be *exactly* genai-prices' ``total_price`` and the input/output split its
``input_price``/``output_price`` -- on the integer path (``Rates.units``) wherever the prices are
flat, and on the Decimal path (``Rates.decimal_price``) for every price.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import data_snapshot
from genai_prices import types as gp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_llm.call import LLMCall
from otel_llm.pricing import Cost, PriceBook, Unpriced
from otel_llm.pricing.rates import PRICE_KEYS, Rates

Usage5 = tuple[int, int, int, int, int]
"""(input, output, cache_read, cache_write, reasoning), the conventions' inclusive counts."""


@dataclass(frozen=True)
class PriceCase:
    label: str
    price: gp.ModelPrice


def _all_prices() -> list[PriceCase]:
    cases: list[PriceCase] = []
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            where = f"{provider.id}/{model.id}"
            if isinstance(model.prices, gp.ModelPrice):
                cases.append(PriceCase(where, model.prices))
            else:
                for index, conditional in enumerate(model.prices):
                    cases.append(PriceCase(f"{where}[{index}]", conditional.prices))
            # Request-context variants (batch, priority...) merged over the standard price: more
            # ModelPrice shapes for the oracle, although the book itself never selects them.
            for variant in model.price_variants or ():
                merged = model.get_prices(datetime(2100, 1, 1, tzinfo=UTC), variant.when)
                cases.append(PriceCase(f"{where}{variant.when}", merged))
    return cases


ALL_PRICES = _all_prices()


def _tier_starts() -> list[int]:
    starts: set[int] = set()
    for case in ALL_PRICES:
        for key in PRICE_KEYS:
            value = getattr(case.price, key)
            if isinstance(value, gp.TieredPrices):
                starts.update(tier.start for tier in value.tiers)
    return sorted(starts)


TIER_STARTS = _tier_starts()


BASE_GRID: list[Usage5] = [
    (0, 0, 0, 0, 0),
    (1, 0, 0, 0, 0),
    (0, 1, 0, 0, 0),
    (1_000, 500, 0, 0, 0),
    (1_000, 500, 400, 0, 0),  # cache read only
    (1_000, 500, 0, 300, 0),  # cache write only
    (1_000, 500, 400, 300, 0),
    (1_000, 500, 1_000, 0, 0),  # all input from the cache
    (1_000, 0, 0, 1_000, 0),  # all input written to the cache
    (1_000, 500, 0, 0, 200),  # reasoning
    (1_000, 500, 0, 0, 500),  # only reasoning output
    (0, 700, 0, 0, 300),  # reasoning without input
    (3_333, 7_777, 1_111, 999, 4_444),
    (123_456_789, 9_876_543, 23_456_789, 3_456_789, 876_543),  # huge
]


def _tier_grid() -> list[Usage5]:
    grid: list[Usage5] = []
    # Both sides of every tier threshold in the data; a tier applies strictly above its start.
    for start in TIER_STARTS:
        for total in (start - 1, start, start + 1):
            grid.append((total, 1_000, 0, 0, 0))
            grid.append((total, 2_000, total // 4, total // 8, 500))
            grid.append((total, 0, total, 0, 0))
    return grid


TIER_GRID = _tier_grid()


@dataclass(frozen=True)
class Reference:
    total: Decimal
    input: Decimal
    output: Decimal


def _reference(price: gp.ModelPrice, usage: Usage5) -> Reference | None:
    """genai-prices' price of the usage, or None where it refuses the usage (ValueError)."""
    input_tokens, output_tokens, cache_read, cache_write, reasoning = usage
    values = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "output_reasoning_tokens": reasoning,
    }
    try:
        result = price.calc_price(genai_prices.Usage(**{k: v for k, v in values.items() if v}))
    except ValueError:
        return None
    return Reference(result["total_price"], result["input_price"], result["output_price"])


def _check(case: PriceCase, usage: Usage5, rates: Rates | None = None) -> bool:
    """Assert both our paths' prices equal the reference; False when the reference refused the
    usage. The integer path is taken wherever the prices allow it (``INTEGER_PATH`` counts it),
    and the Decimal path is checked for every price, as the fallback it is."""
    reference = _reference(case.price, usage)
    if reference is None:
        return False
    rates = rates or Rates.from_model_price(case.price)
    paths = [rates.decimal_price(*usage)]
    found = rates.units(*usage)
    if found is not None:
        INTEGER_PATH["checked"] += 1
        cost = Cost.of_units(found[:6], found[6], "local", "test", None, None)
        paths.append((cost.input, cost.cache_read, cost.cache_write, cost.output, cost.request))
        if cost.amount != reference.total:
            pytest.fail(f"{case.label} usage={usage}: total {cost.amount} != {reference.total}")
    for parts in paths:
        uncached, cache_read, cache_write, output, request = parts
        total = uncached + cache_read + cache_write + output + request
        if not (
            all(isinstance(part, Decimal) and part >= 0 for part in parts)
            and total == reference.total
            and uncached + cache_read + cache_write == reference.input
            and output == reference.output
            # The request fee is the only part without a direction.
            and request == reference.total - reference.input - reference.output
        ):
            pytest.fail(f"{case.label} {case.price} usage={usage}: ours={parts} ref={reference}")
    return True


INTEGER_PATH = {"checked": 0}


def _flat(price: gp.ModelPrice) -> bool:
    return not any(isinstance(getattr(price, key), gp.TieredPrices) for key in PRICE_KEYS)


@pytest.fixture(autouse=True)
def _no_unknown_key_warnings() -> Iterator[None]:
    # An unknown price or usage key makes genai-prices warn and ignore it; the comparison would
    # then be against a partial price. Turn that into a failure.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        yield


def test_the_snapshot_is_covered() -> None:
    """Guard the oracle against vacuity: the data has the shapes the grid is meant to reach."""
    assert len(ALL_PRICES) > 2_000
    keys_seen = {key for case in ALL_PRICES for key in PRICE_KEYS if getattr(case.price, key)}
    assert keys_seen == set(PRICE_KEYS)
    assert 200_000 in TIER_STARTS
    assert any(
        isinstance(getattr(case.price, key), gp.TieredPrices)
        for case in ALL_PRICES
        for key in ("cache_read_mtok", "cache_write_mtok", "output_mtok")
    )
    conditional = [case for case in ALL_PRICES if case.label.endswith("]")]
    variants = [case for case in ALL_PRICES if case.label.endswith("}")]
    assert len(conditional) > 400
    assert len(variants) > 100


def test_every_price_on_the_grid() -> None:
    checked = skipped = 0
    INTEGER_PATH["checked"] = 0
    flat_checked = 0
    for case in ALL_PRICES:
        rates = Rates.from_model_price(case.price)
        # Prices without tiers cannot react to a threshold: the threshold rows are for the tiered.
        flat = _flat(case.price)
        # Every flat price of the data is compiled for the integer path; tiered ones are not.
        assert (rates.compiled is not None) == flat, case.label
        for usage in BASE_GRID if flat else BASE_GRID + TIER_GRID:
            if _check(case, usage, rates):
                checked += 1
                flat_checked += flat
            else:
                skipped += 1
    # Every grid usage is consistent (parts within their wholes): genai-prices should price
    # nearly all of them. Skips are only allowed as a small minority.
    assert checked > 40_000
    assert skipped <= checked // 100, (checked, skipped)
    # The grid's usages are all small enough: every flat price was checked on the integer path.
    assert INTEGER_PATH["checked"] == flat_checked > 30_000


def test_tiers_are_cliffs_on_total_input() -> None:
    """The grid really crosses tiers: a tiered model's rate changes across its threshold."""
    crossings = 0
    for case in ALL_PRICES:
        value = case.price.input_mtok
        if not isinstance(value, gp.TieredPrices):
            continue
        for tier in value.tiers:
            rates = Rates.from_model_price(case.price)
            below = rates.price(tier.start, 0, 0, 0, 0)[0]
            above = rates.price(tier.start + 1, 0, 0, 0, 0)[0]
            lower_rate = value.base
            for lower in value.tiers:
                if lower.start < tier.start:
                    lower_rate = lower.price
            assert below == lower_rate * tier.start / 1_000_000, case.label
            assert above == tier.price * (tier.start + 1) / 1_000_000, case.label
            crossings += 1
    assert crossings > 100


# --- random usages ------------------------------------------------------------------------------


@st.composite
def usages(draw: st.DrawFn) -> Usage5:
    near_tier = st.sampled_from(TIER_STARTS).flatmap(lambda s: st.integers(s - 2, s + 2))
    input_tokens = draw(st.one_of(st.integers(0, 3_000_000), near_tier, st.integers(0, 10**12)))
    cache_read = draw(st.integers(0, input_tokens))
    cache_write = draw(st.integers(0, input_tokens - cache_read))
    output_tokens = draw(st.one_of(st.integers(0, 200_000), st.integers(0, 10**12)))
    reasoning = draw(st.integers(0, output_tokens))
    return input_tokens, output_tokens, cache_read, cache_write, reasoning


def test_random_usages() -> None:
    stats = {"checked": 0, "skipped": 0}

    @settings(max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=st.sampled_from(ALL_PRICES), usage=usages())
    def compare(case: PriceCase, usage: Usage5) -> None:
        stats["checked" if _check(case, usage) else "skipped"] += 1

    INTEGER_PATH["checked"] = 0
    compare()
    # The usages are consistent, so genai-prices must have accepted nearly all of them.
    assert stats["checked"] >= 1_000, stats
    assert stats["skipped"] <= stats["checked"] // 100, stats
    # Most prices are flat, and most usages small enough for the integer path.
    assert INTEGER_PATH["checked"] >= stats["checked"] // 2, (INTEGER_PATH, stats)


# --- the book picks the price in force when the call started ------------------------------------


def _instants(model: gp.ModelInfo) -> list[datetime]:
    """Instants on both sides of every constraint of a time-dependent model, each followed by
    one later in the same second."""
    assert not isinstance(model.prices, gp.ModelPrice)
    instants = [datetime(2023, 1, 1, 12, tzinfo=UTC), datetime(2030, 1, 1, 12, tzinfo=UTC)]
    for conditional in model.prices:
        constraint = conditional.constraint
        if isinstance(constraint, gp.StartDateConstraint):
            midnight = datetime.combine(constraint.start_date, time(), tzinfo=UTC)
            instants += [midnight - timedelta(microseconds=1), midnight]
        elif isinstance(constraint, gp.TimeOfDateConstraint):
            day = date(2025, 6, 1)
            for moment in (constraint.start_time, constraint.end_time):
                start = datetime.combine(day, moment).astimezone(UTC)
                instants += [start - timedelta(seconds=1), start]
    # Each followed by the last microsecond of its second: the book reuses a second's prices.
    return [
        moment for instant in instants for moment in (instant, instant.replace(microsecond=999_999))
    ]


def _conditional_models() -> list[tuple[gp.Provider, gp.ModelInfo]]:
    return [
        (provider, model)
        for provider in data_snapshot.get_snapshot().providers
        for model in provider.models
        if not isinstance(model.prices, gp.ModelPrice)
    ]


def test_book_uses_the_price_in_force_at_the_start_time() -> None:
    book = PriceBook()
    usage = (250_000, 3_000, 20_000, 10_000, 1_000)
    compared = distinct_prices = on_integer_path = 0
    for provider, model in _conditional_models():
        resolved = book.resolve(provider.id, model.id)
        if isinstance(resolved, Unpriced) or resolved.model is not model:
            continue  # the id resolves to another entry (shared match patterns); not this test
        call = LLMCall(
            operation="chat",
            provider=provider.id,
            request_model=model.id,
            response_model=None,
            input_tokens=usage[0],
            output_tokens=usage[1],
            cache_read_tokens=usage[2],
            cache_creation_tokens=usage[3],
            reasoning_tokens=usage[4],
            error_type=None,
            streaming=False,
            time_to_first_chunk=None,
            provider_cost=None,
            usage_missing=False,
            usage_rejected=False,
        )
        amounts = set()
        for instant in _instants(model):
            reference = model.calc_price(
                genai_prices.Usage(
                    input_tokens=usage[0],
                    output_tokens=usage[1],
                    cache_read_tokens=usage[2],
                    cache_write_tokens=usage[3],
                    output_reasoning_tokens=usage[4],
                ),
                provider,
                genai_request_timestamp=instant,
            )
            start_ns = (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
            cost = book.price(call, start_ns * 1_000)
            if not Rates.from_model_price(model.get_prices(instant)).prices_tokens:
                # Priced per page, hour or character: genai-prices says 0, we say unknown.
                assert cost == Unpriced("no_token_price"), (model.id, cost)
                continue
            assert isinstance(cost, Cost), (model.id, cost)
            assert cost.amount == reference.total_price, (provider.id, model.id, instant)
            assert cost.amount_float == float(reference.total_price)
            # A period's flat prices are compiled like any others: the book took the integer path.
            in_force = Rates.from_model_price(model.get_prices(instant))
            assert (cost.units is not None) == (in_force.compiled is not None), model.id
            on_integer_path += cost.units is not None
            amounts.add(cost.amount)
            compared += 1
        distinct_prices += len(amounts) > 1
    assert compared > 500
    assert distinct_prices > 50
    assert on_integer_path > compared // 2
