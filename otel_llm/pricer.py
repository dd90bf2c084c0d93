"""``Pricer``: one span, of either form, to the priced call -- the one pricing set-up.

The processor (SDK spans), the collector's enricher (OTLP protobuf spans) and the call-log
exporter (SDK spans) each hold a ``Pricer`` built from one ``PricingOptions``: the same price
book rules, token limit and extra label attributes, and one adapter per span form in front of
the shared core (``otel_llm.derive.derive``).

The OTLP span type is named for the type checker only: importing this module (as ``import
otel_llm`` does, through the processor) must not load protobuf, which only the collector needs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from otel_llm import settings
from otel_llm.derive import Derived, derive
from otel_llm.pricing import Discount, OverrideError, PriceBook, PriceOverride, load_price_rules

if TYPE_CHECKING:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

__all__ = ["OTLP_STATUS_CODE_ERROR", "Pricer", "PricingOptions", "scope_name", "span_attributes"]

_logger = logging.getLogger(__name__)

_ERROR = StatusCode.ERROR
"""Read once: an enum member's look-up is ~70 ns (timeit), on every LLM span."""

OTLP_STATUS_CODE_ERROR = 2
"""``opentelemetry.proto.trace.v1.trace_pb2.Status.STATUS_CODE_ERROR``, written out so that
this module does not import protobuf (a test checks the two agree)."""

# Resources are few and long-lived; a bound keeps a program that makes many from growing.
_MAX_RESOURCES = 64


@dataclass(frozen=True, slots=True)
class PricingOptions:
    """How LLM calls are priced; ``from_settings`` fills in the ``OTEL_LLM_*`` settings.

    Args:
        price_book: a ready book (shared with another component, or made by a test); the two
            fields after it are then unused.
        price_overrides: a YAML/JSON file of overrides and discounts, or those themselves.
        price_cache_size: see ``otel_llm.settings.PRICE_CACHE_SIZE``.
        billing_gateways: see ``otel_llm.settings.BILLING_GATEWAYS``.
        max_tokens: see ``otel_llm.settings.MAX_TOKENS``.
        extra_attributes: span attributes whose values each call carries (``Derived.extra``),
            in the order of the metric labels they fill.
    """

    price_book: PriceBook | None = None
    price_overrides: str | Path | Sequence[PriceOverride | Discount] | None = None
    price_cache_size: int = settings.PRICE_CACHE_SIZE.default
    max_tokens: int = settings.MAX_TOKENS.default
    extra_attributes: tuple[str, ...] = ()
    billing_gateways: tuple[str, ...] = ()

    @classmethod
    def from_settings(
        cls,
        *,
        price_book: PriceBook | None = None,
        price_overrides: str | Path | Sequence[PriceOverride | Discount] | None = None,
        price_cache_size: int | None = None,
        max_tokens: int | None = None,
        extra_attributes: Iterable[str] = (),
        billing_gateways: Iterable[str] | None = None,
    ) -> PricingOptions:
        """The options in force: each argument given, else its setting (a bad argument is
        warned about and replaced by the setting, as every ``Setting`` does)."""
        if price_book is not None:
            # The book is ready: its overrides and cache settings are not read, nor warned about.
            overrides: str | Path | Sequence[PriceOverride | Discount] | None = None
            cache_size = settings.PRICE_CACHE_SIZE.default
            gateways: tuple[str, ...] = ()
        else:
            if price_overrides is not None and not isinstance(price_overrides, str | Path):
                overrides = tuple(price_overrides)
            else:
                given = str(price_overrides) if price_overrides is not None else None
                overrides = settings.PRICE_OVERRIDES.resolve(given)
            cache_size = settings.PRICE_CACHE_SIZE.resolve(price_cache_size)
            gateways = settings.BILLING_GATEWAYS.resolve(
                tuple(billing_gateways) if billing_gateways is not None else None
            )
        return cls(
            price_book=price_book,
            price_overrides=overrides,
            price_cache_size=cache_size,
            max_tokens=settings.MAX_TOKENS.resolve(max_tokens),
            extra_attributes=tuple(extra_attributes),
            billing_gateways=gateways,
        )


