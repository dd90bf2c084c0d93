"""Daily aggregates: what newly stored calls add to them, and the totals statistics are made of
(``stats.py`` reads them back; ``cardinality.py`` caps their distinct values).

A daily row sums one (day, service, provider, model, operation, feature, project): counts,
tokens by type, cost by part (integer nano-USD, so sums are exact), latency sum, and mergeable
latency / time-to-first-chunk sketches (``sketch.py``, 1% relative error). Statistics over any
range of days and any of these dimensions are merges of rows -- fast, and still answering after
the call records themselves expired.

The same sums are kept by status, by user and by API key in tables of their own
(``catalogue.ROLLUPS``): by status, the key above with the status; by user (or key), the day,
the user, and only the status, provider, model and project -- a user in the first key would
multiply its rows by the number of users.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from operator import add, itemgetter, sub
from typing import Any

from otel_llm.calllog.catalogue import (
    DAILY_SUMS,
    POLICY_SUMS,
    ROLLUPS,
    SUMMED,
    Rollup,
    column_of,
)
from otel_llm.calllog.record import from_nanos
from otel_llm.calllog.sketch import (
    EMPTY_BYTES,
    Sketch,
    bucket,
    buckets_bytes,
    one_value_bytes,
)
from otel_llm.calllog.sql import INSERT_COLUMNS, SQLITE_NULL

_N_SUMS = len(DAILY_SUMS)
_SUM = {name: index for index, name in enumerate(DAILY_SUMS)}
"""Positions in DAILY_SUMS."""
_REQUESTS, _FAILED, _UNPRICED = _SUM["requests"], _SUM["failed"], _SUM["unpriced"]
_LATENCY_COUNT = _SUM["latency_count"]
_INPUT, _OUTPUT, _TOTAL = _SUM["input_tokens"], _SUM["output_tokens"], _SUM["total_tokens"]
_CACHE_READ, _CACHE_WRITE = _SUM["cache_read_tokens"], _SUM["cache_write_tokens"]
_REASONING = _SUM["reasoning_tokens"]
_COST_COLUMN = column_of("cost")
"""NULL when a call has no price: the call counts as unpriced."""
_COST = _SUM[_COST_COLUMN]
_COST_PARTS = {
    part: _SUM[column_of(f"cost_{part}")]
    for part in ("input", "output", "cache_read", "cache_write", "request")
}
"""The stats' cost_breakdown: part -> position of its sum."""
_SUMMED = tuple(_SUM[name] for name in SUMMED)
"""Positions of SUMMED, in SUMMED's order."""
_CREDITS, _CREDITS_UNPRICED = _SUM["credits_requests"], _SUM["credits_unpriced"]
_CREDITS_COST, _CREDITS_LIST = _SUM["credits_cost_nusd"], _SUM["credits_list_nusd"]
_CREDITS_LIST_UNKNOWN, _DISCOUNT = _SUM["credits_list_unknown"], _SUM["discount_nusd"]
_VIOLATIONS, _ALERTS, _BLOCKS = (_SUM[name] for name in POLICY_SUMS)

DailyKey = tuple[str, ...]
"""A daily row's key (``Rollup.key``): its day, then its fields' values."""


