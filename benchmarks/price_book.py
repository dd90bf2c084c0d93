"""Micro-benchmark: ``PriceBook.price`` per call, warm (the entry resolved and cached).

    PYTHONPATH=/path/to/copy .venv/bin/python benchmarks/price_book.py [--calls N] [--rounds N]

Prints, per model, the median over rounds of µs per call -- ``price`` alone, and ``price`` plus
what the processor then does with the cost (the span's cost attributes). The models cover the
three kinds of price entry: flat (gpt-4o-mini), tiered (claude-sonnet-4-5 past 200k input
tokens) and time-varying (o3, whose price changed in 2025).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

import otel_llm
from otel_llm.call import LLMCall
from otel_llm.derive import Derived
from otel_llm.pricing import Cost, PriceBook

START_NS = 1_760_000_000 * 1_000_000_000  # October 2025


def _call(provider: str, model: str, input_tokens: int) -> LLMCall:
    return LLMCall(
        operation="chat",
        provider=provider,
        request_model=model,
        response_model=model,
        input_tokens=input_tokens,
        output_tokens=300,
        cache_read_tokens=400,
        cache_creation_tokens=None,
        reasoning_tokens=None,
        error_type=None,
        streaming=False,
        time_to_first_chunk=None,
        provider_cost=None,
        usage_missing=False,
        usage_rejected=False,
    )


CASES = {
    "flat gpt-4o-mini": _call("openai", "gpt-4o-mini", 1_200),
    "tiered claude-sonnet-4-5": _call("anthropic", "claude-sonnet-4-5", 250_000),
    "time-varying o3": _call("openai", "o3", 1_200),
}


def _time(calls: int, call: LLMCall, book: PriceBook, attributes: bool) -> float:
    price = book.price
    derived: Any = Derived(call, None, None, "", "", (), 0, [], START_NS)  # type: ignore[arg-type]
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        if attributes:
            for _ in range(calls):
                derived.priced = price(call, START_NS)
                derived.cost_attributes()
        else:
            for _ in range(calls):
                price(call, START_NS)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / calls / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    book = PriceBook()
    for call in CASES.values():
        assert isinstance(book.price(call, START_NS), Cost)  # resolves and warms
    print(f"otel_llm from {otel_llm.__file__}")
    results: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.rounds):
        for label, call in CASES.items():
            for attributes in (False, True):
                us = _time(args.calls, call, book, attributes)
                results.setdefault((label, attributes), []).append(us)
    print(f"{'case':28} {'price µs':>10} {'+ attributes µs':>16}")
    for label in CASES:
        alone = statistics.median(results[(label, False)])
        both = statistics.median(results[(label, True)])
        print(f"{label:28} {alone:10.3f} {both:16.3f}")


if __name__ == "__main__":
    main()
