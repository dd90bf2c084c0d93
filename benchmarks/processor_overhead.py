"""Per-span cost of ``LLMSpanProcessor`` next to a bare OpenTelemetry SDK span lifecycle.

Variants, each its own ``TracerProvider``:

  a  bare       ``TracerProvider()`` with no span processor
  e  empty      + a ``SpanProcessor()`` that does nothing: the floor of any processor
  b  llm        + ``LLMSpanProcessor(registry=CollectorRegistry())`` (no downstream)
  c  llm+noop   + ``LLMSpanProcessor(NoopProcessor(), registry=...)`` (the priced copy is built)

each timed for a GenAI chat span and for a plain (HTTP-like) span as
``tracer.start_span(name, attributes=...)`` then ``span.end()`` -- the GenAI span is a foreign
one, as another library makes it -- and for an ``own`` span: the same call made by otel-llm's
``CallSpan`` (as ``llm_call`` and the instrumentors make it: started, response and usage set in
one call, ended), which ``LLMSpanProcessor`` prices on the live span before it ends when it is
its provider's only processor (variant c; no copy), and which variant a measures without any
processor (so CallSpan's own cost is in the base); and for an ``in-trace`` span: the plain span
as a child of a request's root span under which an LLM call has ended, as most spans of an
application at work end (the processor then keeps the trace's roll-up and the call's note for
its parent open till the root ends, and looks each ending span up in them).

Shared machines are noisy, so the variants are interleaved: every round times every
(variant, span) cell once, in an order rotated from round to round, and each cell is summarised
by its median and minimum over the rounds. The overheads the targets are about:

  GenAI overhead = (b_genai - a_genai) / a_genai     target <= 30 %
  plain overhead = (b_plain - a_plain) / a_plain     target <= 3 %
  floor          = (e - a) / a, printed beside them
  own spans      = (b - a) / a and (c - a) / a of the ``own`` kind, printed (no target of
                   their own: the GenAI target is about the foreign span)
  in a trace     = (b - a) / a of the ``in-trace`` kind, printed (no target)

Run from the repository root: ``.venv/bin/python benchmarks/processor_overhead.py``
(``--help`` for the options). ``PYTHONPATH=/some/copy`` measures another copy of ``otel_llm``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import Tracer, set_span_in_context
from prometheus_client import CollectorRegistry

import otel_llm
from otel_llm import LLMSpanProcessor
from otel_llm.lifecycle import CallSpan

SpanShape = tuple[str, dict[str, Any]]

GENAI_SPAN: SpanShape = (
    "chat gpt-4o-mini",
    {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 300,
        "gen_ai.usage.cache_read.input_tokens": 400,
    },
)
PLAIN_SPAN: SpanShape = ("GET /v1/items", {"http.request.method": "GET", "url.path": "/v1/items"})
OWN = "own"
"""The name of the ``own`` kind: ``run_spans`` makes it with ``CallSpan``."""
OWN_SPAN: SpanShape = (OWN, {})
IN_TRACE = "in-trace"
"""The name of the ``in-trace`` kind: ``run_spans`` makes it as a child of ``open_trace``'s root."""
SPANS: dict[str, SpanShape] = {
    "genai": GENAI_SPAN,
    "plain": PLAIN_SPAN,
    OWN: OWN_SPAN,
    IN_TRACE: (IN_TRACE, PLAIN_SPAN[1]),
}
_OWN_START = {name: GENAI_SPAN[1][name] for name in list(GENAI_SPAN[1])[:3]}
_OWN_USAGE = {"input_tokens": 1200, "output_tokens": 300, "cache_read_tokens": 400}

TARGETS = {"genai": 0.30, "plain": 0.03}
WARMUP_SPANS = 2_000

# Prometheus names the processor documents; used to check it really priced and recorded.
COST_METRIC = "gen_ai_client_cost_usd_total"
ERRORS_METRIC = "otel_llm_processor_errors_total"
COST_ATTRIBUTE = "gen_ai.usage.cost.amount"


