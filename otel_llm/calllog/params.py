"""Turning a request into a query: URL parameters and a JSON body become ``CallQuery``,
``CallFilter`` or ``StatsQuery``, or a ``ParamError`` that says exactly what was wrong.

Two request shapes, as in the seed documents, answer the same questions:

- GET with URL parameters: ``?model=gpt-4o&status=error&sort=cost&order=desc&limit=20``;
- POST with a JSON body ``{"select": [...] | {"field": true}, "query": {filters},
  "sort": {"cost": -1} | "cost", "order": "asc", "limit": 20, "skip": 40}``; pagination may also
  be in the URL (``POST ...?skip=0&limit=10``), but one parameter may not be given twice.

Decisions a client can rely on:

- ``limit`` must be 1..100 (``MAX_LIMIT``): a larger one is rejected with 400, not capped, so a
  client that pages with ``offset += limit`` never skips calls it did not see.
- ``skip`` and ``offset`` are synonyms (the seeds use both).
- ``start_date`` is inclusive, ``end_date`` exclusive; a bare date ``2025-01-10`` as
  ``end_date`` means "through that day" (exclusive at the next midnight). A date-time without
  an offset is UTC.
- Text filters match exactly; several values match any of them (``model=a,b`` in the URL,
  ``{"model": {"$in": ["a", "b"]}}`` or ``["a", "b"]`` in a POST query; ``$ne``/``$nin``
  exclude values). A model with a gateway prefix (``openai/gpt-4o``) also matches the name
  without it. Numeric and time fields compare in a POST query: ``{"latency_ms": {"$gt": 500},
  "created_at": {"$gte": "2025-01-10"}}`` (``$gt $gte $lt $lte $ne``, a bare value: equal).
- The seeds' aliases: ``from``/``to`` are ``start_date``/``end_date``; ``days=N`` is the last
  N UTC days, today included. Every value is later bound as an SQL parameter.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast, get_args

from otel_llm.calllog import catalogue
from otel_llm.calllog.catalogue import (
    CHOICE_MATCHES,
    COMPARED,
    DAYS_FILTER,
    FIELD_ALIASES,
    FIELDS,
    FLAG_MATCHES,
    RANGES,
    STATS_MATCHES,
    TEXT_MATCHES,
    TIME_ALIASES,
    TIME_FILTERS,
)
from otel_llm.calllog.operators import compared, flag_value, matched
from otel_llm.calllog.pageparams import SORT_KEYS, offset_of, select_of, sort_of
from otel_llm.calllog.paramvalues import (
    BOUND_PARSERS,
    Given,
    ParamError,
    as_choice,
    as_integer,
    as_moment,
    json_type,
    shown,
)
from otel_llm.calllog.query import (
    DEFAULT_GROUP_LIMIT,
    DEFAULT_LIMIT,
    MAX_GROUP_LIMIT,
    MAX_LIMIT,
    CallFilter,
    CallQuery,
    StatsGroup,
    StatsQuery,
    View,
)
from otel_llm.text import has_surrogate_escape, json_from_outside

__all__ = [
    "FILTERS",
    "GROUPS",
    "PAGE_PARAMETERS",
    "SORT_KEYS",
    "STATS_FILTERS",
    "STATS_PARAMETERS",
    "TEXT_FILTERS",
    "ParamError",
    "parse_body",
    "parse_count",
    "parse_item",
    "parse_list",
    "parse_none",
    "parse_stats",
]

TEXT_FILTERS: tuple[str, ...] = tuple(match.name for match in TEXT_MATCHES)
"""Filters matched exactly against a text field of the same name."""

FILTERS: tuple[str, ...] = catalogue.FILTERS
"""Every filter parameter, for list, count and stats alike."""

STATS_FILTERS: tuple[str, ...] = (*STATS_MATCHES, *TIME_FILTERS, *TIME_ALIASES, DAYS_FILTER)
"""The filters stats accept: the dimensions the daily aggregates keep, and the time range."""

PAGE_PARAMETERS: tuple[str, ...] = ("limit", "skip", "offset", "sort", "order", "select", "view")
VIEWS: tuple[str, ...] = get_args(View)
"""A list's shapes: the fields as stored, or seed 001's ``enhanced`` (``tokens{}``, ``cost{}``,
``pricing{}`` per call and a ``summary{}``)."""
MAX_DAYS = 36_600
STATS_PARAMETERS: tuple[str, ...] = ("group_by", "limit")
GROUPS: tuple[str, ...] = get_args(StatsGroup)

_T = TypeVar("_T")


def parse_body(raw: bytes) -> dict[str, Any]:
    """A POST body: a JSON object (numbers with a fraction become Decimal, exactly); empty: {}."""
    if not raw.strip():
        return {}
    try:
        data = json_from_outside(raw, parse_float=Decimal, object_pairs_hook=_one_of_each)
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError says where (line, column); UnicodeDecodeError that it is not UTF-8.
        raise ParamError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ParamError(f"the request body must be a JSON object, got {json_type(data)}")
    if has_surrogate_escape(raw):
        _check_encodable(data)
    return data


def _one_of_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A name given twice would have its last value win, unseen (found in review: a second
    # "query" replaced the first): as a parameter given twice in a URL, refused.
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise ValueError(f"'{shown(name)}' is given twice in one object")
            seen.add(name)
    return data


def _check_encodable(data: dict[str, Any]) -> None:
    try:
        json.dumps(data, ensure_ascii=False, default=str).encode()
    except UnicodeEncodeError:
        raise ParamError(
            "the request body is not valid JSON: a string holds a lone UTF-16 surrogate "
            "(\\ud800-\\udfff not in a pair)"
        ) from None


def parse_list(
    params: Mapping[str, Sequence[str]],
    body: Mapping[str, Any] | None = None,
    *,
    fields: Collection[str] = FIELDS,
    now: datetime | None = None,
    view: str | None = None,
) -> CallQuery:
    """The page of calls a list request asks for (``fields``: the names ``select`` may use;
    ``now``: what ``days`` counts back from; ``view``: the one the path asks for)."""
    given = _gather(params, body, (*FILTERS, *PAGE_PARAMETERS))
    offset = offset_of(given)
    limit = DEFAULT_LIMIT
    if "limit" in given:
        limit = as_integer(given["limit"], low=1, high=MAX_LIMIT)
    keys = sort_of(given)
    if "view" in given:
        asked = as_choice(given["view"], VIEWS)
        if view is not None and asked != view:
            raise ParamError(f"this path is the {view} view; view={asked} contradicts it", "view")
        view = asked
    view = view or "plain"
    if view != "plain" and "select" in given:
        raise ParamError(f"the {view} view has its own fields; leave select out", "select")
    select = select_of(given["select"], fields) if "select" in given else None
    (sort, descending), *then = keys
    return CallQuery(
        filter=_filter(given, now),
        sort=sort,
        descending=descending,
        then=tuple(then),
        limit=limit,
        offset=offset,
        select=select,
        view=cast(View, view),
    )


def parse_count(
    params: Mapping[str, Sequence[str]],
    body: Mapping[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> CallFilter:
    """The filter of a count request."""
    return _filter(_gather(params, body, FILTERS), now)


def parse_stats(
    params: Mapping[str, Sequence[str]],
    body: Mapping[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> StatsQuery:
    """The statistics a stats request asks for. ``limit`` (1..1000, default 100): groups
    listed, the rest summed into ``other`` -- an answer's size is bounded whatever the data."""
    given = _gather(params, body, (*FILTERS, *STATS_PARAMETERS))
    for name in given:
        if (name in FILTERS or name in COMPARED) and name not in STATS_FILTERS:
            # Stats come from daily aggregates, which keep only these dimensions.
            raise ParamError(
                f"stats cannot filter on {name} (list and count can); stats take "
                f"{', '.join(STATS_FILTERS)}, group_by and limit",
                name,
            )
    group_by: StatsGroup | None = None
    if "group_by" in given:
        group_by = cast(StatsGroup, as_choice(given["group_by"], GROUPS))
    limit = DEFAULT_GROUP_LIMIT
    if "limit" in given:
        limit = as_integer(given["limit"], low=1, high=MAX_GROUP_LIMIT)
    call_filter = _filter(given, now)
    for name, _ in call_filter.excluded or ():
        raise ParamError(
            f"stats cannot exclude values of {name} ($ne, $nin: list and count can); stats "
            "take one value or several",
            name,
        )
    return StatsQuery(filter=call_filter, group_by=group_by, limit=limit)