class Totals:
    """Sums of a set of calls, mergeable."""

    __slots__ = ("latency", "latency_sum", "sums", "ttfc")

    def __init__(self) -> None:
        self.sums = [0] * _N_SUMS
        self.latency_sum = 0.0
        self.latency = Sketch()
        self.ttfc = Sketch()

    def add(
        self,
        failed: bool,
        summed: Sequence[int | None],
        latency_ms: float | None,
        ttfc_ms: float | None,
        billed: Sequence[Any] = (None, None, None),
        *,
        policy_action: str | None = None,
    ) -> None:
        """One call: its values of ``SUMMED`` (token counts, costs in nano-USD), of
        ``BILLED`` (billing mode, list cost, discount) and its policy violation's action."""
        sums = self.sums
        _bill(sums, summed[_SUMMED_COST], *billed)
        _police(sums, policy_action)
        sums[_REQUESTS] += 1
        if failed:
            sums[_FAILED] += 1
        for index, value in zip(_SUMMED, summed, strict=True):
            if value:
                sums[index] += value
            elif value is None and index == _COST:
                sums[_UNPRICED] += 1
        if latency_ms is not None:
            sums[_LATENCY_COUNT] += 1
            self.latency_sum += latency_ms
            self.latency.add(latency_ms)
        if ttfc_ms is not None:
            self.ttfc.add(ttfc_ms)

    def merge(self, other: Row) -> None:
        if isinstance(other, OneCall):
            self.add_one(other)
            return
        if isinstance(other, Calls):
            self.add_row(other.row_values())
            return
        self.sums = list(map(add, self.sums, other.sums))
        self.latency_sum += other.latency_sum
        self.latency.merge(other.latency)
        self.ttfc.merge(other.ttfc)

    def add_one(self, call: OneCall) -> None:
        self.sums = list(map(add, self.sums, call.sums))
        if call.latency_bucket != _NO_VALUE:
            self.latency_sum += call.latency
            self.latency.add_bucket(call.latency_bucket)
        if call.ttfc_bucket != _NO_VALUE:
            self.ttfc.add_bucket(call.ttfc_bucket)

    @classmethod
    def from_row(cls, values: Sequence[Any]) -> Totals:
        """From a daily row's DAILY_VALUES: DAILY_SUMS, the latency sum, the sketches."""
        totals = cls()
        totals.add_row(values)
        return totals

    def add_row(self, values: Sequence[Any], *, sketches: bool = True) -> None:
        """Add a daily row (as ``from_row`` reads it); without its sketches if told so."""
        # map(add) over the row's slice runs in C: stats add thousands of rows.
        self.sums = list(map(add, self.sums, values[:_N_SUMS]))
        self.latency_sum += values[_N_SUMS]
        if sketches:
            self.latency.merge_bytes(values[_N_SUMS + 1])
            self.ttfc.merge_bytes(values[_N_SUMS + 2])

    def add_sums(self, values: Sequence[Any]) -> None:
        """Add SQL sums of daily rows: DAILY_SUMS, then the latency sum (NULL when no row;
        PostgreSQL's SUM of a bigint is a numeric, converted exactly)."""
        added = values[:_N_SUMS]
        self.sums = [old + int(new or 0) for old, new in zip(self.sums, added, strict=True)]
        self.latency_sum += float(values[_N_SUMS] or 0.0)

    def subtract(self, other: Totals) -> None:
        """Take ``other``'s sums away (the calls of a group shown apart); sketches untouched."""
        self.sums = list(map(sub, self.sums, other.sums))
        self.latency_sum -= other.latency_sum

    def row_values(self) -> tuple[Any, ...]:
        """The row's DAILY_VALUES (the inverse of from_row)."""
        return (*self.sums, self.latency_sum, self.latency.to_bytes(), self.ttfc.to_bytes())

    @property
    def requests(self) -> int:
        return self.sums[_REQUESTS]

    @property
    def tokens(self) -> int:
        return self.sums[_TOTAL]

    def cost(self) -> Decimal | None:
        """Total USD of the priced calls; None when there were calls and none was priced."""
        sums = self.sums
        if sums[_REQUESTS] and sums[_UNPRICED] == sums[_REQUESTS]:
            return None
        return from_nanos(sums[_COST])

    def billing(self) -> dict[str, Any]:
        """Credits vs own keys and discounts (the API's fields; unknown is null, never 0)."""
        sums = self.sums
        requests = sums[_REQUESTS]
        credits = sums[_CREDITS]
        own = requests - credits
        own_unpriced = sums[_UNPRICED] - sums[_CREDITS_UNPRICED]
        credits_cost = (
            None
            if credits and sums[_CREDITS_UNPRICED] == credits
            else from_nanos(sums[_CREDITS_COST])
        )
        list_cost = (
            None
            if credits and sums[_CREDITS_LIST_UNKNOWN] == credits
            else from_nanos(sums[_CREDITS_LIST])
        )
        complete = not sums[_CREDITS_UNPRICED] and not sums[_CREDITS_LIST_UNKNOWN]
        return {
            "billing_mode": (
                None
                if not requests
                else "hybrid"
                if credits and own
                else "credits"
                if credits
                else "own_key"
            ),
            "credits_requests": credits,
            "own_key_requests": own,
            "credits_cost": credits_cost,
            "own_key_cost": (
                None
                if own and own_unpriced == own
                else from_nanos(sums[_COST] - sums[_CREDITS_COST])
            ),
            "credits_list_cost": list_cost,
            "credits_list_unknown_requests": sums[_CREDITS_LIST_UNKNOWN],
            "own_key_savings": (
                from_nanos(sums[_CREDITS_COST] - sums[_CREDITS_LIST])
                if complete and credits
                else None
            ),
            "discount_savings": (
                None if requests and sums[_UNPRICED] == requests else from_nanos(sums[_DISCOUNT])
            ),
        }

    def error_rate(self) -> float | None:
        requests = self.sums[_REQUESTS]
        return _percent(self.sums[_FAILED], requests)

    def cache_hit_rate(self) -> float | None:
        return _percent(self.sums[_CACHE_READ], self.sums[_INPUT])

    def stats(self) -> dict[str, Any]:
        """The statistics fields of the API (see the call-log contract)."""
        sums = self.sums
        requests = sums[_REQUESTS]
        priced = requests - sums[_UNPRICED]
        none_priced = requests > 0 and priced == 0

        def money(index: int) -> Decimal | None:
            return None if none_priced else from_nanos(sums[index])

        latency_count = sums[_LATENCY_COUNT]
        p50, p95, p99 = self.latency.quantiles((0.50, 0.95, 0.99))
        t50, t95 = self.ttfc.quantiles((0.50, 0.95))
        return {
            "total_requests": requests,
            "successful_requests": requests - sums[_FAILED],
            "failed_requests": sums[_FAILED],
            "success_rate": _percent(requests - sums[_FAILED], requests),
            "error_rate": self.error_rate(),
            "input_tokens": sums[_INPUT],
            "output_tokens": sums[_OUTPUT],
            "total_tokens": sums[_TOTAL],
            "cache_read_tokens": sums[_CACHE_READ],
            "cache_write_tokens": sums[_CACHE_WRITE],
            "reasoning_tokens": sums[_REASONING],
            "cache_hit_rate": self.cache_hit_rate(),
            "total_cost": money(_COST),
            "cost_breakdown": {part: money(index) for part, index in _COST_PARTS.items()},
            "unpriced_requests": sums[_UNPRICED],
            "avg_latency_ms": self.latency_sum / latency_count if latency_count else None,
            "p50_latency_ms": p50,
            "p95_latency_ms": p95,
            "p99_latency_ms": p99,
            "p50_time_to_first_chunk_ms": t50,
            "p95_time_to_first_chunk_ms": t95,
            **self.billing(),
            # Seed 002's totals: calls with a policy violation, and those of alert and block
            # policies (each call once, by its most severe violation).
            "policy_violations": sums[_VIOLATIONS],
            "alerts": sums[_ALERTS],
            "blocks": sums[_BLOCKS],
        }


