"""Memory of the processor's cost roll-ups with many traces whose root never ends.

Each trace opens a root span and an ``invoke_agent`` span, makes one priced ``llm_call`` under
them, and never ends either span: the worst case for ``otel_llm.tracecost`` (every trace stays
open). The process's resident set is printed every ``--step`` traces, for the default bound
(``rollup_max_open`` 10,000) and, in a second process, for a bound past the run (nothing
evicted), side by side.

Run from the repository root: ``.venv/bin/python benchmarks/rollup_memory.py`` (``--traces``,
``--step`` to change the sizes).
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run(traces: int, step: int, max_open: int) -> list[tuple[int, float, int, int]]:
    """(traces opened, RSS MB, open traces followed, spans under agents followed) per step."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry

    from otel_llm import LLMSpanProcessor, llm_call
    from otel_llm import _semconv as sc

    processor = LLMSpanProcessor(registry=CollectorRegistry(), rollup_max_open=max_open)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("app")
    agent_attributes = {
        sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT,
        sc.GEN_AI_AGENT_NAME: "planner",
    }
    rows = []
    for opened in range(1, traces + 1):
        with trace.use_span(tracer.start_span("request"), end_on_exit=False):
            runner = tracer.start_span("invoke_agent planner", attributes=agent_attributes)
            with (
                trace.use_span(runner, end_on_exit=False),
                llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as call,
            ):
                call.set_usage(input_tokens=1200, output_tokens=300)
        if opened % step == 0:
            gc.collect()
            costs = processor._costs  # the benchmark reports the tables' sizes
            rows.append((opened, rss_mb(), len(costs.traces), len(costs.under)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--step", type=int, default=20_000)
    parser.add_argument("--max-open", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.max_open is not None:  # the child: one bound, rows as text
        for row in run(args.traces, args.step, args.max_open):
            print(*row)
        return
    columns = {}
    for label, bound in (("bound 10,000", 10_000), ("unbounded", 10 * args.traces)):
        out = subprocess.run(
            [sys.executable, __file__, f"--traces={args.traces}", f"--step={args.step}",
             f"--max-open={bound}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        columns[label] = [line.split() for line in out.splitlines()]
    print(f"{args.traces} traces whose root and agent never end, one priced call each")
    print(f"{'traces':>8} | {'RSS MB (bound 10,000)':>22} {'followed':>17} | "
          f"{'RSS MB (unbounded)':>19} {'followed':>17}")  # fmt: skip
    for bounded, unbounded in zip(columns["bound 10,000"], columns["unbounded"], strict=True):
        print(
            f"{bounded[0]:>8} | {float(bounded[1]):>22.1f} {bounded[2]:>8}+{bounded[3]:<8} | "
            f"{float(unbounded[1]):>19.1f} {unbounded[2]:>8}+{unbounded[3]:<8}"
        )


if __name__ == "__main__":
    main()
