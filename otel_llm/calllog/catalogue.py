"""The call record's catalogue: every field of a call -- its type, its column and how the
column encodes it -- and which fields are filtered, sorted and aggregated, and how.

Everything else is derived from these tables: the SQL columns, insert list and decoders
(``sql.py``), the daily aggregates' key and counters (``rollup.py``), the API's filter
parameters (``params.py``) and the command line's filter flags (``flags.py``). The typed
objects that carry the same names -- ``CallRecord``, ``CallFilter``, ``SortKey`` -- are
checked against it by the tests, as is a migrated database: the migrations in ``schema.py``
spell their tables out literally, because a migration, once released, never changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal, NamedTuple

from otel_llm.calllog.schema import (
    CALLS,
    CONTENT,
    DAILY,
    DAILY_API_KEY,
    DAILY_SINCE,
    DAILY_STATUS,
    DAILY_USER,
    DEAD_LETTERS,
    TRACE_SPANS,
)

ApiType = Literal["string", "integer", "number", "boolean", "datetime", "object"]
SqlType = Literal["text", "integer", "smallint", "bigint", "real", "blob"]
"""Column types; ``schema.Types`` names them in each database."""

Codec = Literal["plain", "time", "money", "flag", "json", "day", "span_key"]
"""How a stored value encodes a record's value (``sql.py`` implements each):
plain as is; time: integer microseconds since the epoch (UTC); money: integer nano-USD;
flag: 0 / 1; json: JSON text (an empty mapping as NULL); day: days since the epoch of a time;
span_key: a 16-hex span id's 64 bits as a signed integer."""


# --- what a stored value may be ------------------------------------------------------------------
# A span's values come from whoever can reach the collector (or from a gateway passing a
# client's values on): ``limits.py`` holds every record to these before it is stored, the same
# way for SQLite and PostgreSQL, so one hostile value cannot fail the write of its batch.