def parse_item(
    params: Mapping[str, Sequence[str]], *, fields: Collection[str] = FIELDS
) -> tuple[str, ...] | None:
    """The ``select`` of a get-one-call request (None: every field)."""
    given = _gather(params, None, ("select",))
    return select_of(given["select"], fields) if "select" in given else None


def parse_none(params: Mapping[str, Sequence[str]]) -> None:
    """A request that takes no parameters (details) must not be given any."""
    _gather(params, None, ())


# --- gathering --------------------------------------------------------------------------------


def _gather(
    params: Mapping[str, Sequence[str]],
    body: Mapping[str, Any] | None,
    allowed: Sequence[str],
) -> dict[str, Given]:
    """Every parameter given, from the URL and the body, each checked to be known and single."""
    given: dict[str, Given] = {}
    for name, values in params.items():
        if name not in allowed:
            raise ParamError(_unknown("parameter", name, allowed), name)
        if len(values) != 1:
            raise ParamError(f"parameter '{name}' is given {len(values)} times; give it once", name)
        given[name] = Given(values[0], f"parameter '{name}'", from_url=True)
    if not body:
        return given
    filters = [name for name in allowed if name in FILTERS]
    if filters:
        filters += COMPARED  # comparisons: only in a POST query (their values are typed)
    top_level = ["query"] if filters else []
    top_level += [name for name in allowed if name not in FILTERS]
    for key, value in body.items():
        if key not in top_level:
            raise ParamError(_unknown("key in the request body", key, top_level), key)
        if key == "query":
            if not isinstance(value, dict):
                raise ParamError(f"query must be an object, got {json_type(value)}", "query")
            for name, filter_value in value.items():
                if name not in filters:
                    raise ParamError(_unknown("filter in query", name, filters), name)
                _add(given, name, Given(filter_value, f"query.{name}", from_url=False))
        else:
            _add(given, key, Given(value, key, from_url=False))
    return given


