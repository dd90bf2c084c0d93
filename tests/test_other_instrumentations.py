"""Other GenAI instrumentation libraries' real spans, priced by our processor.

Each family (the official OpenTelemetry one, Traceloop OpenLLMetry, Arize OpenInference,
OpenLIT) gets a virtualenv of its own (they do not install together): its packages and this
working tree, built once by tests/support/venvs.py under ``.venvs/family-<name>`` and reused.
A script run there with ``python -I`` installs an SDK TracerProvider whose spans go through
``LLMSpanProcessor`` into memory, instruments the SDKs with THAT library only (or with it and
ours together, in either order), makes one OpenAI chat call and, where the family instruments
Anthropic, one Anthropic messages call against the fake server this test process runs on
127.0.0.1, and prints every exported span as JSON.

The same scripted calls are made in this process under our own instrumentors: each family's
priced span must cost what ours does, and what the price list says:

- OpenAI chat, gpt-4o-mini (response model gpt-4o-mini-2024-07-18): 1_000 prompt tokens of which
  400 cached, 200 completion tokens. $0.15 input, $0.075 cached input, $0.60 output per million:
  600 x 0.15 + 400 x 0.075 + 200 x 0.60 = $0.00024.
- Anthropic messages, claude-haiku-4-5 (claude-haiku-4-5-20251001): 1_000 uncached input tokens,
  300 written to the cache, 2_000 read from it, 150 output tokens. $1 input, $1.25 cache write,
  $0.10 cache read, $5 output per million: 1_000 + 375 + 200 + 750 = $0.002325.

Known loss, asserted as such: opentelemetry-instrumentation-openai-v2 2.4b0 records no cached
token count on chat spans, so the 400 cached tokens are priced as uncached input:
1_000 x 0.15 + 200 x 0.60 = $0.00027 (USD 0.00003 more than the call cost).

With both theirs and ours active (either order), each call must still give exactly one priced
span and one increment of the cost counter: our instrumentor steps aside while another library's
instrumentor of the same SDK is active, and the processor prices only the innermost of nested
LLM spans.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from genai_prices import data_snapshot
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor
from otel_llm import _semconv as sc
from otel_llm.instrumentation.anthropic import AnthropicInstrumentor
from otel_llm.instrumentation.openai import OpenAIInstrumentor
from tests.support.fake_llm import FakeLLMServer, ScriptedResponse
from tests.support.venvs import ROOT, clean_environment, ensure_venv, run_script, venv_python

SCRIPT_TIMEOUT = 180

OPENAI_RESPONSE = ScriptedResponse(
    model="gpt-4o-mini-2024-07-18",
    text="Hi there",
    input_tokens=1000,
    cached_tokens=400,
    output_tokens=200,
)
ANTHROPIC_RESPONSE = ScriptedResponse(
    model="claude-haiku-4-5-20251001",
    text="Hi there",
    input_tokens=1000,
    cache_creation_tokens=300,
    cached_tokens=2000,
    output_tokens=150,
)
# USD per million tokens, from genai-prices' snapshot (checked below).
GPT_4O_MINI = {"input": Decimal("0.15"), "cache_read": Decimal("0.075"), "output": Decimal("0.6")}
CLAUDE_HAIKU_4_5 = {
    "input": Decimal(1),
    "cache_write": Decimal("1.25"),
    "cache_read": Decimal("0.1"),
    "output": Decimal(5),
}
M = Decimal(1_000_000)
OPENAI_COST = float(
    (600 * GPT_4O_MINI["input"] + 400 * GPT_4O_MINI["cache_read"] + 200 * GPT_4O_MINI["output"]) / M
)
ANTHROPIC_COST = float(
    (
        1000 * CLAUDE_HAIKU_4_5["input"]
        + 300 * CLAUDE_HAIKU_4_5["cache_write"]
        + 2000 * CLAUDE_HAIKU_4_5["cache_read"]
        + 150 * CLAUDE_HAIKU_4_5["output"]
    )
    / M
)
# The official openai-v2 chat span has no cached-token count: all 1_000 input tokens at $0.15.
OPENAI_COST_WITHOUT_CACHE = float((1000 * GPT_4O_MINI["input"] + 200 * GPT_4O_MINI["output"]) / M)


@dataclass(frozen=True)
class Family:
    """One instrumentation library, the packages it installs with, how its script uses it."""

    name: str
    requirements: tuple[str, ...]
    anthropic: bool  # does it instrument the anthropic SDK?
    versions: tuple[str, ...]  # distributions whose versions the script reports
    openai_cost: float  # what its OpenAI chat span is priced at
    openai_loss: str = ""  # why that differs from OPENAI_COST, when it does


FAMILIES = [
    Family(
        name="official",
        requirements=(
            "opentelemetry-instrumentation-openai-v2==2.4b0",
            "opentelemetry-util-genai==1.0b0",  # newer releases break 2.4b0's import
            "openai>=2,<3",  # with 3.x it loses server.address (instrumentations.md)
        ),
        anthropic=False,
        versions=("opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai", "openai"),
        openai_cost=OPENAI_COST_WITHOUT_CACHE,
        openai_loss="openai-v2 2.4b0 records no cached tokens on chat spans",
    ),
    Family(
        name="openllmetry",
        requirements=(
            "opentelemetry-instrumentation-openai>=0.62,<0.63",
            "opentelemetry-instrumentation-anthropic>=0.62,<0.63",
            "openai>=3,<4",
            "anthropic>=2,<3",
        ),
        anthropic=True,
        versions=(
            "opentelemetry-instrumentation-openai",
            "opentelemetry-instrumentation-anthropic",
            "openai",
            "anthropic",
        ),
        openai_cost=OPENAI_COST,
    ),
    Family(
        name="openinference",
        requirements=(
            "openinference-instrumentation-openai>=0.1,<0.2",
            "openinference-instrumentation-anthropic>=3.1,<3.2",
            "openai>=3,<4",
            "anthropic>=2,<3",
        ),
        anthropic=True,
        versions=(
            "openinference-instrumentation-openai",
            "openinference-instrumentation-anthropic",
            "openai",
            "anthropic",
        ),
        openai_cost=OPENAI_COST,
    ),
    Family(
        name="openlit",
        # openlit 1.45.0 requires openai<3 and anthropic<1 (pip picks the newest of each) and
        # OTel >=1.38: left to itself pip backtracks through the contrib releases and gives up,
        # so the OTel line it was released with is named.
        requirements=(
            "openlit==1.45.0",
            "opentelemetry-api==1.45.1",
            "opentelemetry-sdk==1.45.1",
            "opentelemetry-instrumentation==0.66b1",
            "opentelemetry-semantic-conventions==0.66b1",
        ),
        anthropic=True,
        versions=("openlit", "openai", "anthropic", "opentelemetry-sdk"),
        openai_cost=OPENAI_COST,
    ),
]

# Which instrumentation each mode activates, in order.
MODES = {
    "theirs": ("theirs",),
    "theirs-then-ours": ("theirs", "ours"),
    "ours-then-theirs": ("ours", "theirs"),
}

# Run in the family's virtualenv with -I: argv[1] the family, argv[2] the mode.
SCRIPT = r"""
import json
import os
import sys
import tempfile
from importlib.metadata import version

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import otel_llm
from otel_llm import LLMSpanProcessor

