"""A span delivered twice (an OTLP export a client retried) is forwarded twice but counted once
in the collector's metrics: the real service, real gRPC and HTTP clients, ``/metrics`` scraped
over HTTP; the window's bound and its setting through the real ``otel-llm collector``."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from otel_llm import _semconv as sc
from otel_llm import settings
from otel_llm.cli import main
from otel_llm.collector import CollectorService
from otel_llm.collector.config import CollectorConfig
from otel_llm.collector.dedup import RecentSpans, span_key
from otel_llm.collector.otlp import set_value
from otel_llm.collector.telemetry import PROM_DUPLICATE, PROM_RECEIVED
from tests.support.collector_process import CollectorProcess
from tests.support.otlp_receiver import OTLPReceiver

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
T0 = 1_760_000_000_000_000_000
TRACE = bytes(range(1, 17))
PROTOBUF = {"Content-Type": "application/x-protobuf"}


# --- requests and what /metrics says ------------------------------------------------------------


def llm_span(span_id: int, model: str = "gpt-4o-mini", *, trace_id: bytes = TRACE) -> Span:
    span = Span(
        name=f"chat {model}",
        trace_id=trace_id,
        span_id=span_id.to_bytes(8, "big"),
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 10**9,
    )
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.GEN_AI_REQUEST_MODEL: model,
        sc.GEN_AI_USAGE_INPUT_TOKENS: 10_000,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 2_000,
    }
    for key, value in attributes.items():
        set_value(span.attributes.add(key=key).value, value)
    return span


def plain_span(span_id: int) -> Span:
    return Span(
        name="GET /cart",
        trace_id=TRACE,
        span_id=span_id.to_bytes(8, "big"),
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 10**8,
    )


def request_of(*spans: Span) -> bytes:
    resource_spans = ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])
    resource_spans.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value="checkout"))
    )
    return ExportTraceServiceRequest(resource_spans=[resource_spans]).SerializeToString()


def send_http(endpoint: str, body: bytes) -> None:
    request = urllib.request.Request(
        f"http://{endpoint}/v1/traces", data=body, headers=PROTOBUF, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200


def send_grpc(endpoint: str, body: bytes) -> None:
    with grpc.insecure_channel(endpoint) as channel:
        channel.unary_unary(EXPORT_METHOD)(body, timeout=10)


SENDERS: dict[str, Callable[[str, bytes], None]] = {"grpc": send_grpc, "http": send_http}


def scrape(metrics_endpoint: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``, fetched over HTTP: (name, labels) -> value."""
    with urllib.request.urlopen(f"http://{metrics_endpoint}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(
        value for (found, have), value in samples.items() if found == name and wanted <= have
    )


def cost(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], model: str) -> float:
    return total(samples, sc.PROM_COST, gen_ai_request_model=model)


def calls(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], model: str) -> float:
    return total(samples, sc.PROM_DURATION + "_count", gen_ai_request_model=model)


# --- the service in process -----------------------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Callable[..., tuple[CollectorService, OTLPReceiver]]]:
    started: list[tuple[CollectorService, OTLPReceiver]] = []

    def make(**options: Any) -> tuple[CollectorService, OTLPReceiver]:
        upstream = OTLPReceiver().start()
        config = CollectorConfig.from_settings(
            environ={},
            grpc_endpoint="127.0.0.1:0",
            http_endpoint="127.0.0.1:0",
            metrics_endpoint="127.0.0.1:0",
            upstream_endpoint=upstream.grpc_endpoint,
            upstream_insecure=True,
            queue_dir=str(tmp_path / f"queue{len(started)}"),
            **options,
        )
        running = CollectorService(config, registry=CollectorRegistry()).start()
        started.append((running, upstream))
        return running, upstream

    yield make
    for running, upstream in started:
        running.stop(timeout=5)
        upstream.stop()


def endpoints(service: CollectorService) -> dict[str, str]:
    return {
        "grpc": f"127.0.0.1:{service.grpc_port}",
        "http": f"127.0.0.1:{service.http_port}",
        "metrics": f"127.0.0.1:{service.metrics_port}",
    }


