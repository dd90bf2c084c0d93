"""What a replica's budget resync costs (issue 16): its reads of the store, against the number
of calls of the day (PostgreSQL, or SQLite).

Every ``policy_sync_interval`` seconds each collector replica re-reads its budgets' spend from
the call log's store (``PolicyEngine.resync``): per distinct window start, one statement over
the calls of the last 10 minutes (``SETTLED_AFTER_NS``), summed by the scope fields its
budgets name; the older part of each window from a cache read again once a minute
(``PAST_REFRESH_NS``). This loads ``--calls`` calls spread over today so far (midnight UTC to
now; ``calllog_benchmark.calls``: 3 services, 8 models, 3 projects, ``--users`` users), then
times, ``--repeat`` times each (p50 / p95 wall ms):

* ``resync (every interval)``: an engine with 1,000 policies (960 per project with a day
  budget and a rolling 24 h one, 30 per model glob, 10 over every call with a month budget),
  the older parts cached, as between two refreshes;
* ``resync, cache refreshed``: the same, each older part read again (once a minute);
* ``full day, by project``: the statement a day budget's refresh runs (budgets naming only
  the project: a few rows);
* ``full day, by every field``: the same had a budget named the user and the API key too (a
  row per distinct value set: the worst case).

    .venv/bin/python benchmarks/policy_resync.py                       # 100,000 calls, PostgreSQL
    .venv/bin/python benchmarks/policy_resync.py --calls 300000 --backend sqlite
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.calllog_benchmark import calls, timed  # noqa: E402
from benchmarks.policy_evaluation import policy_file  # noqa: E402
from otel_llm.calllog.policyspend import StoreSpendHistory  # noqa: E402
from otel_llm.calllog.store import SQLCallStore, open_store  # noqa: E402
from otel_llm.policies import PolicyEngine, load_policies  # noqa: E402
from otel_llm.policies.windows import DAY_NS  # noqa: E402


def load_today(store: SQLCallStore, count: int, users: int) -> None:
    """``count`` calls spread over today so far (midnight UTC to now), in time order."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = max(now - midnight, timedelta(minutes=10))
    since = now - timedelta(days=1)  # calls() spreads them over the day before now
    batch = []
    for record in calls(count, days=1, users=users):
        moved = now - today + (record.created_at - since) * (today / timedelta(days=1))
        batch.append(replace(record, created_at=moved, completed_at=moved))
        if len(batch) == 5000:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)


def measure(url: str, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    store = open_store(url)
    try:
        began = time.perf_counter()
        load_today(store, args.calls, args.users)
        print(f"  loaded {args.calls:,} calls in {time.perf_counter() - began:.1f} s", flush=True)
        history = StoreSpendHistory(store)
        now = time.time_ns()
        today = now - now % DAY_NS
        with tempfile.TemporaryDirectory() as directory:
            engine = PolicyEngine(load_policies(str(policy_file(Path(directory)))))
        engine.follow_store()
        engine.resync(history)  # the older parts read once (cached, as in the service)

        def refreshed() -> None:
            engine._past_stale = True  # what PAST_REFRESH_NS (or a late call stored) does
            engine.resync(history)

        return {
            "resync (every interval)": timed(lambda: engine.resync(history), args.repeat),
            "resync, cache refreshed": timed(refreshed, args.repeat),
            "full day, by project": timed(
                lambda: list(history.spend(today, now, False, ("project",))), args.repeat
            ),
            "full day, by every field": timed(
                lambda: list(history.spend(today, now, False)), args.repeat
            ),
        }
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            results = measure(str(Path(directory) / "calls.db"), args)
    else:
        from tests.support.postgres import running_cluster

        with running_cluster(durable=True) as cluster:
            results = measure(cluster.create_database(), args)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{args.calls:,} calls today, {args.backend}, {args.repeat} runs: p50 / p95 ms")
    for label, (p50, p95) in results.items():
        print(f"  {label:<28} {p50:>9.1f} {p95:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
