"""Traces and conversations from the call log: what a run cost, and which step spent it.

- ``list_traces``: the traces with LLM calls, each with its calls' totals (cost exact, in
  integer nano-USD until the answer), services and agents. A trace is listed when one of its
  calls matches the filter; its totals are those of all its calls (that the API key may
  read). ``min_cost``/``max_cost`` bound the trace's total, not a call's.
- ``get_trace``: one trace as a tree -- its calls under the agent and tool spans that were
  received (``tracespans.py``), linked by parent span id. A node whose parent was not received
  hangs at the top level. Each node carries the exact cost of the calls in its subtree.
- ``get_conversation``: the totals of a conversation's calls.

A key limited to projects sees a trace only through its calls of those projects: their totals,
and of the kept spans (which have no project) only those above its calls (``above_calls``).

Everything reads the calls table by its trace (or conversation) index and the kept spans by
their key: a trace's answer costs its own calls, whatever the store holds. A tree holds at
most ``MAX_TREE_CALLS`` calls (its totals still count every call) and is at most
``MAX_DEPTH`` levels deep (deeper nodes are shown under their ancestor at that depth), so an
answer stays bounded and encodable.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from otel_llm.calllog import params, sql, tracespans
from otel_llm.calllog.catalogue import FILTERS, column_of
from otel_llm.calllog.pageparams import as_offset
from otel_llm.calllog.paramvalues import (
    Given,
    ParamError,
    as_choice,
    as_cost,
    as_integer,
    shown,
)
from otel_llm.calllog.query import DEFAULT_LIMIT, MAX_LIMIT, CallFilter
from otel_llm.calllog.record import from_nanos, micros_of, utc_from_micros
from otel_llm.calllog.schema import CALLS
from otel_llm.calllog.tracespans import DAY_US, Read, TraceSpan
from otel_llm.pricing.cost import nanos_bound

MAX_TREE_CALLS = 10_000
"""Calls placed in one trace's tree, at most (the earliest)."""
MAX_DEPTH = 100
"""Levels of a tree, at most."""
MAX_NAMES = 20
"""Services or agents listed per trace or conversation, at most."""
MAX_CONVERSATION_ID = 256
SLACK = timedelta(days=1)
"""A listed trace's totals count its calls this long either side of the filter's range."""
_DAYS_PER_STATEMENT = 1000
_IDS_PER_STATEMENT = 500
_MAX_CANDIDATES = 5000
"""Traces whose totals the newest page's last statement reads, at most (deeper: the full
aggregation)."""
_MIN_BATCH = 200
"""Calls the newest page reads in its first batch, at least (then twice as many each)."""
_MAX_BATCH = 50_000

SORTS = ("cost", "time", "calls")
ALIASES = {"agent": "agent_name", "conversation": "conversation_id"}
"""The traces list's names of two call filters (the issue's words)."""
_TRACE_BOUNDS = ("min_cost", "max_cost")
_PAGE = ("sort", "order", "limit", "offset", "skip")
PARAMETERS: tuple[str, ...] = (*ALIASES, *FILTERS, *_PAGE)
"""What ``GET /api/v1/traces`` accepts: the calls' filters (``min_cost`` and ``max_cost`` on
the trace's total), ``agent`` and ``conversation`` (``agent_name``, ``conversation_id``)."""


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """A page of traces."""

    filter: CallFilter = field(default_factory=CallFilter)
    """Traces with a call matching it are listed."""
    min_cost: Decimal | None = None
    max_cost: Decimal | None = None
    """USD, inclusive, on the trace's total (a trace without a priced call never matches)."""
    sort: str = "time"
    descending: bool = True
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def parse_traces(query: Mapping[str, Sequence[str]]) -> TraceQuery:
    """The page of traces a ``GET /api/v1/traces`` asks for; ``ParamError`` naming the
    parameter otherwise."""
    given: dict[str, Given] = {}
    for name, values in query.items():
        if name not in PARAMETERS:
            raise ParamError(
                f"unknown parameter '{shown(name)}'; expected one of: " + ", ".join(PARAMETERS),
                name,
            )
        if len(values) != 1:
            raise ParamError(f"parameter '{name}' is given {len(values)} times; give it once", name)
        given[name] = Given(values[0], f"parameter '{name}'", from_url=True)
    for alias, name in ALIASES.items():
        if alias in given and name in given:
            raise ParamError(f"{alias} and {name} are the same thing; give one of them", alias)
    filters = {
        ALIASES.get(name, name): [value.value]
        for name, value in given.items()
        if name not in _TRACE_BOUNDS and name not in _PAGE
    }
    try:
        call_filter = params.parse_count(filters)
    except ParamError as error:
        raise _renamed(error) from None
    bounds = [as_cost(given[name]) if name in given else None for name in _TRACE_BOUNDS]
    if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
        raise ParamError(
            f"min_cost ({bounds[0]}) is greater than max_cost ({bounds[1]})", "min_cost"
        )
    if "skip" in given and "offset" in given:
        raise ParamError("skip and offset are the same thing; give one of them", "offset")
    offset_given = given.get("offset") or given.get("skip")
    return TraceQuery(
        filter=call_filter,
        min_cost=bounds[0],
        max_cost=bounds[1],
        sort=as_choice(given["sort"], SORTS) if "sort" in given else "time",
        descending=(as_choice(given["order"], ("asc", "desc")) if "order" in given else "desc")
        == "desc",
        limit=(
            as_integer(given["limit"], low=1, high=MAX_LIMIT) if "limit" in given else DEFAULT_LIMIT
        ),
        offset=as_offset(offset_given) if offset_given else 0,
    )


