"""CPU per call of a real ``openai`` client with otel-llm, over the bare client, A/B by copy.

One fake LLM server process (``tests/support/fake_llm.py``, Nagle off so that a reused
connection does not wait on delayed ACKs), and one long-lived client process per variant:

  bare           the ``openai`` client, no OpenTelemetry at all
  <label>        the same client, instrumented by ``OpenAIInstrumentor`` of the ``otel_llm`` at
                 a given path, into an SDK ``TracerProvider`` with ``BatchSpanProcessor`` to a
                 no-op exporter, ``configure()`` attaching ``LLMSpanProcessor`` (pricing and
                 the Prometheus metrics into a private registry)

Rounds are interleaved: each round, every client process makes ``--calls`` non-streaming (or,
with ``--stream``, streaming) chat calls in turn and reports the CPU time of its whole process
(``time.process_time``: the exporter's thread included) and the wall time. Per variant, the
median over rounds of µs per call; the overhead is the variant's median minus the bare client's.

    .venv/bin/python benchmarks/client_overhead.py --copy main=/work/main --copy new=.

Run from the repository root (the fake server comes from ``tests/support``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WARMUP_CALLS = 200


def serve() -> None:
    """The server process: print the port, serve until stdin closes."""
    sys.path.insert(0, str(ROOT))
    from tests.support import fake_llm

    # One send for headers and body would do too; TCP_NODELAY is the handler's own switch.
    fake_llm._Handler.disable_nagle_algorithm = True
    server = fake_llm.FakeLLMServer()

    def forget() -> None:  # the server records every request: keep its memory flat
        while True:
            time.sleep(1)
            server.clear()

    threading.Thread(target=forget, daemon=True).start()
    print(server.port, flush=True)
    sys.stdin.read()
    server.stop()


def client(port: int, instrumented: bool, stream: bool) -> None:
    """A client process: for each line ``N`` on stdin, make N calls; print the times."""
    import openai

    if instrumented:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
        from prometheus_client import CollectorRegistry

        import otel_llm
        from otel_llm.instrumentation.openai import OpenAIInstrumentor

        class Noop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Noop()))
        otel_llm.configure(tracer_provider=provider, registry=CollectorRegistry())
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        print(f"otel_llm from {otel_llm.__file__}", file=sys.stderr)

    api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="test", max_retries=0)
    messages = [{"role": "user", "content": "Say hello"}]

    def call() -> None:
        if stream:
            for _ in api.chat.completions.create(
                model="gpt-4o-mini",
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            ):
                pass
        else:
            api.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]

    for _ in range(WARMUP_CALLS):
        call()
    for line in sys.stdin:
        count = int(line)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(count):
            call()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(json.dumps({"cpu_us": cpu / count * 1e6, "wall_us": wall / count * 1e6}), flush=True)


def _spawn(args: list[str], pythonpath: str | None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--copy",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="an otel_llm copy to measure (repeatable); default: this checkout",
    )
    parser.add_argument("--calls", type=int, default=300, help="calls per client per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--stream", action="store_true", help="streaming chat calls")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--instrumented", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    if args.client is not None:
        client(args.client, args.instrumented, args.stream)
        return 0

    copies = [tuple(c.split("=", 1)) for c in args.copy] or [("this", str(ROOT))]
    server = _spawn(["--serve"], None)
    assert server.stdout is not None
    port = int(server.stdout.readline())
    mode = ["--stream"] if args.stream else []
    clients = {"bare": _spawn(["--client", str(port), *mode], None)}
    for label, path in copies:
        clients[label] = _spawn(
            ["--client", str(port), "--instrumented", *mode], str(Path(path).resolve())
        )
    results: dict[str, list[dict[str, float]]] = {label: [] for label in clients}
    try:
        labels = list(clients)
        for round_ in range(args.rounds):
            shift = round_ % len(labels)
            for label in labels[shift:] + labels[:shift]:
                process = clients[label]
                assert process.stdin is not None
                assert process.stdout is not None
                process.stdin.write(f"{args.calls}\n")
                process.stdin.flush()
                results[label].append(json.loads(process.stdout.readline()))
    finally:
        for process in [*clients.values(), server]:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=30)
    summary = {
        label: {key: statistics.median(r[key] for r in rounds) for key in ("cpu_us", "wall_us")}
        for label, rounds in results.items()
    }
    if args.json:
        json.dump({"summary": summary, "rounds": results}, sys.stdout, indent=2)
        print()
        return 0
    kind = "streaming" if args.stream else "non-streaming"
    print(f"{kind} chat calls, {args.calls} per client per round, {args.rounds} rounds")
    print(f"{'variant':<12}{'CPU µs/call':>13}{'over bare':>11}{'wall µs/call':>14}")
    bare = summary["bare"]
    for label, cell in summary.items():
        over = cell["cpu_us"] - bare["cpu_us"]
        print(
            f"{label:<12}{cell['cpu_us']:>13.1f}"
            f"{'' if label == 'bare' else f'{over:+.1f}':>11}{cell['wall_us']:>14.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
