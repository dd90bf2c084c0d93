"""The call log's store: ingest rate and statistics latency, SQLite and PostgreSQL.

Targets (issue 5): ingest >= 20,000 calls/s into SQLite; the stats query -- p50/p95 latency by
model per day over 30 days -- <= 500 ms over 1,000,000 stored calls. Issue 12: the same with
100,000 users and 1,000 API keys, and stats by key and by user <= 500 ms.

    .venv/bin/python benchmarks/calllog_benchmark.py                      # 1,000,000 calls
    .venv/bin/python benchmarks/calllog_benchmark.py --calls 100000       # quicker
    .venv/bin/python benchmarks/calllog_benchmark.py --backend sqlite --batch 1000
    .venv/bin/python benchmarks/calllog_benchmark.py --postgres postgresql://u@host/db
    .venv/bin/python benchmarks/calllog_benchmark.py --users 100000 --keys 1000  # issue 12

Per backend: a fresh store (a SQLite file in a temporary directory; PostgreSQL: a private
cluster started from the machine's binaries, as the tests do, unless ``--postgres`` names a
database); the calls are written through ``store.write`` in batches of ``--batch`` (default
the writer's ``call_log_batch_size``, 20,000; the writer's path:
duplicates check, aggregates, one transaction per batch) -- the ingest rate is the first
``--ingest-calls`` calls, timed around ``write`` only (building the records is not counted);
the rest is loaded the same way and the load time printed. Calls are spread evenly over the
30 days before now, in time order as they would arrive, over 8 models of 3 providers,
3 services, 5 features (one: none) and 3 projects, ``--users`` users (default 500) and
``--keys`` API keys (default 20; a key belongs to one project). Then each query runs
``--repeat`` times and its p50 / p95 wall time is printed, and each daily aggregate table's rows
and bytes per day (SQLite: its b-tree pages, ``dbstat``; PostgreSQL: table and indexes).

``--against DIR`` (repeatable) measures SQLite ingest only, of this copy and of other copies of
the package (e.g. a worktree of ``main``), in rounds of one run (``--rounds``; each round in a
rotated order), each in a fresh process and store, and prints the median rates and their
ratios to this copy's; the same calls for all:

    .venv/bin/python benchmarks/calllog_benchmark.py --against ../main --calls 200000 \
        --ingest-calls 100000 --users 100000 --keys 1000

``--queries-against DIR --store FILE`` measures the queries only, of this copy and of the
package in DIR, each in its own process on its own copy of the stored calls in FILE (SQLite;
written by this generator with ``--calls``, e.g. 1,000,000 calls, 100,000 users, 1,000 keys):
after a warm-up run of every query, each query runs ``--repeat`` times in each process in
turn (this, DIR, this, ...), and the p50 / p95 of each and their ratios are printed. Stats
grouped by user, key or status also run "cold" (what each keeps of past days in memory dropped
for that answer: the first answer after a restart; the past days' ranks a store of schema v10
on wrote in the warm-up stay, as they do over a restart: ``dailyranks.py``), and those by user
and key "after the day turned" (``_TURN``: yesterday's answer made, then the first of today,
its range a day later), and those over 30 days on a new day (yesterday's ranks unwritten:
``_NEW_DAY``), also in a store opened again, at once and once its job has caught up
(``_REOPENED``, ``_CAUGHT_UP``). The store's job (writing past days' ranks) is waited for,
untimed, after each answer:

    .venv/bin/python benchmarks/calllog_benchmark.py --queries-against /tmp/base \
        --store /tmp/calls-1m.sqlite --calls 1000000 --repeat 10
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

# The copy of the package measured: this one, or the one ``--against`` names (its child runs
# this file with CALLLOG_BENCH_ROOT; only what every copy has is imported at the top).
sys.path.insert(
    0,
    os.environ.get("CALLLOG_BENCH_ROOT")
    or os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
)

from otel_llm import settings
from otel_llm.calllog.query import CallFilter, CallQuery, Comparison, StatsQuery
from otel_llm.calllog.record import NANO, CallRecord, call_id
from otel_llm.calllog.schema import DAILY
from otel_llm.calllog.sql import Statement
from otel_llm.calllog.stats import _top, daily_where
from otel_llm.calllog.store import SQLCallStore, open_store

try:
    from otel_llm.calllog.dailyrows import Deadline
except ImportError:  # a copy from before stats.py was split (--against, --queries-against)
    from otel_llm.calllog.stats import Deadline  # type: ignore[attr-defined,no-redef,unused-ignore]

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INGEST_TARGET = 20_000
STATS_TARGET_MS = 500.0
MODELS = {
    "gpt-4o": "openai",
    "gpt-4o-mini": "openai",
    "gpt-4.1": "openai",
    "o3-mini": "openai",
    "claude-sonnet-4-5": "anthropic",
    "claude-haiku-4-5": "anthropic",
    "gemini-2.5-pro": "gcp.gemini",
    "gemini-2.5-flash": "gcp.gemini",
}
SERVICES = ("checkout", "search", "support")
FEATURES = ("summary", "chat", "classify", "extract", None)
PROJECTS = ("alpha", "beta", "gamma")


def calls(
    count: int, *, days: int = 30, seed: int = 1, users: int = 500, keys: int = 20
) -> Iterator[CallRecord]:
    """``count`` calls evenly over the ``days`` before now, oldest first."""
    rng = random.Random(seed)  # noqa: S311 - load data, not cryptography
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    step = (end - start) / count
    models = list(MODELS)
    for index in range(count):
        model = models[rng.randrange(len(models))]
        created = start + step * index
        latency = rng.lognormvariate(6.5, 0.7)
        input_tokens = rng.randrange(50, 4000)
        output_tokens = rng.randrange(1, 800)
        cost_in = Decimal(input_tokens * 150) * NANO
        cost_out = Decimal(output_tokens * 600) * NANO
        failed = rng.random() < 0.03
        key = rng.randrange(keys)
        trace = rng.getrandbits(128) | 1
        span = rng.getrandbits(64) | 1
        yield CallRecord(
            id=call_id(trace, span),
            trace_id=f"{trace:032x}",
            span_id=f"{span:016x}",
            created_at=created,
            completed_at=created + timedelta(milliseconds=latency),
            latency_ms=latency,
            time_to_first_chunk_ms=latency * 0.2 if index % 3 == 0 else None,
            service=SERVICES[index % 3],
            provider=MODELS[model],
            model=model,
            response_model=model,
            operation="chat",
            streaming=index % 3 == 0,
            status="error" if failed else "success",
            status_code=429 if failed else 200,
            error_type="RateLimitError" if failed else None,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
            cache_read_tokens=input_tokens // 4 if index % 5 == 0 else None,
            cost=cost_in + cost_out,
            cost_input=cost_in,
            cost_output=cost_out,
            cost_source="local",
            price_data="genai-prices 0.0.30",
            feature=FEATURES[rng.randrange(len(FEATURES))],
            user=f"user-{rng.randrange(users)}",
            project=PROJECTS[key % len(PROJECTS)],
            api_key_id=f"key-{key}",
            request_id=request_id_of(trace),
            endpoint="/v1/chat/completions",
            method="POST",
            api_key_hint=f"sk-proj-...{key:04d}",
        )


def request_id_of(trace: int) -> str:
    """A provider response id, as random as the real ones (``chatcmpl-`` + 29 characters)."""
    return f"chatcmpl-{trace:032x}"[:38]


def load(
    store: SQLCallStore,
    count: int,
    batch: int,
    ingest_calls: int,
    *,
    users: int,
    keys: int,
    stop: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, float]:
    """Write ``count`` calls (``stop``: only the first that many of them); (calls/s over the
    first ``ingest_calls``, total write seconds)."""
    generated = calls(count, users=users, keys=keys)
    written = 0
    timed = 0.0
    ingest_seconds = 0.0
    last = count if stop is None else min(stop, count)
    while written < last:
        records = [next(generated) for _ in range(min(batch, last - written))]
        began = clock()
        stored = store.write(records)
        elapsed = clock() - began
        assert stored == len(records), "every call is new"
        timed += elapsed
        written += len(records)
        if written <= ingest_calls:
            ingest_seconds = timed
        if written % 100_000 < batch:
            print(f"    {written:>9,} calls stored, {written / timed:,.0f} calls/s", flush=True)
    ingested = min(ingest_calls, last)
    return ingested / ingest_seconds, timed


def timed(
    query: Callable[[], Any], repeat: int, settle: Callable[[], None] = lambda: None
) -> tuple[float, float]:
    """p50 and p95 wall milliseconds of ``repeat`` runs (after one warm-up), each once
    ``settle`` returned (the store's job done: ``_settle``)."""
    query()
    samples = []
    for _ in range(repeat):
        settle()
        began = time.perf_counter()
        query()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))]


