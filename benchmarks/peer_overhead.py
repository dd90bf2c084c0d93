"""What each GenAI instrumentation of the ``openai`` client adds to a real chat call, side by side.

    .venv/bin/python benchmarks/peer_overhead.py                       # build/reuse, run, table
    .venv/bin/python benchmarks/peer_overhead.py --otel-llm /other/checkout
    .venv/bin/python benchmarks/peer_overhead.py --canned    # the instrumentation alone

Every variant gets a virtualenv of its own with exact pins (built once under ``.venvs/peer-*``
by tests/support/venvs.py, reused while the pins are unchanged) and ONE long-lived client process
(``peer_client.py``) that keeps its connection; all of them call ONE fake LLM server process
(tests/support/fake_llm.py). Rounds interleave the variants, in a rotating order; each round
every client makes ``--calls`` non-streaming, then ``--calls`` streaming chat calls. The figures
are per call: the median over rounds of wall and CPU time (the client process's, all threads),
and the overhead over the bare client of the same openai release, as the median over rounds of
that round's difference. See benchmarks/README.md.

``--canned`` times the instrumentation alone: no request is made, each library's wrapper of
``Completions.create`` is called with a stand-in for the SDK's method that returns a canned
response (peer_client.py). A real call's CPU is ~1.5-3 ms of the client's own, whose noise on a
shared machine is as large as the instrumentations' differences; without it they show.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.support: the virtualenv cache and the fake server

from tests.support.venvs import clean_environment, ensure_venv, venv_python  # noqa: E402

CLIENT = Path(__file__).resolve().with_name("peer_client.py")
PREFIX = "@@peer "

# The pins. Two openai lines: the official instrumentation and OpenLIT need openai 2.x (httpx),
# OpenLLMetry and this repository's main test environment use 3.x (httpx2); each instrumented
# variant is compared with the bare client of its own line.
OPENAI = {"2": "openai==2.54.0", "3": "openai==3.63.0"}
OTEL = ("opentelemetry-api==1.45.2", "opentelemetry-sdk==1.45.2")
OTEL_CONTRIB = (
    "opentelemetry-instrumentation==0.66b2",
    "opentelemetry-semantic-conventions==0.66b2",
)
OTEL_LLM_DEPENDENCIES = ("prometheus-client==0.26.0", "genai-prices==0.2.5")


@dataclass(frozen=True)
class Variant:
    name: str
    family: str  # what peer_client.py sets up
    openai: str  # "2" or "3"
    requirements: tuple[str, ...]
    otel_llm: bool = False  # installs the --otel-llm checkout (editable)


def variants(otel_llm: Path) -> list[Variant]:
    del otel_llm  # the path goes into the install command, see venv_for
    return [
        Variant("bare@openai3", "bare", "3", (OPENAI["3"], *OTEL)),
        Variant("bare@openai2", "bare", "2", (OPENAI["2"], *OTEL)),
        Variant(
            "otel-llm",
            "otel-llm",
            "3",
            (OPENAI["3"], *OTEL, *OTEL_CONTRIB, *OTEL_LLM_DEPENDENCIES),
            otel_llm=True,
        ),
        Variant(
            "otel-llm@openai2",
            "otel-llm",
            "2",
            (OPENAI["2"], *OTEL, *OTEL_CONTRIB, *OTEL_LLM_DEPENDENCIES),
            otel_llm=True,
        ),
        Variant(
            "official",
            "official",
            "2",
            (
                OPENAI["2"],
                *OTEL,
                *OTEL_CONTRIB,
                "opentelemetry-instrumentation-openai-v2==2.4b0",
                "opentelemetry-util-genai==1.0b0",  # newer releases break 2.4b0's import
            ),
        ),
        Variant(
            "openllmetry",
            "openllmetry",
            "3",
            (
                OPENAI["3"],
                *OTEL,
                *OTEL_CONTRIB,
                "opentelemetry-instrumentation-openai==0.62.4",
                "opentelemetry-semantic-conventions-ai==0.5.1",
            ),
        ),
        Variant(
            "openlit",
            "openlit",
            "2",  # openlit 1.45.0 requires openai<3
            (
                OPENAI["2"],
                "openlit==1.45.0",
                # the OpenTelemetry line openlit 1.45.0 was released with (it pins it)
                "opentelemetry-api==1.45.1",
                "opentelemetry-sdk==1.45.1",
                "opentelemetry-instrumentation==0.66b1",
                "opentelemetry-semantic-conventions==0.66b1",
            ),
        ),
    ]


def venv_for(variant: Variant, otel_llm: Path) -> Path:
    name = f"peer-{variant.name.replace('@', '-')}"
    installs = [list(variant.requirements)]
    if variant.otel_llm:
        # One virtualenv per checkout compared; editable, so it runs the checkout as it is now.
        name += "-" + hashlib.sha256(str(otel_llm).encode()).hexdigest()[:8]
        installs = [[*variant.requirements, "-e", str(otel_llm)]]
    return ensure_venv(name, installs, label=f"peer benchmark, {variant.name}")


@dataclass
class Client:
    variant: Variant
    process: subprocess.Popen[str]
    info: dict[str, Any]
    cells: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # µs per call

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return read_reply(self.process, self.variant.name)


def read_reply(process: subprocess.Popen[str], name: str) -> dict[str, Any]:
    stdout: IO[str] | None = process.stdout
    assert stdout is not None
    for line in stdout:
        if line.startswith(PREFIX):
            reply: dict[str, Any] = json.loads(line[len(PREFIX) :])
            return reply
    raise SystemExit(f"{name}: the client process ended (exit {process.wait()})")


def start_server() -> tuple[subprocess.Popen[str], str]:
    """The fake LLM server in its own process: a gpt-4o-mini answer with usage (1,200 prompt
    tokens of which 400 cached, 300 completion tokens), 8 text deltas when streamed."""
    script = (
        "import sys\n"
        "from tests.support.fake_llm import FakeLLMServer, ScriptedResponse\n"
        "with FakeLLMServer() as server:\n"
        "    server.default = ScriptedResponse(model='gpt-4o-mini-2024-07-18',\n"
        "        text='Hello! How can I help you today? Ask me anything at all.', chunks=8,\n"
        "        input_tokens=1200, cached_tokens=400, output_tokens=300)\n"
        "    print(server.openai_base_url, flush=True)\n"
        "    sys.stdin.read()\n"  # serves until the benchmark closes our stdin
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_environment(PYTHONPATH=str(ROOT)),
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def start_client(variant: Variant, python: Path, base_url: str) -> Client:
    process = subprocess.Popen(
        [python, "-I", CLIENT, variant.family, base_url],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_environment(),
    )
    return Client(variant, process, read_reply(process, variant.name))


def cells_of(client: Client, canned: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """(cell name, command) of one round for this client; otel-llm's also has its A/B arm."""
    cells = []
    for kind in ("chat", "stream"):
        command: dict[str, Any] = {"kind": kind, "canned": canned}
        cells.append((f"{client.variant.name}|{kind}", command))
        if client.variant.name == "otel-llm":
            cells.append((f"otel-llm, processor off|{kind}", {**command, "processor": False}))
    return cells


