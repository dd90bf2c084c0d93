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
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor
from otel_llm import _semconv as sc
from tests.support.collector_process import CollectorProcess
from tests.support.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.support.prometheus import alert_rules, dashboard_queries, rule_queries, start_prometheus
from tests.support.rotel import Rotel

# The application: the SDK and its OTLP exporters, nothing of otel-llm (checked at its end).
# Calls of several providers and models, a failure, a stream with time to first chunk, cache
# reads, an unknown model, a negative token count, and a plain span around them, with events
# and a link. It prints, for every span it sent, what the wire must carry: {span name: Sent}.
APP = textwrap.dedent(
    """
    import json, sys
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    transport, endpoint, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if transport == "grpc":
        exporter = Grpc(endpoint=endpoint, insecure=True)
    else:
        exporter = Http(endpoint=endpoint)
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-" + transport}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    memory = InMemorySpanExporter()  # what was sent, to compare with what arrives
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("shop.app")
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
        with tracer.start_as_current_span(root_name, attributes={"cart.items": 3}) as root:
            root.add_event("cart.loaded", {"items": 3, "currency": "EUR"})
            for index, (provider_name, model, usage) in enumerate(CALLS):
                name = f"chat {model} {transport} {round}.{index}"
                attributes = {
                    "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider_name,
                    "gen_ai.request.model": model, "gen_ai.response.model": model, **usage,
                }
                links = [Link(root.get_span_context(), {"why": "retry"})] if index == 2 else []
                kind = SpanKind.CLIENT
                with tracer.start_as_current_span(
                    name, kind=kind, attributes=attributes, links=links
                ) as span:
                    if usage.get("gen_ai.request.stream"):
                        span.add_event("first_chunk", {"offset_ms": 250})
                    if index == 0 and round % 2:
                        span.set_attribute("error.type", "RateLimitError")
                        span.set_status(Status(StatusCode.ERROR, "rate limited"))
    provider.shutdown()
    assert not any(name.startswith("otel_llm") for name in sys.modules), "the app uses otel-llm"
    sent = {
        span.name: {
            "trace_id": format(span.context.trace_id, "032x"),
            "span_id": format(span.context.span_id, "016x"),
            "parent_span_id": format(span.parent.span_id, "016x") if span.parent else "",
            "kind": span.kind.name,
            "status": span.status.status_code.name,
            "status_message": span.status.description or "",
            "attributes": dict(span.attributes),
            "events": [[e.name, dict(e.attributes)] for e in span.events],
            "links": [
                [format(l.context.trace_id, "032x"), format(l.context.span_id, "016x")]
                for l in span.links
            ],
            "resource": dict(span.resource.attributes),
            "scope": span.instrumentation_scope.name,
        }
        for span in memory.get_finished_spans()
    }
    print(json.dumps(sent))
    """
)

COST_PREFIXES = ("gen_ai.usage.cost", "otel_llm.cost")
Sent = dict[str, Any]
"""One span as the application sent it (see APP)."""


