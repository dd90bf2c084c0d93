"""configure(): wrapping an application's existing tracing, or setting it up from the environment.

Checked at a real OTLP receiver. The global TracerProvider can be set only once per process, so
the "no SDK provider yet" cases run in a subprocess with a clean environment.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import (
    ConcurrentMultiSpanProcessor,
    ReadableSpan,
    Span,
    SpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import otel_llm
from otel_llm import LLMSpanProcessor, llm_call
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.pipeline import counter_total
from tests.support.ports import free_port

ROOT = Path(__file__).parent.parent
COST_SAMPLE = "gen_ai_client_cost_usd_total"
SUBPROCESS_TIMEOUT = 60

# gpt-4o-mini, 1,000 input tokens of which 400 cached, 200 output; USD per million tokens
# (test_export.py derives the same number step by step).
MTOK = Decimal(1_000_000)
EXPECTED_COST = (600 * Decimal("0.15") + 400 * Decimal("0.075") + 200 * Decimal("0.60")) / MTOK


class RecordingProcessor(SpanProcessor):
    """Remembers what it was called with, to show configure() kept forwarding everything."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[ReadableSpan] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started.append(span.name)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


pytestmark = pytest.mark.usefixtures("clean_otel_environment")


def call_gpt_4o_mini(provider: trace.TracerProvider) -> None:
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as handle:
        handle.set_usage(input_tokens=1000, output_tokens=200, cache_read_tokens=400)


# --- an SDK provider is already there ---------------------------------------------------------
def test_configure_wraps_the_existing_exporting_processors(receiver: OTLPReceiver) -> None:
    provider = TracerProvider()
    batch = BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True))
    recording = RecordingProcessor()
    provider.add_span_processor(batch)
    provider.add_span_processor(recording)
    registry = CollectorRegistry()
    try:
        first = otel_llm.configure(tracer_provider=provider, registry=registry)
        second = otel_llm.configure(tracer_provider=provider, registry=registry)
        assert isinstance(first, LLMSpanProcessor)
        assert second is first
        assert first.downstream == (batch, recording)

        call_gpt_4o_mini(provider)
        assert provider.force_flush(10_000)

        (span,) = receiver.wait_for_spans(1)
        assert span.attributes["gen_ai.usage.cost.amount"] == pytest.approx(float(EXPECTED_COST))
        assert span.attributes["gen_ai.usage.cost.source"] == "local"
        # Every processor behind it still sees on_start and the priced on_end, once.
        assert recording.started == ["chat gpt-4o-mini"]
        assert [s.name for s in recording.ended] == ["chat gpt-4o-mini"]
        assert recording.ended[0].attributes is not None
        assert "gen_ai.usage.cost.amount" in recording.ended[0].attributes
        # Not wrapped twice: the call is measured once.
        assert counter_total(registry, COST_SAMPLE) == pytest.approx(float(EXPECTED_COST))
    finally:
        provider.shutdown()
    assert len(receiver.spans) == 1


def test_disabled_configure_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_ENABLED", "false")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    global_before = trace.get_tracer_provider()

    assert otel_llm.configure(tracer_provider=provider, registry=registry) is None
    assert otel_llm.configure(registry=registry) is None
    assert trace.get_tracer_provider() is global_before

    call_gpt_4o_mini(provider)
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert "gen_ai.usage.cost.amount" not in span.attributes
    assert counter_total(registry, COST_SAMPLE) == 0
    provider.shutdown()


@pytest.fixture
def concurrent_provider() -> Iterator[TracerProvider]:
    """Processors the SDK runs in parallel: an internal configure() does not know how to wrap.

    No subclass is needed to get there: the SDK takes it as a constructor argument, which is how
    a real application would meet this case.
    """
    multi = ConcurrentMultiSpanProcessor(num_threads=2)
    provider = TracerProvider(active_span_processor=multi)
    yield provider
    provider.shutdown()
    multi._executor.shutdown(wait=True)  # the SDK's shutdown leaves its thread pool running