def _canonical(given: Mapping[str, Given]) -> dict[str, Given]:
    """The seeds' aliases (``from``, ``to``, ``role``) under the names they stand for; both:
    400."""
    found = dict(given)
    for alias, name in (*TIME_ALIASES.items(), *FIELD_ALIASES.items()):
        if alias in found:
            if name in found:
                raise ParamError(f"{alias} and {name} are the same thing; give one of them", alias)
            found[name] = found.pop(alias)
    return found


def _add(given: dict[str, Given], name: str, value: Given) -> None:
    if name in given:
        raise ParamError(f"'{name}' is given both in the URL and in the request body", name)
    given[name] = value


def _unknown(kind: str, name: str, known: Sequence[str]) -> str:
    what, _, where = kind.partition(" in ")
    unknown = f"unknown {what} '{shown(name)}'" + (f" in {where}" if where else "")
    if not known:
        return f"{unknown}: this request takes none"
    return f"{unknown}; expected one of: {', '.join(known)}"


# --- the filter -------------------------------------------------------------------------------


def _filter(given: Mapping[str, Given], now: datetime | None = None) -> CallFilter:
    given = _canonical(given)

    def bound(name: str, parse: Callable[[Given], _T]) -> _T | None:
        return parse(given[name]) if name in given else None

    start_name, end_name = TIME_FILTERS
    start = bound(start_name, lambda value: as_moment(value, end=False))
    end = bound(end_name, lambda value: as_moment(value, end=True))
    days = bound(DAYS_FILTER, lambda value: as_integer(value, low=1, high=MAX_DAYS))
    if days is not None and not (start is not None and end is not None):
        # Seed 004: days is overridden when from and to are given; with one of them it is
        # unclear which end it counts from.
        if start is not None or end is not None:
            raise ParamError(
                f"{DAYS_FILTER} counts back from today: give it, or a start and an end date, "
                "not both",
                DAYS_FILTER,
            )
        today = datetime.combine((now or datetime.now(UTC)).astimezone(UTC).date(), time(), UTC)
        start = today - timedelta(days=days - 1)
    if start is not None and end is not None and start >= end:
        raise ParamError(f"{start_name} must be before {end_name}", start_name)
    values: dict[str, Any] = {}
    excluded: list[tuple[str, tuple[str, ...]]] = []
    for match in (*CHOICE_MATCHES, *TEXT_MATCHES):
        if match.name in given:
            wanted, unwanted = matched(given[match.name], match)
            values[match.name] = wanted
            if unwanted:
                excluded.append((match.name, unwanted))
    for match in FLAG_MATCHES:
        values[match.name] = bound(match.name, flag_value)
    for rng in RANGES:
        parse = BOUND_PARSERS[rng.unit]
        values[f"min_{rng.attribute}"] = bound(f"min_{rng.name}", parse)
        values[f"max_{rng.attribute}"] = bound(f"max_{rng.name}", parse)
    for rng in RANGES:
        low, high = values[f"min_{rng.attribute}"], values[f"max_{rng.attribute}"]
        if low is not None and high is not None and low > high:
            raise ParamError(
                f"min_{rng.name} ({low}) is greater than max_{rng.name} ({high})",
                f"min_{rng.name}",
            )
    comparisons = tuple(
        comparison for name in COMPARED if name in given for comparison in compared(given[name])
    )
    return CallFilter(
        start=start,
        end=end,
        comparisons=comparisons or None,
        excluded=tuple(excluded) or None,
        **values,
    )
