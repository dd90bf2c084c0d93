"""A call store idle when the UTC day turns: the day's first rankings, with and without the
retention job's ask at the turn, side by side in one process.

    .venv/bin/python benchmarks/calllog_day_turn.py --store /tmp/calls-1m.sqlite

``--store``: a SQLite store of ``calllog_benchmark.py``'s calls (written here first if the
file is absent: ``--calls`` calls, 100,000 users, 1,000 keys). Its clock is set to the last
second of today, with today's ranks deleted and nothing written since (a quiet night); then
the day turns. Without the job (``off``) the day's first ranking by key or user over 30 days,
with nothing kept in memory, finds the closed day unranked and ranks from the daily rows; with
it (``on``, a ``RetentionJob`` on the same clock) the job has the store's job rank the closed day
first (waited for, untimed) -- what it does 5 s after each midnight (``DAY_TURN_DELAY``, set to
0 here). After a warm-up of each, the variants alternate, ``--repeat`` times each; p50 and each
answer's wall ms printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from calllog_benchmark import load

from otel_llm.calllog import retention
from otel_llm.calllog.pastdays import PastDays
from otel_llm.calllog.query import CallFilter, StatsQuery
from otel_llm.calllog.retention import RetentionJob
from otel_llm.calllog.schema import DAILY_RANKS
from otel_llm.calllog.sql import Statement
from otel_llm.calllog.store import SQLCallStore, open_store
from tests.support.clock import SettableClock, wait_until


def first_ranking(
    store: SQLCallStore, clock: SettableClock, today: date, group_by: str, *, job: bool
) -> float:
    """Wall ms of the first ranking of ``group_by`` over 30 days after the day turned."""
    last_second = datetime.combine(today, datetime.min.time(), UTC) + timedelta(days=1, seconds=-1)
    unrank = Statement(f"DELETE FROM {DAILY_RANKS} WHERE day = ?", (today.isoformat(),))  # noqa: S608
    ranked = Statement(
        f"SELECT 1 FROM {DAILY_RANKS} WHERE day = ? LIMIT 1",  # noqa: S608
        (today.isoformat(),),
    )
    store._execute(unrank)
    store.join_background(300)
    clock.now = last_second
    store._ranks_asked = today  # the store asked today already (it opened today)
    started = None
    if job:
        started = RetentionJob(store, interval=10**9, clock=clock).start()
        wait_until(lambda: started.runs == 1, timeout=300)  # its first round: asked nothing
    clock.now = last_second + timedelta(seconds=2)
    if started is not None:
        wait_until(lambda: store._read(ranked), timeout=300)
        store.join_background(300)
        started.stop()
    store._past_days = PastDays()  # nothing kept: the day's first answer after a quiet night
    began = time.perf_counter()
    store.stats(
        StatsQuery(filter=CallFilter(start=clock() - timedelta(days=30)), group_by=group_by)  # type: ignore[arg-type]
    )
    took = (time.perf_counter() - began) * 1000
    store.join_background(300)  # what the answer asked the store's job to write, untimed
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True, help="a SQLite store (written if absent)")
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not os.path.exists(args.store):
        writing = open_store(args.store, hold_cycle_collector=True)
        try:
            load(writing, args.calls, 20_000, args.calls, users=100_000, keys=1_000)
        finally:
            writing.close()
    today = datetime.now(UTC).date()
    clock = SettableClock(datetime.now(UTC))
    retention.DAY_TURN_DELAY = 0.0
    store = open_store(args.store, clock=clock)
    try:
        store.join_background(300)
        for group_by in ("api_key", "user"):  # warm-up, untimed: the file's pages in memory
            first_ranking(store, clock, today, group_by, job=True)
        took: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.repeat):
            for variant in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                for group_by in ("api_key", "user"):
                    ms = first_ranking(store, clock, today, group_by, job=variant == "on")
                    took.setdefault((group_by, variant), []).append(ms)
    finally:
        store.close()
    print(f"first ranking over 30 days after an idle day turn, {args.repeat} each, wall ms")
    print(f"  {'':<10}{'job off p50':>14}{'job on p50':>14}{'ratio':>8}")
    for group_by in ("api_key", "user"):
        off = statistics.median(took[(group_by, "off")])
        on = statistics.median(took[(group_by, "on")])
        print(f"  {group_by:<10}{off:>14.0f}{on:>14.0f}{on / off:>8.2f}")
        for variant in ("off", "on"):
            each = ", ".join(f"{ms:.0f}" for ms in took[(group_by, variant)])
            print(f"    {variant:<4} {each}")


if __name__ == "__main__":
    main()
