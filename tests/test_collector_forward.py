"""Forwarding from the disk queue to a real OTLP upstream over gRPC and HTTP: delivery, retries
with backoff, Retry-After/RetryInfo, permanent rejections and partial successes counted,
headers, gzip and TLS on the wire, and a stop that loses nothing."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry

from otel_llm.collector.forward import Forwarder
from otel_llm.collector.queue import DiskQueue
from otel_llm.collector.telemetry import CollectorMetrics
from otel_llm.collector.upstream import (
    GrpcUpstream,
    HttpUpstream,
    Upstream,
    make_upstream,
    traces_url,
)
from tests.support.certs import OPENSSL, Certs, make_certs
from tests.support.clock import VirtualClock, wait_until
from tests.support.otlp_receiver import HOST, OTLPReceiver, Reply
from tests.support.ports import free_port

TRANSPORTS = ["grpc", "http"]


# --- payloads -------------------------------------------------------------------------------------


def _request(spans: int, tag: str, padding: int = 0) -> bytes:
    """A serialized export request of ``spans`` spans named ``<tag>-<i>``."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attribute = resource_spans.resource.attributes.add(key="service.name")
    attribute.value.string_value = "checkout"
    scope_spans = resource_spans.scope_spans.add()
    for index in range(spans):
        span = scope_spans.spans.add(name=f"{tag}-{index}")
        span.trace_id = os.urandom(16)
        span.span_id = os.urandom(8)
        if padding:
            note = span.attributes.add(key="note")
            note.value.string_value = "lorem ipsum " * padding
    return request.SerializeToString()


def _upstream(server: OTLPReceiver, transport: str, **options: Any) -> Upstream:
    """The forwarder's client for one transport of ``server``."""
    protocol = "grpc" if transport == "grpc" else "http/protobuf"
    return make_upstream(server.base_url(transport), protocol, **options)


def _payloads(server: OTLPReceiver) -> list[bytes]:
    return [request.payload for request in server.requests]


# --- the forwarder under test ---------------------------------------------------------------------


@dataclass
class Rig:
    queue: DiskQueue
    registry: CollectorRegistry
    forwarder: Forwarder

    def sample(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(f"otel_llm_collector_{name}", labels)
        assert value is not None, name
        return value


@contextmanager
def forwarding(
    directory: Path, upstream: Upstream, *, start: bool = True, **options: Any
) -> Iterator[Rig]:
    """A queue and a forwarder with short backoffs (tests should not wait for real ones)."""
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry)
    queue = DiskQueue(directory, max_bytes=50_000_000)
    metrics.watch_queue(queue)
    options = {"initial_backoff": 0.05, "max_backoff": 0.2, "send_timeout": 5.0, **options}
    forwarder = Forwarder(queue, upstream, metrics, **options)
    if start:
        forwarder.start()
    try:
        yield Rig(queue, registry, forwarder)
    finally:
        forwarder.stop(5)
        queue.close()


