"""In-process enforcement without a collector (issue 14, item 3's last sentence): an application
with a real ``openai`` client against the tests' local LLM server, our instrumentor, and
``configure(policies=FILE, policy_enforce="block")``: each budget's spend is kept from the calls
this process prices, and the call after a budget is exceeded raises ``PolicyBlocked`` with no
request sent (the server's request log).

Prices come from an override file (``budget-model``: $1 per million input tokens, $2 per million
output tokens); the local server answers 100 input and 50 output tokens, so each call costs
exactly 200,000 nano-USD and the $0.0004 daily budget is reached, exactly, by the second call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor, PolicyBlocked, configure, enforcement, llm_context
from otel_llm.instrumentation.openai import OpenAIInstrumentor
from otel_llm.localpolicies import LocalPolicies, enforce_locally
from otel_llm.policies.windows import DAY_NS
from tests.support.fake_llm import FakeLLMServer, ScriptedResponse

PRICES = """\
overrides:
  - match: budget-model
    provider: openai
    prices: {input_mtok: 1.0, output_mtok: 2.0}
"""
POLICIES = """\
policies:
  - name: shop-daily
    scope: {service: shop-api, project: shop}
    budgets: [{window: day, usd: 0.0004}]
    action: block
  - name: no-pricey
    scope: "*"
    calls: {denied_models: ["pricey-*"]}
    action: block
  - name: watched
    scope: "*"
    budgets: [{window: day, usd: 0.0001}]
    action: alert
