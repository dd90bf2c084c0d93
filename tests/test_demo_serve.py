"""`otel-llm demo --serve`, run as a newcomer runs it: a real subprocess, the URL and API key
read from what it prints, the call log's API asked with that key, stopped with SIGINT.

The process is started once for the module (it feeds a month of traffic); the tests run in
file order and the last one stops it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from otel_llm.cli import main
from otel_llm.demo import UNKNOWN_MODEL
from otel_llm.demo.scenario import OPENAI
from otel_llm.demo.traffic import AGENT, DAY_NS, DAYS, SERVICES, TOOL, month
from tests.support.api import get_json

PROD_KEY = "prod-key-from-the-environment-0123"
CALLS = 1200
"""Fewer than the default 3,000: the same month, fed in a second or two."""
OPEN = re.compile(r"Open:\s+(http://\S+/)$", re.MULTILINE)
KEY = re.compile(r"API key:\s+(\S+)$", re.MULTILINE)
SENT = re.compile(r"^([\d,]+) simulated LLM calls", re.MULTILINE)
OTLP = re.compile(r"HTTP http://(\S+?)(?:\s|$)")


@dataclass
class Demo:
    process: subprocess.Popen[str]
    url: str
    key: str
    sent: int
    otlp: str
    tmp: Path
    out: list[str]
    err: list[str]


def _drain(stream: Any, into: list[str]) -> None:
    for line in stream:
        into.append(line)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("demo-serve-tmp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["TMPDIR"] = str(tmp)  # where its temporary directory goes: checked empty at the end
    # A real collector's settings in the environment must not reach the demo.
    env["OTEL_LLM_CALL_LOG_API_KEYS"] = f"prod={PROD_KEY}"
    env["OTEL_LLM_CALL_LOG_API_KEYS_FILE"] = str(tmp / "no-such-keys.yaml")
    env["OTEL_LLM_CALL_LOG_STORE"] = str(tmp / "no-such-dir" / "calls.db")
    process = subprocess.Popen(
        [sys.executable, "-m", "otel_llm", "demo", "--serve", "--calls", str(CALLS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out: list[str] = []
    err: list[str] = []
    assert process.stdout is not None
    assert process.stderr is not None
    threading.Thread(target=_drain, args=(process.stderr, err), daemon=True).start()
    for line in process.stdout:
        out.append(line)
        if line.startswith("Serving until Ctrl-C"):
            break
    threading.Thread(target=_drain, args=(process.stdout, out), daemon=True).start()
    text = "".join(out)
    try:
        url, key = OPEN.search(text), KEY.search(text)
        sent, otlp = SENT.search(text), OTLP.search(text)
        assert url, text + "".join(err)
        assert key
        assert sent
        assert otlp
        yield Demo(
            process,
            url.group(1),
            key.group(1),
            int(sent.group(1).replace(",", "")),
            otlp.group(1),
            tmp,
            out,
            err,
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def ask(demo: Demo, path: str, key: str | None = None, **query: Any) -> tuple[int, Any]:
    url = demo.url + path.lstrip("/") + (f"?{urlencode(query)}" if query else "")
    return get_json(url, key if key is not None else demo.key)


def test_the_month_is_in_the_call_log(served: Demo) -> None:
    status, answer = ask(served, "/api/v1/calls/stats", days=30, group_by="day")
    assert status == 200, answer
    stats = answer["stats"]
    # Everything sent was stored before the URL was printed.
    assert served.sent >= CALLS * 0.9
    assert stats["total_requests"] == served.sent
    days = [day for day in answer["by_day"] if day["requests"]]
    assert len(days) >= DAYS - 1  # today may be minutes old
    requests = [day["requests"] for day in days[:-1]]
    assert max(requests) > 1.8 * min(requests)  # weekends, growth: not a flat line
    assert 0 < stats["failed_requests"] < stats["total_requests"] * 0.1
    assert stats["unpriced_requests"] > stats["failed_requests"]  # and the unknown model's
    assert stats["total_cost"] > 0
    assert stats["cache_read_tokens"] > 0
    assert stats["cache_write_tokens"] > 0
    assert stats["p50_time_to_first_chunk_ms"] > 0
    assert stats["p95_latency_ms"] > stats["p50_latency_ms"] > 0

    groups: dict[str, set[str]] = {}
    for group in ("service", "provider", "model", "api_key"):
        status, answer = ask(served, "/api/v1/calls/stats", days=30, group_by=group)
        assert status == 200, answer
        groups[group] = {row["group"] for row in answer["groups"]}
    assert groups["service"] == {service.name for service in SERVICES}
    assert groups["provider"] == {"openai", "anthropic", "aws.bedrock", "gcp.gemini"}
    assert UNKNOWN_MODEL.model in groups["model"]
    assert len(groups["api_key"]) >= 4


def test_errors_include_rate_limits(served: Demo) -> None:
    status, answer = ask(
        served,
        "/api/v1/calls",
        days=30,
        status="error",
        error_type="otel_llm.demo.RateLimitError",
        limit=5,
    )
    assert status == 200, answer
    assert answer["calls"], answer
    call = answer["calls"][0]
    status, call = ask(served, f"/api/v1/calls/{call['id']}")
    assert status == 200, call
    assert call["status_code"] == 429
    assert call["error_code"] == "rate_limit_exceeded"
    assert call["error_message"]
    assert call["cost"] is None  # unknown, not $0


def test_an_agent_run_is_one_trace(served: Demo) -> None:
    status, answer = ask(served, "/api/v1/traces", days=30, agent_name=AGENT, limit=5)
    assert status == 200, answer
    assert answer["data"], answer
    trace_id = answer["data"][0]["trace_id"]
    status, trace = ask(served, f"/api/v1/traces/{trace_id}")
    assert status == 200, trace
    (root,) = trace["tree"]
    (agent,) = root["children"]
    assert agent["kind"] == "agent"
    assert agent["agent_name"] == AGENT
    kinds = [child["kind"] for child in agent["children"]]
    assert kinds.count("llm_call") == 3
    assert kinds.count("tool") == 1
    assert any(TOOL in child["name"] for child in agent["children"])
    assert agent["subtree_cost"] > 0
    assert trace["calls"] == 3


def test_a_conversation_spans_several_traces(served: Demo) -> None:
    status, answer = ask(served, "/api/v1/calls/stats", days=30, group_by="conversation")
    assert status == 200, answer
    conversations = [row for row in answer["groups"] if row["group"]]
    assert conversations
    assert max(row["total_requests"] for row in conversations) >= 2


def test_a_wrong_key_gets_401(served: Demo) -> None:
    status, answer = ask(served, "/api/v1/calls", key="ollm_not-the-demo-key")
    assert status == 401, answer
    status, answer = ask(served, "/api/v1/calls", key=PROD_KEY)  # the environment's
    assert status == 401, answer


def test_the_page_is_served(served: Demo) -> None:
    # Needs the page (issue 15, item 1) served at / by the call-log API.
    with urllib.request.urlopen(served.url, timeout=10) as response:  # noqa: S310 - local
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")


def test_sigint_stops_it_cleanly(served: Demo) -> None:
    """Last: stops the module's demo."""
    process = served.process
    assert process.poll() is None, "".join(served.err)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=10)
    assert code == 0, "".join(served.err)
    assert time.monotonic() - started < 5
    assert "Traceback" not in "".join(served.err)
    assert list(served.tmp.iterdir()) == []  # its temporary directory is gone
    for address in (urlsplit(served.url).netloc, served.otlp):
        host, _, port = address.rpartition(":")
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect((host, int(port)))