class NoopProcessor(SpanProcessor):
    """A downstream that does nothing."""

    def on_end(self, span: ReadableSpan) -> None:
        pass


@dataclass
class Variant:
    key: str
    label: str
    tracer: Tracer
    in_trace: Tracer
    """The in-trace kind's own provider and processor: the trace it keeps open would send the
    other kinds' spans the way of spans in an open trace too."""
    registry: CollectorRegistry | None = None
    downstream: NoopProcessor | None = None

    def tracer_for(self, kind: str) -> Tracer:
        return self.in_trace if kind == IN_TRACE else self.tracer


def make_variants(with_downstream: bool) -> list[Variant]:
    def tracer(processor: SpanProcessor | None) -> Tracer:
        provider = TracerProvider(shutdown_on_exit=False)
        if processor is not None:
            provider.add_span_processor(processor)
        return provider.get_tracer("otel-llm-benchmark")

    def llm(*downstream: SpanProcessor) -> Tracer:
        return tracer(LLMSpanProcessor(*downstream, registry=CollectorRegistry()))

    variants = [
        Variant("a", "bare SDK", tracer(None), tracer(None)),
        Variant("e", "+ empty SpanProcessor", tracer(SpanProcessor()), tracer(SpanProcessor())),
    ]
    registry = CollectorRegistry()
    variants.append(
        Variant(
            "b", "+ LLMSpanProcessor", tracer(LLMSpanProcessor(registry=registry)), llm(), registry
        )
    )
    if with_downstream:
        registry, noop = CollectorRegistry(), NoopProcessor()
        variants.append(
            Variant(
                "c",
                "+ LLMSpanProcessor(noop)",
                tracer(LLMSpanProcessor(noop, registry=registry)),
                llm(NoopProcessor()),
                registry,
                noop,
            )
        )
    return variants


# ``--clock cpu``: this thread's CPU time, which time slices lost to other processes on a busy
# machine do not inflate (everything timed runs on this thread: no exporter, no threads).
CLOCKS = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}
CLOCK = [time.perf_counter_ns]


_OPEN_TRACES: dict[int, Context] = {}


def open_trace(tracer: Tracer) -> Context:
    """A context inside a root span that never ends, under which a GenAI span has ended."""
    context = _OPEN_TRACES.get(id(tracer))
    if context is None:
        context = set_span_in_context(tracer.start_span("POST /v1/answers"))
        name, attributes = GENAI_SPAN
        tracer.start_span(name, context=context, attributes=attributes).end()
        _OPEN_TRACES[id(tracer)] = context
    return context


def run_spans(tracer: Tracer, name: str, attributes: Mapping[str, Any], count: int) -> int:
    """Nanoseconds for ``count`` span lifecycles."""
    clock = CLOCK[0]
    if name == IN_TRACE:
        start_span, context, name = tracer.start_span, open_trace(tracer), PLAIN_SPAN[0]
        begin = clock()
        for _ in range(count):
            start_span(name, context=context, attributes=attributes).end()
        return clock() - begin
    if name == OWN:
        start = CallSpan.start
        model = _OWN_START["gen_ai.request.model"]
        begin = clock()
        for _ in range(count):
            call = start(tracer, "chat", model, _OWN_START)
            call.set_response_and_usage(model="gpt-4o-mini-2024-07-18", usage=_OWN_USAGE)
            call.end()
        return clock() - begin
    start_span = tracer.start_span
    begin = clock()
    for _ in range(count):
        start_span(name, attributes=attributes).end()
    return clock() - begin


