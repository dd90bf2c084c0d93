"""What each hook of ``LLMSpanProcessor`` costs, next to an empty ``SpanProcessor``'s, in one run.

    .venv/bin/python benchmarks/processor_hooks.py
    PYTHONPATH=/other/checkout .venv/bin/python benchmarks/processor_hooks.py   # an A/B

``processor_overhead.py`` times whole span lifecycles (12-14 µs), where a plain span's 0.2-0.4
µs of hooks drown in a shared machine's noise. Here each hook is called on one ended span of
``processor_overhead.py``'s two kinds (plain and GenAI, no parent, no downstream) many times in a
row, by the thread's CPU clock, GC off; the figure is the minimum of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from prometheus_client import CollectorRegistry

import otel_llm
from otel_llm import LLMSpanProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processor_overhead import GENAI_SPAN, PLAIN_SPAN


def per_call_ns(hook: Callable[[Any], None], argument: Any, calls: int, repeat: int) -> float:
    clock = time.thread_time_ns
    best = float("inf")
    for _ in range(repeat):
        begin = clock()
        for _ in range(calls):
            hook(argument)
        best = min(best, (clock() - begin) / calls)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000, help="calls of a hook per run")
    parser.add_argument("--repeat", type=int, default=7, help="runs; the minimum is printed")
    args = parser.parse_args(argv)
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("otel-llm-benchmark")
    processors = {
        "empty SpanProcessor": SpanProcessor(),
        "LLMSpanProcessor": LLMSpanProcessor(registry=CollectorRegistry()),
    }
    print(f"otel_llm from {otel_llm.__file__}; ns per call, CPU clock, min of {args.repeat}")
    print(f"{'':<26}{'on_start':>10}{'_on_ending':>12}{'on_end':>10}")
    gc.disable()
    try:
        for kind, (name, attributes) in (("plain", PLAIN_SPAN), ("genai", GENAI_SPAN)):
            span = tracer.start_span(name, attributes=attributes)
            span.end()
            ended = span._readable_span()
            for label, processor in processors.items():
                for _ in range(100):  # the processor's tables and caches warm
                    processor.on_start(span)
                    processor.on_end(ended)
                cells = [
                    per_call_ns(processor.on_start, span, args.calls, args.repeat),
                    per_call_ns(processor._on_ending, span, args.calls, args.repeat),
                    per_call_ns(processor.on_end, ended, args.calls, args.repeat),
                ]
                print(
                    f"{kind + ', ' + label:<26}"
                    + "".join(
                        f"{cell:>{width}.0f}"
                        for cell, width in zip(cells, (10, 12, 10), strict=True)
                    )
                )
    finally:
        gc.enable()
    return 0


if __name__ == "__main__":
    sys.exit(main())
