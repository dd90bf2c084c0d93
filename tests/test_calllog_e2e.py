"""The call log end to end (issue 5): app -> OTLP -> ``otel-llm collector`` -> store -> API.

Everything is real and separate, as in production: the application is a subprocess with only
the OpenTelemetry SDK (no otel-llm) exporting over OTLP gRPC; the collector is the CLI in
another subprocess, with its call log in a temporary SQLite file or a database of a private
PostgreSQL cluster and its query API keyed by an environment variable; the collector forwards
to a real OTLP receiver. The test then asks the query API over HTTP and checks each call
against what the application sent (trace ids) and what the receiver got (the cost attribute).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from otel_llm import _semconv as sc
from otel_llm.calllog.query import CallFilter
from otel_llm.calllog.store import open_store
from tests.support.api import get_json
from tests.support.collector_process import CollectorProcess
from tests.support.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.support.postgres import BACKENDS, empty_store_url, pg_cluster  # noqa: F401 - fixture

API_KEY = "e2e-secret-key-0123456789"
QUEUE_DIR = "queue"
SELECT = (
    "id,trace_id,span_id,service,model,cost,status,error_type,error_message,feature,user,"
    "project,has_content"
)

# The application: the OpenTelemetry SDK and its OTLP gRPC exporter, nothing of otel-llm.
# It prints {span name: [trace id, span id]} of the spans it made.
APP = textwrap.dedent(
    """
    import json, sys
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode, format_span_id, format_trace_id

    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[1], insecure=True))
    )
    tracer = provider.get_tracer("shop.app")
    ids = {}

    def call(name, model, tokens_in, tokens_out, context, extra=None, error=None):
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model,
            "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.output_tokens": tokens_out,
            **{"otel_llm.context." + key: value for key, value in context.items()},
            **(extra or {}),
        }
        kind = SpanKind.CLIENT
        with tracer.start_as_current_span(name, kind=kind, attributes=attributes) as span:
            if error:
                span.set_attribute("error.type", "RateLimitError")
                span.set_status(Status(StatusCode.ERROR, error))
            context = span.get_span_context()
            ids[name] = [format_trace_id(context.trace_id), format_span_id(context.span_id)]

    with tracer.start_as_current_span("POST /checkout"):  # not an LLM call: not stored
        call(
            "summarise", "gpt-4o-mini", 1000, 100,
            {"feature": "checkout", "user_id": "u-1", "project_id": "alpha"},
            {
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "Summarise my cart"}]}]
                ),
                "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": "Two mugs"}]}]
                ),
            },
        )
        call(
            "rank", "gpt-4o", 2000, 300,
            {"feature": "search", "user_id": "u-2", "project_id": "beta"},
        )
        call(
            "retry", "gpt-4o-mini", 40, 0,
            {"feature": "checkout", "user_id": "u-1", "project_id": "alpha"},
            error="rate limited by the provider",
        )
    provider.shutdown()
    print(json.dumps(ids))
    """
)


def start_collector(
    started: list[CollectorProcess], tmp_path: Path, upstream: OTLPReceiver, store: str, **env: str
) -> CollectorProcess:
    collector = CollectorProcess(
        [
            "--grpc-endpoint=127.0.0.1:0",
            "--http-endpoint=none",
            "--metrics-endpoint=none",
            f"--upstream={upstream.grpc_endpoint}",
            "--upstream-insecure",
            f"--queue-dir={tmp_path / QUEUE_DIR}",
            f"--call-log-store={store}",
            "--call-log-api-endpoint=127.0.0.1:0",
        ],
        {"XDG_STATE_HOME": str(tmp_path / "state"), **env},
    )
    started.append(collector)
    assert collector.grpc, collector.text
    return collector


def run_app(grpc_endpoint: str) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", APP, f"http://{grpc_endpoint}"],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ids: dict[str, list[str]] = json.loads(done.stdout)
    return ids


def ask(api: str, path: str = "", key: str | None = API_KEY, **query: str) -> tuple[int, Any]:
    url = f"{api}{path}" + (f"?{urlencode(query)}" if query else "")
    return get_json(url, key)


def wait_for_calls(api: str, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        status, page = ask(api, limit="100", select=SELECT)
        assert status == 200, page
        if page["pagination"]["total"] >= n or time.monotonic() > deadline:
            calls: list[dict[str, Any]] = page["calls"]
            return calls
        time.sleep(0.1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_app_to_collector_to_store_to_query_api(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    collectors: list[CollectorProcess],
) -> None:
    store = empty_store_url(backend, request, tmp_path)
    with OTLPReceiver() as upstream:
        collector = start_collector(
            collectors,
            tmp_path,
            upstream,
            store,
            OTEL_LLM_CALL_LOG_API_KEYS=f"e2e={API_KEY}",
            OTEL_LLM_CALL_LOG_FLUSH_INTERVAL="0.1",
        )
        assert collector.api is not None, collector.text
        ids = run_app(collector.grpc)
        forwarded = {span.name: span for span in upstream.wait_for_spans(4)}
        calls = {call["span_id"]: call for call in wait_for_calls(collector.api, 3)}

        # One stored call per LLM span -- the HTTP parent span is not one -- each with the
        # app's trace id and the cost the forwarded span carries.
        assert len(calls) == 3
        for name, (trace_id, span_id) in ids.items():
            call = calls[span_id]
            span: ReceivedSpan = forwarded[name]
            assert call["id"] == f"{trace_id}-{span_id}"
            assert call["trace_id"] == trace_id == span.trace_id
            assert call["cost"] == span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT]
            assert call["service"] == "shop"
        summarise = calls[ids["summarise"][1]]
        assert summarise["cost"] > 0
        assert (summarise["feature"], summarise["user"], summarise["project"]) == (
            "checkout",
            "u-1",
            "alpha",
        )
        assert summarise["has_content"] is True
        failed = calls[ids["retry"][1]]
        assert failed["status"] == "error"
        assert failed["error_message"] == "rate limited by the provider"
        assert failed["error_type"] == "RateLimitError"
        assert calls[ids["rank"][1]]["status"] == "success"

        # Filters, count, stats, details.
        status, page = ask(collector.api, model="gpt-4o-mini")
        assert status == 200
        assert {call["id"] for call in page["calls"]} == {
            "-".join(ids["summarise"]),
            "-".join(ids["retry"]),
        }
        status, page = ask(collector.api, project="beta")
        assert [call["id"] for call in page["calls"]] == ["-".join(ids["rank"])]
        assert ask(collector.api, "/count", project="alpha") == (200, {"count": 2})
        assert ask(collector.api, "/count", status="error") == (200, {"count": 1})
        status, stats = ask(collector.api, "/stats", group_by="model")
        assert status == 200, stats
        total = stats["stats"]
        assert (total["total_requests"], total["failed_requests"]) == (3, 1)
        assert total["total_cost"] == pytest.approx(sum(call["cost"] for call in calls.values()))
        assert {group["group"]: group["total_requests"] for group in stats["groups"]} == {
            "gpt-4o-mini": 2,
            "gpt-4o": 1,
        }
        status, details = ask(collector.api, f"/{'-'.join(ids['summarise'])}/details")
        assert status == 200, details
        assert "Summarise my cart" in details["request_prompt"]
        assert "Two mugs" in details["response_preview"]
        assert ask(collector.api, key=None)[0] == 401

        assert collector.terminate() == 0
    assert "stopping" in collector.text


def test_calls_accepted_before_sigterm_are_written_and_the_api_stays_off_without_keys(
    tmp_path: Path, collectors: list[CollectorProcess]
) -> None:
    store = str(tmp_path / "calls.db")
    with OTLPReceiver() as upstream:
        # A flush interval far beyond the test: only the flush at stop can write the calls.
        collector = start_collector(
            collectors, tmp_path, upstream, store, OTEL_LLM_CALL_LOG_FLUSH_INTERVAL="600"
        )
        assert collector.api is None
        assert "query API not served: no API keys" in collector.text
        assert "--call-log-api-keys-file" in collector.text
        ids = run_app(collector.grpc)
        upstream.wait_for_spans(4)
        assert collector.terminate() == 0
    opened = open_store(store)
    try:
        assert opened.get("-".join(ids["rank"])) is not None
        assert opened.count(CallFilter()) == 3
    finally:
        opened.close()


def test_call_log_none_turns_it_off(tmp_path: Path, collectors: list[CollectorProcess]) -> None:
    with OTLPReceiver() as upstream:
        collector = start_collector(collectors, tmp_path, upstream, "none")
        assert "call log off" in collector.text
        ids = run_app(collector.grpc)
        assert len(upstream.wait_for_spans(4)) == 4  # still priced and forwarded
        assert ids
        assert collector.terminate() == 0
    assert not (tmp_path / "state").exists()  # the default store was not created
    assert not (tmp_path / "none").exists()