# --- delivery -------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_delivers_every_batch_to_a_real_receiver(
    tmp_path: Path, receiver: OTLPReceiver, transport: str
) -> None:
    if transport == "grpc":
        upstream: Upstream = GrpcUpstream(receiver.grpc_endpoint, insecure=True)
    else:
        upstream = make_upstream(f"http://{HOST}:{receiver.http_port}", "http/protobuf")
    with forwarding(tmp_path, upstream) as rig:
        for batch in range(3):
            rig.queue.put(_request(5, f"b{batch}"), spans=5)
        spans = receiver.wait_for_spans(15)
        wait_until(lambda: rig.queue.batches == 0)
        assert sorted(span.name for span in spans) == sorted(
            f"b{b}-{i}" for b in range(3) for i in range(5)
        )
        assert {span.transport for span in spans} == {transport}
        assert rig.sample("forwarded_spans_total") == 15
        assert rig.sample("retried_spans_total") == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_upstream_down_then_up_loses_nothing_and_never_spins(
    tmp_path: Path, transport: str
) -> None:
    port = free_port()
    upstream_server = (
        OTLPReceiver(grpc_port=port) if transport == "grpc" else OTLPReceiver(http_port=port)
    )
    payloads = [_request(4, f"b{batch}") for batch in range(6)]
    upstream = make_upstream(
        f"http://{HOST}:{port}", "grpc" if transport == "grpc" else "http/protobuf"
    )
    clock = VirtualClock(horizon=1.0)
    with forwarding(tmp_path, upstream, sleep=clock.sleep) as rig:
        for payload in payloads:
            rig.queue.put(payload, spans=4)
        # Both workers used up a (virtual) second in which nothing listens: every attempt failed.
        # A worker retrying without waiting would never get there.
        clock.wait_parked(2)
        attempts = rig.sample("retried_spans_total") / 4
        # Two workers, delays of at least 0.05 s doubling to 0.2 s: about 20 attempts in a
        # second; a hot loop would make thousands.
        assert 2 <= attempts <= 45
        assert rig.sample("forwarded_spans_total") == 0
        assert rig.queue.batches == 6
        with upstream_server:
            clock.release()
            wait_until(lambda: rig.queue.batches == 0)
            assert sorted(_payloads(upstream_server)) == sorted(payloads)
        assert rig.sample("forwarded_spans_total") == 24
        assert rig.sample("dropped_spans_total", reason="rejected_by_upstream") == 0


@pytest.mark.parametrize(
    ("transport", "failures"),
    [
        ("grpc", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.DATA_LOSS]),
        ("grpc", [grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED]),
        ("http", [503, 502, 504, 429]),
    ],
)
def test_retryable_failures_are_retried_and_counted(
    tmp_path: Path, transport: str, failures: list[Any]
) -> None:
    replies = [
        Reply(grpc_code=code) if transport == "grpc" else Reply(http_status=code)
        for code in failures
    ]
    clock = VirtualClock()
    with OTLPReceiver() as server:
        server.script(*replies)
        with forwarding(tmp_path, _upstream(server, transport), sleep=clock.sleep) as rig:
            payload = _request(3, "retried")
            rig.queue.put(payload, spans=3)
            wait_until(lambda: rig.queue.batches == 0)
            assert _payloads(server) == [payload] * (len(failures) + 1)
            assert len(clock.delays) == len(failures)  # one backoff before each retry
            assert rig.sample("retried_spans_total") == 3 * len(failures)
            assert rig.sample("forwarded_spans_total") == 3


@pytest.mark.parametrize(
    ("transport", "reply"),
    [
        ("grpc", Reply(grpc_code=grpc.StatusCode.INVALID_ARGUMENT)),
        ("grpc", Reply(grpc_code=grpc.StatusCode.UNAUTHENTICATED)),
        # Without a RetryInfo the OTLP specification makes it permanent (see forward.py).
        ("grpc", Reply(grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED)),
        ("http", Reply(http_status=400)),
        ("http", Reply(http_status=500)),
    ],
)
def test_a_permanent_rejection_is_dropped_and_counted(
    tmp_path: Path, transport: str, reply: Reply
) -> None:
    with OTLPReceiver() as server:
        server.script(reply)
        # One worker: the scripted rejection must meet the first batch, not whichever came first.
        with forwarding(tmp_path, _upstream(server, transport), workers=1) as rig:
            rig.queue.put(_request(7, "refused"), spans=7)
            rig.queue.put(_request(2, "next"), spans=2)
            wait_until(lambda: rig.queue.batches == 0)
            assert len(server.requests) == 2  # one attempt each, no retry
            assert rig.sample("dropped_spans_total", reason="rejected_by_upstream") == 7
            assert rig.sample("forwarded_spans_total") == 2
            assert rig.sample("retried_spans_total") == 0


