"""`otel-llm demo`: the command that must work on a fresh machine with no network and no key."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from otel_llm import _semconv as sc
from otel_llm import demo
from otel_llm.cli import main
from tests.support.pipeline import counter_total
from tests.support.ports import free_port


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["demo", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_json_summary_adds_up_and_shows_the_unpriced_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run_json(capsys, "--calls", "30", "--seed", "1")
    models = result["models"]
    total = result["total"]

    assert result["calls"] == total["calls"] == sum(m["calls"] for m in models) == 30
    assert result["metrics_url"] is None
    assert Decimal(total["cost_usd"]) > 0
    # Exact decimal strings: the total is the sum of the rows to the last digit.
    assert Decimal(total["cost_usd"]) == sum(
        (Decimal(m["cost_usd"]) for m in models if m["cost_usd"] is not None), Decimal(0)
    )
    assert Decimal(total["cost_usd"]) == sum(
        (Decimal(f["cost_usd"]) for f in result["features"] if f["cost_usd"] is not None),
        Decimal(0),
    )
    for kind in demo.TOKEN_KINDS:
        assert total["tokens"][kind] == sum(m["tokens"][kind] for m in models)

    expected = {
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4o"),
        ("anthropic", "claude-sonnet-4-5"),
        ("aws.bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("gcp.gemini", "gemini-2.5-flash"),
        ("openai", "gpt-imaginary-1"),
    }
    assert {(m["provider"], m["model"]) for m in models} == expected
    assert total["tokens"]["cache_read"] > 0
    assert total["tokens"]["cache_creation"] > 0

    # The unknown model: one call, unpriced, no cost at all (not $0).
    unknown = next(m for m in models if m["model"] == "gpt-imaginary-1")
    assert (unknown["calls"], unknown["unpriced"], unknown["cost_usd"]) == (1, 1, None)
    assert {
        "provider": "openai",
        "model": "gpt-imaginary-1",
        "reason": "unknown_model",
        "error_type": None,
        "calls": 1,
    } in result["unpriced"]

    # Failures are counted, and each failed call (no usage) is listed with its error type.
    assert total["errors"] > 0
    assert total["errors"] == sum(m["errors"] for m in models)
    failed = [u for u in result["unpriced"] if u["error_type"] is not None]
    assert sum(u["calls"] for u in failed) == total["errors"]
    assert all(u["error_type"].startswith("otel_llm.demo.") for u in failed)
    assert total["unpriced"] == sum(u["calls"] for u in result["unpriced"]) == total["errors"] + 1

    assert "summarize" in {f["feature"] for f in result["features"]}


def test_same_seed_same_summary(capsys: pytest.CaptureFixture[str]) -> None:
    first = run_json(capsys, "--calls", "25", "--seed", "7")
    assert run_json(capsys, "--calls", "25", "--seed", "7") == first
    assert run_json(capsys, "--calls", "25", "--seed", "8") != first


def test_text_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--calls", "30"]) == 0
    out = capsys.readouterr().out
    assert "30 simulated LLM calls" in out
    assert re.search(r"^provider\s+model\s+calls\s+errors", out, re.MULTILINE)
    assert re.search(r"^total\s+30\s", out, re.MULTILINE)
    assert re.search(r"^openai\s+gpt-imaginary-1\s.*\bunpriced$", out, re.MULTILINE)
    assert re.search(r"^\s+openai\s+gpt-imaginary-1\s+unknown_model\s+1 call$", out, re.MULTILINE)
    assert "Serving" not in out


@pytest.mark.parametrize("calls", [1, 2, 3, 9, 40])
@pytest.mark.parametrize("seed", range(10))
def test_plan_always_shows_each_case(calls: int, seed: int) -> None:
    planned = demo.plan(calls, seed)
    assert len(planned) == calls
    assert sum(call.model is demo.UNKNOWN_MODEL for call in planned) == 1
    assert not any(call.fails for call in planned if call.model is demo.UNKNOWN_MODEL)
    if calls > 1:
        assert any(call.fails for call in planned)
        assert any(call.feature == "summarize" for call in planned)
    if calls >= 9:
        assert {call.model.model for call in planned} >= {m.model for m in demo._DECK}
    for call in planned:
        assert call.cache_read_tokens + call.cache_creation_tokens <= call.input_tokens
        assert call.reasoning_tokens <= call.output_tokens
        assert call.latency_s < 0.005  # the demo must stay quick


def test_summary_agrees_with_spans_and_metrics() -> None:
    pipeline = demo.Pipeline.create()
    try:
        pipeline.run(demo.plan(30, 1))
        spans = pipeline.spans()
        summary = demo.summarize(spans, pipeline.processor.pricer, seed=1)
    finally:
        pipeline.shutdown()

    assert len(spans) == 30
    # The exported spans carry their cost (as floats) or why they have none.
    span_costs = [s.attributes.get(sc.GEN_AI_USAGE_COST_AMOUNT) for s in spans if s.attributes]
    assert math.isclose(
        sum(c for c in span_costs if isinstance(c, float)), float(summary.total.cost), rel_tol=1e-9
    )
    unknown = [s for s in spans if s.name == "chat gpt-imaginary-1"]
    assert len(unknown) == 1
    assert unknown[0].attributes is not None
    assert unknown[0].attributes[sc.OTEL_LLM_COST_UNPRICED_REASON] == "unknown_model"
    failed = [s for s in spans if s.attributes and sc.ERROR_TYPE in s.attributes]
    assert len(failed) == summary.total.errors > 0
    assert all(s.status.status_code.name == "ERROR" for s in failed)
    for span in spans:
        assert span.attributes is not None
        assert span.attributes[sc.OTEL_LLM_CONTEXT_FEATURE] in demo.FEATURES
        assert str(span.attributes[sc.OTEL_LLM_CONTEXT_USER_ID]).startswith("user-")
    streamed = [s for s in spans if s.attributes and s.attributes.get(sc.GEN_AI_REQUEST_STREAM)]
    assert any(
        s.attributes and sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in s.attributes for s in streamed
    )

    # Prometheus got the same cost (float sums) and the unpriced call, by reason.
    registry = pipeline.registry
    metric_cost = counter_total(registry, sc.PROM_COST)
    assert math.isclose(metric_cost, float(summary.total.cost), rel_tol=1e-9)
    unpriced: dict[str, float] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == sc.PROM_UNPRICED:
                reason = sample.labels["reason"]
                unpriced[reason] = unpriced.get(reason, 0) + sample.value
    assert unpriced == {"unknown_model": 1, "failed_without_usage": summary.total.errors}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--calls", "-1"], "argument --calls: must be between 1 and"),
        (["demo", "--calls", "0"], "argument --calls: must be between 1 and"),
        (["demo", "--calls", "many"], "argument --calls: expected an integer"),
        (["demo", "--port", "70000"], "argument --port: must be between 0 and 65535"),
        (["demo", "--serve-seconds", "-2", "--port", "0"], "argument --serve-seconds"),
        (["demo", "--serve-seconds", "1"], "--serve-seconds needs --port"),
        (["demo", "--host", ""], "argument --host"),
        (["nonsense"], "invalid choice: 'nonsense'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("otel-llm ")


def test_port_in_use_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--port", str(port), "--serve-seconds", "0"]) == 1
    captured = capsys.readouterr()
    assert f"otel-llm demo: error: cannot serve /metrics on 127.0.0.1:{port}" in captured.err
    assert "Traceback" not in captured.err


def _console_script() -> list[str]:
    """The installed `otel-llm` entry point (the venv's, even when it is not on PATH)."""
    beside = Path(sys.executable).with_name("otel-llm")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("otel-llm")
    return [found] if found else [sys.executable, "-m", "otel_llm"]


COST_WITH_EXEMPLAR = re.compile(
    r'^gen_ai_client_cost_usd_total\{[^}]*\} \S+ # \{trace_id="[0-9a-f]{32}"\} \S+',
    re.MULTILINE,
)
UNKNOWN_MODEL_UNPRICED = re.compile(
    r"^gen_ai_client_unpriced_operations_total\{"
    r'[^}]*gen_ai_request_model="gpt-imaginary-1"[^}]*reason="unknown_model"[^}]*\} 1\.0',
    re.MULTILINE,
)


def test_console_script_serves_metrics_then_exits() -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OTEL_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    process = subprocess.Popen(
        [*_console_script(), "demo", "--port", str(port), "--serve-seconds", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    body = ""
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Accept": "application/openmetrics-text"},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - local
                    body = response.read().decode()
            except (urllib.error.URLError, ConnectionError):
                body = ""
            if COST_WITH_EXEMPLAR.search(body) and UNKNOWN_MODEL_UNPRICED.search(body):
                break
            time.sleep(0.1)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert COST_WITH_EXEMPLAR.search(body), body[:2000]
    assert UNKNOWN_MODEL_UNPRICED.search(body), body[:2000]
    assert body.rstrip().endswith("# EOF")  # OpenMetrics, as asked
    assert process.returncode == 0, err
    assert f"http://127.0.0.1:{port}/metrics" in out
    assert "gpt-imaginary-1" in out
    assert "Traceback" not in err