def middle_call(count: int) -> CallRecord:
    """A call from the middle of the month of ``count`` calls (``queries``' to look up)."""
    return next(itertools.islice(calls(count), count // 2, None))


def queries(store: SQLCallStore, middle: CallRecord) -> dict[str, Callable[[], Any]]:
    """The queries measured; ``middle``: a call whose provider response id is looked up (no
    index)."""
    now = datetime.now(UTC)
    request_id = middle.request_id
    month = CallFilter(start=now - timedelta(days=30))
    week = CallFilter(start=now - timedelta(days=7))
    slow = Comparison("latency_ms", "gt", Decimal(2000))

    def per_model_per_day() -> None:
        for model in MODELS:
            store.stats(
                StatsQuery(filter=CallFilter(start=month.start, model=model), group_by="day")
            )

    return {
        "stats p50/p95 by model per day, 30 d (8 queries)": per_model_per_day,
        "stats by day, 30 d (+ model breakdown)": lambda: store.stats(
            StatsQuery(filter=month, group_by="day")
        ),
        "stats by model, 30 d": lambda: store.stats(StatsQuery(filter=month, group_by="model")),
        "stats of one API key by day, 30 d": lambda: store.stats(
            StatsQuery(filter=CallFilter(start=month.start, api_key_id="key-7"), group_by="day")
        ),
        "stats of one user by model, 30 d": lambda: store.stats(
            StatsQuery(filter=CallFilter(start=month.start, user="user-7"), group_by="model")
        ),
        "stats by API key, 30 d": lambda: store.stats(StatsQuery(filter=month, group_by="api_key")),
        "stats by user, 30 d": lambda: store.stats(StatsQuery(filter=month, group_by="user")),
        "stats by user, 7 d": lambda: store.stats(StatsQuery(filter=week, group_by="user")),
        "stats of errors by model, 30 d": lambda: store.stats(
            StatsQuery(filter=CallFilter(start=month.start, status="error"), group_by="model")
        ),
        "stats by hour, 1 d (reads records)": lambda: store.stats(
            StatsQuery(filter=CallFilter(start=now - timedelta(hours=1)), group_by="hour")
        ),
        "list 20 most expensive, 7 d": lambda: store.list(
            CallQuery(filter=week, sort="cost", limit=20)
        ),
        "list errors of one model, newest 10": lambda: store.list(
            CallQuery(filter=CallFilter(model="gpt-4o", status="error"))
        ),
        "count one project, 7 d": lambda: store.count(
            CallFilter(project="alpha", start=week.start)
        ),
        # SQLite's user and key indexes are (day, column, created_us) since v9: seeks per day
        "list 20 newest of one user, all days": lambda: store.list(
            CallQuery(filter=CallFilter(user="user-7"))
        ),
        "list 20 newest of one API key, 7 d": lambda: store.list(
            CallQuery(filter=replace(week, api_key_id="key-7"))
        ),
        "count one API key, all days": lambda: store.count(CallFilter(api_key_id="key-7")),
        # issue 12: what stats now add (by_model), and the richer list queries
        "  by_model alone, 30 d (part of every stats)": lambda: by_model(store, month),
        "list 20, model IN (3 models), 7 d": lambda: store.list(
            CallQuery(filter=replace(week, model=tuple(MODELS)[:3]), limit=20)
        ),
        "list 20, latency_ms > 2000 ($gt), 7 d": lambda: store.list(
            CallQuery(filter=replace(week, comparisons=(slow,)), limit=20)
        ),
        "list 20 by model asc, cost desc, 7 d": lambda: store.list(
            CallQuery(filter=week, sort="model", descending=False, then=(("cost", True),))
        ),
        "enhanced summary (cost, tokens), 7 d": lambda: store.summary(week),
        "find a request_id, its day": lambda: store.list(
            CallQuery(
                filter=CallFilter(
                    request_id=request_id,
                    start=middle.created_at - timedelta(hours=12),
                    end=middle.created_at + timedelta(hours=12),
                )
            )
        ),
        "find a request_id, all days": lambda: store.list(
            CallQuery(filter=CallFilter(request_id=request_id))
        ),
    }


def by_model(store: SQLCallStore, month: CallFilter) -> None:
    """The one statement by_model adds to a stats answer (``stats._top`` on the model)."""
    end = datetime.now(UTC) + timedelta(days=1)
    where = daily_where(month, month.start or end, end)
    _top(store._scan, DAILY, "model", where, 100, deadline=Deadline(None))


def collectors_store(url: str) -> SQLCallStore:
    """The store as the collector opens it (its writes hold Python's cycle collector off), or as
    a copy from before that option opens it (``--against``)."""
    try:
        return open_store(url, hold_cycle_collector=True)
    except TypeError:
        return open_store(url)


def run(name: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    print(f"\n== {name}: {url}", flush=True)
    store = collectors_store(url)
    try:
        began = time.perf_counter()
        rate, write_seconds = load(
            store, args.calls, args.batch, args.ingest_calls, users=args.users, keys=args.keys
        )
        total = time.perf_counter() - began
        print(
            f"  loaded {args.calls:,} calls in {total:.1f} s "
            f"({write_seconds:.1f} s in write, the rest building records)"
        )
        results = {
            "ingest": rate,
            "ingest_all": args.calls / write_seconds,
            "load_seconds": total,
            "queries": {},
            "tables": table_sizes(store),
        }
        for label, query in queries(store, middle_call(args.calls)).items():
            p50, p95 = timed(query, args.repeat, lambda: _settle(store))
            results["queries"][label] = (p50, p95)
        return results
    finally:
        store.close()


def table_sizes(store: SQLCallStore) -> dict[str, tuple[float, float]]:
    """Each daily aggregate table's (rows, bytes) per day with calls."""
    from otel_llm.calllog.catalogue import ROLLUPS  # not in every copy (``--against``)

    postgres = not hasattr(store, "path")
    sizes = {}
    for rollup in ROLLUPS:
        rows, days = store._read(
            Statement(f"SELECT COUNT(*), COUNT(DISTINCT day) FROM {rollup.table}", ())  # noqa: S608
        )[0]
        if postgres:
            size = store._read(
                Statement("SELECT pg_total_relation_size(CAST(? AS regclass))", (rollup.table,))
            )[0][0]
        else:
            # The table and its primary key's index (sqlite_autoindex_<table>_1).
            size = store._read(
                Statement(
                    "SELECT SUM(pgsize) FROM dbstat WHERE name IN (?, ?)",
                    (rollup.table, f"sqlite_autoindex_{rollup.table}_1"),
                )
            )[0][0]
        sizes[rollup.table] = (rows / max(days, 1), int(size or 0) / max(days, 1))
    return sizes


def report(all_results: dict[str, dict[str, Any]], calls_count: int, ingest_calls: int) -> None:
    print(f"\n== Results over {calls_count:,} stored calls")
    first = min(ingest_calls, calls_count)
    for name, results in all_results.items():
        # The target is the rate over the first ``--ingest-calls`` (issue 5's definition); the
        # rate over all the calls is printed beside it: it steps down as the b-trees deepen.
        target = "(no target)"
        if name == "sqlite":
            verdict = "ok" if results["ingest"] >= INGEST_TARGET else "MISSED"
            target = f"(target >= {INGEST_TARGET:,}: {verdict})"
        print(
            f"\n{name}: ingest {results['ingest']:,.0f} calls/s over the first {first:,} calls "
            f"{target}, {results['ingest_all']:,.0f} over all {calls_count:,}; "
            f"load {results['load_seconds']:.1f} s"
        )
        print(f"  {'query':<52} {'p50 ms':>9} {'p95 ms':>9}")
        for label, (p50, p95) in results["queries"].items():
            mark = ""
            if label.startswith(("stats p50/p95 by model per day", "stats of one", "stats by")):
                verdict = "ok" if p95 <= STATS_TARGET_MS else "OVER"
                mark = f"  target <= {STATS_TARGET_MS:.0f} ms: {verdict}"
            print(f"  {label:<52} {p50:>9.1f} {p95:>9.1f}{mark}")
        print(f"  {'daily aggregate table':<52} {'rows/day':>9} {'KB/day':>9}")
        for table, (rows, size) in results["tables"].items():
            print(f"  {table:<52} {rows:>9,.0f} {size / 1024:>9,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument(
        "--batch",
        type=int,
        default=settings.CALL_LOG_BATCH_SIZE.default,
        help="calls per write (default: the writer's)",
    )
    parser.add_argument("--ingest-calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--users", type=int, default=500, help="distinct users (issue 12: 100000)")
    parser.add_argument("--keys", type=int, default=20, help="distinct API keys (issue 12: 1000)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres", help="a postgresql:// URL (default: a private cluster)")
    parser.add_argument(
        "--against",
        metavar="DIR",
        action="append",
        help="SQLite ingest only: this copy vs the package in DIR (repeatable)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="--against's rounds (default 3)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="--against: time writes by wall time or by the process's CPU time (steadier on a "
        "busy machine; leaves out waiting for the disk)",
    )
    parser.add_argument(
        "--queries-against", metavar="DIR", help="queries only: this copy vs the package in DIR"
    )
    parser.add_argument("--store", help="--queries-against: a SQLite store of --calls calls")
    parser.add_argument("--ingest-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--query-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ingest_child:
        print(json.dumps({"ingest": ingest_only(args)}))
        return
    if args.query_child:
        query_child(args.query_child, args.calls)
        return
    if args.queries_against:
        queries_against(args)
        return
    if args.against:
        against(args)
        return
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="calllog-bench-") as directory:
        if args.backend in ("sqlite", "both"):
            results["sqlite"] = run("sqlite", os.path.join(directory, "calls.db"), args)
        if args.backend in ("postgres", "both"):
            if args.postgres:
                results["postgres"] = run("postgres", args.postgres, args)
            else:
                from tests.support.postgres import available, running_cluster

                if not available():
                    print("\nPostgreSQL binaries not found: PostgreSQL not measured")
                else:
                    with running_cluster(durable=True) as cluster:
                        url = cluster.create_database()
                        results["postgres"] = run("postgres", url, args)
    report(results, args.calls, args.ingest_calls)


_COLD = "cold: "
"""A query label so prefixed: run after dropping what stats keep of past days."""
_TURN = "turn: "
"""A query label so prefixed (stats grouped by user or key): its first answer after the day
turned. What stats keep is dropped, the store's clock set a day back and the query (over the
last N days of that clock) answered once; then the clock is set to now again and the same
query (its range a day later) timed."""
_NEW_DAY = "new day: "
"""A query label so prefixed (stats by user or key over 30 days): ``_COLD``, and the last
closed day's ranks deleted first (a store with them: ``dailyranks.py``; a write of nothing
otherwise, as the deletion also has the reader's page cache dropped): the first answer of a
day in a store that has had neither a write (``SQLCallStore.write_batch`` has the job write
yesterday's) nor an answer that day."""
_REOPENED = "new day, reopened: "
"""A query label so prefixed (``_NEW_DAY``'s queries): yesterday's ranks deleted, the store
closed and opened again, and the query answered at once (its job catching up on opening, if
it has one: ``SQLCallStore.catch_up_ranks``)."""
_CAUGHT_UP = "new day, caught up: "
"""``_REOPENED``, the query answered once the store's job is done."""
_TURNS = {
    "stats by API key, 30 d": ("api_key", 30),
    "stats by user, 30 d": ("user", 30),
    "stats by user, 7 d": ("user", 7),
}


def query_child(path: str, count: int) -> None:
    """Serve ``queries`` on the store at ``path``: a label read from stdin, its wall
    milliseconds written to stdout (``--queries-against``'s child). What the store's job does
    (past days' ranks) is waited for after the warm-up and after each answer, untimed."""
    store = open_store(path)
    middle = middle_call(count)
    table = queries(store, middle)
    for query in table.values():  # warm-up: the file's pages, and what stats keep
        query()
        _settle(store)
    print(json.dumps(list(table)), flush=True)
    for line in sys.stdin:
        label = line.rstrip("\n")
        kept = getattr(store, "_past_days", None)
        if label.startswith((_REOPENED, _CAUGHT_UP)):
            store, took = _reopened(store, path, label)
            table = queries(store, middle)
            print(json.dumps(took), flush=True)
            if kept is not None:  # the other queries' entries, as before
                store._past_days = kept
            continue
        if label.startswith(_TURN):
            print(json.dumps(_turn(store, label[len(_TURN) :])), flush=True)
            store._past_days = kept
            _settle(store)
            continue
        if label.startswith(_NEW_DAY):
            label = _COLD + label[len(_NEW_DAY) :]
            _unwrite_yesterday(store)
        if label.startswith(_COLD):
            label = label[len(_COLD) :]
            if kept is not None:  # this answer only: the others' entries stay
                store._past_days = type(kept)()
        began = time.perf_counter()
        table[label]()
        print(json.dumps((time.perf_counter() - began) * 1000), flush=True)
        if kept is not None:
            store._past_days = kept
        _settle(store)
    store.close()


def _settle(store: SQLCallStore) -> None:
    """Wait for the store's job (writing past days' ranks), if this copy has one: what it
    does is not the next answer's."""
    join = getattr(store, "join_background", None) or getattr(store, "_join_job", None)
    if join is not None:
        join()


def _reopened(store: SQLCallStore, path: str, label: str) -> tuple[SQLCallStore, float]:
    """``_REOPENED`` and ``_CAUGHT_UP``: the store opened again, and the wall milliseconds
    of the first answer of ``label``'s query."""
    caught_up = label.startswith(_CAUGHT_UP)
    group_by, days = _TURNS[label.removeprefix(_CAUGHT_UP).removeprefix(_REOPENED)]
    _unwrite_yesterday(store)
    store.close()
    store = open_store(path)
    if caught_up:
        _settle(store)
    start = datetime.now(UTC) - timedelta(days=days)
    began = time.perf_counter()
    store.stats(StatsQuery(filter=CallFilter(start=start), group_by=group_by))  # type: ignore[arg-type]
    took = (time.perf_counter() - began) * 1000
    _settle(store)
    return store, took


def _unwrite_yesterday(store: SQLCallStore) -> None:
    """``_NEW_DAY``: yesterday's ranks deleted (by the store's writer), if it keeps any."""
    try:
        from otel_llm.calllog.schema import DAILY_RANKS
    except ImportError:  # a copy from before them
        store._execute(Statement("UPDATE llm_calllog_schema SET version = version", ()))
        return
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    store._execute(Statement(f"DELETE FROM {DAILY_RANKS} WHERE day = ?", (yesterday,)))  # noqa: S608


def _turn(store: SQLCallStore, label: str) -> float:
    """``_TURN``: the wall milliseconds of the first answer of a day (``label``'s query)."""
    group_by, days = _TURNS[label]
    clock = store._clock
    now = clock()
    kept = getattr(store, "_past_days", None)
    if kept is not None:
        store._past_days = type(kept)()

    def query() -> None:
        start = store._clock() - timedelta(days=days)
        store.stats(StatsQuery(filter=CallFilter(start=start), group_by=group_by))  # type: ignore[arg-type]

    try:
        store._clock = lambda: now - timedelta(days=1)
        query()  # yesterday's answer
        store._clock = lambda: now
        began = time.perf_counter()
        query()
        return (time.perf_counter() - began) * 1000
    finally:
        store._clock = clock


def queries_against(args: argparse.Namespace) -> None:
    """This copy's and ``--queries-against``'s query latencies, alternating, one process and
    one copy of ``--store`` each."""
    copies = {"this": HERE, "other": os.path.abspath(args.queries_against)}
    with tempfile.TemporaryDirectory(prefix="calllog-queries-") as directory:
        children = {}
        for name, root in copies.items():
            path = os.path.join(directory, f"{name}.sqlite")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(args.store + suffix):
                    shutil.copyfile(args.store + suffix, path + suffix)
            children[name] = subprocess.Popen(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    f"--query-child={path}",
                    f"--calls={args.calls}",
                ],
                env={**os.environ, "CALLLOG_BENCH_ROOT": root},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        try:
            labels, _ = (json.loads(child.stdout.readline()) for child in children.values())
            grouped = [label for label in labels if label.startswith("stats by")]
            grouped = [label for label in grouped if any(g in label for g in _APART)]
            runs = [(name, label) for label in labels for name in children]
            runs += [(name, _COLD + label) for label in grouped for name in children]
            runs += [(name, _TURN + label) for label in _TURNS for name in children]
            monthly = [label for label in _TURNS if label.endswith("30 d")]
            runs += [(name, _NEW_DAY + label) for label in monthly for name in children]
            # Stores opened again last, in rounds of their own: the others' answers keep
            # their connections' caches.
            reopened = [
                (name, prefix + label)
                for prefix in (_REOPENED, _CAUGHT_UP)
                for label in monthly
                for name in children
            ]
            samples: dict[tuple[str, str], list[float]] = {run: [] for run in runs + reopened}
            for these in (runs, reopened):
                for round_ in range(args.repeat):
                    for name, label in these if round_ % 2 == 0 else these[::-1]:
                        child = children[name]
                        child.stdin.write(label + "\n")
                        child.stdin.flush()
                        samples[(name, label)].append(json.loads(child.stdout.readline()))
        finally:
            for child in children.values():
                child.stdin.close()
                child.wait()
    _print_queries(args, copies, labels, samples)


def _print_queries(
    args: argparse.Namespace,
    copies: dict[str, str],
    labels: list[str],
    samples: dict[tuple[str, str], list[float]],
) -> None:
    """``queries_against``'s table: each query's p50 / p95, this copy's and the other's."""
    print(
        f"\nQueries over {args.store} ({args.calls:,} calls), {args.repeat} runs each, "
        f"alternating; this = {HERE}, other = {copies['other']}"
    )
    print(f"  {'query':<52} {'this p50/p95 ms':>17} {'other p50/p95 ms':>17} {'p50 ratio':>9}")
    for label in labels:
        mine, theirs = (_p50_p95(samples[(name, label)]) for name in ("this", "other"))
        print(
            f"  {label:<52} {mine[0]:>8.1f}/{mine[1]:>8.1f} {theirs[0]:>8.1f}/{theirs[1]:>8.1f}"
            f" {mine[0] / theirs[0]:>8.2f}x"
        )
        for prefix, what in (
            (_COLD, "cold: nothing kept"),
            (_NEW_DAY, "cold, yesterday's ranks unwritten"),
            (_REOPENED, "new day, right after open"),
            (_CAUGHT_UP, "new day, once the open-time catch-up finished"),
            (_TURN, "first after the day turned"),
        ):
            if ("this", prefix + label) in samples:
                mine, theirs = (_p50_p95(samples[(name, prefix + label)]) for name in copies)
                print(
                    f"  {f'  ({what})':<52} {mine[0]:>8.1f}/{mine[1]:>8.1f}"
                    f" {theirs[0]:>8.1f}/{theirs[1]:>8.1f} {mine[0] / theirs[0]:>8.2f}x"
                )
    print("  per run, ms (this | other):")
    for run in sorted(samples):
        plain = run[1]
        for prefix in (_COLD, _TURN, _NEW_DAY, _REOPENED, _CAUGHT_UP):
            plain = plain.removeprefix(prefix)
        if plain in _TURNS and run[0] == "this":
            theirs = samples.get(("other", run[1]), [])
            mine = " ".join(f"{ms:.0f}" for ms in samples[run])
            print(f"    {run[1]:<48} {mine} | {' '.join(f'{ms:.0f}' for ms in theirs)}")


_APART = ("API key", "user", "status")
"""The stats groupings read from a table of their own (what stats keep of past days)."""


def _p50_p95(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def ingest_only(args: argparse.Namespace) -> float:
    """SQLite calls/s of the first ``--ingest-calls`` calls, in a fresh store."""
    with tempfile.TemporaryDirectory(prefix="calllog-ingest-") as directory:
        store = collectors_store(os.path.join(directory, "calls.db"))
        try:
            rate, _ = load(
                store,
                args.calls,
                args.batch,
                args.ingest_calls,
                users=args.users,
                keys=args.keys,
                stop=args.ingest_calls,
                clock=time.process_time if args.clock == "cpu" else time.perf_counter,
            )
        finally:
            store.close()
    return rate


def against(args: argparse.Namespace) -> None:
    """This copy's and each ``--against`` copy's SQLite ingest in rounds (each round in a
    rotated order), one process each; the medians and each copy / this."""
    copies = {"this": HERE}
    copies.update({os.path.abspath(path): os.path.abspath(path) for path in args.against})
    flags = [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in ("calls", "batch")]
    flags += [f"--ingest-calls={args.ingest_calls}", f"--users={args.users}", f"--keys={args.keys}"]
    flags.append(f"--clock={args.clock}")
    rates: dict[str, list[float]] = {name: [] for name in copies}
    names = list(copies)
    for round_ in range(args.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            child = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--ingest-child", *flags],
                env={**os.environ, "CALLLOG_BENCH_ROOT": copies[name]},
                capture_output=True,
                text=True,
                check=True,
            )
            rate = json.loads(child.stdout.strip().splitlines()[-1])["ingest"]
            rates[name].append(rate)
            print(f"  round {round_ + 1} {name:<40} {rate:>9,.0f} calls/s", flush=True)
    print(
        f"\nSQLite ingest, first {args.ingest_calls:,} of {args.calls:,} calls, {args.users:,} "
        f"users, {args.keys:,} keys, batches of {args.batch:,}, {args.clock} clock; median of "
        f"{args.rounds} rounds:"
    )
    mine = statistics.median(rates["this"])
    for name in names:
        median = statistics.median(rates[name])
        label = f"this ({HERE})" if name == "this" else name
        print(f"  {label:<48} {median:>9,.0f} calls/s  {median / mine:.2f}x this")
        if name != "this":  # each round's pair: steadier than the medians on a busy machine
            paired = [
                theirs / ours for theirs, ours in zip(rates[name], rates["this"], strict=True)
            ]
            print(f"  {'':<48} rounds: {', '.join(f'{ratio:.2f}x' for ratio in paired)}")


if __name__ == "__main__":
    main()
