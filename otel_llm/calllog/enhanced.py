"""Seed 001's "enhanced" list (``/api/v1/calls?view=enhanced``, also ``/api/v1/calls/enhanced``):
each call with its ``tokens{}``, ``cost{}`` and ``pricing{}`` grouped, and a ``summary{}`` of
every call the filter selects. The same list, filters, sort and pagination; only the shape of
the answer differs, so it is an alias, not a second API.

Per-call rates (``pricing.input_per_million``, ``output_per_million``, USD per million tokens)
are read off the stored record, never guessed: the record keeps each cost part rounded to a
whole nano-USD, so a part of ``c`` nano-USD for ``n`` tokens was priced at a rate within
``(c +- 0.5) / (1000 n)`` USD per million. Prices are quoted to at most six decimals per million
tokens (genai-prices' data; overrides in the same unit); when exactly one such rate lies in
that interval it is the rate the call was priced at, and it is given. Otherwise (a few tokens,
an unpriced call, a part without tokens) the rate is null: unknown, not approximate. (30 of
genai-prices 0.2.5's 7,180 rates have more decimals: float artefacts such as
0.18000000000000002, given as 0.18, and three of 1/24, given as 0.041667: the rate that
reproduces the stored cost. docs/calllog.md, "Per-call rates".)
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from otel_llm.calllog.record import NANO

if TYPE_CHECKING:  # the stores' module (SQL, drivers) is only needed to type the summary
    from otel_llm.calllog.store import Summary

FIELDS: tuple[str, ...] = (
    "id",
    "trace_id",
    "created_at",
    "service",
    "provider",
    "model",
    "operation",
    "status",
    "status_code",
    "latency_ms",
    "feature",
    "project",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost",
    "cost_input",
    "cost_output",
    "cost_cache_read",
    "cost_cache_write",
    "cost_request",
)
"""What an enhanced call is made from (its ``select``)."""

_GROUPED = {
    "tokens": {
        "input": "input_tokens",
        "output": "output_tokens",
        "total": "total_tokens",
        "cache_read": "cache_read_tokens",
        "cache_write": "cache_write_tokens",
        "reasoning": "reasoning_tokens",
    },
    "cost": {
        "input": "cost_input",
        "output": "cost_output",
        "cache_read": "cost_cache_read",
        "cache_write": "cost_cache_write",
        "request": "cost_request",
        "total": "cost",
    },
}
"""Seed 001's groups -> their members (seed 001 has input, output and total; the cache and
request parts are ours, so the parts add up to the total)."""

RATE_DECIMALS = 6
"""Decimals of a price per million tokens (genai-prices quotes e.g. 0.0375, 2.5)."""
_QUANTUM = Decimal(1).scaleb(-RATE_DECIMALS)


def enhanced_call(row: dict[str, Any]) -> dict[str, Any]:
    """One call of the list in seed 001's enhanced shape."""
    call = {name: value for name, value in row.items() if not _grouped(name)}
    for group, members in _GROUPED.items():
        call[group] = {key: row.get(name) for key, name in members.items()}
    uncached = _uncached_input(row)
    call["pricing"] = {
        "input_per_million": rate_per_million(row.get("cost_input"), uncached),
        "output_per_million": rate_per_million(row.get("cost_output"), row.get("output_tokens")),
    }
    return call


def summary(found: Summary) -> dict[str, Any]:
    """Seed 001's ``summary``: the cost and tokens of every call the filter selects, and the
    mean cost of a priced call (rounded to a nano-USD, half to even; unpriced calls have no
    cost, not a cost of 0, so they are not in it)."""
    average = None
    if found.cost is not None and found.priced:
        average = (found.cost / found.priced).quantize(NANO, ROUND_HALF_EVEN)
    return {
        "total_cost": found.cost,
        "total_tokens": found.tokens,
        "avg_cost_per_request": average,
        "requests": found.requests,
        "priced_requests": found.priced,
    }


def rate_per_million(cost: Decimal | None, tokens: int | None) -> Decimal | None:
    """The price per million tokens this part was charged at, when the stored cost pins it to
    one rate of ``RATE_DECIMALS`` decimals (see the module's note); else None."""
    if cost is None or tokens is None or tokens <= 0:
        return None
    nanos = Fraction(cost / NANO)
    # Rate r (USD per million) gives n * r * 1000 nano-USD; the stored value was rounded.
    per_quantum = Fraction(10**RATE_DECIMALS, 1000 * tokens)  # rate quanta per nano-USD
    low = max(math.ceil((nanos - Fraction(1, 2)) * per_quantum), 0)
    high = math.floor((nanos + Fraction(1, 2)) * per_quantum)
    if low != high:
        return None
    return (Decimal(low) * _QUANTUM).normalize()


def _uncached_input(row: dict[str, Any]) -> int | None:
    # cost_input prices the uncached input only; input_tokens counts cache reads and writes.
    total = row.get("input_tokens")
    if total is None:
        return None
    cached = (row.get("cache_read_tokens") or 0) + (row.get("cache_write_tokens") or 0)
    return int(total) - int(cached)


def _grouped(name: str) -> bool:
    return any(name in members.values() for members in _GROUPED.values())