def _renamed(error: ParamError) -> ParamError:
    message, parameter = error.message, error.parameter
    for alias, name in ALIASES.items():
        message = message.replace(f"'{name}'", f"'{alias}'")
        if parameter == name:
            parameter = alias
    return ParamError(message, parameter)


# --- the list -----------------------------------------------------------------------------------

_TOTALS = (
    "COUNT(*) AS calls, SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors, "
    "COUNT(cost_nusd) AS priced, SUM(cost_nusd) AS cost, SUM(input_tokens) AS input_tokens, "
    "SUM(output_tokens) AS output_tokens, SUM(total_tokens) AS total_tokens, "
    "MIN(created_us) AS first_us, MAX(created_us) AS last_us"
)
_ORDER = {
    ("cost", True): "CASE WHEN cost IS NULL THEN 1 ELSE 0 END, cost DESC, trace_id DESC",
    ("cost", False): "CASE WHEN cost IS NULL THEN 0 ELSE 1 END, cost ASC, trace_id ASC",
    ("time", True): "first_us DESC, trace_id DESC",
    ("time", False): "first_us ASC, trace_id ASC",
    ("calls", True): "calls DESC, trace_id DESC",
    ("calls", False): "calls ASC, trace_id ASC",
}


def _visible(projects: frozenset[str] | None) -> sql.Statement:
    return sql.where(CallFilter(projects=projects))


def _by_trace(call_filter: CallFilter) -> sql.Statement:
    """``sql.where`` of a filter for statements that read by the trace index: its projects'
    condition is an expression, which SQLite does not look up in the project index (it took
    that one, and read every call of the projects: 0.9 s of 1,000,000 calls for one page)."""
    where = sql.where(replace(call_filter, projects=None))
    projects = call_filter.projects
    if projects is None:
        return where
    if not projects:  # allowed no project: sees nothing
        return sql.Statement(f"{where.text} AND 1 = 0", where.params)
    marks = ", ".join("?" for _ in projects)
    return sql.Statement(
        f"{where.text} AND {column_of('project')} || '' IN ({marks})",
        (*where.params, *sorted(projects)),
    )


def _near(call_filter: CallFilter) -> CallFilter:
    """The calls a listed trace's totals count: its calls the key may read, from a day before
    the filter's range to a day after it."""
    return replace(
        CallFilter(projects=call_filter.projects),
        start=call_filter.start - SLACK if call_filter.start else None,
        end=call_filter.end + SLACK if call_filter.end else None,
    )


