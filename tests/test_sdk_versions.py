"""configure() on the oldest and the newest opentelemetry-sdk this package supports.

configure() reaches into SDK internals (``TracerProvider._active_span_processor``, a
``SynchronousMultiSpanProcessor`` with a ``_span_processors`` tuple and a ``_lock``) to put the
``LLMSpanProcessor`` in front of the provider's processors. Private attributes can change in any
release, so each SDK line of the matrix gets a virtualenv of its own -- the SDK, its exporters and
instrumentation at matching versions, the rest of the runtime dependencies from pyproject.toml,
this working tree installed editable -- and a script run there checks that:

- exported spans carry ``gen_ai.usage.cost.amount``;
- when the internals are not what configure() expects, it warns and records metrics only.

The virtualenvs live under ``.venvs/sdk-<version>`` at the repository root (``OTEL_LLM_SDK_VENVS``
names another folder), built by tests/support/venvs.py. The first run builds them from the package
index (some 20 s each); later runs reuse a virtualenv as long as its marker file records the exact
same install commands, Python, source tree and package metadata, and rebuild it otherwise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.venvs import (
    ROOT,
    clean_environment,
    ensure_venv,
    pyproject,
    run_script,
    venv_python,
)

SCRIPT_TIMEOUT = 120


@dataclass(frozen=True)
class SdkLine:
    """One opentelemetry-python release and the versions that go with it."""

    sdk: str  # opentelemetry-api, -sdk, -proto and the OTLP exporters share this version
    instrumentation: str  # the contrib release of the same train (1.30.0 -> 0.51b0)
    protobuf: str  # the range opentelemetry-proto at ``sdk`` accepts


# The oldest line pyproject.toml declares (opentelemetry-sdk>=1.30; 1.30.0 is the only 1.30.x)
# and the newest on the package index when this was written: bump it with each SDK release.
SDK_LINES = [
    SdkLine(sdk="1.30.0", instrumentation="0.51b0", protobuf=">=5,<6"),
    SdkLine(sdk="1.45.2", instrumentation="0.66b2", protobuf=">=5,<8"),
]

# Released together, always at the SDK's own version.
SDK_DISTRIBUTIONS = (
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-proto",
)

# gpt-4o-mini: USD 0.15 per million input tokens, 0.60 per million output tokens.
EXPECTED_COST = (1000 * 0.15 + 200 * 0.6) / 1e6


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"cannot read a distribution name from {requirement!r}"
    return _canonical(match.group(1))


def requirements_for(line: SdkLine) -> list[str]:
    """pyproject.toml's runtime dependencies with the SDK line's versions put in."""
    declared: list[str] = pyproject()["project"]["dependencies"]
    pins = {name: f"{name}=={line.sdk}" for name in SDK_DISTRIBUTIONS}
    pins["opentelemetry-instrumentation"] = f"opentelemetry-instrumentation=={line.instrumentation}"
    requirements = []
    for requirement in declared:
        name = _requirement_name(requirement)
        if name in pins:
            requirements.append(pins.pop(name))
        elif name == "protobuf":
            requirements.append(f"{requirement.strip()},{line.protobuf}")
        else:
            requirements.append(requirement.strip())
    requirements.extend(pins.values())  # any the pyproject does not name (yet)
    return requirements


def ensure_sdk_venv(line: SdkLine) -> Path:
    """The virtualenv for ``line``: the pinned requirements, then this tree editable."""
    return ensure_venv(
        f"sdk-{line.sdk}",
        [requirements_for(line), ["--no-deps", "-e", str(ROOT)]],
        label=f"opentelemetry-sdk {line.sdk}",
    )


# Run in the SDK line's virtualenv with -I: otel_llm must come from its editable install, the
# SDK from that virtualenv, nothing from the test's own interpreter.
SCRIPT = r"""
import json
import logging
from importlib.metadata import version

from opentelemetry.sdk.trace import ConcurrentMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import otel_llm


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def run_case(provider):
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    warnings = Warnings()
    logging.getLogger("otel_llm").addHandler(warnings)
    try:
        processor = otel_llm.configure(tracer_provider=provider, registry=registry)
        again = otel_llm.configure(tracer_provider=provider, registry=registry)
    finally:
        logging.getLogger("otel_llm").removeHandler(warnings)
    with otel_llm.llm_call(
        provider="openai", model="gpt-4o-mini", tracer_provider=provider
    ) as handle:
        handle.set_usage(input_tokens=1000, output_tokens=200)
    provider.force_flush()
    spans = [
        {"name": span.name, "attributes": dict(span.attributes or {})}
        for span in exporter.get_finished_spans()
    ]
    metric_cost = sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "gen_ai_client_cost_usd_total"
    )
    provider.shutdown()
    return {
        "processor": type(processor).__name__,
        "configured_once": again is processor,
        "downstream": [type(p).__name__ for p in processor.downstream],
        "warnings": warnings.messages,
        "spans": spans,
        "metric_cost": metric_cost,
    }


def concurrent_provider():
    # The SDK's own alternative to SynchronousMultiSpanProcessor, a constructor argument.
    multi = ConcurrentMultiSpanProcessor(num_threads=2)
    return TracerProvider(active_span_processor=multi), multi


