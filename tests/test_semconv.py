"""The machine-readable model in semconv/ and the code must agree."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor, enforcement, llm_call
from otel_llm import _semconv as sc
from otel_llm._configure import EnforcementMetrics
from otel_llm.calllog.cardinality import CAPPED
from otel_llm.calllog.store import open_store
from otel_llm.calllog.telemetry import register
from otel_llm.calllog.writer import CallLogWriter
from otel_llm.collector.policies import CollectorPolicies
from otel_llm.collector.queue import DiskQueue
from otel_llm.collector.telemetry import CollectorMetrics

SEMCONV = Path(__file__).parent.parent / "semconv"


def _load(name: str) -> Any:
    return yaml.safe_load((SEMCONV / name).read_text())


def _constants(prefix: tuple[str, ...]) -> dict[str, str]:
    return {
        name: value
        for name, value in vars(sc).items()
        if name.startswith(prefix) and isinstance(value, str) and not name.endswith("PREFIX")
    }


def test_every_attribute_constant_is_in_the_model_and_back() -> None:
    model = {entry["name"] for entry in _load("attributes.yaml")["attributes"]}
    code = set(
        _constants(
            (
                "GEN_AI_",
                "SERVER_",
                "HTTP_",
                "URL_",
                "ERROR_TYPE",
                "ERROR_CODE",
                "OTEL_LLM_",
                "USAGE_COST",
            )
        ).values()
    )
    assert code == model


def test_deprecated_names_match_the_model() -> None:
    model = {
        entry["name"]: entry["deprecated"]
        for entry in _load("attributes.yaml")["attributes"]
        if "deprecated" in entry
    }
    assert model == sc.DEPRECATED


def test_providers_match_the_model() -> None:
    model = _load("providers.yaml")
    assert model["renamed"] == sc.PROVIDER_RENAMED
    assert model["price_data"] == sc.PROVIDER_PRICE_DATA_ID


def test_buckets_and_label_sets_match_the_model() -> None:
    model = _load("metrics.yaml")
    assert tuple(model["buckets"]["duration"]) == sc.DURATION_BUCKETS
    assert tuple(model["buckets"]["tokens"]) == sc.TOKEN_BUCKETS
    assert tuple(model["label_sets"]["standard"]) == sc.STANDARD_LABELS


@pytest.fixture
def emitted() -> dict[str, Any]:
    """Metric families as the code really registers and fills them."""
    registry = CollectorRegistry()
    provider = TracerProvider()
    provider.add_span_processor(LLMSpanProcessor(registry=registry, rollup_max_open=1))
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as call:
        call.set_usage(input_tokens=10, output_tokens=5, cache_read_tokens=2, reasoning_tokens=1)
        call.first_chunk()
    tracer = provider.get_tracer("requests")
    for _ in range(2):  # two traces left open, past a bound of one: a roll-up is evicted
        with (
            trace.use_span(tracer.start_span("request"), end_on_exit=False),
            llm_call(provider="openai", model="unknown-model-x", tracer_provider=provider) as call,
        ):
            call.set_usage(input_tokens=10, output_tokens=5)
    return {family.name: family for family in registry.collect()}


@pytest.fixture
def collector_emitted(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The collector service's own metric families, as registered at start-up."""
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry)
    with DiskQueue(tmp_path, max_bytes=1000) as queue:
        metrics.watch_queue(queue)
        yield {family.name: family for family in registry.collect()}


def _of(component: str) -> list[dict[str, Any]]:
    """The model's metrics of one component (the processor's carry no ``component``)."""
    return [
        m for m in _load("metrics.yaml")["metrics"] if m.get("component", "processor") == component
    ]


def _check_families(metrics: list[dict[str, Any]], emitted: dict[str, Any]) -> None:
    model = _load("metrics.yaml")
    label_sets = model["label_sets"]
    for metric in metrics:
        family_name = metric["prometheus"].removesuffix("_total")
        assert family_name in emitted, metric["prometheus"]
        family = emitted[family_name]
        assert family.type == metric["instrument"], metric["prometheus"]
        expected_labels: set[str] = set()
        for label in metric["labels"]:
            expected_labels.update(label_sets.get(label, [label]))
        samples = [s for s in family.samples if not s.name.endswith(("_created", "_sum", "_count"))]
        if not samples:
            continue  # e.g. no invalid attributes were sent: the family exists but is empty
        for sample in samples:
            assert set(sample.labels) - {"le"} == expected_labels, metric["prometheus"]
            assert sample.name.startswith(family_name)
        if metric["instrument"] == "histogram":
            bounds = sorted({float(s.labels["le"]) for s in samples if s.labels["le"] != "+Inf"})
            assert bounds == sorted({float(b) for b in model["buckets"][metric["buckets"]]})
        if "token_types" in metric:
            seen = {s.labels["gen_ai_token_type"] for s in samples}
            assert seen <= set(metric["token_types"])
    assert set(emitted) == {m["prometheus"].removesuffix("_total") for m in metrics}