INTEGER_RANGES: dict[SqlType, tuple[int, int]] = {
    "smallint": (-(2**15), 2**15 - 1),
    # PostgreSQL's INTEGER is 4 bytes (SQLite's 8): a record must fit the narrower of the two.
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
"""The values an integer column of each type holds in both databases."""

TEXT_MAX_LENGTH = 256
"""Characters of a text field, unless its ``Field`` says otherwise. Most are indexed: a
PostgreSQL b-tree entry holds at most 2,704 bytes, 4 bytes a character at worst."""

MAX_MS = 1e9
"""Milliseconds (11.6 days): the longest latency or time to first chunk kept. The sketches'
top bucket (``sketch.MAX_VALUE``); a larger value is no measurement (1e306 s overflowed to
``inf`` ms and failed the aggregates' sketch)."""

MAX_TOKENS = 10**12
"""Tokens of one call, at most (``max_tokens`` already ignores more than 1e8 by default): far
below what makes a daily row's 64-bit sums overflow."""

MAX_COST = Decimal(10**6)
"""USD of one call, at most."""

TIME_FLOOR = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
"""A call's time must lie in [TIME_FLOOR, now + FUTURE_SLACK] (clocks drift; 2**64-1 ns, year
2554, does not). A start outside is quarantined, not clamped (see ``limits.py``); an end
outside is dropped to NULL."""

CONTEXT_MAX_KEYS = 64
CONTEXT_MAX_LENGTH = 1024
"""The ``context`` object: keys kept, and characters of a text value."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a call, and where the calls table keeps it."""

    name: str
    """The API's name of the field; for a column of its own, also the ``CallRecord`` attribute
    (``source``) its value comes from."""
    type: ApiType
    description: str
    column: str | None = ""
    """Its column in the calls table ("": the field's own name); None: computed when read."""
    sql: SqlType = "text"
    required: bool = False
    """NOT NULL."""
    codec: Codec = "plain"
    source: str = ""
    """The ``CallRecord`` attribute the column is written from ("": the field's name)."""
    stored: bool = True
    """False: the field reads a column another field writes (``started_at``), or none."""
    api: bool = True
    """False: a column the store keeps for itself (look-up keys), not a field of the API."""
    daily: Literal["dimension", "sum"] | None = None
    """In the daily aggregates: part of each row's key, or summed (the same column name)."""
    minimum: float | Decimal | None = None
    maximum: float | Decimal | None = None
    """The values a number may take (also within its column's ``INTEGER_RANGES``); outside,
    unknown (NULL)."""
    max_length: int = TEXT_MAX_LENGTH
    """Characters of a text field: more are cut off."""

    def __post_init__(self) -> None:
        if self.column == "":
            object.__setattr__(self, "column", self.name)
        if not self.source:
            object.__setattr__(self, "source", self.name)


def _money(
    name: str,
    column: str,
    description: str,
    daily: Literal["dimension", "sum"] | None = "sum",
) -> Field:
    return Field(
        name,
        "number",
        description,
        column,
        "bigint",
        codec="money",
        daily=daily,
        minimum=Decimal(0),
        maximum=MAX_COST,
    )


def _tokens(name: str, description: str) -> Field:
    return Field(
        name, "integer", description, sql="bigint", daily="sum", minimum=0, maximum=MAX_TOKENS
    )


CALL_FIELDS: tuple[Field, ...] = (
    Field("id", "string", "Call id: <32-hex trace id>-<16-hex span id>.", required=True),
    Field(
        "trace_id", "string", "Trace id (32 hex): the link to the trace in Jaeger.", required=True
    ),
    Field("span_id", "string", "Span id (16 hex) of the call's span.", required=True),
    Field(
        "created_at",
        "datetime",
        "When the call was made (its span's start), UTC.",
        "created_us",
        "bigint",
        required=True,
        codec="time",
    ),
    Field(
        "started_at",
        "datetime",
        "The span's start, UTC (same as created_at).",
        "created_us",
        codec="time",
        stored=False,
    ),
    Field(
        "day",
        "integer",
        "Days since the epoch of created_at: with trace_id and span_key, the look-up by id.",
        sql="integer",
        required=True,
        codec="day",
        source="created_at",
        api=False,
    ),
    Field(
        "span_key",
        "integer",
        "The span id's 64 bits, signed: with day and trace_id, the look-up by id.",
        sql="bigint",
        required=True,
        codec="span_key",
        source="span_id",
        api=False,
    ),
    Field(
        "completed_at",
        "datetime",
        "The span's end, UTC (null if unknown).",
        "completed_us",
        "bigint",
        codec="time",
    ),
    Field(
        "latency_ms",
        "number",
        "Duration of the call in milliseconds.",
        sql="real",
        minimum=0,
        maximum=MAX_MS,
    ),
    Field(
        "time_to_first_chunk_ms",
        "number",
        "Streamed calls: ms to the first chunk.",
        "ttfc_ms",
        "real",
        minimum=0,
        maximum=MAX_MS,
    ),
    Field(
        "time_to_first_token_ms",
        "number",
        "Same as time_to_first_chunk_ms (the name other call logs use).",
        "ttfc_ms",
        "real",
        source="time_to_first_chunk_ms",
        stored=False,
    ),
    Field(
        "service",
        "string",
        "service.name of the application that made the call.",
        daily="dimension",
    ),
    Field(
        "provider",
        "string",
        "GenAI provider (gen_ai.provider.name), e.g. openai.",
        daily="dimension",
    ),
    Field(
        "model",
        "string",
        "Requested model (the response model if none was requested).",
        daily="dimension",
    ),
    Field("response_model", "string", "Model named by the response."),
    Field(
        "operation",
        "string",
        "GenAI operation: chat, embeddings, ...",
        required=True,
        daily="dimension",
    ),
    Field(
        "streaming",
        "boolean",
        "Whether the response was streamed.",
        sql="smallint",
        required=True,
        codec="flag",
    ),
    Field("status", "string", "success or error.", required=True),
    Field(
        "status_code",
        "integer",
        "HTTP status code of the provider's response, if known.",
        sql="integer",
        minimum=100,  # HTTP's three digits
        maximum=999,
    ),
    Field("error_type", "string", "error.type of a failed call."),
    Field(
        "error_code",
        "string",
        "The provider's error code of a failed call (otel_llm.error.code, else error.code): "
        "OpenAI's code, e.g. rate_limit_exceeded; Anthropic's error type, e.g. rate_limit_error.",
    ),
    Field(
        "error_message",
        "string",
        "The span's status message of a failed call.",
        max_length=4096,  # not indexed
    ),
    _tokens("input_tokens", "Input tokens, cache reads and writes included."),
    _tokens("output_tokens", "Output tokens, reasoning included."),
    _tokens("total_tokens", "input_tokens + output_tokens."),
    _tokens("cache_read_tokens", "Input tokens read from the provider's cache."),
    _tokens("cache_write_tokens", "Input tokens written to the provider's cache."),
    _tokens("reasoning_tokens", "Output tokens spent on reasoning."),
    _money("cost", "cost_nusd", "Total cost in USD; null when the call could not be priced."),
    _money("cost_input", "cost_input_nusd", "USD for uncached input tokens."),
    _money("cost_output", "cost_output_nusd", "USD for output tokens (reasoning included)."),
    _money("cost_cache_read", "cost_cache_read_nusd", "USD for cached input tokens read."),
    _money(
        "cost_cache_write", "cost_cache_write_nusd", "USD for input tokens written to the cache."
    ),
    _money("cost_request", "cost_request_nusd", "USD charged per request."),
    Field("cost_source", "string", "local (from price data) or provider (reported by it)."),
    Field("price_data", "string", "The price data used, e.g. genai-prices 0.0.30."),
    Field("unpriced_reason", "string", "Why the call has no cost (null when priced)."),
    Field("feature", "string", "llm_context feature.", daily="dimension"),
    Field("user", "string", "llm_context user_id.", "user_id"),
    Field("project", "string", "llm_context project_id.", daily="dimension"),
    Field("api_key_id", "string", "llm_context api_key_id."),
    Field("pipeline_step", "string", "llm_context pipeline_step."),
    Field("context", "object", "Other otel_llm.context.* values of the call.", codec="json"),
    # v3 (appended: a migration adds columns at the end of the table).
    Field(
        "billing",
        "string",
        "credits (a gateway/router billed it: a provider-reported cost, a billing_gateways "
        "provider or host) or own_key (a direct provider key); llm_context(billing=...) "
        "overrides. Null for calls stored before billing was recorded.",
    ),
    _money(
        "list_cost",
        "list_cost_nusd",
        "The call's usage at the provider's list price before any discount (for a cost a "
        "gateway reported: what the same tokens cost at list price); null when unknown.",
        daily=None,
    ),
    _money(
        "discount",
        "discount_nusd",
        "USD a discount took off list_cost to give cost (0 without one); null when unpriced.",
        daily=None,
    ),
    # v4: added at the end of the table (ALTER TABLE appends), after v3's.
    Field("request_id", "string", "The provider's id of the response (gen_ai.response.id)."),
    Field("endpoint", "string", "The API path called (url.path), e.g. /v1/chat/completions."),
    Field("method", "string", "The HTTP method (http.request.method), e.g. POST.", max_length=16),
    Field(
        "api_key_hint",
        "string",
        "A hint of the provider key (otel_llm.api_key.hint): its type prefix and last 4 "
        "characters, e.g. sk-proj-...Ab3d; never the key.",
        max_length=32,
    ),
    # v5 (issue 13): a call's place in its trace, added at the end of the table after v4's.
    Field(
        "agent_name",
        "string",
        "gen_ai.agent.name: the agent the call ran under (its own, or its nearest "
        "invoke_agent ancestor's, or llm_context(agent=...)).",
    ),
    Field("agent_id", "string", "gen_ai.agent.id of that agent."),
    Field("conversation_id", "string", "gen_ai.conversation.id: the conversation of the call."),
    Field(
        "parent_span_id",
        "string",
        "Span id (16 hex) of the call span's parent; null for a root span.",
    ),
    Field("root_span_name", "string", "Name of the trace's root span, once it was received."),
    # v7 (issue 14): the call's policy violation, added at the end of the table after v6's.
    Field(
        "policy",
        "string",
        "The policy the call violated (the collector's --policies file): its most severe "
        "violation (block over alert over record), the first among equals; null: none.",
    ),
    Field(
        "policy_rule",
        "string",
        "That violation's rule: a budget (its window, e.g. day or 2h) or a call rule "
        "(allowed_models, denied_models, max_tokens, max_cost).",
    ),
    Field(
        "policy_action",
        "string",
        "That policy's action: record, alert or block.",
        max_length=16,
    ),
    Field(
        "has_content",
        "boolean",
        "Whether prompt/response content is stored (details).",
        None,
        codec="flag",
        stored=False,
    ),
)
"""The calls table's columns in order, with the API's fields among them (in the API's order)."""

FIELDS: dict[str, Field] = {field.name: field for field in CALL_FIELDS if field.api}
"""Every field of a call as the API names it (``get`` returns all of them)."""


def column_of(name: str) -> str:
    """The calls table's column of the API field ``name`` (a field with one)."""
    found = FIELDS[name].column
    if found is None:
        raise ValueError(f"{name} is computed, not a column")
    return found


STORED: tuple[Field, ...] = tuple(field for field in CALL_FIELDS if field.stored)
"""The fields with a column of their own: the calls table's columns, in order."""

CONTENT_FIELDS: dict[str, Field] = {
    # Already cut to the content_max_length setting when the record is built.
    "request_prompt": Field(
        "request_prompt",
        "string",
        "The request's input messages (JSON), truncated.",
        max_length=2**31 - 1,
    ),
    "response_preview": Field(
        "response_preview",
        "string",
        "The response's output messages (JSON), truncated.",
        max_length=2**31 - 1,
    ),
}
"""Served by ``details`` only, and only while content is retained (their own table, keyed as
the calls table is)."""

CONTENT_KEY: tuple[Field, ...] = (FIELDS["id"], FIELDS["created_at"])
"""The content table's key columns: the calls table's primary key."""

SUMMARY_FIELDS: tuple[str, ...] = (
    "id",
    "trace_id",
    "created_at",
    "service",
    "provider",
    "model",
    "operation",
    "status",
    "status_code",
    "request_id",
    "api_key_hint",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost",
    "feature",
    "project",
    # What the seeds' list items carry besides (seed 001: its error logs' error).
    "streaming",
    "error_type",
    "error_code",
    "error_message",
)
"""The default ``select`` of a list."""


# --- filters and sort keys ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    """An exact-match filter: the parameter ``name`` keeps the calls whose field ``name`` equals
    it (``CallFilter.<name>``)."""

    name: str
    help: str
    """How the command line's ``--help`` describes its flag."""
    choices: tuple[str, ...] = ()
    """The values it may take; empty: any text."""


TEXT_MATCHES: tuple[Match, ...] = (
    Match("provider", "only this provider, e.g. openai"),
    Match("model", "only this model (the requested one)"),
    Match("operation", "only this operation, e.g. chat"),
    Match("service", "only this service.name of the application"),
    Match("feature", "only this llm_context feature"),
    Match("user", "only this llm_context user id"),
    Match("project", "only this llm_context project id"),
    Match("api_key_id", "only this llm_context api key id"),
    Match("pipeline_step", "only this llm_context pipeline step"),
    Match("response_model", "only this model named by the response"),
    Match("error_type", "only calls that failed with this error.type"),
    Match("request_id", "only the call with this provider response id (gen_ai.response.id)"),
    Match("api_key_hint", "only the calls made with keys of this hint, e.g. sk-proj-...Ab3d"),
    Match("agent_name", "only calls under this agent (gen_ai.agent.name)"),
    Match("agent_id", "only calls under this agent id (gen_ai.agent.id)"),
    Match("conversation_id", "only calls of this conversation (gen_ai.conversation.id)"),
    Match("policy", "only calls that violated this policy (the collector's --policies)"),
    Match("policy_action", "only calls whose violation's policy has this action"),
)
"""Filters of any text, matched exactly (the parameters' order in messages). Each takes several
values (``model=a,b`` in the URL, ``{"$in": [...]}`` or ``{"$ne": ...}`` in a POST query)."""

ROUTED_MATCHES: frozenset[str] = frozenset({"model", "response_model"})
"""Model filters where a gateway's prefixed name (``openai/gpt-4o``) also matches the name
without its prefix, as instrumented calls to the provider itself store it."""

CHOICE_MATCHES: tuple[Match, ...] = (
    Match("status", "only these calls", choices=("success", "error")),
    Match("billing", "only calls billed this way", choices=("credits", "own_key")),
)
"""Filters of a closed set of values."""

FLAG_MATCHES: tuple[Match, ...] = (
    Match("streaming", "only streamed (true) or unstreamed (false) calls", ("true", "false")),
)
"""Filters of a boolean field: true or false (JSON booleans in a POST query)."""

TIME_ALIASES: dict[str, str] = {"from": "start_date", "to": "end_date"}
"""The seeds' names of ``TIME_FILTERS`` (seed 004: ``from``/``to``, both inclusive dates --
``end_date`` as a bare date is already "through that day")."""

FIELD_ALIASES: dict[str, str] = {"role": "agent_name"}
"""The seeds' names of other filters and stats groups. Seed 003's ``role`` (the caller's role,
e.g. ``indicator_agent``, ``vision``, ``execution``: which agent of a pipeline called) is our
``agent_name`` (``gen_ai.agent.name``, set by agent frameworks or ``llm_context``'s agent); a
call made outside any agent has none (seed 003's role is never empty). A filter here and a
stats ``group_by`` (``CALL_GROUPS``); giving both names is a 400."""

DAYS_FILTER = "days"
"""Seed 004's ``days=N``: the last N UTC days, today included (ignored, as there, when both
``from`` and ``to`` are given)."""

TIME_FIELD = "created_at"
TIME_FILTERS = ("start_date", "end_date")
"""``start_date`` (inclusive) and ``end_date`` (exclusive) bound ``TIME_FIELD``
(``CallFilter.start`` / ``.end``)."""


class Range(NamedTuple):
    """Two bound filters, ``min_<name>`` and ``max_<name>`` (both inclusive), on one field
    (``CallFilter.min_<attribute>`` / ``.max_<attribute>``)."""

    name: str
    field: str
    attribute: str
    unit: Literal["MS", "USD", "N"]
    """What a bound counts: milliseconds, USD, or a number (tokens)."""


RANGES: tuple[Range, ...] = (
    Range("latency", "latency_ms", "latency_ms", "MS"),
    Range("cost", "cost", "cost", "USD"),
    Range("tokens", "total_tokens", "tokens", "N"),
)

FILTERS: tuple[str, ...] = (
    *(match.name for match in TEXT_MATCHES),
    *(match.name for match in CHOICE_MATCHES),
    *(match.name for match in FLAG_MATCHES),
    *TIME_FILTERS,
    *TIME_ALIASES,
    *FIELD_ALIASES,
    DAYS_FILTER,
    *(f"{bound}_{rng.name}" for rng in RANGES for bound in ("min", "max")),
)
"""Every filter parameter, for list, count and stats alike."""


COMPARED: tuple[str, ...] = tuple(
    name
    for name, field in FIELDS.items()
    if field.type in ("integer", "number", "datetime") and field.column
)
"""The numeric and time fields a POST query compares (``{"latency_ms": {"$gt": 500}}``:
``$gt $gte $lt $lte $ne``, or a bare value for equality); also sort keys."""

SORTS: dict[str, str] = {
    "created_at": "created_at",
    "cost": "cost",
    "latency": "latency_ms",
    "tokens": "total_tokens",
    **{name: name for name in COMPARED},
    "model": "model",
    "provider": "provider",
}
"""Sort key -> the field it orders by: the first four are the seeds' short names; then every
numeric and time field by its own name, and model and provider."""

MAX_SORT_KEYS = 4
"""Sort keys one request may give (``sort=model,cost``); the id breaks the last ties."""


CALL_GROUPS: dict[str, str] = {
    "agent": "agent_name",
    "conversation": "conversation_id",
    "policy": "policy",
    **FIELD_ALIASES,
}
"""Stats groups answered from the call records, not the daily aggregates -> the field grouped
by: conversations are too many for a daily row's key (``callgroups.py``, docs/calllog.md); a
policy is a key the existing daily tables do not have, and only violating calls carry one."""


# --- the daily aggregates ----------------------------------------------------------------------

DAILY_DIMENSIONS: tuple[str, ...] = (
    "day",
    *(str(field.column) for field in CALL_FIELDS if field.daily == "dimension"),
)
"""The key of a daily aggregate row (``day``: its YYYY-MM-DD); NULL dimensions are stored as
'' (keys cannot be NULL)."""

SUMMED: tuple[str, ...] = tuple(str(field.column) for field in STORED if field.daily == "sum")
"""The calls' columns the daily rows sum (same names there): token counts, costs."""

BILLING_SUMS: tuple[str, ...] = (
    "credits_requests",
    "credits_unpriced",
    "credits_cost_nusd",
    "credits_list_nusd",
    "credits_list_unknown",
    "discount_nusd",
)
"""A daily row's billing counters (v3): the calls billed as credits, those without a cost, their
cost, their cost at list price and those whose list price is unknown; the USD discounts took
off (``discount``). Own-key figures are the row's totals less the credits ones."""

POLICY_SUMS: tuple[str, ...] = ("policy_violations", "policy_alerts", "policy_blocks")
"""A daily row's policy counters (v7), from each call's ``policy_action``: the calls with a
violation, those of an alert or block policy, those of a block policy."""

DAILY_SUMS: tuple[str, ...] = (
    "requests",
    "failed",
    "unpriced",
    *SUMMED,
    "latency_count",
    *BILLING_SUMS,
    *POLICY_SUMS,
)
"""Integer counters of a daily aggregate row, added on merge: calls, failed calls, calls
without a price, the summed columns, the calls with a latency (the mean's divisor), the
billing counters and the policy counters."""

DAILY_LATENCY_SUM = "latency_sum_ms"
DAILY_SKETCHES: dict[str, str] = {"latency_ms": "latency_sketch", "ttfc_ms": "ttfc_sketch"}
"""Calls' column -> the daily column of its mergeable sketch (percentiles)."""

DAILY_VALUES: tuple[str, ...] = (*DAILY_SUMS, DAILY_LATENCY_SUM, *DAILY_SKETCHES.values())
"""A daily row's columns after its key, in the order ``rollup.Totals`` reads and writes them."""


@dataclass(frozen=True, slots=True)
class Rollup:
    """One table of daily aggregates: its key is the day and these fields (NULL as '');
    every table has the same ``DAILY_VALUES`` and every call is added to each."""

    table: str
    fields: tuple[str, ...]
    """The API names of its key's fields after the day."""
    capped: str | None = None
    """The field its own cap counts (``call_log_max_daily_users``); its other fields fold as
    the first table's do (``cardinality.py``)."""

    @property
    def key(self) -> tuple[str, ...]:
        """Its key's columns."""
        return ("day", *(column_of(name) for name in self.fields))


_MAIN_FIELDS = tuple(field.name for field in CALL_FIELDS if field.daily == "dimension")
_NARROW = ("status", "provider", "model", "project")
"""Next to a user or a key: the filters they are asked with (status), the per-day model
breakdown (provider, model) and access control (project) -- few values per user each."""

ROLLUPS: tuple[Rollup, ...] = (
    Rollup(DAILY, _MAIN_FIELDS),
    Rollup(DAILY_STATUS, ("status", *_MAIN_FIELDS)),
    Rollup(DAILY_USER, ("user", *_NARROW), capped="user"),
    Rollup(DAILY_API_KEY, ("api_key_id", *_NARROW), capped="api_key_id"),
)
"""The daily aggregates; stats read the first whose key has every field the query filters
or groups on (none: the query is refused, naming them). The first is ``DAILY_DIMENSIONS``."""

STATS_MATCHES: tuple[str, ...] = tuple(
    match.name
    for match in (*TEXT_MATCHES, *CHOICE_MATCHES)
    if any(match.name in rollup.fields for rollup in ROLLUPS)
)
"""The matches stats can apply: those on a field some daily aggregate keeps."""


# --- the tables, as the migrations must have made them ------------------------------------------


class Column(NamedTuple):
    name: str
    sql: SqlType
    required: bool


def _daily_columns(key: tuple[str, ...]) -> tuple[Column, ...]:
    # Billing's sums last: v3 added them to the first table; the tables v5 made spell them out
    # in the same place, so every daily table has one column order.
    return (
        *(Column(name, "text", True) for name in key),
        *(
            Column(name, "bigint", True)
            for name in DAILY_SUMS
            if name not in BILLING_SUMS and name not in POLICY_SUMS
        ),
        Column(DAILY_LATENCY_SUM, "real", True),
        *(Column(name, "blob", False) for name in DAILY_SKETCHES.values()),
        *(Column(name, "bigint", True) for name in BILLING_SUMS),
        # v7 appended the policy counters to every daily table.
        *(Column(name, "bigint", True) for name in POLICY_SUMS),
    )


TABLES: dict[str, tuple[Column, ...]] = {
    CALLS: tuple(Column(str(f.column), f.sql, f.required) for f in STORED),
    CONTENT: (
        *(Column(str(f.column), f.sql, f.required) for f in CONTENT_KEY),
        *(Column(str(f.column), f.sql, f.required) for f in CONTENT_FIELDS.values()),
    ),
    **{rollup.table: _daily_columns(rollup.key) for rollup in ROLLUPS},
    DAILY_SINCE: (Column("last_partial_day", "text", False),),
    TRACE_SPANS: (
        Column("trace_id", "text", True),
        Column("span_id", "text", True),
        Column("parent_span_id", "text", False),
        Column("name", "text", True),
        Column("kind", "text", True),
        Column("service", "text", False),
        Column("agent_name", "text", False),
        Column("start_us", "bigint", True),
        Column("end_us", "bigint", False),
    ),
    DEAD_LETTERS: (
        Column("id", "text", True),
        Column("quarantined_us", "bigint", True),
        Column("attempts", "integer", True),
        Column("error", "text", True),
        Column("record", "text", True),
    ),
}
"""Each table's columns in order: what a migrated database holds (a test checks)."""
