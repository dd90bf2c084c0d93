"""The price book a component uses when it is not handed one: built from its arguments and the
settings (``price_overrides``, ``price_cache_size``), the same way for the processor, the
collector service and the call-log exporter."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from otel_llm import settings
from otel_llm.pricing.book import PriceBook
from otel_llm.pricing.overrides import OverrideError, PriceOverride, load_overrides

_logger = logging.getLogger(__name__)


def configured_book(
    price_book: PriceBook | None = None,
    *,
    price_overrides: str | Path | Sequence[PriceOverride] | None = None,
    price_cache_size: int | None = None,
) -> PriceBook:
    """``price_book`` if given; otherwise a new book with the overrides (a file path, a list,
    or the ``price_overrides`` setting) and the cache size in force. An override file that
    cannot be used is reported and left out: pricing goes on with genai-prices' data."""
    if price_book is not None:
        return price_book
    return PriceBook(
        _overrides(price_overrides),
        cache_size=settings.PRICE_CACHE_SIZE.resolve(price_cache_size),
    )


def _overrides(given: str | Path | Sequence[PriceOverride] | None) -> list[PriceOverride]:
    if given is not None and not isinstance(given, str | Path):
        return list(given)
    path = settings.PRICE_OVERRIDES.resolve(str(given) if given is not None else None)
    if path is None:
        return []
    try:
        return load_overrides(path)
    except OverrideError as exc:
        _logger.warning("otel-llm: price overrides not used: %s", exc)
        return []