def check_processor(variant: Variant) -> None:
    """Fail loudly if the processor did not price and record (a failing one looks cheap)."""
    if variant.registry is None:
        return
    cost = errors = 0.0
    for metric in variant.registry.collect():
        for sample in metric.samples:
            if sample.name == COST_METRIC:
                cost += sample.value
            elif sample.name == ERRORS_METRIC:
                errors += sample.value
    problems = []
    if errors:
        problems.append(f"{errors:g} processor errors recorded")
    if cost <= 0:
        problems.append(f"no cost recorded in {COST_METRIC}")
    if variant.downstream is not None:
        # Capture one span: the instance attribute shadows the (empty) method, then goes away.
        received: list[ReadableSpan] = []
        variant.downstream.on_end = received.append  # type: ignore[method-assign,assignment]
        try:
            name, attributes = GENAI_SPAN
            run_spans(variant.tracer, name, attributes, 1)
        finally:
            del variant.downstream.on_end
        if not received or not (received[-1].attributes or {}).get(COST_ATTRIBUTE):
            problems.append(f"the downstream span has no {COST_ATTRIBUTE}")
    if problems:
        sys.exit(
            f"variant {variant.key} ({variant.label}) does not measure the priced path: "
            + "; ".join(problems)
        )


def measure(variants: list[Variant], spans: int, rounds: int) -> dict[tuple[str, str], list[float]]:
    """Per-span microseconds of every (variant, span kind) cell, one value per round."""
    cells = [(variant, kind) for variant in variants for kind in SPANS]
    for variant, kind in cells:
        name, attributes = SPANS[kind]
        run_spans(variant.tracer_for(kind), name, attributes, WARMUP_SPANS)
    for variant in variants:
        check_processor(variant)

    results: dict[tuple[str, str], list[float]] = {(v.key, kind): [] for v, kind in cells}
    gc_was_enabled = gc.isenabled()
    try:
        for round_ in range(rounds):
            shift = round_ % len(cells)
            for variant, kind in cells[shift:] + cells[:shift]:
                name, attributes = SPANS[kind]
                gc.enable()
                gc.collect()
                gc.disable()
                elapsed = run_spans(variant.tracer_for(kind), name, attributes, spans)
                results[(variant.key, kind)].append(elapsed / spans / 1000)
    finally:
        if gc_was_enabled:
            gc.enable()
    return results


def overhead(
    results: dict[tuple[str, str], list[float]], kind: str, base: str = "a", other: str = "b"
) -> dict[str, float]:
    """Relative overhead of ``other`` over ``base`` for one span kind, three ways."""
    base_us, other_us = results[(base, kind)], results[(other, kind)]
    paired = [(o - b) / b for b, o in zip(base_us, other_us, strict=True)]
    return {
        "median": statistics.median(other_us) / statistics.median(base_us) - 1,
        "min": min(other_us) / min(base_us) - 1,
        "paired_median": statistics.median(paired),
    }


def verdict(value: float, target: float) -> str:
    if value <= target:
        return "target met"
    return f"target missed by {(value - target) * 100:.1f} points"