_NO_VALUE = -2
"""A ``OneCall``'s bucket when the call has no such value (``bucket`` gives -1 for 0)."""


class OneCall:
    """A call's addition to a daily row, and the row of a write holding that call alone (rows
    of several calls are ``Calls``). At 100,000 users nearly every row by user or key -- and
    most of the others -- holds one call per write, and the roll-up (a Totals and two Sketches
    per row, then their bytes) was 22 of a write's 83 us a call. One object serves the call's row in
    every daily table, so it is never changed, and its values are made once for them all."""

    __slots__ = ("_values", "latency", "latency_bucket", "sums", "ttfc_bucket")

    requests = 1

    def __init__(
        self, sums: list[int], latency: float, latency_bucket: int, ttfc_bucket: int
    ) -> None:
        self.sums = sums
        self.latency = latency
        self.latency_bucket = latency_bucket
        self.ttfc_bucket = ttfc_bucket
        self._values: tuple[Any, ...] | None = None

    def row_values(self) -> tuple[Any, ...]:
        """What ``Totals.row_values`` gives for this call alone (the same values and bytes)."""
        values = self._values
        if values is None:
            latency, ttfc = self.latency_bucket, self.ttfc_bucket
            values = self._values = (
                *self.sums,
                0.0 + self.latency if latency != _NO_VALUE else 0.0,
                EMPTY_BYTES if latency == _NO_VALUE else one_value_bytes(latency),
                EMPTY_BYTES if ttfc == _NO_VALUE else one_value_bytes(ttfc),
            )
        return values

    def totals(self) -> Totals:
        """A new Totals of this call (to add others to)."""
        totals = Totals()
        totals.add_one(self)
        return totals


