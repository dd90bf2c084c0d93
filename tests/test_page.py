"""The call log's page in a real browser (issue 15): headless Chromium (Debian's, through its
chromedriver, driven by selenium) against a real ``otel-llm collector`` fed over OTLP by an
application with only the OpenTelemetry SDK, as in production.

One browser and one collector per module (its calls spread over the last days, with hostile
model names, prompts and error messages); a second collector with a stats rate limit of one a
minute shows the 429; and the first-chart time is measured with the Performance API against a
store of ``LOAD_CALLS`` calls written through the store's batch path
(``benchmarks/page_load.py`` does the same for 1,000,000). Screenshots of every view at
1280x800 go under the module's temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from otel_llm.calllog.api import CallLogAPI
from otel_llm.calllog.auth import KeyRing
from otel_llm.calllog.store import open_store
from otel_llm.calllog.webpage import CONTENT_SECURITY_POLICY
from tests.support.api import get_json
from tests.support.browser import start_browser
from tests.support.collector_process import CollectorProcess

KEY = "page-browser-key-0123456789"
TRACE_URL = "http://jaeger.example:16686/trace/{trace_id}"
XSS_MODEL = '<img src=x onerror="window.__pwned=1">'
XSS_PROMPT = "<script>window.__pwned=2</script><img src=x onerror=alert(2)>"
XSS_ERROR = "<img src=x onerror=alert(3)><script>alert(4)</script>"
CALLS = 90
LOAD_CALLS = 20_000
"""Calls of the first-chart measurement here: written in a few seconds on a busy machine; the
1,000,000-call figure is benchmarks/page_load.py's."""
POLICIES = """\
policies:
  - name: team-daily
    scope: {project: alpha}
    budgets: [{window: day, usd: 0.05, warn_at: 50}]
    action: alert
"""

# The application: the OpenTelemetry SDK and its OTLP gRPC exporter, nothing of otel-llm.
# CALLS calls over the last four days, four models (one a payload), three API keys and
# projects, captured content on some, errors on some; one trace of three calls under an agent.
APP = textwrap.dedent(
    """
    import json, sys, time
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    endpoint, count, xss_model, xss_prompt, xss_error = sys.argv[1:6]
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
    )
    tracer = provider.get_tracer("shop.app")
    models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", xss_model]
    now = time.time_ns()
    hour = 3600 * 10**9
    def message(role, text):
        return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])
    for index in range(int(count)):
        model = models[index % 4]
        start = now - (index % 96) * hour - index * 10**6
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic" if model.startswith("claude") else "openai",
            "gen_ai.request.model": model,
            "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": 100 + 37 * index,
            "gen_ai.usage.output_tokens": 10 + 11 * index,
            "otel_llm.context.api_key_id": "key-" + "abc"[index % 3],
            "otel_llm.context.project_id": ["alpha", "beta", "gamma"][index % 3],
        }
        if index % 5 == 0 or model == xss_model:
            prompt = xss_prompt if model == xss_model else "Summarise order %d" % index
            attributes["gen_ai.input.messages"] = message("user", prompt)
            attributes["gen_ai.output.messages"] = message("assistant", "Done %d" % index)
        span = tracer.start_span(
            "chat " + model, kind=SpanKind.CLIENT, attributes=attributes, start_time=start
        )
        if index % 7 == 3:
            span.set_attribute("error.type", "RateLimitError")
            span.set_status(Status(StatusCode.ERROR, xss_error))
        span.end(end_time=start + (200 + index * 13) * 10**6)
    with tracer.start_as_current_span(
        "invoke_agent planner",
        attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"},
    ):
        for step in range(3):
            with tracer.start_as_current_span(
                "chat gpt-4o",
                kind=SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 500,
                    "gen_ai.usage.output_tokens": 50,
                    "gen_ai.agent.name": "planner",
                    "otel_llm.context.api_key_id": "key-a",
                    "otel_llm.context.project_id": "alpha",
                },
            ):
                pass
    provider.shutdown()
    """
)


def ask(api: str, path: str, key: str = KEY, **query: str) -> Any:
    url = f"{api}{path}" + (f"?{urlencode(query)}" if query else "")
    status, answer = get_json(url, key)
    assert status == 200, answer
    return answer


