"""Pricer: one span, as the SDK holds it and as OTLP carries it, is the same priced call; the
options come from arguments, then settings, as every ``Setting`` does."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor
from otel_llm import _semconv as sc
from otel_llm.collector.otlp import attributes_of
from otel_llm.derive import Derived
from otel_llm.pricer import (
    OTLP_STATUS_CODE_ERROR,
    Pricer,
    PricingOptions,
    scope_name,
    span_attributes,
)
from otel_llm.pricing import Cost, PriceBook, PriceOverride, Unpriced

CHAT = {
    sc.GEN_AI_OPERATION_NAME: "chat",
    sc.GEN_AI_PROVIDER_NAME: "openai",
    sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
    sc.GEN_AI_USAGE_INPUT_TOKENS: 1200,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 400,
    "app.team": "search",
    "app.tags": ("a", "b"),
}
EXTRA = ("app.team", "app.tags", "app.absent")
T0 = 1_750_000_000 * 10**9


@pytest.fixture
def recorded() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def both_forms(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    attributes: dict[str, Any],
    *,
    failed: bool = False,
    scope: str = "app",
) -> tuple[Derived | None, Derived | None]:
    """One span priced as the SDK hands it on and as the SDK's own OTLP encoder sends it."""
    pricer = Pricer(PricingOptions(price_book=PriceBook(), extra_attributes=EXTRA))
    with provider.get_tracer(scope).start_as_current_span("chat gpt-4o-mini") as span:
        span.set_attributes(attributes)
        if failed:
            span.set_status(StatusCode.ERROR)
    (sdk_span,) = exporter.get_finished_spans()
    sdk = pricer.price_sdk_span(sdk_span, span_attributes(sdk_span), scope_name(sdk_span))

    (resource_spans,) = encode_spans([sdk_span]).resource_spans
    (scope_spans,) = resource_spans.scope_spans
    (otlp_span,) = scope_spans.spans
    otlp = pricer.price_otlp_span(
        otlp_span,
        attributes_of(otlp_span.attributes),
        scope_spans.scope.name or None,
        attributes_of(resource_spans.resource.attributes),
    )
    return sdk, otlp


