"""The PostgreSQL call log at scale: list, count, stats, get and one day's retention over a store
of N calls, at two sizes side by side (issue 16: 100 M calls).

Targets: list newest-first with a filter and get by id <= 50 ms p95; stats by model per day
over 30 days <= 1 s p95; retention of one day's partition <= 1 s.

    .venv/bin/python benchmarks/calllog_pg_scale.py                           # 1 M and 10 M
    .venv/bin/python benchmarks/calllog_pg_scale.py --sizes 100000,1000000    # quicker
    .venv/bin/python benchmarks/calllog_pg_scale.py --sizes 100000000 --days 90

Method. A private cluster is started from the machine's binaries (as the tests do, durable:
fsync on, the server's default configuration but ``work_mem`` 32 MB and
``maintenance_work_mem`` 256 MB) and stopped at the end. For each size, a fresh database is
migrated by ``PostgresCallStore`` (schema v8: the calls table partitioned by UTC day), then
filled directly with SQL -- writing 100 M calls through OTLP or ``store.write`` would take
hours on 2 cores. The calls are spread evenly over the ``--days`` full UTC days before today
(N / days a day, in time order as they arrive); each day is generated with ``generate_series``
into a table of its own, its daily aggregates (all four tables) are computed from it with
``GROUP BY`` (so stats, which read the aggregates, agree with the calls), and it is attached
as that day's partition (ATTACH builds its indexes). Distributions: 8 models of 4 providers
with Zipf-like use (the embedding model for the ``embeddings`` operation, else ``chat``),
6 services with 2 features each and a project each, 20,000 users and 500 API keys (skewed),
3 % errors (status 429), 3 % unpriced, input tokens log-uniform 1-3,000, output 1-650,
latency log-uniform 150 ms-3 s; costs exact nano-USD from per-model prices. The daily rows'
latency sketches are one real sketch (``rollup.Totals`` of 1,000 latencies) on every row: the
stats' cost of decoding and merging them is real, their percentiles are not the calls'.
Then ``VACUUM ANALYZE`` (as autovacuum would, timed), and 5,000 calls of today written through
``store.write`` (the writer's path on the big store, timed).

Measured through the store's own methods (what the API calls), each ``--repeat`` times, p50 and
p95 wall time: ``list``: the newest 50 calls of one model (the page's statement); ``list+total``:
``store.list``, which also counts the matches for the page's total (the API's list); ``count``
of one model's calls, and of one model's calls in one day; ``stats``: by model over the last
30 days (with by_day, by_model); ``get``: one call by id (ids drawn from all days). Then
retention: ``apply_retention`` with a cutoff at the midnight after the oldest day (drops one
partition, deletes no row), and with a cutoff one hour into the next day (drops nothing,
deletes that hour row by row). The last column is the ratio of the largest size to the
smallest.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psycopg

from otel_llm.calllog import partitions, rollup, sql
from otel_llm.calllog.catalogue import DAILY_SUMS, DAILY_VALUES, ROLLUPS
from otel_llm.calllog.postgres import PostgresCallStore
from otel_llm.calllog.query import CallFilter, CallQuery, StatsQuery
from otel_llm.calllog.schema import CALLS

DAY_US = 86_400_000_000
MODELS = (  # model, provider, nano-USD per input token, per output token
    ("gpt-4o-mini", "openai", 150, 600),
    ("claude-sonnet-4", "anthropic", 3000, 15000),
    ("gpt-4o", "openai", 2500, 10000),
    ("gemini-2.0-flash", "google", 100, 400),
    ("text-embedding-3-small", "openai", 20, 0),
    ("claude-haiku-3.5", "anthropic", 800, 4000),
    ("o3-mini", "openai", 1100, 4400),
    ("mistral-large", "mistral", 2000, 6000),
)
SERVICES = ("chat-api", "search", "support-bot", "summariser", "agents", "batch-jobs")
PROJECTS = ("alpha", "beta", "gamma", "delta")


def _array(values: Any) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" if isinstance(v, str) else str(v) for v in values) + "]"


def _day_sql(table: str, day: int, n: int) -> str:
    """The INSERT of one day's ``n`` calls into ``table`` (columns in ``INSERT_COLUMNS``)."""
    models = _array(m[0] for m in MODELS)
    providers = _array(m[1] for m in MODELS)
    price_in, price_out = _array(m[2] for m in MODELS), _array(m[3] for m in MODELS)
    features = _array(f"{s}-{i}" for s in SERVICES for i in (1, 2))
    values = {
        "id": "trace_id || '-' || span_id",
        "trace_id": "trace_id",
        "span_id": "span_id",
        "created_us": "created_us",
        "day": str(day),
        "span_key": "span_key",
        "completed_us": "created_us + (latency * 1000)::BIGINT",
        "latency_ms": "latency",
        "ttfc_ms": "CASE WHEN streaming = 1 THEN latency * 0.3 END",
        "service": f"({_array(SERVICES)})[s]",
        "provider": f"({providers})[m]",
        "model": f"({models})[m]",
        "response_model": f"({models})[m]",
        "operation": "CASE WHEN m = 5 THEN 'embeddings' ELSE 'chat' END",
        "streaming": "streaming",
        "status": "CASE WHEN err THEN 'error' ELSE 'success' END",
        "status_code": "CASE WHEN err THEN 429 ELSE 200 END",
        "error_type": "CASE WHEN err THEN 'RateLimitError' END",
        "input_tokens": "inp",
        "output_tokens": "outp",
        "total_tokens": "inp + outp",
        "cost_nusd": f"CASE WHEN priced THEN inp * ({price_in})[m] + outp * ({price_out})[m] END",
        "cost_input_nusd": f"CASE WHEN priced THEN inp * ({price_in})[m] END",
        "cost_output_nusd": f"CASE WHEN priced THEN outp * ({price_out})[m] END",
        "cost_source": "CASE WHEN priced THEN 'genai-prices' END",
        "unpriced_reason": "CASE WHEN NOT priced THEN 'unknown_model' END",
        "feature": f"({features})[(s - 1) * 2 + f]",
        "user_id": "'user-' || u",
        "project": f"({_array(PROJECTS)})[1 + s % 4]",
        "api_key_id": "'key-' || k",
    }
    unknown = set(values) - set(sql.INSERT_COLUMNS)
    assert not unknown, unknown
    select = ", ".join(values.get(column, "NULL") for column in sql.INSERT_COLUMNS)
    slot = DAY_US // n
    return f"""INSERT INTO {table} ({", ".join(sql.INSERT_COLUMNS)})
SELECT {select} FROM (
    SELECT
        {day}::BIGINT * {DAY_US} + g::BIGINT * {slot} + floor(random() * {slot})::BIGINT
            AS created_us,
        md5({day} || ':' || g) AS trace_id,
        lpad(to_hex(k64), 16, '0') AS span_id, k64 AS span_key,
        1 + floor(power(random(), 2.5) * 8)::INT AS m,
        1 + floor(power(random(), 1.5) * 6)::INT AS s,
        CASE WHEN random() < 0.7 THEN 1 ELSE 2 END AS f,
        floor(power(random(), 3) * 20000)::INT AS u,
        floor(power(random(), 2) * 500)::INT AS k,
        random() < 0.03 AS err, random() >= 0.03 AS priced,
        (random() < 0.4)::INT::SMALLINT AS streaming,
        floor(exp(random() * 8))::BIGINT AS inp, floor(exp(random() * 6.5))::BIGINT AS outp,
        round(exp(5 + random() * 3)::NUMERIC, 3)::DOUBLE PRECISION AS latency
    FROM (SELECT g, ((random() * 2 - 1) * 9.2e18)::BIGINT AS k64
          FROM generate_series(0, {n - 1}) AS g) AS raw
) AS call"""  # noqa: S608


