"""What the collector's redelivery check costs per GenAI span: ``Enricher.record`` of one
enriched 512-span request (``otlp_load.genai_batch``: 10 % GenAI spans, about 51 calls), three
enrichers side by side in interleaved rounds:

* ``off``: ``dedup_window=0``, no check (the code path before the window existed);
* ``fresh``: a window of 1 -- every span is looked up, not found, remembered, and pushes the
  oldest out: the steady state of new traffic once the window is full, metrics recorded;
* ``duplicate``: a window that holds them all -- every span is found, the metrics are skipped:
  a request retried by a client.

Run from the repository root: ``.venv/bin/python benchmarks/collector_dedup.py``. Prints µs
per GenAI span (median over the rounds) and the ratios to ``off``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent))

from otlp_load import genai_batch

import otel_llm
from otel_llm.collector.enrich import Enricher
from otel_llm.metrics.prometheus import PrometheusRecorder
from otel_llm.pricer import Pricer, PricingOptions

VARIANTS = {"off": 0, "fresh": 1, "duplicate": 100_000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="records per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    enrichers = {}
    results = {}
    for name, window in VARIANTS.items():
        registry = CollectorRegistry()
        enricher = Enricher(
            Pricer(PricingOptions.from_settings()),
            PrometheusRecorder.for_registry(registry),
            dedup_window=window,
        )
        result = enricher.enrich(genai_batch(0), record=False)
        enrichers[name], results[name] = enricher, result
    calls = sum(call.measured for call in results["off"].calls)
    assert calls > 0

    def round_of(name: str) -> float:
        enricher, result = enrichers[name], results[name]
        record = enricher.record
        gc.collect()
        gc.disable()
        try:
            began = time.perf_counter_ns()
            for _ in range(args.requests):
                result.recorded, result.duplicates = False, 0
                record(result)
            return (time.perf_counter_ns() - began) / args.requests / calls / 1000
        finally:
            gc.enable()

    for name in VARIANTS:  # warm-up: series created, the duplicate window filled
        round_of(name)
    timings: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for number in range(args.rounds):
        order = list(VARIANTS) if number % 2 == 0 else list(VARIANTS)[::-1]
        for name in order:
            timings[name].append(round_of(name))
    assert results["duplicate"].duplicates == calls  # each variant took the path it names
    assert results["fresh"].duplicates == 0
    base = statistics.median(timings["off"])
    print(
        f"otel_llm {otel_llm.__file__}: Enricher.record, {calls} GenAI spans per request, "
        f"{args.rounds} rounds x {args.requests} requests"
    )
    for name, values in timings.items():
        median = statistics.median(values)
        print(
            f"  {name:9} median {median:6.2f} µs per GenAI span (min {min(values):.2f}), "
            f"x{median / base:.3f} of off"
        )


if __name__ == "__main__":
    main()
