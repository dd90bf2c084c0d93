"""What a caller may ask of the call log: filters, sort, page, fields, stats grouping.

The query API and the CLI parse requests into these objects; every store answers them. Values
here are already validated and typed, so a store only binds them as SQL parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

SortKey = str
"""A key of ``catalogue.SORTS`` (checked by the parser and the store)."""
View = Literal["plain", "enhanced"]
"""A list's shape: the calls' fields as stored, or seed 001's enhanced (grouped tokens, cost,
rates and a summary: ``enhanced.py``)."""
Operator = Literal["eq", "ne", "gt", "gte", "lt", "lte"]
Match = str | tuple[str, ...] | None
"""A text filter's value: one value, any of several, or None (any)."""
StatsGroup = Literal[
    "hour",
    "day",
    "week",
    "model",
    "provider",
    "feature",
    "service",
    "api_key",
    "user",
    "status",
    "agent",
    "role",
    "conversation",
    "policy",
]

DEFAULT_LIMIT = 50
"""Calls a page holds unless told (seed 001's default)."""
MAX_LIMIT = 100
MAX_OFFSET = 10_000
"""The deepest page a list (of calls or of traces) serves: a page at offset N reads and sorts
the N calls before it (sorted by cost, offset 100,000 took 8 s of 1,000,000 calls, 10,000 took
1.2 s). Deeper, a client pages by time: ``end_date`` the ``created_at`` of the last call seen."""
DEFAULT_GROUP_LIMIT = 100
"""Groups a stats answer lists (by model, provider, feature, service; also each day's models)
unless told otherwise; the rest are summed into one ``other`` group. A hundred covers the
models, services or features a deployment uses in a month, and keeps an answer of 30 days
with every day's models near 300 KB."""
MAX_GROUP_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Comparison:
    """``field operator value`` on a numeric or time field (``catalogue.COMPARED``); the value
    is already of the field's type (Decimal USD, int, float ms, aware datetime). A call whose
    value is unknown (NULL) never matches, ``ne`` included."""

    field: str
    operator: Operator
    value: Decimal | int | float | datetime


@dataclass(frozen=True, slots=True)
class CallFilter:
    """Conditions a call must meet; None means "any". Text filters match exactly, one value or
    any of a tuple of them."""

    provider: Match = None
    model: Match = None
    """The request model (or the response model when the request named none)."""
    operation: Match = None
    status: Literal["success", "error"] | tuple[str, ...] | None = None
    billing: Literal["credits", "own_key"] | tuple[str, ...] | None = None
    service: Match = None
    feature: Match = None
    user: Match = None
    project: Match = None
    api_key_id: Match = None
    pipeline_step: Match = None
    response_model: Match = None
    error_type: Match = None
    agent_name: Match = None
    agent_id: Match = None
    conversation_id: Match = None
    policy: Match = None
    """The policy a call violated (``policy_action``: that policy's action)."""
    policy_action: Match = None
    streaming: bool | None = None
    request_id: Match = None
    """The provider's response id (no index: the rows of the time range are read)."""
    api_key_hint: Match = None
    start: datetime | None = None
    """Inclusive, timezone-aware: calls created at or after."""
    end: datetime | None = None
    """Exclusive, timezone-aware: calls created before."""
    min_latency_ms: Decimal | float | None = None
    max_latency_ms: Decimal | float | None = None
    min_cost: Decimal | None = None
    """USD; inclusive. A call without a price never matches a cost bound."""
    max_cost: Decimal | None = None
    min_tokens: int | None = None
    """Total tokens; inclusive."""
    max_tokens: int | None = None
    comparisons: tuple[Comparison, ...] | None = None
    """A POST query's operators (``{"latency_ms": {"$gt": 500}}``), all to hold."""
    excluded: tuple[tuple[str, tuple[str, ...]], ...] | None = None
    """(text filter, values) pairs a call's value must not be among (``$ne``/``$nin``); a call
    without a value (NULL) is not excluded."""
    projects: frozenset[str] | None = None
    """Set by access control, not by the caller: only calls of these projects (None: all)."""


@dataclass(frozen=True, slots=True)
class CallQuery:
    """A page of calls."""

    filter: CallFilter = field(default_factory=CallFilter)
    sort: SortKey = "created_at"
    descending: bool = True
    then: tuple[tuple[SortKey, bool], ...] = ()
    """Further sort keys, each with whether it is descending, for ties of the ones before."""
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    select: tuple[str, ...] | None = None
    """Fields of each returned call (names of ``record.FIELDS``); None: the summary fields."""
    view: View = "plain"
    """The answer's shape (the API's; a store answers the fields asked either way)."""


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """Usage statistics over a time range, optionally grouped."""

    filter: CallFilter = field(default_factory=CallFilter)
    group_by: StatsGroup | None = None
    limit: int = DEFAULT_GROUP_LIMIT
    """Groups listed (by the busiest first), and models of each day in ``by_day``; the rest
    are summed into one ``other`` group, so every total stays exact. Days, weeks and hours
    are never folded (the date range bounds them)."""
    timeout: float | None = None
    """Seconds the statistics may take; past them the store stops and raises
    ``StatsTimeout``. None: no limit (the CLI on a local store)."""


class QueryError(ValueError):
    """A query the store cannot answer as asked (e.g. a stats filter on a field the daily
    aggregates do not keep, or on two fields no daily aggregate keeps together, or hourly
    stats beyond the records kept); the API answers 400 with its message."""


class QueryTimeout(Exception):
    """A read took longer than its time budget (``dailyrows.Deadline``) and was stopped, the
    database statement too; the API answers 503 with ``explained``."""

    def __init__(self, seconds: float | None):
        super().__init__(f"stopped: it did not finish within {_budget(seconds)} time budget")
        self.seconds = seconds

    def explained(self, what: str, setting: str, hint: str) -> str:
        """The 503's message: what did not finish, the setting that gave its budget, what
        to ask instead."""
        budget = _budget(self.seconds)
        return f"{what} did not finish within {budget} time budget ({setting}); {hint}"


StatsTimeout = QueryTimeout
"""Its name from when only statistics had a budget (``dailyrows.Deadline`` raises it)."""


def _budget(seconds: float | None) -> str:
    return f"{seconds:g} s" if seconds is not None else "its"
