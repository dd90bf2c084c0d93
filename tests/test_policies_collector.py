"""Budgets and policies in a real collector (issue 14): an OpenTelemetry SDK application exports
GenAI spans over OTLP/gRPC to a ``CollectorService`` whose call log (SQLite, or the private
PostgreSQL cluster) is its call sink and serves ``/api/v1/policies``; the test reads the states
over HTTP and the counters on ``/metrics``, restarts the collector on the same store, reloads
the policy file, and runs ``otel-llm collector`` and ``otel-llm policies`` as processes.

Prices come from an override file (``budget-model``: $1 per million input tokens, $2 per
million output tokens), so each call of 100 input and 50 output tokens costs exactly
200,000 nano-USD.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from prometheus_client import CollectorRegistry

from otel_llm.calllog import policyapi
from otel_llm.calllog.auth import ApiKey
from otel_llm.calllog.config import CallLogConfig
from otel_llm.calllog.policyspend import StoreSpendHistory
from otel_llm.calllog.query import CallFilter
from otel_llm.calllog.service import CallLogService
from otel_llm.calllog.store import SQLCallStore
from otel_llm.collector.config import CollectorConfig
from otel_llm.collector.policies import CollectorPolicies
from otel_llm.collector.service import CollectorService
from otel_llm.policies import PolicyFile
from otel_llm.processor import LLMSpanProcessor
from tests.support.clock import wait_until
from tests.support.collector_process import CollectorProcess
from tests.support.postgres import (  # noqa: F401 - fixture
    BACKENDS,
    PostgresCluster,
    empty_store_url,
    pg_cluster,
)

ADMIN_KEY = "policies-admin-key-0123456789"
SHOP_KEY = "policies-shop-key-0123456789"
CALL_NANOS = 200_000

PRICES = """\
overrides:
  - match: budget-model
    provider: openai
    prices: {input_mtok: 1.0, output_mtok: 2.0}
  - match: pricey-model
    provider: openai
    prices: {input_mtok: 100.0, output_mtok: 100.0}
"""

BUDGET = """\
policies:
  - name: shop-daily
    scope: {project: shop, model: "budget-*"}
    budgets:
      - window: day
        usd: 0.0006
        warn_at: 50
    action: block
  - name: everyone
    scope: "*"
    budgets: [{window: month, tokens: 1000000}, {window: 2h, usd: 1}]
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        f"keys:\n  - name: admin\n    key: {ADMIN_KEY}\n"
        f"  - name: shop\n    key: {SHOP_KEY}\n    projects: [shop]\n"
    )
    policies = tmp_path / "policies.yaml"
    policies.write_text(BUDGET)
    return {"prices": prices, "keys": keys, "policies": policies}


@contextmanager
def collector(
    tmp_path: Path,
    store: str,
    files: dict[str, Path],
    *,
    interval: float = 3600.0,
    sync: float = 5.0,
    queue: str = "queue",
) -> Iterator[tuple[CollectorService, CallLogService]]:
    """A collector with its call log, API and policies, as ``otel-llm collector`` wires them
    (``sync``: its ``policy_sync_interval``)."""
    policies = CollectorPolicies.open(str(files["policies"]), interval=interval)
    config = CallLogConfig.from_settings(
        store=store, api_endpoint="127.0.0.1:0", api_keys_file=str(files["keys"])
    )
    call_log = CallLogService(config, policies=policies.file).start()
    assert isinstance(call_log.store, SQLCallStore)
    service = CollectorService(
        CollectorConfig.from_settings(
            grpc_endpoint="127.0.0.1:0",
            http_endpoint="none",
            metrics_endpoint="127.0.0.1:0",
            queue_dir=str(tmp_path / queue),
            policy_sync_interval=sync,
        ),
        registry=CollectorRegistry(),
        call_sink=call_log.sink,
        price_overrides=str(files["prices"]),
        policies=policies,
        policy_history=StoreSpendHistory(call_log.store),
    ).start()
    try:
        yield service, call_log
    finally:
        service.stop(timeout=5)
        call_log.stop()


