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
- Text filters match exactly; every value is later bound as an SQL parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any, TypeVar, cast, get_args

from otel_llm.calllog import catalogue
from otel_llm.calllog.catalogue import (
    CHOICE_MATCHES,
    CONTENT_FIELDS,
    FIELDS,
    RANGES,
    SORTS,
    STATS_MATCHES,
    TEXT_MATCHES,
    TIME_FILTERS,
)
from otel_llm.calllog.query import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    CallFilter,
    CallQuery,
    SortKey,
    StatsGroup,
    StatsQuery,
)

TEXT_FILTERS: tuple[str, ...] = tuple(match.name for match in TEXT_MATCHES)
"""Filters matched exactly against a text field of the same name."""

FILTERS: tuple[str, ...] = catalogue.FILTERS
"""Every filter parameter, for list, count and stats alike."""

STATS_FILTERS: tuple[str, ...] = (*STATS_MATCHES, *TIME_FILTERS)
"""The filters stats accept: the dimensions the daily aggregates keep, and the time range."""

PAGE_PARAMETERS: tuple[str, ...] = ("limit", "skip", "offset", "sort", "order", "select")
STATS_PARAMETERS: tuple[str, ...] = ("group_by",)
SORT_KEYS: tuple[str, ...] = tuple(SORTS)
GROUPS: tuple[str, ...] = get_args(StatsGroup)

MAX_TEXT_LENGTH = 512
MAX_OFFSET = 1_000_000_000
MAX_COST = Decimal(1_000_000_000)
MAX_TOKENS = 2**62
MAX_LATENCY_MS = 1e12

