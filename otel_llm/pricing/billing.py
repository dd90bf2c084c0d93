"""How a call was billed -- credits through a gateway, or the team's own provider key -- and
what a discount takes off its list price.

A gateway (OpenRouter, a LiteLLM or company proxy) bills credits: its calls are recognised by a
cost the provider reported, or by a provider name or host the ``billing_gateways`` setting lists;
``llm_context(billing=...)`` overrides either way. Every other call is ``own_key``.

Most calls need none of this: ``PriceBook.bills`` is False without discounts or gateways, and
``derive`` then asks only whether the call carries a provider cost or an override.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import TYPE_CHECKING, Any, NamedTuple

from otel_llm import _semconv as sc
from otel_llm.pricing.cost import Cost

if TYPE_CHECKING:
    from otel_llm.pricing.overrides import Discount

# Decimal costs (tiered prices) are below 10**28 with at most ~40 digits; the product with a
# 12-place fraction fits 100 digits, and Inexact is trapped so it could never round silently.
_EXACT = Context(prec=100, traps=[InvalidOperation, Inexact])


class Billing(NamedTuple):
    """A call's billing, when it is not the plain case (own key, no discount): ``Derived.billing``
    is None for that one. A tuple: made per call, for the calls that have one."""

    mode: str
    """``credits`` or ``own_key`` (``_semconv.BILLING_MODES``)."""
    list_cost: Cost | None
    """The call's usage at the provider's list price, before any discount; None: unknown."""
    discounted: bool = False
    """A discount was taken off ``list_cost`` to give the call's cost."""

    def attributes(self) -> dict[str, Any]:
        """The span attributes it adds to the cost's."""
        attributes: dict[str, Any] = {sc.OTEL_LLM_BILLING: self.mode}
        if self.list_cost is not None:
            attributes[sc.OTEL_LLM_COST_LIST_AMOUNT] = self.list_cost.amount_float
        return attributes


class Gateways:
    """The ``billing_gateways`` setting: provider names (``openrouter``) and hosts
    (``llm-proxy.example.com``, which also matches its subdomains) whose calls bill credits."""

    __slots__ = ("_labels", "_names")

    def __init__(self, entries: Iterable[str] = ()):
        self._names = frozenset(entry.strip().lower().rstrip(".") for entry in entries)
        self._names -= {""}
        self._labels = max((name.count(".") + 1 for name in self._names), default=0)
        """Labels of the longest name: a host's suffixes longer than that cannot match."""

    def __bool__(self) -> bool:
        return bool(self._names)

    def match(self, provider: str | None, attributes: Mapping[str, Any]) -> bool:
        names = self._names
        if provider is not None and provider.lower() in names:
            return True
        host = attributes.get(sc.SERVER_ADDRESS)
        if not isinstance(host, str) or not host:
            return False
        # Only the last few labels can match: linear in the host's length, however many dots.
        labels = host.lower().rstrip(".").rsplit(".", self._labels)[-self._labels :]
        return any(".".join(labels[start:]) in names for start in range(len(labels)))


def discounted(cost: Cost, discount: Discount) -> Cost:
    """``cost`` less ``discount``, exactly: integer units times the numerator of the fraction
    paid over a divisor ``10**places`` larger, or Decimals."""
    numerator, places = discount.keep
    source, price_data, provider_id, model_id = cost.identity
    identity = (source, price_data + discount.suffix, provider_id, model_id)
    units = cost.units
    if units is not None:
        (amount, input_, cache_read, cache_write, output, request), divisor = units
        n = numerator
        scaled = (amount * n, input_ * n, cache_read * n, cache_write * n, output * n, request * n)
        return Cost.join((*scaled, divisor * discount.scale), identity)
    factor = Decimal(numerator).scaleb(-places)

    def times(value: Decimal | None) -> Decimal | None:
        return None if value is None else _EXACT.multiply(value, factor)

    total = times(cost.amount)
    assert total is not None
    return Cost(
        total,
        *identity,
        input=times(cost.input),
        cache_read=times(cost.cache_read),
        cache_write=times(cost.cache_write),
        output=times(cost.output),
        request=times(cost.request),
    )
