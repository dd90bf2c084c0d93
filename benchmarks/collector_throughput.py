"""Sustained OTLP throughput: the otel-llm collector service side by side with Rotel.

Both collectors receive the same load -- pre-serialized ``ExportTraceServiceRequest`` batches of
512 spans, a share of them GenAI spans (``--genai-share``: 10 % unless told), sent over gRPC by
a load generator process with a few concurrent streams -- and forward to the same counting OTLP
gRPC sink (its own process). Rounds alternate between them (A B, B A, ...) so drift on a shared
machine spreads over both. The figures are spans per second *arriving at the sink* while the
load runs (end to end, after a warm-up), the collector's CPU seconds per 100k of them, and the
GenAI spans it passed per CPU second ("per core": priced ones, for otel-llm), with the ratios
otel-llm / Rotel. Goals (issue 16), on 10 % GenAI load: at least 0.6x Rotel's spans/s and at
most 2.5x its CPU per span.

    .venv/bin/python benchmarks/collector_throughput.py --genai-share 1.0,0.1  # both loads
    .venv/bin/python benchmarks/collector_throughput.py                 # both, 3 rounds
    .venv/bin/python benchmarks/collector_throughput.py --only rotel    # Rotel alone
    .venv/bin/python benchmarks/collector_throughput.py --json
    .venv/bin/python benchmarks/collector_throughput.py --only otel-llm --against ../base

``--against DIR`` also runs the service of another copy of the package (``PYTHONPATH=DIR``, e.g.
the commit before a change) in the same alternating rounds, and prints otel-llm / against: a
before/after comparison from one run.

The otel-llm service runs as ``python -m otel_llm collector --grpc-endpoint ... --upstream
SINK --queue-dir TMP`` in its own process; when that command is not available (yet), the run
says so and measures Rotel only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support.rotel (the Rotel subprocess helper)

from otlp_load import (  # noqa: E402 - after the path setup
    BATCH,
    HOST,
    Load,
    Sink,
    count_spans,
    cpu_count,
    free_port,
    genai_batch,
    payloads,
    wait_listening,
)

from tests.support.rotel import ROTEL_AGENT, Rotel  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")

# The load sends the same few payloads again and again: with a dedup window that holds them all,
# every GenAI span after the first pass would be a duplicate, not recorded in the metrics. A
# window smaller than the cycle makes every span take the path of new traffic (looked up, not
# found, remembered, the oldest forgotten). A --service-arg flag still overrides it.
LOAD_ENV = {"OTEL_LLM_COLLECTOR_DEDUP_WINDOW": "1"}

GOAL_SHARE = 0.1
"""The load the goals are set for (issue 16): 10 % GenAI spans."""
GOAL_SPANS_RATIO = 0.6
"""otel-llm's spans/s at least this times Rotel's."""
GOAL_CPU_RATIO = 2.5
"""otel-llm's CPU per span at most this times Rotel's."""


@dataclass
class Target:
    """A running collector under test."""

    name: str
    endpoint: str
    pid: int


@dataclass
class Round:
    target: str
    round: int
    genai_share: float
    sink_spans_per_s: float
    accepted_spans_per_s: float
    refused: int
    cpu_per_100k_spans_s: float
    """CPU seconds the collector process used per 100,000 spans that reached the sink."""
    genai_spans_per_cpu_s: float
    """GenAI spans that reached the sink per CPU second of the collector (priced, for
    otel-llm): the GenAI throughput of one core."""
    drained: bool
    """Every accepted span reached the sink after the load stopped."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its reaped children (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLK_TCK


def otel_llm_command(grpc_port: int, sink: str, queue_dir: str, extra: list[str]) -> list[str]:
    """The service's command line (contract of issue 4: ``otel-llm collector``)."""
    return [
        sys.executable,
        "-m",
        "otel_llm",
        "collector",
        "--grpc-endpoint",
        f"{HOST}:{grpc_port}",
        "--http-endpoint",
        f"{HOST}:{free_port()}",
        "--metrics-endpoint",
        f"{HOST}:{free_port()}",
        "--upstream",
        sink,
        "--queue-dir",
        queue_dir,
        *extra,
    ]


