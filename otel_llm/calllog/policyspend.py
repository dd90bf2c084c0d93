"""The call log as the policies' ``SpendHistory``: past spend read back from the store.

After a restart (or a reload that adds a budget), and at each resync of replicas sharing the
store (``policy_sync_interval``), the collector's policy engine asks, per
distinct window start, for the calls created since then, summed by the scope fields (and by
minute for rolling windows); it matches each sum to its policies itself, with the same
patterns as live calls. One grouped statement per window start, whatever the number of
policies, on the indexed time column -- through the call log's own filter (``sql.where``) and
columns (``catalogue``), on SQLite and PostgreSQL alike. Money stays integer nano-USD, as
stored, so the sums are the live engine's to the nano.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

from otel_llm.calllog import sql
from otel_llm.calllog.catalogue import TIME_FIELD, column_of
from otel_llm.calllog.query import CallFilter
from otel_llm.calllog.schema import CALLS
from otel_llm.calllog.sqlstore import SQLCallStore
from otel_llm.policies.model import SCOPE_FIELDS, ScopeKey

_MINUTE_US = 60_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class StoreSpendHistory:
    """``SpendHistory`` over a call store."""

    def __init__(self, store: SQLCallStore):
        self.store = store

    def spend(
        self,
        start_ns: int,
        end_ns: int,
        per_minute: bool,
        fields: Sequence[str] = SCOPE_FIELDS,
    ) -> Iterator[tuple[ScopeKey, int | None, int, int, int, int]]:
        # Microseconds, as stored: the start rounded down and the end up keep every call of
        # [start_ns, end_ns) (window starts are whole minutes anyway).
        window = CallFilter(start=_moment(start_ns // 1000), end=_moment(-(-end_ns // 1000)))
        condition = sql.where(window)
        # Grouped by the fields budgets read only: the others come back NULL.
        values = ", ".join(column_of(n) if n in fields else "NULL" for n in SCOPE_FIELDS)
        time = column_of(TIME_FIELD)
        # Integer division on both databases (no '%': psycopg reads it as a placeholder).
        minute = f"{time} / {_MINUTE_US} * {_MINUTE_US}" if per_minute else "NULL"
        groups = [column_of(n) for n in SCOPE_FIELDS if n in fields]
        if per_minute:
            groups.append(minute)
        cost = column_of("cost")
        statement = sql.Statement(
            f"SELECT {values}, {minute}, SUM({cost}), "  # noqa: S608 - fixed names
            f"SUM({column_of('total_tokens')}), COUNT(*), COUNT(*) - COUNT({cost}) "
            f"FROM {CALLS} WHERE {condition.text}"
            + (f" GROUP BY {', '.join(groups)}" if groups else ""),
            condition.params,
        )
        for row in self.store._read(statement):
            key: ScopeKey = tuple(row[: len(SCOPE_FIELDS)])
            minute_us, nanos, tokens, calls, unpriced = row[len(SCOPE_FIELDS) :]
            yield (
                key,
                int(minute_us) * 1000 if minute_us is not None else None,
                int(nanos or 0),
                int(tokens or 0),
                int(calls),
                int(unpriced),
            )


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)
