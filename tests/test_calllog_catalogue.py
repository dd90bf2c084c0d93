"""The call record's catalogue agrees with what it describes: the tables a real migration made
(SQLite, and a real PostgreSQL), the typed objects that carry the same names, and itself (what
a row encodes, its column's decoder reads back).

The migrations are frozen: a released migration never changes, so the SQL of v1 is pinned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from typing import Any, get_args

import psycopg
import pytest

from otel_llm.calllog import catalogue, schema, sql
from otel_llm.calllog.catalogue import (
    CALL_FIELDS,
    CALL_GROUPS,
    CHOICE_MATCHES,
    COMPARED,
    CONTENT_FIELDS,
    CONTENT_KEY,
    DAILY_DIMENSIONS,
    FIELDS,
    FLAG_MATCHES,
    RANGES,
    ROLLUPS,
    ROUTED_MATCHES,
    SORTS,
    STATS_MATCHES,
    TABLES,
    TEXT_MATCHES,
)
from otel_llm.calllog.query import CallFilter, StatsGroup
from otel_llm.calllog.record import CallRecord
from otel_llm.calllog.store import open_store
from tests.support.postgres import pg_cluster, store_url  # noqa: F401
from tests.test_calllog_store import make_records

V1_SHA256 = {
    "sqlite": "8974ceb6bf994ea12080cb3b531fa04f4e90d72b392e53b1dc958103109fbfe2",
    "postgres": "35af9edfc788c2e6b6fc823c85cd3cf83f2f31dc7ebab27b3274ff93b55e07b7",
}
TYPES = {"sqlite": schema.SQLITE_TYPES, "postgres": schema.POSTGRES_TYPES}


# --- the migrated schema ----------------------------------------------------------------------


def _sqlite_tables(
    path: str,
) -> tuple[dict[str, list[tuple[str, str, bool]]], dict[str, list[str]]]:
    columns: dict[str, list[tuple[str, str, bool]]] = {}
    keys: dict[str, list[str]] = {}
    with sqlite3.connect(path) as connection:
        for table in TABLES:
            rows = connection.execute(f"PRAGMA table_info({table})").fetchall()
            columns[table] = [(name, kind, bool(notnull)) for _, name, kind, notnull, _, _ in rows]
            keys[table] = [row[1] for row in sorted(rows, key=lambda row: row[5]) if row[5]]
    return columns, keys


def _postgres_tables(
    url: str,
) -> tuple[dict[str, list[tuple[str, str, bool]]], dict[str, list[str]]]:
    columns: dict[str, list[tuple[str, str, bool]]] = {}
    keys: dict[str, list[str]] = {}
    with psycopg.connect(url) as connection:
        for table in TABLES:
            rows = connection.execute(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_name = %s ORDER BY ordinal_position",
                (table,),
            ).fetchall()
            columns[table] = [
                (name, kind.upper(), nullable == "NO") for name, kind, nullable in rows
            ]
            keys[table] = [
                row[0]
                for row in connection.execute(
                    "SELECT k.column_name FROM information_schema.table_constraints c "
                    "JOIN information_schema.key_column_usage k "
                    "ON k.constraint_name = c.constraint_name AND k.table_name = c.table_name "
                    "WHERE c.table_name = %s AND c.constraint_type = 'PRIMARY KEY' "
                    "ORDER BY k.ordinal_position",
                    (table,),
                ).fetchall()
            ]
    return columns, keys


def test_the_migrated_tables_have_the_catalogues_columns(store_url: str) -> None:  # noqa: F811
    """Every table a migrated store has: the catalogue's columns, in order, with its types and
    nullability in that database; the keys the writes rely on (ON CONFLICT) as the catalogue
    says."""
    backend = "postgres" if store_url.startswith("postgresql://") else "sqlite"
    open_store(store_url).close()  # migrated (a PostgreSQL test database: copied from one)
    read = _postgres_tables if backend == "postgres" else _sqlite_tables
    columns, keys = read(store_url)
    types = TYPES[backend]
    for table, expected in TABLES.items():
        assert columns[table] == [
            (column.name, types.of(column.sql), column.required) for column in expected
        ], table
    for rollup in ROLLUPS:
        assert keys[rollup.table] == list(rollup.key)
    content_key = [str(field.column) for field in CONTENT_KEY]
    assert sorted(keys[schema.CALLS]) == sorted(keys[schema.CONTENT]) == sorted(content_key)


@pytest.mark.parametrize("backend", sorted(TYPES))
def test_the_v1_migration_is_frozen(backend: str) -> None:
    """A database made by an older release upgrades through the migrations as released: v1
    emits exactly the SQL it always has (a change of the catalogue needs a new migration)."""
    statements = schema.MIGRATIONS[0](TYPES[backend])
    assert hashlib.sha256(";\n".join(statements).encode()).hexdigest() == V1_SHA256[backend]


def test_every_column_type_has_a_name_in_each_database() -> None:
    for kind in get_args(catalogue.SqlType):
        for types in TYPES.values():
            assert types.of(kind).isupper()


# --- the typed objects that carry the catalogue's names ---------------------------------------


def test_the_record_has_every_field() -> None:
    record = make_records(1)[0]
    for field in (*CALL_FIELDS, *CONTENT_FIELDS.values()):
        assert hasattr(record, field.source), field.name
    assert {f.name for f in dataclasses.fields(CallRecord)} == {
        *(field.source for field in CALL_FIELDS if field.stored),
        *CONTENT_FIELDS,
    }


def test_the_filter_object_has_every_filter() -> None:
    expected = {
        *(match.name for match in (*TEXT_MATCHES, *CHOICE_MATCHES, *FLAG_MATCHES)),
        "start",
        "end",
        *(f"{bound}_{rng.attribute}" for rng in RANGES for bound in ("min", "max")),
        "comparisons",  # a POST query's operators on COMPARED fields
        "excluded",  # its $ne / $nin on text filters
        "projects",  # set by access control, not a filter parameter
    }
    assert {field.name for field in dataclasses.fields(CallFilter)} == expected
    for match in (*TEXT_MATCHES, *CHOICE_MATCHES):
        assert FIELDS[match.name].type == "string"
    for match in FLAG_MATCHES:
        assert FIELDS[match.name].type == "boolean"
    assert {match.name for match in TEXT_MATCHES} >= ROUTED_MATCHES
    for name in COMPARED:
        assert FIELDS[name].type in ("integer", "number", "datetime")
    for rng in RANGES:
        assert FIELDS[rng.field].type in ("integer", "number")


def test_sort_keys_and_stats_groups_name_catalogued_fields() -> None:
    assert all(FIELDS[name].column for name in SORTS.values())
    assert set(COMPARED) <= set(SORTS)  # every numeric and time field sorts
    assert {"model", "provider"} <= set(SORTS)
    groups = [
        group
        for group in get_args(StatsGroup)
        if group not in ("hour", "day", "week") and group not in CALL_GROUPS
    ]
    kept = {name for rollup in ROLLUPS for name in rollup.fields}
    assert {"api_key_id" if group == "api_key" else group for group in groups} <= kept
    assert set(STATS_MATCHES) == kept
    assert ROLLUPS[0].key == DAILY_DIMENSIONS
    assert set(CALL_GROUPS) <= set(get_args(StatsGroup))
    assert all(FIELDS[name].column for name in CALL_GROUPS.values())


# --- the catalogue's codecs --------------------------------------------------------------------


def test_a_row_decodes_to_the_record() -> None:
    """What ``row_of`` writes for each column, the column's decoder reads back as the record's
    value (exact: times to the microsecond, money to the nano-USD)."""
    position = {name: index for index, name in enumerate(sql.INSERT_COLUMNS)}
    for record in make_records(60):
        row = sql.row_of(record)
        for name, field in FIELDS.items():
            if field.column is None:
                continue
            value: Any = sql.COLUMNS[name][1](row[position[field.column]])
            assert value == getattr(record, name), name
        content = dict(zip(sql.CONTENT_COLUMNS, sql.content_row_of(record), strict=True))
        for name in CONTENT_FIELDS:
            assert content[name] == getattr(record, name)
