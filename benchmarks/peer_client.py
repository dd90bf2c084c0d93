"""One long-lived client process of ``peer_overhead.py``, run in a variant's own virtualenv.

    python -I peer_client.py VARIANT BASE_URL

Sets up an SDK TracerProvider (BatchSpanProcessor to an exporter that drops everything) and a
MeterProvider (a pull reader nobody collects, so every instrument records but nothing exports),
instruments the ``openai`` client with the variant's library, then answers commands read from
stdin, one JSON object a line, each with one JSON line on stdout prefixed ``@@peer `` (other
stdout lines, from a library that prints, are not replies):

* ``{"kind": "chat" | "stream", "calls": N, "processor": true | false}``: N chat calls in a row
  (``stream``: with ``stream=True`` and usage, every chunk read); the reply gives the wall and CPU
  (``time.process_time_ns``: every thread of this process, the BatchSpanProcessor's included)
  nanoseconds they took. ``processor`` matters for ``otel-llm`` only: false takes
  ``LLMSpanProcessor`` off the provider for these calls (the A/B of the processor's share).

  With ``"canned": true`` no request is made: the wrapper the variant's library put on
  ``Completions.create`` is called directly, with a stand-in for the SDK's method that returns
  a canned ``ChatCompletion`` (or a ``Stream`` of canned chunks: role, 8 deltas, finish, usage),
  the figures of the fake server's answer. What is timed is then the instrumentation alone,
  without the client's own ~1.5-3 ms of CPU and the noise that comes with it; OpenLIT's httpx
  spans are not made (no HTTP).

* ``{"check": true}``: flushes the spans and replies how many were exported, by name, and how
  many carry a cost attribute (the sanity check after the warm-up).

The first reply, before any command, is the versions of what was imported.

Variants: ``bare`` (no instrumentation), ``otel-llm``, ``official``
(opentelemetry-instrumentation-openai-v2), ``openllmetry`` (traceloop's
opentelemetry-instrumentation-openai), ``openlit``. Content capture is off in every one (each
library's own switch), as it is by default in otel-llm and the official instrumentation.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

DISTRIBUTIONS = (
    "openai",
    "httpx",
    "httpx2",
    "pydantic",
    "wrapt",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai",
    "opentelemetry-instrumentation-openai",
    "opentelemetry-semantic-conventions-ai",
    "openlit",
    "otel-llm",
    "genai-prices",
    "prometheus-client",
)
MESSAGES = [{"role": "user", "content": "Say hi"}]


class DropExporter(SpanExporter):
    """Exports nothing: the batch processor's own work stays, no I/O is added. It counts what
    it was given, so that a library that fails to instrument cannot pass for a cheap one."""

    def __init__(self) -> None:
        self.spans = 0
        self.names: dict[str, int] = {}
        self.costed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        for span in spans:
            self.names[span.name] = self.names.get(span.name, 0) + 1
            attributes = span.attributes or {}
            if any("cost" in key for key in attributes):
                self.costed += 1
        return SpanExportResult.SUCCESS


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write("@@peer " + json.dumps(message) + "\n")
    sys.stdout.flush()


def versions() -> dict[str, Any]:
    found: dict[str, Any] = {"python": platform.python_version()}
    for name in DISTRIBUTIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def instrument(
    variant: str, provider: TracerProvider, meter_provider: MeterProvider, exporter: DropExporter
) -> Any:
    """Instruments openai with the variant's library. Returns what to report, and for otel-llm
    the provider's multi-processor with its two tuples for the A/B (with and without
    ``LLMSpanProcessor``)."""
    batch = BatchSpanProcessor(exporter)
    if variant == "otel-llm":
        from prometheus_client import CollectorRegistry

        import otel_llm
        from otel_llm import LLMSpanProcessor
        from otel_llm.instrumentation.openai import OpenAIInstrumentor

        # A private registry, as a process that serves /metrics has one; 7 metrics recorded.
        provider.add_span_processor(LLMSpanProcessor(batch, registry=CollectorRegistry()))
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        multi = provider._active_span_processor
        arms = (multi, multi._span_processors, (batch,))
        return {"otel_llm_path": os.path.dirname(otel_llm.__file__)}, arms
    provider.add_span_processor(batch)
    if variant == "official":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as Official

        Official().instrument(tracer_provider=provider, meter_provider=meter_provider)
    elif variant == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as Traceloop

        Traceloop().instrument(tracer_provider=provider, meter_provider=meter_provider)
    elif variant == "openlit":
        import openlit

        # A local price table with the model called: openlit fetches one from the network
        # otherwise, and prices the call as a user's would be (USD per 1,000 tokens).
        prices = os.path.join(tempfile.mkdtemp(), "pricing.json")
        entry = {"promptPrice": 0.00015, "completionPrice": 0.0006, "cacheReadPrice": 0.000075}
        table = {"chat": {"gpt-4o-mini": entry, "gpt-4o-mini-2024-07-18": entry}}
        with open(prices, "w") as file:
            json.dump({**table, "embeddings": {}, "images": {}, "audio": {}}, file)
        # The global providers set above are reused (openlit.init takes none as arguments).
        openlit.init(
            pricing_json=prices,
            capture_message_content=False,
            collect_gpu_stats=False,
        )
    elif variant != "bare":
        raise SystemExit(f"unknown variant {variant}")
    return {}, None


def canned_call(client: Any) -> Any:
    """``call(stream)`` through the instrumentation's wrapper of ``Completions.create``, with a
    stand-in for the SDK's method that answers at once (see the module docstring)."""
    import openai
    from openai.resources.chat.completions import Completions
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 400},
    }
    common = {"id": "chatcmpl-1", "created": 1, "model": "gpt-4o-mini-2024-07-18"}
    completion = ChatCompletion.model_validate(
        {
            **common,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "Hello! How can I help?"},
                }
            ],
            "usage": usage,
        }
    )

    def chunk(choices: list[Any], **extra: Any) -> Any:
        body = {**common, "object": "chat.completion.chunk", "choices": choices, **extra}
        return ChatCompletionChunk.model_validate(body)

    def choice(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "finish_reason": reason}

    chunks = [
        chunk([choice({"role": "assistant", "content": ""})]),
        *(chunk([choice({"content": f"word{i} "})]) for i in range(8)),
        chunk([choice({}, "stop")]),
        chunk([], usage=usage),
    ]

    class CannedStream(openai.Stream):  # type: ignore[type-arg]
        def __init__(self) -> None:  # the SDK's needs a response; this one has none
            self._iterator = iter(chunks)

        def __next__(self) -> Any:
            return next(self._iterator)

        def __iter__(self) -> Any:
            yield from self._iterator

        def close(self) -> None:
            pass

    def sdk(*args: Any, **kwargs: Any) -> Any:
        return CannedStream() if kwargs.get("stream") else completion

    class Resource:  # what the wrappers read of ``self``: the client (base URL, class)
        _client = client

    wrapper = getattr(vars(Completions)["create"], "_self_wrapper", None)
    resource = Resource()

    def create(**kwargs: Any) -> Any:
        if wrapper is None:  # bare
            return sdk(**kwargs)
        return wrapper(sdk, resource, (), kwargs)

    def call(stream: bool) -> None:
        if stream:
            chunks = create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
            for _ in chunks:
                pass
        else:
            create(model="gpt-4o-mini", messages=MESSAGES)

    return call