@pytest.mark.parametrize(
    ("transport", "reply", "at_least"),
    [
        ("grpc", Reply(grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=0.6), 0.55),
        ("grpc", Reply(grpc_code=grpc.StatusCode.UNAVAILABLE, retry_after=0.6), 0.55),
        ("http", Reply(http_status=429, retry_after=1), 0.95),
        ("http", Reply(http_status=503, retry_after=2, http_date=True), 0.9),
    ],
)
def test_the_upstreams_retry_delay_is_honoured(
    tmp_path: Path, transport: str, reply: Reply, at_least: float
) -> None:
    clock = VirtualClock()  # arrivals are timed by it: the test waits no real seconds
    with OTLPReceiver(clock=clock.now) as server:
        server.script(reply)
        # Our own backoff alone would retry after 0.01-0.02 s.
        upstream = _upstream(server, transport)
        with forwarding(
            tmp_path, upstream, workers=1, initial_backoff=0.01, max_backoff=0.02, sleep=clock.sleep
        ) as rig:
            rig.queue.put(_request(3, "throttled"), spans=3)
            wait_until(lambda: rig.queue.batches == 0)
            first, second = server.requests
            assert second.at - first.at >= at_least
            assert rig.sample("retried_spans_total") == 3
            assert rig.sample("forwarded_spans_total") == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_partial_success_counts_the_rejected_spans(tmp_path: Path, transport: str) -> None:
    with OTLPReceiver() as server:
        server.script(Reply(rejected=2))
        with forwarding(tmp_path, _upstream(server, transport)) as rig:
            rig.queue.put(_request(5, "partly"), spans=5)
            wait_until(lambda: rig.queue.batches == 0)
            assert len(server.requests) == 1
            assert rig.sample("forwarded_spans_total") == 3
            assert rig.sample("dropped_spans_total", reason="partial_success") == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_headers_reach_the_upstream(tmp_path: Path, transport: str) -> None:
    headers = {"Authorization": "Bearer s3cret", "X-Tenant": "acme"}
    with OTLPReceiver() as server:
        with forwarding(tmp_path, _upstream(server, transport, headers=headers)) as rig:
            rig.queue.put(_request(1, "h"), spans=1)
            wait_until(lambda: rig.queue.batches == 0)
    (call,) = server.requests
    assert call.headers["authorization"] == "Bearer s3cret"
    assert call.headers["x-tenant"] == "acme"
    if transport == "http":
        assert call.headers[":path"] == "/v1/traces"
        assert call.headers["content-type"] == "application/x-protobuf"


# --- gzip: measured on the wire -------------------------------------------------------------------


class ByteCountingRelay:
    """A TCP relay on 127.0.0.1 to ``port`` that counts the bytes clients send through it."""

    def __init__(self, port: int):
        self._target = port
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self.client_bytes = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection((HOST, self._target))
            with self._lock:
                self._sockets += [client, server]
            for source, sink, counted in ((client, server, True), (server, client, False)):
                thread = threading.Thread(
                    target=self._pump, args=(source, sink, counted), daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(65536):
                if counted:
                    with self._lock:
                        self.client_bytes += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with suppress(OSError):  # wakes the accept() that close() alone would leave blocked
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):  # close() alone would not wake a blocked recv()
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        for thread in self._threads:
            thread.join(5)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_gzip_compresses_on_the_wire(tmp_path: Path, transport: str, compression: str) -> None:
    payload = _request(50, "zip", padding=200)  # ~120 KB that compresses well
    with OTLPReceiver() as server:
        relay = ByteCountingRelay(server.grpc_port if transport == "grpc" else server.http_port)
        try:
            protocol = "grpc" if transport == "grpc" else "http/protobuf"
            upstream = make_upstream(
                f"http://{HOST}:{relay.port}", protocol, compression=compression
            )
            with forwarding(tmp_path, upstream) as rig:
                rig.queue.put(payload, spans=50)
                wait_until(lambda: rig.queue.batches == 0)
        finally:
            relay.close()
    assert _payloads(server) == [payload]  # arrives intact either way
    if compression == "gzip":
        assert relay.client_bytes < len(payload) / 10
        if transport == "http":
            assert server.requests[0].headers["content-encoding"] == "gzip"
    else:
        assert relay.client_bytes > len(payload)