def test_metrics_emitted_are_those_of_the_model(emitted: dict[str, Any]) -> None:
    _check_families(_of("processor"), emitted)


def test_collector_metrics_are_those_of_the_model(collector_emitted: dict[str, Any]) -> None:
    _check_families(_of("collector"), collector_emitted)


def test_collector_series_exist_at_zero_from_start_up(collector_emitted: dict[str, Any]) -> None:
    """Alerts and dashboards see every series the model lists before the first event."""
    for metric in _of("collector"):
        family = collector_emitted[metric["prometheus"].removesuffix("_total")]
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        expected = set(itertools.product(*(metric[label] for label in metric["labels"])))
        seen = {tuple(s.labels[label] for label in metric["labels"]) for s in samples}
        assert seen == expected, metric["prometheus"]
        if metric["instrument"] == "counter":
            assert all(s.value == 0 for s in samples), metric["prometheus"]
    capacity = collector_emitted["otel_llm_collector_queue_capacity_bytes"].samples[0].value
    assert capacity == 1000  # the gauges read the live queue


def test_policy_metrics_are_those_of_the_model(tmp_path: Path) -> None:
    """Every family and label of the policies, with one policy of each kind of rule."""
    path = tmp_path / "policies.yaml"
    path.write_text(
        "policies:\n"
        "  - name: p\n    scope: '*'\n    action: block\n"
        "    budgets: [{window: day, usd: 1, tokens: 100}]\n"
        "    calls: {denied_models: ['x*']}\n"
    )
    registry = CollectorRegistry()
    CollectorPolicies.open(str(path)).register(registry)
    emitted = {f.name: f for f in registry.collect()}
    _check_families(_of("policies"), emitted)
    violations = emitted["otel_llm_policy_violations"].samples
    assert {(s.labels["rule"], s.value) for s in violations if s.name.endswith("_total")} == {
        ("day", 0),
        ("denied_models", 0),
    }


def test_call_log_metrics_are_those_of_the_model(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    store = open_store(str(tmp_path / "calls.db"))
    writer = CallLogWriter(store)
    try:
        register(writer, registry, store.daily_caps)
        emitted = {f.name: f for f in registry.collect()}
        _check_families(_of("call_log"), emitted)
        (folded,) = [m for m in _of("call_log") if m["labels"] == ["dimension"]]
        dimensions = [s.labels["dimension"] for s in emitted[folded["prometheus"][:-6]].samples]
        assert dimensions == folded["dimension"] == list(CAPPED)  # every series, from the start
    finally:
        writer.close(5)
        store.close()


def test_token_types_in_code_match_the_model() -> None:
    model = {m["prometheus"]: m for m in _load("metrics.yaml")["metrics"]}
    assert tuple(model[sc.PROM_TOKENS]["token_types"]) == sc.TOKEN_TYPES


def test_prometheus_names_are_the_otel_translation() -> None:
    units = {"s": "_seconds", "{token}": "", "USD": "_usd", "{operation}": "", "{attribute}": "",
             "{error}": "", "{span}": "", "{request}": "", "{batch}": "", "{call}": "",
             "{rollup}": "", "By": "_bytes", "{state}": "", "{alert}": ""}  # fmt: skip
    for metric in _load("metrics.yaml")["metrics"]:
        expected = metric["otel"].replace(".", "_") + units[metric["unit"]]
        if metric["instrument"] == "counter":
            expected += "_total"
        assert metric["prometheus"] == expected


def test_enforcement_metrics_are_those_of_the_model() -> None:
    enforcer = enforcement.Enforcer("svc")
    enforcer.update({"revision": 1, "policies": [{"name": "p", "scope": "*", "blocked": True}]})
    assert enforcer.check("openai", "m") is not None
    registry = CollectorRegistry()
    registry.register(EnforcementMetrics(enforcer))
    emitted = {f.name: f for f in registry.collect()}
    _check_families(_of("enforcement"), emitted)
    assert (
        registry.get_sample_value(
            "otel_llm_policy_enforcement_blocks_total", {"policy": "p", "rule": "budget"}
        )
        == 1
    )