def start_collector(tmp_path: Path, *args: str, **env: str) -> CollectorProcess:
    return CollectorProcess(
        [
            *args,
            "--grpc-endpoint=127.0.0.1:0",
            "--http-endpoint=none",
            "--metrics-endpoint=none",
            "--upstream=none",
            f"--queue-dir={tmp_path / 'queue'}",
            f"--call-log-store={tmp_path / 'calls.db'}",
            "--call-log-api-endpoint=127.0.0.1:0",
        ],
        {
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "OTEL_LLM_CALL_LOG_API_KEYS": f"page={KEY}",
            "OTEL_LLM_CALL_LOG_FLUSH_INTERVAL": "0.1",
            **env,
        },
    )


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The collector's address (``http://127.0.0.1:port``), its call log fed over OTLP."""
    tmp_path = tmp_path_factory.mktemp("collector")
    policies = tmp_path / "policies.yaml"
    policies.write_text(POLICIES)
    collector = start_collector(
        tmp_path,
        f"--policies={policies}",
        OTEL_LLM_CALL_LOG_TRACE_URL=TRACE_URL,
        OTEL_LLM_CALL_LOG_RATE_LIMIT_LIST="0",
        OTEL_LLM_CALL_LOG_RATE_LIMIT_STATS="0",
        OTEL_LLM_CALL_LOG_RATE_LIMIT_DETAILS="0",
    )
    try:
        assert collector.api is not None, collector.text
        base = collector.api.removesuffix("/api/v1/calls")
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                APP,
                f"http://{collector.grpc}",
                str(CALLS),
                XSS_MODEL,
                XSS_PROMPT,
                XSS_ERROR,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 20
        while ask(base, "/api/v1/calls/count")["count"] < CALLS + 3:
            assert time.monotonic() < deadline, collector.text
            time.sleep(0.1)
        yield base
    finally:
        collector.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with start_browser(tmp_path_factory.mktemp("profile")) as driver:
        yield driver


def wait(driver: Any, condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - an element not there yet
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out; page state {state(driver)}, message {message(driver)}"
            )
        time.sleep(0.05)


def state(driver: Any) -> str:
    return str(driver.execute_script("return document.getElementById('view').dataset.state || ''"))


def message(driver: Any) -> str:
    return str(driver.execute_script("return document.getElementById('message').textContent"))


def open_view(driver: Any, url: str) -> None:
    """Load ``url`` and wait until its view has drawn (or failed); signed in with KEY first if
    the tab holds no key (a test run on its own)."""
    driver.get("about:blank")
    driver.get(url)
    if driver.execute_script("return sessionStorage.length") == 0:
        driver.execute_script("sessionStorage.setItem('otel-llm-call-log-key', arguments[0])", KEY)
        driver.refresh()
    wait(driver, lambda: state(driver) in ("ready", "failed"))


def sign_in(driver: Any, base: str, key: str = KEY) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(base + "/")
    field = wait(driver, lambda: driver.find_element(By.ID, "key"))
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()


def texts(driver: Any, selector: str) -> list[str]:
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)",
            selector,
        )
    )


def call_ids(driver: Any) -> list[str]:
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll('#calls-list tr[data-call-id]')]"
            ".map(r => r.dataset.callId)"
        )
    )


