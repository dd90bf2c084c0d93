"""The collector service end to end (issue 4), everything real and in its own process.

An application with only the OpenTelemetry SDK (no otel-llm) exports GenAI and plain spans over
OTLP gRPC and HTTP to the ``otel-llm collector`` CLI, which forwards them to a real OTLP
receiver. The forwarded GenAI spans carry the cost the shared core gives them; the plain spans
arrive as sent. A real Prometheus scrapes the service, and every PromQL expression of the
Grafana dashboard and of the alert rules -- the collector's own included -- evaluates and
returns data. Then the same spans go through Rotel (an independent collector) in front of the
service and arrive intact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_llm import _semconv as sc
from otel_llm.derive import derive
from otel_llm.pricing import PriceBook
from tests.collector_process import CollectorProcess
from tests.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.rotel import Rotel
from tests.test_collector_config import (
    ALERTS,
    _dashboard_queries,
    _free_port,
    _Prometheus,
    _rule_queries,
    _rules,
    _tool,
)

# The application: the SDK and its OTLP exporters, nothing of otel-llm (checked at its end).
# Calls of several providers and models, a failure, a stream with time to first chunk, cache
# reads, an unknown model, a negative token count, and a plain span around them. It prints
# {span name: trace id} of what it sent.
APP = textwrap.dedent(
    """
    import json, sys
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    transport, endpoint, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if transport == "grpc":
        exporter = Grpc(endpoint=endpoint, insecure=True)
    else:
        exporter = Http(endpoint=endpoint)
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-" + transport}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.app")
    sent = {}
    IN, OUT = "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"
    CALLS = [
        ("openai", "gpt-4o", {IN: 1200, OUT: 300, "gen_ai.usage.cache_read.input_tokens": 1000}),
        ("openai", "gpt-4o-mini", {IN: 500, OUT: 50, "gen_ai.request.stream": True,
                                   "gen_ai.response.time_to_first_chunk": 0.25}),
        ("anthropic", "claude-3-5-haiku-20241022", {IN: 800, OUT: 90}),
        ("openai", "gpt-imaginary-1", {IN: 10, OUT: 1}),
        ("openai", "gpt-4o-mini", {IN: 10, OUT: -5}),
    ]
    for round in range(rounds):
        root_name = f"POST /checkout {transport} {round}"
        with tracer.start_as_current_span(root_name) as root:
            sent[root_name] = format(root.get_span_context().trace_id, "032x")
            for index, (provider_name, model, usage) in enumerate(CALLS):
                name = f"chat {model} {transport} {round}.{index}"
                attributes = {
                    "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider_name,
                    "gen_ai.request.model": model, "gen_ai.response.model": model, **usage,
                }
                kind = SpanKind.CLIENT
                with tracer.start_as_current_span(name, kind=kind, attributes=attributes) as span:
                    sent[name] = format(span.get_span_context().trace_id, "032x")
                    if index == 0 and round % 2:
                        span.set_attribute("error.type", "RateLimitError")
                        span.set_status(Status(StatusCode.ERROR, "rate limited"))
    provider.shutdown()
    assert not any(name.startswith("otel_llm") for name in sys.modules), "the app uses otel-llm"
    print(json.dumps(sent))
    """
)


def run_app(transport: str, endpoint: str, rounds: int = 2) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", APP, transport, endpoint, str(rounds)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sent: dict[str, str] = json.loads(done.stdout)
    return sent


def start_collector(
    started: list[CollectorProcess], tmp_path: Path, upstream: OTLPReceiver
) -> CollectorProcess:
    collector = CollectorProcess(
        [
            "--grpc-endpoint=127.0.0.1:0",
            "--http-endpoint=127.0.0.1:0",
            "--metrics-endpoint=127.0.0.1:0",
            f"--upstream={upstream.grpc_endpoint}",
            "--upstream-insecure",
            f"--queue-dir={tmp_path / 'queue'}",
            f"--call-log-store={tmp_path / 'calls.db'}",
        ]
    )
    started.append(collector)
    assert collector.grpc, collector.text
    assert collector.http
    assert collector.metrics
    return collector


def expected_cost(span: ReceivedSpan) -> dict[str, Any]:
    """The cost attributes the shared core gives the span as the application sent it."""
    sent = {
        k: v
        for k, v in span.attributes.items()
        if not k.startswith(("gen_ai.usage.cost", "otel_llm.cost"))
    }
    derived = derive(
        sent,
        start_time_ns=None,  # priced at today's prices, as the service just did
        end_time_ns=None,
        failed=span.status_code.name == "ERROR",
        service_name=str(span.resource.get("service.name", "")),
        trace_id=int(span.trace_id, 16),
        book=PriceBook(),
        max_tokens=100_000_000,
        scope=span.scope_name,
    )
    assert derived is not None, span.name
    return derived.cost_attributes()


def wait_for(
    receiver: OTLPReceiver, names: set[str], timeout: float = 20
) -> dict[str, ReceivedSpan]:
    deadline = time.monotonic() + timeout
    while True:
        got = {span.name: span for span in receiver.spans if span.name in names}
        if set(got) == names or time.monotonic() > deadline:
            assert set(got) == names, sorted(names - set(got))
            return got
        time.sleep(0.05)


@pytest.fixture
def upstream() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as receiver:
        yield receiver


def check_forwarded(sent: dict[str, str], got: dict[str, ReceivedSpan]) -> None:
    for name, trace_id in sent.items():
        span = got[name]
        assert span.trace_id == trace_id, name
        if name.startswith("POST"):  # a plain span: exactly as sent
            assert not any(k.startswith(("gen_ai", "otel_llm")) for k in span.attributes), name
            continue
        added = {
            k: v
            for k, v in span.attributes.items()
            if k.startswith(("gen_ai.usage.cost", "otel_llm.cost"))
        }
        assert added == expected_cost(span), name


def test_spans_from_an_sdk_app_are_priced_forwarded_and_every_expression_has_data(
    tmp_path: Path, upstream: OTLPReceiver, collectors: list[CollectorProcess]
) -> None:
    collector = start_collector(collectors, tmp_path, upstream)
    sent = run_app("grpc", collector.grpc)
    sent_http = run_app("http", f"http://{collector.http}/v1/traces")
    got = wait_for(upstream, set(sent) | set(sent_http))
    check_forwarded({**sent, **sent_http}, got)
    assert {s.resource["service.name"] for n, s in got.items() if n in sent_http} == {"shop-http"}
    priced = got["chat gpt-4o grpc 0.0"]
    assert priced.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] > 0
    assert (
        got["chat gpt-imaginary-1 http 1.3"].attributes[sc.OTEL_LLM_COST_UNPRICED_REASON]
        == "unknown_model"
    )

    # A real Prometheus scrapes the service while the app keeps sending.
    port = _free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "otel-llm-collector", "static_configs": [{"targets": [collector.metrics]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = tmp_path / "prometheus.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [
                _tool("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        prom = _Prometheus(f"http://127.0.0.1:{port}", process, log)
        deadline = time.monotonic() + 40
        later_traces: set[str] = set()
        while True:
            later_traces.update(
                run_app("grpc", collector.grpc, rounds=1).values()
            )  # rates need two scrapes
            try:
                ready = prom.query('count_over_time(up{job="otel-llm-collector"}[1m]) >= 4')
                rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
                if (
                    ready
                    and len(rules) == len(_rules())
                    and all(r["health"] == "ok" for r in rules)
                ):
                    break
            except (AssertionError, OSError):
                if process.poll() is not None:
                    raise
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)

        empty = [
            (where, expr)
            for where, expr in [*_dashboard_queries(), *_rule_queries()]
            if not prom.query(expr)
        ]
        assert not empty, "expressions without data:\n" + "\n".join(f"{w}: {e}" for w, e in empty)
        assert prom.query('otel_llm_collector_received_spans_total{transport="http"} > 0')
        assert prom.query('gen_ai_client_cost_usd_total{service_name="shop-grpc"} > 0')

        # Exemplars link the metrics to the app's traces.
        now = time.time()
        series = prom.api(
            "query_exemplars",
            query="gen_ai_client_cost_usd_total",
            start=str(now - 300),
            end=str(now + 5),
        )
        exemplar_traces = {e["labels"]["trace_id"] for s in series for e in s["exemplars"]}
        assert exemplar_traces
        assert exemplar_traces <= {*sent.values(), *sent_http.values(), *later_traces}
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert collector.terminate() == 0


def test_spans_through_rotel_in_front_of_the_service_arrive_intact(
    tmp_path: Path, upstream: OTLPReceiver, collectors: list[CollectorProcess]
) -> None:
    collector = start_collector(collectors, tmp_path, upstream)
    # Rotel merges batches; 1024 spans keep each merged request under the service's 4 MiB.
    with Rotel(collector.grpc, protocol="grpc", batch_max_spans=1024) as rotel:
        sent = run_app("grpc", rotel.grpc_endpoint)
        got = wait_for(upstream, set(sent))
    check_forwarded(sent, got)
    assert collector.terminate() == 0