class Calls:
    """A daily row of several calls of one write (``rollup``'s), its values made at once: the
    sums column-wise in C, the sketch bytes from the calls' buckets (``buckets_bytes``) -- a
    Totals' Sketch allocates its dense array of 1,383 counts at the second bucket, 9 us of the
    10 a row of two calls cost. Never changed (a ``merged`` row becomes a Totals)."""

    __slots__ = ("_values", "requests")

    def __init__(self, calls: Sequence[OneCall]) -> None:
        self.requests = len(calls)
        if len(calls) <= _PAIRWISE:  # a key's or user's row: two or three calls
            sums = calls[0].sums
            for call in calls[1:]:
                sums = list(map(add, sums, call.sums))
        else:
            sums = [sum(column) for column in zip(*[call.sums for call in calls], strict=True)]
        latency_sum = 0.0
        latencies: list[int] = []
        ttfcs: list[int] = []
        for call in calls:  # in order: the float sum as Totals.add_one makes it
            if call.latency_bucket != _NO_VALUE:
                latency_sum += call.latency
                latencies.append(call.latency_bucket)
            if call.ttfc_bucket != _NO_VALUE:
                ttfcs.append(call.ttfc_bucket)
        self._values = (*sums, latency_sum, buckets_bytes(latencies), buckets_bytes(ttfcs))

    def row_values(self) -> tuple[Any, ...]:
        """What ``Totals.row_values`` gives for these calls (the same values and bytes)."""
        return self._values

    def totals(self) -> Totals:
        """A new Totals of these calls (to add others to)."""
        return Totals.from_row(self._values)


_PAIRWISE = 4
"""Up to this many calls a row's sums are added list by list (``map``), beyond column-wise
(``zip``): the faster of the two at each size, measured."""

Row = Totals | OneCall | Calls
"""A daily row's sums as a write adds them."""


def merged(row: Row | None, other: Row) -> Row:
    """``row`` and ``other`` as one row (``row`` may change: a OneCall or Calls never does)."""
    if row is None:
        return other
    if not isinstance(row, Totals):
        row = row.totals()
    row.merge(other)
    return row


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 4) if whole else None


_EPOCH = date(1970, 1, 1)


_COLUMN = {name: index for index, name in enumerate(INSERT_COLUMNS)}
"""Positions in a ``sql.row_of`` row."""
_DAY = _COLUMN["day"]
_STATUS = _COLUMN[column_of("status")]
_C_COST = _COLUMN[_COST_COLUMN]
_C_LATENCY = _COLUMN[column_of("latency_ms")]
_C_TTFC = _COLUMN[column_of("time_to_first_chunk_ms")]
_ADDED = tuple((_COLUMN[name], _SUM[name]) for name in SUMMED if name != _COST_COLUMN)
"""(row position, sum position) of the summed columns but the cost (which counts unpriced)."""
_SUMMED_COST = SUMMED.index(_COST_COLUMN)

BILLED: tuple[str, ...] = (column_of("billing"), column_of("list_cost"), column_of("discount"))
"""The calls' columns the billing counters are made of (``Totals.add``'s ``billed``)."""
_C_BILLED = tuple(_COLUMN[name] for name in BILLED)


def _bill(
    sums: list[int], cost: int | None, billing: str | None, listed: int | None, discount: int | None
) -> None:
    """Count one call (its nano-USD cost, list cost and discount) in the billing counters."""
    if discount:
        sums[_DISCOUNT] += discount
    if billing == "credits":
        sums[_CREDITS] += 1
        if cost is None:
            sums[_CREDITS_UNPRICED] += 1
        else:
            sums[_CREDITS_COST] += cost
        if listed is None:
            sums[_CREDITS_LIST_UNKNOWN] += 1
        else:
            sums[_CREDITS_LIST] += listed


def _police(sums: list[int], action: str | None) -> None:
    """Count one call's policy violation of this action (None: none) in the policy counters."""
    if not action:
        return
    sums[_VIOLATIONS] += 1
    if action in ("alert", "block"):
        sums[_ALERTS] += 1
        if action == "block":
            sums[_BLOCKS] += 1


_C_POLICY_ACTION = _COLUMN[column_of("policy_action")]