def _grouped(query: TraceQuery, days: Sequence[int] | None) -> sql.Statement:
    """The matching traces' totals, one row each, as a sub-select ``t``. A trace's calls are
    counted from a day before the filter's start to a day after its end: a trace is a run of
    minutes, and the range bounds the rows read. ``days``: ``sql.where``'s."""
    matching = sql.where(query.filter, days)
    visible = sql.where(_near(query.filter))
    text = (
        f"SELECT trace_id, {_TOTALS}, MAX(root_span_name) AS root_span_name "  # noqa: S608
        f"FROM {CALLS} WHERE trace_id IN (SELECT trace_id FROM {CALLS} WHERE {matching.text}) "
        f"AND {visible.text} GROUP BY trace_id"
    )
    bounds: list[str] = []
    values: list[Any] = [*matching.params, *visible.params]
    if query.min_cost is not None:
        bounds.append("cost >= ?")
        values.append(nanos_bound(query.min_cost, ROUND_CEILING))
    if query.max_cost is not None:
        bounds.append("cost <= ?")
        values.append(nanos_bound(query.max_cost, ROUND_FLOOR))
    where = f" WHERE {' AND '.join(bounds)}" if bounds else ""
    return sql.Statement(f"SELECT * FROM ({text}) AS t{where}", tuple(values))  # noqa: S608


def _newest(
    read: Read, query: TraceQuery, days: Sequence[int] | None
) -> list[tuple[Any, ...]] | None:
    """The page of the newest traces (sort by time, descending, no bound on the total) read
    off the calls' time order: what it costs is the page, not the store. None: the query is
    not that one, or its page would name too many traces or days in one statement.

    A trace's time is its first call's (``first_us``, over the calls its totals count), no
    later than any of its matching calls. The matching calls are read newest first, in
    batches; after each, every trace not yet seen has all its matching calls before the
    batch's oldest call, so it starts before it: once ``offset + limit`` traces seen start
    at or after it, the page is among those seen. Their totals and order are then today's
    statement, on just those traces, by the (day, trace_id) index."""
    want = query.offset + query.limit
    if (
        (query.sort, query.descending) != ("time", True)
        or query.min_cost is not None
        or query.max_cost is not None
        or want > _MAX_CANDIDATES
    ):
        return None
    near = _near(query.filter)
    trace_days, high = _days_of(read, near)
    if not trace_days:  # no call in the range
        return []
    if len(trace_days) > _DAYS_PER_STATEMENT:
        return None
    top = high + 1
    if query.filter.end is not None:
        top = min(top, micros_of(query.filter.end))
    starts: dict[str, int] = {}
    batch = max(4 * want, _MIN_BATCH)
    while True:
        found, oldest, complete = _batch(read, query.filter, days, top, batch)
        new = [trace_id for trace_id in found if trace_id not in starts]
        starts.update(_starts(read, new, trace_days, near))
        if complete:
            break
        ordered = sorted(starts.values(), reverse=True)
        if len(ordered) >= want and ordered[want - 1] >= oldest:
            break
        top, batch = oldest, min(batch * 2, _MAX_BATCH)
    if not starts:
        return []
    ordered = sorted(starts.values(), reverse=True)
    cut = ordered[min(want, len(ordered)) - 1]
    candidates = sorted(trace_id for trace_id, start in starts.items() if start >= cut)
    if len(candidates) > _MAX_CANDIDATES:
        return None
    visible = _by_trace(near)
    return read(
        sql.Statement(
            f"SELECT trace_id, {_TOTALS}, MAX(root_span_name) AS root_span_name "  # noqa: S608
            f"FROM {CALLS} WHERE day IN ({', '.join('?' for _ in trace_days)}) "
            f"AND trace_id IN ({', '.join('?' for _ in candidates)}) AND {visible.text} "
            f"GROUP BY trace_id ORDER BY {_ORDER[('time', True)]} LIMIT ? OFFSET ?",
            (*trace_days, *candidates, *visible.params, query.limit, query.offset),
        )
    )