family, mode, versions = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
with_anthropic = sys.argv[4] == "1"

exporter = InMemorySpanExporter()
registry = CollectorRegistry()
provider = TracerProvider()
provider.add_span_processor(LLMSpanProcessor(SimpleSpanProcessor(exporter), registry=registry))
trace.set_tracer_provider(provider)


def theirs():
    if family == "official":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
    elif family == "openllmetry":
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
        AnthropicInstrumentor().instrument(tracer_provider=provider)
    elif family == "openinference":
        from openinference.instrumentation.anthropic import AnthropicInstrumentor
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
        AnthropicInstrumentor().instrument(tracer_provider=provider)
    elif family == "openlit":
        import openlit

        # A local price table: openlit fetches one from the network otherwise.
        prices = os.path.join(tempfile.mkdtemp(), "pricing.json")
        with open(prices, "w") as file:
            json.dump({"chat": {}, "embeddings": {}, "images": {}, "audio": {}}, file)
        openlit.init(
            pricing_json=prices,
            disable_metrics=True,
            collect_gpu_stats=False,
            disable_events=True,
            capture_message_content=False,
        )
    else:
        raise SystemExit(f"unknown family {family}")


def ours():
    from otel_llm.instrumentation.anthropic import AnthropicInstrumentor
    from otel_llm.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)
    if with_anthropic:
        AnthropicInstrumentor().instrument(tracer_provider=provider)


def metric_cost():
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "gen_ai_client_cost_usd_total"
    )


def measured(call):
    before_spans = len(exporter.get_finished_spans())
    before_cost = metric_cost()
    call()
    provider.force_flush()
    spans = [
        {
            "name": span.name,
            "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
            "span_id": format(span.context.span_id, "016x"),
            "trace_id": format(span.context.trace_id, "032x"),
            "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
            "attributes": dict(span.attributes or {}),
        }
        for span in exporter.get_finished_spans()[before_spans:]
    ]
    return {"spans": spans, "metric_cost": metric_cost() - before_cost}