"""


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        fake.default = ScriptedResponse(input_tokens=100, output_tokens=50)
        yield fake


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "prices.yaml").write_text(PRICES)
    (tmp_path / "policies.yaml").write_text(POLICIES)
    return tmp_path / "prices.yaml", tmp_path / "policies.yaml"


@pytest.fixture(autouse=True)
def _no_enforcement_left() -> Iterator[None]:
    yield
    enforcement.stop_enforcing()


class App:
    """An instrumented application: real openai client, our instrumentor, spans kept."""

    def __init__(self, server: FakeLLMServer, provider: TracerProvider):
        self.provider = provider
        self.instrumentor = OpenAIInstrumentor()
        self.instrumentor.instrument(tracer_provider=provider)
        self.client = openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0)

    def chat(self, model: str = "budget-model") -> Any:
        return self.client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )

    def close(self) -> None:
        self.instrumentor.uninstrument()
        self.provider.shutdown()


def budget(local: LocalPolicies, policy: str) -> dict[str, Any]:
    (state,) = [s for s in local.engine.snapshot() if s["name"] == policy]
    (first,) = state["budgets"]
    return first


def test_configure_enforces_the_file_from_this_process_spend(
    server: FakeLLMServer, files: tuple[Path, Path]
) -> None:
    prices, policies = files
    spans = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-api"}))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    registry = CollectorRegistry()
    processor = configure(
        tracer_provider=provider,
        registry=registry,
        price_overrides=str(prices),
        policies=str(policies),
        policy_enforce="block",
    )
    assert processor is not None
    (local,) = [p for p in processor.downstream if isinstance(p, LocalPolicies)]
    assert enforcement.active is local.enforcer
    app = App(server, provider)
    try:
        with llm_context(project_id="shop"):
            app.chat()
            assert budget(local, "shop-daily")["spent_nanos"] == 200_000
            app.chat()  # reaches the $0.0004 limit exactly: exceeded
            second = spans.get_finished_spans()[-1].context
            assert second is not None
            spent = budget(local, "shop-daily")
            assert (spent["spent_nanos"], spent["state"]) == (400_000, "exceeded")
            assert spent["crossed_by"]["call_id"] == (
                f"{second.trace_id:032x}-{second.span_id:016x}"
            )
            server.clear()
            with pytest.raises(PolicyBlocked) as caught:
                app.chat()
        assert server.requests == []  # nothing was sent
        assert (caught.value.policy, caught.value.rule) == ("shop-daily", "day")
        assert caught.value.blocked_until is not None
        assert caught.value.blocked_until.endswith("T00:00:00.000000Z")
        refused = spans.get_finished_spans()[-1]
        assert refused.attributes is not None
        assert refused.attributes["gen_ai.usage.cost.source"] == "blocked"
        labels = {"policy": "shop-daily", "rule": "day"}
        assert registry.get_sample_value("otel_llm_policy_enforcement_blocks_total", labels) == 1
        # The refused call added $0 and counts as a block of its policy, as in the collector.
        assert budget(local, "shop-daily")["spent_nanos"] == 400_000
        assert local.engine.blocks == {"shop-daily": 1}
        # Another project is in no exceeded budget; the alert policy never blocks.
        with llm_context(project_id="other"):
            app.chat()
        assert len(server.requests) == 1
        assert budget(local, "watched")["state"] == "exceeded"
        # A denied model: refused before any request, in any project.
        with pytest.raises(PolicyBlocked, match="no-pricey"):
            app.chat("pricey-model")
        assert len(server.requests) == 1
    finally:
        app.close()
    assert local._thread is None  # the provider's shutdown stopped the file's watcher


def test_the_window_reset_unblocks_with_a_controlled_clock(
    server: FakeLLMServer, files: tuple[Path, Path]
) -> None:
    prices, policies = files
    fixed: list[int] = []

    def clock() -> int:  # real time until the test sets it
        return fixed[0] if fixed else time.time_ns()

    local = enforce_locally(str(policies), interval=60, service="shop-api", clock=clock)
    processor = LLMSpanProcessor(local, price_overrides=str(prices))
    local.pricer = processor.pricer
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-api"}))
    provider.add_span_processor(processor)
    app = App(server, provider)
    try:
        with llm_context(project_id="shop"):
            app.chat()
            app.chat()
            server.clear()
            with pytest.raises(PolicyBlocked) as caught:
                app.chat()
            reset = caught.value.reset_time_ns
            assert reset is not None
            assert server.requests == []
            # A nanosecond before the reset: still refused.
            fixed.append(reset - 1)
            with pytest.raises(PolicyBlocked):
                app.chat()
            assert server.requests == []
            # At the reset: the call is made, and the engine's window rolled over to the new
            # day (the call itself started in the day before: late data, it adds nothing).
            fixed[0] = reset
            app.chat()
            assert len(server.requests) == 1
            spent = budget(local, "shop-daily")
            assert (spent["spent_nanos"], spent["state"]) == (0, "ok")
            assert spent["window_start"].endswith("T00:00:00.000000Z")
            # The day after, the window rolls again (the clock the engine reads is this one).
            fixed[0] = reset + DAY_NS
            assert budget(local, "shop-daily")["window_start"] > spent["window_start"]
    finally:
        app.close()


def test_a_reload_applies_at_once_and_an_invalid_edit_keeps_the_last_good_file(
    server: FakeLLMServer, files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    prices, policies = files
    local = enforce_locally(str(policies), interval=0.05, service="shop-api")
    processor = LLMSpanProcessor(local, price_overrides=str(prices))
    local.pricer = processor.pricer
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-api"}))
    provider.add_span_processor(processor)
    app = App(server, provider)
    try:
        with llm_context(project_id="shop"):
            app.chat()
            app.chat()
            with pytest.raises(PolicyBlocked):
                app.chat()
            # The limit raised in the file: the watcher reloads it, the spend is kept (same
            # scope and window), the state is rebuilt without a call.
            reloads = local.file.reloads
            policies.write_text(POLICIES.replace("usd: 0.0004", "usd: 0.0010"))
            deadline = time.monotonic() + 10
            while local.file.reloads == reloads:
                assert time.monotonic() < deadline, "the file was not reloaded"
                time.sleep(0.02)
            assert budget(local, "shop-daily")["spent_nanos"] == 400_000
            assert local.enforcer.check("openai", "budget-model") is None
            server.clear()
            app.chat()
            assert len(server.requests) == 1
            # An invalid edit: logged, the last good policies stay in force.
            with caplog.at_level(logging.ERROR, logger="otel_llm.policies.watch"):
                policies.write_text(POLICIES.replace("window: day", "window: fortnight"))
                deadline = time.monotonic() + 10
                while local.file.failed_reloads == 0:
                    assert time.monotonic() < deadline, "the edit was not seen"
                    time.sleep(0.02)
            assert "fortnight" in caplog.text
            assert budget(local, "shop-daily")["spent_nanos"] == 600_000
            # A policy removed: its block goes with it.
            raised = POLICIES.replace("usd: 0.0004", "usd: 0.0010")
            policies.write_text(raised.replace("pricey-*", "nothing-*"))
            deadline = time.monotonic() + 10
            while local.enforcer.check("openai", "pricey-model") is not None:
                assert time.monotonic() < deadline, "the reload did not unblock"
                time.sleep(0.02)
            app.chat("pricey-model")
            assert len(server.requests) == 2
    finally:
        app.close()


def test_an_invalid_file_enforces_nothing_and_says_why(
    server: FakeLLMServer, files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    _, policies = files
    policies.write_text("policies:\n  - name: x\n    scope: {colour: red}\n")
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-api"}))
    with caplog.at_level(logging.ERROR, logger="otel_llm._configure"):
        processor = configure(
            tracer_provider=provider,
            registry=CollectorRegistry(),
            policies=str(policies),
            policy_enforce="block",
        )
    assert processor is not None
    assert "colour" in caplog.text
    assert enforcement.active is None
    assert not any(isinstance(p, LocalPolicies) for p in processor.downstream)
    provider.shutdown()