def _aggregates_sql(table: str, source: str, day_text: str) -> str:
    """The daily rows of ``table`` for the calls in ``source`` (as ``rollup.py`` adds them)."""
    key = next(r.key for r in ROLLUPS if r.table == table)
    dimensions = [f"coalesce({column}, '')" for column in key[1:]]
    sums = {
        "requests": "count(*)",
        "failed": "count(*) FILTER (WHERE status = 'error')",
        "unpriced": "count(*) FILTER (WHERE cost_nusd IS NULL)",
        "latency_count": "count(latency_ms)",
    }
    expressions = [sums.get(name, f"coalesce(sum({name}), 0)") for name in DAILY_SUMS]
    expressions = [
        e if name in sums or name in _SUMMED_COLUMNS else "0"
        for name, e in zip(DAILY_SUMS, expressions, strict=True)
    ]
    columns = ", ".join((*key, *DAILY_VALUES))
    return (
        f"INSERT INTO {table} ({columns}) SELECT '{day_text}', {', '.join(dimensions)}, "  # noqa: S608
        f"{', '.join(expressions)}, coalesce(sum(latency_ms), 0), %(sketch)s, %(sketch)s "
        f"FROM {source} GROUP BY {', '.join(dimensions)}"
    )


_SUMMED_COLUMNS = frozenset(
    {
        "input_tokens", "output_tokens", "total_tokens", "cache_read_tokens",
        "cache_write_tokens", "reasoning_tokens", "cost_nusd", "cost_input_nusd",
        "cost_output_nusd", "cost_cache_read_nusd", "cost_cache_write_nusd",
        "cost_request_nusd",
    }
)  # fmt: skip


