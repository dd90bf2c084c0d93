"""A real Prometheus server for tests, and the PromQL expressions of collector_config/.

The server is Debian's ``prometheus`` (tests/run.sh installs it), started on 127.0.0.1 with its
own config, the alert and recording rules of collector_config/alerts.yml and exemplar storage;
tests read it only through its HTTP API. The expressions are those of the Grafana dashboard
(panel targets and template variables, Grafana's variables expanded as a dashboard showing
everything would) and of the rules (an alert's threshold comparison stripped, so traffic that
does not breach it still returns data).

    with start_prometheus(tmp_path, {"llm-apps": ["127.0.0.1:9464"]}) as prom:
        prom.wait_for_scrapes("llm-apps", 5)
        for where, expr in [*dashboard_queries(), *rule_queries()]:
            assert prom.query(expr), where
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.ports import free_port

CONFIG_DIR = Path(__file__).resolve().parents[2] / "collector_config"
ALERTS = CONFIG_DIR / "alerts.yml"
DASHBOARD = CONFIG_DIR / "grafana" / "dashboard.json"

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


def tool(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; a clear failure when not installed."""
    found = shutil.which(name)
    assert found, (
        f"{name} is not installed: install Debian's `prometheus` package "
        "(tests/run.sh does: apt-get install -y prometheus)"
    )
    return found


# --- the expressions ----------------------------------------------------------------------------
def alert_rules() -> list[dict[str, Any]]:
    """Every alert and recording rule of alerts.yml."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def substitute(expr: str) -> str:
    """``expr`` with Grafana's variables expanded (none may be left)."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and template variable of the dashboard."""
    dashboard = load_dashboard()
    queries = [
        (f"panel {panel['title']!r} {target['refId']}", substitute(target["expr"]))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = LABEL_VALUES.match(variable["definition"])
        assert match, variable["definition"]
        # label_values(selector, label) lists the label's values: those of this query.
        selector = substitute(match["selector"] or "{__name__=~'.+'}")
        queries.append(
            (f"variable {variable['name']}", f"count by ({match['label']}) ({selector})")
        )
    return queries


def rule_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every rule; an alert without its threshold comparison."""
    queries = []
    for rule in alert_rules():
        name = rule.get("alert") or rule["record"]
        expr = " ".join(rule["expr"].split())
        if "alert" in rule:
            # The traffic need not breach the thresholds: evaluate what is compared.
            expr = THRESHOLD.sub("", expr)
        queries.append((f"rule {name}", expr))
    return queries


# --- the server ---------------------------------------------------------------------------------
def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - 127.0.0.1
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # Prometheus explains bad queries in the body
        body = error.read().decode(errors="replace")
        raise AssertionError(f"{url}: HTTP {error.code}: {body}") from None


class Prometheus:
    """A running Prometheus, through its HTTP API."""

    def __init__(self, url: str, process: subprocess.Popen[str], log: Path):
        self.url = url
        self.process = process
        self.log = log

    def api(self, path: str, **params: str) -> Any:
        """``data`` of ``/api/v1/<path>``; AssertionError on an error answer or a dead server."""
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log_tail()}")
        query = urllib.parse.urlencode(params)
        answer = _get(f"{self.url}/api/v1/{path}?{query}")
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now (AssertionError if it does not)."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return data["result"]  # type: ignore[no-any-return]

    def exemplar_trace_ids(self, metric: str, seconds: float = 300) -> set[str]:
        """The ``trace_id`` of every exemplar of ``metric`` stored over the last ``seconds``."""
        now = time.time()
        series = self.api(
            "query_exemplars", query=metric, start=str(now - seconds), end=str(now + 5)
        )
        return {e["labels"]["trace_id"] for s in series for e in s["exemplars"]}

    def wait_for_scrapes(self, job: str, scrapes: int, timeout: float = 20) -> None:
        """Until ``job`` was scraped ``scrapes`` times within a minute and every target is up
        (rates need at least two scrapes)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.query(f'count_over_time(up{{job="{job}"}}[1m]) >= {scrapes}')
                targets = self.api("targets")["activeTargets"]
                if last and all(t["health"] == "up" for t in targets):
                    return
            except (urllib.error.URLError, ConnectionError):
                pass  # not listening yet
            except AssertionError:
                if self.process.poll() is not None:
                    raise
            time.sleep(0.3)
        raise AssertionError(f"no {scrapes} scrapes within {timeout}s: {last}\n{self.log_tail()}")

    def wait_for_rules(self, timeout: float = 10) -> list[dict[str, Any]]:
        """Every rule of alerts.yml, once each was evaluated (health is "unknown" before)."""
        deadline = time.monotonic() + timeout
        expected = len(alert_rules())
        while True:
            rules = [rule for group in self.api("rules")["groups"] for rule in group["rules"]]
            if len(rules) == expected and all(r["health"] != "unknown" for r in rules):
                return rules
            assert time.monotonic() < deadline, rules
            time.sleep(0.3)

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:]


@contextmanager
def start_prometheus(directory: Path, jobs: Mapping[str, Sequence[str]]) -> Iterator[Prometheus]:
    """Prometheus on a free 127.0.0.1 port scraping ``jobs`` ({job name: targets}) every
    second, with the rules of alerts.yml and exemplar storage; its data and log in
    ``directory``. Stopped on exit."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(targets)}]}
            for job, targets in jobs.items()
        ],
    }
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = directory / "prometheus.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={directory / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield Prometheus(f"http://127.0.0.1:{port}", process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
