"""Billing: credits (a gateway billed the call) vs own keys, and discounts off list prices.

Exact throughout: a discounted cost is the list cost times the fraction paid, as Decimals and
in the stored integer nano-USD; stats' credits/own-key split, list-price comparison and
discount savings equal the sums of the stored calls, on SQLite and a real PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor, llm_call, llm_context
from otel_llm import _semconv as sc
from otel_llm.calllog.exporter import CallLogExporter
from otel_llm.calllog.query import CallFilter, CallQuery, StatsQuery
from otel_llm.calllog.record import to_nanos
from otel_llm.calllog.store import open_store
from otel_llm.pricer import Pricer, PricingOptions
from otel_llm.pricing import Billing, Cost, Discount, OverrideError, PriceBook, load_price_rules
from otel_llm.pricing.billing import discounted
from tests.support.pipeline import chat_labels, counter_total
from tests.support.postgres import pg_cluster, store_url  # noqa: F401 - fixtures
from tests.test_pricing import START_NS, make_call

PLAIN = PriceBook()
PARTS = ("amount", "input", "cache_read", "cache_write", "output", "request")


def _list_price(call: Any) -> Cost:
    cost = PLAIN.price(call, START_NS)
    assert isinstance(cost, Cost), cost
    return cost


def _bill(
    book: PriceBook, call: Any, attributes: dict[str, Any] | None = None
) -> tuple[Cost, Billing | None]:
    effective, billing = book.bill(call, START_NS, book.price(call, START_NS), attributes or {})
    assert isinstance(effective, Cost), effective
    return effective, billing


# --- discounts ----------------------------------------------------------------------------------


def test_a_model_discount_beats_a_provider_discount_and_both_are_exact() -> None:
    book = PriceBook([Discount("10%", provider="openai"), Discount(0.2, model="gpt-4o")])
    for model, paid in (("gpt-4o", Decimal("0.8")), ("gpt-4o-mini", Decimal("0.9"))):
        call = make_call(model, input_tokens=123_457, output_tokens=9_876, cache_read=1_111)
        listed = _list_price(call)
        effective, billing = _bill(book, call)
        for part in PARTS:
            assert getattr(effective, part) == getattr(listed, part) * paid, (model, part)
        assert effective.units is not None  # still the integer path
        assert billing == Billing("own_key", listed, discounted=True)
        assert effective.price_data.endswith(f"{(1 - paid) * 100:.0f}% discount")


def test_a_discount_by_hand() -> None:
    """gpt-4o-mini (0.15 / 0.60 USD per million, copied by hand): 1,000 in + 100 out is
    0.00021 at list price; 10 % off is 0.000189."""
    book = PriceBook([Discount("10%", provider="openai")])
    effective, billing = _bill(book, make_call("gpt-4o-mini", input_tokens=1000, output_tokens=100))
    assert effective.amount == Decimal("0.000189")
    assert billing is not None
    assert billing.list_cost is not None
    assert billing.list_cost.amount == Decimal("0.00021")


@pytest.mark.parametrize(
    ("model", "provider", "project", "fraction"),
    [
        ("claude-sonnet-4-5", "anthropic", None, "0.05"),  # global
        ("gpt-4o-mini", "openai", None, "0.1"),  # provider
        ("gpt-4o", "openai", None, "0.2"),  # model
        ("gpt-4o-mini", "openai", "research", "0.25"),  # project beats provider
        ("gpt-4o", "openai", "research", "0.3"),  # project + model beats project
        ("gpt-4o", "openai", "other", "0.2"),  # another project: the model's
        ("gpt-4o-2024-08-06", "openai", None, "0.2"),  # matched by the price data's model id
    ],
)
def test_the_most_specific_discount_applies(
    model: str, provider: str, project: str | None, fraction: str
) -> None:
    # Listed least specific first: the file's order does not decide, specificity does.
    book = PriceBook(
        [
            Discount("5%"),
            Discount("10%", provider="openai"),
            Discount("20%", model="gpt-4o"),
            Discount("25%", project="research"),
            Discount("30%", project="research", model="gpt-4o"),
        ]
    )
    call = make_call(model, provider)
    attributes = {sc.OTEL_LLM_CONTEXT_PROJECT_ID: project} if project else {}
    for _ in range(2):  # the second from the caches
        effective, _billing = _bill(book, call, attributes)
        assert effective.amount == _list_price(call).amount * (1 - Decimal(fraction))


def test_a_decimal_cost_is_discounted_exactly() -> None:
    cost = Cost(
        Decimal("0.1234567890123456789012345678"),
        "local",
        "tiered",
        input=Decimal("0.1234567890123456789012345678"),
        output=Decimal(0),
    )
    rule = Discount("12.5%")
    result = discounted(cost, rule)
    # By hand: 31 significant digits, which Decimal's default 28-digit context would round.
    assert result.amount == Decimal("0.108024690385802469038580246825")
    assert result.output == 0
    assert result.cache_read is None
    assert result.price_data == "tiered - 12.5% discount"


def test_no_discount_and_a_zero_discount_change_nothing() -> None:
    call = make_call("gpt-4o")
    assert not PLAIN.bills
    assert PLAIN.bill(call, START_NS, PLAIN.price(call, START_NS), {}) == (_list_price(call), None)
    book = PriceBook([Discount(0)])
    assert _bill(book, call) == (_list_price(call), None)
    free, billing = _bill(PriceBook([Discount("100%")]), call)
    assert free.amount == 0
    assert billing is not None
    assert billing.list_cost == _list_price(call)


def test_discounts_are_read_from_the_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "overrides:\n"
        "  - match: prod-chat\n"
        "    alias: gpt-4o\n"
        "discounts:\n"
        "  - discount: 20%\n"
        "    model: gpt-4o\n"
        "  - discount: 0.1\n"
        "    provider: openai\n"
        "  - discount: '7.5%'\n"
        "    project: research\n"
        "    provider: openai\n",
        encoding="utf-8",
    )
    rules = load_price_rules(path)
    discounts = [rule for rule in rules if isinstance(rule, Discount)]
    assert [(d.fraction, d.model, d.provider, d.project) for d in discounts] == [
        (Decimal("0.2"), "gpt-4o", None, None),
        (Decimal("0.1"), None, "openai", None),
        (Decimal("0.075"), None, "openai", "research"),
    ]
    pricer = Pricer(PricingOptions.from_settings(price_overrides=str(path)))
    effective, _billing = _bill(pricer.book, make_call("prod-chat"))
    assert effective.amount == _list_price(make_call("gpt-4o")).amount * Decimal("0.8")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{discount: 1.5}", "between 0 and 1"),
        ("{discount: '120%'}", "between 0 and 1"),
        ("{discount: '-5%'}", "between 0 and 1"),
        ("{discount: lots}", "'lots' is not a fraction"),
        ("{discount: true}", "must be a fraction"),
        ("{discount: .nan}", "must be finite"),
        ("{discount: 0.0000000000001}", "more than 12 decimal places"),
        ("{model: gpt-4o}", "needs 'discount'"),
        ("{discount: 0.1, team: x}", "unknown field(s) team"),
        ("{discount: 0.1, model: 4}", "'model' must be a string"),
    ],
)
def test_a_bad_discount_is_refused_naming_it(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(f"discounts:\n  - {entry}\n", encoding="utf-8")
    with pytest.raises(OverrideError) as caught:
        load_price_rules(path)
    assert message in str(caught.value)
    assert "discounts entry 0" in str(caught.value)


# --- credits vs own keys ------------------------------------------------------------------------


def test_a_provider_reported_cost_is_credits_with_its_list_price() -> None:
    call = make_call(
        "openai/gpt-4o", "openrouter", input_tokens=5_000, provider_cost=Decimal("0.0321")
    )
    effective, billing = _bill(PriceBook(), call)
    assert effective.amount == Decimal("0.0321")  # what the gateway billed, never discounted
    list_call = make_call("openai/gpt-4o", "openrouter", input_tokens=5_000)
    assert billing == Billing("credits", _list_price(list_call))
    # A discount does not touch a billed cost.
    assert _bill(PriceBook([Discount("50%")]), call)[0].amount == Decimal("0.0321")


def test_an_unknown_list_price_stays_unknown() -> None:
    call = make_call("mystery-9", "openrouter", provider_cost=Decimal("0.5"))
    assert _bill(PriceBook(), call)[1] == Billing("credits", None)


def test_gateways_by_provider_and_by_host() -> None:
    book = PriceBook(gateways=["openrouter", "proxy.example.com"])
    assert book.bills
    direct = make_call("gpt-4o")
    assert _bill(book, direct) == (_list_price(direct), None)
    routed = make_call("openai/gpt-4o", "openrouter")
    assert _bill(book, routed)[1] == Billing("credits", _list_price(routed))
    for host in ("proxy.example.com", "eu.proxy.example.com", "EU.Proxy.Example.com."):
        billing = _bill(book, direct, {sc.SERVER_ADDRESS: host})[1]
        assert billing == Billing("credits", _list_price(direct)), host
    for host in ("example.com", "proxy.example.com.evil.net", "notproxy.example.com"):
        assert _bill(book, direct, {sc.SERVER_ADDRESS: host})[1] is None, host


def test_the_context_overrides_the_inferred_mode() -> None:
    reported = make_call("openai/gpt-4o", "openrouter", provider_cost=Decimal("0.01"))
    own = {sc.OTEL_LLM_CONTEXT_BILLING: "own_key"}
    billing = _bill(PriceBook(), reported, own)[1]
    assert billing is None  # own key and no discount: the plain case
    credits = {sc.OTEL_LLM_CONTEXT_BILLING: "credits"}
    direct = make_call("gpt-4o")
    assert _bill(PriceBook(), direct, credits)[1] == Billing("credits", _list_price(direct))
    ignored = {sc.OTEL_LLM_CONTEXT_BILLING: "free-lunch"}
    assert _bill(PriceBook(), direct, ignored)[1] is None


# --- on spans and metrics (the real SDK) -------------------------------------------------------


class App:
    """LLMSpanProcessor -> (memory, call log), with a book of discounts and a gateway."""

    def __init__(self, store: str) -> None:
        self.book = PriceBook(
            [Discount("10%", provider="openai"), Discount("20%", model="gpt-4o")],
            gateways=["openrouter", "llm-proxy.corp.example"],
        )
        self.registry = CollectorRegistry()
        self.memory = InMemorySpanExporter()
        self.calls = CallLogExporter(
            store, price_book=self.book, flush_interval=0.05, retention_interval=0
        )
        self.processor = LLMSpanProcessor(
            SimpleSpanProcessor(self.memory),
            SimpleSpanProcessor(self.calls),
            registry=self.registry,
            price_book=self.book,
        )
        self.provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("other.instrumentation")
        self.start_ns = time.time_ns() - 3_600 * 10**9

    def span(self, provider: str, model: str, tokens: tuple[int, int], **more: Any) -> None:
        attributes = {
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_PROVIDER_NAME: provider,
            sc.GEN_AI_REQUEST_MODEL: model,
            sc.GEN_AI_USAGE_INPUT_TOKENS: tokens[0],
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: tokens[1],
            **more,
        }
        self.start_ns += 10**9
        span = self.tracer.start_span(
            "chat", kind=SpanKind.CLIENT, attributes=attributes, start_time=self.start_ns
        )
        span.end(end_time=self.start_ns + 5 * 10**8)


@pytest.fixture
def app(store_url: str) -> Iterator[App]:  # noqa: F811 - the fixture it uses
    started = App(store_url)
    try:
        yield started
    finally:
        started.provider.shutdown()


def test_spans_and_metrics_carry_the_effective_cost() -> None:
    registry = CollectorRegistry()
    memory = InMemorySpanExporter()
    book = PriceBook([Discount("10%", provider="openai")])
    processor = LLMSpanProcessor(SimpleSpanProcessor(memory), registry=registry, price_book=book)
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(processor)
    try:
        with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as call:
            call.set_usage(input_tokens=1000, output_tokens=100)
        with (
            llm_context(billing="credits"),
            llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=provider) as call,
        ):
            call.set_usage(input_tokens=1000, output_tokens=100)
        own, credits = memory.get_finished_spans()
        for span in (own, credits):
            assert span.attributes is not None
            assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == 0.000189
            assert span.attributes[sc.OTEL_LLM_COST_LIST_AMOUNT] == 0.00021
        assert own.attributes is not None
        assert credits.attributes is not None
        assert own.attributes[sc.OTEL_LLM_BILLING] == "own_key"
        assert credits.attributes[sc.OTEL_LLM_BILLING] == "credits"
        labels = chat_labels()
        assert registry.get_sample_value(sc.PROM_COST, labels) == pytest.approx(2 * 0.000189)
    finally:
        provider.shutdown()


def test_a_plain_span_carries_no_billing_attributes(pipeline: Any) -> None:
    with llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider) as c:
        c.set_usage(input_tokens=1000, output_tokens=100)
    (span,) = pipeline.spans()
    assert sc.OTEL_LLM_BILLING not in span.attributes
    assert sc.OTEL_LLM_COST_LIST_AMOUNT not in span.attributes


# --- the call log: stored calls and stats (SQLite and PostgreSQL) -------------------------------


def _feed(app: App) -> None:
    """Own-key calls with a model (20 %) and a provider (10 %) discount, an undiscounted one,
    an unpriced one; credits calls through a gateway provider (reported cost, list price known
    or not) and through a gateway host (priced locally, discounted)."""
    for index in range(3):
        app.span("openai", "gpt-4o", (1_001 + index, 333))
        app.span("openai", "gpt-4o-mini", (12_345, 678 + index))
    app.span("anthropic", "claude-sonnet-4-5", (4_000, 500))
    app.span("anthropic", "no-such-model-7", (10, 10))
    app.span("openrouter", "openai/gpt-4o", (2_000, 100), **{sc.USAGE_COST: 0.0071})
    app.span("openrouter", "openai/gpt-4o-mini", (3_000, 300), **{sc.USAGE_COST: 0.00093})
    app.span("openrouter", "mystery/model-x", (100, 100), **{sc.USAGE_COST: 0.25})
    app.span("openai", "gpt-4o", (800, 80), **{sc.SERVER_ADDRESS: "eu.llm-proxy.corp.example"})
    with llm_context(billing="credits"):
        app.span("anthropic", "claude-sonnet-4-5", (100, 10))
    app.provider.shutdown()


def _sum(values: list[Decimal | None]) -> Decimal:
    return sum((value for value in values if value is not None), Decimal(0))


def test_the_call_log_splits_credits_from_own_keys_and_sums_discounts(
    app: App,
    store_url: str,  # noqa: F811
) -> None:
    _feed(app)
    store = open_store(store_url)
    try:
        fields = (
            "provider",
            "model",
            "billing",
            "cost",
            "list_cost",
            "discount",
            "cost_source",
            "input_tokens",
            "output_tokens",
        )
        calls = store.list(CallQuery(limit=100, select=fields)).calls
        assert len(calls) == 13
        by_model: dict[str, list[dict[str, Any]]] = {}
        for call in calls:
            by_model.setdefault(call["model"], []).append(call)

        # Each call: its list cost, and its effective cost the discounted list cost, exactly
        # (rounded once to the stored nano-USD).
        for model, paid in (("gpt-4o", Decimal("0.8")), ("gpt-4o-mini", Decimal("0.9"))):
            assert by_model[model]
            for call in by_model[model]:
                tokens = {
                    "input_tokens": call["input_tokens"],
                    "output_tokens": call["output_tokens"],
                }
                listed = _list_price(make_call(model, **tokens)).amount
                assert call["list_cost"] == _nano(listed)
                assert call["cost"] == _nano(listed * paid)
                assert call["discount"] == call["list_cost"] - call["cost"] > 0
        for call in by_model["claude-sonnet-4-5"]:
            assert call["discount"] == 0
            assert call["list_cost"] == call["cost"]
        (unpriced,) = by_model["no-such-model-7"]
        assert unpriced["cost"] is None
        assert unpriced["list_cost"] is None
        assert unpriced["billing"] == "own_key"
        (mystery,) = by_model["mystery/model-x"]
        assert mystery["billing"] == "credits"
        assert mystery["cost"] == Decimal("0.25")
        assert mystery["list_cost"] is None  # unknown, never 0
        routed = by_model["openai/gpt-4o"][0]
        assert routed["cost_source"] == "provider"
        assert routed["billing"] == "credits"
        assert routed["list_cost"] == _nano(
            _list_price(
                make_call("openai/gpt-4o", "openrouter", input_tokens=2_000, output_tokens=100)
            ).amount
        )

        credits = [call for call in calls if call["billing"] == "credits"]
        own = [call for call in calls if call["billing"] == "own_key"]
        assert len(credits) == 5
        assert len(own) == 8
        expected = {
            "billing_mode": "hybrid",
            "credits_requests": 5,
            "own_key_requests": 8,
            "credits_cost": _sum([call["cost"] for call in credits]),
            "own_key_cost": _sum([call["cost"] for call in own]),
            "credits_list_cost": _sum([call["list_cost"] for call in credits]),
            "credits_list_unknown_requests": 1,
            "own_key_savings": None,  # one credits call's list price is unknown
            "discount_savings": _sum([call["discount"] for call in calls]),
        }
        assert expected["discount_savings"] > 0
        # From the day before the calls' (an hour ago: yesterday, just after midnight UTC).
        since = datetime.fromtimestamp(time.time() - 2 * 3_600, UTC)
        for group_by in (None, "hour", "day"):
            answer = store.stats(StatsQuery(group_by=group_by, filter=CallFilter(start=since)))
            stats = answer["stats"]
            assert {key: stats[key] for key in expected} == expected, group_by
            assert stats["total_cost"] == expected["credits_cost"] + expected["own_key_cost"]
        # The tables by status, user and API key sum billing too: their groups add up to it.
        summed = ("credits_requests", "own_key_requests", "credits_list_unknown_requests")
        summed += ("credits_cost", "own_key_cost", "credits_list_cost", "discount_savings")
        for group_by in ("status", "user", "api_key"):
            answer = store.stats(StatsQuery(group_by=group_by, filter=CallFilter(start=since)))
            assert answer["groups"], group_by
            for key in summed:
                total = sum(group[key] or 0 for group in answer["groups"])
                assert total == expected[key], (group_by, key)
        succeeded = store.stats(StatsQuery(filter=CallFilter(start=since, status="success")))
        assert {key: succeeded["stats"][key] for key in expected} == expected  # none failed

        groups = {
            group["group"]: group
            for group in store.stats(StatsQuery(group_by="provider"))["groups"]
        }
        assert groups["openrouter"]["billing_mode"] == "credits"
        assert groups["openai"]["billing_mode"] == "hybrid"
        assert groups["anthropic"]["billing_mode"] == "hybrid"
        openrouter = [call for call in calls if call["provider"] == "openrouter"]
        assert groups["openrouter"]["credits_cost"] == _sum([c["cost"] for c in openrouter])
        assert groups["openrouter"]["own_key_cost"] == 0
        # The gateway host's call: credits, priced locally, discounted 20 %.
        openai_credits = [c for c in calls if c["provider"] == "openai" and c in credits]
        (proxied,) = openai_credits
        assert groups["openai"]["credits_cost"] == proxied["cost"]
        assert groups["openai"]["credits_list_cost"] == proxied["list_cost"]
        assert groups["openai"]["own_key_savings"] == proxied["cost"] - proxied["list_cost"]
        assert groups["openai"]["discount_savings"] == _sum(
            [c["discount"] for c in calls if c["provider"] == "openai"]
        )
        # Filtered to own-key-only data: the mode says so.
        only = store.stats(StatsQuery(filter=CallFilter(model="claude-sonnet-4-5")))["stats"]
        assert only["billing_mode"] == "hybrid"  # the overridden call is credits
        gpt = store.stats(StatsQuery(filter=CallFilter(model="gpt-4o-mini")))["stats"]
        assert gpt["billing_mode"] == "own_key"
        assert gpt["credits_cost"] == 0
        assert gpt["credits_list_cost"] == 0
        assert gpt["own_key_savings"] is None
    finally:
        store.close()


def _nano(amount: Decimal) -> Decimal:
    return Decimal(to_nanos(amount)).scaleb(-9)


def test_the_gateways_setting(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    from otel_llm import settings

    env = {"OTEL_LLM_BILLING_GATEWAYS": " openrouter , llm-proxy.example.com ,"}
    assert settings.BILLING_GATEWAYS.resolve(None, env) == ("openrouter", "llm-proxy.example.com")
    assert settings.BILLING_GATEWAYS.resolve(None, {"OTEL_LLM_BILLING_GATEWAYS": "a b"}) == ()
    assert "OTEL_LLM_BILLING_GATEWAYS" in caplog.text
    monkeypatch.setenv("OTEL_LLM_BILLING_GATEWAYS", "openrouter")
    pricer = Pricer(PricingOptions.from_settings())
    assert pricer.book.bills
    routed = make_call("openai/gpt-4o", "openrouter")
    assert _bill(pricer.book, routed)[1] == Billing("credits", _list_price(routed))


GATEWAY_CALL = {
    sc.GEN_AI_OPERATION_NAME: "chat",
    sc.GEN_AI_PROVIDER_NAME: "openai",
    sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
    sc.GEN_AI_USAGE_INPUT_TOKENS: 1000,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: 100,
    sc.SERVER_ADDRESS: "llm.corp.example",
}
"""The span attributes of a call through the gateway ``corp.example``, priced in process and in
the collector alike."""


def test_the_processor_takes_the_gateways_as_a_keyword() -> None:
    memory = InMemorySpanExporter()
    processor = LLMSpanProcessor(
        SimpleSpanProcessor(memory), registry=CollectorRegistry(), billing_gateways=["corp.example"]
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    try:
        tracer = provider.get_tracer("other.instrumentation")
        tracer.start_span("chat", kind=SpanKind.CLIENT, attributes=GATEWAY_CALL).end()
        (span,) = memory.get_finished_spans()
        assert span.attributes is not None
        assert span.attributes[sc.OTEL_LLM_BILLING] == "credits"
        assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == 0.00021
        assert span.attributes[sc.OTEL_LLM_COST_LIST_AMOUNT] == 0.00021
    finally:
        provider.shutdown()


def test_hostile_billing_values_are_ignored() -> None:
    book = PriceBook(gateways=["proxy.example.com"])
    direct = make_call("gpt-4o")
    for attributes in (
        {sc.SERVER_ADDRESS: 42},
        {sc.SERVER_ADDRESS: ""},
        {sc.SERVER_ADDRESS: "." * 10},
        {sc.OTEL_LLM_CONTEXT_BILLING: ["credits"]},
        {sc.OTEL_LLM_CONTEXT_BILLING: 1},
    ):
        assert _bill(book, direct, attributes)[1] is None, attributes
    dots = "a." * 500_000 + "proxy.example.com"  # 1 MB, half a million labels
    billing = _bill(book, direct, {sc.SERVER_ADDRESS: dots})[1]
    assert billing is not None
    assert billing.mode == "credits"
    # Only the last labels are looked at (a suffix copied per label would be quadratic).
    assert _bill(book, direct, {sc.SERVER_ADDRESS: dots + ".evil"})[1] is None


def test_the_collector_bills_and_discounts_otlp_spans() -> None:
    """The collector's enricher (OTLP protobuf spans) prices with the same book: the forwarded
    span carries the effective cost and the billing attributes, the metric the effective cost."""
    from otel_llm.collector.enrich import Enricher
    from otel_llm.collector.otlp import attributes_of
    from otel_llm.metrics.prometheus import PrometheusRecorder
    from tests.test_collector_service import one_span_request

    registry = CollectorRegistry()
    book = PriceBook([Discount("10%", provider="openai")], gateways=["corp.example"])
    enricher = Enricher(
        Pricer(PricingOptions(price_book=book, max_tokens=10**8)),
        PrometheusRecorder.for_registry(registry),
    )
    request = one_span_request("chat", **GATEWAY_CALL)
    result = enricher.enrich(request)
    (call,) = result.calls
    assert call.derived.billing == Billing(
        "credits", _list_price(make_call("gpt-4o-mini")), discounted=True
    )
    forwarded = attributes_of(request.resource_spans[0].scope_spans[0].spans[0].attributes)
    assert forwarded[sc.GEN_AI_USAGE_COST_AMOUNT] == 0.000189
    assert forwarded[sc.OTEL_LLM_COST_LIST_AMOUNT] == 0.00021
    assert forwarded[sc.OTEL_LLM_BILLING] == "credits"
    assert forwarded[sc.OTEL_LLM_COST_PRICE_DATA].endswith(" - 10% discount")
    assert counter_total(registry, sc.PROM_COST) == pytest.approx(0.000189)
