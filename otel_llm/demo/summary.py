"""What the demo's spans cost: calls, errors, tokens and exact cost by model and by feature."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from otel_llm import _semconv as sc
from otel_llm.pricer import Pricer, scope_name, span_attributes
from otel_llm.pricing import Cost

TOKEN_KINDS = ("input", "output", "cache_read", "cache_creation", "reasoning")


@dataclass
class Row:
    provider: str
    model: str
    calls: int = 0
    errors: int = 0
    unpriced: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0))
    cost: Decimal = field(default_factory=Decimal)
    """Of the priced calls; unpriced calls add nothing (and are not $0: they are unknown)."""

    @property
    def cost_usd(self) -> str | None:
        """The exact cost, or None when no call could be priced."""
        return _exact(self.cost) if self.calls > self.unpriced else None

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "calls": self.calls,
            "errors": self.errors,
            "unpriced": self.unpriced,
            "tokens": dict(self.tokens),
            "cost_usd": self.cost_usd,
        }


@dataclass(frozen=True, slots=True)
class UnpricedGroup:
    provider: str
    model: str
    reason: str
    error_type: str | None
    calls: int


@dataclass
class Summary:
    calls: int
    seed: int
    price_data: str
    rows: list[Row]
    total: Row
    features: dict[str, Row]
    """By ``llm_context`` feature (in ``Row.provider``)."""
    unpriced: list[UnpricedGroup]
    metrics_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        total = self.total.to_json()
        del total["provider"], total["model"]
        return {
            "calls": self.calls,
            "seed": self.seed,
            "price_data": self.price_data,
            "models": [row.to_json() for row in self.rows],
            "total": total,
            "features": [
                {
                    "feature": name,
                    "calls": row.calls,
                    "unpriced": row.unpriced,
                    "cost_usd": row.cost_usd,
                }
                for name, row in self.features.items()
            ],
            "unpriced": [
                {
                    "provider": group.provider,
                    "model": group.model,
                    "reason": group.reason,
                    "error_type": group.error_type,
                    "calls": group.calls,
                }
                for group in self.unpriced
            ],
            "metrics_url": self.metrics_url,
        }


def summarize(spans: Sequence[ReadableSpan], pricer: Pricer, *, seed: int) -> Summary:
    """Per provider and requested model: calls, errors, tokens and exact cost.

    The exported spans carry their cost as a float; the processor's own pricer gives it
    exactly."""
    rows: dict[tuple[str, str], Row] = {}
    total = Row("", "")
    features: dict[str, Row] = {}
    unpriced: Counter[tuple[str, str, str, str | None]] = Counter()
    for span in spans:
        attributes = span_attributes(span)
        derived = pricer.price_sdk_span(span, attributes, scope_name(span))
        if derived is None:
            continue
        call = derived.call
        key = (call.provider or "", call.request_model or "")
        row = rows.setdefault(key, Row(*key))
        cost = Decimal(0)
        reason: str | None = None
        if isinstance(derived.priced, Cost):
            cost = derived.priced.amount
        else:
            reason = derived.priced.reason
        if reason is not None:
            unpriced[(*key, reason, call.error_type)] += 1
        feature = str(attributes.get(sc.OTEL_LLM_CONTEXT_FEATURE, ""))
        feature_row = features.setdefault(feature, Row(feature, ""))
        for target in (row, total, feature_row):
            target.calls += 1
            target.errors += call.error_type is not None
            target.unpriced += reason is not None
            target.cost += cost
            for kind, count in zip(
                TOKEN_KINDS,
                (
                    call.input_tokens,
                    call.output_tokens,
                    call.cache_read_tokens,
                    call.cache_creation_tokens,
                    call.reasoning_tokens,
                ),
                strict=True,
            ):
                target.tokens[kind] += count or 0
    return Summary(
        calls=total.calls,
        seed=seed,
        price_data=pricer.book.data_version,
        rows=[rows[key] for key in sorted(rows)],
        total=total,
        features=dict(sorted(features.items(), key=lambda item: (-item[1].cost, item[0]))),
        unpriced=[
            UnpricedGroup(provider, model, reason, error_type, count)
            for (provider, model, reason, error_type), count in sorted(
                unpriced.items(), key=lambda item: (item[0][2] != "unknown_model", item[0][:3])
            )
        ],
    )


def _exact(amount: Decimal) -> str:
    """An exact decimal string, never in exponent form."""
    return format(amount, "f")