def nothing_injected(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    assert driver.execute_script("return window.__pwned") is None
    assert driver.execute_script("return document.querySelectorAll('img').length") == 0
    scripts = driver.execute_script(
        "return [...document.querySelectorAll('script')].map(s => s.getAttribute('src'))"
    )
    assert scripts == ["/vendor/uPlot.iife.min.js", "/app.js"]
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is the check


def test_the_key_opens_activity_with_the_api_s_totals(site: str, browser: Any, shots: Path) -> None:
    sign_in(browser, site)
    wait(browser, lambda: state(browser) == "ready")
    assert browser.execute_script("return sessionStorage.length") == 1
    assert browser.execute_script("return document.cookie") == ""
    totals = dict(
        browser.execute_script(
            "return [...document.querySelectorAll('[data-total]')]"
            ".map(e => [e.dataset.total, e.dataset.value])"
        )
    )
    stats = ask(site, "/api/v1/calls/stats", group_by="day", limit="8")["stats"]
    assert int(totals["total_requests"]) == stats["total_requests"] == CALLS + 3
    for name in ("total_cost", "error_rate", "cache_hit_rate", "p95_latency_ms", "total_tokens"):
        assert float(totals[name]) == pytest.approx(stats[name], rel=1e-12), name
    shown = dict(zip(texts(browser, ".total dt"), texts(browser, ".total dd"), strict=True))
    assert shown["Requests"] == f"{CALLS + 3}"
    assert shown["Error rate"] == f"{stats['error_rate']:.2f} %"
    # Five charts, the first one marked for the load measurement.
    assert len(browser.find_elements("css selector", ".chart canvas")) == 5
    assert browser.execute_script(
        "return performance.getEntriesByName('otel-llm:first-chart').length"
    )
    # A filter: the same numbers as the API's for it, and the model table names the payload as
    # text.
    open_view(browser, f"{site}/#/activity?api_key_id=key-b&model=gpt-4o-mini")
    filtered = ask(site, "/api/v1/calls/stats", api_key_id="key-b", model="gpt-4o-mini")["stats"]
    value = browser.execute_script(
        "return document.querySelector('[data-total=total_requests]').dataset.value"
    )
    assert int(value) == filtered["total_requests"] > 0
    browser.save_screenshot(str(shots / "activity-filtered.png"))
    # Two days or less: per hour, the totals still the API's.
    today = datetime.now(UTC).date()
    days = {"start_date": str(today - timedelta(days=1)), "end_date": str(today)}
    open_view(browser, f"{site}/#/activity?{urlencode(days)}")
    assert state(browser) == "ready", message(browser)
    assert "per hour" in browser.find_element("css selector", ".range").text
    assert len(browser.find_elements("css selector", ".chart canvas")) == 5
    value = browser.execute_script(
        "return document.querySelector('[data-total=total_requests]').dataset.value"
    )
    assert int(value) == ask(site, "/api/v1/calls/stats", **days)["stats"]["total_requests"] > 0
    hours = ask(site, "/api/v1/calls/stats", **days, group_by="hour")["groups"]
    assert browser.execute_script("return document.querySelectorAll('.chart').length") == 5
    assert len(hours) > 2
    open_view(browser, f"{site}/#/activity")
    assert XSS_MODEL in texts(browser, "table td")
    nothing_injected(browser)
    browser.save_screenshot(str(shots / "activity.png"))


def test_calls_filter_sort_page_and_the_url_round_trips(
    site: str, browser: Any, shots: Path
) -> None:
    from selenium.webdriver.common.by import By

    query = {"model": "gpt-4o", "api_key_id": "key-a", "sort": "cost", "order": "desc"}
    query["limit"] = "25"
    open_view(browser, f"{site}/#/calls?{urlencode(query)}")
    assert state(browser) == "ready", message(browser)
    expected = ask(site, "/api/v1/calls", **query, select="id,cost")
    assert call_ids(browser) == [call["id"] for call in expected["calls"]]
    costs = [call["cost"] for call in expected["calls"]]
    assert costs == sorted(costs, reverse=True)
    assert all(
        call["model"] == "gpt-4o" and call["api_key_id"] == "key-a"
        for call in ask(site, "/api/v1/calls", **query, select="model,api_key_id")["calls"]
    )
    # The form shows the state the URL holds.
    assert browser.find_element(By.ID, "f-model").get_attribute("value") == "gpt-4o"
    assert browser.find_element(By.ID, "f-sort").get_attribute("value") == "cost"
    # A filter typed into the form goes into the URL.
    everything = {"sort": "cost", "order": "desc", "limit": "25"}
    open_view(browser, f"{site}/#/calls?{urlencode(everything)}")
    browser.find_element(By.ID, "f-model").send_keys("claude-sonnet-4-5")
    browser.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click()
    wait(browser, lambda: "model=claude-sonnet-4-5" in browser.current_url)
    wait(browser, lambda: state(browser) == "ready")
    claude = ask(site, "/api/v1/calls", model="claude-sonnet-4-5", **everything)
    assert call_ids(browser) == [call["id"] for call in claude["calls"]]
    # Paging, server-side: the next page is the API's offset 25, in the URL too.
    open_view(browser, f"{site}/#/calls?{urlencode(everything)}")
    first_page = call_ids(browser)
    browser.find_element(By.ID, "next").click()
    wait(browser, lambda: "offset=25" in browser.current_url and state(browser) == "ready")
    second = ask(site, "/api/v1/calls", **everything, offset="25")
    assert call_ids(browser) == [call["id"] for call in second["calls"]]
    assert not set(first_page) & set(call_ids(browser))
    shared_link = browser.current_url
    browser.save_screenshot(str(shots / "calls.png"))
    # The link round-trips in a fresh tab state: same rows, same form.
    open_view(browser, shared_link)
    assert call_ids(browser) == [call["id"] for call in second["calls"]]
    assert browser.find_element(By.ID, "f-order").get_attribute("value") == "desc"
    assert browser.find_element(By.ID, "f-limit").get_attribute("value") == "25"


def test_a_call_opens_with_every_field_content_and_its_trace(
    site: str, browser: Any, shots: Path
) -> None:
    from selenium.webdriver.common.by import By

    open_view(browser, f"{site}/#/calls?model=gpt-4o-mini&sort=created_at")
    call_id = call_ids(browser)[0]
    browser.find_element(By.CSS_SELECTOR, f"tr[data-call-id='{call_id}'] a.open").click()
    wait(browser, lambda: f"call={call_id}" in browser.current_url and state(browser) == "ready")
    call = ask(site, f"/api/v1/calls/{call_id}")
    fields = dict(
        browser.execute_script(
            "return [...document.querySelectorAll('#call [data-field]')]"
            ".map(e => [e.dataset.field, e.textContent])"
        )
    )
    assert set(fields) == set(call)
    assert fields["model"] == "gpt-4o-mini"
    assert fields["trace_id"] == call["trace_id"]
    link = browser.find_element(By.ID, "trace-link")
    assert link.get_attribute("href") == TRACE_URL.format(trace_id=call["trace_id"])
    assert link.get_attribute("rel") == "noopener noreferrer"
    # Times in the browser's zone, UTC on hover.
    title = browser.find_element(By.CSS_SELECTOR, "#call [data-field=created_at] time")
    assert title.get_attribute("title").endswith(" UTC")
    browser.save_screenshot(str(shots / "call.png"))
    # The in-page trace: a tree with this call in it.
    browser.find_element(By.LINK_TEXT, "Show trace here").click()
    wait(browser, lambda: "#/traces?trace=" in browser.current_url and state(browser) == "ready")
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, ".tree a")]
    assert any(href.endswith(f"call={call_id}") for href in links), links
    # The agent's trace: the agent with its three calls under it.
    traces = ask(site, "/api/v1/traces", agent="planner")["data"]
    assert len(traces) == 1
    open_view(browser, f"{site}/#/traces?trace={traces[0]['trace_id']}")
    tree = texts(browser, ".tree > li > .node")
    assert any("planner" in node for node in tree), tree
    assert len(browser.find_elements(By.CSS_SELECTOR, ".tree ul li")) == 3
    browser.save_screenshot(str(shots / "trace.png"))
    open_view(browser, f"{site}/#/traces")
    assert len(browser.find_elements(By.CSS_SELECTOR, "table tbody tr")) == len(
        ask(site, "/api/v1/traces", limit="50")["data"]
    )
    browser.save_screenshot(str(shots / "traces.png"))