for step in mode:
    {"theirs": theirs, "ours": ours}[step]()

import openai

calls = {}
client = openai.OpenAI(
    base_url=os.environ["FAKE_OPENAI_BASE_URL"], api_key="test", max_retries=0
)
calls["openai"] = measured(
    lambda: client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}]
    )
)
if with_anthropic:
    import anthropic

    messages = anthropic.Anthropic(
        base_url=os.environ["FAKE_ANTHROPIC_BASE_URL"], api_key="test", max_retries=0
    )
    calls["anthropic"] = measured(
        lambda: messages.messages.create(
            model="claude-haiku-4-5",
            max_tokens=100,
            messages=[{"role": "user", "content": "Say hi"}],
        )
    )
provider.shutdown()
print(json.dumps({
    "versions": {name: version(name) for name in versions},
    "otel_llm": otel_llm.__file__,
    "calls": calls,
}, default=str))
"""


def family_venv(family: Family) -> Path:
    return ensure_venv(
        f"family-{family.name}",
        [[*family.requirements, "-e", str(ROOT)]],
        label=f"{family.name} instrumentation",
    )


RunFamily = Callable[[Family, str], dict[str, Any]]


def script_calls(server: FakeLLMServer, with_anthropic: bool) -> None:
    server.clear()
    server.script(OPENAI_RESPONSE, *([ANTHROPIC_RESPONSE] if with_anthropic else []))


@pytest.fixture(scope="module")
def run_family(server: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory) -> RunFamily:
    """run(family, mode) -> the script's report; each (family, mode) runs once per module."""
    done: dict[tuple[str, str], dict[str, Any]] = {}

    def run(family: Family, mode: str) -> dict[str, Any]:
        key = (family.name, mode)
        if key not in done:
            python = venv_python(family_venv(family))
            script_calls(server, family.anthropic)
            stdout = run_script(
                python,
                SCRIPT,
                family.name,
                ",".join(MODES[mode]),
                ",".join(family.versions),
                "1" if family.anthropic else "0",
                label=f"{family.name} instrumentation, {mode}",
                cwd=tmp_path_factory.mktemp(f"family-{family.name}-{mode}"),
                env=clean_environment(**server.script_environment()),
                timeout=SCRIPT_TIMEOUT,
            )
            assert server.pending == 0, (
                f"{family.name} instrumentation, {mode}: {server.pending} scripted responses "
                f"left: the script did not make the calls"
            )
            lines = stdout.strip().splitlines()
            done[key] = json.loads(lines[-1])
        return done[key]

    return run


@pytest.fixture(scope="module")
def our_costs(server: FakeLLMServer) -> dict[str, dict[str, Any]]:
    """Our own instrumentors on the same scripted calls, in this process."""
    exporter = InMemorySpanExporter()
    registry = CollectorRegistry()
    provider = TracerProvider()
    provider.add_span_processor(LLMSpanProcessor(SimpleSpanProcessor(exporter), registry=registry))
    ours_openai, ours_anthropic = OpenAIInstrumentor(), AnthropicInstrumentor()
    ours_openai.instrument(tracer_provider=provider)
    ours_anthropic.instrument(tracer_provider=provider)
    try:
        script_calls(server, with_anthropic=True)
        with openai.OpenAI(
            base_url=server.openai_base_url, api_key="test", max_retries=0
        ) as client:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}]
            )
        with anthropic.Anthropic(
            base_url=server.anthropic_base_url, api_key="test", max_retries=0
        ) as client:
            client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=100,
                messages=[{"role": "user", "content": "Say hi"}],
            )
    finally:
        ours_openai.uninstrument()
        ours_anthropic.uninstrument()
        provider.shutdown()
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["chat gpt-4o-mini", "chat claude-haiku-4-5"]
    return {
        provider_name: dict(span.attributes or {})
        for provider_name, span in zip(["openai", "anthropic"], spans, strict=True)
    }


def _prices(provider_id: str, model_id: str) -> Any:
    snapshot = data_snapshot.get_snapshot()
    provider = data_snapshot.find_provider_by_id(snapshot.providers, provider_id)
    assert provider is not None
    model = provider.find_model(model_id, all_providers=snapshot.providers)
    assert model is not None, model_id
    return model.prices