def otel_llm_available() -> str | None:
    """None when ``otel-llm collector`` exists, else why not."""
    probe = subprocess.run(
        [sys.executable, "-m", "otel_llm", "collector", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0 or "--upstream" not in probe.stdout:
        lines = (probe.stderr or probe.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit code {probe.returncode}"
    return None


@contextmanager
def otel_llm_service(
    sink: str,
    extra: list[str],
    name: str = "otel-llm",
    copy: str | None = None,
    environ: dict[str, str] | None = None,
) -> Iterator[Target]:
    """The service of this checkout, or of the package copy in directory ``copy``; ``environ``
    is added to its environment."""
    env = {**os.environ, **(environ or {})}
    # `python -m` puts the working directory first on sys.path, before PYTHONPATH: the service
    # runs in the directory of the copy it is to import, or it would import this checkout's.
    home = Path(copy).resolve() if copy is not None else ROOT
    env["PYTHONPATH"] = str(home)
    with tempfile.TemporaryDirectory(prefix="otel-llm-bench-") as directory:
        port = free_port()
        log_path = Path(directory) / "service.log"
        command = otel_llm_command(port, sink, str(Path(directory) / "queue"), extra)
        command.append("--upstream-insecure")  # the sink speaks plaintext gRPC
        if "--call-log-store" not in command:
            # A fresh store per run: the default one, in the user's state directory, would be
            # shared by every run (and copy) and grow between them.
            command += ["--call-log-store", str(Path(directory) / "calls.db")]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=home,
            )
        try:
            try:
                wait_listening(port, timeout=60, process=process)
            except RuntimeError as error:
                raise RuntimeError(f"{error}\n{log_path.read_text()[-3000:]}") from None
            yield Target(name, f"{HOST}:{port}", process.pid)
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def rotel_collector(sink: str) -> Iterator[Target]:
    # No compression towards the sink, as for the service: the sink's work is the same for both.
    with Rotel(sink, protocol="grpc", compression="none") as rotel:
        yield Target("rotel", rotel.grpc_endpoint, rotel.pid)


def measure(
    target: Target,
    sink: Sink,
    batches: list[bytes],
    args: argparse.Namespace,
    number: int,
    *,
    share: float,
) -> Round:
    base = sink.spans
    load = Load(target.endpoint, batches, processes=args.generators, streams=args.streams)
    load.start()
    try:
        deadline = time.monotonic() + 60
        while sink.spans == base:  # the generators are up and spans flow end to end
            load.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"no span reached the sink through {target.name}")
            time.sleep(0.05)
        time.sleep(args.warmup)
        t0, s0, a0, c0 = time.monotonic(), sink.spans, load.accepted, cpu_seconds(target.pid)
        end = t0 + args.seconds
        while time.monotonic() < end:
            load.check()
            time.sleep(0.1)
        t1, s1, a1, c1 = time.monotonic(), sink.spans, load.accepted, cpu_seconds(target.pid)
    finally:
        load.stop()
    load.check()
    drained = sink.wait_for(base + load.accepted, timeout=args.drain_timeout)
    forwarded = s1 - s0
    return Round(
        target=target.name,
        round=number,
        genai_share=share,
        sink_spans_per_s=forwarded / (t1 - t0),
        accepted_spans_per_s=(a1 - a0) / (t1 - t0),
        refused=load.refused,
        cpu_per_100k_spans_s=(c1 - c0) / forwarded * 100_000 if forwarded else float("nan"),
        genai_spans_per_cpu_s=forwarded * share / (c1 - c0) if c1 > c0 else float("nan"),
        drained=drained,
    )


def summarize(rounds: list[Round]) -> dict[str, dict[str, float]]:
    """Medians per collector, of the rounds of one load."""
    summary: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.target for r in rounds):
        mine = [r for r in rounds if r.target == name]
        summary[name] = {
            "median_spans_per_s": statistics.median(r.sink_spans_per_s for r in mine),
            "max_spans_per_s": max(r.sink_spans_per_s for r in mine),
            "median_accepted_per_s": statistics.median(r.accepted_spans_per_s for r in mine),
            "median_cpu_per_100k_spans_s": statistics.median(r.cpu_per_100k_spans_s for r in mine),
            "median_genai_spans_per_cpu_s": statistics.median(
                r.genai_spans_per_cpu_s for r in mine
            ),
        }
    return summary


