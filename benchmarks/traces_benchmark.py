"""Traces and conversations in the call log (issue 13): the cost of their queries next to the
stats everyone already runs, in one run, on one store.

    .venv/bin/python benchmarks/traces_benchmark.py                   # 200,000 calls, SQLite
    .venv/bin/python benchmarks/traces_benchmark.py --calls 50000
    .venv/bin/python benchmarks/traces_benchmark.py --backend both    # and PostgreSQL

The calls of ``calllog_benchmark.calls`` (30 days, 8 models, 3 services), grouped into traces
of 8 calls, each trace with a root and an agent span kept, 5 agents, a conversation every 3
traces (so 1 conversation per 24 calls: 8,333 of them in 200,000 calls). Each query runs
``--repeat`` times; p50 / p95 wall milliseconds are printed side by side with stats by model
(the daily aggregates) and by hour (call records), which the same store answers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.calllog_benchmark import calls, timed
from otel_llm.calllog import tracespans
from otel_llm.calllog.query import CallFilter, StatsQuery
from otel_llm.calllog.record import CallRecord, micros_of
from otel_llm.calllog.store import SQLCallStore, open_store
from otel_llm.calllog.traces import TraceQuery

PER_TRACE = 8
AGENTS = ("planner", "researcher", "writer", "critic", "router")


def traced(count: int) -> Iterator[tuple[CallRecord, tracespans.TraceSpan | None]]:
    """The calls, in traces; with the trace's first call, its root (and one agent) span."""
    trace_id = ""
    root = ""
    for index, record in enumerate(calls(count)):
        number = index // PER_TRACE
        first = index % PER_TRACE == 0
        if first:
            trace_id = f"{number + 1:032x}"
            root = f"{2 * number + 1:016x}"
        agent = AGENTS[number % len(AGENTS)]
        span = f"{index + 1:016x}".replace("0", "c", 1)
        call = replace(
            record,
            id=f"{trace_id}-{span}",
            trace_id=trace_id,
            span_id=span,
            agent_name=agent,
            conversation_id=f"conv-{number // 3}",
            parent_span_id=root,
        )
        kept = None
        if first:
            kept = tracespans.TraceSpan(
                trace_id,
                root,
                None,
                "POST /run",
                "root",
                "web",
                None,
                micros_of(record.created_at),
                None,
            )
        yield call, kept


def load(store: SQLCallStore, count: int) -> None:
    records: list[CallRecord] = []
    spans: list[tracespans.TraceSpan] = []
    for record, span in traced(count):
        records.append(record)
        if span is not None:
            spans.append(span)
        if len(records) >= 5000:
            store.write(records)
            store.write_trace_spans(spans)
            records, spans = [], []
    store.write(records)
    store.write_trace_spans(spans)


def queries(store: SQLCallStore, count: int) -> dict[str, Callable[[], Any]]:
    now = datetime.now(UTC)
    week = CallFilter(start=now - timedelta(days=7))
    month = CallFilter(start=now - timedelta(days=30))
    middle = f"{count // PER_TRACE // 2:032x}"
    return {
        "stats by model, 30 d (daily aggregates)": lambda: store.stats(
            StatsQuery(filter=month, group_by="model")
        ),
        "stats by hour, 2 d (call records)": lambda: store.stats(
            StatsQuery(filter=CallFilter(start=now - timedelta(days=1)), group_by="hour")
        ),
        "stats by agent, 30 d": lambda: store.stats(StatsQuery(filter=month, group_by="agent")),
        "stats by conversation, 30 d": lambda: store.stats(
            StatsQuery(filter=month, group_by="conversation")
        ),
        "stats by conversation, 7 d": lambda: store.stats(
            StatsQuery(filter=week, group_by="conversation")
        ),
        "traces: 20 most expensive, 7 d": lambda: store.traces(
            TraceQuery(filter=week, sort="cost", limit=20)
        ),
        "traces: 20 newest, 30 d": lambda: store.traces(TraceQuery(filter=month, limit=20)),
        "traces: agent=critic, 20 by cost, 7 d": lambda: store.traces(
            TraceQuery(filter=replace(week, agent_name="critic"), sort="cost", limit=20)
        ),
        "one trace's tree": lambda: store.trace(middle),
        "one conversation's totals": lambda: store.conversation(f"conv-{count // 48}"),
    }


def measure(url: str, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    store = open_store(url)
    try:
        load(store, args.calls)
        # The look-ups find what they look for (a miss would time nothing).
        assert store.trace(f"{args.calls // PER_TRACE // 2:032x}") is not None
        assert store.conversation(f"conv-{args.calls // 48}") is not None
        return {
            label: timed(query, args.repeat) for label, query in queries(store, args.calls).items()
        }
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="an empty PostgreSQL database (default: a private cluster)",
    )
    args = parser.parse_args()
    results: dict[str, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as directory:
        if args.backend in ("sqlite", "both"):
            results["sqlite"] = measure(os.path.join(directory, "calls.db"), args)
        if args.backend in ("postgres", "both"):
            if args.postgres:
                results["postgres"] = measure(args.postgres, args)
            else:
                from tests.support.postgres import running_cluster

                with running_cluster(durable=True) as cluster:
                    results["postgres"] = measure(cluster.create_database(), args)
    names = list(results)
    print(f"{args.calls:,} calls in {args.calls // PER_TRACE:,} traces; p50 / p95 ms")
    print(f"{'query':45}" + "".join(f"{name:>22}" for name in names))
    for label in results[names[0]]:
        cells = "".join(
            f"{results[n][label][0]:>11.1f} /{results[n][label][1]:>8.1f}" for n in names
        )
        print(f"{label:45}{cells}")


if __name__ == "__main__":
    main()
