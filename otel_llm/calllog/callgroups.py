"""Stats grouped by agent or conversation, answered from the call records.

The daily aggregates key each row by its dimensions; a conversation id is a new value for
nearly every conversation, so as a dimension it would make a daily row per conversation (and
the cardinality cap would fold most of them into ``other`` -- an answer no one asked for). The
calls table has an index on each (``agent_name``/``conversation_id``, ``created_us``), so the
groups are a ``GROUP BY`` of the calls in the range: the database sums and picks the
``limit`` busiest groups; the rest is one ``other`` group, the daily aggregates' total less
the groups listed (exact); only the listed groups' latency sketches need Python -- one pass
over their calls, found by the index. All within the stats' time budget (``Deadline``), like
hourly stats, and only over the days call records are kept (``record_days``).
docs/calllog.md has the figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from otel_llm.calllog import sql
from otel_llm.calllog.cardinality import OTHER
from otel_llm.calllog.catalogue import CALL_GROUPS, DAILY_SUMS, SUMMED, column_of
from otel_llm.calllog.dailyrows import Deadline, Rows
from otel_llm.calllog.query import CallFilter
from otel_llm.calllog.rollup import Totals
from otel_llm.calllog.schema import CALLS

Scan = Callable[[sql.Statement, Deadline, Callable[[Rows], None]], None]

_COST = column_of("cost")
_LATENCY = column_of("latency_ms")
_TTFC = column_of("time_to_first_chunk_ms")
_CREDITS = f"{column_of('billing')} = 'credits'"
_LIST = column_of("list_cost")
_ACTION = column_of("policy_action")
_SUM_OF: dict[str, str] = {
    "requests": "COUNT(*)",
    "failed": "SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END)",
    "unpriced": f"SUM(CASE WHEN {_COST} IS NULL THEN 1 ELSE 0 END)",
    **{name: f"SUM({name})" for name in SUMMED},
    "latency_count": f"COUNT({_LATENCY})",
    # The billing counters, as ``rollup._bill`` counts a call.
    "credits_requests": f"SUM(CASE WHEN {_CREDITS} THEN 1 ELSE 0 END)",
    "credits_unpriced": f"SUM(CASE WHEN {_CREDITS} AND {_COST} IS NULL THEN 1 ELSE 0 END)",
    "credits_cost_nusd": f"SUM(CASE WHEN {_CREDITS} THEN {_COST} ELSE 0 END)",
    "credits_list_nusd": f"SUM(CASE WHEN {_CREDITS} THEN {_LIST} ELSE 0 END)",
    "credits_list_unknown": f"SUM(CASE WHEN {_CREDITS} AND {_LIST} IS NULL THEN 1 ELSE 0 END)",
    "discount_nusd": f"SUM({column_of('discount')})",
    # The policy counters, as ``rollup._police`` counts a call.
    "policy_violations": f"COUNT({_ACTION})",
    "policy_alerts": f"SUM(CASE WHEN {_ACTION} IN ('alert', 'block') THEN 1 ELSE 0 END)",
    "policy_blocks": f"SUM(CASE WHEN {_ACTION} = 'block' THEN 1 ELSE 0 END)",
}
"""Each daily counter as an aggregate over call records (a new counter needs its line here:
the next statement fails at import without it)."""
_SUMS = ", ".join((*(_SUM_OF[name] for name in DAILY_SUMS), f"SUM({_LATENCY})"))
"""A daily row's sums (``catalogue.DAILY_SUMS``, then the latency sum) over call records."""


def call_groups(
    scan: Scan,
    call_filter: CallFilter,
    group_by: str,
    limit: int,
    *,
    deadline: Deadline,
    overall: Totals,
    days: Sequence[int] | None = None,
) -> list[tuple[str | None, Totals]]:
    """The ``limit`` busiest groups of ``group_by`` (a key of ``CALL_GROUPS``) among the calls
    the filter selects, busiest first (calls without a value: the group None), then ``other``:
    ``overall`` (the same calls' totals, from the daily aggregates) less the groups listed.
    The rest's percentiles are computed only when the groups listed hold at least half of the
    calls (then every call of the range is read anyway)."""
    column = column_of(CALL_GROUPS[group_by])
    condition = sql.where(call_filter, days)  # days: a user's or key's (``sql.where``)
    groups: dict[str | None, Totals] = {}

    def add_groups(rows: Rows) -> None:
        for row in rows:
            totals = groups[row[0]] = Totals()
            totals.add_sums(row[1:])

    scan(
        sql.Statement(
            f"SELECT {column}, {_SUMS} FROM {CALLS} WHERE {condition.text} "  # noqa: S608
            f"GROUP BY {column} ORDER BY COUNT(*) DESC, "
            f"CASE WHEN {column} IS NULL THEN 1 ELSE 0 END, {column} LIMIT ?",
            (*condition.params, limit),
        ),
        deadline,
        add_groups,
    )
    rest = Totals()
    rest.sums = list(overall.sums)
    rest.latency_sum = overall.latency_sum
    for totals in groups.values():
        rest.subtract(totals)
    listed_calls = overall.requests - rest.requests
    everything = listed_calls >= rest.requests

    def merge(rows: Rows) -> None:
        for count, (value, latency, ttfc) in enumerate(rows):
            if not count % 1024:
                deadline.check()
            target = groups.get(value, rest)
            if latency is not None:
                target.latency.add(float(latency))
            if ttfc is not None:
                target.ttfc.add(float(ttfc))

    # When the groups listed hold most calls (a few agents), one scan of the range is the
    # cheaper read, and the rest's percentiles come with it; otherwise (many conversations)
    # only the listed groups' calls are read, by their index.
    wanted = ""
    named = [value for value in groups if value is not None]
    if not everything:
        listed = [f"{column} IN ({', '.join('?' for _ in named)})"] if named else []
        if None in groups:
            listed.append(f"{column} IS NULL")
        wanted = f" AND ({' OR '.join(listed)})"
    if groups:
        scan(
            sql.Statement(
                f"SELECT {column}, {_LATENCY}, {_TTFC} FROM {CALLS} "  # noqa: S608
                f"WHERE {condition.text}{wanted} "
                f"AND ({_LATENCY} IS NOT NULL OR {_TTFC} IS NOT NULL)",
                (*condition.params, *([] if everything else named)),
            ),
            deadline,
            merge,
        )
    ordered: list[tuple[str | None, Totals]] = list(groups.items())
    if rest.requests:
        ordered.append((OTHER, rest))
    return ordered
