"""OTLP load for the collector benchmarks: payloads, a counting sink, a load generator.

Everything that sends or receives runs in its own process (``spawn``ed, so no gRPC state is
forked), so the collector under test never shares a GIL or a CPU queue with the load it measures
more than the machine forces it to.

* ``genai_batch`` / ``payloads``: pre-serialized ``ExportTraceServiceRequest`` bytes, 512 spans
  each, 10 % of them GenAI client spans with realistic attributes (provider, model, token
  counts), the rest HTTP and database spans; building them is never part of a measurement.
* ``Sink``: an OTLP gRPC TraceService in its own process that counts the spans it receives
  (one upb parse per request, no decoding of values) into a shared counter.
* ``Load``: one process running ``streams`` concurrent gRPC calls in a loop (grpc.aio),
  counting the spans the collector accepted (an OK answer); on RESOURCE_EXHAUSTED or
  UNAVAILABLE it backs off 50 ms and sends the same batch again, as an SDK exporter would.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import random
import socket
import time
from concurrent import futures
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

HOST = "127.0.0.1"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
BATCH = 512
# Sized for the biggest batch a collector may forward (Rotel merges up to 8192 spans).
MAX_MESSAGE = 64 * 1024 * 1024
SPAWN = mp.get_context("spawn")

MODELS = (
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
    ("aws.bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0", None),
    ("gcp.gemini", "gemini-2.5-flash", "gemini-2.5-flash"),
)
SERVICES = ("checkout", "search", "support-bot", "recommendations")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, timeout: float = 20.0, process: Any = None) -> None:
    """Return once 127.0.0.1:port accepts connections; RuntimeError on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {timeout}s")


# --- payloads -------------------------------------------------------------------------------------
def _kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


def genai_attributes(rng: random.Random, model: str | None = None) -> list[KeyValue]:
    """What an instrumented chat call carries (OpenTelemetry GenAI semantic conventions)."""
    provider, request_model, response_model = rng.choice(MODELS)
    if model is not None:
        request_model, response_model = model, model
    attributes = [
        _kv("gen_ai.operation.name", "chat"),
        _kv("gen_ai.provider.name", provider),
        _kv("gen_ai.request.model", request_model),
        _kv("gen_ai.request.max_tokens", 1024),
        _kv("gen_ai.request.temperature", 0.2),
        _kv("gen_ai.usage.input_tokens", rng.randint(50, 8000)),
        _kv("gen_ai.usage.output_tokens", rng.randint(10, 1500)),
        _kv("gen_ai.response.id", f"chatcmpl-{rng.getrandbits(64):016x}"),
        _kv("server.address", f"api.{provider}.example"),
    ]
    if response_model:
        attributes.append(_kv("gen_ai.response.model", response_model))
    if rng.random() < 0.3:
        attributes.append(_kv("gen_ai.usage.cache_read.input_tokens", rng.randint(0, 2000)))
    return attributes


def _plain_attributes(
    rng: random.Random, index: int
) -> tuple[str, Span.SpanKind.ValueType, list[KeyValue]]:
    if index % 3 == 0:
        statement = "SELECT id, price FROM items WHERE sku = $1"
        return (
            "SELECT items",
            Span.SpanKind.SPAN_KIND_CLIENT,
            [
                _kv("db.system.name", "postgresql"),
                _kv("db.query.text", statement),
                _kv("db.collection.name", "items"),
                _kv("server.address", "db.internal"),
                _kv("server.port", 5432),
            ],
        )
    route = rng.choice(("/v1/items/{id}", "/v1/cart", "/v1/search", "/healthz"))
    return (
        f"GET {route}",
        Span.SpanKind.SPAN_KIND_SERVER,
        [
            _kv("http.request.method", "GET"),
            _kv("http.route", route),
            _kv("url.path", route.replace("{id}", str(rng.randint(1, 10**6)))),
            _kv("http.response.status_code", rng.choice((200, 200, 200, 404, 500))),
            _kv("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) bench/1.0"),
            _kv("network.protocol.version", "1.1"),
        ],
    )