def test_the_literals_are_the_snapshot_prices() -> None:
    mini = _prices("openai", "gpt-4o-mini")
    assert (mini.input_mtok, mini.cache_read_mtok, mini.output_mtok) == tuple(GPT_4O_MINI.values())
    haiku = _prices("anthropic", "claude-haiku-4-5")
    assert (
        haiku.input_mtok,
        haiku.cache_write_mtok,
        haiku.cache_read_mtok,
        haiku.output_mtok,
    ) == tuple(CLAUDE_HAIKU_4_5.values())


def test_our_instrumentation_prices_the_calls(our_costs: dict[str, dict[str, Any]]) -> None:
    assert our_costs["openai"][sc.GEN_AI_USAGE_COST_AMOUNT] == pytest.approx(OPENAI_COST)
    assert our_costs["anthropic"][sc.GEN_AI_USAGE_COST_AMOUNT] == pytest.approx(ANTHROPIC_COST)


def _priced(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [span for span in spans if sc.GEN_AI_USAGE_COST_AMOUNT in span["attributes"]]


def _describe(spans: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {span['name']!r} scope={span['scope']} span={span['span_id']} "
        f"parent={span['parent_id']} cost={span['attributes'].get(sc.GEN_AI_USAGE_COST_AMOUNT)}"
        for span in spans
    )


def _cases(modes: list[str]) -> list[Any]:
    cases = []
    for family in FAMILIES:
        for mode in modes:
            for call in ["openai", "anthropic"] if family.anthropic else ["openai"]:
                cases.append(pytest.param(family, mode, call, id=f"{family.name}-{mode}-{call}"))
    return cases


@pytest.mark.parametrize(("family", "mode", "call"), _cases(["theirs"]))
def test_their_spans_are_priced_as_ours(
    family: Family,
    mode: str,
    call: str,
    run_family: RunFamily,
    our_costs: dict[str, dict[str, Any]],
) -> None:
    report = run_family(family, mode)
    where = f"{family.name} instrumentation ({report['versions']}), {call} call"
    assert Path(report["otel_llm"]).resolve() == ROOT / "otel_llm" / "__init__.py", where
    spans = report["calls"][call]["spans"]
    priced = _priced(spans)
    assert len(priced) == 1, f"{where}: one priced span expected:\n{_describe(spans)}"
    (span,) = priced
    assert not span["scope"].startswith("otel_llm"), f"{where}: our own span? {span}"
    # Anything else (openlit's httpx POST child) is not an LLM call: no cost on it.
    cost = span["attributes"][sc.GEN_AI_USAGE_COST_AMOUNT]
    ours = our_costs[call][sc.GEN_AI_USAGE_COST_AMOUNT]
    if call == "openai" and family.openai_loss:
        # A documented loss of information in that library, not ours: asserted as such.
        assert sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS not in span["attributes"], (
            f"{where}: it now records cached tokens; drop the documented loss: {span}"
        )
        assert cost == pytest.approx(family.openai_cost), f"{where} ({family.openai_loss}): {span}"
        assert cost - ours == pytest.approx(400 * (0.15 - 0.075) / 1e6), f"{where}: {span}"
    else:
        assert cost == pytest.approx(ours), f"{where}: priced {cost}, ours {ours}: {span}"
        expected = OPENAI_COST if call == "openai" else ANTHROPIC_COST
        assert cost == pytest.approx(expected), f"{where}: {span}"
    assert report["calls"][call]["metric_cost"] == pytest.approx(cost), (
        f"{where}: the cost counter grew by {report['calls'][call]['metric_cost']}"
    )


@pytest.mark.parametrize(
    ("family", "mode", "call"), _cases(["theirs-then-ours", "ours-then-theirs"])
)
def test_both_instrumentations_price_each_call_once(
    family: Family,
    mode: str,
    call: str,
    run_family: RunFamily,
    our_costs: dict[str, dict[str, Any]],
) -> None:
    report = run_family(family, mode)
    where = f"{family.name} instrumentation and ours ({mode}), {call} call"
    spans = report["calls"][call]["spans"]
    priced = _priced(spans)
    assert len(priced) == 1, f"{where}: one priced span expected:\n{_describe(spans)}"
    cost = priced[0]["attributes"][sc.GEN_AI_USAGE_COST_AMOUNT]
    # Whichever span carries the price, it is ours or theirs (official: without cached tokens).
    acceptable = {
        our_costs[call][sc.GEN_AI_USAGE_COST_AMOUNT],
        family.openai_cost if call == "openai" else ANTHROPIC_COST,
    }
    assert any(cost == pytest.approx(value) for value in acceptable), f"{where}: {cost}"
    assert report["calls"][call]["metric_cost"] == pytest.approx(cost), (
        f"{where}: the cost counter grew by {report['calls'][call]['metric_cost']}, "
        f"once ({cost}) expected:\n{_describe(spans)}"
    )