_T = TypeVar("_T")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_JSON_TYPES = {
    str: "a string",
    bool: "a boolean",
    int: "a number",
    Decimal: "a number",
    float: "a number",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


class ParamError(ValueError):
    """A request the API answers with 400: the message names the parameter and the problem."""

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.message = message
        self.parameter = parameter


@dataclass(frozen=True, slots=True)
class _Given:
    """One parameter's value and where it came from (for messages and type rules)."""

    value: Any
    where: str
    """How the message names it: ``parameter 'limit'`` or ``query.model``."""
    from_url: bool
    """URL values are text to convert; JSON values must already have the right type."""


def parse_body(raw: bytes) -> dict[str, Any]:
    """A POST body: a JSON object (numbers with a fraction become Decimal, exactly); empty: {}."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError says where (line, column); UnicodeDecodeError that it is not UTF-8.
        raise ParamError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ParamError(f"the request body must be a JSON object, got {_json_type(data)}")
    return data


def parse_list(
    params: Mapping[str, Sequence[str]],
    body: Mapping[str, Any] | None = None,
    *,
    fields: Collection[str] = FIELDS,
) -> CallQuery:
    """The page of calls a list request asks for (``fields``: the names ``select`` may use)."""
    given = _gather(params, body, (*FILTERS, *PAGE_PARAMETERS))
    offset = _offset(given)
    limit = DEFAULT_LIMIT
    if "limit" in given:
        limit = _integer(given["limit"], low=1, high=MAX_LIMIT)
    sort, descending = _sort(given)
    select = _select(given["select"], fields) if "select" in given else None
    return CallQuery(
        filter=_filter(given),
        sort=sort,
        descending=descending,
        limit=limit,
        offset=offset,
        select=select,
    )


def parse_count(
    params: Mapping[str, Sequence[str]], body: Mapping[str, Any] | None = None
) -> CallFilter:
    """The filter of a count request."""
    return _filter(_gather(params, body, FILTERS))


def parse_stats(
    params: Mapping[str, Sequence[str]], body: Mapping[str, Any] | None = None
) -> StatsQuery:
    """The statistics a stats request asks for."""
    given = _gather(params, body, (*FILTERS, *STATS_PARAMETERS))
    for name in given:
        if name in FILTERS and name not in STATS_FILTERS:
            # Stats come from daily aggregates, which keep only these dimensions.
            raise ParamError(
                f"stats cannot filter on {name} (list and count can); stats take "
                f"{', '.join(STATS_FILTERS)} and group_by",
                name,
            )
    group_by: StatsGroup | None = None
    if "group_by" in given:
        group_by = cast(StatsGroup, _choice(given["group_by"], GROUPS))
    return StatsQuery(filter=_filter(given), group_by=group_by)


def parse_item(
    params: Mapping[str, Sequence[str]], *, fields: Collection[str] = FIELDS
) -> tuple[str, ...] | None:
    """The ``select`` of a get-one-call request (None: every field)."""
    given = _gather(params, None, ("select",))
    return _select(given["select"], fields) if "select" in given else None


def parse_none(params: Mapping[str, Sequence[str]]) -> None:
    """A request that takes no parameters (details) must not be given any."""
    _gather(params, None, ())


# --- gathering --------------------------------------------------------------------------------


def _gather(
    params: Mapping[str, Sequence[str]],
    body: Mapping[str, Any] | None,
    allowed: Sequence[str],
) -> dict[str, _Given]:
    """Every parameter given, from the URL and the body, each checked to be known and single."""
    given: dict[str, _Given] = {}
    for name, values in params.items():
        if name not in allowed:
            raise ParamError(_unknown("parameter", name, allowed), name)
        if len(values) != 1:
            raise ParamError(f"parameter '{name}' is given {len(values)} times; give it once", name)
        given[name] = _Given(values[0], f"parameter '{name}'", from_url=True)
    if not body:
        return given
    filters = [name for name in allowed if name in FILTERS]
    top_level = ["query"] if filters else []
    top_level += [name for name in allowed if name not in FILTERS]
    for key, value in body.items():
        if key not in top_level:
            raise ParamError(_unknown("key in the request body", key, top_level), key)
        if key == "query":
            if not isinstance(value, dict):
                raise ParamError(f"query must be an object, got {_json_type(value)}", "query")
            for name, filter_value in value.items():
                if name not in filters:
                    raise ParamError(_unknown("filter in query", name, filters), name)
                _add(given, name, _Given(filter_value, f"query.{name}", from_url=False))
        else:
            _add(given, key, _Given(value, key, from_url=False))
    return given


def _add(given: dict[str, _Given], name: str, value: _Given) -> None:
    if name in given:
        raise ParamError(f"'{name}' is given both in the URL and in the request body", name)
    given[name] = value


def _unknown(kind: str, name: str, known: Sequence[str]) -> str:
    what, _, where = kind.partition(" in ")
    unknown = f"unknown {what} '{_shown(name)}'" + (f" in {where}" if where else "")
    if not known:
        return f"{unknown}: this request takes none"
    return f"{unknown}; expected one of: {', '.join(known)}"


def _shown(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


# --- the filter -------------------------------------------------------------------------------


def _filter(given: Mapping[str, _Given]) -> CallFilter:
    def bound(name: str, parse: Callable[[_Given], _T]) -> _T | None:
        return parse(given[name]) if name in given else None

    start_name, end_name = TIME_FILTERS
    start = bound(start_name, lambda value: _moment(value, end=False))
    end = bound(end_name, lambda value: _moment(value, end=True))
    if start is not None and end is not None and start >= end:
        raise ParamError(f"{start_name} must be before {end_name}", start_name)
    values: dict[str, Any] = {}
    for match in CHOICE_MATCHES:
        values[match.name] = bound(match.name, partial(_choice, choices=match.choices))
    for match in TEXT_MATCHES:
        values[match.name] = bound(match.name, _text)
    for rng in RANGES:
        parse = _BOUND_PARSERS[rng.unit]
        values[f"min_{rng.attribute}"] = bound(f"min_{rng.name}", parse)
        values[f"max_{rng.attribute}"] = bound(f"max_{rng.name}", parse)
    for rng in RANGES:
        low, high = values[f"min_{rng.attribute}"], values[f"max_{rng.attribute}"]
        if low is not None and high is not None and low > high:
            raise ParamError(
                f"min_{rng.name} ({low}) is greater than max_{rng.name} ({high})",
                f"min_{rng.name}",
            )
    return CallFilter(start=start, end=end, **values)


def _text(given: _Given) -> str:
    value = given.value
    if not isinstance(value, str):
        raise _wrong_type(given, "a string")
    if not value:
        raise ParamError(f"{given.where} is empty; leave it out to match any value", _name(given))
    if len(value) > MAX_TEXT_LENGTH:
        raise ParamError(f"{given.where} is longer than {MAX_TEXT_LENGTH} characters", _name(given))
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; no stored value contains one.
        raise ParamError(f"{given.where} contains a NUL character", _name(given))
    return value


def _choice(given: _Given, choices: Sequence[str]) -> str:
    value = given.value
    if not isinstance(value, str):
        raise _wrong_type(given, "a string")
    if value not in choices:
        raise ParamError(
            f"{given.where} must be one of {', '.join(choices)}; got '{_shown(value)}'",
            _name(given),
        )
    return value


def _moment(given: _Given, *, end: bool) -> datetime:
    value = given.value
    if not isinstance(value, str):
        raise _wrong_type(given, "a string (an ISO 8601 date)")
    text = value.strip()
    try:
        if _DATE_ONLY.fullmatch(text):
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            # A bare end date means "through that day".
            return moment + timedelta(days=1) if end else moment
        if "T" not in text.upper() and " " not in text:
            raise ValueError("no time")
        parsed = datetime.fromisoformat(text)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ParamError(
            f"{given.where}: expected an ISO 8601 date or date-time such as 2025-01-10 or "
            f"2025-01-10T12:00:00Z; got '{_shown(value)}'",
            _name(given),
        ) from None


def _latency(given: _Given) -> float:
    number = _number(given)
    if not 0 <= number <= MAX_LATENCY_MS:
        raise ParamError(
            f"{given.where} must be a number of milliseconds from 0 to {MAX_LATENCY_MS:.0e}",
            _name(given),
        )
    return float(number)


def _cost(given: _Given) -> Decimal:
    number = _number(given)
    if not 0 <= number <= MAX_COST:
        raise ParamError(f"{given.where} must be from 0 to {MAX_COST} (USD)", _name(given))
    return number


def _number(given: _Given) -> Decimal:
    value = given.value
    if given.from_url:
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ParamError(
                f"{given.where} must be a number; got '{_shown(value)}'", _name(given)
            ) from None
    elif isinstance(value, int | Decimal) and not isinstance(value, bool):
        number = Decimal(value)
    else:
        raise _wrong_type(given, "a number")
    if not number.is_finite():
        raise ParamError(f"{given.where} must be a finite number", _name(given))
    return number


def _tokens(given: _Given) -> int:
    return _integer(given, low=0, high=MAX_TOKENS)


_BOUND_PARSERS: dict[str, Callable[[_Given], Any]] = {"MS": _latency, "USD": _cost, "N": _tokens}
"""A range's unit -> the parser of its bounds."""


def _integer(given: _Given, *, low: int, high: int) -> int:
    value = given.value
    number: int | None = None
    if given.from_url:
        text = value.strip()
        number = int(text) if re.fullmatch(r"[+-]?\d{1,30}", text) else None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif not isinstance(value, Decimal):
        raise _wrong_type(given, "an integer")
    if number is None:
        raise ParamError(
            f"{given.where} must be an integer; got {_shown(str(value))!r}", _name(given)
        )
    if not low <= number <= high:
        raise ParamError(
            f"{given.where} must be between {low} and {high}; got {number}", _name(given)
        )
    return number


# --- page: offset, sort, select ---------------------------------------------------------------


def _offset(given: Mapping[str, _Given]) -> int:
    values = [
        _integer(given[name], low=0, high=MAX_OFFSET)
        for name in ("skip", "offset")
        if name in given
    ]
    if len(values) == 2 and values[0] != values[1]:
        raise ParamError("skip and offset are the same thing; give one of them", "offset")
    return values[0] if values else 0


def _sort(given: Mapping[str, _Given]) -> tuple[SortKey, bool]:
    key = "created_at"
    order: str | None = None
    if "sort" in given:
        sort = given["sort"]
        if isinstance(sort.value, dict):
            # The seeds' body form: {"cost": -1} (-1 / "desc" descending, 1 / "asc" ascending).
            if len(sort.value) != 1:
                raise ParamError('sort must name exactly one field, e.g. {"cost": -1}', "sort")
            ((field, direction),) = sort.value.items()
            key = _choice(_Given(field, "sort", sort.from_url), SORT_KEYS)
            order = _direction(direction)
            if "order" in given:
                raise ParamError("give the order in sort or in order, not both", "order")
        else:
            key = _choice(sort, SORT_KEYS)
    if "order" in given:
        order = _choice(given["order"], ("asc", "desc"))
    return cast(SortKey, key), order != "asc"


def _direction(value: Any) -> str:
    if value in (1, "asc"):
        return "asc"
    if value in (-1, "desc"):
        return "desc"
    raise ParamError(f"the sort direction must be 1, -1, 'asc' or 'desc'; got {value!r}", "sort")


def _select(given: _Given, fields: Collection[str]) -> tuple[str, ...]:
    value = given.value
    names: list[Any]
    if given.from_url:
        names = [name.strip() for name in value.split(",") if name.strip()]
    elif isinstance(value, list):
        names = value
    elif isinstance(value, dict):
        # The seeds' body form: {"model": true, "cost": true}.
        bad = [name for name, wanted in value.items() if wanted is not True]
        if bad:
            raise ParamError(
                f"select: each field must map to true (fields not wanted are left out); "
                f"'{_shown(str(bad[0]))}' does not",
                "select",
            )
        names = list(value)
    else:
        raise _wrong_type(given, "a list of field names")
    if not names:
        raise ParamError("select names no field", "select")
    for name in names:
        if not isinstance(name, str):
            raise ParamError(f"select: field names are strings; got {_json_type(name)}", "select")
        if name in CONTENT_FIELDS:
            raise ParamError(
                f"select: '{name}' is content, served by /api/v1/calls/{{id}}/details", "select"
            )
        if name not in fields:
            raise ParamError(
                f"select: unknown field '{_shown(name)}'; known fields: {', '.join(fields)}",
                "select",
            )
    # The id always comes back: it is what the details of a listed call are asked by.
    return tuple(dict.fromkeys(["id", *names]))


# --- small helpers ----------------------------------------------------------------------------


def _name(given: _Given) -> str:
    return given.where.removeprefix("query.").removeprefix("parameter ").strip("'")


def _wrong_type(given: _Given, expected: str) -> ParamError:
    return ParamError(
        f"{given.where} must be {expected}, got {_json_type(given.value)}", _name(given)
    )


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
