"""Shared fixtures: the real SDK TracerProvider, an in-memory exporter and a fresh registry."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor
from tests.support import markers
from tests.support.collector_process import CollectorProcess
from tests.support.fake_llm import FakeLLMServer
from tests.support.instrumentors import SDK
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.pipeline import Pipeline


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the markers it adds
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers from what each test uses (tests/support/markers.py): ``-m "not slow"`` etc."""
    markers.apply(items)


_STATE_HOME = tempfile.mkdtemp(prefix="otel-llm-state-")


def pytest_configure(config: pytest.Config) -> None:
    # The collector keeps its queue and call log under $XDG_STATE_HOME by default (computed when
    # a setting is read): the tests, and the services they start as subprocesses, get a private
    # state directory, never the developer's home.
    os.environ["XDG_STATE_HOME"] = _STATE_HOME


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_STATE_HOME, ignore_errors=True)


@pytest.fixture
def clean_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exporters, span limits and configure() read OTEL_* variables; the developer's own must
    not leak into the tests."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    """A real OTLP receiver (gRPC and HTTP) on 127.0.0.1."""
    with OTLPReceiver() as started:
        yield started


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    """A local OpenAI + Anthropic HTTP server (tests/support/fake_llm.py), one per test module."""
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def pipeline(registry: CollectorRegistry) -> Iterator[Pipeline]:
    exporter = InMemorySpanExporter()
    processor = LLMSpanProcessor(SimpleSpanProcessor(exporter), registry=registry)
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(processor)
    yield Pipeline(provider, exporter, registry, processor)
    provider.shutdown()


@pytest.fixture
def collectors() -> Iterator[list[CollectorProcess]]:
    """``otel-llm collector`` processes a test starts (it appends them); killed at its end."""
    started: list[CollectorProcess] = []
    yield started
    for collector in started:
        collector.kill()


# --- the instrumentor tests' fixtures: a test module names its SDK with an ``sdk`` fixture ------


@pytest.fixture
def fake(server: FakeLLMServer, sdk: SDK) -> Iterator[FakeLLMServer]:
    """The module's fake server, with no scripted answers or recorded requests left over."""
    server.clear()
    if sdk.default is not None:
        server.default = sdk.default
    yield server
    server.clear()


@pytest.fixture
def traced(pipeline: Pipeline, sdk: SDK) -> Iterator[Pipeline]:
    """``pipeline`` with the SDK instrumented for the test."""
    instrumentor = sdk.instrument(pipeline)
    yield pipeline
    instrumentor.uninstrument()


@pytest.fixture
def client(fake: FakeLLMServer, sdk: SDK) -> Iterator[Any]:
    with sdk.client(fake) as started:
        yield started


@pytest.fixture
def async_client(fake: FakeLLMServer, sdk: SDK) -> Any:
    return sdk.async_client(fake)
