"""collector_config/: promtool checks, and a real Prometheus scraping a real LLMSpanProcessor.

Every PromQL expression of the Grafana dashboard and of the alert and recording rules is
evaluated through the HTTP API of a Prometheus server (Debian package ``prometheus``, installed
by tests/run.sh) that scrapes ``/metrics`` of an ``LLMSpanProcessor`` fed with simulated calls:
each must evaluate without error and return data, so a metric or label renamed in the code
breaks this test instead of the dashboard.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor, demo, start_metrics_server
from otel_llm import _semconv as sc
from otel_llm.collector.policies import CollectorPolicies
from otel_llm.policies.engine import PolicyCall
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.prometheus import (
    CONFIG_DIR,
    THRESHOLD,
    Prometheus,
    alert_rules,
    dashboard_queries,
    load_dashboard,
    rule_queries,
    start_prometheus,
    tool,
)

SERVICE = "collector-config-test"

# The collector service's own expressions: the Prometheus here scrapes an LLMSpanProcessor, which
# has no otel_llm_collector_* series, so they only have to evaluate without error; the
# end-to-end test (tests/test_collector_end_to_end.py) scrapes the real service and requires
# data from every expression, these included.
SERVICE_ONLY = "otel_llm_collector_"
COLLECTOR_ALERTS = {
    "OtelLLMCollectorDroppingSpans",
    "OtelLLMCollectorQueueFilling",
    "OtelLLMCollectorRefusingQueueFull",
    "OtelLLMCollectorUpstreamFailing",
}
# The budgets' alerts (issue 14): their series come from a real CollectorPolicies (below).
POLICY_ALERTS = {"LLMPolicyBudgetWarning", "LLMPolicyBudgetExceeded", "LLMPolicyViolations"}
POLICIES = """\
policies:
  - name: shop-daily
    scope: {project: shop}
    budgets: [{window: day, usd: 0.0006, warn_at: 50}]
    action: block
  - name: no-gpt4
    scope: "*"
    calls: {denied_models: ["gpt-4o"]}
    action: alert
"""


def _run(*args: str) -> None:
    result = subprocess.run(
        args, cwd=CONFIG_DIR, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def test_promtool_check_config() -> None:
    _run(tool("promtool"), "check", "config", "prometheus.yml")


def test_promtool_check_rules() -> None:
    _run(tool("promtool"), "check", "rules", "alerts.yml")


def test_promtool_test_rules() -> None:
    _run(tool("promtool"), "test", "rules", "alerts_test.yml")


def test_every_alert_has_a_unit_test_and_the_conventions() -> None:
    tests = yaml.safe_load((CONFIG_DIR / "alerts_test.yml").read_text())["tests"]
    tested = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    not_firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    alerts = [rule for rule in alert_rules() if "alert" in rule]
    names = {rule["alert"] for rule in alerts}
    assert len(names) == 14
    assert names >= COLLECTOR_ALERTS | POLICY_ALERTS
    assert names <= tested, names - tested
    assert names <= not_firing, names - not_firing
    for rule in alerts:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert {"summary", "description"} <= set(rule["annotations"])
        # Every expression has a threshold the live test can strip.
        assert THRESHOLD.search(rule["expr"]), rule["alert"]


def test_dashboard_is_importable_shape() -> None:
    dashboard = load_dashboard()
    assert "__inputs" not in dashboard
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name, label in (
        ("service", "service_name"),
        ("provider", "gen_ai_provider_name"),
        ("model", "gen_ai_request_model"),
    ):
        assert variables[name]["definition"].startswith("label_values(")
        assert variables[name]["definition"].endswith(f", {label})")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
    datasources = yaml.safe_load((CONFIG_DIR / "grafana" / "datasources.yml").read_text())
    by_type = {d["type"]: d for d in datasources["datasources"]}
    (link,) = by_type["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert link == {"name": "trace_id", "datasourceUid": by_type["jaeger"]["uid"]}


def test_the_most_expensive_traces_panel_links_cost_exemplars_to_traces() -> None:
    (panel,) = [p for p in load_dashboard()["panels"] if p["title"].startswith("Most expensive")]
    (target,) = panel["targets"]
    assert target["exemplar"] is True
    assert "gen_ai_client_cost_usd_total" in target["expr"]
    assert "otel_llm.rollup.cost.amount" in panel["description"]


def test_threshold_stripping() -> None:
    stripped = dict(rule_queries())
    assert stripped["rule LLMSpendOverDailyBudget"] == (
        "sum(rate(gen_ai_client_cost_usd_total[1h])) * 86400"
    )
    assert 'error_type!=""' in stripped["rule LLMHighErrorRatio"]
    for where, expr in stripped.items():
        assert not re.search(r"\s(>|<|==)\s", expr), (where, expr)


# --- a real Prometheus ---------------------------------------------------------------------------
class _BrokenExporter(SpanProcessor):
    """A downstream that fails on the unknown model's spans: otel_llm_processor_errors_total."""

    def on_end(self, span: ReadableSpan) -> None:
        if "gpt-imaginary-1" in span.name:
            raise RuntimeError("simulated exporter failure")


