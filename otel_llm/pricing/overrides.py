"""User price overrides: exact names or regular expressions mapped to prices or to an alias.

An override either says "this name is really that known model" (``alias``: Azure deployment
names, Bedrock ARNs, gateway prefixes) or sets prices (``prices``), or both. Prices it does not
set are inherited from the model it aliases -- or, without an alias, from the price data's own
entry for the name -- so a partial override never drops a model's cache or tier prices.

File form (YAML or JSON)::

    overrides:
      - match: prod-chat              # an Azure deployment that is really gpt-4o
        provider: azure.ai.openai     # optional: only for this provider
        alias: gpt-4o
        alias_provider: openai        # optional: the alias' provider (default: the call's)
      - regex: "ft:gpt-4o-mini:.*"    # whole-name match
        alias: gpt-4o-mini
      - match: my-llama
        provider: vllm
        prices: {input_mtok: 0.2, output_mtok: 0.4}
    discounts:                        # off the list price of locally priced calls
      - discount: 10%                 # provider scope
        provider: openai
      - discount: 0.2                 # model scope (a fraction, or a percentage as text)
        model: gpt-4o
      - discount: 25%                 # project scope (optionally with provider and/or model)
        project: research

A discount's scope is what it names: nothing (global), a provider, a model, a project (with or
without a provider or model). The most specific one that applies wins: project, then model,
then provider, then global; among equally specific ones, the first in the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from otel_llm import _semconv as sc
from otel_llm.pricing.rates import PRICE_KEYS


class OverrideError(ValueError):
    """An override entry or file that cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class PriceOverride:
    """One override. Exactly one of ``match`` (exact name) and ``regex`` (whole-name match)."""

    match: str | None = None
    regex: str | None = None
    provider: str | None = None
    """Restrict to calls of this provider (OpenTelemetry name); None matches any."""
    alias: str | None = None
    """Price the call as this model of the price data."""
    alias_provider: str | None = None
    prices: Mapping[str, Decimal | float | int | str] = field(default_factory=dict)
    """USD per million tokens (``*_mtok``) or per thousand requests (``requests_kcount``)."""
    patch: dict[str, Decimal] = field(default_factory=dict, init=False, repr=False)
    """``prices``, checked and exact."""
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.match is None) == (self.regex is None):
            raise OverrideError("an override needs exactly one of 'match' and 'regex'")
        if self.alias is None and not self.prices:
            raise OverrideError(
                f"override for {self.match or self.regex!r} sets no alias or prices"
            )
        object.__setattr__(self, "patch", _check_prices(self.prices, self.match or self.regex))
        # Calls are matched under the current provider names; accept the deprecated ones here too.
        for name in ("provider", "alias_provider"):
            value = getattr(self, name)
            object.__setattr__(self, name, sc.PROVIDER_RENAMED.get(value, value))
        if self.regex is not None:
            try:
                object.__setattr__(self, "_pattern", re.compile(self.regex))
            except re.error as exc:
                raise OverrideError(f"bad regex {self.regex!r}: {exc}") from None

    def applies(self, provider: str | None, model: str) -> bool:
        if self.provider is not None and self.provider != provider:
            return False
        if self._pattern is not None:
            return self._pattern.fullmatch(model) is not None
        return self.match == model

    @property
    def complete(self) -> bool:
        """Sets enough prices to price a call without a base model."""
        return "input_mtok" in self.patch and "output_mtok" in self.patch


_MAX_DISCOUNT_PLACES = 12
"""Decimal places of a discount fraction: the discounted cost's unit is the list cost's times
10**places, so it stays an exact integer (and its divisor a power of ten)."""


@dataclass(frozen=True)
class Discount:
    """A discount off list prices, at the scope its fields name (None: any).

    ``discount`` is a fraction in [0, 1] (``0.2``) or a percentage as text (``"20%"``). It
    applies to calls priced from price data (``source=local``); a cost a gateway reported is
    what was billed and is never discounted.
    """

    discount: Decimal | float | int | str
    provider: str | None = None
    model: str | None = None
    """The call's model name or the price data's model id it was matched to."""
    project: str | None = None
    """``llm_context(project_id=...)``."""
    fraction: Decimal = field(init=False)
    suffix: str = field(init=False, repr=False)
    """What the discounted cost's ``price_data`` gains: `` - 20% discount``."""
    scale: int = field(init=False, repr=False)
    """``10**places``: what the discounted cost's divisor is multiplied by."""
    keep: tuple[int, int] = field(init=False, repr=False)
    """(numerator, decimal places) of ``1 - fraction``: the discounted cost is the list cost's
    integer units times the numerator, over a divisor 10**places larger -- exact."""

    def __post_init__(self) -> None:
        fraction = _check_discount(self.discount)
        object.__setattr__(self, "fraction", fraction)
        object.__setattr__(self, "suffix", f" - {(fraction * 100).normalize():f}% discount")
        _sign, digits, exponent = (1 - fraction).as_tuple()
        assert isinstance(exponent, int)
        numerator = int("".join(map(str, digits)) or "0")
        places = max(-exponent, 0)
        object.__setattr__(self, "keep", (numerator * 10 ** max(exponent, 0), places))
        object.__setattr__(self, "scale", 10**places)
        if self.provider is not None:
            renamed = sc.PROVIDER_RENAMED.get(self.provider, self.provider)
            object.__setattr__(self, "provider", renamed)

    @property
    def rank(self) -> tuple[bool, bool, bool]:
        """How specific: project, then model, then provider (higher sorts first)."""
        return (self.project is not None, self.model is not None, self.provider is not None)

    def applies(
        self,
        providers: tuple[str | None, ...],
        models: tuple[str | None, ...],
        project: str | None,
    ) -> bool:
        return (
            (self.project is None or self.project == project)
            and (self.model is None or self.model in models)
            and (self.provider is None or self.provider in providers)
        )