def sanity_check(
    clients: list[Client], plan: list[tuple[Client, str, dict[str, Any]]], warmup: int
) -> list[str]:
    """After the warm-up: every instrumented client exported at least one span per call (the
    spans it made, by name, go into the report), the bare ones none, and otel-llm priced them.
    Without it, a library that failed to instrument would look cheap."""
    failures = []
    for client in clients:
        calls = warmup * sum(1 for owner, _, _ in plan if owner is client)
        check = client.ask({"check": True})
        client.info["warmup_spans"] = {
            "calls": calls,
            "spans": check["spans"],
            "by_name": check["names"],
            "with_cost": check["costed"],
        }
        name = client.variant.name
        if client.variant.family == "bare":
            if check["spans"]:
                failures.append(f"{name} exported {check['spans']} spans, expected none")
        elif check["spans"] < calls:
            failures.append(f"{name} exported {check['spans']} spans for {calls} calls")
        elif client.variant.family == "otel-llm" and check["costed"] < calls // 2:
            # Half: the A/B's "processor off" cells export unpriced spans.
            failures.append(f"{name}: {check['costed']} priced spans for {calls} calls")
    return failures


def overhead(
    results: dict[str, list[tuple[float, float]]], cell: str, base: str, index: int
) -> float:
    """The median over rounds of (cell - base) in that round; index 0 wall, 1 CPU."""
    return statistics.median(
        a[index] - b[index] for a, b in zip(results[cell], results[base], strict=True)
    )