def genai_batch(
    seed: int, *, spans: int = BATCH, genai_every: int = 10, model: str | None = None
) -> ExportTraceServiceRequest:
    """One export request: ``spans`` spans of one service, every ``genai_every``-th a GenAI call
    (``model`` forces its model name), in traces of 8 spans."""
    rng = random.Random(seed)  # noqa: S311 - benchmark data, not secrets
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        [
            _kv("service.name", SERVICES[seed % len(SERVICES)]),
            _kv("service.version", "2.4.1"),
            _kv("deployment.environment.name", "production"),
            _kv("telemetry.sdk.language", "go"),
            _kv("host.name", f"node-{seed % 7}"),
        ]
    )
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "bench.instrumentation"
    scope_spans.scope.version = "1.0.0"
    start = time.time_ns() - 60 * 10**9
    trace_id = b""
    for index in range(spans):
        if index % 8 == 0:
            trace_id = rng.getrandbits(128).to_bytes(16, "big")
        span = scope_spans.spans.add()
        span.trace_id = trace_id
        span.span_id = rng.getrandbits(64).to_bytes(8, "big")
        if index % 8:
            span.parent_span_id = scope_spans.spans[index - index % 8].span_id
        span.start_time_unix_nano = start + index * 1000
        span.end_time_unix_nano = span.start_time_unix_nano + rng.randint(10**5, 2 * 10**9)
        if index % genai_every == genai_every - 1:
            span.kind = Span.SpanKind.SPAN_KIND_CLIENT
            attributes = genai_attributes(rng, model)
            span.name = f"chat {attributes[2].value.string_value}"
            span.attributes.extend(attributes)
        else:
            name, kind, plain = _plain_attributes(rng, index)
            span.name, span.kind = name, kind
            span.attributes.extend(plain)
    return request


def payloads(count: int = 16) -> list[bytes]:
    """``count`` distinct serialized batches (distinct ids, services, token counts)."""
    return [genai_batch(seed).SerializeToString() for seed in range(count)]


def count_spans(payload: bytes) -> int:
    """Spans in a serialized request: one C (upb) parse, no attribute decoding in Python."""
    request = ExportTraceServiceRequest.FromString(payload)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


# --- the counting sink ----------------------------------------------------------------------------
_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()


def _sink_main(port: int, counter: Synchronized, ready: Any, stop: Any) -> None:  # type: ignore[type-arg]
    def export(payload: bytes, context: grpc.ServicerContext) -> bytes:
        spans = count_spans(payload)
        with counter.get_lock():
            counter.value += spans
        return _EMPTY_RESPONSE

    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)},  # bytes in, bytes out
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        handlers=[handler],
        options=[("grpc.max_receive_message_length", MAX_MESSAGE)],
    )
    server.add_insecure_port(f"{HOST}:{port}")
    server.start()
    ready.set()
    stop.wait()
    server.stop(grace=1).wait()


class Sink:
    """The counting OTLP gRPC sink, in its own process; ``spans`` is the running total."""

    def __init__(self) -> None:
        self.port = free_port()
        self._counter: Synchronized = SPAWN.Value("q", 0)  # type: ignore[type-arg]
        self._ready = SPAWN.Event()
        self._stop = SPAWN.Event()
        self._process = SPAWN.Process(
            target=_sink_main,
            args=(self.port, self._counter, self._ready, self._stop),
            name="otlp-sink",
            daemon=True,
        )

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    @property
    def spans(self) -> int:
        return int(self._counter.value)

    def start(self) -> Sink:
        self._process.start()
        if not self._ready.wait(30):
            self.stop()
            raise RuntimeError("the sink did not start")
        wait_listening(self.port)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def wait_for(self, total: int, timeout: float) -> bool:
        """True once the sink has counted ``total`` spans (a collector has drained)."""
        deadline = time.monotonic() + timeout
        while self.spans < total:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the load generator ---------------------------------------------------------------------------