def _sketch() -> bytes:
    totals = rollup.Totals()
    rng = random.Random(1)  # noqa: S311 - benchmark data
    for _ in range(1000):
        totals.add(False, [1] * len(_SUMMED_COLUMNS), rng.lognormvariate(6.5, 0.8), None)
    blob = totals.row_values()[len(DAILY_VALUES) - 2]
    assert isinstance(blob, bytes)
    return blob


def load(url: str, calls: int, days: int, today: int) -> dict[str, float]:
    """Fill the store at ``url`` with ``calls`` calls over the ``days`` days before ``today``."""
    per_day = calls // days
    sketch = _sketch()
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as connection:
        for day in range(today - days, today):
            name = partitions.name_of(day)
            low, high = day * DAY_US, (day + 1) * DAY_US
            day_text = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).date().isoformat()
            with connection.transaction():
                connection.execute(f"DROP TABLE IF EXISTS {name}")
                connection.execute(
                    f"CREATE TABLE {name} (LIKE {CALLS} INCLUDING DEFAULTS, "
                    f"CHECK (created_us >= {low} AND created_us < {high}))"
                )
                connection.execute(_day_sql(name, day, per_day))  # type: ignore[call-overload]
                for daily in ROLLUPS:
                    connection.execute(
                        _aggregates_sql(daily.table, name, day_text),  # type: ignore[arg-type]
                        {"sketch": sketch},
                    )
                connection.execute(
                    f"ALTER TABLE {CALLS} ATTACH PARTITION {name} "
                    f"FOR VALUES FROM ({low}) TO ({high})"
                )
            print(f"  day {day - today + days + 1}/{days} loaded", end="\r", flush=True)
        loaded = time.perf_counter()
        connection.execute(f"VACUUM ANALYZE {CALLS}")
        for daily in ROLLUPS:
            connection.execute(f"VACUUM ANALYZE {daily.table}")
        vacuumed = time.perf_counter()
        size = connection.execute(f"SELECT pg_total_relation_size('{CALLS}')").fetchone()
        size_bytes = sum(
            int(row[0])
            for row in connection.execute(
                "SELECT pg_total_relation_size(i.inhrelid) FROM pg_inherits i "
                "WHERE i.inhparent = %s::regclass",
                (CALLS,),
            ).fetchall()
        ) or int(size[0] if size else 0)
    return {
        "load_s": loaded - started,
        "vacuum_s": vacuumed - loaded,
        "gb": size_bytes / 1e9,
    }