def measure(
    plan: list[tuple[Client, str, dict[str, Any]]], rounds: int, calls: int
) -> dict[str, list[tuple[float, float]]]:
    """Per cell, one (wall, CPU) µs per call for every round."""
    results: dict[str, list[tuple[float, float]]] = {cell: [] for _, cell, _ in plan}
    for number in range(rounds):
        # Rotate the order so that drift on a shared machine is spread over every variant.
        shift = number * len(plan) // max(1, rounds)
        for client, cell, command in plan[shift:] + plan[:shift]:
            answer = client.ask({**command, "calls": calls})
            results[cell].append(
                (answer["wall_ns"] / calls / 1000, answer["cpu_ns"] / calls / 1000)
            )
        print(f"round {number + 1}/{rounds} done", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=100, help="calls per cell per round")
    parser.add_argument("--warmup", type=int, default=300, help="calls per cell before timing")
    parser.add_argument(
        "--otel-llm",
        type=Path,
        default=ROOT,
        help="the otel-llm checkout to install (default: this repository)",
    )
    parser.add_argument("--only", nargs="*", help="variants to run (the bare ones always run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--canned",
        action="store_true",
        help="no requests: each wrapper gets a canned response (the instrumentation alone)",
    )
    args = parser.parse_args()
    otel_llm = args.otel_llm.resolve()

    chosen = [
        v for v in variants(otel_llm) if not args.only or v.family == "bare" or v.name in args.only
    ]
    print(f"building/reusing {len(chosen)} virtualenvs ...", file=sys.stderr)
    try:
        pythons = {v.name: venv_python(venv_for(v, otel_llm)) for v in chosen}
    except pytest.fail.Exception as failure:  # how the tests' helper reports a failed build
        print(failure.msg, file=sys.stderr)
        return 1

    server, base_url = start_server()
    clients: list[Client] = []
    try:
        for variant in chosen:
            clients.append(start_client(variant, pythons[variant.name], base_url))
        plan = [
            (client, cell, command)
            for client in clients
            for cell, command in cells_of(client, args.canned)
        ]
        print(f"warming up ({args.warmup} calls per cell) ...", file=sys.stderr)
        for client, _, command in plan:
            client.ask({**command, "calls": args.warmup})
        failures = sanity_check(clients, plan, args.warmup)
        if failures:
            for failure in failures:
                print(f"sanity check failed: {failure}", file=sys.stderr)
            return 1
        started = time.monotonic()
        results = measure(plan, args.rounds, args.calls)
        seconds = time.monotonic() - started
    finally:
        for client in clients:
            if client.process.stdin is not None:
                client.process.stdin.close()
        for client in clients:
            client.process.wait(timeout=30)
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)

    report = summarise(clients, results, args, otel_llm, seconds)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


def summarise(
    clients: list[Client],
    results: dict[str, list[tuple[float, float]]],
    args: argparse.Namespace,
    otel_llm: Path,
    seconds: float,
) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for client in clients:
        for cell, _ in cells_of(client):
            name, kind = cell.split("|")
            bare = f"bare@openai{client.variant.openai}|{kind}"
            row = rows.setdefault(
                name,
                {"openai_line": client.variant.openai, "versions": client.info["versions"]},
            )
            row[kind] = {
                "wall_us": statistics.median(r[0] for r in results[cell]),
                "cpu_us": statistics.median(r[1] for r in results[cell]),
                "wall_over_bare_us": overhead(results, cell, bare, 0),
                "cpu_over_bare_us": overhead(results, cell, bare, 1),
                # Contention only ever adds CPU time: the difference of the minima is a second,
                # less noise-prone estimate on a busy machine.
                "cpu_over_bare_min_us": min(r[1] for r in results[cell])
                - min(r[1] for r in results[bare]),
                "rounds": [[round(w, 1), round(c, 1)] for w, c in results[cell]],
            }
            if "otel_llm_path" in client.info:
                row["otel_llm_path"] = client.info["otel_llm_path"]
            row["warmup_spans"] = client.info.get("warmup_spans")
    # Ratios to otel-llm on the same openai line (otel-llm@openai2 for the openai 2.x peers).
    reference = {"3": "otel-llm", "2": "otel-llm@openai2"}
    for name, row in rows.items():
        ours = rows.get(reference[row["openai_line"]])
        for kind in ("chat", "stream"):
            if ours is None or name.startswith("bare") or name.endswith("processor off"):
                continue
            theirs_cpu, ours_cpu = row[kind]["cpu_over_bare_us"], ours[kind]["cpu_over_bare_us"]
            row[kind]["cpu_ratio_to_otel_llm"] = theirs_cpu / ours_cpu if ours_cpu > 0 else None
            theirs_wall, ours_wall = row[kind]["wall_over_bare_us"], ours[kind]["wall_over_bare_us"]
            row[kind]["wall_ratio_to_otel_llm"] = theirs_wall / ours_wall if ours_wall > 0 else None
    share = {}
    if "otel-llm" in rows and "otel-llm, processor off" in rows:
        for kind in ("chat", "stream"):
            on, off = f"otel-llm|{kind}", f"otel-llm, processor off|{kind}"
            share[kind] = {
                "cpu_us": overhead(results, on, off, 1),
                "wall_us": overhead(results, on, off, 0),
            }
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "otel_llm_checkout": str(otel_llm),
        "rounds": args.rounds,
        "calls_per_round": args.calls,
        "warmup_calls": args.warmup,
        "seconds": round(seconds, 1),
        "canned": args.canned,
        "variants": rows,
        "processor_share_us": share,
    }