class App:
    """An application with the OpenTelemetry SDK alone, exporting each span as it ends."""

    def __init__(self, service: CollectorService):
        exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{service.grpc_port}", insecure=True)
        self.provider = TracerProvider(resource=Resource.create({"service.name": "shop-api"}))
        self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("shop")

    def call(
        self,
        model: str = "budget-model",
        project: str = "shop",
        tokens: tuple[int, int] = (100, 50),
    ) -> str:
        """One chat call, exported before this returns; its call id."""
        attributes = call_attributes(model, project, tokens)
        with self.tracer.start_as_current_span(
            f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            context = span.get_span_context()
        return f"{format_trace_id(context.trace_id)}-{format_span_id(context.span_id)}"

    def close(self) -> None:
        self.provider.shutdown()


def call_attributes(
    model: str = "budget-model", project: str = "shop", tokens: tuple[int, int] = (100, 50)
) -> dict[str, Any]:
    """One chat call's attributes (``budget-model`` is priced by the override file)."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": tokens[0],
        "gen_ai.usage.output_tokens": tokens[1],
        "otel_llm.context.project_id": project,
    }


def recorded_call() -> list[ReadableSpan]:
    """One chat call's span, kept to be delivered more than once."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-api"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("shop").start_as_current_span("chat", attributes=call_attributes()):
        pass
    return list(memory.get_finished_spans())


def api(call_log: CallLogService, path: str, key: str = ADMIN_KEY) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{call_log.api_port}/api/v1/policies{path}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def budget_of(call_log: CallLogService, name: str = "shop-daily") -> dict[str, Any]:
    status, policy = api(call_log, f"/{name}")
    assert status == 200, policy
    budget: dict[str, Any] = policy["budgets"][0]
    budget["policy"] = policy
    return budget


def sample(service: CollectorService, name: str, **labels: str) -> float | None:
    return service.registry.get_sample_value(name, labels)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_budget_turns_exceeded_at_the_exact_call_and_survives_a_restart(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, files: dict[str, Path]
) -> None:
    store = empty_store_url(backend, request, tmp_path)
    with collector(tmp_path, store, files) as (service, call_log):
        app = App(service)
        seen = []
        ids = []
        for _ in range(3):
            ids.append(app.call())
            budget = budget_of(call_log)
            seen.append((budget["state"], budget["spent_nanos"]))
        # Other projects' calls and other models are outside the scope.
        app.call(project="search")
        app.call(model="pricey-model")
        after = budget_of(call_log)
        blocks_before = sample(service, "otel_llm_policy_blocks_total", policy="shop-daily")
        app.call()  # while exceeded: a violation, and a call an enforcing app refuses
        app.close()

        assert seen == [("ok", 200_000), ("warning", 400_000), ("exceeded", 600_000)]
        assert after["crossed_by"]["call_id"] == ids[2]  # the very call that reached $0.0006
        assert after["spent_usd"] == 0.0006
        assert after["remaining_nanos"] == 0
        policy = budget_of(call_log)["policy"]
        assert policy["state"] == "exceeded"
        assert policy["blocked"] is True
        assert policy["blocked_until"].endswith("T00:00:00.000000Z")
        assert (policy["violations"], policy["alerts"], policy["blocks"]) == (2, 2, 1)

        # The same on /metrics.
        labels = {"policy": "shop-daily", "rule": "day"}
        assert sample(service, "otel_llm_policy_spend_usd", **labels) == 0.0008
        assert sample(service, "otel_llm_policy_limit_usd", **labels) == 0.0006
        assert sample(service, "otel_llm_policy_state", **labels) == 2
        assert sample(service, "otel_llm_policy_alerts_total", **labels) == 2
        assert sample(service, "otel_llm_policy_violations_total", action="block", **labels) == 2
        assert blocks_before == 0
        assert sample(service, "otel_llm_policy_blocks_total", policy="shop-daily") == 1
        everyone = {"policy": "everyone", "rule": "month"}
        assert sample(service, "otel_llm_policy_tokens", **everyone) == 6 * 150

        # The list, and what a key limited to the project "shop" may see.
        status, listed = api(call_log, "")
        assert status == 200
        assert [p["name"] for p in listed["policies"]] == ["shop-daily", "everyone"]
        assert listed["file"]["last_error"] is None
        status, blocking = api(call_log, "?action=block")
        assert [p["name"] for p in blocking["policies"]] == ["shop-daily"]
        status, shown = api(call_log, "", key=SHOP_KEY)
        assert [p["name"] for p in shown["policies"]] == ["shop-daily"]
        assert api(call_log, "/everyone", key=SHOP_KEY)[0] == 404  # all projects' spend
        # What an enforcing application polls: the block policies, and nothing while unchanged.
        status, enforcement = api(call_log, "?view=enforcement")
        assert status == 200
        assert enforcement["policies"] == [
            {
                "name": "shop-daily",
                "scope": {"project": ["shop"], "model": ["budget-*"]},
                "state": "exceeded",
                "blocked": True,
                "blocked_until": policy["blocked_until"],
                "blocking": ["day"],
                "calls": {},
            }
        ]
        revision = enforcement["revision"]
        unchanged = {"revision": revision, "unchanged": True}
        assert api(call_log, f"?view=enforcement&since={revision}")[1] == unchanged
        assert "policies" in api(call_log, f"?view=enforcement&since={revision - 1}")[1]
        assert api(call_log, "?since=latest")[0] == 400
        assert api(call_log, "?colour=red")[0] == 400
        assert api(call_log, "/nope")[0] == 404
        assert api(call_log, "", key="wrong-key-0123456789")[0] == 401

    # A restart: the spend is read back from the store, to the nano-USD.
    with collector(tmp_path, store, files) as (service, call_log):
        budget = budget_of(call_log)
        assert (budget["state"], budget["spent_nanos"]) == ("exceeded", 800_000)
        assert budget["policy"]["blocked"] is True
        assert budget_of(call_log, "everyone")["spent_tokens"] == 6 * 150
        assert budget["calls"] == 4  # read back too
        _, everyone = api(call_log, "/everyone")
        rolling = everyone["budgets"][1]
        # $0.0002 x 5 and the pricey call (150 tokens at $100/M = $0.015), by the minute.
        assert (rolling["window"], rolling["spent_nanos"]) == ("2h", 5 * 200_000 + 15_000_000)
        assert (
            sample(service, "otel_llm_policy_spend_usd", policy="shop-daily", rule="day") == 0.0008
        )


def test_denied_models_and_max_cost_per_call_under_record_alert_and_block(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    rules = "    calls: {denied_models: ['pricey-*'], max_cost_usd: 0.0002}\n"
    files["policies"].write_text(
        "policies:\n"
        + "".join(
            f"  - name: {action}-rules\n    scope: '*'\n    action: {action}\n{rules}"
            for action in ("record", "alert", "block")
        )
    )
    with collector(tmp_path, str(tmp_path / "calls.db"), files) as (service, call_log):
        app = App(service)
        app.call()  # $0.0002: at the max cost, allowed
        app.call(tokens=(101, 50))  # one token more: 1,000 nano-USD over
        app.call(model="pricey-model", tokens=(1, 1))  # denied ($0.0002, not over)
        app.call(model="pricey-model")  # denied and over the max cost: both rules broken
        app.close()
        for action in ("record", "alert", "block"):
            name = f"{action}-rules"
            for rule, expected in (("denied_models", 2), ("max_cost", 2)):
                labels = {"policy": name, "rule": rule, "action": action}
                assert sample(service, "otel_llm_policy_violations_total", **labels) == expected
            status, policy = api(call_log, f"/{name}")
            assert status == 200
            assert policy["violations"] == 4
            assert policy["alerts"] == (0 if action == "record" else 4)
            assert policy["blocks"] == (3 if action == "block" else 0)  # calls, not rules
            assert policy["calls"] == {"denied_models": ["pricey-*"], "max_cost_usd": 0.0002}
        assert sample(service, "otel_llm_policy_blocks_total", policy="block-rules") == 3
        assert sample(service, "otel_llm_policy_alerts_total", policy="record-rules") is None


def test_the_file_is_reloaded_on_change_and_a_bad_edit_keeps_the_last_good_one(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    with collector(tmp_path, str(tmp_path / "calls.db"), files, interval=0.05) as (
        service,
        call_log,
    ):
        app = App(service)
        app.call()
        app.call()
        assert budget_of(call_log)["state"] == "warning"
        # A lower limit: the same day's spend is now over it.
        files["policies"].write_text(BUDGET.replace("usd: 0.0006", "usd: 0.0004"))
        wait_until(lambda: budget_of(call_log)["limit_nanos"] == 400_000)
        assert budget_of(call_log)["state"] == "exceeded"
        # A new policy: its spend is read from the store (the two calls are stored by now).
        wait_until(lambda: call_log.store.count(CallFilter()) == 2)
        files["policies"].write_text(
            BUDGET + "  - name: shop-weekly\n    scope: {project: shop}\n"
            "    budgets: [{window: week, usd: 1}]\n"
        )
        wait_until(lambda: api(call_log, "/shop-weekly")[0] == 200)
        assert budget_of(call_log, "shop-weekly")["spent_nanos"] == 400_000

        files["policies"].write_text(BUDGET.replace("window: day", "window: 0h"))
        wait_until(lambda: api(call_log, "")[1]["file"]["last_error"] is not None)
        listed = api(call_log, "")[1]
        assert "policies.yaml:5: policies[0].budgets[0].window" in listed["file"]["last_error"]
        assert [p["name"] for p in listed["policies"]] == ["shop-daily", "everyone", "shop-weekly"]
        app.call()
        assert budget_of(call_log)["spent_nanos"] == 600_000  # still evaluated
        app.close()


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-m", "otel_llm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_policies_check_prints_the_scopes_and_refuses_a_bad_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(BUDGET)
    done = run_cli("policies", "check", str(good))
    assert done.returncode == 0, done.stderr
    assert "2 policies, valid" in done.stdout
    assert "scope: project shop; model budget-*" in done.stdout
    assert "budget day: $0.0006 per day, warning at 50%" in done.stdout
    assert "scope: every call" in done.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(BUDGET.replace("usd: 0.0006", "usd: -1").replace('"budget-*"', '"[x"'))
    done = run_cli("policies", "check", str(bad))
    assert done.returncode == 1
    assert "bad.yaml:3: policies[0].scope.model: bad pattern '[x'" in done.stderr
    assert "bad.yaml:6: policies[0].budgets[0].usd: must be greater than 0" in done.stderr


def test_the_collector_cli_refuses_a_bad_file_reloads_on_sighup_and_status_reads_a_store(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    store = tmp_path / "calls.db"
    common = [
        "--grpc-endpoint", "127.0.0.1:0", "--http-endpoint", "none",
        "--metrics-endpoint", "127.0.0.1:0", "--queue-dir", str(tmp_path / "queue"),
        "--call-log-store", str(store), "--call-log-api-endpoint", "127.0.0.1:0",
        "--call-log-api-keys-file", str(files["keys"]), "--price-overrides", str(files["prices"]),
    ]  # fmt: skip
    bad = tmp_path / "bad.yaml"
    bad.write_text(BUDGET.replace("window: day", "window: 0h"))
    done = run_cli("collector", *common, "--policies", str(bad))
    assert done.returncode == 1
    assert "bad.yaml:5: policies[0].budgets[0].window: a rolling window of 0 hours" in done.stderr

    process = CollectorProcess([*common, "--policies", str(files["policies"])])
    try:
        assert process.api is not None, process.text
        provider = TracerProvider(resource=Resource.create({"service.name": "shop-api"}))
        exporter = OTLPSpanExporter(endpoint=process.grpc, insecure=True)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer("shop").start_as_current_span(
            "chat",
            attributes=call_attributes(),
        ):
            pass
        provider.shutdown()
        assert (
            'otel_llm_policy_spend_usd{policy="shop-daily",rule="day"} 0.0002' in process.scrape()
        )

        files["policies"].write_text(BUDGET.replace("usd: 0.0006", "usd: 0.0002"))
        process.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in process.text)
        scraped = process.scrape()
        assert 'otel_llm_policy_limit_usd{policy="shop-daily",rule="day"} 0.0002' in scraped
        assert 'otel_llm_policy_state{policy="shop-daily",rule="day"} 2.0' in scraped

        status = run_cli("policies", "status", "--api", process.api, "--api-key", ADMIN_KEY)
        assert status.returncode == 0, status.stderr
        (row,) = [line for line in status.stdout.splitlines() if line.startswith("shop-daily")]
        assert row.split()[:6] == ["shop-daily", "block", "exceeded", "day", "$0.0002", "$0.0002"]
    finally:
        assert process.terminate() == 0, process.text

    # From the store alone, as a restarted collector would compute it.
    status = run_cli(
        "policies", "status", "--store", str(store), "--policies", str(files["policies"]), "--json"
    )
    assert status.returncode == 0, status.stderr
    (daily, _) = json.loads(status.stdout)["policies"]
    assert (daily["state"], daily["budgets"][0]["spent_nanos"]) == ("exceeded", 200_000)


def test_a_request_delivered_twice_is_evaluated_once(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    with collector(tmp_path, str(tmp_path / "calls.db"), files) as (service, call_log):
        spans = recorded_call()
        exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{service.grpc_port}", insecure=True)
        for _ in range(2):  # a client retrying an export whose reply it lost
            assert exporter.export(spans) == SpanExportResult.SUCCESS
        exporter.shutdown()
        assert budget_of(call_log)["spent_nanos"] == CALL_NANOS


def test_a_redelivered_call_priced_in_the_app_is_evaluated_once_too(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    """The policies take "delivered before?" from the enricher's dedup window, which holds
    every call -- also one an in-process ``LLMSpanProcessor`` priced (the collector does not
    measure it again, so it is no ``duplicate`` in its metrics)."""
    with collector(tmp_path, str(tmp_path / "calls.db"), files) as (service, call_log):
        memory = InMemorySpanExporter()
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "budget-model",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 50,
            "otel_llm.context.project_id": "shop",
        }
        resource = Resource.create({"service.name": "shop-api"})
        priced_here = TracerProvider(resource=resource)
        priced_here.add_span_processor(
            LLMSpanProcessor(SimpleSpanProcessor(memory), registry=CollectorRegistry())
        )
        plain = TracerProvider(resource=resource)
        plain.add_span_processor(SimpleSpanProcessor(memory))
        for provider in (priced_here, plain):
            with provider.get_tracer("shop").start_as_current_span("chat", attributes=attributes):
                pass
        spans = memory.get_finished_spans()
        assert [otel_llm_handled(span) for span in spans] == [True, False]
        exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{service.grpc_port}", insecure=True)
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        first = budget_of(call_log, "everyone")
        assert first["calls"] == 2
        for _ in range(2):  # a client retrying an export whose reply it lost, twice
            assert exporter.export(spans) == SpanExportResult.SUCCESS
        exporter.shutdown()
        again = budget_of(call_log, "everyone")
        assert (again["calls"], again["spent_tokens"]) == (2, first["spent_tokens"]) == (2, 300)
        assert sample(service, "otel_llm_collector_duplicate_spans_total") == 2  # measured one


def otel_llm_handled(span: Any) -> bool:
    return "otel_llm.cost.unpriced_reason" in span.attributes or (
        "otel_llm.cost.price_data" in span.attributes
    )


SYNC = 0.3
"""The replicas' policy_sync_interval in the test below (seconds)."""


def test_two_collectors_on_one_postgresql_agree_on_the_spend_within_the_sync_interval(
    pg_cluster: PostgresCluster,  # noqa: F811 - the fixture
    tmp_path: Path,
    files: dict[str, Path],
) -> None:
    store = pg_cluster.create_database()
    with (
        collector(tmp_path, store, files, sync=SYNC, queue="a") as (service_a, log_a),
        collector(tmp_path, store, files, sync=SYNC, queue="b") as (service_b, log_b),
    ):
        app_a, app_b = App(service_a), App(service_b)
        app_a.call()
        app_a.call()
        assert budget_of(log_a)["spent_nanos"] == 2 * CALL_NANOS  # its own calls at once
        app_b.call()  # the third call: $0.0006, the limit -- reached on neither alone
        sent = time.monotonic()

        def agreed() -> bool:
            budgets = [budget_of(log_a), budget_of(log_b)]
            return all(
                (b["state"], b["spent_nanos"], b["spent_tokens"], b["calls"])
                == ("exceeded", 3 * CALL_NANOS, 3 * 150, 3)
                for b in budgets
            )

        wait_until(agreed, timeout=10)
        # Within the interval plus the time a call takes to be stored (well under a second).
        assert time.monotonic() - sent < SYNC + 2.0
        for log in (log_a, log_b):
            status, enforcement = api(log, "?view=enforcement")
            assert status == 200
            assert enforcement["policies"][0]["blocked"] is True  # what enforcing apps poll
            assert budget_of(log)["crossed_by"] is not None
        for service in (service_a, service_b):
            labels = {"policy": "shop-daily", "rule": "day"}
            assert sample(service, "otel_llm_policy_spend_usd", **labels) == 0.0006
            assert sample(service, "otel_llm_policy_state", **labels) == 2

        # The same span delivered to both (a load balancer's ring changed): stored once, and
        # once in each replica's spend after a resync, though both evaluated it.
        spans = recorded_call()
        for service in (service_a, service_b):
            exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{service.grpc_port}", insecure=True)
            assert exporter.export(spans) == SpanExportResult.SUCCESS
            exporter.shutdown()
        wait_until(
            lambda: (
                [budget_of(log)["spent_nanos"] for log in (log_a, log_b)] == [4 * CALL_NANOS] * 2
            ),
            timeout=10,
        )
        time.sleep(2 * SYNC)  # and it stays there: nothing counted twice at a later resync
        assert [budget_of(log)["spent_nanos"] for log in (log_a, log_b)] == [4 * CALL_NANOS] * 2
        assert log_a.store.count(CallFilter()) == 4
        app_a.close()
        app_b.close()


RULES = """\
  - name: no-pricey
    scope: "*"
    calls: {denied_models: ["pricey-*"]}
    action: alert
  - name: big-calls
    scope: "*"
    calls: {max_tokens: 1000}
"""


def calls_api(call_log: CallLogService, path: str, **params: str) -> tuple[int, Any]:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    url = f"http://127.0.0.1:{call_log.api_port}/api/v1/calls{path}{query}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_violation_is_recorded_on_its_call_and_counted_in_stats(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, files: dict[str, Path]
) -> None:
    files["policies"].write_text(BUDGET + RULES)
    store = empty_store_url(backend, request, tmp_path)
    with collector(tmp_path, store, files) as (service, call_log):
        app = App(service)
        expected: dict[str, tuple[str, str, str] | None] = {}
        expected[app.call()] = None  # $0.0002 of shop-daily's $0.0006
        expected[app.call()] = None  # the warning: an alert, not a violation
        expected[app.call()] = ("shop-daily", "day", "block")  # reaches the limit
        expected[app.call(project="search")] = None  # outside shop-daily's scope
        expected[app.call()] = ("shop-daily", "day", "block")  # while exceeded: refused
        expected[app.call(model="pricey-model", project="search")] = (
            "no-pricey",
            "denied_models",
            "alert",
        )
        expected[app.call(project="search", tokens=(2000, 10))] = (
            "big-calls",
            "max_tokens",
            "record",
        )
        # Both call rules broken: the alert policy's is the more severe.
        expected[app.call(model="pricey-model", project="search", tokens=(2000, 10))] = (
            "no-pricey",
            "denied_models",
            "alert",
        )
        app.close()
        wait_until(lambda: call_log.store.count(CallFilter()) == len(expected))

        for call_id, verdict in expected.items():
            status, call = calls_api(call_log, f"/{call_id}")
            assert status == 200, call
            assert (call["policy"], call["policy_rule"], call["policy_action"]) == (
                verdict or (None, None, None)
            ), call_id

        # Seed 002's totals: the calls with a violation, of alert/block policies, of block ones.
        status, stats = calls_api(call_log, "/stats")
        assert status == 200, stats
        totals = stats["stats"]
        assert (totals["policy_violations"], totals["alerts"], totals["blocks"]) == (5, 4, 2)
        # The same from the call records (hourly stats read them, not the daily rows).
        status, hourly = calls_api(call_log, "/stats", group_by="hour")
        assert status == 200, hourly
        assert sum(g["policy_violations"] for g in hourly["groups"]) == 5
        assert sum(g["blocks"] for g in hourly["groups"]) == 2
        # A filter the daily rows answer: the shop project's calls only.
        status, shop = calls_api(call_log, "/stats", project="shop")
        shop_totals = shop["stats"]
        assert (shop_totals["policy_violations"], shop_totals["alerts"]) == (2, 2)

        # The calls list filters on them.
        status, listed = calls_api(call_log, "", policy="shop-daily,no-pricey", limit="100")
        assert status == 200, listed
        assert sorted(c["id"] for c in listed["calls"]) == sorted(
            call_id for call_id, v in expected.items() if v and v[0] != "big-calls"
        )
        status, counted = calls_api(call_log, "/count", policy_action="record")
        assert (status, counted["count"]) == (200, 1)

        status, grouped = calls_api(call_log, "/stats", group_by="policy")
        assert status == 200, grouped
        groups = {g["group"]: g for g in grouped["groups"]}
        assert {name: g["total_requests"] for name, g in groups.items()} == {
            "shop-daily": 2,
            "no-pricey": 2,
            "big-calls": 1,
            None: 3,
        }
        assert (groups["shop-daily"]["blocks"], groups["no-pricey"]["alerts"]) == (2, 2)
        assert groups["big-calls"]["policy_violations"] == 1
        assert groups["big-calls"]["alerts"] == 0
        assert groups[None]["policy_violations"] == 0


def test_a_call_taken_before_its_evaluation_or_derived_again_gets_its_verdict(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    """The call feeder can take a batch off the queue before its request was evaluated, or
    derive its calls again from the payload: either way the record gets the verdict."""
    files["policies"].write_text(BUDGET + RULES)
    policies = CollectorPolicies.open(str(files["policies"]))
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-api"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for model in ("budget-model", "pricey-model"):
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 50,
        }
        with provider.get_tracer("shop").start_as_current_span("chat", attributes=attributes):
            pass
    payload = encode_spans(memory.get_finished_spans()).SerializeToString()
    with collector(tmp_path, str(tmp_path / "calls.db"), files) as (service, _):
        enrich = service.enricher.enrich

        def calls_of() -> list[Any]:
            request = ExportTraceServiceRequest.FromString(payload)
            return list(enrich(request, raw=payload, record=False).calls)

        queued = calls_of()
        ticket = policies.expect(queued)  # the request path, before the put
        settled = threading.Event()

        def feeder() -> None:
            policies.settle(queued)  # the feeder took the batch first: it waits
            settled.set()

        thread = threading.Thread(target=feeder)
        thread.start()
        assert not settled.wait(0.2)
        policies.observe(queued, ticket)  # the request path, after the put
        thread.join(5)
        assert settled.is_set()
        verdict = ("no-pricey", "denied_models", "alert")
        assert [call.policy for call in queued] == [None, verdict]

        again = calls_of()  # the same batch derived again from its payload (no memo)
        assert [call.policy for call in again] == [None, None]
        policies.settle(again, True)
        assert [call.policy for call in again] == [None, verdict]

        # A request the queue refused is never evaluated: it holds no feeder back.
        policies.abandon(policies.expect(calls_of()))
        started = time.monotonic()
        policies.settle(calls_of(), True)
        assert time.monotonic() - started < 1.0
    policies.stop()


def test_a_batch_whose_memo_was_refused_is_stored_after_its_evaluation(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    """The queue keeps a batch's calls in memory for the call feeder (its memo) within a bound
    (32 MiB of payload); past it, the feeder derives the calls again from the payload, and may
    take the batch before the request path has evaluated it. Stored before its evaluation, the
    call would lack its verdict, and a replica's resync would count it twice (in the store's
    sums and among the calls evaluated and not known stored) until it aged out."""
    files["policies"].write_text(BUDGET + RULES)
    with collector(tmp_path, str(tmp_path / "calls.db"), files, sync=3600.0) as (service, log):
        assert service.queue is not None
        assert service.policies is not None
        policies = service.policies
        service.queue._memo_max_bytes = 0  # every memo refused: as with 32 MiB of them waiting
        observe = policies.observe

        def late(*args: Any) -> None:
            # The request path, slower than the feeder: it evaluates the calls after the
            # feeder had the time to store them (or a second at most, if the feeder waits).
            deadline = time.monotonic() + 1.0
            while log.store.count(CallFilter()) == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            observe(*args)

        policies.observe = late  # type: ignore[method-assign]
        app = App(service)
        call_id = app.call(model="pricey-model")  # denied by no-pricey: a verdict to store
        app.close()
        wait_until(lambda: log.store.count(CallFilter()) == 1)
        status, call = calls_api(log, f"/{call_id}")
        assert status == 200, call
        assert (call["policy"], call["policy_rule"]) == ("no-pricey", "denied_models")
        pricey = 100 * 100_000 + 50 * 100_000  # $100 per million tokens, in nano-USD
        assert budget_of(log, "everyone")["policy"]["budgets"][1]["spent_nanos"] == pricey
        policies.resync()
        assert budget_of(log, "everyone")["policy"]["budgets"][1]["spent_nanos"] == pricey


def test_a_key_limited_to_projects_is_not_shown_the_file_path_or_its_errors(
    files: dict[str, Path],
) -> None:
    """Found in review: every key was shown the policy file's path on the server and the error
    of a bad edit, which quotes the values of the line it refuses -- any project's policy."""

    policy_file = PolicyFile.open(str(files["policies"]))
    files["policies"].write_text(
        BUDGET + "  - name: other-launch\n    scope: {project: other}\n"
        "    budgets: [{window: secret-fortnight, usd: 1}]\n"
    )
    assert not policy_file.reload()
    admin = policyapi.answer(policy_file, ApiKey.plain("admin", ADMIN_KEY), None, {})
    assert "secret-fortnight" in admin["file"]["last_error"]
    assert admin["file"]["path"] == str(files["policies"])
    shop = policyapi.answer(policy_file, ApiKey.plain("shop", SHOP_KEY, ["shop"]), None, {})
    assert str(files["policies"]) not in json.dumps(shop, default=str)
    assert "secret" not in json.dumps(shop, default=str)
    assert shop["file"]["failed_reloads"] == 1  # that the file in force is not the one on disk
    assert [p["name"] for p in shop["policies"]] == ["shop-daily"]
