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


def load_overrides(path: str | Path) -> list[PriceOverride]:
    """Overrides from a YAML or JSON file (JSON is YAML, but its errors read better as JSON)."""
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
    return parse_overrides(data, str(path))
