"""The page a list request asks for, apart from its filter: ``skip``/``offset``, ``sort`` and
``order`` (one or more keys), and ``select`` -- in the URL's form (``sort=cost&order=desc``,
``select=model,cost``) or the seeds' body form (``{"sort": {"cost": -1}, "select":
{"model": true}}``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from otel_llm.calllog.catalogue import CONTENT_FIELDS, MAX_SORT_KEYS, SORTS
from otel_llm.calllog.paramvalues import (
    Given,
    ParamError,
    as_choice,
    as_integer,
    json_type,
    shown,
    wrong_type,
)
from otel_llm.calllog.query import MAX_OFFSET, SortKey

SORT_KEYS: tuple[str, ...] = tuple(SORTS)
_ORDERS = ("asc", "desc")


def offset_of(given: Mapping[str, Given]) -> int:
    """The offset, from ``skip`` or ``offset`` (synonyms; both given: they must agree)."""
    values = [as_offset(given[name]) for name in ("skip", "offset") if name in given]
    if len(values) == 2 and values[0] != values[1]:
        raise ParamError("skip and offset are the same thing; give one of them", "offset")
    return values[0] if values else 0


def as_offset(given: Given) -> int:
    """An offset, at most ``MAX_OFFSET`` (past it: how to page deeper)."""
    offset = as_integer(given, low=0, high=10**9)
    if offset > MAX_OFFSET:
        raise ParamError(
            f"{given.where} may be at most {MAX_OFFSET}, got {offset}: a page that deep reads "
            "every call before it; page by time instead (end_date: the created_at of the last "
            "call seen, newest first) or narrow the filters",
            given.parameter,
        )
    return offset


def sort_of(given: Mapping[str, Given]) -> list[tuple[SortKey, bool]]:
    """The sort keys, each with whether it is descending (the default: newest first).

    ``sort=model,cost&order=asc,desc`` (one order for all keys, or one per key), ``"sort":
    "cost"``, or the seeds' body form ``{"model": 1, "cost": -1}``."""
    if "sort" not in given:
        keys: list[str] = ["created_at"]
        orders: list[str | None] = [None]
    else:
        sort = given["sort"]
        if isinstance(sort.value, dict):
            # The seeds' body form: {"cost": -1} (-1 / "desc" descending, 1 / "asc" ascending).
            if "order" in given:
                raise ParamError("give the order in sort or in order, not both", "order")
            keys = list(sort.value)
            orders = [_direction(direction) for direction in sort.value.values()]
        elif isinstance(sort.value, list):
            keys, orders = sort.value, [None] * len(sort.value)
        elif isinstance(sort.value, str):
            keys = [key.strip() for key in sort.value.split(",")]
            orders = [None] * len(keys)
        else:
            raise wrong_type(sort, "a sort key, a list of them or an object")
        if not keys:
            raise ParamError("sort names no key", "sort")
        if len(keys) > MAX_SORT_KEYS:
            raise ParamError(f"sort names {len(keys)} keys; at most {MAX_SORT_KEYS}", "sort")
        keys = [as_choice(Given(key, "sort", sort.from_url), SORT_KEYS) for key in keys]
        if len(set(keys)) != len(keys):
            raise ParamError("sort names a key twice", "sort")
    if "order" in given:
        order = given["order"]
        texts = order.value.split(",") if isinstance(order.value, str) else order.value
        if not isinstance(texts, list) or len(texts) not in (1, len(keys)):
            raise ParamError(
                f"order must be asc or desc, or one of them per sort key ({len(keys)})", "order"
            )
        chosen = [as_choice(Given(text, "order", order.from_url), _ORDERS) for text in texts]
        orders = list(chosen * len(keys) if len(chosen) == 1 else chosen)
    return [(key, order != "asc") for key, order in zip(keys, orders, strict=True)]


def _direction(value: Any) -> str:
    # A bool is no direction, though True == 1 (found in review: {"cost": true} sorted up).
    if not isinstance(value, bool):
        if value in (1, "asc"):
            return "asc"
        if value in (-1, "desc"):
            return "desc"
    raise ParamError(f"the sort direction must be 1, -1, 'asc' or 'desc'; got {value!r}", "sort")


def select_of(given: Given, fields: Collection[str]) -> tuple[str, ...]:
    """The fields ``select`` names (``fields``: those it may name), ``id`` always first."""
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
                f"'{shown(str(bad[0]))}' does not",
                "select",
            )
        names = list(value)
    else:
        raise wrong_type(given, "a list of field names")
    if not names:
        raise ParamError("select names no field", "select")
    for name in names:
        if not isinstance(name, str):
            raise ParamError(f"select: field names are strings; got {json_type(name)}", "select")
        if name in CONTENT_FIELDS:
            raise ParamError(
                f"select: '{name}' is content, served by /api/v1/calls/{{id}}/details", "select"
            )
        if name not in fields:
            raise ParamError(
                f"select: unknown field '{shown(name)}'; known fields: {', '.join(fields)}",
                "select",
            )
    # The id always comes back: it is what the details of a listed call are asked by.
    return tuple(dict.fromkeys(["id", *names]))