_KEYED = tuple(dict.fromkeys(name for daily in ROLLUPS for name in daily.key[1:]))
"""Every column of a daily key (but the day), each once."""
_KEYED_AT = tuple(_COLUMN[name] for name in _KEYED)


def _parent(daily: Rollup) -> tuple[str, Callable[[DailyKey], DailyKey]] | None:
    """A table whose key holds every column of ``daily``'s and more, and how to make
    ``daily``'s key of its key: ``daily``'s rows are then sums of that table's rows (the
    first table's of the table by status: each of its rows is at most two of those)."""
    for other in ROLLUPS:
        if other is not daily and set(daily.key) < set(other.key):
            pick = itemgetter(*(other.key.index(name) for name in daily.key))
            return other.table, pick
    return None


_DERIVED = {daily.table: _parent(daily) for daily in ROLLUPS}
_KEYS = tuple((daily.table, daily) for daily in ROLLUPS if _DERIVED[daily.table] is None)
"""The tables each call is grouped into; the others are made of their rows (``_parent``)."""

Added = dict[str, dict[DailyKey, Row]]
"""What a write adds to each daily table (``catalogue.ROLLUPS``): its rows by key."""


def _row_of(calls: list[OneCall]) -> Row:
    """One daily row of these calls: a row of one call is that call's ``OneCall``."""
    return calls[0] if len(calls) == 1 else Calls(calls)


def rollup(rows: Iterable[Sequence[Any]], *, sqlite: bool = False) -> Added:
    """What these (newly stored) calls add to each daily table's rows; ``rows`` are
    ``sql.row_of`` tuples (``INSERT_COLUMNS``), so money is already integer nano-USD
    (``sqlite``: ``sql.sqlite_row_of``'s, an absent value ``SQLITE_NULL``: the rows SQLite binds).

    The hot loop of a write, in one pass: each call's addition to a row is made once (a
    ``OneCall``, shared by its row in every table) and appended to its row's list of calls
    in the tables by status, user and key; a row's sums are then added column-wise in C
    (``_row_of``), and the first table's rows are made of the rows by status (``_parent``)
    -- no per-call addition to each table's row (two thirds of the roll-up's time at
    100,000 users: 2.3 additions of 36 sums a call)."""
    one_call, keys_of = _SQLITE_READERS if sqlite else _READERS
    return _rows(_grouped(rows, one_call, keys_of))


_Grouped = dict[str, dict[DailyKey, list[OneCall]]]
"""A write's calls by daily row, in the tables each call is grouped into (``_KEYS``)."""


def _read(column: int, sqlite: bool) -> str:
    """The text of a row's value (None when absent)."""
    return f"(None if (v := row[{column}]) is _NULL else v)" if sqlite else f"row[{column}]"


def _or(column: int, default: str, sqlite: bool) -> str:
    """The text of a row's value, ``default`` when absent or false (adding nothing)."""
    return (
        f"({default} if (v := row[{column}]) is _NULL else v)"
        if sqlite
        else f"row[{column}] or {default}"
    )


def _one_call_source(sqlite: bool) -> str:
    """The text of ``_one_call``: each sum's value of a row in one list display (a loop over
    the summed columns filling a list of zeros took twice as long), made from the catalogue."""
    values = ["0"] * _N_SUMS
    values[_REQUESTS] = "1"
    values[_FAILED] = f"1 if row[{_STATUS}] == 'error' else 0"
    values[_UNPRICED] = "1 if cost is None else 0"
    values[_COST] = "cost or 0"
    values[_LATENCY_COUNT] = "0 if latency is None else 1"
    for column, index in _ADDED:
        values[index] = _or(column, "0", sqlite)  # None and 0 both add nothing
    billing, listed, discount = _C_BILLED
    return f"""def _one_call(row):
    cost = {_read(_C_COST, sqlite)}
    latency = {_read(_C_LATENCY, sqlite)}
    ttfc = {_read(_C_TTFC, sqlite)}
    vector = [{", ".join(values)}]
    billing = {_read(billing, sqlite)}
    discount = {_read(discount, sqlite)}
    if billing == "credits" or discount:
        _bill(vector, cost, billing, {_read(listed, sqlite)}, discount)
    action = {_read(_C_POLICY_ACTION, sqlite)}
    if action:
        _police(vector, action)
    return OneCall(
        vector,
        latency or 0.0,
        _NO_VALUE if latency is None else bucket(latency),
        _NO_VALUE if ttfc is None else bucket(ttfc),
    )
"""


