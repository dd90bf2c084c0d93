"""Warm cost of ``PrometheusRecorder.record``: one priced GenAI call (the span of
``processor_overhead.py``: chat, input/output/cache-read tokens, a cost) recorded again and
again into a recorder on its own registry, so the series exist and only the updates are timed.

Run from the repository root: ``.venv/bin/python benchmarks/prometheus_record.py``;
``PYTHONPATH=/some/copy`` measures another copy of ``otel_llm`` (the output names the one it
imported). Prints µs per call: the median and minimum over the rounds, and with an exemplar
every call (``--exemplars``: the throttle's interval set to 0, the worst case).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from prometheus_client import CollectorRegistry

import otel_llm
from otel_llm.derive import derive
from otel_llm.metrics import prometheus
from otel_llm.metrics.prometheus import PrometheusRecorder
from otel_llm.pricing import PriceBook

ATTRIBUTES = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 400,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--exemplars", action="store_true", help="store an exemplar on every update"
    )
    args = parser.parse_args()
    if args.exemplars:
        prometheus._EXEMPLAR_INTERVAL_S = 0.0  # type: ignore[attr-defined]
    start = 1_760_000_000_000_000_000
    derived = derive(
        ATTRIBUTES,
        start_time_ns=start,
        end_time_ns=start + 350_000_000,
        failed=False,
        service_name="checkout",
        trace_id=0x0123456789ABCDEF0123456789ABCDEF,
        book=PriceBook(),
        max_tokens=10**8,
    )
    assert derived is not None
    recorder = PrometheusRecorder(CollectorRegistry())
    record = recorder.record
    for _ in range(2_000):
        record(derived)
    per_call = []
    for _ in range(args.rounds):
        gc.collect()
        gc.disable()
        try:
            began = time.perf_counter_ns()
            for _ in range(args.calls):
                record(derived)
            per_call.append((time.perf_counter_ns() - began) / args.calls / 1000)
        finally:
            gc.enable()
    every = ", exemplars every call" if args.exemplars else ""
    print(
        f"otel_llm {otel_llm.__file__}: PrometheusRecorder.record "
        f"median {statistics.median(per_call):.2f} µs, min {min(per_call):.2f} µs "
        f"({args.rounds} rounds x {args.calls} calls{every})"
    )


if __name__ == "__main__":
    main()