async def _send_loop(
    *,
    endpoint: str,
    batches: list[tuple[bytes, int]],
    streams: int,
    limit: int | None,
    accepted: Synchronized,  # type: ignore[type-arg]
    refused: Synchronized,  # type: ignore[type-arg]
    stop: Any,
) -> None:
    """Sends batches on ``streams`` concurrent calls until ``stop`` is set (or, with ``limit``,
    until ``limit`` batches went), adding accepted spans and refusals to the shared counters."""
    next_index = 0
    options = [("grpc.max_send_message_length", MAX_MESSAGE)]
    async with grpc.aio.insecure_channel(endpoint, options=options) as channel:
        # No serializers: bytes in, bytes out, no (de)serialization cost in the generator.
        export = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)

        async def stream() -> None:
            nonlocal next_index
            while not stop.is_set():
                if limit is not None and next_index >= limit:
                    return
                payload, spans = batches[next_index % len(batches)]
                next_index += 1
                while True:
                    try:
                        await export(payload, timeout=60)
                        break
                    except grpc.aio.AioRpcError as error:
                        # Back-pressure: retry the same batch, as an SDK exporter would.
                        if error.code() not in (
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            grpc.StatusCode.UNAVAILABLE,
                        ):
                            raise
                        with refused.get_lock():
                            refused.value += 1
                        await asyncio.sleep(0.05)
                with accepted.get_lock():
                    accepted.value += spans

        await asyncio.gather(*(stream() for _ in range(streams)))


def _load_main(
    *,
    endpoint: str,
    batches: list[tuple[bytes, int]],
    streams: int,
    limit: int | None,
    accepted: Synchronized,  # type: ignore[type-arg]
    refused: Synchronized,  # type: ignore[type-arg]
    stop: Any,
) -> None:
    # An error other than back-pressure ends the process with its traceback on stderr and a
    # non-zero exit code, which Load.check() turns into a failed run.
    asyncio.run(
        _send_loop(
            endpoint=endpoint,
            batches=batches,
            streams=streams,
            limit=limit,
            accepted=accepted,
            refused=refused,
            stop=stop,
        )
    )


class Load:
    """Load generator processes, each with ``streams`` concurrent Export calls to ``endpoint``,
    sending until ``stop()`` (or ``limit`` batches per process). ``accepted`` (spans answered
    OK) and ``refused`` (back-pressure answers, retried) are running totals."""

    def __init__(
        self,
        endpoint: str,
        batches: list[bytes],
        *,
        processes: int = 1,
        streams: int = 4,
        limit: int | None = None,
    ) -> None:
        counted = [(payload, count_spans(payload)) for payload in batches]
        self._accepted: Synchronized = SPAWN.Value("q", 0)  # type: ignore[type-arg]
        self._refused: Synchronized = SPAWN.Value("q", 0)  # type: ignore[type-arg]
        self._stop = SPAWN.Event()
        self._processes = [
            SPAWN.Process(
                target=_load_main,
                kwargs={
                    "endpoint": endpoint,
                    "batches": counted[n::processes] or counted,
                    "streams": streams,
                    "limit": limit,
                    "accepted": self._accepted,
                    "refused": self._refused,
                    "stop": self._stop,
                },
                name=f"otlp-load-{n}",
                daemon=True,
            )
            for n in range(processes)
        ]

    @property
    def accepted(self) -> int:
        return int(self._accepted.value)

    @property
    def refused(self) -> int:
        return int(self._refused.value)

    def start(self) -> Load:
        for process in self._processes:
            process.start()
        return self

    def check(self) -> None:
        """RuntimeError if a generator failed (an error other than back-pressure)."""
        failed = [p.exitcode for p in self._processes if p.exitcode not in (None, 0)]
        if failed:
            self.stop()
            raise RuntimeError(f"a load generator failed (exit codes {failed}; see its stderr)")

    def running(self) -> bool:
        return any(process.is_alive() for process in self._processes)

    def stop(self, timeout: float = 120) -> None:
        """Asks the generators to stop and waits for their calls in flight to finish."""
        self._stop.set()
        for process in self._processes:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB (``/proc/PID/status``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))