def print_table(report: dict[str, Any]) -> None:
    rows = report["variants"]
    print(
        f"peer_overhead: {report['rounds']} rounds x {report['calls_per_round']} calls per cell "
        f"(after {report['warmup_calls']} warm-up calls), {report['seconds']} s; "
        f"otel-llm from {report['otel_llm_checkout']}"
    )
    if report["canned"]:
        print("canned responses, no HTTP: the instrumentation alone (--canned)")
    print("\nversions:")
    for name, row in rows.items():
        pinned = ", ".join(f"{k} {v}" for k, v in row["versions"].items())
        print(f"  {name:24} {pinned}")
    print("\nspans exported per call in the warm-up (by name), the sanity check:")
    for name, row in rows.items():
        spans = row["warmup_spans"]
        if spans is None or name.endswith("processor off"):
            continue
        names = ", ".join(f"{n} {c / spans['calls']:.2f}" for n, c in spans["by_name"].items())
        print(f"  {name:24} {spans['spans'] / spans['calls']:.2f}  {names}")
    for kind, title in (("chat", "non-streaming chat"), ("stream", "streaming chat (8 deltas)")):
        print(f"\n{title}: µs per call (medians over rounds); overhead = minus the bare client")
        print(
            f"  {'variant':24} {'openai':>6} {'wall':>8} {'CPU':>8} "
            f"{'+wall':>8} {'+CPU':>8} {'+CPU/otel-llm':>14} {'+CPU(min)':>10}"
        )
        for name, row in rows.items():
            cell = row[kind]
            ratio = cell.get("cpu_ratio_to_otel_llm")
            ratio_text = "" if ratio is None else f"{ratio:.2f}x"
            extra = name.startswith("bare")
            print(
                f"  {name:24} {row['openai_line']:>6} {cell['wall_us']:8.0f} {cell['cpu_us']:8.0f} "
                f"{'' if extra else format(cell['wall_over_bare_us'], '8.0f'):>8} "
                f"{'' if extra else format(cell['cpu_over_bare_us'], '8.0f'):>8} "
                f"{ratio_text:>14} "
                f"{'' if extra else format(cell['cpu_over_bare_min_us'], '10.0f'):>10}"
            )
    share = report["processor_share_us"]
    if share:
        print(
            "\nLLMSpanProcessor's share inside a real call (otel-llm, processor on - off, paired):"
        )
        for kind in ("chat", "stream"):
            print(
                f"  {kind:7} CPU {share[kind]['cpu_us']:+.0f} µs, "
                f"wall {share[kind]['wall_us']:+.0f} µs (target: CPU <= 40 µs)"
            )
    print("\ntargets (CPU over bare, otel-llm / peer on the same openai line):")
    for kind in ("chat", "stream"):
        for peer, target in (("official", 0.6), ("openlit", 0.4)):
            if peer not in rows or "otel-llm@openai2" not in rows:
                continue
            ours = rows["otel-llm@openai2"][kind]["cpu_over_bare_us"]
            theirs = rows[peer][kind]["cpu_over_bare_us"]
            ratio = ours / theirs if theirs > 0 else float("inf")
            verdict = "met" if ratio <= target else f"missed by {ratio - target:.2f}"
            print(f"  {kind:7} otel-llm / {peer:9} {ratio:.2f} (target <= {target}): {verdict}")


if __name__ == "__main__":
    sys.exit(main())