def main() -> None:
    variant, base_url = sys.argv[1], sys.argv[2]
    # Content off everywhere: openllmetry records prompts and completions unless told not to
    # (otel-llm and the official instrumentation record none by default; openlit: see init).
    os.environ["TRACELOOP_TRACE_CONTENT"] = "false"
    provider = TracerProvider()
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(meter_provider)
    exporter = DropExporter()
    extra, arms = instrument(variant, provider, meter_provider, exporter)

    import openai

    client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0, timeout=30)

    def call(stream: bool) -> None:
        if stream:
            chunks = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
            for _ in chunks:
                pass
        else:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    canned = canned_call(client)
    reply({"versions": versions(), **extra})
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("check"):
            # What the calls so far exported (outside any timing: the flush exports at once).
            provider.force_flush()
            reply({"spans": exporter.spans, "names": exporter.names, "costed": exporter.costed})
            continue
        stream = command["kind"] == "stream"
        if arms is not None:
            multi, with_processor, without = arms
            # The SDK's multi-processor calls the processors in this tuple: swapping it is the
            # only way to take one out of a provider that already made the instrumentor's tracer.
            multi._span_processors = with_processor if command.get("processor", True) else without
        make = canned if command.get("canned") else call
        gc.collect()
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        for _ in range(command["calls"]):
            make(stream)
        cpu, wall = time.process_time_ns() - cpu, time.perf_counter_ns() - wall
        reply({"wall_ns": wall, "cpu_ns": cpu})
    provider.shutdown()


if __name__ == "__main__":
    main()