def changed_internals_provider():
    # An SDK that keeps its processors in another shape: it still works, configure() must not
    # touch it.
    provider = TracerProvider()
    multi = provider._active_span_processor
    multi._span_processors = list(multi._span_processors)
    return provider


cases = {"supported": run_case(TracerProvider())}
provider, multi = concurrent_provider()
cases["concurrent"] = run_case(provider)
multi._executor.shutdown(wait=True)
cases["changed_internals"] = run_case(changed_internals_provider())

print(json.dumps({
    "versions": {
        name: version(name)
        for name in (
            "opentelemetry-api",
            "opentelemetry-sdk",
            "opentelemetry-proto",
            "opentelemetry-exporter-otlp-proto-grpc",
            "opentelemetry-exporter-otlp-proto-http",
            "opentelemetry-instrumentation",
            "protobuf",
        )
    },
    "otel_llm": otel_llm.__file__,
    "cases": cases,
}))
"""


@pytest.fixture(scope="module", params=SDK_LINES, ids=lambda line: f"sdk-{line.sdk}")
def report(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SdkLine, dict[str, Any]]:
    line: SdkLine = request.param
    python = venv_python(ensure_sdk_venv(line))
    stdout = run_script(
        python,
        SCRIPT,
        label=f"opentelemetry-sdk {line.sdk}",
        cwd=tmp_path_factory.mktemp(f"sdk-{line.sdk}"),
        env=clean_environment(),
        timeout=SCRIPT_TIMEOUT,
    )
    return line, json.loads(stdout.strip().splitlines()[-1])


def test_the_virtualenv_runs_the_intended_versions(report: tuple[SdkLine, dict[str, Any]]) -> None:
    line, result = report
    versions = result["versions"]
    for name in SDK_DISTRIBUTIONS:
        assert versions[name] == line.sdk, f"opentelemetry-sdk {line.sdk}: {name} {versions[name]}"
    assert versions["opentelemetry-instrumentation"] == line.instrumentation, (
        f"opentelemetry-sdk {line.sdk}: instrumentation {versions['opentelemetry-instrumentation']}"
    )
    # The working tree under test, not a copy installed from somewhere else.
    assert Path(result["otel_llm"]).resolve() == ROOT / "otel_llm" / "__init__.py", (
        f"opentelemetry-sdk {line.sdk}: otel_llm imported from {result['otel_llm']}"
    )


def test_configure_prices_exported_spans(report: tuple[SdkLine, dict[str, Any]]) -> None:
    line, result = report
    case = result["cases"]["supported"]
    where = f"opentelemetry-sdk {line.sdk}"
    assert case["warnings"] == [], f"{where}: configure() warned: {case['warnings']}"
    assert case["processor"] == "LLMSpanProcessor", f"{where}: configure() gave {case}"
    assert case["configured_once"], f"{where}: a second configure() attached another processor"
    assert case["downstream"] == ["SimpleSpanProcessor"], (
        f"{where}: the provider's exporting processor was not put behind LLMSpanProcessor: {case}"
    )
    assert [span["name"] for span in case["spans"]] == ["chat gpt-4o-mini"], f"{where}: {case}"
    attributes = case["spans"][0]["attributes"]
    assert attributes.get("gen_ai.usage.cost.amount") == pytest.approx(EXPECTED_COST), (
        f"{where}: the exported span has no cost (or the wrong one): {attributes}"
    )
    assert attributes.get("gen_ai.usage.cost.source") == "local", f"{where}: {attributes}"
    assert case["metric_cost"] == pytest.approx(EXPECTED_COST), (
        f"{where}: the cost counter says {case['metric_cost']}, once per call expected"
    )


@pytest.mark.parametrize("case_name", ["concurrent", "changed_internals"])
def test_unsupported_internals_degrade_to_metrics_only(
    report: tuple[SdkLine, dict[str, Any]], case_name: str
) -> None:
    line, result = report
    case = result["cases"][case_name]
    where = f"opentelemetry-sdk {line.sdk}, {case_name}"
    assert case["processor"] == "LLMSpanProcessor", f"{where}: configure() gave {case}"
    assert case["configured_once"], f"{where}: a second configure() attached another processor"
    assert case["downstream"] == [], f"{where}: configure() wrapped processors anyway: {case}"
    assert len(case["warnings"]) == 1, f"{where}: one warning expected: {case['warnings']}"
    assert "cannot be wrapped" in case["warnings"][0], f"{where}: {case['warnings']}"
    # The span is still exported, unpriced; the metrics still count the call, once.
    assert [span["name"] for span in case["spans"]] == ["chat gpt-4o-mini"], f"{where}: {case}"
    attributes = case["spans"][0]["attributes"]
    assert attributes.get("gen_ai.usage.input_tokens") == 1000, f"{where}: {attributes}"
    assert not any(name.startswith(("gen_ai.usage.cost.", "otel_llm.")) for name in attributes), (
        f"{where}: the exported span was priced although it could not be: {attributes}"
    )
    assert case["metric_cost"] == pytest.approx(EXPECTED_COST), (
        f"{where}: the cost counter says {case['metric_cost']}"
    )
