"""Memory of the otel-llm collector service while 1,000,000 distinct model names arrive.

Every span is a GenAI span whose model name was never seen before (an attacker, or a bug that
puts a request id in the model name). The metric label limiter (``max_label_values``) and the
bounded price cache must keep the service's memory flat: the run prints the service's RSS
(``VmRSS`` of ``/proc/PID/status``) every 100,000 spans, then first / last / max and the growth.

    .venv/bin/python benchmarks/collector_memory.py
    .venv/bin/python benchmarks/collector_memory.py --spans 200000 --every 50000   # quicker

The service runs as ``python -m otel_llm collector`` in its own process, forwarding to a
counting OTLP sink (its own process); RSS is read once the sink has every span sent so far, so
the service has priced and forwarded them all.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time

from collector_throughput import otel_llm_available, otel_llm_service
from otlp_load import BATCH, Load, Sink, count_spans, genai_batch, rss_kib

PLACEHOLDER = "ft:gpt-4o-mini:acme:{:012d}"  # OpenAI's fine-tune naming; 12 digits: fixed length
_PLACEHOLDER_RE = re.compile(rb"ft:gpt-4o-mini:acme:(\d{12})")


def template() -> bytes:
    """One serialized batch of 512 GenAI spans, span ``j`` with model ``PLACEHOLDER.format(j)``
    (in its name and its request and response model attributes)."""
    request = genai_batch(0, genai_every=1, model=PLACEHOLDER.format(0))
    for index, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        model = PLACEHOLDER.format(index)
        span.name = f"chat {model}"
        for pair in span.attributes:
            if pair.key in {"gen_ai.request.model", "gen_ai.response.model"}:
                pair.value.string_value = model
    return request.SerializeToString()


def batch(template_payload: bytes, number: int) -> bytes:
    """Batch ``number``: the template with models ``number * 512 + j``. The replacement has the
    placeholder's length, so every protobuf length prefix stays valid."""
    prefix = PLACEHOLDER.split("{", 1)[0].encode()
    return _PLACEHOLDER_RE.sub(
        lambda match: b"%s%012d" % (prefix, number * BATCH + int(match[1])), template_payload
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000, help="distinct-model spans")
    parser.add_argument("--every", type=int, default=100_000, help="RSS every N spans")
    parser.add_argument("--streams", type=int, default=4, help="concurrent calls")
    parser.add_argument(
        "--max-growth-mib",
        type=float,
        default=32.0,
        help="growth from the first to the last checkpoint still called flat",
    )
    parser.add_argument(
        "--service-arg", action="append", default=[], help="extra `otel-llm collector` flag"
    )
    args = parser.parse_args(argv)
    missing = otel_llm_available()
    if missing:
        print(f"otel-llm collector: not available ({missing})")
        return 2

    base = template()
    assert len(batch(base, 10**6)) == len(base)
    assert count_spans(batch(base, 1)) == BATCH
    # The batch count after which RSS is read: each multiple of --every, and the end.
    marks = sorted({*range(args.every, args.spans, args.every), args.spans})
    checkpoints = [math.ceil(mark / BATCH) for mark in marks]
    samples: list[tuple[int, int]] = []
    with Sink() as sink, otel_llm_service(sink.endpoint, args.service_arg) as service:
        start_rss = rss_kib(service.pid)
        print(f"service pid {service.pid}: {start_rss / 1024:.1f} MiB before any span")
        sent_batches = 0
        started = time.monotonic()
        for end in checkpoints:
            chunk = [batch(base, number) for number in range(sent_batches, end)]
            load = Load(service.endpoint, chunk, streams=args.streams, limit=len(chunk)).start()
            while load.running():
                load.check()
                time.sleep(0.1)
            load.check()
            sent_batches = end
            if not sink.wait_for(sent_batches * BATCH, timeout=300):
                print(f"the sink has {sink.spans} of {sent_batches * BATCH} spans after 300 s")
                return 1
            rss = rss_kib(service.pid)
            samples.append((sent_batches * BATCH, rss))
            rate = sent_batches * BATCH / (time.monotonic() - started)
            print(
                f"{sent_batches * BATCH:>9,} spans ({sent_batches * BATCH:,} distinct models): "
                f"RSS {rss / 1024:7.1f} MiB   ({rate:,.0f} spans/s)",
                flush=True,
            )
    first, last = samples[0][1], samples[-1][1]
    peak = max(rss for _, rss in samples)
    growth = (last - first) / 1024
    print(
        f"RSS first {first / 1024:.1f} MiB, last {last / 1024:.1f} MiB, max {peak / 1024:.1f} MiB;"
        f" growth first->last {growth:+.1f} MiB ({(last - first) / first:+.1%}),"
        f" from start-up {(last - start_rss) / 1024:+.1f} MiB"
    )
    flat = growth <= args.max_growth_mib
    print(f"flat (growth <= {args.max_growth_mib} MiB): {'yes' if flat else 'NO'}")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
