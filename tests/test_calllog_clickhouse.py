"""docs/calllog.md's ClickHouse mapping, held to the code (no ClickHouse runs here).

The section "The same schema on ClickHouse" describes the call log past one database: the calls,
content and daily tables, and the materialized view that fills the daily one. Nothing would
tell a reader when a migration added columns it lacks, so:

- its ``CREATE TABLE`` statements are parsed and compared with the catalogue: the calls table's
  columns, in order, with ClickHouse types that hold the catalogue's values (ranges, money as
  integer nano-USD, times as ``DateTime64``) and its nullability (required: never Nullable; an
  unknown number, cost or time: Nullable, never 0; text: Nullable or ``''``); the daily table's
  columns are ``catalogue.TABLES``' in order, its key ``DAILY_DIMENSIONS``;
- the view names only real columns, produces exactly the daily table's, groups by its key;
- the view's aggregates, translated to SQLite (a handful of functions, mechanically), run over
  the calls of a real SQLite store and give the daily rows otel-llm itself computed. This
  checks the view's arithmetic against ``rollup.py``, not ClickHouse's behaviour or syntax.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import pytest

from otel_llm.calllog.catalogue import (
    CONTENT_FIELDS,
    CONTENT_KEY,
    DAILY_DIMENSIONS,
    DAILY_LATENCY_SUM,
    DAILY_SKETCHES,
    DAILY_SUMS,
    INTEGER_RANGES,
    STORED,
    TABLES,
    Field,
)
from otel_llm.calllog.record import CallRecord
from otel_llm.calllog.schema import CALLS, CONTENT, DAILY
from otel_llm.calllog.store import open_store
from tests.test_calllog_store import NOW, make_records

DOC = Path(__file__).resolve().parents[1] / "docs" / "calllog.md"
SECTION = "## The same schema on ClickHouse"

LOOKUP_KEYS = {"day", "span_key"}
"""The store's look-up by id, which ClickHouse's sort key and bloom-filter index replace."""
FIXED = {"trace_id": 32, "span_id": 16, "parent_span_id": 16}
"""Hex ids of a fixed length: ``FixedString(n)`` may hold them."""
CLICKHOUSE_INTS = {f"{sign}Int{bits}": bits for bits in (8, 16, 32, 64) for sign in ("", "U")}
TIME = "DateTime64(6, 'UTC')"


# --- reading the doc's SQL -----------------------------------------------------------------------
def _closing(text: str, opening: int) -> int:
    """The index of the parenthesis closing the one at ``opening``."""
    depth = 0
    for index in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return index
    raise AssertionError(f"unbalanced parentheses after {text[opening:][:40]!r}")


def _split(text: str) -> list[str]:
    """``text`` split at its top-level commas (none inside parentheses or quotes)."""
    parts, depth, quoted, current = [], 0, False, []
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        elif not quoted and depth == 0 and char == ",":
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [part for part in parts if part]


@dataclass
class Table:
    columns: dict[str, str]
    """Name -> ClickHouse type (codec clauses removed), in order."""
    indexes: list[str]
    tail: str
    """What follows the column list: engine, partition, order, TTL."""

    def order_by(self) -> list[str]:
        match = re.search(r"ORDER BY \(([^)]*)\)", self.tail)
        assert match, self.tail
        return [name.strip() for name in match.group(1).split(",")]


@dataclass
class View:
    target: str
    source: str
    items: list[tuple[str, str]]
    """(expression, the column it fills), in order."""
    group_by: list[str]


def _statements() -> list[str]:
    text = DOC.read_text()
    section = text[text.index(SECTION) :]
    following = section.find("\n## ", len(SECTION))
    section = section if following < 0 else section[:following]
    sql = "\n".join(re.findall(r"```sql\n(.*?)```", section, re.DOTALL))
    sql = re.sub(r"--[^\n]*", "", sql)
    return [" ".join(statement.split()) for statement in sql.split(";") if statement.strip()]


def _tables() -> dict[str, Table]:
    tables = {}
    for statement in _statements():
        match = re.match(r"CREATE TABLE (\w+) \(", statement)
        if not match:
            continue
        end = _closing(statement, match.end() - 1)
        columns, indexes = {}, []
        for part in _split(statement[match.end() : end]):
            if part.startswith("INDEX "):
                indexes.append(part)
                continue
            name, kind = part.split(" ", 1)
            columns[name] = kind.split(" CODEC(")[0].strip()
        tables[match.group(1)] = Table(columns, indexes, statement[end + 1 :])
    return tables


def _view() -> View:
    (statement,) = [s for s in _statements() if s.startswith("CREATE MATERIALIZED VIEW")]
    match = re.fullmatch(
        r"CREATE MATERIALIZED VIEW \w+ TO (\w+) AS SELECT (.*) FROM (\w+) GROUP BY (.*)",
        statement,
    )
    assert match, statement
    items = []
    for item in _split(match.group(2)):
        expression, _, alias = item.rpartition(" AS ")
        items.append((expression or alias, alias))
    group_by = [name.strip() for name in match.group(4).split(",")]
    return View(match.group(1), match.group(3), items, group_by)


# --- the tables against the catalogue ------------------------------------------------------------
def _unwrap(kind: str) -> tuple[str, bool, bool]:
    """(base type, Nullable, LowCardinality); ``Nullable(LowCardinality(...))`` is refused, as
    ClickHouse refuses it."""
    low = kind.startswith("LowCardinality(")
    if low:
        kind = kind.removeprefix("LowCardinality(").removesuffix(")")
    nullable = kind.startswith("Nullable(")
    if nullable:
        kind = kind.removeprefix("Nullable(").removesuffix(")")
    assert not kind.startswith("LowCardinality("), "Nullable(LowCardinality(...)) is invalid"
    return kind, nullable, low


def type_problems(field: Field, kind: str) -> list[str]:
    """Why ``kind`` cannot hold ``field``'s values as the catalogue defines them (empty: it
    can)."""
    base, nullable, low = _unwrap(kind)
    problems = []
    if low and base != "String":
        problems.append("LowCardinality of a non-text type")
    if field.required and nullable:
        problems.append("required, but Nullable")
    text = field.sql == "text"
    if not field.required and not nullable and not text:
        problems.append("unknown values need Nullable (never 0)")
    if field.codec == "time":
        expected: set[str] = {TIME}
    elif field.codec == "money":
        expected = {"Int64"}  # nano-USD, as the stores keep it: sums stay exact
    elif field.codec == "flag":
        expected = {"Bool"}
    elif field.sql == "real":
        expected = {"Float64"}
    elif text:
        expected = {"String"} | (
            {f"FixedString({FIXED[field.name]})"} if field.name in FIXED else set()
        )
    else:
        bits = CLICKHOUSE_INTS.get(base)
        if bits is None:
            return [*problems, f"{base} is no integer type"]
        low_end, high_end = (
            (0, 2**bits - 1) if base.startswith("U") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        )
        least, most = INTEGER_RANGES[field.sql]
        least = int(field.minimum) if field.minimum is not None else least
        most = int(field.maximum) if field.maximum is not None else most
        if not low_end <= least <= most <= high_end:
            problems.append(f"{base} cannot hold {least}..{most}")
        return problems
    if base not in expected:
        problems.append(f"{base}, expected one of {sorted(expected)}")
    return problems


def _clickhouse_name(field: Field) -> str:
    return field.name if field.codec == "time" else str(field.column)


def test_the_calls_table_has_the_catalogue_columns_in_order_with_types_that_hold_them() -> None:
    table = _tables()[CALLS]
    expected = [_clickhouse_name(f) for f in STORED if f.name not in LOOKUP_KEYS]
    assert list(table.columns) == expected, set(table.columns) ^ set(expected)
    for field in STORED:
        if field.name not in LOOKUP_KEYS:
            kind = table.columns[_clickhouse_name(field)]
            assert type_problems(field, kind) == [], (field.name, kind)
    # Sort key, partitions, TTL and skip indexes name real columns.
    assert set(table.order_by()) <= set(table.columns)
    assert table.order_by()[-1] == "id"
    for index in table.indexes:
        assert index.split()[2] in table.columns, index
    for name in re.findall(r"\((\w+)\)", table.tail):
        assert name in table.columns, name


def test_the_content_table_has_the_content_fields() -> None:
    table = _tables()[CONTENT]
    expected = {_clickhouse_name(f) for f in CONTENT_KEY} | set(CONTENT_FIELDS)
    assert set(table.columns) == expected
    assert table.columns["created_at"] == TIME
    assert set(table.order_by()) == {_clickhouse_name(f) for f in CONTENT_KEY}


def test_the_daily_table_has_the_daily_columns_in_order_keyed_by_the_daily_key() -> None:
    table = _tables()[DAILY]
    assert list(table.columns) == [column.name for column in TABLES[DAILY]]
    assert sorted(table.order_by()) == sorted(DAILY_DIMENSIONS)
    for name in DAILY_DIMENSIONS:
        assert table.columns[name] == ("Date" if name == "day" else "LowCardinality(String)")
    for name in DAILY_SUMS:
        summed = "Int64" if name.endswith("_nusd") else "UInt64"
        assert table.columns[name] == f"SimpleAggregateFunction(sum, {summed})", name
    assert table.columns[DAILY_LATENCY_SUM] == "SimpleAggregateFunction(sum, Float64)"
    for name in DAILY_SKETCHES.values():
        assert table.columns[name].startswith("AggregateFunction(quantiles"), name


_FUNCTIONS = re.compile(r"\b(\w+)\(")
_KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "IN"}


def _identifiers(expression: str) -> set[str]:
    """The column names an expression reads (functions, keywords, literals left out)."""
    bare = re.sub(r"'[^']*'", "", _FUNCTIONS.sub("(", expression))
    return {word for word in re.findall(r"\b[A-Za-z_]\w*\b", bare) if word not in _KEYWORDS}


def test_the_view_reads_real_columns_and_fills_every_daily_column() -> None:
    view, tables = _view(), _tables()
    assert (view.target, view.source) == (DAILY, CALLS)
    assert [alias for _, alias in view.items] == list(tables[DAILY].columns)
    assert view.group_by == list(DAILY_DIMENSIONS)
    calls = set(tables[CALLS].columns)
    for expression, alias in view.items:
        assert _identifiers(expression) <= calls, (alias, _identifiers(expression) - calls)


# --- the view's arithmetic against rollup.py, on a real store -------------------------------------
_SQLITE = {
    "count": lambda args: "COUNT(*)",
    "countIf": lambda args: f"SUM(CASE WHEN {args[0]} THEN 1 ELSE 0 END)",
    "sum": lambda args: f"SUM({args[0]})",
    "sumIf": lambda args: f"SUM(CASE WHEN {args[1]} THEN {args[0]} ELSE 0 END)",
    "ifNull": lambda args: f"IFNULL({args[0]}, {args[1]})",
    # ClickHouse's created_at is the store's created_us: the UTC day as the daily rows key it.
    "toDate": lambda args: "date(created_us / 1000000, 'unixepoch')",
}


def to_sqlite(expression: str, empty_for_null: set[str]) -> str:
    """The view's expression in SQLite: the functions above, innermost first; the columns
    ClickHouse keeps as ``''`` for none (``empty_for_null``) read as the store keeps them
    (NULL) would be there."""
    held: list[str] = []

    def hold(text: str) -> str:
        held.append(text)
        return f"\x00{len(held) - 1}\x00"

    def columns(text: str) -> str:
        return re.sub(
            r"(?<![\w'])([A-Za-z_]\w*)(?![\w'])",
            lambda m: f"IFNULL({m.group(1)}, '')" if m.group(1) in empty_for_null else m.group(1),
            text,
        )

    text = expression
    innermost = re.compile(r"\b(\w+)?\s*\(([^()]*)\)")
    while (match := innermost.search(text)) is not None:
        name, inner = match.group(1), columns(match.group(2))
        if name in (None, "IN"):
            translated = f"{name or ''} ({inner})"
        else:
            assert name in _SQLITE, f"no SQLite translation for {name}()"
            translated = _SQLITE[name](_split(inner) if inner.strip() else [])
        text = text[: match.start()] + hold(translated) + text[match.end() :]
    text = columns(text)
    while "\x00" in text:
        text = re.sub(r"\x00(\d+)\x00", lambda m: held[int(m.group(1))], text)
    return text


def _records() -> list[CallRecord]:
    """make_records' calls, some billed as credits with a list price and a discount, some with
    a policy violation of each action, priced ones with a cache-write cost."""
    varied = []
    for index, record in enumerate(make_records(400, days=5, seed=11)):
        billing = ("credits", "own_key", None)[index % 3]
        listed = record.cost + Decimal("0.0001") if record.cost is not None else None
        varied.append(
            replace(
                record,
                billing=billing,
                cost_cache_write=Decimal("0.000002") if record.cost is not None else None,
                list_cost=listed if index % 5 else None,
                discount=Decimal("0.0001") if listed is not None and index % 5 else None,
                policy=None if index % 4 == 0 else "shop-daily",
                policy_rule=None if index % 4 == 0 else "day",
                policy_action=(None, "record", "alert", "block")[index % 4],
            )
        )
    return varied


def test_the_view_computes_the_daily_rows_otel_llm_computes(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    store = open_store(str(path), clock=lambda: NOW)
    try:
        assert store.write(_records()) == 400
    finally:
        store.close()
    view, calls = _view(), _tables()[CALLS]
    # Text ClickHouse keeps as '' for none (not Nullable) reads as '' where the store has NULL.
    empty_for_null = {
        name
        for name, kind in calls.columns.items()
        if not _unwrap(kind)[1] and _unwrap(kind)[0] == "String"
    }
    compared = [(e, a) for e, a in view.items if a not in DAILY_SKETCHES.values()]
    key = len(DAILY_DIMENSIONS)
    select = ", ".join(to_sqlite(expression, empty_for_null) for expression, _ in compared)
    group = ", ".join(to_sqlite(expression, empty_for_null) for expression, _ in compared[:key])
    names = ", ".join(alias for _, alias in compared)
    with sqlite3.connect(path) as connection:
        # The doc's own SQL, translated: the statement is the point of the test.
        view_sql = f"SELECT {select} FROM {CALLS} GROUP BY {group}"  # noqa: S608
        from_view = connection.execute(view_sql).fetchall()
        from_store = connection.execute(f"SELECT {names} FROM {DAILY}").fetchall()  # noqa: S608
    connection.close()
    assert len(from_store) > 20  # several days, services, models, ...
    by_key = {tuple(row[:key]): row[key:] for row in from_store}
    assert {tuple(row[:key]) for row in from_view} == set(by_key)
    latency_at = [alias for _, alias in compared[key:]].index(DAILY_LATENCY_SUM)
    for row in from_view:
        mine, theirs = list(row[key:]), list(by_key[tuple(row[:key])])
        assert mine.pop(latency_at) == pytest.approx(theirs.pop(latency_at))
        assert mine == theirs, row[:key]
    # The counters the varied records exercise are not all zero (the check means something).
    totals = [sum(column) for column in zip(*(row[key:] for row in from_store), strict=True)]
    named = dict(zip([alias for _, alias in compared[key:]], totals, strict=True))
    assert all(totals), {name: total for name, total in named.items() if not total}


def test_the_sqlite_translation_and_type_checks_refuse_what_they_should() -> None:
    assert to_sqlite("countIf(x IN ('a', 'b'))", {"x"}) == (
        "SUM(CASE WHEN IFNULL(x, '') IN ('a', 'b') THEN 1 ELSE 0 END)"
    )
    with pytest.raises(AssertionError, match="no SQLite translation"):
        to_sqlite("uniqExact(id)", set())
    cost = next(f for f in STORED if f.name == "cost")
    assert type_problems(cost, "Int64")  # an unpriced call would read as $0
    assert type_problems(cost, "Nullable(Float64)")  # not exact
    assert type_problems(cost, "Nullable(Int64)") == []
    status_code = next(f for f in STORED if f.name == "status_code")
    assert type_problems(status_code, "Nullable(UInt8)")  # 999 does not fit
    operation = next(f for f in STORED if f.name == "operation")
    assert type_problems(operation, "LowCardinality(Nullable(String))")  # required
    with pytest.raises(AssertionError, match="invalid"):
        type_problems(operation, "Nullable(LowCardinality(String))")
