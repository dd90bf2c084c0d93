"""A POST query's operators: ``{"model": {"$in": [...]}}``, ``{"latency_ms": {"$gt": 500}}``.

Text and choice filters take ``$in``, ``$nin``, ``$eq``, ``$ne`` (or a bare value, or a list),
boolean ones ``$eq`` and ``$ne``, numeric and time fields (``catalogue.COMPARED``) ``$eq $ne
$gt $gte $lt $lte`` (or a bare value: equal). Each operand is checked with the parameter's
own parser (``paramvalues.py``), and its message names it: ``query.latency_ms.$gt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from otel_llm.calllog.catalogue import FIELDS, ROUTED_MATCHES, Match
from otel_llm.calllog.paramvalues import (
    Given,
    ParamError,
    as_choice,
    as_cost,
    as_flag,
    as_moment,
    as_number,
    as_text,
    as_texts,
    shown,
    wrong_type,
)
from otel_llm.calllog.query import Comparison, Operator
from otel_llm.pricing.names import split_router_prefix

_TEXT_OPERATORS = ("$in", "$nin", "$eq", "$ne")
_OPERATORS: dict[str, Operator] = {
    "$eq": "eq",
    "$ne": "ne",
    "$gt": "gt",
    "$gte": "gte",
    "$lt": "lt",
    "$lte": "lte",
}


def matched(given: Given, match: Match) -> tuple[str | tuple[str, ...] | None, tuple[str, ...]]:
    """A text or choice filter: the values to match (one, several, or None: any) and the values
    to exclude."""

    def one(item: Given) -> str:
        return as_choice(item, match.choices) if match.choices else as_text(item)

    def many(item: Given) -> tuple[str, ...]:
        return _routed(as_texts(item, one), match.name)

    value = given.value
    if not isinstance(value, dict):
        if isinstance(value, list) or (given.from_url and "," in value):
            return many(given), ()
        names = _routed((one(given),), match.name)
        return (names[0] if len(names) == 1 else names), ()
    wanted: tuple[str, ...] | None = None
    unwanted: tuple[str, ...] = ()
    for operator, operand in operators_of(given, _TEXT_OPERATORS):
        if operator in ("$eq", "$ne") and not isinstance(operand.value, str):
            raise wrong_type(operand, "a string")
        if operator in ("$in", "$nin") and not isinstance(operand.value, list):
            raise wrong_type(operand, "an array of strings")
        items = many(
            Given(
                [operand.value] if operator in ("$eq", "$ne") else operand.value,
                operand.where,
                from_url=False,
            )
        )
        if operator in ("$in", "$eq"):
            # Two of them: a call must be among both lists.
            wanted = items if wanted is None else tuple(v for v in wanted if v in items)
        else:
            unwanted = tuple(dict.fromkeys((*unwanted, *items)))
    return wanted, unwanted  # () when no value is in both lists: nothing matches


def _routed(names: tuple[str, ...], filter_name: str) -> tuple[str, ...]:
    """Each name, and for a model filter also its name without a gateway prefix."""
    if filter_name not in ROUTED_MATCHES:
        return names
    found: list[str] = []
    for name in names:
        found.append(name)
        routed = split_router_prefix(name)
        if routed is not None:
            found.append(routed[1])
    return tuple(dict.fromkeys(found))


def flag_value(given: Given) -> bool:
    if not isinstance(given.value, dict):
        return as_flag(given)
    value: bool | None = None
    for operator, operand in operators_of(given, ("$eq", "$ne")):
        flag = as_flag(operand) != (operator == "$ne")
        if value is not None and value != flag:
            raise ParamError(f"{given.where}: its operators contradict each other", given.parameter)
        value = flag
    assert value is not None  # _operators gives at least one
    return value


def compared(given: Given) -> list[Comparison]:
    """A numeric or time field's conditions: ``{"$gt": 1, "$lte": 5}``, or a bare value."""
    name = given.parameter
    pairs = (
        operators_of(given, tuple(_OPERATORS))
        if isinstance(given.value, dict)
        else [("$eq", given)]
    )
    return [Comparison(name, _OPERATORS[op], _operand(name, operand)) for op, operand in pairs]


def _operand(name: str, given: Given) -> Decimal | datetime:
    field = FIELDS[name]
    if field.type == "datetime":
        return as_moment(given, end=False)
    if field.codec == "money":
        return as_cost(given)
    number = as_number(given)
    if abs(number) > _MAX_OPERAND:
        raise ParamError(
            f"{given.where} must be between -{_MAX_OPERAND:.0e} and {_MAX_OPERAND:.0e}",
            given.parameter,
        )
    return number


_MAX_OPERAND = Decimal(10**15)
"""A compared number's largest magnitude: beyond every field's range, within 64-bit columns."""


def operators_of(given: Given, allowed: Sequence[str]) -> list[tuple[str, Given]]:
    operators: dict[str, Any] = given.value
    if not operators:
        raise ParamError(
            f"{given.where} has no operator; use one of {', '.join(allowed)}", given.parameter
        )
    found = []
    for operator, operand in operators.items():
        if operator not in allowed:
            raise ParamError(
                f"{given.where}: unknown operator '{shown(str(operator))}'; expected one of "
                f"{', '.join(allowed)}",
                given.parameter,
            )
        found.append((operator, Given(operand, f"{given.where}.{operator}", from_url=False)))
    return found
