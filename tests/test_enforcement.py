"""Opt-in blocking in the application (issue 14, item 3), with real components: an ``otel-llm
collector`` subprocess with a policy file and its call-log API; an application with a real
``openai`` client against the tests' local LLM server, our instrumentor, ``configure(
policy_enforce="block")`` polling the collector, and OTLP to the collector.

Prices come from an override file (``budget-model``: $1 per million input tokens, $2 per million
output tokens); the local server answers 100 input and 50 output tokens, so each call costs
exactly 200,000 nano-USD and the $0.0004 daily budget is reached by the second call.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from otel_llm import PolicyBlocked, configure, enforcement, llm_call, llm_context
from otel_llm.instrumentation.anthropic import AnthropicInstrumentor
from otel_llm.instrumentation.openai import OpenAIInstrumentor
from tests.support.clock import wait_until
from tests.support.collector_process import CollectorProcess
from tests.support.fake_llm import FakeLLMServer, ScriptedResponse
from tests.support.ports import free_port

ADMIN_KEY = "enforcement-admin-key-0123456789"
PRICES = """\
overrides:
  - match: budget-model
    provider: openai
    prices: {input_mtok: 1.0, output_mtok: 2.0}
  - match: pricey-model
    provider: openai
    prices: {input_mtok: 100.0, output_mtok: 100.0}
"""
POLICIES = """\
policies:
  - name: shop-daily
    scope: {service: shop-api, project: shop}
    budgets: [{window: day, usd: 0.0004}]
    action: block
  - name: no-pricey
    scope: {service: "*-api"}
    calls: {denied_models: ["pricey-*"]}
    action: block
  - name: short-answers
    scope: {service: search-api}
    calls: {max_tokens: 500}
    action: block
  - name: watched
    scope: "*"
    budgets: [{window: day, usd: 0.0001}]
    action: alert
