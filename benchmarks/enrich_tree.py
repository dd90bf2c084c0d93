"""What keeping the traces' trees costs the collector's request path: ``Enricher.enrich`` of
the same requests with ``tree_spans`` off (no call log, as before issue 13) and on (the call
log's default), rounds alternating, in one process.

    .venv/bin/python benchmarks/enrich_tree.py                 # 512-span batches, 10 % GenAI
    .venv/bin/python benchmarks/enrich_tree.py --genai-every 1000   # almost no GenAI span

The requests are ``otlp_load.genai_batch``'s (traces of 8 spans: one root each). Each is parsed
again before each enrich (enriching changes it); the parse is timed apart and not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_load import genai_batch
from prometheus_client import CollectorRegistry

from otel_llm.collector.enrich import Enricher
from otel_llm.metrics.prometheus import PrometheusRecorder
from otel_llm.pricer import Pricer, PricingOptions


def per_request_us(enricher: Enricher, payloads: list[bytes], repeat: int) -> float:
    """Median microseconds of one enrich, over ``repeat`` passes of the payloads."""
    samples = []
    for _ in range(repeat):
        elapsed = 0.0
        for payload in payloads:
            request = ExportTraceServiceRequest.FromString(payload)
            began = time.perf_counter()
            enricher.enrich(request, raw=payload)
            elapsed += time.perf_counter() - began
        samples.append(elapsed / len(payloads) * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genai-every", type=int, default=10)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    payloads = [
        genai_batch(seed, genai_every=args.genai_every).SerializeToString()
        for seed in range(args.requests)
    ]
    pricer = Pricer(PricingOptions.from_settings())
    enrichers = {
        tree: Enricher(
            pricer, PrometheusRecorder.for_registry(CollectorRegistry()), tree_spans=tree
        )
        for tree in (False, True)
    }
    for enricher in enrichers.values():  # warm the price cache and the code paths
        per_request_us(enricher, payloads, 1)
    found = enrichers[True].enrich(ExportTraceServiceRequest.FromString(payloads[0]))
    times: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(args.rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)
        for tree in order:
            times[tree].append(per_request_us(enrichers[tree], payloads, args.repeat))
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(
        f"512-span requests, 1 GenAI span in {args.genai_every}; tree spans found in one: "
        f"{len(found.tree)}"
    )
    print(f"enrich, tree spans off: {off:8.1f} us/request")
    print(f"enrich, tree spans on:  {on:8.1f} us/request   ratio on/off {on / off:.2f}")


if __name__ == "__main__":
    main()
