"""The query API's slow reads with and without ``call_log_query_timeout``, in one run, on one
store: how long each answers, and how long another key's count asked meanwhile waits.

    cp /tmp/shared/calls-1m.sqlite /tmp/me/   # never open the shared store itself
    .venv/bin/python benchmarks/query_deadline.py /tmp/me/calls-1m.sqlite
    .venv/bin/python benchmarks/query_deadline.py STORE --timeout 5 --reads "/api/v1/traces"

Each read runs twice through the real app: unbounded (a budget of an hour) and within the
budget; 0.5 s into each, another key asks ``/api/v1/calls/count?model=gpt-4o&days=1`` (an
indexed count of milliseconds alone). Printed side by side: status and seconds of the read,
seconds the count took, and their ratios. First, what the budget costs a read that is fast
anyway (each statement runs through ``_scan``: on PostgreSQL a transaction, a
``statement_timeout`` and a server-side cursor): the median of ``--repeat`` indexed reads of the
store itself, without and with the budget (``--fast-only``: just those).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from otel_llm.calllog.app import CallLogApp
from otel_llm.calllog.auth import ApiKey, KeyRing
from otel_llm.calllog.query import CallFilter, CallQuery
from otel_llm.calllog.ratelimit import RateLimits
from otel_llm.calllog.store import SQLCallStore, open_store

READS = (
    "/api/v1/calls?sort=cost&offset=10000",
    "/api/v1/traces",
    "/api/v1/traces?min_cost=0",
)
COUNT = "/api/v1/calls/count?model=gpt-4o&days=1"
KEYS = KeyRing([ApiKey.plain("admin", "admin-key"), ApiKey.plain("other", "other-key")])


def get(app: CallLogApp, target: str, key: str) -> tuple[int, float]:
    started = time.monotonic()
    response = app.handle("GET", target, {"Authorization": f"Bearer {key}"}.get, b"")
    return response.status, time.monotonic() - started


def with_count(app: CallLogApp, target: str) -> tuple[int, float, float]:
    """The read's status and seconds, and the seconds of a count asked 0.5 s into it."""
    counted: list[tuple[int, float]] = []

    def count() -> None:
        time.sleep(0.5)
        counted.append(get(app, COUNT, "other-key"))

    thread = threading.Thread(target=count)
    thread.start()
    status, seconds = get(app, target, "admin-key")
    thread.join()
    assert counted[0][0] == 200, counted
    return status, seconds, counted[0][1]


def fast_reads(store: SQLCallStore, repeat: int) -> None:
    """Median ms of indexed reads without and with a budget, side by side."""
    newest = store.list(CallQuery(limit=1, select=("id", "trace_id", "model"))).calls[0]
    call_id, trace_id, model = newest["id"], newest["trace_id"], newest["model"]
    reads = {
        "get one call": lambda timeout: store.get(call_id, timeout=timeout),
        "first page (50 newest)": lambda timeout: store.list(CallQuery(), timeout=timeout),
        "count by model": lambda timeout: store.count(CallFilter(model=model), timeout=timeout),
        "one trace": lambda timeout: store.trace(trace_id, timeout=timeout),
    }
    print(f"{'indexed read':42} {'no budget':>10} {'budget':>10} {'ratio':>7}")
    for name, read in reads.items():
        medians = []
        for timeout in (None, 10.0):
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                read(timeout)
                times.append(time.perf_counter() - started)
            medians.append(statistics.median(times) * 1000)
        print(f"{name:42} {medians[0]:8.2f}ms {medians[1]:8.2f}ms {medians[1] / medians[0]:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="a COPY of a call store (SQLite path or PostgreSQL URL)")
    parser.add_argument("--timeout", type=float, default=10.0, help="the budget (default 10 s)")
    parser.add_argument("--reads", default=",".join(READS), help="comma-separated targets")
    parser.add_argument("--repeat", type=int, default=200, help="runs of each indexed read")
    parser.add_argument("--fast-only", action="store_true", help="only the indexed reads")
    args = parser.parse_args()
    store = open_store(args.store)
    try:
        apps = {
            "unbounded": CallLogApp(
                store, keys=KEYS, limits=RateLimits(0, 0, 0), query_timeout=3600
            ),
            "budget": CallLogApp(
                store, keys=KEYS, limits=RateLimits(0, 0, 0), query_timeout=args.timeout
            ),
        }
        print(f"store {args.store}: {store.count(CallFilter()):,} calls; budget {args.timeout:g} s")
        fast_reads(store, args.repeat)
        if args.fast_only:
            return
        print(f"{'read':42} {'unbounded':>20} {'budget':>20} {'read':>7} {'count':>7}")
        for target in args.reads.split(","):
            runs = {name: with_count(app, target) for name, app in apps.items()}
            (s0, r0, c0), (s1, r1, c1) = runs["unbounded"], runs["budget"]
            print(
                f"{target:42} {s0} {r0:6.2f}s cnt {c0:5.2f}s  {s1} {r1:6.2f}s cnt {c1:5.2f}s"
                f" {r1 / r0:6.2f}x {c1 / c0:6.2f}x"
            )
    finally:
        store.close()


if __name__ == "__main__":
    main()
