"""The call log's tables and indexes, as numbered migrations shared by SQLite and PostgreSQL.

A store applies the migrations its database has not seen yet (``llm_calllog_schema`` keeps the
version), in one transaction each. A migration is only ever added, never edited: a database
created by an older release upgrades step by step. See docs/calllog.md for why each index.
So each migration spells its columns out, rather than reading them from the catalogue
(``catalogue.py``, which the code derives its SQL from): a test checks that a migrated database
and the catalogue agree.

Keys: a call's primary key is (created_us, id) -- time-ordered, so a batch's inserts append to
its b-tree instead of dirtying one random page per call (a random ``id`` key cost SQLite 4x its
ingest rate, see docs/calllog.md); a redelivered span has the same start time and id, so it
still conflicts. Look-up by id goes through the trace index, (day, trace_id, span_key): the id
is the trace id and the span id's 64 bits, within the day of the call -- inserts land in today's
part of that index only; a look-up probes each day.

Representation (the same in both databases, so one SQL text serves both):
- times are integer microseconds since the epoch (UTC); days are ``YYYY-MM-DD`` text;
- money is integer nano-USD (exact sums); an unpriced call has NULL cost;
- content lives in its own table, so content retention deletes rows there only;
- v2: calls that could not be stored wait in a dead-letter table (``deadletter.py``);
- v3: billing mode, list cost and discount of each call; the daily rows' billing sums;
- v4: the provider's request id, the API endpoint and method, a hint of the API key;
- v5: daily aggregates by status, by user and by API key, next to the first (``rollup.py``);
- v6: a call's agent, conversation, parent span and root span name; the trace's root, agent
  and tool spans (``tracespans.py``);
- v7: a call's policy violation (policy, rule, action); the daily rows' policy counters;
- v8: PostgreSQL only -- the calls table partitioned by UTC day of ``created_us``
  (``partitions.py``); SQLite's stays one table;
- v9: SQLite only -- the user and API key indexes keyed by day first (``DAY_INDEXED``);
- v10: each past day's requests by user and by API key, keyed by the value first
  (``dailyranks.py``): what ranks them over a range without sorting every daily row;
- v11: no statement -- sketches may have 8- or 16-bit counts (``sketch.py``), which an older
  release cannot read: the version keeps it from opening the store;
- v12: one index for the look-up by id and by trace (the span key after the trace id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Types:
    """Column types of one database."""

    bigint: str
    real: str
    blob: str
    clustered: str = ""
    """After a table's definition: its rows kept in its primary key's b-tree (aggregates are
    read and upserted by key; a second b-tree would double their writes)."""
    partitioned: bool = False
    """The calls table is partitioned by day (PostgreSQL's declarative partitioning)."""

    def of(self, kind: str) -> str:
        """The name of a catalogue column type (``catalogue.SqlType``) in this database."""
        return {"bigint": self.bigint, "real": self.real, "blob": self.blob}.get(kind, kind.upper())


SQLITE_TYPES = Types(bigint="INTEGER", real="REAL", blob="BLOB", clustered=" WITHOUT ROWID")
POSTGRES_TYPES = Types(bigint="BIGINT", real="DOUBLE PRECISION", blob="BYTEA", partitioned=True)

CALLS = "llm_calls"
CONTENT = "llm_call_content"
DAILY = "llm_call_daily"
DEAD_LETTERS = "llm_call_dead_letters"
DAILY_STATUS = "llm_call_daily_status"
DAILY_USER = "llm_call_daily_user"
DAILY_API_KEY = "llm_call_daily_api_key"
DAILY_SINCE = "llm_call_daily_since"
DAILY_RANKS = "llm_call_daily_ranks"
TRACE_SPANS = "llm_trace_spans"
VERSION_TABLE = "llm_calllog_schema"


def _v1(t: Types) -> list[str]:
    return [
        f"""CREATE TABLE {CALLS} (
    id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    created_us {t.bigint} NOT NULL,
    day INTEGER NOT NULL,
    span_key {t.bigint} NOT NULL,
    completed_us {t.bigint},
    latency_ms {t.real},
    ttfc_ms {t.real},
    service TEXT,
    provider TEXT,
    model TEXT,
    response_model TEXT,
    operation TEXT NOT NULL,
    streaming SMALLINT NOT NULL,
    status TEXT NOT NULL,
    status_code INTEGER,
    error_type TEXT,
    error_code TEXT,
    error_message TEXT,
    input_tokens {t.bigint},
    output_tokens {t.bigint},
    total_tokens {t.bigint},
    cache_read_tokens {t.bigint},
    cache_write_tokens {t.bigint},
    reasoning_tokens {t.bigint},
    cost_nusd {t.bigint},
    cost_input_nusd {t.bigint},
    cost_output_nusd {t.bigint},
    cost_cache_read_nusd {t.bigint},
    cost_cache_write_nusd {t.bigint},
    cost_request_nusd {t.bigint},
    cost_source TEXT,
    price_data TEXT,
    unpriced_reason TEXT,
    feature TEXT,
    user_id TEXT,
    project TEXT,
    api_key_id TEXT,
    pipeline_step TEXT,
    context TEXT,
    PRIMARY KEY (created_us, id)
)""",
        f"CREATE INDEX {CALLS}_lookup ON {CALLS} (day, span_key)",
        f"CREATE INDEX {CALLS}_project ON {CALLS} (project, created_us)",
        f"CREATE INDEX {CALLS}_model ON {CALLS} (model, created_us)",
        f"CREATE INDEX {CALLS}_provider ON {CALLS} (provider, created_us)",
        f"CREATE INDEX {CALLS}_service ON {CALLS} (service, created_us)",
        f"CREATE INDEX {CALLS}_feature ON {CALLS} (feature, created_us)",
        f"CREATE INDEX {CALLS}_user ON {CALLS} (user_id, created_us)",
        f"CREATE INDEX {CALLS}_api_key ON {CALLS} (api_key_id, created_us)",
        f"CREATE INDEX {CALLS}_status ON {CALLS} (status, created_us)",
        f"""CREATE TABLE {CONTENT} (
    id TEXT NOT NULL,
    created_us {t.bigint} NOT NULL,
    request_prompt TEXT,
    response_preview TEXT,
    PRIMARY KEY (created_us, id)
)""",
        f"""CREATE TABLE {DAILY} (
    day TEXT NOT NULL,
    service TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    operation TEXT NOT NULL,
    feature TEXT NOT NULL,
    project TEXT NOT NULL,
    requests {t.bigint} NOT NULL DEFAULT 0,
    failed {t.bigint} NOT NULL DEFAULT 0,
    unpriced {t.bigint} NOT NULL DEFAULT 0,
    input_tokens {t.bigint} NOT NULL DEFAULT 0,
    output_tokens {t.bigint} NOT NULL DEFAULT 0,
    total_tokens {t.bigint} NOT NULL DEFAULT 0,
    cache_read_tokens {t.bigint} NOT NULL DEFAULT 0,
    cache_write_tokens {t.bigint} NOT NULL DEFAULT 0,
    reasoning_tokens {t.bigint} NOT NULL DEFAULT 0,
    cost_nusd {t.bigint} NOT NULL DEFAULT 0,
    cost_input_nusd {t.bigint} NOT NULL DEFAULT 0,
    cost_output_nusd {t.bigint} NOT NULL DEFAULT 0,
    cost_cache_read_nusd {t.bigint} NOT NULL DEFAULT 0,
    cost_cache_write_nusd {t.bigint} NOT NULL DEFAULT 0,
    cost_request_nusd {t.bigint} NOT NULL DEFAULT 0,
    latency_count {t.bigint} NOT NULL DEFAULT 0,
    latency_sum_ms {t.real} NOT NULL DEFAULT 0,
    latency_sketch {t.blob},
    ttfc_sketch {t.blob},
    PRIMARY KEY (day, service, provider, model, operation, feature, project)
)""",
    ]


def _v2(t: Types) -> list[str]:
    # Calls that could not be stored, kept with why (``deadletter.py``): one row per call id
    # (a redelivered span updates it), the record as ASCII JSON (any value fits a TEXT column).
    return [
        f"""CREATE TABLE {DEAD_LETTERS} (
    id TEXT NOT NULL,
    quarantined_us {t.bigint} NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (id)
)""",
        f"CREATE INDEX {DEAD_LETTERS}_time ON {DEAD_LETTERS} (quarantined_us)",
    ]


def _v3(t: Types) -> list[str]:
    # Billing (credits vs own keys) and discounts: each call's mode, list cost and discount;
    # the daily rows' credits sums and discount savings. Calls stored before have NULLs (and
    # count as own_key in the daily rows, whose new counters start at 0).
    daily = [
        "credits_requests",
        "credits_unpriced",
        "credits_cost_nusd",
        "credits_list_nusd",
        "credits_list_unknown",
        "discount_nusd",
    ]
    return [
        f"ALTER TABLE {CALLS} ADD COLUMN billing TEXT",
        f"ALTER TABLE {CALLS} ADD COLUMN list_cost_nusd {t.bigint}",
        f"ALTER TABLE {CALLS} ADD COLUMN discount_nusd {t.bigint}",
        *(f"ALTER TABLE {DAILY} ADD COLUMN {name} {t.bigint} NOT NULL DEFAULT 0" for name in daily),
    ]


def _v4(t: Types) -> list[str]:
    # The call metadata other call logs show (the provider's response id, the API path and
    # method, a hint of the key). No index on request_id: its values are random, so a b-tree on
    # them would take every insert to a random page (see docs/calllog.md on the primary key).
    return [
        f"ALTER TABLE {CALLS} ADD COLUMN request_id TEXT",
        f"ALTER TABLE {CALLS} ADD COLUMN endpoint TEXT",
        f"ALTER TABLE {CALLS} ADD COLUMN method TEXT",
        f"ALTER TABLE {CALLS} ADD COLUMN api_key_hint TEXT",
    ]


def _v5(t: Types) -> list[str]:
    # Daily aggregates with the dimensions the first one leaves out. Status is two values: its
    # table is the first one's key with status. A user or an API key per row of that key would
    # multiply its rows by 100,000 users; their tables keep, next to the user (or key), only
    # what filters and the per-day model breakdown need: status, provider, model, project
    # (access control's). Day first in every key: a write touches today's part of each b-tree.
    sums = f"""requests {t.bigint} NOT NULL DEFAULT 0,
    failed {t.bigint} NOT NULL DEFAULT 0,
    unpriced {t.bigint} NOT NULL DEFAULT 0,
    input_tokens {t.bigint} NOT NULL DEFAULT 0,
    output_tokens {t.bigint} NOT NULL DEFAULT 0,
    total_tokens {t.bigint} NOT NULL DEFAULT 0,
    cache_read_tokens {t.bigint} NOT NULL DEFAULT 0,
    cache_write_tokens {t.bigint} NOT NULL DEFAULT 0,
    reasoning_tokens {t.bigint} NOT NULL DEFAULT 0,
    cost_nusd {t.bigint} NOT NULL DEFAULT 0,
    cost_input_nusd {t.bigint} NOT NULL DEFAULT 0,
    cost_output_nusd {t.bigint} NOT NULL DEFAULT 0,
    cost_cache_read_nusd {t.bigint} NOT NULL DEFAULT 0,
    cost_cache_write_nusd {t.bigint} NOT NULL DEFAULT 0,
    cost_request_nusd {t.bigint} NOT NULL DEFAULT 0,
    latency_count {t.bigint} NOT NULL DEFAULT 0,
    latency_sum_ms {t.real} NOT NULL DEFAULT 0,
    latency_sketch {t.blob},
    ttfc_sketch {t.blob},
    credits_requests {t.bigint} NOT NULL DEFAULT 0,
    credits_unpriced {t.bigint} NOT NULL DEFAULT 0,
    credits_cost_nusd {t.bigint} NOT NULL DEFAULT 0,
    credits_list_nusd {t.bigint} NOT NULL DEFAULT 0,
    credits_list_unknown {t.bigint} NOT NULL DEFAULT 0,
    discount_nusd {t.bigint} NOT NULL DEFAULT 0"""
    statements = [
        f"""CREATE TABLE {DAILY_STATUS} (
    day TEXT NOT NULL,
    status TEXT NOT NULL,
    service TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    operation TEXT NOT NULL,
    feature TEXT NOT NULL,
    project TEXT NOT NULL,
    {sums},
    PRIMARY KEY (day, status, service, provider, model, operation, feature, project)
){t.clustered}"""
    ]
    for table, column in ((DAILY_USER, "user_id"), (DAILY_API_KEY, "api_key_id")):
        statements.append(
            f"""CREATE TABLE {table} (
    day TEXT NOT NULL,
    {column} TEXT NOT NULL,
    status TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    project TEXT NOT NULL,
    {sums},
    PRIMARY KEY (day, {column}, status, provider, model, project)
){t.clustered}"""
        )
    # The calls stored before these tables existed are in none of them: the last day that had
    # any (NULL: none) is incomplete there, and stats read them from the day after only.
    statements += [
        f"CREATE TABLE {DAILY_SINCE} (last_partial_day TEXT)",
        f"INSERT INTO {DAILY_SINCE} (last_partial_day) SELECT MAX(day) FROM {DAILY}",  # noqa: S608
    ]
    return statements


def _v6(t: Types) -> list[str]:
    # Issue 13: a call's place in its trace, and the spans of a trace that are not calls but
    # belong in its cost tree (root, agents, tools: ``tracespans.py``). The trace index serves
    # a trace's tree and the root's name arriving after its calls; agent and conversation
    # serve their filters, their stats groups and a conversation's totals.
    added = ("agent_name", "agent_id", "conversation_id", "parent_span_id", "root_span_name")
    return [
        *(f"ALTER TABLE {CALLS} ADD COLUMN {name} TEXT" for name in added),
        # (day, trace_id), not (trace_id): a random key takes each insert to a random page of
        # the whole index; under its day, only to today's part (as the look-up by id).
        f"CREATE INDEX {CALLS}_trace ON {CALLS} (day, trace_id)",
        f"CREATE INDEX {CALLS}_agent ON {CALLS} (agent_name, created_us)",
        f"CREATE INDEX {CALLS}_conversation ON {CALLS} (conversation_id, created_us)",
        f"""CREATE TABLE {TRACE_SPANS} (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    service TEXT,
    agent_name TEXT,
    start_us {t.bigint} NOT NULL,
    end_us {t.bigint},
    PRIMARY KEY (trace_id, span_id)
)""",
        f"CREATE INDEX {TRACE_SPANS}_time ON {TRACE_SPANS} (start_us)",
    ]


def _v7(t: Types) -> list[str]:
    # Issue 14: the violation the collector's policies found in a call, and per daily row the
    # calls with one (and of alert / block policies: the seed's alerts and blocks). Calls and
    # rows stored before have none. The policy index serves stats grouped by policy (few
    # calls carry one) and its filter.
    daily = ("policy_violations", "policy_alerts", "policy_blocks")
    return [
        *(
            f"ALTER TABLE {CALLS} ADD COLUMN {name} TEXT"
            for name in ("policy", "policy_rule", "policy_action")
        ),
        f"CREATE INDEX {CALLS}_policy ON {CALLS} (policy, created_us)",
        *(
            f"ALTER TABLE {table} ADD COLUMN {name} {t.bigint} NOT NULL DEFAULT 0"
            for table in (DAILY, DAILY_STATUS, DAILY_USER, DAILY_API_KEY)
            for name in daily
        ),
    ]


_V7_CALL_INDEXES = {
    "lookup": "day, span_key",
    "project": "project, created_us",
    "model": "model, created_us",
    "provider": "provider, created_us",
    "service": "service, created_us",
    "feature": "feature, created_us",
    "user": "user_id, created_us",
    "api_key": "api_key_id, created_us",
    "status": "status, created_us",
    "trace": "day, trace_id",
    "agent": "agent_name, created_us",
    "conversation": "conversation_id, created_us",
    "policy": "policy, created_us",
}
"""The calls table's secondary indexes as of v7 (name suffix: columns)."""

PARTITION_DAYS_KEPT_BY_UPGRADE = 400
"""v8 makes a partition for each day of the stored calls within this many days before the
upgrade (and up to two days after); calls outside that go to the default partition."""


def _v8(t: Types) -> list[str]:
    # Issue 16: at 100 M calls, retention deleting row by row and indexes spanning 90 days are
    # what grows. PostgreSQL gets the calls table partitioned by UTC day of created_us: a
    # day's query plans against one partition, retention drops whole days. The primary key
    # (created_us, id) already holds the partition key, so ON CONFLICT (created_us, id) still
    # stores a redelivered span once. In a partition (one day), the look-up and trace indexes
    # need no day in front: one probe per partition instead of one per day and partition, and
    # inserts still land in today's (small) index only. Calls are copied into the new table;
    # the partitions of their days are made first (the writer makes the later ones).
    if not t.partitioned:
        return []
    day_us = 86_400_000_000
    indexes = {**_V7_CALL_INDEXES, "lookup": "span_key", "trace": "trace_id"}
    old = f"{CALLS}_v7"
    return [
        f"ALTER TABLE {CALLS} RENAME TO {old}",
        *(f"DROP INDEX {CALLS}_{name}" for name in _V7_CALL_INDEXES),
        f"ALTER TABLE {old} DROP CONSTRAINT {CALLS}_pkey",
        f"CREATE TABLE {CALLS} (LIKE {old} INCLUDING DEFAULTS, PRIMARY KEY (created_us, id)) "
        "PARTITION BY RANGE (created_us)",
        *(f"CREATE INDEX {CALLS}_{name} ON {CALLS} ({cols})" for name, cols in indexes.items()),
        f"CREATE TABLE {CALLS}_default PARTITION OF {CALLS} DEFAULT",
        f"""DO $$
DECLARE
    today BIGINT := floor(extract(epoch FROM now()) / 86400)::BIGINT;
    d BIGINT;
BEGIN
    FOR d IN
        SELECT DISTINCT created_us / {day_us} FROM {old}
        WHERE created_us >= (today - {PARTITION_DAYS_KEPT_BY_UPGRADE}) * {day_us}
          AND created_us < (today + 3) * {day_us}
        UNION SELECT today
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF {CALLS} FOR VALUES FROM (%s) TO (%s)',
            '{CALLS}_' || to_char(to_timestamp(d * 86400) AT TIME ZONE 'UTC', 'YYYYMMDD'),
            d * {day_us}, (d + 1) * {day_us});
    END LOOP;
END
$$""",  # noqa: S608
        f"INSERT INTO {CALLS} SELECT * FROM {old}",  # noqa: S608
        f"DROP TABLE {old}",
    ]


DAY_INDEXED: dict[str, str] = {"user": "user_id", "api_key_id": "api_key_id"}
"""The filters (``CallFilter`` attribute: column) whose SQLite index is (day, column,
created_us) from v9 on: a query on them names the days (``sql.where``'s ``days``)."""


def _v9(t: Types) -> list[str]:
    # Issue 12: at 100,000 users a (user_id, created_us) index took each insert to a random
    # leaf page of the whole index (every call of a 5,000-call batch dirtied its own page,
    # written to the WAL at commit), and (api_key_id, created_us) to one of 1,000 pages. Day
    # first, an insert lands in today's part of the index, as the look-up and trace indexes
    # do; a query names the days of its range (``day IN (...)``, one seek each) and, newest
    # first, reads the order off the index by (day, created_us). Those two and the indexes
    # of fields most calls lack (agent, conversation, policy) are partial: a call without
    # the value costs no insert into them, and "column = ?" implies "IS NOT NULL", so their
    # filters still use them. PostgreSQL's indexes are per daily partition already (v8):
    # unchanged.
    if t.partitioned:
        return []
    day_first = (("user", "user_id"), ("api_key", "api_key_id"))
    sparse = (("agent", "agent_name"), ("conversation", "conversation_id"), ("policy", "policy"))
    return [
        *(f"DROP INDEX {CALLS}_{name}" for name, _ in (*day_first, *sparse)),
        *(
            f"CREATE INDEX {CALLS}_{name}_day ON {CALLS} (day, {column}, created_us) "
            f"WHERE {column} IS NOT NULL"
            for name, column in day_first
        ),
        *(
            f"CREATE INDEX {CALLS}_{name} ON {CALLS} ({column}, created_us) "
            f"WHERE {column} IS NOT NULL"
            for name, column in sparse
        ),
    ]


def _v10(t: Types) -> list[str]:
    # Issue 12: ranking 100,000 users over 30 days from the tables by user sorted ~1,000,000
    # wide rows by user (~400 ms). Here each past day's requests of a value, written once a
    # day closes (by stats, off the write path: ``dailyranks.py``), keyed by the value first,
    # so a range's sums come out in the value's order, without a sort, from narrow rows. The
    # day's total is a row of its own (dimension ``<column> total``) written by the same
    # statement: equal to the day's calls, it vouches for the day's rows.
    return [
        f"""CREATE TABLE {DAILY_RANKS} (
    dimension TEXT NOT NULL,
    name TEXT NOT NULL,
    day TEXT NOT NULL,
    requests {t.bigint} NOT NULL,
    PRIMARY KEY (dimension, name, day)
){t.clustered}"""
    ]


def _v11(t: Types) -> list[str]:
    # Issue 12: sketch counts as narrow as the largest needs (sketch versions 3 and 4). Rows
    # are rewritten in the new form as writes merge into them; nothing to do here but be
    # counted, so that a release that cannot read them refuses the store instead of failing
    # on its first stats.
    return []


def _v12(t: Types) -> list[str]:
    # Issue 12: a call's id is its trace id and span id, so the trace index with the span key
    # after the trace id finds a call as the look-up index did (one seek a day, or a
    # partition), and that index goes: one random leaf page fewer for each insert to dirty.
    # Within a day (or a partition) the look-up index was (span_key) and the trace index
    # (trace_id): each kept its column first; a trace's calls are still a prefix of the index.
    trace = "trace_id, span_key" if t.partitioned else "day, trace_id, span_key"
    return [
        f"DROP INDEX {CALLS}_lookup",
        f"DROP INDEX {CALLS}_trace",
        f"CREATE INDEX {CALLS}_trace ON {CALLS} ({trace})",
    ]


MIGRATIONS: tuple[Callable[[Types], list[str]], ...] = (
    _v1,
    _v2,
    _v3,
    _v4,
    _v5,
    _v6,
    _v7,
    _v8,
    _v9,
    _v10,
    _v11,
    _v12,
)
"""Migration n (1-based) is ``MIGRATIONS[n - 1]``."""

LATEST = len(MIGRATIONS)

RANKS_SINCE = MIGRATIONS.index(_v10) + 1
"""The first version with ``DAILY_RANKS`` (``dailyranks.py``). A store is at ``LATEST`` once
open, so stats test ``LATEST`` against it: a test standing for the code of an older schema
lowers ``LATEST`` (tests/test_calllog_partitions.py), and its stats must not read the table."""


def pending(current: int, types: Types) -> list[tuple[int, list[str]]]:
    """The migrations after ``current``, each with its statements."""
    return [(number, MIGRATIONS[number - 1](types)) for number in range(current + 1, LATEST + 1)]


def version_table_ddl() -> str:
    return f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)"


def upgrade(execute: Callable[[str], Any], types: Types) -> None:
    """Bring a database to ``LATEST`` through ``execute`` (its connection's, in one transaction
    the caller holds), recording each migration's number as it goes; ``RuntimeError`` when the
    database is newer than this code."""
    execute(version_table_ddl())
    row = execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()  # noqa: S608 - fixed name
    current = int(row[0]) if row else 0
    if current > LATEST:
        raise RuntimeError(
            f"call log schema version {current} is newer than this otel-llm "
            f"({LATEST}): upgrade otel-llm"
        )
    for number, statements in pending(current, types):
        for statement in statements:
            execute(statement)
        execute(f"DELETE FROM {VERSION_TABLE}")  # noqa: S608 - fixed name
        execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES ({number:d})")  # noqa: S608