class _Traffic:
    """Simulated calls (the demo's, through a real LLMSpanProcessor) until stopped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        exporter = InMemorySpanExporter()
        processor = LLMSpanProcessor(
            _BrokenExporter(), SimpleSpanProcessor(exporter), registry=self.registry
        )
        provider = TracerProvider(
            sampler=ALWAYS_ON,
            resource=Resource.create({"service.name": SERVICE}),
            shutdown_on_exit=False,
        )
        provider.add_span_processor(processor)
        self.provider = provider
        self.pipeline = demo.Pipeline(provider, exporter, self.registry, processor)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def batch(self, seed: int) -> None:
        # Every model, failures, streams, cache tokens and the unknown model (see demo.plan).
        self.pipeline.run(demo.plan(18, seed))
        # Another instrumentation's span with a negative token count: invalid attributes.
        tracer = self.provider.get_tracer("other.instrumentation")
        span = tracer.start_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes={
                sc.GEN_AI_OPERATION_NAME: "chat",
                sc.GEN_AI_PROVIDER_NAME: "openai",
                sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                sc.GEN_AI_USAGE_INPUT_TOKENS: 100,
                sc.GEN_AI_USAGE_OUTPUT_TOKENS: -5,
            },
        )
        span.end()
        self.pipeline.exporter.clear()

    def _loop(self) -> None:
        seed = 1
        while not self._stop.wait(0.2):
            seed += 1
            self.batch(seed)

    def __enter__(self) -> _Traffic:
        self.batch(1)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.provider.shutdown()


def _policies(tmp_path: Path) -> tuple[CollectorRegistry, CollectorPolicies]:
    """A real CollectorPolicies whose shop-daily budget is exceeded and no-gpt4 rule broken:
    every otel_llm_policy_* series the dashboard and the rules read has data."""
    path = tmp_path / "policies.yaml"
    path.write_text(POLICIES)
    policies = CollectorPolicies.open(str(path))
    registry = CollectorRegistry()
    policies.register(registry)
    now = time.time_ns()
    calls = [
        PolicyCall(("shop", "shop", None, None, None, "openai", model), now, 200_000, 150)
        for model in ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "gpt-4o-mini")
    ]
    policies.engine.observe(calls)
    return registry, policies


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[Prometheus, _Traffic]]:
    registry, policies = _policies(tmp_path)
    with _Traffic() as traffic:
        server, _ = start_metrics_server(0, "127.0.0.1", traffic.registry)
        policy_server, _ = start_metrics_server(0, "127.0.0.1", registry)
        try:
            target = f"127.0.0.1:{server.server_port}"
            jobs = {"llm-apps": [target], "otel-llm": [f"127.0.0.1:{policy_server.server_port}"]}
            with start_prometheus(tmp_path, jobs) as prom:
                yield prom, traffic
        finally:
            for running in (server, policy_server):
                running.shutdown()
                running.server_close()
            policies.stop()


def test_real_prometheus_evaluates_every_dashboard_and_rule_expression(
    prometheus: tuple[Prometheus, _Traffic],
) -> None:
    prom, _ = prometheus
    prom.wait_for_scrapes("llm-apps", 5)
    prom.wait_for_scrapes("otel-llm", 2)

    # The rules loaded and evaluate cleanly.
    rules = prom.wait_for_rules()
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]

    empty = []
    queries = [*dashboard_queries(), *rule_queries()]
    assert len(queries) > 25
    for where, expr in queries:
        result = prom.query(expr)  # every expression evaluates without error
        if not result and SERVICE_ONLY not in expr:
            empty.append((where, expr))
    assert not empty, "expressions without data:\n" + "\n".join(f"{w}: {e}" for w, e in empty)

    # The data are the traffic's: a priced cost, cache reads, the unknown model, errors.
    assert float(prom.query("sum(gen_ai_client_cost_usd_total)")[0]["value"][1]) > 0
    unknown = prom.query(
        'gen_ai_client_unpriced_operations_total{gen_ai_request_model="gpt-imaginary-1",'
        f'reason="unknown_model",service_name="{SERVICE}"}}'
    )
    assert unknown
    assert prom.query('otel_llm_processor_errors_total{stage="downstream"}')
    assert prom.query('otel_llm_invalid_attributes_total{reason="negative"}')
    # The policies' state: exceeded at the third call (3 x 200,000 nano-USD = the limit).
    assert prom.query('otel_llm_policy_state{policy="shop-daily",rule="day"} == 2')
    assert prom.query('otel_llm_policy_spend_usd{policy="shop-daily"} == 0.0008')
    assert prom.query('otel_llm_policy_alerts_total{policy="no-gpt4",rule="denied_models"} == 1')

    # Exemplars: the trace ids of the calls, stored by --enable-feature=exemplar-storage.
    for metric in (
        "gen_ai_client_cost_usd_total",
        "gen_ai_client_operation_duration_seconds_bucket",
    ):
        trace_ids = prom.exemplar_trace_ids(metric, seconds=120)
        assert trace_ids, metric
        assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids), trace_ids


# --- the collector service's metric names ---------------------------------------------------------
def _exposed_collector_series() -> dict[str, set[frozenset[tuple[str, str]]]]:
    """Series name -> label sets of a real CollectorMetrics registry (every known combination
    exists at 0 from start-up)."""
    from otel_llm.collector.telemetry import CollectorMetrics

    registry = CollectorRegistry()
    CollectorMetrics(registry)
    series: dict[str, set[frozenset[tuple[str, str]]]] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue
            series.setdefault(sample.name, set()).add(frozenset(sample.labels.items()))
    return series


def test_collector_alerts_and_panels_use_the_metric_names_the_service_registers() -> None:
    """A fast check, beside the end-to-end test that scrapes the real service: the collector
    rules and panels use the names and label values the code registers."""
    exposed = _exposed_collector_series()
    assert exposed, "CollectorMetrics registered nothing"
    texts = [expr for _, expr in dashboard_queries()]
    texts += [" ".join(rule["expr"].split()) for rule in alert_rules()]
    used = {name for text in texts for name in re.findall(r"otel_llm_collector_\w+", text)}
    assert used >= {
        "otel_llm_collector_received_spans_total",
        "otel_llm_collector_forwarded_spans_total",
        "otel_llm_collector_retried_spans_total",
        "otel_llm_collector_dropped_spans_total",
        "otel_llm_collector_refused_requests_total",
        "otel_llm_collector_queue_bytes",
        "otel_llm_collector_queue_capacity_bytes",
    }
    assert used <= exposed.keys(), used - exposed.keys()
    for text in texts:
        for name, matchers in re.findall(r"(otel_llm_collector_\w+)\{([^}]*)\}", text):
            for label, value in re.findall(r'(\w+)="([^"]*)"', matchers):
                assert any((label, value) in labels for labels in exposed[name]), (name, label)


# --- the OpenTelemetry Collector configs (structure; otelcol-contrib cannot run here) -------------
OTELCOL_CONFIGS = ("otelcol.yaml", "otelcol-loadbalancing.yaml")
SECTIONS = ("receivers", "processors", "exporters", "extensions", "connectors")
# Component types these configs may use, all in otelcol-contrib.
KNOWN_TYPES = {
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "batch"},
    "exporters": {"otlp", "loadbalancing"},
    "extensions": {"health_check"},
}


def _otelcol(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIG_DIR / name).read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", OTELCOL_CONFIGS)
def test_otelcol_config_structure(name: str) -> None:
    config = _otelcol(name)
    assert set(config) <= {*SECTIONS, "service"}, set(config)
    service = config["service"]
    pipelines = service["pipelines"]
    assert set(pipelines) == {"traces"}
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    used["extensions"] = set(service.get("extensions", []))
    for pipeline in pipelines.values():
        for section in ("receivers", "processors", "exporters"):
            ids = pipeline[section]
            assert ids, (section, pipeline)
            assert len(ids) == len(set(ids)), ids
            used[section] |= set(ids)
    for section in SECTIONS:
        defined = set(config.get(section) or {})
        assert used[section] <= defined, (section, "undefined", used[section] - defined)
        assert defined <= used[section], (section, "unused", defined - used[section])
        for component_id in defined:
            assert component_id.split("/")[0] in KNOWN_TYPES[section], component_id
    traces = pipelines["traces"]
    # memory_limiter first (it must refuse before anything buffers), then batch.
    assert traces["processors"] == ["memory_limiter", "batch"]
    limiter = config["processors"]["memory_limiter"]
    assert limiter["check_interval"]
    assert limiter["limit_percentage"] > limiter["spike_limit_percentage"]
    assert config["processors"]["batch"]["send_batch_size"] == 512
    grpc = config["receivers"]["otlp"]["protocols"]
    assert grpc["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert grpc["http"]["endpoint"] == "0.0.0.0:4318"


def _queue_and_retry(exporter: dict[str, Any]) -> None:
    assert exporter["tls"] == {"insecure": True}
    assert exporter["sending_queue"]["enabled"] is True
    assert exporter["sending_queue"]["queue_size"] > 0
    retry = exporter["retry_on_failure"]
    assert retry["enabled"] is True
    for key in ("initial_interval", "max_interval", "max_elapsed_time"):
        assert retry[key], key


def test_otelcol_sends_everything_to_otel_llm_which_forwards_to_jaeger() -> None:
    config = _otelcol("otelcol.yaml")
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["otlp/otel-llm"]
    exporter = config["exporters"]["otlp/otel-llm"]
    assert exporter["endpoint"] == f"otel-llm:{_compose_otel_llm_port('--grpc-endpoint')}"
    _queue_and_retry(exporter)
    # Jaeger is reached through otel-llm (its --upstream), so Jaeger stores the cost.
    assert _compose_flag("otel-llm", "--upstream") == "jaeger:4317"


def test_otelcol_loadbalancing_routes_by_trace_id_to_several_replicas() -> None:
    config = _otelcol("otelcol-loadbalancing.yaml")
    exporter = config["exporters"]["loadbalancing"]
    assert exporter["routing_key"] == "traceID"
    _queue_and_retry(exporter["protocol"]["otlp"])
    resolver = exporter["resolver"]
    assert set(resolver) == {"static"}  # the dns resolver is documented, commented out
    hostnames = resolver["static"]["hostnames"]
    assert len(hostnames) >= 2
    assert len(set(hostnames)) == len(hostnames)
    grpc_port = _compose_otel_llm_port("--grpc-endpoint")
    assert all(re.fullmatch(rf"otel-llm-\d+:{grpc_port}", host) for host in hostnames), hostnames
    text = (CONFIG_DIR / "otelcol-loadbalancing.yaml").read_text()
    assert "# dns:" in text


# --- the docker-compose stack (structure and consistency; no container engine here) ---------------
def _compose() -> dict[str, Any]:
    return yaml.safe_load((CONFIG_DIR / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def _command(service: str) -> list[str]:
    command = _compose()["services"][service]["command"]
    assert isinstance(command, list), command  # exec form: no shell word splitting to guess
    return [str(word) for word in command]


def _compose_flag(service: str, flag: str) -> str:
    command = _command(service)
    return command[command.index(flag) + 1]


def _compose_otel_llm_port(flag: str) -> int:
    return int(_compose_flag("otel-llm", flag).rsplit(":", 1)[1])


def test_compose_files_exist_and_mounts_resolve() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"otelcol", "otel-llm", "jaeger", "prometheus", "grafana", "example-app", "app"} <= set(
        services
    )
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        build = service.get("build")
        if build:
            context = (CONFIG_DIR / build["context"]).resolve()
            dockerfile = context / build["dockerfile"]
            assert dockerfile.is_file(), dockerfile
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY "):
                    *sources, _ = line.split()[1:]
                    for source in sources:
                        assert (context / source).exists(), (dockerfile, source)
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):  # a bind mount of a file of this directory
                assert (CONFIG_DIR / source).is_file(), (name, source)
                assert target.startswith("/"), target
            else:
                assert source in compose["volumes"], (name, source)
        for dependency in service.get("depends_on", []):
            assert dependency in services, (name, dependency)


def _mounts(service: str) -> dict[str, str]:
    """Container path -> file of this directory."""
    mounts = {}
    for volume in _compose()["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = source
    return mounts


def test_compose_ports_and_addresses_are_consistent() -> None:
    services = _compose()["services"]
    # apps -> otelcol: the example app's endpoint is the Collector's OTLP gRPC receiver.
    otelcol = _otelcol("otelcol.yaml")
    receiver_port = otelcol["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].split(":")[1]
    endpoint = services["example-app"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == f"http://otelcol:{receiver_port}"
    assert _mounts("otelcol") == {"/etc/otelcol-contrib/config.yaml": "./otelcol.yaml"}
    assert _command("otelcol") == ["--config=/etc/otelcol-contrib/config.yaml"]
    # otel-llm listens on every interface of its container.
    for flag in ("--grpc-endpoint", "--http-endpoint", "--metrics-endpoint"):
        assert _compose_flag("otel-llm", flag).startswith("0.0.0.0:"), flag
    metrics_port = _compose_otel_llm_port("--metrics-endpoint")
    # prometheus.yml's targets are compose services on the ports they serve /metrics on.
    prometheus = yaml.safe_load((CONFIG_DIR / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in prometheus["scrape_configs"]
    }
    assert targets["otel-llm"] == [f"otel-llm:{metrics_port}"]
    app = _command("app")
    assert targets["llm-apps"] == [f"app:{app[app.index('--port') + 1]}"]
    assert app[app.index("--host") + 1] == "0.0.0.0"
    # Prometheus reads this prometheus.yml, and alerts.yml where rule_files points (relative).
    prom_mounts = _mounts("prometheus")
    config_path = next(
        w.split("=", 1)[1] for w in _command("prometheus") if w.startswith("--config.file=")
    )
    assert prom_mounts[config_path] == "./prometheus.yml"
    assert "--enable-feature=exemplar-storage" in _command("prometheus")
    for rule_file in prometheus["rule_files"]:
        assert prom_mounts[str(Path(config_path).parent / rule_file)] == f"./{rule_file}"
    # Grafana: datasources, the dashboard provider and the dashboard where the provider looks.
    grafana = _mounts("grafana")
    provisioning = "/etc/grafana/provisioning"
    assert grafana[f"{provisioning}/datasources/otel-llm.yml"] == "./grafana/datasources.yml"
    assert grafana[f"{provisioning}/dashboards/otel-llm.yml"] == "./grafana/dashboards.yml"
    provider_dir = yaml.safe_load((CONFIG_DIR / "grafana" / "dashboards.yml").read_text())[
        "providers"
    ][0]["options"]["path"]
    dashboards = [t for t, s in grafana.items() if s == "./grafana/dashboard.json"]
    assert [str(Path(t).parent) for t in dashboards] == [provider_dir]
    datasources = yaml.safe_load((CONFIG_DIR / "grafana" / "datasources.yml").read_text())
    urls = {d["type"]: d["url"] for d in datasources["datasources"]}
    assert urls == {"prometheus": "http://prometheus:9090", "jaeger": "http://jaeger:16686"}
    published = {
        name: {str(p).split(":")[1] for p in service.get("ports", [])}
        for name, service in services.items()
    }
    assert "9090" in published["prometheus"]
    assert "16686" in published["jaeger"]
    assert "3000" in published["grafana"]
    assert {"4317", "4318"} <= published["otelcol"]
    assert str(metrics_port) in published["otel-llm"]
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")


def test_compose_and_dockerfile_commands_are_valid_otel_llm_command_lines() -> None:
    """The real CLI parser accepts the service's and the demo app's arguments (a typo in a
    flag would stop the container at start-up)."""
    from otel_llm.cli import _parser

    parser = _parser()
    args = parser.parse_args(["collector", *_command("otel-llm")])
    assert args.collector_upstream_endpoint == "jaeger:4317"
    assert args.collector_upstream_insecure is True
    assert args.collector_queue_dir == "/var/lib/otel-llm/queue"
    dockerfile = (CONFIG_DIR / "Dockerfile").read_text()
    (cmd,) = re.findall(r"^CMD (\[.*?\])$", dockerfile, flags=re.MULTILINE | re.DOTALL)
    assert json.loads(cmd.replace("\\\n", "")) == _command("otel-llm")
    assert re.search(r'^ENTRYPOINT \["otel-llm", "collector"\]$', dockerfile, re.MULTILINE)
    queue_volume = _compose()["services"]["otel-llm"]["volumes"][0].split(":")[1]
    assert args.collector_queue_dir.startswith(queue_volume + "/")
    assert parser.parse_args(_command("app")).command == "demo"


def test_example_app_sends_genai_spans_over_otlp(receiver: OTLPReceiver) -> None:
    """The app the compose stack mounts runs and exports GenAI spans with the plain SDK."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")} | {
        "OTEL_SERVICE_NAME": "example-app",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{receiver.grpc_endpoint}",
        "EXAMPLE_CALLS": "2",
        "EXAMPLE_INTERVAL": "0",
    }
    result = subprocess.run(
        [sys.executable, str(CONFIG_DIR / "example_app.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    spans = receiver.wait_for_spans(4)
    chats = [span for span in spans if span.name.startswith("chat ")]
    assert len(chats) == 2
    for span in chats:
        assert span.resource["service.name"] == "example-app"
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.usage.input_tokens"] > 0
        assert "otel_llm.cost.price_data" not in span.attributes  # no otel-llm in the app