def timed(function: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """p50, p95 of ``repeat`` runs, ms (after one warm-up run)."""
    function()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def measure(url: str, days: int, today: int, repeat: int) -> dict[str, Any]:
    now = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=today, hours=12)
    store = PostgresCallStore(url, clock=lambda: now)
    results: dict[str, Any] = {}
    try:
        rng = random.Random(5)  # noqa: S311 - benchmark data
        from tests.test_calllog_store import make_records

        records = make_records(5000, days=0.4, now=now, seed=3)
        started = time.perf_counter()
        store.write(records)
        results["write 5,000 (ms)"] = ((time.perf_counter() - started) * 1000, None)

        model = MODELS[2][0]  # a mid-frequency model
        page = CallQuery(filter=CallFilter(model=model), limit=50, select=("id", "model"))
        statement = sql.list_statement(page, ("id", "model"))
        results["list"] = timed(lambda: store._read(statement), repeat)
        results["list+total"] = timed(lambda: store.list(page), max(3, repeat // 5))
        results["count"] = timed(lambda: store.count(CallFilter(model=model)), max(3, repeat // 5))
        start = now - timedelta(days=3, hours=12)
        one_day = CallFilter(model=model, start=start, end=start + timedelta(days=1))
        results["count, 1 day"] = timed(lambda: store.count(one_day), repeat)
        stats = StatsQuery(filter=CallFilter(start=now - timedelta(days=30)), group_by="model")
        results["stats"] = timed(lambda: store.stats(stats), max(5, repeat // 2))
        with psycopg.connect(url) as connection:
            ids = [
                row[0]
                for day in range(today - days, today)
                for row in connection.execute(
                    f"SELECT id FROM {partitions.name_of(day)} TABLESAMPLE SYSTEM (0.1) LIMIT 5"  # noqa: S608
                ).fetchall()
            ]
        rng.shuffle(ids)
        picks = iter(ids * (repeat // max(1, len(ids)) + 2))
        results["get"] = timed(lambda: _found(store.get(next(picks))), repeat)

        oldest_end = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=today - days + 1)
        record_days = days - 1
        started = time.perf_counter()
        dropped = store.apply_retention(
            oldest_end + timedelta(days=record_days), content_days=1, record_days=record_days
        )
        results["retention: drop 1 day (ms)"] = ((time.perf_counter() - started) * 1000, None)
        results["  calls dropped"] = (dropped.records_deleted, None)
        started = time.perf_counter()
        hour = store.apply_retention(
            oldest_end + timedelta(days=record_days, hours=1),
            content_days=1,
            record_days=record_days,
        )
        results["retention: 1 hour by row (ms)"] = ((time.perf_counter() - started) * 1000, None)
        results["  calls deleted"] = (hour.records_deleted, None)
    finally:
        store.close()
    return results


def _found(call: Any) -> None:
    assert call is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="calls, comma-separated")
    parser.add_argument("--days", type=int, default=30, help="days the calls span")
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    from tests.support.postgres import running_cluster

    today = (datetime.now(UTC).date() - datetime(1970, 1, 1).date()).days
    table: dict[int, dict[str, Any]] = {}
    with running_cluster(durable=True) as cluster:
        with psycopg.connect(cluster.url(), autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET work_mem = '32MB'")
            admin.execute("ALTER SYSTEM SET maintenance_work_mem = '256MB'")
            admin.execute("SELECT pg_reload_conf()")
        for size in sizes:
            name = f"scale_{size}"
            with psycopg.connect(cluster.url(), autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')  # type: ignore[call-overload]
            url = cluster.url(name)
            PostgresCallStore(url).close()  # migrated, empty
            print(f"{size:,} calls over {args.days} days: loading ...", flush=True)
            loaded = load(url, size, args.days, today)
            print(
                f"  loaded in {loaded['load_s']:.0f} s, VACUUM ANALYZE {loaded['vacuum_s']:.0f} s, "
                f"calls table + indexes {loaded['gb']:.2f} GB",
                flush=True,
            )
            table[size] = measure(url, args.days, today, args.repeat)
            with psycopg.connect(cluster.url(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{name}"')  # type: ignore[call-overload]
    print()
    header = f"{'ms (p50 / p95)':34}" + "".join(f"{size:>22,}" for size in sizes)
    print(header + f"{'ratio':>10}")
    for label in table[sizes[0]]:
        cells = [table[size][label] for size in sizes]
        line = f"{label:34}" + "".join(
            f"{p50:>22,.1f}" if p95 is None else f"{p50:>12,.1f} / {p95:>7,.1f}"
            for p50, p95 in cells
        )
        first, last = cells[0][0], cells[-1][0]
        print(line + (f"{last / first:>9.1f}x" if first else ""))
    print(f"\n.venv/bin/python benchmarks/calllog_pg_scale.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