@pytest.mark.parametrize(("first", "again"), [("grpc", "grpc"), ("http", "http"), ("grpc", "http")])
def test_a_request_sent_twice_is_forwarded_twice_and_counted_once(
    first: str, again: str, service: Callable[..., tuple[CollectorService, OTLPReceiver]]
) -> None:
    running, upstream = service()
    where = endpoints(running)
    body = request_of(llm_span(1, "gpt-4o-mini"), llm_span(2, "gpt-4o"), plain_span(3))

    SENDERS[first](where[first], body)
    forwarded = {span.name: span for span in upstream.wait_for_spans(3)}
    once = scrape(where["metrics"])
    SENDERS[again](where[again], body)
    upstream.wait_for_spans(6)  # forwarded again: whether the upstream had it is not known here
    twice = scrape(where["metrics"])

    for model in ("gpt-4o-mini", "gpt-4o"):
        attribute = forwarded[f"chat {model}"].attributes[sc.GEN_AI_USAGE_COST_AMOUNT]
        assert attribute > 0
        assert cost(once, model) == pytest.approx(attribute, rel=1e-12)
        assert cost(twice, model) == cost(once, model)  # 2x before: the issue's $0.007
        assert calls(twice, model) == calls(once, model) == 1
        tokens = total(twice, sc.PROM_TOKENS, gen_ai_request_model=model)
        assert tokens == total(once, sc.PROM_TOKENS, gen_ai_request_model=model) > 0
    assert total(once, PROM_DUPLICATE) == 0
    assert total(twice, PROM_DUPLICATE) == 2  # one per priced span; the plain span is not one
    assert total(twice, PROM_RECEIVED) == 6  # accepted both times


def test_spans_without_a_valid_id_are_always_counted(
    service: Callable[..., tuple[CollectorService, OTLPReceiver]],
) -> None:
    running, upstream = service()
    where = endpoints(running)
    no_ids = llm_span(0, trace_id=b"")  # two spans that cannot be told apart by their ids
    send_http(where["http"], request_of(no_ids, no_ids))
    upstream.wait_for_spans(2)
    samples = scrape(where["metrics"])
    assert calls(samples, "gpt-4o-mini") == 2
    assert total(samples, PROM_DUPLICATE) == 0


def test_window_zero_turns_the_check_off(
    service: Callable[..., tuple[CollectorService, OTLPReceiver]],
) -> None:
    running, upstream = service(dedup_window=0)
    where = endpoints(running)
    body = request_of(llm_span(1))
    send_grpc(where["grpc"], body)
    send_grpc(where["grpc"], body)
    upstream.wait_for_spans(2)
    samples = scrape(where["metrics"])
    assert calls(samples, "gpt-4o-mini") == 2
    assert total(samples, PROM_DUPLICATE) == 0


# --- the window ----------------------------------------------------------------------------------


def key(n: int) -> bytes:
    found = span_key(TRACE, n.to_bytes(8, "big"))
    assert found is not None
    return found


def test_the_window_keeps_the_last_n_and_forgets_the_oldest() -> None:
    size = 3
    window = RecentSpans(size)
    assert all(window.first_seen(key(n)) for n in range(1, size + 1))
    assert not any(window.first_seen(key(n)) for n in range(1, size + 1))  # all still there
    assert window.first_seen(key(size + 1))  # the N+1-th: the oldest (1) falls out
    assert not any(window.first_seen(key(n)) for n in range(2, size + 2))
    assert window.first_seen(key(1))  # seen again after it fell out: new again
    assert window.first_seen(key(2))  # 1 pushed out 2, the oldest then
    for n in range(100, 100 + 10 * size):  # memory stays bounded
        window.first_seen(key(n))
    assert len(window) == size


