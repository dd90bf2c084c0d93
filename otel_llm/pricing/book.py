"""The price book: which price applies to a (provider, model), and the cost of a call.

Resolution -- overrides, provider-name mapping, name normalisation, genai-prices' model
matching -- is slow (~100 µs) and depends only on (provider, model), so its result is cached in
a bounded table; pricing a call is then a dictionary hit and a few int operations (Decimal ones
for tiered prices, see pricing/rates.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from otel_llm import _semconv as sc
from otel_llm.call import LLMCall
from otel_llm.pricing import names
from otel_llm.pricing.billing import Billing, Gateways, discounted
from otel_llm.pricing.cost import Cost
from otel_llm.pricing.overrides import Discount, PriceOverride
from otel_llm.pricing.rates import FlatPrices, Rates

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import ModuleType

    from genai_prices import types as gp


@dataclass(frozen=True, slots=True)
class Unpriced:
    """Why a call has no cost: unknown_provider, unknown_model, no_token_price, missing_model,
    missing_usage, invalid_usage (and, set by ``derive``, failed_without_usage). Reported as
    such -- never as a cost of 0."""

    reason: str


_MISSING_MODEL = Unpriced("missing_model")


@dataclass(slots=True)
class _Resolved:
    provider_id: str
    model_id: str
    model: gp.ModelInfo | None
    """The price data's entry; None when an override sets every price itself."""
    patch: dict[str, Decimal]
    price_data: str
    _fixed: Rates | None = None
    identity: tuple[str, str, str | None, str | None] = ("", "", None, None)
    """The cost's (source, price_data, provider_id, model_id), made once."""
    _by_period: dict[int, tuple[gp.ModelPrice, Rates]] = field(default_factory=dict)
    _per_second: bool = False
    """The prices change only on whole seconds, so the last second's Rates can be reused."""
    _last: tuple[int, Rates] | None = None
    """(second since the epoch, the Rates in force during it)."""
    discount: Discount | None = None
    """The most specific discount without a project scope that applies (set by the book)."""

    def __post_init__(self) -> None:
        self.identity = (sc.COST_SOURCE_LOCAL, self.price_data, self.provider_id, self.model_id)
        # One ModelPrice is fixed; a list of conditional prices varies with the call's time.
        if self.model is None or not isinstance(self.model.prices, list):
            prices = self.model.prices if self.model is not None else None
            assert not isinstance(prices, list)
            self._fixed = Rates.from_model_price(prices, self.patch)
        else:
            self._per_second = all(
                _changes_on_whole_seconds(conditional.constraint)
                for conditional in self.model.prices
            )

    def rates_at(self, start_time_ns: int) -> Rates:
        if self._fixed is not None:
            return self._fixed
        assert self.model is not None
        # Prices that changed over time: pick the one in force when the call started. Finding it
        # (a datetime, genai-prices' constraints) costs ~3 µs; calls come many to a second.
        seconds, nanoseconds = divmod(start_time_ns, 1_000_000_000)
        last = self._last
        if last is not None and last[0] == seconds:
            return last[1]
        when = datetime.fromtimestamp(seconds, tz=UTC) + timedelta(microseconds=nanoseconds // 1000)
        model_price = self.model.get_prices(when)
        entry = self._by_period.get(id(model_price))
        if entry is None:
            # The ModelPrice is kept in the entry, so its id cannot be reused by another object.
            entry = (model_price, Rates.from_model_price(model_price, self.patch))
            self._by_period[id(model_price)] = entry
        if self._per_second:
            self._last = (seconds, entry[1])  # one assignment: safe to race with another thread
        return entry[1]


def _changes_on_whole_seconds(constraint: object) -> bool:
    """The constraint's boundaries all fall on whole seconds (UTC): a start date (midnight), or
    times of day without fractions of a second. Any other kind is not known to, so False."""
    if constraint is None:
        return True
    if hasattr(constraint, "start_date"):
        return True
    times = [getattr(constraint, name, None) for name in ("start_time", "end_time")]
    return all(
        isinstance(value, time)
        and value.microsecond == 0
        and (value.utcoffset() or timedelta()).microseconds == 0
        for value in times
    )


class PriceBook:
    """Prices calls from genai-prices' bundled data (no network) and the user's overrides and
    discounts; tells credits from own-key calls by the ``gateways`` (``billing_gateways``)."""

    def __init__(
        self,
        overrides: Sequence[PriceOverride | Discount] = (),
        *,
        cache_size: int = 4096,
        gateways: Sequence[str] = (),
    ):
        self._overrides = tuple(rule for rule in overrides if isinstance(rule, PriceOverride))
        # The most specific first (a stable sort: the file's order among equals).
        self._discounts = tuple(
            sorted(
                (rule for rule in overrides if isinstance(rule, Discount)),
                key=lambda rule: rule.rank,
                reverse=True,
            )
        )
        self._project_discounts = any(rule.project is not None for rule in self._discounts)
        self._by_project: dict[tuple[str, str | None, str | None, str | None], Discount | None]
        self._by_project = {}
        self._gateways = Gateways(gateways)
        self.bills = bool(self._discounts or self._gateways)
        """Whether every call needs ``bill``; otherwise only one with a provider cost or a
        billing override does."""
        self._cache: dict[tuple[str | None, str], _Resolved | Unpriced] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()
        _warm_price_data()

    @property
    def data_version(self) -> str:
        data = _price_data()
        snapshot = data.get_snapshot()
        version = f"genai-prices {_genai_prices_version()}"
        if snapshot.from_auto_update:
            version += f" (updated {snapshot.timestamp.isoformat(timespec='seconds')})"
        return version

    def price(self, call: LLMCall, start_time_ns: int, listed: bool = False) -> Cost | Unpriced:
        """The cost of ``call``, or why it has none; ``listed``: from the price data even when
        the provider reported a cost (what the call costs at list price)."""
        if call.provider_cost is not None and not listed:
            return Cost(
                amount=call.provider_cost, source=sc.COST_SOURCE_PROVIDER, price_data="provider"
            )
        if call.usage_rejected:
            return Unpriced("invalid_usage")
        input_tokens = call.input_tokens
        output_tokens = call.output_tokens
        if output_tokens is None and call.operation == "embeddings":
            output_tokens = 0
        if call.usage_missing or input_tokens is None or output_tokens is None:
            return Unpriced("missing_usage")

        resolved = self._entry_of(call)
        if isinstance(resolved, Unpriced):
            return resolved

        rates = resolved.rates_at(start_time_ns)
        if not rates.prices_tokens:
            # Entries priced per audio hour, page or character say nothing about tokens; their
            # calculation would be a silent 0.
            return Unpriced("no_token_price")
        counts = (
            input_tokens,
            output_tokens,
            call.cache_read_tokens or 0,
            call.cache_creation_tokens or 0,
            call.reasoning_tokens or 0,
        )
        found = rates.units(*counts)
        # Flat prices: exact int units, made Decimals only if someone reads them.
        return (
            Cost.join(found, resolved.identity)
            if found is not None
            else _decimal_cost(rates, counts, resolved)
        )

    def flat_rates(
        self, call: LLMCall, max_tokens: int
    ) -> tuple[FlatPrices, tuple[str, str, str, str]] | None:
        """The compiled flat prices (``Rates.flat``) and the cost identity that ``price`` uses
        for every call of the same operation, provider and models, when neither varies with the
        call's time or needs Decimals and every count up to ``max_tokens`` is below the prices'
        bound; else None. The processor's one pass prices such calls with ``flat_units``, as
        ``price`` does, and makes no ``Cost`` (``price``'s own result from the same units)."""
        resolved = self._entry_of(call)
        if isinstance(resolved, Unpriced) or resolved._fixed is None:
            return None
        rates = resolved._fixed
        compiled = rates.compiled
        if compiled is None or compiled.bound <= max_tokens or not rates.prices_tokens:
            return None
        return rates.flat, resolved.identity  # type: ignore[return-value]

    def _entry_of(self, call: LLMCall) -> _Resolved | Unpriced:
        """The price entry of the call: its response model's, else its request model's."""
        resolved: _Resolved | Unpriced = _MISSING_MODEL
        for model in (call.response_model, call.request_model):
            if model is not None:
                resolved = self.resolve(call.provider, model)
                if isinstance(resolved, _Resolved) or resolved.reason == "unknown_provider":
                    break
        return resolved

    def bill(
        self,
        call: LLMCall,
        start_time_ns: int,
        priced: Cost | Unpriced,
        attributes: Mapping[str, Any],
    ) -> tuple[Cost | Unpriced, Billing | None]:
        """The call's cost after its discount, and its billing (None: own key, no discount);
        ``priced`` is what ``price`` gave."""
        override = attributes.get(sc.OTEL_LLM_CONTEXT_BILLING)
        reported = isinstance(priced, Cost) and priced.source == sc.COST_SOURCE_PROVIDER
        if override in sc.BILLING_MODES:
            mode = override
        elif reported or (self._gateways and self._gateways.match(call.provider, attributes)):
            mode = sc.BILLING_CREDITS
        else:
            mode = sc.BILLING_OWN_KEY
        list_cost: Cost | Unpriced = priced
        discount = None
        if reported:
            # What the gateway's call would have cost at the provider's list price.
            list_cost = self.price(call, start_time_ns, True)
        elif isinstance(priced, Cost) and self._discounts:
            discount = self._discount_of(call, attributes)
            if discount is not None and discount.fraction:
                priced = discounted(priced, discount)
            else:
                discount = None
        if mode == sc.BILLING_OWN_KEY and discount is None:
            return priced, None
        known = list_cost if isinstance(list_cost, Cost) else None
        return priced, Billing(mode, known, discount is not None)

    def _discount_of(self, call: LLMCall, attributes: Mapping[str, Any]) -> Discount | None:
        """The most specific discount of the call: resolved once per (provider, model), and
        per (project, provider, model) only when some discount names a project."""
        resolved = self._entry_of(call)
        if isinstance(resolved, Unpriced):
            return None
        project = None
        if self._project_discounts:
            project = attributes.get(sc.OTEL_LLM_CONTEXT_PROJECT_ID)
        if not isinstance(project, str):
            return resolved.discount
        key = (project, call.provider, call.request_model, call.response_model)
        if key in self._by_project:
            return self._by_project[key]
        models = (call.response_model, call.request_model)
        found = self._match_discount(call.provider, models, resolved, project)
        with self._lock:
            while len(self._by_project) >= self._cache_size:
                self._by_project.pop(next(iter(self._by_project)))
            self._by_project[key] = found
        return found

    def _match_discount(
        self,
        provider: str | None,
        models: tuple[str | None, ...],
        resolved: _Resolved,
        project: str | None,
    ) -> Discount | None:
        providers = (provider, resolved.provider_id)
        for rule in self._discounts:
            if rule.applies(providers, (*models, resolved.model_id), project):
                return rule
        return None

    def resolve(self, provider: str | None, model: str) -> _Resolved | Unpriced:
        """The price entry for (provider, model), from the cache when seen before."""
        key = (provider, model)
        found = self._cache.get(key)
        if found is None:
            found = self._resolve(provider, model)
            if self._discounts and isinstance(found, _Resolved):
                found.discount = self._match_discount(provider, (model,), found, None)
            with self._lock:
                # A bounded table: a flood of distinct model names (a bug, an attack) must not
                # grow memory. Oldest-first eviction keeps this a plain dict read on the hot path.
                while len(self._cache) >= self._cache_size:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = found
        return found

    def _resolve(self, provider: str | None, model: str) -> _Resolved | Unpriced:
        for override in self._overrides:
            if override.applies(provider, model):
                return self._apply_override(override, provider, model)
        found = _lookup(provider, model)
        if isinstance(found, Unpriced):
            return found
        gprovider, ginfo = found
        return _Resolved(gprovider.id, ginfo.id, ginfo, {}, self.data_version)

    def _apply_override(
        self, override: PriceOverride, provider: str | None, model: str
    ) -> _Resolved | Unpriced:
        base = _lookup(override.alias_provider or provider, override.alias or model)
        price_data = f"{self.data_version} + override"
        if isinstance(base, Unpriced):
            if override.alias is not None or not override.complete:
                # An alias to nothing, or prices with gaps and nothing to inherit them from.
                return Unpriced("unknown_model")
            return _Resolved(provider or "override", model, None, override.patch, price_data)
        gprovider, ginfo = base
        return _Resolved(gprovider.id, ginfo.id, ginfo, override.patch, price_data)


def _decimal_cost(
    rates: Rates, counts: tuple[int, int, int, int, int], resolved: _Resolved
) -> Cost:
    """The cost by the Decimal path: tiered prices, or counts too large for the integer one."""
    parts = rates.decimal_price(*counts)
    return Cost(
        amount=sum(parts, Decimal(0)),
        source=sc.COST_SOURCE_LOCAL,
        price_data=resolved.price_data,
        provider_id=resolved.provider_id,
        model_id=resolved.model_id,
        input=parts[0],
        cache_read=parts[1],
        cache_write=parts[2],
        output=parts[3],
        request=parts[4],
    )


def _lookup(provider: str | None, model: str) -> tuple[gp.Provider, gp.ModelInfo] | Unpriced:
    """genai-prices' entry for the call, trying the normalised spellings of the model name.

    Its own look-up caches every (model, provider) pair it is asked, without bound; asking by
    provider id and matching models on that provider keeps the only cache ours.
    """
    data_snapshot = _price_data()
    snapshot = data_snapshot.get_snapshot()
    gprovider: gp.Provider | None = None
    if provider is not None:
        gprovider = data_snapshot.find_provider_by_id(
            snapshot.providers, sc.PROVIDER_PRICE_DATA_ID.get(provider, provider)
        )
    else:
        gprovider = next(
            (
                p
                for p in snapshot.providers
                if p.model_match and p.model_match.is_match(model.lower())
            ),
            None,
        )
    if gprovider is not None:
        for name in names.candidates(model):
            if (ginfo := gprovider.find_model(name, all_providers=snapshot.providers)) is not None:
                return gprovider, ginfo
    # A gateway prefix names the vendor whose prices apply: "openai/gpt-4o" through a router.
    routed = names.split_router_prefix(model)
    if routed is not None:
        vendor, rest = routed
        vendor = sc.PROVIDER_RENAMED.get(vendor, vendor)
        vendor_provider = data_snapshot.find_provider_by_id(
            snapshot.providers, sc.PROVIDER_PRICE_DATA_ID.get(vendor, vendor)
        )
        for candidate in (vendor_provider, gprovider):
            if candidate is None:
                continue
            for name in names.candidates(rest):
                if (
                    ginfo := candidate.find_model(name, all_providers=snapshot.providers)
                ) is not None:
                    return candidate, ginfo
    return Unpriced("unknown_model" if gprovider is not None else "unknown_provider")


def _price_data() -> ModuleType:
    """genai-prices' data, imported on the first look-up rather than with otel_llm.

    Importing genai-prices loads and validates its whole price table: ~110 ms, which was most
    of ``import otel_llm`` and of ``otel-llm --version``. Look-ups are cached per (provider,
    model), so this runs once per distinct model."""
    from genai_prices import data_snapshot  # noqa: PLC0415 - see the docstring

    return data_snapshot


_warming = threading.Lock()
_warmed = False


def _warm_price_data() -> None:
    """Start loading genai-prices' data in the background, once per process: a book is made
    when the processor is, usually well before the first LLM call ends, which then does not
    wait for the data on the application's thread."""
    global _warmed  # noqa: PLW0603 - one load per process
    with _warming:
        if _warmed:
            return
        _warmed = True
    threading.Thread(target=_price_data, name="otel-llm-price-data", daemon=True).start()


def _genai_prices_version() -> str:
    import genai_prices  # noqa: PLC0415 - loaded with its data, see _price_data

    return str(genai_prices.__version__)