def _keys_source(sqlite: bool) -> str:
    """The text of ``_keys_of``: a row's key in each table of ``_KEYS``, in that order."""
    names = {name: f"k{index}" for index, name in enumerate(_KEYED)}
    read = "".join(
        f"    {names[name]} = {_or(at, repr(''), sqlite)}\n"
        for name, at in zip(_KEYED, _KEYED_AT, strict=True)
    )
    keys = ", ".join(
        f"(day, {', '.join(names[name] for name in daily.key[1:])})"
        for daily in ROLLUPS
        if _DERIVED[daily.table] is None
    )
    return f"def _keys_of(row, day):\n{read}    return ({keys},)\n"


_Readers = tuple[
    Callable[[Sequence[Any]], OneCall], Callable[[Sequence[Any], str], tuple[DailyKey, ...]]
]


def _compiled(sqlite: bool) -> _Readers:
    # Only catalogue positions and fixed names are in the texts; nothing from input.
    namespace: dict[str, Any] = {
        "_bill": _bill,
        "_police": _police,
        "OneCall": OneCall,
        "bucket": bucket,
        "_NO_VALUE": _NO_VALUE,
        "_NULL": SQLITE_NULL,
    }
    exec(_one_call_source(sqlite) + "\n" + _keys_source(sqlite), namespace)  # noqa: S102
    return namespace["_one_call"], namespace["_keys_of"]


_READERS = _compiled(sqlite=False)
"""``_one_call(row)``: a call's addition to a daily row (shared by its row in every table);
``_keys_of(row, day)``: its row's key in each table it is grouped into (``_KEYS``'s order,
a NULL dimension as ''). Made once from the catalogue, as ``sql.row_of`` is."""
_SQLITE_READERS = _compiled(sqlite=True)
"""The same of ``sql.sqlite_row_of``'s rows (an absent value ``SQLITE_NULL``): SQLite's writer
binds the rows it rolls up, not a second copy with None (~0.5 us a call, measured)."""


def _grouped(
    rows: Iterable[Sequence[Any]],
    one_call: Callable[[Sequence[Any]], OneCall],
    keys_of: Callable[[Sequence[Any], str], tuple[DailyKey, ...]],
) -> _Grouped:
    found: list[dict[DailyKey, list[OneCall]]] = [{} for _ in _KEYS]
    days: dict[int, str] = {}
    for row in rows:
        day = days.get(row[_DAY])
        if day is None:
            day = days[row[_DAY]] = (_EPOCH + timedelta(days=row[_DAY])).isoformat()
        call = one_call(row)
        for table, key in zip(found, keys_of(row, day)):  # noqa: B905 - one key per table
            calls = table.get(key)
            if calls is None:
                table[key] = [call]
            else:
                calls.append(call)
    return {table: calls for (table, _), calls in zip(_KEYS, found, strict=True)}


def _rows(grouped: _Grouped) -> Added:
    """Each table's rows of the calls grouped; a derived table's are its parent's rows added
    up (a derived row of one parent row is that row itself: a day's calls of one service,
    model and feature mostly share a status)."""
    made: Added = {
        table: {key: _row_of(calls) for key, calls in rows.items()}
        for table, rows in grouped.items()
    }
    added: Added = {}
    for daily in ROLLUPS:
        derived = _DERIVED[daily.table]
        if derived is None:
            added[daily.table] = made[daily.table]
            continue
        parent, own_key = derived
        parts: dict[DailyKey, list[DailyKey]] = {}
        for key in grouped[parent]:
            own = own_key(key)
            keys = parts.get(own)
            if keys is None:
                parts[own] = [key]
            else:
                keys.append(key)
        of_parent, calls_of = made[parent], grouped[parent]
        added[daily.table] = {
            own: of_parent[keys[0]]
            if len(keys) == 1
            else _row_of([call for key in keys for call in calls_of[key]])
            for own, keys in parts.items()
        }
    return added


def week_of(day: str) -> str:
    """The Monday (ISO week start) of a YYYY-MM-DD day."""
    parsed = date.fromisoformat(day)
    return (parsed - timedelta(days=parsed.weekday())).isoformat()