def test_an_sdk_span_and_its_otlp_encoding_are_the_same_call(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    sdk, otlp = both_forms(*recorded, CHAT)
    assert sdk is not None
    assert otlp == sdk
    assert isinstance(sdk.priced, Cost)
    assert sdk.priced.amount > 0
    assert sdk.service_name == "checkout"
    assert sdk.extra == ("search", "('a', 'b')", "")
    assert sdk.error_type == ""
    assert sdk.trace_id != 0
    assert sdk.duration is not None


def test_a_failed_span_is_the_same_failed_call_in_both_forms(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    attributes = {key: value for key, value in CHAT.items() if "usage" not in key}
    sdk, otlp = both_forms(*recorded, attributes, failed=True)
    assert sdk is not None
    assert otlp == sdk
    assert sdk.error_type == "_OTHER"
    assert sdk.priced == Unpriced("failed_without_usage")


def test_a_span_that_is_no_llm_call_is_none_in_both_forms(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    assert both_forms(*recorded, {"http.request.method": "GET"}) == (None, None)


def test_the_otlp_error_code_is_the_protobuf_one() -> None:
    assert OTLP_STATUS_CODE_ERROR == Status.STATUS_CODE_ERROR


def test_importing_the_pricer_does_not_load_protobuf() -> None:
    # The processor imports the pricer, and ``import otel_llm`` the processor: an application
    # that never runs the collector must not pay for protobuf.
    code = "import sys, otel_llm.pricer; print('google.protobuf' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_each_resource_keeps_its_service_name_past_the_cache_bound() -> None:
    pricer = Pricer(PricingOptions(price_book=PriceBook()))
    spans = []
    for number in range(100):  # more resources than the cache holds
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": f"svc-{number}"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        provider.get_tracer("app").start_span("chat", attributes=CHAT).end()
        spans += exporter.get_finished_spans()
    for _ in range(2):  # the second round is served from the cache where it still holds
        names = [_price(pricer, span).service_name for span in spans]
        assert names == [f"svc-{number}" for number in range(100)]


def _price(pricer: Pricer, span: ReadableSpan) -> Derived:
    derived = pricer.price_sdk_span(span, span_attributes(span), scope_name(span))
    assert derived is not None
    return derived


# --- options ------------------------------------------------------------------------------------


def test_options_take_arguments_before_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_MAX_TOKENS", "5000")
    monkeypatch.setenv("OTEL_LLM_PRICE_CACHE_SIZE", "7")
    from_env = PricingOptions.from_settings(extra_attributes=iter(["a", "b"]))
    assert (from_env.max_tokens, from_env.price_cache_size) == (5000, 7)
    assert from_env.extra_attributes == ("a", "b")
    given = PricingOptions.from_settings(max_tokens=10, price_cache_size=3)
    assert (given.max_tokens, given.price_cache_size) == (10, 3)
    assert Pricer(given).max_tokens == 10


def test_a_bad_argument_falls_back_to_the_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_LLM_MAX_TOKENS", "5000")
    assert PricingOptions.from_settings(max_tokens=0).max_tokens == 5000
    assert "ignoring max_tokens=0" in caplog.text


def test_the_override_file_setting_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("overrides:\n  - match: prod-chat\n    alias: gpt-4o\n")
    monkeypatch.setenv("OTEL_LLM_PRICE_OVERRIDES", str(path))
    options = PricingOptions.from_settings()
    assert options.price_overrides == str(path)
    assert _priced_as_alias(Pricer(options))


def test_overrides_given_as_a_list_win_over_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_PRICE_OVERRIDES", "/nonexistent/prices.yaml")
    overrides = (PriceOverride(match="prod-chat", alias="gpt-4o"),)
    options = PricingOptions.from_settings(price_overrides=overrides)
    assert options.price_overrides == overrides
    assert _priced_as_alias(Pricer(options))


def test_an_unusable_override_file_is_reported_and_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("overrides: [{match: x}]\n")  # neither alias nor prices
    with caplog.at_level(logging.WARNING):
        pricer = Pricer(PricingOptions.from_settings(price_overrides=path))
    assert "price overrides not used" in caplog.text
    assert not _priced_as_alias(pricer)
    assert isinstance(_price_model(pricer, "gpt-4o-mini"), Cost)  # genai-prices' data


def test_a_ready_book_is_used_and_the_book_settings_are_not_read(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_LLM_PRICE_OVERRIDES", "/nonexistent/prices.yaml")
    monkeypatch.setenv("OTEL_LLM_PRICE_CACHE_SIZE", "not a number")
    book = PriceBook()
    with caplog.at_level(logging.WARNING):
        pricer = Pricer(PricingOptions.from_settings(price_book=book))
    assert pricer.book is book
    assert caplog.text == ""


def test_no_options_means_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_MAX_TOKENS", "1234")
    assert Pricer().max_tokens == 1234


def test_the_processor_prices_with_the_labels_its_registry_fixed() -> None:
    registry = CollectorRegistry()
    LLMSpanProcessor(registry=registry, extra_labels={"team": "app.team"})
    second = LLMSpanProcessor(registry=registry, extra_labels={"feature": "app.feature"})
    assert second.pricer.extra_attributes == ("app.team",)
    assert second.pricer.book is second.price_book


def _priced_as_alias(pricer: Pricer) -> bool:
    alias, model = _price_model(pricer, "prod-chat"), _price_model(pricer, "gpt-4o")
    return isinstance(alias, Cost) and isinstance(model, Cost) and alias.amount == model.amount


def _price_model(pricer: Pricer, model: str) -> Cost | Unpriced:
    attributes = {**CHAT, sc.GEN_AI_REQUEST_MODEL: model}
    span = Span(name="chat", start_time_unix_nano=T0, end_time_unix_nano=T0 + 10**9)
    derived = pricer.price_otlp_span(span, attributes, None, {})
    assert derived is not None
    assert derived.priced == pricer.book.price(derived.call, derived.start_time_ns)
    return derived.priced