class Pricer:
    """Turns an LLM call span -- an SDK ``ReadableSpan`` or an OTLP protobuf ``Span`` -- into
    the priced call (``Derived``); None when the span is not an LLM call.

    Callers test the span first (``may_be_llm_call`` then ``is_llm_call``) with the attributes
    and scope they read, and hand those in: most spans are not LLM calls and stop there.
    Thread-safe: the book is, and the service-name cache tolerates races (a lost entry is read
    again).
    """

    __slots__ = ("_service_names", "book", "extra_attributes", "max_tokens")

    book: PriceBook
    max_tokens: int
    extra_attributes: tuple[str, ...]

    def __init__(self, options: PricingOptions | None = None):
        if options is None:
            options = PricingOptions.from_settings()
        book = options.price_book
        if book is None:
            book = PriceBook(
                _overrides(options.price_overrides),
                cache_size=options.price_cache_size,
                gateways=options.billing_gateways,
            )
        self.book = book
        self.max_tokens = options.max_tokens
        self.extra_attributes = options.extra_attributes
        self._service_names: dict[int, tuple[Resource | None, str]] = {}

    def price_sdk_span(
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        scope: str | None,
        end_time: int | None = None,
    ) -> Derived | None:
        """The call of an ended SDK span; ``attributes`` are the ones to read it from (the
        span's own, ``span_attributes(span)``, perhaps with context added), ``scope`` its
        ``scope_name(span)``; ``end_time`` that of a span about to end (the processor's
        ``price_ending``)."""
        context = span.context
        # Positional: ten keywords made this call a tenth of the priced path.
        return derive(
            attributes,
            span.start_time,
            end_time or span.end_time,
            span.status.status_code is _ERROR,
            self.service_name(span.resource),
            context.trace_id if context is not None else 0,
            self.book,
            self.max_tokens,
            self.extra_attributes,
            scope,
        )

    def price_otlp_span(
        self,
        span: OtlpSpan,
        attributes: Mapping[str, Any],
        scope: str | None,
        resource: Mapping[str, Any],
    ) -> Derived | None:
        """The call of an OTLP protobuf span, with its attributes and its resource's as
        ``otel_llm.collector.otlp.attributes_of`` reads them, and its scope's name."""
        return derive(
            attributes,
            # Unset (0) on the wire is "not known", as None is in the SDK.
            start_time_ns=span.start_time_unix_nano or None,
            end_time_ns=span.end_time_unix_nano or None,
            failed=span.status.code == OTLP_STATUS_CODE_ERROR,
            service_name=str(resource.get("service.name", "")),
            trace_id=int.from_bytes(span.trace_id, "big"),
            book=self.book,
            max_tokens=self.max_tokens,
            extra_attributes=self.extra_attributes,
            scope=scope,
        )

    def service_name(self, resource: Resource | None) -> str:
        """The ``service.name`` of an SDK span's resource (``""`` when it has none)."""
        # Resources are few and long-lived; reading one through its read-only proxy is not free.
        entry = self._service_names.get(id(resource))
        if entry is None or entry[0] is not resource:
            name = str(resource.attributes.get("service.name", "")) if resource is not None else ""
            entry = (resource, name)
            if len(self._service_names) >= _MAX_RESOURCES:
                self._service_names.clear()
            self._service_names[id(resource)] = entry
        return entry[1]


def span_attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes as a plain mapping, read-only by contract.

    ``span.attributes`` is a proxy over the SDK's ``BoundedAttributes``, a Python-level mapping
    where every look-up of an absent key raises and catches KeyError (~0.8 µs): too slow for a
    check run on every span. The SDK's own dict behind it is used when it is there; otherwise
    the public API's copy.
    """
    try:  # cheaper than getattr with defaults, on every span
        inner = span._attributes._dict  # type: ignore[union-attr]
    except AttributeError:
        inner = None
    if type(inner) is dict:
        return inner
    attributes = span.attributes
    return dict(attributes) if attributes is not None else {}


def scope_name(span: ReadableSpan) -> str | None:
    """The name of the span's instrumentation scope: it tells which attribute dialect to read."""
    scope = span.instrumentation_scope
    return scope.name if scope is not None else None


def _overrides(
    given: str | Path | Sequence[PriceOverride | Discount] | None,
) -> list[PriceOverride | Discount]:
    """The overrides and discounts of a file (reported and left out when it cannot be used:
    pricing goes on with genai-prices' data), or the ones given."""
    if given is None:
        return []
    if not isinstance(given, str | Path):
        return list(given)
    try:
        return load_price_rules(given)
    except OverrideError as exc:
        _logger.warning("otel-llm: price overrides not used: %s", exc)
        return []
