"""The call log fed from the durable queue (issue 10, item 5): a call is in the log if and only
if its span was acknowledged, whatever happens to the collector in between.

Everything is real: the ``otel-llm collector`` CLI in a subprocess (SIGKILLed by the test), a
real OTLP receiver as its upstream, a real SQLite file or PostgreSQL database as its call log. A
load generator sends GenAI and plain spans over gRPC and HTTP and remembers exactly which span
ids were acknowledged; after each restart on the same queue and store, every acknowledged span
must reach the upstream and every acknowledged GenAI call must be in the log exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from prometheus_client import CollectorRegistry

from otel_llm.calllog import schema
from otel_llm.calllog.config import CallLogConfig
from otel_llm.calllog.service import CallLogService
from otel_llm.collector.config import CollectorConfig
from otel_llm.collector.service import CollectorService
from tests.support.collector_process import CollectorProcess
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.postgres import BACKENDS, empty_store_url, pg_cluster  # noqa: F401 - fixture

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
GENAI_EVERY = 3
"""Every third span is a GenAI call; the others are plain spans (forwarded, never logged)."""


def _text(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _int(key: str, value: int) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(int_value=value))


def is_call(span_id: int) -> bool:
    return span_id % GENAI_EVERY == 0


def export_request(first: int, count: int) -> bytes:
    """``count`` spans with span ids ``first`` .. ``first + count - 1`` (ids from 1)."""
    spans = []
    now = time.time_ns()
    for span_id in range(first, first + count):
        attributes = [_int("n", span_id)]
        if is_call(span_id):
            attributes += [
                _text("gen_ai.operation.name", "chat"),
                _text("gen_ai.provider.name", "openai"),
                _text("gen_ai.request.model", "gpt-4o-mini"),
                _int("gen_ai.usage.input_tokens", 100 + span_id % 50),
                _int("gen_ai.usage.output_tokens", 10),
            ]
        spans.append(
            Span(
                trace_id=span_id.to_bytes(16, "big"),
                span_id=span_id.to_bytes(8, "big"),
                name=f"span {span_id}",
                start_time_unix_nano=now - 1_000_000,
                end_time_unix_nano=now,
                attributes=attributes,
            )
        )
    resource = Resource(attributes=[_text("service.name", "durable")])
    message = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )
    return message.SerializeToString()


@dataclass
class Load:
    """Sends export requests over raw gRPC and HTTP/protobuf from a few threads; remembers the
    span ids of every request that was answered OK (and only those)."""

    spans_per_request: int = 30
    acknowledged: set[int] = field(default_factory=set)
    sent: set[int] = field(default_factory=set)
    """Every span id sent, answered or not (a request cut off by the SIGKILL may be stored)."""
    refused: int = 0
    _next: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take_ids(self) -> int:
        with self._lock:
            first, self._next = self._next, self._next + self.spans_per_request
            self.sent.update(range(first, self._next))
            return first

    def send_grpc(self, export: grpc.UnaryUnaryMultiCallable) -> None:
        first = self.take_ids()
        try:
            export(export_request(first, self.spans_per_request), timeout=5)
        except grpc.RpcError:
            self.count_refused()
            return
        self.acknowledge(first)

    def send_http(self, url: str) -> None:
        first = self.take_ids()
        body = export_request(first, self.spans_per_request)
        post = urllib.request.Request(  # noqa: S310 - http://127.0.0.1
            url, data=body, headers={"Content-Type": "application/x-protobuf"}
        )
        try:
            with urllib.request.urlopen(post, timeout=5) as response:  # noqa: S310
                if response.status != 200:
                    self.count_refused()
                    return
        except (OSError, urllib.error.URLError):
            self.count_refused()
            return
        self.acknowledge(first)

    def acknowledge(self, first: int) -> None:
        with self._lock:
            self.acknowledged.update(range(first, first + self.spans_per_request))

    def count_refused(self) -> None:
        with self._lock:
            self.refused += 1

    @property
    def calls(self) -> set[int]:
        with self._lock:
            return {span_id for span_id in self.acknowledged if is_call(span_id)}

    def run(self, collector: CollectorProcess, stop: threading.Event, threads: int = 4) -> None:
        """Sends from ``threads`` threads (half gRPC, half HTTP) until ``stop`` is set."""

        def grpc_loop() -> None:
            channel = grpc.insecure_channel(collector.grpc)
            export = channel.unary_unary(EXPORT)
            try:
                while not stop.is_set():
                    self.send_grpc(export)
            finally:
                channel.close()

        def http_loop() -> None:
            url = f"http://{collector.http}/v1/traces"
            while not stop.is_set():
                self.send_http(url)

        workers = [
            threading.Thread(target=grpc_loop if n % 2 == 0 else http_loop, daemon=True)
            for n in range(threads)
        ]
        for worker in workers:
            worker.start()
        stop.wait()
        for worker in workers:
            worker.join(15)


def start(
    collectors: list[CollectorProcess],
    tmp_path: Path,
    store: str,
    upstream: OTLPReceiver | None,
    *,
    buffered: bool = False,
) -> CollectorProcess:
    args = [
        "--grpc-endpoint=127.0.0.1:0",
        "--http-endpoint=127.0.0.1:0",
        "--metrics-endpoint=127.0.0.1:0",
        f"--queue-dir={tmp_path / 'queue'}",
        f"--call-log-store={store}",
        "--call-log-api-endpoint=none",
    ]
    if upstream is not None:
        args += [f"--upstream={upstream.grpc_endpoint}", "--upstream-insecure"]
    env = {
        "OTEL_LLM_COLLECTOR_RETRY_INITIAL_BACKOFF": "0.05",
        "OTEL_LLM_COLLECTOR_RETRY_MAX_BACKOFF": "0.3",
    }
    if buffered:
        # A flush interval longer than any test: calls buffered in memory (the old design) are
        # written only by a graceful stop, which a SIGKILL never reaches -- so the test fails
        # there every time, not only when the kill lands inside the default 1 s interval.
        env["OTEL_LLM_CALL_LOG_FLUSH_INTERVAL"] = "600"
    collector = CollectorProcess(args, env)
    collectors.append(collector)
    assert collector.grpc, collector.text
    return collector


def sigkill(collector: CollectorProcess) -> None:
    os.kill(collector.process.pid, signal.SIGKILL)
    collector.process.wait(timeout=10)


def logged_ids(store: str) -> Counter[int]:
    """How many rows the call log holds per span id (straight from the database)."""
    query = f"SELECT span_id FROM {schema.CALLS}"  # noqa: S608 - a fixed table name
    if store.startswith("postgresql://"):
        import psycopg  # the postgres extra

        with psycopg.connect(store) as connection:
            rows = connection.execute(query).fetchall()
    else:
        connection = sqlite3.connect(store)
        try:
            rows = connection.execute(query).fetchall()
        finally:
            connection.close()
    return Counter(int(span_id, 16) for (span_id,) in rows)


def wait_for_log(store: str, wanted: set[int], timeout: float = 30.0) -> Counter[int]:
    deadline = time.monotonic() + timeout
    while True:
        logged = logged_ids(store)
        if wanted <= logged.keys() or time.monotonic() > deadline:
            return logged
        time.sleep(0.2)


def wait_for_upstream(upstream: OTLPReceiver, wanted: set[int], timeout: float = 30.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        delivered = {int(span.span_id, 16) for span in upstream.spans}
        if wanted <= delivered or time.monotonic() > deadline:
            return delivered
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("backend", "with_upstream"),
    [("sqlite", True), ("postgres", True), ("sqlite", False)],
)
def test_calls_acknowledged_just_before_a_sigkill_are_logged_after_the_restart(
    backend: str,
    with_upstream: bool,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    collectors: list[CollectorProcess],
) -> None:
    store = empty_store_url(backend, request, tmp_path)
    with OTLPReceiver() as receiver:
        upstream = receiver if with_upstream else None
        collector = start(collectors, tmp_path, store, upstream, buffered=True)
        channel = grpc.insecure_channel(collector.grpc)
        export = channel.unary_unary(EXPORT)
        # 4,000 calls, every one acknowledged, then a SIGKILL at once.
        load = Load(spans_per_request=GENAI_EVERY * 100)
        try:
            while len(load.calls) < 4000:
                load.send_grpc(export)
        finally:
            channel.close()
        sigkill(collector)
        assert load.refused == 0
        assert len(load.calls) == 4000

        restarted = start(collectors, tmp_path, store, upstream, buffered=True)
        logged = wait_for_log(store, load.calls)
        print(f"acknowledged {len(load.calls)} calls, {len(logged)} in the log after restart")
        assert logged.keys() == load.calls
        assert max(logged.values()) == 1
        if upstream is not None:
            assert load.acknowledged <= wait_for_upstream(upstream, load.acknowledged)
        assert restarted.terminate() == 0


KILLS = 10


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_at_random_points_under_load_loses_no_acknowledged_call(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    collectors: list[CollectorProcess],
) -> None:
    """SIGKILL at random instants under load -- while requests are queued, forwarded, replayed
    after the last restart and written to the call log -- then restart on the same queue and
    store: every acknowledged span reaches the upstream and every acknowledged GenAI call is in
    the log exactly once."""
    seed = random.randrange(1 << 32)  # noqa: S311 - kill instants, not security
    rng = random.Random(seed)  # noqa: S311 - printed, so a failure can be replayed
    store = empty_store_url(backend, request, tmp_path)
    load = Load()
    with OTLPReceiver() as upstream:
        for _ in range(KILLS):
            collector = start(collectors, tmp_path, store, upstream)
            stop = threading.Event()
            sender = threading.Thread(target=load.run, args=(collector, stop))
            sender.start()
            time.sleep(rng.uniform(0.2, 2.5))
            sigkill(collector)
            stop.set()
            sender.join(30)
        restarted = start(collectors, tmp_path, store, upstream)
        calls = load.calls
        delivered = wait_for_upstream(upstream, load.acknowledged, timeout=60)
        logged = wait_for_log(store, calls, timeout=60)
        assert restarted.terminate() == 0
        deliveries = Counter(int(span.span_id, 16) for span in upstream.spans)
    sent_calls = {span_id for span_id in load.sent if is_call(span_id)}
    print(
        f"\nseed {seed}, {KILLS} SIGKILLs, {backend}: "
        f"acknowledged {len(load.acknowledged)} spans ({len(calls)} GenAI calls), "
        f"{load.refused} requests unanswered; "
        f"delivered {len(delivered & load.acknowledged)} of them "
        f"({sum(deliveries.values()) - len(deliveries)} redeliveries); "
        f"in the log {len(logged.keys() & calls)} of the calls, "
        f"{len(logged.keys() - calls)} sent but unanswered, "
        f"duplicates {sum(count - 1 for count in logged.values())}"
    )
    assert len(calls) > 1000, "too little load to mean anything"
    assert load.acknowledged <= delivered
    assert calls <= logged.keys()
    assert logged.keys() <= sent_calls  # nothing that was not sent, and no plain span
    assert max(logged.values()) == 1


def set_store_down(store: str, down: bool) -> None:
    """A real outage of the store, seen by the collector as the database's failure (not a
    record's: nothing is quarantined). SQLite: the table it writes to disappears (and comes
    back). PostgreSQL: its database refuses connections and its sessions are ended (a
    superuser's too, unlike a connection limit)."""
    if store.startswith("postgresql://"):
        import psycopg  # the postgres extra

        base, _, database = store.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
            connection.execute(
                f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {"false" if down else "true"}'
            )  # type: ignore[call-overload]
            if down:
                connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (database,),
                )
        return
    old, new = (schema.CALLS, "calls_away") if down else ("calls_away", schema.CALLS)
    connection = sqlite3.connect(store, timeout=10)
    try:
        connection.execute(f"ALTER TABLE {old} RENAME TO {new}")
    finally:
        connection.close()


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failing_call_log_fills_the_queue_then_refuses_and_loses_nothing(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = empty_store_url(backend, request, tmp_path)
    call_log = CallLogService(CallLogConfig.from_settings(store=store, serve_api=False))
    config = CollectorConfig.from_settings(
        grpc_endpoint="127.0.0.1:0",
        http_endpoint="127.0.0.1:0",
        metrics_endpoint="none",
        queue_dir=str(tmp_path / "queue"),
        queue_max_bytes=60_000,
        max_request_bytes=20_000,
        retry_initial_backoff=0.05,
        retry_max_backoff=0.1,
    )
    registry = CollectorRegistry()
    service = CollectorService(config, call_sink=call_log.sink, registry=registry)
    with call_log, service:
        set_store_down(store, True)
        load = Load(spans_per_request=GENAI_EVERY * 10)
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        export = channel.unary_unary(EXPORT)
        try:
            # No upstream: the call log is the queue's only consumer, and it cannot write.
            while load.refused == 0:
                load.send_grpc(export)
                assert len(load.acknowledged) < 10_000, "the queue never filled"
            with pytest.raises(grpc.RpcError) as refused:
                export(export_request(10**6, load.spans_per_request), timeout=5)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            post = urllib.request.Request(
                f"http://127.0.0.1:{service.http_port}/v1/traces",
                data=export_request(2 * 10**6, load.spans_per_request),
                headers={"Content-Type": "application/x-protobuf"},
            )
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(post, timeout=5)  # noqa: S310
            assert answer.value.code == 503
            assert answer.value.headers["Retry-After"]
            # Counted: the refusals, and the failed writes that caused them.
            queue_full = sum(
                metric(registry, "otel_llm_collector_refused_requests_total", transport=t,
                       reason="queue_full")
                for t in ("grpc", "http")
            )  # fmt: skip
            assert queue_full == 3
            failures = metric(registry, "otel_llm_processor_errors_total", stage="call_sink")
            assert failures >= 1
            assert call_log.writer is not None
            assert call_log.writer.failed_writes >= 1
            assert call_log.writer.dropped == 0
            assert call_log.writer.quarantined == 0  # an outage, not bad calls

            set_store_down(store, False)  # the store is back
            logged = wait_for_log(store, load.calls, timeout=20)
            assert logged.keys() == load.calls
            assert max(logged.values()) == 1
            deadline = time.monotonic() + 10
            while service.queue is not None and service.queue.batches:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            load.send_grpc(export)  # room again
            assert len(load.acknowledged) > len(load.calls)
        finally:
            channel.close()
