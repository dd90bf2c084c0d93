"""Instructions of one call-log write into a large SQLite store: counted, not timed.

    .venv/bin/python benchmarks/calllog_instructions.py                     # this copy
    .venv/bin/python benchmarks/calllog_instructions.py --against /other/checkout

``calllog_benchmark.py`` times the ingest; on a shared machine one copy's million-call ingest
moves by +-10 % from run to run (15,330 to 18,654 calls/s on 2026-12-08), more than most
changes to the write are worth. This counts the machine instructions of the write instead, which
other processes do not change. For each copy (this one and each ``--against``): a store of the
first ``--at`` of ``calllog_benchmark.py``'s ``--calls`` calls (100,000 users, 1,000 keys by
default, as issue 12's target), written in batches by that copy in a process of its own at full
speed but its last ``--batch``; then, under Valgrind's callgrind, that batch written to warm
the process (its statements, the page cache, the caps' values of the day; not counted) and, once
the store's job is idle, the next ``--batch`` calls in one ``store.write``, which callgrind
counts only inside (``--toggle-collect`` on the ``itertools.starmap`` that calls it), with
address randomisation off and a fixed hash seed: two runs of one copy agreed within 0.3 %
(349,343 and 350,384 instructions a call; another copy 340,176 and 340,352).

What it leaves out: the kernel's work (the WAL's writes, checkpoints; ``perf stat`` would count
them, but this VM exposes no hardware counters) and the cache misses an instruction count does not
see -- an instruction of SQLite's b-tree code takes more time than one of the interpreter's
average. Compare copies by their counts; time only says what the machine made of them. Needs
Valgrind (Debian ``valgrind``); not part of the test command. A run takes ~4 minutes a copy at
the defaults (two batches under callgrind, ~50x slower than without).
"""

from __future__ import annotations

import argparse
import itertools
import os
import pickle
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def _store_and_calls(path: str, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    # Imported here: calllog_benchmark puts the copy CALLLOG_BENCH_ROOT names first on the path.
    sys.path.insert(0, str(HERE))
    import calllog_benchmark

    from otel_llm.calllog.store import open_store

    generated = calllog_benchmark.calls(args.calls, users=args.users, keys=args.keys)
    return open_store(path), generated, calllog_benchmark._settle


def prefill(path: str, args: argparse.Namespace) -> None:
    """The store of the first ``--at`` calls but the last batch, at full speed; that batch and
    the next kept for ``measured`` (made under callgrind, the calls before would take minutes)."""
    store, generated, _ = _store_and_calls(path, args)
    written, end = 0, args.at - args.batch
    while written < end:
        size = min(args.batch, end - written)
        written += store.write(list(itertools.islice(generated, size)))
    store.close()
    with open(path + ".next", "wb") as kept:
        pickle.dump(list(itertools.islice(generated, 2 * args.batch)), kept)


def measured(path: str, args: argparse.Namespace) -> None:
    """The last batch before ``--at`` (the warm-up), then the next ``--batch`` calls written
    inside ``starmap`` (what callgrind counts)."""
    store, _, settle = _store_and_calls(path, args)
    with open(path + ".next", "rb") as kept:
        calls = pickle.load(kept)  # noqa: S301 - the prefill's own file
    warm_up, batch = calls[: args.batch], calls[args.batch :]
    store.write(warm_up)
    settle(store)  # the job's work (past days' ranks) is not the write's
    for stored in itertools.starmap(store.write, [(batch,)]):
        assert stored == len(batch), "every call is new"
    store.close()


def _child(mode: str, root: str, path: str, args: argparse.Namespace, *prefix: str) -> str:
    flags = [
        f"--{name}={getattr(args, name)}" for name in ("calls", "at", "batch", "users", "keys")
    ]
    command = [*prefix, sys.executable, __file__, f"--{mode}={path}", *flags]
    environment = {**os.environ, "CALLLOG_BENCH_ROOT": root, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if done.returncode != 0:
        sys.exit(f"{mode} of {root} failed:\n{done.stderr[-3000:]}")
    return done.stderr


def count(root: str, args: argparse.Namespace) -> float:
    """Instructions per call of one copy's write of ``--batch`` calls after ``--at``."""
    # setarch -R: no address randomisation, so that a run repeats.
    setarch = ["setarch", platform.machine(), "-R"] if shutil.which("setarch") else []
    with tempfile.TemporaryDirectory(prefix="calllog-instructions-") as directory:
        path = os.path.join(directory, "calls.sqlite")
        _child("prefill", root, path, args)
        stderr = _child(
            "measure",
            root,
            path,
            args,
            *setarch,
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={directory}/out",
            "--toggle-collect=starmap_next",
        )
    found = _COLLECTED.search(stderr)
    if found is None:
        sys.exit(f"no count in callgrind's output for {root}:\n{stderr[-2000:]}")
    return int(found.group(1)) / int(args.batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000, help="the load's size (its days)")
    parser.add_argument("--at", type=int, default=300_000, help="calls in the store before")
    parser.add_argument("--batch", type=int, default=20_000, help="calls of the write counted")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--against", metavar="DIR", action="append", default=[])
    parser.add_argument("--prefill", help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prefill:
        prefill(args.prefill, args)
        return 0
    if args.measure:
        measured(args.measure, args)
        return 0
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    copies = [str(HERE.parent), *(os.path.abspath(path) for path in args.against)]
    print(
        f"instructions a call of one write of {args.batch:,} calls into a store of {args.at:,} "
        f"(of {args.calls:,} over 30 days; {args.users:,} users, {args.keys:,} keys)"
    )
    counts = {root: count(root, args) for root in copies}
    mine = counts[copies[0]]
    for root, value in counts.items():
        label = "this" if root == copies[0] else root
        print(f"  {label:<40}{value:>12,.0f}{value / mine:>8.3f}x this")
    return 0


if __name__ == "__main__":
    sys.exit(main())
