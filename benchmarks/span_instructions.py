"""Instructions of a span lifecycle with and without ``LLMSpanProcessor``: counted, not timed.

    .venv/bin/python benchmarks/span_instructions.py                  # every kind of span
    PYTHONPATH=/other/checkout .venv/bin/python benchmarks/span_instructions.py   # an A/B

``processor_overhead.py`` times whole span lifecycles; on a shared machine its plain-span figure
moves by +-0.5 points from run to run, as much as a change to the plain span's hooks is worth.
This counts the machine instructions instead, which other processes do not change: each variant
of ``processor_overhead.py`` (bare SDK, an empty ``SpanProcessor``, ``LLMSpanProcessor`` with no
downstream) runs in its own process under Valgrind's callgrind, which counts only inside the
timed loop (``--toggle-collect`` on the ``itertools.starmap`` that drives it), with address
randomisation off and a fixed hash seed (``--seeds N``: seeds 0..N-1, the median): repeated
runs of one build agree within ~0.05 % (between builds, see the last paragraph).
``processor_hooks.py`` calls each hook through a bound method taken once; here the SDK looks
every hook up on every span, as in an application (which is how a no-op set on the instance
turned out dearer than a method, processor.py's ``_on_ending``).

An instruction count is a proxy: the interpreter's dictionary look-ups take more time per
instruction than the SDK's average, so the time overhead runs above the count's; and a change
anywhere in the program moves where objects and the interpreter's caches land, which moved the
plain span's count by up to ~1,500 instructions between builds with the same plain path (other
hash seeds move it by ~100): compare builds only by differences well above that. Needs Valgrind
(Debian ``valgrind``); not part of the test command.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {"a": "bare SDK", "e": "+ empty SpanProcessor", "b": "+ LLMSpanProcessor"}
KINDS = ("plain", "genai", "in-trace")
WARMUP_SPANS = 2_000
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def child(variant: str, kind: str, spans: int) -> None:
    """The measured process: warm up, then ``spans`` lifecycles inside ``starmap``."""
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from prometheus_client import CollectorRegistry

    from otel_llm import LLMSpanProcessor

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from processor_overhead import GENAI_SPAN, PLAIN_SPAN, open_trace

    provider = TracerProvider(shutdown_on_exit=False)
    if variant == "e":
        provider.add_span_processor(SpanProcessor())
    elif variant == "b":
        provider.add_span_processor(LLMSpanProcessor(registry=CollectorRegistry()))
    tracer = provider.get_tracer("otel-llm-benchmark")
    start_span = tracer.start_span
    name, attributes = GENAI_SPAN if kind == "genai" else PLAIN_SPAN
    # in-trace: processor_overhead.py's kind, a plain span in a trace where a call has ended.
    context = open_trace(tracer) if kind == "in-trace" else None

    def lifecycle() -> None:
        start_span(name, context=context, attributes=attributes).end()

    gc.disable()
    for _ in range(WARMUP_SPANS):
        lifecycle()
    for _ in itertools.starmap(lifecycle, itertools.repeat((), spans)):
        pass


def count(variant: str, kind: str, spans: int, seed: int = 0) -> float:
    """Instructions per span of one variant, from a callgrind run of ``child``."""
    # setarch -R: no address randomisation, so that a run repeats.
    prefix = ["setarch", platform.machine(), "-R"] if shutil.which("setarch") else []
    with tempfile.TemporaryDirectory() as directory:
        command = [
            *prefix,
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={directory}/out",
            "--toggle-collect=starmap_next",
            sys.executable,
            __file__,
            "--child",
            variant,
            kind,
            str(spans),
        ]
        environment = {**os.environ, "PYTHONHASHSEED": str(seed)}
        done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        sys.exit(f"callgrind run of variant {variant}, {kind} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1)) / spans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=5_000, help="spans counted per variant")
    parser.add_argument(
        "--seeds", type=int, default=1, help="hash seeds 0..N-1 per variant; the median is printed"
    )
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument(
        "--child", nargs=3, metavar=("VARIANT", "KIND", "SPANS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    import otel_llm

    print(f"otel_llm from {otel_llm.__file__}; instructions per span lifecycle, {args.spans} spans")
    for kind in args.kinds:
        counts = {
            variant: statistics.median(
                count(variant, kind, args.spans, seed) for seed in range(args.seeds)
            )
            for variant in VARIANTS
        }
        bare = counts["a"]
        for variant, label in VARIANTS.items():
            over = counts[variant] - bare
            print(
                f"  {kind:<6} {variant}) {label:<24}{counts[variant]:>10,.0f}{over:>+9,.0f}"
                f"{100 * over / bare:>+8.2f} %"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