def summary(
    variants: list[Variant], results: dict[tuple[str, str], list[float]], spans: int, rounds: int
) -> dict[str, Any]:
    cells = {
        f"{key}_{kind}": {
            "median_us": statistics.median(values),
            "min_us": min(values),
            "rounds_us": values,
        }
        for (key, kind), values in results.items()
    }
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "opentelemetry_sdk": metadata.version("opentelemetry-sdk"),
        "prometheus_client": metadata.version("prometheus-client"),
        "otel_llm": {"version": otel_llm.__version__, "path": otel_llm.__file__},
        "spans_per_round": spans,
        "rounds": rounds,
        "variants": {v.key: v.label for v in variants},
        "cells": cells,
        "overhead": {},
    }
    for kind, target in TARGETS.items():
        ratios = overhead(results, kind)
        added_us = statistics.median(results[("b", kind)]) - statistics.median(results[("a", kind)])
        report["overhead"][kind] = {
            **ratios,
            "added_us_median": added_us,
            "target": target,
            "met": ratios["median"] <= target,
        }
    report["floor"] = {kind: overhead(results, kind, other="e")["median"] for kind in SPANS}
    report["own"] = {
        "a_us": statistics.median(results[("a", OWN)]),
        **{
            v.key: overhead(results, OWN, other=v.key)["median"]
            for v in variants
            if v.key in ("b", "c")
        },
    }
    report["in_trace"] = overhead(results, IN_TRACE)["median"]
    if any(v.key == "c" for v in variants):
        report["priced_copy_and_downstream_us"] = {
            kind: statistics.median(results[("c", kind)]) - statistics.median(results[("b", kind)])
            for kind in SPANS
        }
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"otel-llm processor overhead -- Python {report['python']}, "
        f"opentelemetry-sdk {report['opentelemetry_sdk']}, "
        f"prometheus_client {report['prometheus_client']}"
    )
    print(f"otel_llm {report['otel_llm']['version']} from {report['otel_llm']['path']}")
    print(
        f"{report['spans_per_round']} spans per cell per round, {report['rounds']} rounds, "
        "interleaved; GC off while timing\n"
    )
    print(f"{'per-span cost (µs)':<38}{'median':>9}{'min':>9}")
    for key, label in report["variants"].items():
        for kind in SPANS:
            cell = report["cells"][f"{key}_{kind}"]
            name = f"{key}) {label}, {kind}"
            print(f"  {name:<36}{cell['median_us']:>9.2f}{cell['min_us']:>9.2f}")
    print()
    for kind, title in (("genai", "GenAI overhead"), ("plain", "plain overhead")):
        o = report["overhead"][kind]
        print(
            f"{title} (b-a)/a: {o['median'] * 100:+.1f}% median "
            f"({o['min'] * 100:+.1f}% min, {o['paired_median'] * 100:+.1f}% paired), "
            f"+{o['added_us_median']:.2f} µs/span; target <= {o['target'] * 100:.0f}%: "
            f"{verdict(o['median'], o['target'])}"
        )
    own = report.get("own")
    if own:
        print(
            f"own spans (CallSpan): b {own['b'] * 100:+.1f}%, "
            + (f"c {own['c'] * 100:+.1f}% " if "c" in own else "")
            + f"median over a) {own['a_us']:.2f} µs"
        )
    print(
        f"plain span in an open trace (b-a)/a: {report['in_trace'] * 100:+.1f}% median (no target)"
    )
    floor = report["floor"]
    print(
        f"empty-processor floor (e-a)/a: genai {floor['genai'] * 100:+.1f}%, "
        f"plain {floor['plain'] * 100:+.1f}% median"
    )
    copy = report.get("priced_copy_and_downstream_us")
    if copy:
        print(
            f"priced copy + downstream calls (c-b): genai {copy['genai']:+.2f} µs, "
            f"plain {copy['plain']:+.2f} µs"
        )


def profile_genai(spans: int, limit: int = 25) -> str:
    """cProfile of GenAI spans through variant b, sorted by own time."""
    registry = CollectorRegistry()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(LLMSpanProcessor(registry=registry))
    tracer = provider.get_tracer("otel-llm-benchmark")
    name, attributes = GENAI_SPAN
    run_spans(tracer, name, attributes, WARMUP_SPANS)
    profiler = cProfile.Profile()
    profiler.enable()
    run_spans(tracer, name, attributes, spans)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(limit)
    return out.getvalue()


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=positive, default=10_000, help="spans per cell per round")
    parser.add_argument("--rounds", type=positive, default=7, help="interleaved rounds")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: perf_counter (default); cpu: the thread's CPU time, steadier on a busy machine",
    )
    parser.add_argument(
        "--no-downstream", action="store_true", help="skip variant c (no-op downstream)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, print a cProfile of --spans GenAI spans through variant b",
    )
    args = parser.parse_args(argv)
    CLOCK[0] = CLOCKS[args.clock]

    variants = make_variants(with_downstream=not args.no_downstream)
    results = measure(variants, args.spans, args.rounds)
    report = summary(variants, results, args.spans, args.rounds)
    if args.json:
        if args.profile:
            report["profile"] = profile_genai(args.spans)
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_report(report)
        if args.profile:
            print("\n" + profile_genai(args.spans))
    return 0


if __name__ == "__main__":
    sys.exit(main())