def _check_discount(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise OverrideError("discount must be a fraction (0.2) or a percentage ('20%')")
    text = str(value).strip()
    percent = text.endswith("%")
    try:
        fraction = Decimal(text[:-1].strip() if percent else text)
    except InvalidOperation:
        raise OverrideError(
            f"discount {value!r} is not a fraction (0.2) or a percentage ('20%')"
        ) from None
    if not fraction.is_finite():
        raise OverrideError(f"discount {value!r} must be finite")
    if percent:
        fraction = fraction.scaleb(-2)
    if not 0 <= fraction <= 1:
        raise OverrideError(
            f"discount {value!r} must be between 0 and 1 (or 0% and 100%); "
            "give a percentage as text, e.g. '20%'"
        )
    exponent = fraction.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > _MAX_DISCOUNT_PLACES:
        raise OverrideError(
            f"discount {value!r} has more than {_MAX_DISCOUNT_PLACES} decimal places"
        )
    return fraction.normalize() if fraction else Decimal(0)


def _check_prices(prices: Mapping[str, Any], name: str | None) -> dict[str, Decimal]:
    checked: dict[str, Decimal] = {}
    for key, value in prices.items():
        if key not in PRICE_KEYS:
            raise OverrideError(
                f"override for {name!r}: unknown price {key!r} (known: {', '.join(PRICE_KEYS)})"
            )
        if isinstance(value, bool):
            raise OverrideError(f"override for {name!r}: {key} must be a number")
        try:
            price = Decimal(str(value))
        except InvalidOperation:
            raise OverrideError(f"override for {name!r}: {key}={value!r} is not a number") from None
        if not price.is_finite() or price < 0:
            raise OverrideError(f"override for {name!r}: {key}={value!r} must be finite and >= 0")
        checked[key] = price
    return checked


def parse_overrides(data: Any, origin: str = "overrides") -> list[PriceOverride]:
    """Overrides from decoded YAML/JSON: ``{"overrides": [...]}`` or a bare list."""
    entries = data.get("overrides") if isinstance(data, Mapping) else data
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise OverrideError(f"{origin}: expected a list under 'overrides'")
    known = {"match", "regex", "provider", "alias", "alias_provider", "prices"}
    result = []
    for index, entry in enumerate(entries):
        where = f"{origin}: entry {index}"
        if not isinstance(entry, Mapping):
            raise OverrideError(f"{where}: expected a mapping")
        unknown = set(entry) - known
        if unknown:
            raise OverrideError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        prices = entry.get("prices") or {}
        if not isinstance(prices, Mapping):
            raise OverrideError(f"{where}: 'prices' must be a mapping")
        for key in ("match", "regex", "provider", "alias", "alias_provider"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                raise OverrideError(f"{where}: '{key}' must be a string")
        try:
            result.append(
                PriceOverride(
                    match=entry.get("match"),
                    regex=entry.get("regex"),
                    provider=entry.get("provider"),
                    alias=entry.get("alias"),
                    alias_provider=entry.get("alias_provider"),
                    prices=prices,
                )
            )
        except OverrideError as exc:
            raise OverrideError(f"{where}: {exc}") from None
    return result


def parse_discounts(data: Any, origin: str = "overrides") -> list[Discount]:
    """The discounts of decoded YAML/JSON: the list under ``discounts`` (none without one)."""
    entries = data.get("discounts") if isinstance(data, Mapping) else None
    if entries is None:
        return []
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise OverrideError(f"{origin}: expected a list under 'discounts'")
    known = {"discount", "provider", "model", "project"}
    result = []
    for index, entry in enumerate(entries):
        where = f"{origin}: discounts entry {index}"
        if not isinstance(entry, Mapping):
            raise OverrideError(f"{where}: expected a mapping")
        unknown = set(entry) - known
        if unknown:
            raise OverrideError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        if "discount" not in entry:
            raise OverrideError(f"{where}: needs 'discount'")
        for key in ("provider", "model", "project"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                raise OverrideError(f"{where}: '{key}' must be a string")
        try:
            result.append(
                Discount(
                    entry["discount"],
                    provider=entry.get("provider"),
                    model=entry.get("model"),
                    project=entry.get("project"),
                )
            )
        except OverrideError as exc:
            raise OverrideError(f"{where}: {exc}") from None
    return result


def load_overrides(path: str | Path) -> list[PriceOverride]:
    """Overrides from a YAML or JSON file (JSON is YAML, but its errors read better as JSON)."""
    return [rule for rule in load_price_rules(path) if isinstance(rule, PriceOverride)]


def load_price_rules(path: str | Path) -> list[PriceOverride | Discount]:
    """The overrides and the discounts of a YAML or JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OverrideError(f"cannot read price overrides {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise OverrideError(
            f"cannot read price overrides {path}: not UTF-8 text ({exc.reason})"
        ) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise OverrideError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}"
        ) from None
    if isinstance(data, Mapping) and "overrides" not in data and "discounts" in data:
        return [*parse_discounts(data, str(path))]  # a file of discounts only
    return [*parse_overrides(data, str(path)), *parse_discounts(data, str(path))]
