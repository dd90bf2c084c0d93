"""collector_config/: promtool checks, and a real Prometheus scraping a real LLMSpanProcessor.

Every PromQL expression of the Grafana dashboard and of the alert and recording rules is
evaluated through the HTTP API of a Prometheus server (Debian package ``prometheus``, installed
by tests/run.sh) that scrapes ``/metrics`` of an ``LLMSpanProcessor`` fed with simulated calls:
each must evaluate without error and return data, so a metric or label renamed in the code
breaks this test instead of the dashboard.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
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

CONFIG_DIR = Path(__file__).resolve().parent.parent / "collector_config"
ALERTS = CONFIG_DIR / "alerts.yml"
DASHBOARD = CONFIG_DIR / "grafana" / "dashboard.json"
SERVICE = "collector-config-test"

# Grafana's variables, as a dashboard showing everything would expand them.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$service": ".*",
    "$provider": ".*",
    "$model": ".*",
}
# An alert's threshold comparison: " <op> <number>" or " > on() otel_llm:daily_budget_usd"
# (alerts.yml writes them so). Label matchers (error_type!="") have no spaces and a quoted value,
# so they never match.
THRESHOLD = re.compile(
    r"\s+(?:>=|<=|==|!=|>|<)\s+(?:bool\s+)?(?:on\(\)\s*)?"
    r"(?:[0-9][0-9.eE+-]*|otel_llm:[a-z0-9_:]+)(?![\w:])"
)
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, (
        f"{name} is not installed: install Debian's `prometheus` package "
        "(tests/run.sh does: apt-get install -y prometheus)"
    )
    return found


def _run(*args: str) -> None:
    result = subprocess.run(
        args, cwd=CONFIG_DIR, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def test_promtool_check_config() -> None:
    _run(_tool("promtool"), "check", "config", "prometheus.yml")


def test_promtool_check_rules() -> None:
    _run(_tool("promtool"), "check", "rules", "alerts.yml")


def test_promtool_test_rules() -> None:
    _run(_tool("promtool"), "test", "rules", "alerts_test.yml")


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


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
    alerts = [rule for rule in _rules() if "alert" in rule]
    names = {rule["alert"] for rule in alerts}
    assert len(names) == 7
    assert names <= tested, names - tested
    assert names <= not_firing, names - not_firing
    for rule in alerts:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert {"summary", "description"} <= set(rule["annotations"])
        # Every expression has a threshold the live test can strip.
        assert THRESHOLD.search(rule["expr"]), rule["alert"]


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def test_dashboard_is_importable_shape() -> None:
    dashboard = _dashboard()
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


def _substitute(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and template variable of the dashboard."""
    dashboard = _dashboard()
    queries = [
        (f"panel {panel['title']!r} {target['refId']}", _substitute(target["expr"]))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = LABEL_VALUES.match(variable["definition"])
        assert match, variable["definition"]
        # label_values(selector, label) lists the label's values: those of this query.
        selector = _substitute(match["selector"] or "{__name__=~'.+'}")
        queries.append(
            (f"variable {variable['name']}", f"count by ({match['label']}) ({selector})")
        )
    return queries


def _rule_queries() -> list[tuple[str, str]]:
    queries = []
    for rule in _rules():
        name = rule.get("alert") or rule["record"]
        expr = " ".join(rule["expr"].split())
        if "alert" in rule:
            # The traffic need not breach the thresholds: evaluate what is compared.
            expr = THRESHOLD.sub("", expr)
        queries.append((f"rule {name}", expr))
    return queries


def test_threshold_stripping() -> None:
    stripped = dict(_rule_queries())
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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
        self.pipeline = demo.Pipeline(provider, exporter, self.registry, processor, 10**9)
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


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - 127.0.0.1
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # Prometheus explains bad queries in the body
        body = error.read().decode(errors="replace")
        raise AssertionError(f"{url}: HTTP {error.code}: {body}") from None


class _Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[str], log: Path):
        self.url = url
        self.process = process
        self.log = log

    def api(self, path: str, **params: str) -> Any:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
        query = urllib.parse.urlencode(params)
        answer = _get(f"{self.url}/api/v1/{path}?{query}")
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return data["result"]  # type: ignore[no-any-return]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[_Prometheus, _Traffic]]:
    binary = _tool("prometheus")
    with _Traffic() as traffic:
        server, _ = start_metrics_server(0, "127.0.0.1", traffic.registry)
        try:
            target = f"127.0.0.1:{server.server_port}"
            config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {"job_name": "llm-apps", "static_configs": [{"targets": [target]}]}
                ],
            }
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
            port = _free_port()
            log = tmp_path / "prometheus.log"
            with log.open("w") as log_file:
                process = subprocess.Popen(
                    [
                        binary,
                        f"--config.file={tmp_path / 'prometheus.yml'}",
                        f"--storage.tsdb.path={tmp_path / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--enable-feature=exemplar-storage",
                        "--storage.tsdb.retention.time=1h",
                    ],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            try:
                yield _Prometheus(f"http://127.0.0.1:{port}", process, log), traffic
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        finally:
            server.shutdown()
            server.server_close()


def _wait_for_scrapes(prom: _Prometheus, scrapes: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = prom.query(f'count_over_time(up{{job="llm-apps"}}[1m]) >= {scrapes}')
            targets = prom.api("targets")["activeTargets"]
            if last and all(t["health"] == "up" for t in targets):
                return
        except (urllib.error.URLError, ConnectionError):
            pass  # not listening yet
        except AssertionError:
            if prom.process.poll() is not None:
                raise
        time.sleep(0.3)
    raise AssertionError(f"no {scrapes} scrapes within {timeout}s: {last}\n{prom.log.read_text()}")


def test_real_prometheus_evaluates_every_dashboard_and_rule_expression(
    prometheus: tuple[_Prometheus, _Traffic],
) -> None:
    prom, _ = prometheus
    _wait_for_scrapes(prom, 5)

    # The rules loaded and evaluate cleanly (health is "unknown" until the first evaluation).
    deadline = time.monotonic() + 10
    while True:
        rules = [rule for group in prom.api("rules")["groups"] for rule in group["rules"]]
        if len(rules) == len(_rules()) and all(r["health"] != "unknown" for r in rules):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(0.3)
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]

    empty = []
    queries = [*_dashboard_queries(), *_rule_queries()]
    assert len(queries) > 25
    for where, expr in queries:
        if not prom.query(expr):
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

    # Exemplars: the trace ids of the calls, stored by --enable-feature=exemplar-storage.
    now = time.time()
    for metric in (
        "gen_ai_client_cost_usd_total",
        "gen_ai_client_operation_duration_seconds_bucket",
    ):
        series = prom.api("query_exemplars", query=metric, start=str(now - 120), end=str(now + 5))
        trace_ids = {e["labels"]["trace_id"] for s in series for e in s["exemplars"]}
        assert trace_ids, metric
        assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids), trace_ids