def test_unsupported_sdk_internals_degrade_to_metrics_only(
    receiver: OTLPReceiver,
    concurrent_provider: TracerProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = concurrent_provider
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True))
    )
    registry = CollectorRegistry()
    with caplog.at_level(logging.WARNING, logger="otel_llm"):
        processor = otel_llm.configure(tracer_provider=provider, registry=registry)
    assert isinstance(processor, LLMSpanProcessor)
    assert processor.downstream == ()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot be wrapped" in warnings[0].getMessage()

    call_gpt_4o_mini(provider)
    assert provider.force_flush(10_000)

    (span,) = receiver.wait_for_spans(1)
    assert span.attributes["gen_ai.usage.input_tokens"] == 1000
    assert not any(name.startswith(("gen_ai.usage.cost.", "otel_llm.")) for name in span.attributes)
    assert counter_total(registry, COST_SAMPLE) == pytest.approx(float(EXPECTED_COST))


def test_configure_twice_on_unsupported_internals_measures_once(
    concurrent_provider: TracerProvider,
) -> None:
    registry = CollectorRegistry()
    first = otel_llm.configure(tracer_provider=concurrent_provider, registry=registry)
    second = otel_llm.configure(tracer_provider=concurrent_provider, registry=registry)
    call_gpt_4o_mini(concurrent_provider)
    assert counter_total(registry, COST_SAMPLE) == pytest.approx(float(EXPECTED_COST))
    assert second is first


# --- no SDK provider yet: a subprocess per case ------------------------------------------------
def subprocess_environment(**variables: str) -> dict[str, str]:
    """This process's environment without its OTEL_* settings, plus ``variables``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    # Loopback traffic must not be sent to a proxy the developer's shell may name.
    environment["NO_PROXY"] = environment["no_proxy"] = "127.0.0.1,localhost"
    environment.update(variables)
    return environment


EXPORT_SCRIPT = """
import otel_llm
from opentelemetry import trace

processor = otel_llm.configure()
assert isinstance(processor, otel_llm.LLMSpanProcessor), processor
with otel_llm.llm_call(provider="openai", model="gpt-4o-mini") as handle:
    handle.set_usage(input_tokens=1000, output_tokens=200, cache_read_tokens=400)
trace.get_tracer_provider().shutdown()
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_configure_without_a_provider_exports_from_the_environment(
    receiver: OTLPReceiver, protocol: str
) -> None:
    port = receiver.grpc_port if protocol == "grpc" else receiver.http_port
    environment = subprocess_environment(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_SERVICE_NAME="svc-x",
    )
    done = subprocess.run(
        [sys.executable, "-c", EXPORT_SCRIPT],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    (span,) = receiver.wait_for_spans(1)
    assert span.transport == ("grpc" if protocol == "grpc" else "http")
    assert span.name == "chat gpt-4o-mini"
    assert span.resource["service.name"] == "svc-x"
    assert span.attributes["gen_ai.usage.cost.amount"] == pytest.approx(float(EXPECTED_COST))
    assert span.attributes["otel_llm.cost.model_id"] == "gpt-4o-mini"


METRICS_SCRIPT = """
import sys
import otel_llm

otel_llm.configure()
with otel_llm.llm_call(provider="openai", model="gpt-4o-mini") as handle:
    handle.set_usage(input_tokens=1000, output_tokens=200, cache_read_tokens=400)
print("ready", flush=True)
sys.stdin.read()  # serve /metrics until the test closes stdin
"""


def test_configure_serves_metrics_on_the_configured_port() -> None:
    port = free_port()
    environment = subprocess_environment(
        OTEL_LLM_PROMETHEUS_PORT=str(port), OTEL_TRACES_EXPORTER="none"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", METRICS_SCRIPT],
        env=environment,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        readable, _, _ = select.select([process.stdout], [], [], SUBPROCESS_TIMEOUT)
        assert readable, "the subprocess did not get ready in time"
        line = process.stdout.readline()
        if not line:  # it exited without getting ready; its stderr says why
            process.wait(timeout=SUBPROCESS_TIMEOUT)
            pytest.fail(f"the subprocess failed: {process.stderr.read() if process.stderr else ''}")
        assert line.strip() == "ready", line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            body = response.read().decode()
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=SUBPROCESS_TIMEOUT)
        finally:
            if process.returncode is None:
                process.kill()
                process.wait()
            process.stdout.close()
            if process.stderr is not None:
                process.stderr.close()

    assert process.returncode == 0
    cost_lines = [line for line in body.splitlines() if line.startswith(COST_SAMPLE + "{")]
    assert len(cost_lines) == 1, body
    assert 'gen_ai_request_model="gpt-4o-mini"' in cost_lines[0]
    assert float(cost_lines[0].rsplit(" ", 1)[1]) == pytest.approx(float(EXPECTED_COST))
