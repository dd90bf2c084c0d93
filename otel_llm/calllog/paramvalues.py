"""One request parameter's value, checked and converted: text, a choice, a moment, a number,
an integer, each with the bounds the API accepts, or a ``ParamError`` naming the parameter.

A value comes as ``Given``: from the URL it is text to convert; from a JSON body it must already
have the right type (a number is a number, not a string of digits).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_TEXT_LENGTH = 512
MAX_COST = Decimal(1_000_000_000)
MAX_TOKENS = 2**62
MAX_LATENCY_MS = 1e12
MIN_MOMENT = datetime(1900, 1, 1, tzinfo=UTC)
MAX_MOMENT = datetime(9999, 1, 1, tzinfo=UTC)
"""A date parameter names a moment from MIN_MOMENT to MAX_MOMENT. Python's datetimes stop at years
1 and 9999, and the stores step from a moment by days (the next midnight, a 30-day default
window of stats before an end date): that arithmetic overflowed at the edges, a 500. A year
inside keeps it a datetime; the call log holds nothing so old or so far ahead."""


_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
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
class Given:
    """One parameter's value and where it came from (for messages and type rules)."""

    value: Any
    where: str
    """How the message names it: ``parameter 'limit'`` or ``query.model``."""
    from_url: bool
    """URL values are text to convert; JSON values must already have the right type."""

    @property
    def parameter(self) -> str:
        """The parameter's name, for ``ParamError.parameter``."""
        return self.where.removeprefix("query.").removeprefix("parameter ").strip("'")


def as_text(given: Given) -> str:
    value = given.value
    if not isinstance(value, str):
        raise wrong_type(given, "a string")
    if not value:
        raise ParamError(
            f"{given.where} is empty; leave it out to match any value", given.parameter
        )
    if len(value) > MAX_TEXT_LENGTH:
        raise ParamError(
            f"{given.where} is longer than {MAX_TEXT_LENGTH} characters", given.parameter
        )
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; no stored value contains one.
        raise ParamError(f"{given.where} contains a NUL character", given.parameter)
    return value


MAX_VALUES = 100
"""Values one filter may list (``model=a,b``, ``$in``): each is a bound parameter."""


def as_texts(given: Given, parse: Callable[[Given], str] = as_text) -> tuple[str, ...]:
    """Several values of a text filter: comma-separated in the URL, a JSON array in a body
    (``$in``); each checked by ``parse``, duplicates dropped, at most ``MAX_VALUES``."""
    value = given.value
    if given.from_url:
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise wrong_type(given, "an array of strings")
    if not items:
        raise ParamError(f"{given.where} lists no value", given.parameter)
    if len(items) > MAX_VALUES:
        raise ParamError(
            f"{given.where} lists {len(items)} values; at most {MAX_VALUES}", given.parameter
        )
    return tuple(dict.fromkeys(parse(Given(item, given.where, given.from_url)) for item in items))


def as_flag(given: Given) -> bool:
    """true or false: the words in the URL, JSON booleans in a body."""
    value = given.value
    if given.from_url and value in ("true", "false"):
        return bool(value == "true")
    if not given.from_url and isinstance(value, bool):
        return value
    raise ParamError(
        f"{given.where} must be true or false; got {shown(str(value))!r}", given.parameter
    )


def as_choice(given: Given, choices: Sequence[str]) -> str:
    value = given.value
    if not isinstance(value, str):
        raise wrong_type(given, "a string")
    if value not in choices:
        raise ParamError(
            f"{given.where} must be one of {', '.join(choices)}; got '{shown(value)}'",
            given.parameter,
        )
    return value


def as_moment(given: Given, *, end: bool) -> datetime:
    value = given.value
    if not isinstance(value, str):
        raise wrong_type(given, "a string (an ISO 8601 date)")
    text = value.strip()
    try:
        if _DATE_ONLY.fullmatch(text):
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            # A bare end date means "through that day".
            moment = moment + timedelta(days=1) if end else moment
        else:
            if "T" not in text.upper() and " " not in text:
                raise ValueError("no time")
            parsed = datetime.fromisoformat(text)
            moment = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:  # past year 1 or 9999 once in UTC or moved to the next midnight
        raise _out_of_range(given) from None
    except ValueError:
        raise ParamError(
            f"{given.where}: expected an ISO 8601 date or date-time such as 2025-01-10 or "
            f"2025-01-10T12:00:00Z; got '{shown(value)}'",
            given.parameter,
        ) from None
    if not MIN_MOMENT <= moment <= MAX_MOMENT:
        raise _out_of_range(given)
    return moment


def _out_of_range(given: Given) -> ParamError:
    return ParamError(
        f"{given.where} must be from {MIN_MOMENT.date()} to {MAX_MOMENT.date()}; "
        f"got '{shown(given.value)}'",
        given.parameter,
    )


def as_latency(given: Given) -> Decimal:
    """Milliseconds, exact: compared with the stored doubles on the right side of it
    (``sql._bound``)."""
    number = as_number(given)
    if not 0 <= number <= MAX_LATENCY_MS:
        raise ParamError(
            f"{given.where} must be a number of milliseconds from 0 to {MAX_LATENCY_MS:.0e}",
            given.parameter,
        )
    return number


def as_cost(given: Given) -> Decimal:
    number = as_number(given)
    if not 0 <= number <= MAX_COST:
        raise ParamError(f"{given.where} must be from 0 to {MAX_COST} (USD)", given.parameter)
    return number


def as_number(given: Given) -> Decimal:
    value = given.value
    if given.from_url:
        try:
            if not value.isascii():  # Decimal takes any script's digits, as int does
                raise InvalidOperation
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ParamError(
                f"{given.where} must be a number; got '{shown(value)}'", given.parameter
            ) from None
    elif isinstance(value, int | Decimal) and not isinstance(value, bool):
        number = Decimal(value)
    else:
        raise wrong_type(given, "a number")
    if not number.is_finite():
        raise ParamError(f"{given.where} must be a finite number", given.parameter)
    return number


def as_tokens(given: Given) -> int:
    return as_integer(given, low=0, high=MAX_TOKENS)


BOUND_PARSERS: dict[str, Callable[[Given], Any]] = {
    "MS": as_latency,
    "USD": as_cost,
    "N": as_tokens,
}
"""A range's unit -> the parser of its bounds."""


def as_integer(given: Given, *, low: int, high: int) -> int:
    value = given.value
    number: int | None = None
    if given.from_url:
        text = value.strip()
        # ASCII digits: ``\d`` and ``int`` take any script's (found in review: limit=５).
        number = int(text) if re.fullmatch(r"[+-]?[0-9]{1,30}", text) else None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif not isinstance(value, Decimal):
        raise wrong_type(given, "an integer")
    if number is None:
        raise ParamError(
            f"{given.where} must be an integer; got {shown(str(value))!r}", given.parameter
        )
    if not low <= number <= high:
        raise ParamError(
            f"{given.where} must be between {low} and {high}; got {number}", given.parameter
        )
    return number


def wrong_type(given: Given, expected: str) -> ParamError:
    return ParamError(
        f"{given.where} must be {expected}, got {json_type(given.value)}", given.parameter
    )


def json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def shown(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."