"""


def start_collector(tmp_path: Path, api: str = "127.0.0.1:0") -> CollectorProcess:
    (tmp_path / "prices.yaml").write_text(PRICES)
    (tmp_path / "keys.yaml").write_text(f"keys:\n  - name: admin\n    key: {ADMIN_KEY}\n")
    (tmp_path / "policies.yaml").write_text(POLICIES)
    process = CollectorProcess(
        [
            "--grpc-endpoint",
            "127.0.0.1:0",
            "--http-endpoint",
            "none",
            "--metrics-endpoint",
            "127.0.0.1:0",
            "--queue-dir",
            str(tmp_path / "queue"),
            "--call-log-store",
            str(tmp_path / "calls.db"),
            "--call-log-api-endpoint",
            api,
            "--call-log-api-keys-file",
            str(tmp_path / "keys.yaml"),
            "--price-overrides",
            str(tmp_path / "prices.yaml"),
            "--policies",
            str(tmp_path / "policies.yaml"),
        ]
    )
    assert process.api is not None, process.text
    return process


class App:
    """An instrumented application exporting to the collector, enforcing its block policies."""

    def __init__(
        self, process: CollectorProcess, server: FakeLLMServer, service: str, **settings: Any
    ):
        self.registry = CollectorRegistry()
        self.spans = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.spans))
        if process.grpc:
            exporter = OTLPSpanExporter(endpoint=process.grpc, insecure=True)
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        configure(
            tracer_provider=self.provider,
            registry=self.registry,
            policy_enforce="block",
            policy_api_url=process.api,
            policy_api_key=ADMIN_KEY,
            policy_refresh_interval=0.1,
            **settings,
        )
        self.instrumentor = OpenAIInstrumentor()
        self.instrumentor.instrument(tracer_provider=self.provider)
        self.client = openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0)

    @property
    def enforcer(self) -> enforcement.Enforcer:
        assert enforcement.active is not None
        return enforcement.active

    def chat(self, model: str = "budget-model") -> Any:
        return self.client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )

    def blocked_span(self) -> ReadableSpan:
        (span,) = [s for s in self.spans.get_finished_spans() if s.status.description]
        return span

    def close(self) -> None:
        self.instrumentor.uninstrument()
        enforcement.stop_enforcing()
        self.provider.shutdown()


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    process = start_collector(tmp_path_factory.mktemp("collector"))
    yield process
    assert process.terminate() == 0, process.text


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        fake.default = ScriptedResponse(input_tokens=100, output_tokens=50)
        yield fake


@pytest.fixture(autouse=True)
def _no_enforcement_left() -> Iterator[None]:
    yield
    enforcement.stop_enforcing()


def test_the_call_after_the_budget_is_exceeded_never_reaches_the_provider_until_the_reset(
    collector: CollectorProcess, server: FakeLLMServer
) -> None:
    app = App(collector, server, "shop-api")
    try:
        key = ("shop-api", "shop", None, None, None, "openai", "budget-model")
        with llm_context(project_id="shop"):
            app.chat()
            assert not app.enforcer.state.blocks(key)
            app.chat()  # reaches the $0.0004 limit: exceeded
            wait_until(lambda: app.enforcer.state.blocks(key), timeout=15)
            server.clear()
            with pytest.raises(PolicyBlocked) as caught:
                app.chat()
        assert server.requests == []  # nothing was sent
        blocked = caught.value
        assert (blocked.policy, blocked.rule) == ("shop-daily", "day")
        assert blocked.blocked_until is not None
        assert blocked.blocked_until.endswith("T00:00:00.000000Z")
        assert blocked.reset_time_ns is not None
        assert blocked.reset_time_ns > time.time_ns()

        span = app.blocked_span()
        attributes = dict(span.attributes or {})
        assert attributes["error.type"] == "otel_llm.PolicyBlocked"
        assert attributes["otel_llm.policy.blocked"] is True
        assert attributes["otel_llm.policy.name"] == "shop-daily"
        assert attributes["otel_llm.policy.rule"] == "day"
        assert attributes["otel_llm.policy.blocked_until"] == blocked.blocked_until
        # $0 known, not unpriced.
        assert attributes["gen_ai.usage.cost.amount"] == 0.0
        assert attributes["gen_ai.usage.cost.source"] == "blocked"
        assert "otel_llm.cost.unpriced_reason" not in attributes
        labels = {"policy": "shop-daily", "rule": "day"}
        assert (
            app.registry.get_sample_value("otel_llm_policy_enforcement_blocks_total", labels) == 1
        )
        # The collector counts the refused call as a block of its policy (and $0 of spend).
        wait_until(
            lambda: 'otel_llm_policy_blocks_total{policy="shop-daily"} 1.0' in collector.scrape(),
            timeout=15,
        )
        assert 'otel_llm_policy_spend_usd{policy="shop-daily",rule="day"} 0.0004' in (
            collector.scrape()
        )

        # Another project is in no exceeded budget: its call goes through.
        with llm_context(project_id="other"):
            app.chat()
        assert len(server.requests) == 1

        # The window resets (the application's clock at the reset time): calls go again.
        app.enforcer.clock = lambda: blocked.reset_time_ns or 0
        with llm_context(project_id="shop"):
            app.chat()
        assert len(server.requests) == 2
    finally:
        app.close()


def test_a_denied_model_is_refused_by_the_instrumentor_and_by_llm_call(
    collector: CollectorProcess, server: FakeLLMServer
) -> None:
    app = App(collector, server, "search-api")
    try:
        with pytest.raises(PolicyBlocked) as caught:
            app.chat("pricey-model")
        assert (caught.value.policy, caught.value.rule) == ("no-pricey", "denied_models")
        assert caught.value.blocked_until is None
        assert server.requests == []
        with pytest.raises(PolicyBlocked):
            with llm_call(provider="openai", model="pricey-large", tracer_provider=app.provider):
                raise AssertionError("the body of a refused call runs")
        anthropic_instrumentor = AnthropicInstrumentor()
        anthropic_instrumentor.instrument(tracer_provider=app.provider)
        try:
            claude = anthropic.Anthropic(
                base_url=server.anthropic_base_url, api_key="t", max_retries=0
            )
            with pytest.raises(PolicyBlocked, match="no-pricey"):
                claude.messages.create(model="pricey-claude", max_tokens=10, messages=[])
        finally:
            anthropic_instrumentor.uninstrument()
        assert server.requests == []
        app.chat("budget-model")
        assert len(server.requests) == 1
        refused = [s for s in app.spans.get_finished_spans() if s.status.description]
        assert {s.attributes["otel_llm.policy.rule"] for s in refused if s.attributes} == {
            "denied_models"
        }
        assert len(refused) == 3

        async def async_call() -> None:
            client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0)
            await client.chat.completions.create(model="pricey-model", messages=[], stream=True)

        with pytest.raises(PolicyBlocked, match="no-pricey"):
            asyncio.run(async_call())
        assert len(server.requests) == 1

        # A requested max_tokens over the rule's is refused before the call; within it, made.
        with pytest.raises(PolicyBlocked) as too_long:
            app.client.chat.completions.create(
                model="budget-model", messages=[], max_completion_tokens=501
            )
        assert (too_long.value.policy, too_long.value.rule) == ("short-answers", "max_tokens")
        assert len(server.requests) == 1
        app.client.chat.completions.create(model="budget-model", messages=[], max_tokens=500)
        assert len(server.requests) == 2
    finally:
        app.close()

    # Not enforcing (the default): the same call is made.
    provider = TracerProvider()
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0)
        client.chat.completions.create(model="pricey-model", messages=[])
        assert len(server.requests) == 3
    finally:
        instrumentor.uninstrument()


def test_fail_open_and_fail_closed_with_the_collector_stopped(
    tmp_path: Path, server: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    process = start_collector(tmp_path)
    open_app = App(process, server, "search-api")
    enforcer = open_app.enforcer
    closed = enforcement.Enforcer("search-api", fail_closed=True)
    poller = enforcement.PolicyPoller(closed, process.api or "", ADMIN_KEY, 0.1).start()
    try:
        with pytest.raises(PolicyBlocked):
            open_app.chat("pricey-model")
        assert closed.check("openai", "budget-model") is None
        assert closed.check("openai", "pricey-model") is not None
    finally:
        assert process.terminate() == 0, process.text

    try:
        with caplog.at_level(logging.WARNING, logger="otel_llm.enforcement"):
            wait_until(lambda: not enforcer.reachable and not closed.reachable, timeout=15)
            poller.stop()
        assert "cannot read the policy states" in caplog.text
        assert "letting calls through" in caplog.text
        assert "refusing every call" in caplog.text
        # Fail-open: the call goes through, even one the policies denied; counted.
        open_app.chat("pricey-model")
        assert len(server.requests) == 1
        unreachable = open_app.registry.get_sample_value(
            "otel_llm_policy_enforcement_unreachable_total"
        )
        assert unreachable is not None
        assert unreachable >= 1
        # Fail-closed: every call refused.
        block = closed.check("openai", "budget-model")
        assert block is not None
        assert (block.policy, block.rule) == (None, "unreachable")
        with pytest.raises(PolicyBlocked) as caught:
            enforcement.refuse(None, block)
        assert "unreachable" in str(caught.value)
    finally:
        poller.stop()
        open_app.close()


def test_enforcement_resumes_when_the_collector_is_back(
    tmp_path: Path, server: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    process = start_collector(tmp_path, endpoint)
    app = App(process, server, "search-api")
    try:
        assert process.terminate() == 0, process.text
        with caplog.at_level(logging.WARNING, logger="otel_llm.enforcement"):
            wait_until(lambda: not app.enforcer.reachable, timeout=15)
            app.chat("pricey-model")  # fail-open
            assert len(server.requests) == 1
            process = start_collector(tmp_path, endpoint)
            wait_until(lambda: app.enforcer.reachable, timeout=15)
        assert "can be read again" in caplog.text
        with pytest.raises(PolicyBlocked):
            app.chat("pricey-model")
        assert len(server.requests) == 1
    finally:
        app.close()
        process.kill()


def test_enforcement_state_from_an_answer_reuses_the_policies_scope_matching() -> None:
    state = enforcement.parse_state(
        {
            "revision": 3,
            "policies": [
                {
                    "name": "eu",
                    "scope": {"project": ["eu-*"], "provider": ["openai"]},
                    "blocked": True,
                    "blocked_until": "2026-12-08T00:00:00.000000Z",
                    "blocking": ["day", "week"],
                    "calls": {},
                },
                {"name": "bad", "scope": {"colour": ["red"]}, "blocked": True},
                {"name": "allow", "scope": "*", "calls": {"allowed_models": ["gpt-*"]}},
                {"name": "short", "scope": {"user": ["u"]}, "calls": {"max_tokens": 10}},
                {"name": "bad-limit", "scope": "*", "calls": {"max_tokens": -1}},
            ],
        }
    )
    eu = ("svc", "eu-1", None, None, None, "openai", "gpt-4o")
    (block,) = state.blocks(eu)
    reset = int(datetime(2026, 12, 8, tzinfo=UTC).timestamp()) * 10**9
    assert (block.policy, block.rule, block.until_ns) == ("eu", "day,week", reset)
    assert state.blocks(("svc", "us-1", None, None, None, "openai", "gpt-4o")) == ()
    (refused,) = state.blocks(("svc", "us-1", None, None, None, "openai", "claude"))
    assert (refused.policy, refused.rule) == ("allow", "allowed_models")
    (limit,) = state.blocks(("svc", "us-1", None, "u", None, "openai", "gpt-4o"))
    assert (limit.policy, limit.rule, limit.max_tokens) == ("short", "max_tokens", 10)
    copy = pickle.loads(pickle.dumps(block.exception()))  # noqa: S301 - our own bytes
    assert (copy.policy, copy.rule, copy.reset_time_ns) == ("eu", "day,week", reset)
    with pytest.raises(ValueError, match="enforcement answer"):
        enforcement.parse_state({"revision": 1})