def ratios(summary: dict[str, dict[str, float]], other: str) -> dict[str, float] | None:
    """otel-llm / ``other``: spans/s, CPU per span and GenAI spans per CPU second."""
    if other not in summary or "otel-llm" not in summary:
        return None
    mine, theirs = summary["otel-llm"], summary[other]
    return {
        "spans_per_s": mine["median_spans_per_s"] / theirs["median_spans_per_s"],
        "cpu_per_span": mine["median_cpu_per_100k_spans_s"] / theirs["median_cpu_per_100k_spans_s"],
        "genai_spans_per_cpu_s": mine["median_genai_spans_per_cpu_s"]
        / theirs["median_genai_spans_per_cpu_s"],
    }


def share_list(text: str) -> list[float]:
    shares = [float(part) for part in text.split(",") if part.strip()]
    for share in shares:
        # The payloads make every n-th span a GenAI span: 1, 1/2, 1/3, ... 1/n.
        if not 0 < share <= 1 or abs(1 / round(1 / share) - share) > 1e-9:
            raise argparse.ArgumentTypeError(f"a share is 1/n (1.0, 0.5, 0.1, ...): {share}")
    if not shares:
        raise argparse.ArgumentTypeError("at least one share")
    return shares


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per collector and load")
    parser.add_argument(
        "--genai-share",
        type=share_list,
        default=[GOAL_SHARE],
        metavar="S[,S...]",
        help="share(s) of GenAI spans in the load, each 1/n (e.g. 1.0,0.1: both loads in one "
        "run, the same collector processes)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per round")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--streams", type=int, default=4, help="concurrent calls per generator")
    parser.add_argument("--generators", type=int, default=1, help="load generator processes")
    parser.add_argument("--batches", type=int, default=16, help="distinct 512-span payloads")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--only", choices=("rotel", "otel-llm"), help="measure one collector")
    parser.add_argument(
        "--service-arg",
        action="append",
        default=[],
        help="extra `otel-llm collector` flag (repeatable), e.g. --service-arg=--forward-workers=4",
    )
    parser.add_argument(
        "--against",
        metavar="DIR",
        help="also run the service of the package copy in DIR (PYTHONPATH=DIR), e.g. a checkout "
        "of the commit before a change, and print otel-llm / against",
    )
    parser.add_argument(
        "--against-arg",
        action="append",
        default=[],
        help="extra `otel-llm collector` flag for the --against copy (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def run_rounds(
    targets: list[Target],
    sink: Sink,
    loads: dict[float, list[bytes]],
    args: argparse.Namespace,
) -> list[Round]:
    """Every target once per round and load; the order alternates so drift hits both alike."""
    rounds = []
    for share, batches in loads.items():
        for number in range(1, args.rounds + 1):
            for target in targets if number % 2 else targets[::-1]:
                result = measure(target, sink, batches, args, number, share=share)
                rounds.append(result)
                if not args.json:
                    print(f"{share:>4.0%} GenAI ", end="")
                    print(
                        f"round {number} {target.name:9} {result.sink_spans_per_s:>10,.0f} spans/s"
                        f" at the sink  (accepted {result.accepted_spans_per_s:,.0f}/s, "
                        f"{result.refused} refusals, collector CPU "
                        f"{result.cpu_per_100k_spans_s:.2f} s/100k spans, "
                        f"{'drained' if result.drained else 'NOT DRAINED'})",
                        flush=True,
                    )
    return rounds