# --- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    if OPENSSL is None:
        # A failure, not a skip: TLS forwarding must be tested, not silently left out.
        pytest.fail("the openssl command is needed to make test certificates (Debian: openssl)")
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mutual_tls(tmp_path: Path, transport: str, certs: Certs) -> None:
    with OTLPReceiver(tls=certs) as server:
        good = _upstream(
            server,
            transport,
            ca_file=certs.ca_cert,
            client_cert=certs.client_cert,
            client_key=certs.client_key,
        )
        with forwarding(tmp_path, good) as rig:
            payload = _request(2, "tls")
            rig.queue.put(payload, spans=2)
            wait_until(lambda: rig.queue.batches == 0)
        assert _payloads(server) == [payload]
        # A server we cannot verify, or one that wants the client certificate we lack: the
        # batch stays queued (a configuration to fix, not a batch to drop).
        untrusted = _upstream(
            server,
            transport,
            ca_file=certs.other_ca,
            client_cert=certs.client_cert,
            client_key=certs.client_key,
        )
        anonymous = _upstream(server, transport, ca_file=certs.ca_cert)
        for upstream in (untrusted, anonymous):
            result = upstream.send(payload, 5.0)
            upstream.close()
            assert not result.ok
            assert result.retryable, result.detail
        assert len(server.requests) == 1


# --- stopping -------------------------------------------------------------------------------------


def test_stop_puts_back_a_batch_waiting_for_its_retry(tmp_path: Path) -> None:
    upstream = GrpcUpstream(f"{HOST}:{free_port()}", insecure=True)  # nothing listens
    with forwarding(tmp_path, upstream, initial_backoff=5.0, max_backoff=10.0) as rig:
        rig.queue.put(b"unsent", spans=3)
        wait_until(lambda: rig.sample("retried_spans_total") == 3)
        started = time.monotonic()
        rig.forwarder.stop(5)
        assert time.monotonic() - started < 1.0  # not the 5 s backoff
        item = rig.queue.get(timeout=0)  # back in the queue, not stuck in flight
        assert item is not None
        assert item.payload == b"unsent"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stop_lets_a_send_under_way_finish(tmp_path: Path, transport: str) -> None:
    with OTLPReceiver() as server:
        server.script(Reply(delay=0.5))
        with forwarding(tmp_path, _upstream(server, transport)) as rig:
            rig.queue.put(_request(3, "slow"), spans=3)
            wait_until(lambda: len(server.requests) == 1)
            rig.forwarder.stop(5)
            assert rig.queue.batches == 0  # delivered and acknowledged, not sent again
            assert rig.sample("forwarded_spans_total") == 3


def test_damaged_queue_files_are_counted_as_dropped(tmp_path: Path) -> None:
    with DiskQueue(tmp_path, max_bytes=10_000) as queue:
        queue.put(b"will rot", spans=6)
    (batch,) = tmp_path.glob("*.batch")
    batch.write_bytes(b"OLQ")  # shorter than a header: found when the queue opens
    with OTLPReceiver() as server:
        with forwarding(tmp_path, _upstream(server, "grpc")) as rig:
            assert rig.sample("dropped_spans_total", reason="corrupt_queue_file") == 6
    assert (tmp_path / "corrupt" / batch.name).exists()


# --- configuration --------------------------------------------------------------------------------


def test_traces_url() -> None:
    assert traces_url("http://jaeger:4318") == "http://jaeger:4318/v1/traces"
    assert traces_url("https://tempo/otlp/") == "https://tempo/otlp/v1/traces"
    assert traces_url("http://x:4318/v1/traces") == "http://x:4318/v1/traces"
    assert traces_url("jaeger:4318") == "https://jaeger:4318/v1/traces"
    assert traces_url("jaeger:4318", insecure=True) == "http://jaeger:4318/v1/traces"


def test_bad_upstream_options_are_refused() -> None:
    with pytest.raises(ValueError, match="protocol"):
        make_upstream("http://x:4317", "http/json")
    with pytest.raises(ValueError, match="compression"):
        make_upstream("http://x:4317", "grpc", compression="zstd")
    with pytest.raises(ValueError, match="together"):
        HttpUpstream("https://x/v1/traces", client_cert="c.pem")