def test_payloads_in_model_prompt_and_error_are_shown_as_text(site: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    with urllib.request.urlopen(site + "/", timeout=10) as response:  # noqa: S310 - 127.0.0.1
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    hostile = ask(site, "/api/v1/calls", model=XSS_MODEL, status="error", limit="1")["calls"][0]
    assert hostile["error_message"] == XSS_ERROR
    open_view(browser, f"{site}/#/calls?{urlencode({'model': XSS_MODEL, 'call': hostile['id']})}")
    wait(browser, lambda: browser.find_element(By.ID, "prompt"))
    assert XSS_MODEL in texts(browser, "#calls-list td")
    assert XSS_ERROR in texts(browser, "#calls-list td")
    assert browser.find_element(By.CSS_SELECTOR, "#call [data-field=model]").text == XSS_MODEL
    assert (
        browser.find_element(By.CSS_SELECTOR, "#call [data-field=error_message]").text == XSS_ERROR
    )
    assert XSS_PROMPT in browser.find_element(By.ID, "prompt").text
    assert browser.find_element(By.CSS_SELECTOR, "#f-model").get_attribute("value") == XSS_MODEL
    nothing_injected(browser)
    # Nothing the policy refused either: the page broke none of its own rules.
    violations = [
        entry
        for entry in browser.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]
    assert not violations, violations


def test_budgets_show_each_policy_s_spend(site: str, browser: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    open_view(browser, f"{site}/#/budgets")
    assert state(browser) == "ready", message(browser)
    policy = ask(site, "/api/v1/policies")["policies"][0]
    budget = policy["budgets"][0]
    assert budget["spent_usd"] > 0
    assert browser.find_element(By.CSS_SELECTOR, "h3").text.startswith("team-daily")
    scope = browser.find_element(By.CSS_SELECTOR, ".scope").text
    assert scope == "scope: project: alpha; action: alert"
    cells = texts(browser, "table td")
    assert f"${budget['spent_usd']:,.4f}".rstrip("0") in cells[3]
    assert "$0.05 of" not in cells[3]
    assert cells[3].endswith("of $0.05")
    browser.save_screenshot(str(shots / "budgets.png"))


def test_a_wrong_key_is_401_and_the_rate_limit_429_shown_as_messages(
    site: str, browser: Any, tmp_path: Path, shots: Path
) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, site, "not-the-key")
    wait(browser, lambda: "401" in message(browser))
    assert "API key was not accepted" in message(browser)
    assert browser.find_element(By.ID, "login").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 0
    browser.save_screenshot(str(shots / "unauthorized.png"))
    limited = start_collector(tmp_path, OTEL_LLM_CALL_LOG_RATE_LIMIT_STATS="1")
    try:
        assert limited.api is not None, limited.text
        base = limited.api.removesuffix("/api/v1/calls")
        sign_in(browser, base)
        wait(browser, lambda: state(browser) == "ready")
        open_view(browser, f"{base}/#/activity?model=gpt-4o")
        assert state(browser) == "failed"
        assert message(browser).startswith("429 Too many requests"), message(browser)
        assert "retry in" in message(browser)
        browser.save_screenshot(str(shots / "rate-limited.png"))
    finally:
        limited.kill()


def test_a_narrow_window_has_no_page_wide_scrolling_and_keys_reach_every_control(
    site: str, browser: Any, shots: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    try:
        browser.set_window_size(400, 800)
        for view in ("activity", "calls", "traces", "budgets"):
            open_view(browser, f"{site}/#/{view}")
            assert state(browser) == "ready", message(browser)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, (view, overflow)
        browser.save_screenshot(str(shots / "budgets-narrow.png"))
        # Every form control has a label; Tab walks from the navigation into the filters.
        open_view(browser, f"{site}/#/calls")
        unlabelled = browser.execute_script(
            "return [...document.querySelectorAll('input, select')]"
            ".filter(c => !c.labels || c.labels.length === 0).map(c => c.id)"
        )
        assert unlabelled == []
        browser.find_element(By.CSS_SELECTOR, "#nav a[data-view=calls]").send_keys(Keys.TAB)
        focused = browser.switch_to.active_element
        assert focused.get_attribute("data-view") == "traces"
        browser.find_element(By.CSS_SELECTOR, "#nav a[data-view=traces]").send_keys(Keys.ENTER)
        wait(browser, lambda: "#/traces" in browser.current_url and state(browser) == "ready")
    finally:
        browser.set_window_size(1280, 800)


def test_first_chart_within_a_second_over_many_stored_calls(
    browser: Any, tmp_path: Path, shots: Path
) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from page_load import fill, first_chart_ms

    store = open_store(f"sqlite:///{tmp_path / 'many.db'}")
    try:
        fill(store, LOAD_CALLS)
        with CallLogAPI(store, keys=KeyRing.inline(f"page={KEY}")) as api:
            base = f"http://127.0.0.1:{api.port}"
            sign_in(browser, base)
            wait(browser, lambda: state(browser) == "ready")
            figures = [first_chart_ms(browser, base) for _ in range(3)]
            browser.save_screenshot(str(shots / "activity-many.png"))
    finally:
        store.close()
    print(f"first chart over {LOAD_CALLS:,} calls: {figures} ms")
    assert min(figures) < 1000, figures