def test_keys_are_the_ids_when_valid() -> None:
    assert span_key(TRACE, b"\x00" * 7 + b"\x01") == TRACE + b"\x00" * 7 + b"\x01"
    for trace_id, span_id in [
        (b"", b""),
        (TRACE, b""),
        (TRACE[:15], b"\x01" * 8),
        (TRACE, b"\x01" * 9),
        (bytes(16), b"\x01" * 8),
        (TRACE, bytes(8)),
    ]:
        assert span_key(trace_id, span_id) is None
    window = RecentSpans(4)
    assert window.first_seen(None)
    assert window.first_seen(None)
    assert len(window) == 0
    off = RecentSpans(0)
    assert off.first_seen(key(1))
    assert off.first_seen(key(1))
    assert len(off) == 0
    with pytest.raises(ValueError, match="size"):
        RecentSpans(-1)


# --- the setting, through the real command --------------------------------------------------------


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], CollectorProcess]]:
    started: list[CollectorProcess] = []

    def start(env: dict[str, str]) -> CollectorProcess:
        collector = CollectorProcess(
            [
                "--grpc-endpoint=127.0.0.1:0",
                "--http-endpoint=127.0.0.1:0",
                "--metrics-endpoint=127.0.0.1:0",
                f"--queue-dir={tmp_path / f'queue{len(started)}'}",
                "--call-log-store=none",
            ],
            env,
        )
        started.append(collector)
        assert collector.http, collector.text
        return collector

    yield start
    for collector in started:
        collector.kill()


def test_the_window_size_comes_from_its_variable_and_the_oldest_falls_out(
    run: Callable[[dict[str, str]], CollectorProcess],
) -> None:
    collector = run({settings.COLLECTOR_DEDUP_WINDOW.env: "2"})
    a, b, c = (request_of(llm_span(n)) for n in (1, 2, 3))

    def sent(body: bytes) -> tuple[float, float, float]:
        send_http(collector.http, body)
        samples = scrape(collector.metrics)
        return (
            calls(samples, "gpt-4o-mini"),
            cost(samples, "gpt-4o-mini"),
            total(samples, PROM_DUPLICATE),
        )

    one_call, unit, _ = sent(a)
    assert (one_call, unit > 0) == (1, True)
    sent(b)
    assert sent(c)[:2] == (3, pytest.approx(3 * unit))
    # The window holds b and c: a fell out, so it is counted again (and pushes b out).
    assert sent(a) == (4, pytest.approx(4 * unit), 0)
    assert sent(c) == (4, pytest.approx(4 * unit), 1)  # still in the window: a duplicate
    assert sent(b) == (5, pytest.approx(5 * unit), 1)  # pushed out by a: counted again
    assert sent(a) == (5, pytest.approx(5 * unit), 2)
    assert settings.COLLECTOR_DEDUP_WINDOW.env not in collector.text  # no warning: a good value


def test_a_bad_window_value_warns_and_the_default_applies(
    run: Callable[[dict[str, str]], CollectorProcess], caplog: pytest.LogCaptureFixture
) -> None:
    variable = settings.COLLECTOR_DEDUP_WINDOW.env
    for bad in ("lots", "-1", "2.5"):
        with caplog.at_level(logging.WARNING, logger="otel_llm.settings"):
            config = CollectorConfig.from_settings(environ={variable: bad})
        assert config.dedup_window == settings.COLLECTOR_DEDUP_WINDOW.default == 100_000
        assert variable in caplog.text
        caplog.clear()

    collector = run({variable: "lots"})
    assert variable in collector.text  # the warning, in the service's log
    body = request_of(llm_span(1), llm_span(2))
    send_http(collector.http, body)
    send_http(collector.http, body)
    samples = scrape(collector.metrics)
    assert calls(samples, "gpt-4o-mini") == 2
    assert total(samples, PROM_DUPLICATE) == 2  # the default window is in force


def test_the_flag_sets_the_window_and_refuses_a_negative_size(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert CollectorConfig.from_settings(environ={}, dedup_window=7).dedup_window == 7
    assert "--dedup-window" in {binding.flag for binding in CollectorConfig.bindings()}
    assert main(["collector", "--dedup-window", "-1"]) == 2
    assert "dedup-window" in capsys.readouterr().err