def report(rounds: list[Round], args: argparse.Namespace, missing: str | None) -> None:
    loads = {}
    for share in args.genai_share:
        summary = summarize([r for r in rounds if r.genai_share == share])
        loads[share] = {
            "summary": summary,
            "ratio": ratios(summary, "rotel"),
            "against": ratios(summary, "against"),
        }
    if args.json:
        first = loads[args.genai_share[0]]
        ratio = first["ratio"]
        result = {
            "rounds": [asdict(r) for r in rounds],
            # The first load's, as before --genai-share; every load's under "loads".
            "summary": first["summary"],
            "ratio": ratio["spans_per_s"] if ratio else None,
            "against": first["against"],
            "loads": {str(share): figures for share, figures in loads.items()},
            "otel_llm_missing": missing,
        }
        print(json.dumps(result))
        return
    print()
    print(
        f"{'GenAI':>5}  {'collector':9} {'spans/s':>10} {'max':>10} {'CPU s/100k':>11} "
        f"{'GenAI spans/s per core':>23}"
    )
    for share, figures in loads.items():
        for name, values in figures["summary"].items():
            print(
                f"{share:>5.0%}  {name:9} {values['median_spans_per_s']:>10,.0f} "
                f"{values['max_spans_per_s']:>10,.0f} "
                f"{values['median_cpu_per_100k_spans_s']:>11.2f} "
                f"{values['median_genai_spans_per_cpu_s']:>23,.0f}"
            )
    print("(medians of the rounds; GenAI spans/s per core: GenAI spans delivered per CPU second)")
    for share, figures in loads.items():
        ratio, against = figures["ratio"], figures["against"]
        if ratio is not None:
            line = (
                f"{share:>5.0%}  otel-llm / rotel: spans/s {ratio['spans_per_s']:.2f}x, "
                f"CPU per span {ratio['cpu_per_span']:.2f}x, "
                f"GenAI spans/s per core {ratio['genai_spans_per_cpu_s']:.2f}x"
            )
            if abs(share - GOAL_SHARE) < 1e-9:
                spans_ok = ratio["spans_per_s"] >= GOAL_SPANS_RATIO
                cpu_ok = ratio["cpu_per_span"] <= GOAL_CPU_RATIO
                line += (
                    f"  (goals >= {GOAL_SPANS_RATIO}x: {'met' if spans_ok else 'MISSED'}, "
                    f"<= {GOAL_CPU_RATIO}x: {'met' if cpu_ok else 'MISSED'})"
                )
            print(line)
        if against is not None:
            print(
                f"{share:>5.0%}  otel-llm / against ({args.against}): spans/s "
                f"{against['spans_per_s']:.3f}, CPU per span {against['cpu_per_span']:.3f}"
            )


def load_payloads(count: int, share: float) -> list[bytes]:
    """``count`` distinct serialized batches with ``share`` of GenAI spans (``payloads``' for
    the 10 % load)."""
    every = round(1 / share)
    if every == 10:
        return payloads(count)
    return [genai_batch(seed, genai_every=every).SerializeToString() for seed in range(count)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def say(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    loads = {share: load_payloads(args.batches, share) for share in args.genai_share}
    for share, batches in loads.items():
        assert count_spans(batches[0]) == BATCH
        say(
            f"{len(batches)} payloads of {BATCH} spans ({share:.0%} GenAI), "
            f"{sum(map(len, batches)) // len(batches)} bytes each"
        )
    say(
        f"{args.generators} generator process(es) x {args.streams} streams; {cpu_count()} CPUs; "
        f"rotel-agent {ROTEL_AGENT}"
    )
    missing = None if args.only == "rotel" else otel_llm_available()
    if missing:
        say(f"otel-llm collector: not available ({missing}); measuring Rotel only")
    with Sink() as sink, ExitStack() as stack:
        targets: list[Target] = []
        if args.only != "otel-llm":
            targets.append(stack.enter_context(rotel_collector(sink.endpoint)))
        if args.only != "rotel" and not missing:
            try:
                service = otel_llm_service(sink.endpoint, args.service_arg, environ=LOAD_ENV)
                targets.append(stack.enter_context(service))
            except RuntimeError as error:
                missing = f"failed to start: {error}"
                say(f"otel-llm collector {missing}\nmeasuring Rotel only")
        if args.against and not missing:
            other = otel_llm_service(
                sink.endpoint, args.against_arg, "against", args.against, LOAD_ENV
            )
            targets.append(stack.enter_context(other))
        if not targets:
            say("nothing to measure")
            return 2
        rounds = run_rounds(targets, sink, loads, args)
    report(rounds, args, missing)
    if not all(r.drained for r in rounds):
        return 1
    return 2 if missing and args.only != "rotel" else 0


if __name__ == "__main__":
    sys.exit(main())