def test_the_month_is_planned_from_its_arguments() -> None:
    now = int(datetime(2026, 3, 18, 15, 30, tzinfo=UTC).timestamp() * 1e9)
    planned = month(3000, 7, now)
    assert planned == month(3000, 7, now)
    assert planned != month(3000, 8, now)
    assert 2900 <= planned.calls <= 3100
    calls = [call for trace in planned.traces for call in trace.calls]
    assert all(now - DAYS * DAY_NS <= call.start_ns and call.end_ns < now for call in calls)
    assert len({call.start_ns // DAY_NS for call in calls}) == DAYS
    agent_runs = [trace for trace in planned.traces if trace.agent_run]
    assert len(agent_runs) == DAYS
    assert all(not call.call.fails for trace in agent_runs for call in trace.calls)
    assert {call.conversation for call in calls if call.conversation} >= {
        trace.calls[0].conversation for trace in agent_runs
    }
    assert sum(call.call.model is UNKNOWN_MODEL for call in calls) == DAYS
    streams = [call for call in calls if call.call.stream and not call.call.fails]
    assert streams
    assert all(0 < (call.first_chunk_ns or 0) < call.duration_ns for call in streams)
    # The afternoon OpenAI refused calls stands out.
    incident = (now // DAY_NS - 7) * DAY_NS
    afternoon = [
        call
        for call in calls
        if incident + 14 * 3600 * 10**9 <= call.start_ns < incident + 16 * 3600 * 10**9
        and call.call.model.provider is OPENAI
    ]
    failed = sum(call.call.fails for call in afternoon)
    assert afternoon
    assert failed / len(afternoon) > 0.3
    assert sum(call.call.fails for call in calls) / len(calls) < 0.08


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--serve", "--json"], "--json prints a summary"),
        (["--call-log-store", "calls.db"], "--call-log-store needs --serve"),
        (["--serve-seconds", "1"], "--serve-seconds needs --port or --serve"),
    ],
)
def test_flags_that_do_not_go_together(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", *args]) == 2
    assert message in capsys.readouterr().err