def _days_of(read: Read, near: CallFilter) -> tuple[range, int]:
    """The days of the stored calls within ``near``'s range, and the newest call's time."""
    low = read(sql.Statement(f"SELECT MIN(created_us) FROM {CALLS}", ()))[0][0]  # noqa: S608
    high = read(sql.Statement(f"SELECT MAX(created_us) FROM {CALLS}", ()))[0][0]  # noqa: S608
    if low is None or high is None:
        return range(0), 0
    first, last = int(low), int(high)
    if near.start is not None:
        first = max(first, micros_of(near.start))
    if near.end is not None:
        last = min(last, micros_of(near.end) - 1)
    return range(first // DAY_US, last // DAY_US + 1), int(high)


def _batch(
    read: Read, call_filter: CallFilter, days: Sequence[int] | None, top: int, size: int
) -> tuple[set[str], int, bool]:
    """The traces of the matching calls before ``top``, newest first, about ``size`` of
    them: (their ids, the oldest call's time, whether none is left before it). The calls at
    that oldest time are all read (a batch ends between two times, never inside one)."""
    if days is not None:  # those of the calls before ``top`` only
        days = [day for day in days if day <= (top - 1) // DAY_US]
    matching = sql.where(call_filter, days)
    rows = read(
        sql.Statement(
            f"SELECT created_us, trace_id FROM {CALLS} WHERE {matching.text} "  # noqa: S608
            "AND created_us < ? ORDER BY created_us DESC LIMIT ?",
            (*matching.params, top, size),
        )
    )
    found = {str(row[1]) for row in rows}
    if len(rows) < size:
        return found, int(rows[-1][0]) if rows else top, True
    oldest = int(rows[-1][0])
    found.update(
        str(row[0])
        for row in read(
            sql.Statement(
                f"SELECT trace_id FROM {CALLS} WHERE {matching.text} "  # noqa: S608
                "AND created_us = ?",
                (*matching.params, oldest),
            )
        )
    )
    return found, oldest, False


def _starts(
    read: Read, trace_ids: Sequence[str], days: Sequence[int], near: CallFilter
) -> dict[str, int]:
    """Each trace's first call (``first_us`` of its totals), by the (day, trace_id) index."""
    visible = _by_trace(near)
    starts: dict[str, int] = {}
    for start in range(0, len(trace_ids), _IDS_PER_STATEMENT):
        part = trace_ids[start : start + _IDS_PER_STATEMENT]
        for trace_id, first in read(
            sql.Statement(
                f"SELECT trace_id, MIN(created_us) FROM {CALLS} "  # noqa: S608
                f"WHERE day IN ({', '.join('?' for _ in days)}) "
                f"AND trace_id IN ({', '.join('?' for _ in part)}) AND {visible.text} "
                "GROUP BY trace_id",
                (*days, *part, *visible.params),
            )
        ):
            starts[str(trace_id)] = int(first)
    return starts


def list_traces(read: Read, query: TraceQuery, days: Sequence[int] | None = None) -> dict[str, Any]:
    """One page of traces (``data``), whether more follow and the calls list's pagination;
    ``days``: those a user or API key filter probes (``sql.where``)."""
    grouped = _grouped(query, days)
    rows = _newest(read, query, days)
    if rows is None:  # another order, or a bound on the total: every matching trace's totals
        rows = read(
            sql.Statement(
                f"{grouped.text} ORDER BY {_ORDER[(query.sort, query.descending)]} "
                "LIMIT ? OFFSET ?",
                (*grouped.params, query.limit, query.offset),
            )
        )
    if query.min_cost is None and query.max_cost is None:
        # Every trace with a matching call is listed: count them without the totals.
        matching = sql.where(query.filter, days)
        counted = sql.Statement(
            f"SELECT COUNT(DISTINCT trace_id) FROM {CALLS} WHERE {matching.text}",  # noqa: S608
            matching.params,
        )
    else:
        counted = sql.Statement(f"SELECT COUNT(*) FROM ({grouped.text}) AS c", grouped.params)  # noqa: S608
    total = int(read(counted)[0][0])
    ids = [str(row[0]) for row in rows]
    days = (
        range(min(int(r[8]) for r in rows) // DAY_US, max(int(r[9]) for r in rows) // DAY_US + 1)
        if rows
        else range(0)
    )
    names = _names(read, ids, days, query.filter.projects)
    data = []
    for row in rows:
        trace_id = str(row[0])
        services, agents, root = names.get(trace_id, ([], [], None))
        data.append(
            {
                "trace_id": trace_id,
                "root_span_name": root or row[10],
                **_totals(row[1:10]),
                "services": services,
                "agents": agents,
            }
        )
    has_more = query.offset + len(data) < total
    return {
        "data": data,
        "has_more": has_more,
        "pagination": {
            "total": total,
            "limit": query.limit,
            "offset": query.offset,
            "hasMore": has_more,
        },
    }


def _totals(row: Sequence[Any]) -> dict[str, Any]:
    calls, errors, priced, cost, input_tokens, output_tokens, total_tokens, first, last = row
    return {
        "total_cost": from_nanos(int(cost)) if priced else None,
        "calls": int(calls),
        "errors": int(errors or 0),
        "unpriced_calls": int(calls) - int(priced),
        "input_tokens": int(input_tokens or 0),
        "output_tokens": int(output_tokens or 0),
        "total_tokens": int(total_tokens or 0),
        "first_call_at": utc_from_micros(int(first)) if first is not None else None,
        "last_call_at": utc_from_micros(int(last)) if last is not None else None,
    }


def _names(
    read: Read, trace_ids: Sequence[str], days: Sequence[int], projects: frozenset[str] | None
) -> dict[str, tuple[list[str], list[str], str | None]]:
    """Per trace: its services and agents (calls' and kept spans'), its root span's name;
    ``days``: those of the traces' calls."""
    if not trace_ids:
        return {}
    services: dict[str, set[str]] = {trace_id: set() for trace_id in trace_ids}
    agents: dict[str, set[str]] = {trace_id: set() for trace_id in trace_ids}
    roots: dict[str, str] = {}
    visible = _by_trace(CallFilter(projects=projects))
    marks = ", ".join("?" for _ in trace_ids)
    # A key limited to projects sees only the spans above its calls: their parents are read.
    parent = ", parent_span_id" if projects is not None else ""
    parents: dict[str, set[str]] = {trace_id: set() for trace_id in trace_ids}
    for part in _chunks(days):
        for trace_id, service, agent, *above in read(
            sql.Statement(
                f"SELECT DISTINCT trace_id, service, agent_name{parent} FROM {CALLS} "  # noqa: S608
                f"WHERE day IN ({', '.join('?' for _ in part)}) AND trace_id IN ({marks}) "
                f"AND {visible.text}",
                (*part, *trace_ids, *visible.params),
            )
        ):
            if service:
                services[trace_id].add(service)
            if agent:
                agents[trace_id].add(agent)
            if above and above[0]:
                parents[trace_id].add(above[0])
    if projects is None:
        kept = tracespans.of_traces(read, trace_ids)
    else:
        kept = [
            span
            for trace_id in trace_ids
            for span in above_calls(tracespans.spans_of(read, trace_id), parents[trace_id])
        ]
    for span in kept:
        if span.service:
            services[span.trace_id].add(span.service)
        if span.kind == "agent":
            agents[span.trace_id].add(span.agent_name or span.name)
        if span.parent_span_id is None:  # the trace's root (an agent's span, maybe)
            roots[span.trace_id] = span.name
    return {
        trace_id: (
            sorted(services[trace_id])[:MAX_NAMES],
            sorted(agents[trace_id])[:MAX_NAMES],
            roots.get(trace_id),
        )
        for trace_id in trace_ids
    }


# --- one trace ----------------------------------------------------------------------------------

_CALL_COLUMNS = (
    "id, span_id, parent_span_id, created_us, model, operation, status, service, agent_name, "
    "cost_nusd, root_span_name"
)


def is_trace_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdefABCDEF" for c in text)


def get_trace(read: Read, trace_id: str, projects: frozenset[str] | None) -> dict[str, Any] | None:
    """The trace's totals and tree; None when it has no call (the key may read). Its calls are
    found through the (day, trace_id) index, probed for each day the store holds calls of."""
    trace_id = trace_id.lower()
    visible = _visible(projects)
    # Two statements: SQLite reads MIN or MAX of the key's first column off the index only
    # when the statement has just one of them (together, 15 ms for 100,000 calls: a scan).
    first = read(sql.Statement(f"SELECT MIN(created_us) FROM {CALLS}", ()))[0][0]  # noqa: S608
    last = read(sql.Statement(f"SELECT MAX(created_us) FROM {CALLS}", ()))[0][0]  # noqa: S608
    if first is None or last is None:
        return None
    sums = [0] * 7
    edges: list[int] = []
    calls: list[tuple[Any, ...]] = []
    for days in _chunks(range(int(first) // DAY_US, int(last) // DAY_US + 1)):
        where = f"day IN ({', '.join('?' for _ in days)}) AND trace_id = ? AND {visible.text}"
        bound = (*days, trace_id, *visible.params)
        row = read(sql.Statement(f"SELECT {_TOTALS} FROM {CALLS} WHERE {where}", bound))[0]  # noqa: S608
        if not row[0]:
            continue
        sums = [total + int(value or 0) for total, value in zip(sums, row[:7], strict=True)]
        edges += [int(row[7]), int(row[8])]
        if len(calls) < MAX_TREE_CALLS:
            calls += read(
                sql.Statement(
                    f"SELECT {_CALL_COLUMNS} FROM {CALLS} WHERE {where} "  # noqa: S608
                    "ORDER BY created_us, id LIMIT ?",
                    (*bound, MAX_TREE_CALLS - len(calls)),
                )
            )
    if not sums[0]:
        return None
    spans = tracespans.spans_of(read, trace_id)
    if projects is not None:
        spans = above_calls(spans, {str(call[2]) for call in calls if call[2]})
    tree = build_tree(calls, spans)
    summary = _totals((*sums, min(edges), max(edges)))
    root = next((s.name for s in spans if s.parent_span_id is None), None)
    services = {str(c[7]) for c in calls if c[7]} | {s.service for s in spans if s.service}
    agents = {str(c[8]) for c in calls if c[8]} | {
        s.agent_name or s.name for s in spans if s.kind == "agent"
    }
    return {
        "trace_id": trace_id,
        "root_span_name": root or next((c[10] for c in calls if c[10]), None),
        **summary,
        "services": sorted(services)[:MAX_NAMES],
        "agents": sorted(agents)[:MAX_NAMES],
        "truncated": summary["calls"] > len(calls),
        "tree": tree,
    }


def _chunks(days: Sequence[int]) -> list[Sequence[int]]:
    return [
        days[start : start + _DAYS_PER_STATEMENT]
        for start in range(0, len(days), _DAYS_PER_STATEMENT)
    ]


def above_calls(spans: Sequence[TraceSpan], parents: Collection[str]) -> list[TraceSpan]:
    """The kept spans on the way up from calls whose parents are ``parents``: what a key
    limited to projects sees of a trace. Its other spans (an agent or tool beside the key's
    calls) may have run for another project's calls, and a kept span has no project of its
    own. Linear in the spans; a loop of parents ends where it comes back."""
    by_id = {span.span_id: span for span in spans}
    shown: set[str] = set()
    for first in parents:
        parent: str | None = first
        while parent is not None and parent in by_id and parent not in shown:
            shown.add(parent)
            parent = by_id[parent].parent_span_id
    return [span for span in spans if span.span_id in shown]


def build_tree(calls: Sequence[Sequence[Any]], spans: Sequence[TraceSpan]) -> list[dict[str, Any]]:
    """The nodes of a trace, nested by parent span id (rows of ``_CALL_COLUMNS``, kept spans).

    Linear in the nodes: parents are looked up in a dict, subtree sums made bottom-up in one
    pass over an explicit order (no recursion: a chain of thousands of spans is no problem),
    and a parent loop (hostile input) is cut where it is found."""
    nodes: dict[str, dict[str, Any]] = {}
    start: dict[str, int] = {}
    own: dict[str, int | None] = {}
    for span in spans:
        nodes[span.span_id] = {
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id,
            "name": span.name,
            "kind": span.kind,
            "call_id": None,
            "agent_name": span.agent_name or (span.name if span.kind == "agent" else None),
            "model": None,
            "service": span.service,
            "status": None,
            "started_at": utc_from_micros(span.start_us),
            "cost": None,
        }
        start[span.span_id] = span.start_us
        own[span.span_id] = None
    for row in calls:
        call_id, span_id, parent, created, model, operation, status, service, agent, nusd = row[:10]
        nodes[span_id] = {  # a call wins over a kept span of the same id
            "span_id": span_id,
            "parent_span_id": parent,
            "name": f"{operation} {model}" if model else str(operation),
            "kind": "llm_call",
            "call_id": call_id,
            "agent_name": agent,
            "model": model,
            "service": service,
            "status": status,
            "started_at": utc_from_micros(int(created)),
            "cost": from_nanos(int(nusd)) if nusd is not None else None,
        }
        start[span_id] = int(created)
        own[span_id] = int(nusd) if nusd is not None else None
    parent_of = {
        span_id: node["parent_span_id"]
        if node["parent_span_id"] in nodes and node["parent_span_id"] != span_id
        else None
        for span_id, node in nodes.items()
    }
    order = _walk(nodes, parent_of, start)
    cost: dict[str, int | None] = dict(own)
    count = {span_id: int(node["kind"] == "llm_call") for span_id, node in nodes.items()}
    for span_id, _ in reversed(order):  # children before parents
        parent = parent_of[span_id]
        if parent is not None:
            mine, theirs = cost[span_id], cost[parent]
            if mine is not None:
                cost[parent] = mine if theirs is None else theirs + mine
            count[parent] += count[span_id]
    top: list[dict[str, Any]] = []
    shown_under: dict[str, str] = {}
    for span_id, depth in order:  # parents before children
        node = nodes[span_id]
        subtree = cost[span_id]
        node["subtree_cost"] = from_nanos(subtree) if subtree is not None else None
        node["subtree_calls"] = count[span_id]
        node["children"] = []
        parent = parent_of[span_id]
        if parent is None:
            top.append(node)
            continue
        if not node["agent_name"]:  # the nearest agent's (a call or tool under it ran for it)
            node["agent_name"] = nodes[parent]["agent_name"]
        # Past MAX_DEPTH a node is shown under its ancestor at that depth.
        host = shown_under.get(parent, parent) if depth > MAX_DEPTH else parent
        shown_under[span_id] = host
        nodes[host]["children"].append(node)
    return top


def _walk(
    nodes: Mapping[str, Any], parent_of: dict[str, str | None], start: Mapping[str, int]
) -> list[tuple[str, int]]:
    """(span id, depth) of every node, parents before children, siblings by start time. A
    node on a parent loop is made a top-level node (its link cut in ``parent_of``)."""
    children: dict[str, list[str]] = {}
    for span_id, parent in parent_of.items():
        if parent is not None:
            children.setdefault(parent, []).append(span_id)
    for siblings in children.values():
        siblings.sort(key=lambda s: (start[s], s))
    order: list[tuple[str, int]] = []
    seen: set[str] = set()
    pending = sorted((s for s, p in parent_of.items() if p is None), key=lambda s: (start[s], s))
    while True:
        stack = [(s, 0) for s in reversed(pending)]
        while stack:
            span_id, depth = stack.pop()
            seen.add(span_id)
            order.append((span_id, depth))
            stack.extend((child, depth + 1) for child in reversed(children.get(span_id, ())))
        if len(seen) == len(nodes):
            return order
        # Left over: nodes on a loop of parents. Cut the loop at its earliest node.
        cut = min((s for s in nodes if s not in seen), key=lambda s: (start[s], s))
        parent = parent_of[cut]
        if parent is not None:
            children[parent].remove(cut)
        parent_of[cut] = None
        pending = [cut]


# --- one conversation ---------------------------------------------------------------------------


def get_conversation(
    read: Read, conversation_id: str, projects: frozenset[str] | None
) -> dict[str, Any] | None:
    """The totals of a conversation's calls; None when it has none (the key may read)."""
    visible = _visible(projects)
    row = read(
        sql.Statement(
            f"SELECT {_TOTALS}, COUNT(DISTINCT trace_id) FROM {CALLS} "  # noqa: S608
            f"WHERE conversation_id = ? AND {visible.text}",
            (conversation_id, *visible.params),
        )
    )[0]
    if not row[0]:
        return None
    agents = read(
        sql.Statement(
            f"SELECT DISTINCT agent_name FROM {CALLS} WHERE conversation_id = ? "  # noqa: S608
            f"AND agent_name IS NOT NULL AND {visible.text} ORDER BY agent_name LIMIT ?",
            (conversation_id, *visible.params, MAX_NAMES),
        )
    )
    return {
        "conversation_id": conversation_id,
        **_totals(row[:9]),
        "traces": int(row[9]),
        "agents": [str(agent[0]) for agent in agents],
    }


def check_conversation_id(text: str) -> str:
    if not text or len(text) > MAX_CONVERSATION_ID:
        raise ParamError(
            f"a conversation id is 1 to {MAX_CONVERSATION_ID} characters", "conversation_id"
        )
    if "\x00" in text:  # PostgreSQL text cannot hold one; no stored id has one
        raise ParamError("conversation_id contains a NUL character", "conversation_id")
    return text
