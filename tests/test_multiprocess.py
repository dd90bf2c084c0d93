"""prometheus_client multiprocess mode (gunicorn workers): counts from every worker add up;
exemplars are lost there (documented in the README)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WORKER = """
from opentelemetry.sdk.trace import TracerProvider
from otel_llm import LLMSpanProcessor, llm_call
provider = TracerProvider()
provider.add_span_processor(LLMSpanProcessor())
for _ in range(3):
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as call:
        call.set_usage(input_tokens=1000, output_tokens=100)
"""

SCRAPE = """
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
from otel_llm.exposition import metrics_registry
registry = metrics_registry()
print(sum(
    sample.value
    for family in registry.collect()
    for sample in family.samples
    if sample.name == "gen_ai_client_tokens_total"
    and sample.labels["gen_ai_token_type"] == "input"
    and sample.labels["gen_ai_request_model"] == "gpt-4o-mini"
))
print("exemplar" if "trace_id" in openmetrics(registry).decode() else "no exemplar")
"""


def test_workers_add_up(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER], env=env) for _ in range(2)]
    assert [w.wait(60) for w in workers] == [0, 0]
    out = subprocess.run(
        [sys.executable, "-c", SCRAPE], env=env, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert float(out[0]) == 2 * 3 * 1000
    assert out[1] == "no exemplar"