def run_app(transport: str, endpoint: str, rounds: int = 2) -> dict[str, Sent]:
    done = subprocess.run(
        [sys.executable, "-c", APP, transport, endpoint, str(rounds)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sent: dict[str, Sent] = json.loads(done.stdout)
    assert len(sent) == 6 * rounds
    return sent


def trace_ids(sent: dict[str, Sent]) -> set[str]:
    return {span["trace_id"] for span in sent.values()}


# Every otel_llm_policy_* series the dashboard and the rules read exists from start-up: a
# block policy with a USD budget (spend, limit, state, violations, alerts, blocks).
POLICIES = """\
policies:
  - name: everything-daily
    scope: "*"
    budgets: [{window: day, usd: 1000}]
    action: block
"""


def start_collector(
    started: list[CollectorProcess], tmp_path: Path, upstream: OTLPReceiver
) -> CollectorProcess:
    policies = tmp_path / "policies.yaml"
    policies.write_text(POLICIES)
    collector = CollectorProcess(
        [
            "--grpc-endpoint=127.0.0.1:0",
            "--http-endpoint=127.0.0.1:0",
            "--metrics-endpoint=127.0.0.1:0",
            f"--upstream={upstream.grpc_endpoint}",
            "--upstream-insecure",
            f"--queue-dir={tmp_path / 'queue'}",
            f"--call-log-store={tmp_path / 'calls.db'}",
            f"--policies={policies}",
        ]
    )
    started.append(collector)
    assert collector.grpc, collector.text
    assert collector.http
    assert collector.metrics
    return collector


def in_process_cost(sent: Sent) -> dict[str, Any]:
    """The cost attributes ``LLMSpanProcessor`` gives a span with the same attributes, resource,
    scope and status in this process: the service must price exactly like it."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(sent["resource"]))
    provider.add_span_processor(
        LLMSpanProcessor(SimpleSpanProcessor(memory), registry=CollectorRegistry())
    )
    span = provider.get_tracer(sent["scope"]).start_span(
        "priced here", kind=SpanKind[sent["kind"]], attributes=sent["attributes"]
    )
    if sent["status"] == "ERROR":
        span.set_status(Status(StatusCode.ERROR, sent["status_message"]))
    span.end()
    provider.shutdown()
    (priced,) = memory.get_finished_spans()
    assert priced.attributes is not None
    return {k: v for k, v in priced.attributes.items() if k.startswith(COST_PREFIXES)}


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


def check_forwarded(sent: dict[str, Sent], got: dict[str, ReceivedSpan]) -> None:
    """Every span arrived as sent -- ids, parent, kind, status, attributes, events, links,
    resource, scope -- with only the cost attributes added, those LLMSpanProcessor adds."""
    for name, span in sent.items():
        arrived = got[name]
        assert (arrived.trace_id, arrived.span_id, arrived.parent_span_id) == (
            span["trace_id"],
            span["span_id"],
            span["parent_span_id"],
        ), name
        assert (arrived.kind.name, arrived.status_code.name, arrived.status_message) == (
            span["kind"],
            span["status"],
            span["status_message"],
        ), name
        assert [[e.name, e.attributes] for e in arrived.events] == span["events"], name
        assert [list(link) for link in arrived.links] == span["links"], name
        assert (arrived.resource, arrived.scope_name) == (span["resource"], span["scope"]), name
        added = {k: v for k, v in arrived.attributes.items() if k.startswith(COST_PREFIXES)}
        kept = {k: v for k, v in arrived.attributes.items() if k not in added}
        assert kept == span["attributes"], name
        if name.startswith("POST"):  # a plain span: nothing added
            assert not added, name
        else:
            assert added, name
            assert added == in_process_cost(span), name


def test_spans_from_an_sdk_app_are_priced_forwarded_and_every_expression_has_data(
    tmp_path: Path, upstream: OTLPReceiver, collectors: list[CollectorProcess]
) -> None:
    collector = start_collector(collectors, tmp_path, upstream)
    sent = run_app("grpc", collector.grpc)
    sent_http = run_app("http", f"http://{collector.http}/v1/traces")
    got = wait_for(upstream, set(sent) | set(sent_http))
    check_forwarded({**sent, **sent_http}, got)
    priced = got["chat gpt-4o grpc 0.0"]
    assert priced.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] > 0
    assert (
        got["chat gpt-imaginary-1 http 1.3"].attributes[sc.OTEL_LLM_COST_UNPRICED_REASON]
        == "unknown_model"
    )

    # A real Prometheus scrapes the service while the app keeps sending.
    with start_prometheus(tmp_path, {"otel-llm-collector": [collector.metrics]}) as prom:
        deadline = time.monotonic() + 40
        later_traces: set[str] = set()
        while True:
            later_traces |= trace_ids(run_app("grpc", collector.grpc, rounds=1))  # rates: 2 scrapes
            try:
                ready = prom.query('count_over_time(up{job="otel-llm-collector"}[1m]) >= 4')
                rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
                if (
                    ready
                    and len(rules) == len(alert_rules())
                    and all(r["health"] == "ok" for r in rules)
                ):
                    break
            except (AssertionError, OSError):
                if prom.process.poll() is not None:
                    raise
            assert time.monotonic() < deadline, prom.log_tail()
            time.sleep(0.5)

        # Every expression, the collector's own included, evaluates and has data.
        queries = [*dashboard_queries(), *rule_queries()]
        assert any("otel_llm_collector_" in expr for _, expr in queries)
        empty = [(where, expr) for where, expr in queries if not prom.query(expr)]
        assert not empty, "expressions without data:\n" + "\n".join(f"{w}: {e}" for w, e in empty)
        assert prom.query('otel_llm_collector_received_spans_total{transport="http"} > 0')
        assert prom.query("otel_llm_collector_forwarded_spans_total > 0")
        assert prom.query('gen_ai_client_cost_usd_total{service_name="shop-grpc"} > 0')
        assert prom.query('otel_llm_policy_spend_usd{policy="everything-daily"} > 0')

        # Exemplars link the metrics to the app's traces.
        exemplar_traces = prom.exemplar_trace_ids("gen_ai_client_cost_usd_total")
        assert exemplar_traces
        assert exemplar_traces <= trace_ids(sent) | trace_ids(sent_http) | later_traces
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
