"""The processor's one pass (``LLMSpanProcessor._end_common``) against its full path.

A corpus of spans -- the common form, odd types, missing usage, dialects, deprecated names,
provider costs, billing overrides, discounts and gateways, tiered prices, agents, nested calls,
local and remote parents, extra labels, two services -- goes through two processors, one as it
is and one that never makes a one-pass entry (so every call takes the full path). Each span is
sent three times, so the first teaches the one pass and the others take it. The exported spans
(every attribute, in order) and both expositions must be identical, byte for byte: time is
virtual and the ids count from 1 in both runs.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

from otel_llm import LLMSpanProcessor, llm_context
from otel_llm import _semconv as sc
from otel_llm.pricer import Pricer, PricingOptions
from otel_llm.pricing import Discount, PriceOverride
from tests.support.exposition_scenario import T0_NS, _CountingIds, _virtual_time

FEATURE = "otel_llm.context.feature"
SCOPE = "my.instrumentation"

COMMON = {
    sc.GEN_AI_OPERATION_NAME: "chat",
    sc.GEN_AI_PROVIDER_NAME: "openai",
    sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
    sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
    sc.SERVER_ADDRESS: "api.openai.com",
    sc.GEN_AI_USAGE_INPUT_TOKENS: 1_200,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 400,
    FEATURE: "search",
}


def _with(**changes: Any) -> dict[str, Any]:
    """COMMON with attributes replaced (a value of None removes one); keys use '__' for '.'."""
    attributes = dict(COMMON)
    for key, value in changes.items():
        name = key.replace("__", ".")
        if value is None:
            attributes.pop(name, None)
        else:
            attributes[name] = value
    return attributes


# (scope, attributes, failed): one call each, ended as a local root, under a local parent, or
# under a remote parent (the three ways _end_common treats its parent).
CALLS: list[tuple[str, dict[str, Any], bool]] = [
    (SCOPE, dict(COMMON), False),
    (SCOPE, _with(gen_ai__usage__cache_read__input_tokens=None), False),
    (SCOPE, _with(gen_ai__usage__output_tokens=7, gen_ai__usage__input_tokens=3), False),
    # Parts larger than their whole (not counted in it), reasoning, both cache parts.
    (SCOPE, _with(gen_ai__usage__input_tokens=100, gen_ai__usage__cache_read__input_tokens=400),
     False),
    (SCOPE, _with(gen_ai__provider__name="anthropic", gen_ai__request__model="claude-3-5-haiku",
                  gen_ai__response__model=None, gen_ai__usage__input_tokens=26_000,
                  gen_ai__usage__cache_creation__input_tokens=5_000,
                  gen_ai__usage__cache_read__input_tokens=20_000), False),
    (SCOPE, _with(gen_ai__request__model="o3-mini", gen_ai__response__model=None,
                  gen_ai__usage__output_tokens=2_000,
                  gen_ai__usage__reasoning__output_tokens=1_500), False),
    (SCOPE, _with(gen_ai__usage__output_tokens=100, gen_ai__usage__reasoning__output_tokens=900),
     False),
    # Streamed, with a time to first chunk; embeddings without output.
    (SCOPE, _with(gen_ai__request__stream=True, gen_ai__response__time_to_first_chunk=0.25),
     False),
    (SCOPE, _with(gen_ai__operation__name="embeddings", gen_ai__request__model=
                  "text-embedding-3-small", gen_ai__response__model=None,
                  gen_ai__usage__output_tokens=None, gen_ai__usage__cache_read__input_tokens=None),
     False),
    (SCOPE, _with(gen_ai__operation__name="text_completion"), False),
    # Failures: an error type with usage, a failed status with and without usage.
    (SCOPE, _with(error__type="RateLimitError"), False),
    (SCOPE, dict(COMMON), True),
    (SCOPE, _with(gen_ai__usage__input_tokens=None, gen_ai__usage__output_tokens=None,
                  gen_ai__usage__cache_read__input_tokens=None), True),
    # Missing or untrusted usage.
    (SCOPE, _with(gen_ai__usage__output_tokens=None), False),
    (SCOPE, _with(otel_llm__usage__missing=True), False),
    (SCOPE, _with(gen_ai__usage__input_tokens="1200"), False),
    (SCOPE, _with(gen_ai__usage__output_tokens=-5), False),
    (SCOPE, _with(gen_ai__usage__output_tokens=2.0), False),
    (SCOPE, _with(gen_ai__usage__output_tokens=True), False),
    (SCOPE, _with(gen_ai__usage__input_tokens=10**12), False),
    (SCOPE, _with(gen_ai__response__time_to_first_chunk=1), False),
    (SCOPE, _with(gen_ai__request__model=4), False),
    # Models and providers nobody prices, no model, a provider renamed, empty values.
    (SCOPE, _with(gen_ai__provider__name="acme", gen_ai__request__model="acme-large",
                  gen_ai__response__model=None), False),
    (SCOPE, _with(gen_ai__request__model="no-such-model", gen_ai__response__model=None), False),
    (SCOPE, _with(gen_ai__request__model=None, gen_ai__response__model=None), False),
    (SCOPE, _with(gen_ai__provider__name="az.ai.openai"), False),
    (SCOPE, _with(gen_ai__provider__name="", gen_ai__response__model=""), False),
    (SCOPE, _with(gen_ai__response__model="gpt-4o-2024-08-06"), False),  # response wins
    # Tiered prices (the Decimal path), an override, a gateway-prefixed model.
    (SCOPE, _with(gen_ai__provider__name="anthropic", gen_ai__request__model="claude-sonnet-4-5",
                  gen_ai__response__model=None, gen_ai__usage__input_tokens=250_000), False),
    (SCOPE, _with(gen_ai__provider__name="anthropic", gen_ai__request__model="claude-sonnet-4-5",
                  gen_ai__response__model=None), False),
    (SCOPE, _with(gen_ai__request__model="house-model", gen_ai__response__model=None), False),
    (SCOPE, _with(gen_ai__provider__name="openrouter", gen_ai__request__model="openai/gpt-4o",
                  gen_ai__response__model=None), False),
    # Deprecated names, other libraries' dialects and costs.
    (SCOPE, _with(gen_ai__provider__name=None, gen_ai__system="openai"), False),
    (SCOPE, _with(gen_ai__usage__input_tokens=None, gen_ai__usage__prompt_tokens=50), False),
    ("opentelemetry.instrumentation.openai_v2", dict(COMMON), False),
    (SCOPE, {"llm.request.type": "chat", "gen_ai.system": "openai",
             "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.prompt_tokens": 10,
             "gen_ai.usage.completion_tokens": 5}, False),
    (SCOPE, _with(telemetry__sdk__name="openlit", gen_ai__usage__cost=0.001), False),
    (SCOPE, _with(gen_ai__usage__cost__amount=0.01, gen_ai__usage__cost__source="provider"),
     False),
    (SCOPE, _with(gen_ai__usage__cost__amount=0.0004, gen_ai__usage__cost__source="estimated",
                  otel_llm__cost__input=1.0), False),
    (SCOPE, _with(otel_llm__context__billing="credits"), False),
    (SCOPE, _with(otel_llm__context__project_id="p-1"), False),
    # Extra label values: absent, not text.
    (SCOPE, _with(otel_llm__context__feature=None), False),
    (SCOPE, _with(otel_llm__context__feature=7), False),
    # Not LLM calls: an agent's and a tool's spans, an unpriced operation, a plain span.
    (SCOPE, {sc.GEN_AI_OPERATION_NAME: "execute_tool", "gen_ai.tool.name": "search"}, False),
    (SCOPE, {sc.GEN_AI_OPERATION_NAME: "create_agent"}, False),
    (SCOPE, {"http.request.method": "GET"}, False),
]  # fmt: skip

OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "extra labels": {"extra_labels": {"feature": FEATURE}},
    "overrides and discounts": {
        "extra_labels": {"feature": FEATURE},
        "price_overrides": [
            PriceOverride(
                match="house-model", provider="openai", prices={"input_mtok": 1, "output_mtok": 2}
            ),
            Discount("10%", provider="openai"),
            Discount("25%", project="p-1"),
        ],
    },
    "gateways": {"billing_gateways": ["openrouter", "api.openai.com"]},
}


def _run(options: dict[str, Any], one_pass: bool) -> tuple[list[Any], bytes, bytes, int]:
    """(exported spans as (name, attributes in order), text exposition, OpenMetrics, calls the
    full path priced)."""
    with _virtual_time() as clock:
        registry = CollectorRegistry()
        exporter = InMemorySpanExporter()
        processor = LLMSpanProcessor(
            SimpleSpanProcessor(exporter), registry=registry, max_label_values=20, **options
        )
        counting = _CountingPricer(
            PricingOptions(
                price_book=processor.pricer.book,
                max_tokens=processor.pricer.max_tokens,
                extra_attributes=processor.pricer.extra_attributes,
            )
        )
        processor._pricer = counting
        if not one_pass:
            processor._learns = False
        ids = _CountingIds()
        tracers = {
            service: TracerProvider(
                resource=Resource.create({"service.name": service}), id_generator=ids
            )
            for service in ("checkout", "batch-jobs")
        }
        for provider in tracers.values():
            provider.add_span_processor(processor)
        t = T0_NS
        for round_ in range(3):
            for index, (scope, attributes, failed) in enumerate(CALLS):
                service = "checkout" if index % 3 else "batch-jobs"
                tracer = tracers[service].get_tracer(scope)
                for parent in ("root", "local", "remote"):
                    clock.advance(0.3)
                    t += 300_000_000
                    _one_call(tracer, attributes, failed, parent, t, round_)
        _agents(tracers["checkout"].get_tracer(SCOPE), t)
        return (
            [
                (span.name, list((span.attributes or {}).items()))
                for span in exporter.get_finished_spans()
            ],
            generate_latest(registry),
            openmetrics(registry),
            counting.calls,
        )


def _one_call(  # noqa: PLR0917
    tracer: trace.Tracer, attributes: dict[str, Any], failed: bool, parent: str, t: int, n: int
) -> None:
    def call(context: Any = None) -> None:
        span = tracer.start_span("chat", attributes=attributes, start_time=t, context=context)
        if failed:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=t + 50_000_000 * (n + 1))

    if parent == "root":
        call()
    elif parent == "remote":
        remote = SpanContext(0xABCDEF + n, 0x1234 + n, is_remote=True, trace_flags=TraceFlags(1))
        call(trace.set_span_in_context(NonRecordingSpan(remote)))
    else:
        outer = tracer.start_span("GET /work", start_time=t - 1)
        call(trace.set_span_in_context(outer))
        outer.end(end_time=t + 10**9)


def _agents(tracer: trace.Tracer, t: int) -> None:
    """Agents three deep, llm_context around calls, an LLM span nested in another."""
    root = tracer.start_span("workflow", start_time=t)
    with trace.use_span(root, end_on_exit=False):
        agent = tracer.start_span(
            "invoke_agent planner",
            attributes={sc.GEN_AI_OPERATION_NAME: "invoke_agent", sc.GEN_AI_AGENT_NAME: "planner"},
        )
        with trace.use_span(agent, end_on_exit=False):
            for _ in range(3):
                tracer.start_span("chat", attributes=COMMON, start_time=t).end(end_time=t + 9)
            sub = tracer.start_span("sub", attributes={"openinference.span.kind": "AGENT"})
            with trace.use_span(sub, end_on_exit=False):
                tracer.start_span("chat", attributes=COMMON, start_time=t).end(end_time=t + 9)
            sub.end()
        agent.end()
        with llm_context(feature="ctx", agent="writer", project_id="p-1"):
            for _ in range(3):
                tracer.start_span("chat", attributes=COMMON, start_time=t).end(end_time=t + 9)
            late = tracer.start_span("late", start_time=t)  # names its operation later
            for key, value in COMMON.items():
                late.set_attribute(key, value)
            late.end(end_time=t + 9)
        outer = tracer.start_span("llm_call", attributes=COMMON, start_time=t)
        with trace.use_span(outer, end_on_exit=False):
            for _ in range(2):
                tracer.start_span("chat", attributes=COMMON, start_time=t).end(end_time=t + 9)
        outer.end(end_time=t + 99)
    root.end()


class _CountingPricer(Pricer):
    """Counts the calls priced by the full path."""

    def __init__(self, options: PricingOptions) -> None:
        super().__init__(options)
        self.calls = 0

    def price_sdk_span(self, *args: Any) -> Any:
        self.calls += 1
        return super().price_sdk_span(*args)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_one_pass_and_full_path_export_and_expose_the_same(name: str) -> None:
    fast_spans, fast_text, fast_om, fast_priced = _run(OPTIONS[name], one_pass=True)
    full_spans, full_text, full_om, full_priced = _run(OPTIONS[name], one_pass=False)
    assert len(fast_spans) == len(full_spans) > len(CALLS) * 9
    for fast, full in zip(fast_spans, full_spans, strict=True):
        assert fast == full
    assert fast_text.decode().split("\n") == full_text.decode().split("\n")
    assert fast_text == full_text
    assert fast_om == full_om
    assert b"gen_ai_client_cost_usd_total" in fast_text
    if name in ("overrides and discounts", "gateways"):
        # A book that bills every call has no one pass: the full path bills it.
        assert fast_priced == full_priced
    else:
        # The one pass took the calls it could: most of the corpus from its second round on.
        assert fast_priced < full_priced - len(CALLS)


def test_a_second_processor_on_one_registry_shares_series_and_one_pass() -> None:
    # Two processors on one registry share the recorder; each has its own one-pass table.
    registry = CollectorRegistry()
    exporters = [InMemorySpanExporter(), InMemorySpanExporter()]
    processors = [
        LLMSpanProcessor(SimpleSpanProcessor(exporter), registry=registry) for exporter in exporters
    ]
    for processor in processors:
        provider = TracerProvider()
        provider.add_span_processor(processor)
        for _ in range(3):
            provider.get_tracer(SCOPE).start_span("chat", attributes=COMMON).end()
    costs = [
        span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT]
        for exporter in exporters
        for span in exporter.get_finished_spans()
        if span.attributes
    ]
    assert len(costs) == 6
    assert len(set(costs)) == 1
    (value,) = [
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "gen_ai_client_cost_usd_total"
    ]
    assert value == pytest.approx(costs[0] * 6)


class _Text(str):
    """A str subclass: equal to the str it was made from, so it finds that one's entry."""


# (what teaches the one pass, what follows with the same label values): the one pass looks its
# entry up by the raw label values before it reads the rest, so what the entry does not vouch
# for must still be checked.
KNOWN_KEYS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    # No provider, then the deprecated name of one: the full reader decides which is meant.
    (_with(gen_ai__provider__name=""), _with(gen_ai__provider__name="", gen_ai__system="openai")),
    # A value no key can hold (the SDK keeps lists): never the one pass.
    (dict(COMMON), _with(gen_ai__request__model=["gpt-4o-mini"])),
    (dict(COMMON), _with(error__type=["x"])),
    # A str subclass equal to the learnt value.
    (dict(COMMON), _with(gen_ai__request__model=_Text("gpt-4o-mini"))),
    # Counts the entry says nothing of.
    (dict(COMMON), _with(gen_ai__usage__input_tokens=-1)),
    (dict(COMMON), _with(gen_ai__usage__output_tokens=None)),
]


def _known_keys(one_pass: bool) -> tuple[list[Any], bytes]:
    with _virtual_time():
        registry = CollectorRegistry()
        exporter = InMemorySpanExporter()
        processor = LLMSpanProcessor(SimpleSpanProcessor(exporter), registry=registry)
        if not one_pass:
            processor._learns = False
        provider = TracerProvider(
            resource=Resource.create({"service.name": "checkout"}), id_generator=_CountingIds()
        )
        provider.add_span_processor(processor)
        tracer = provider.get_tracer(SCOPE)
        for learnt, then in KNOWN_KEYS:
            for attributes in (learnt, learnt, then, learnt):
                span = tracer.start_span("chat", start_time=T0_NS)
                # Set one by one, as the SDK keeps them (a list as a tuple, a str subclass as is).
                for name, value in attributes.items():
                    span._attributes._dict[name] = value  # type: ignore[attr-defined]
                span.end(end_time=T0_NS + 10**8)
        spans = [
            (s.name, list((s.attributes or {}).items())) for s in exporter.get_finished_spans()
        ]
        return spans, generate_latest(registry)


def test_a_call_with_known_label_values_is_still_read_in_full() -> None:
    fast_spans, fast_text = _known_keys(one_pass=True)
    full_spans, full_text = _known_keys(one_pass=False)
    assert len(fast_spans) == len(full_spans) == 4 * len(KNOWN_KEYS)
    for fast, full in zip(fast_spans, full_spans, strict=True):
        assert fast == full
    assert fast_text == full_text
    # Each was priced or said why not (a failure would have handed it on as it came).
    for _, attributes in fast_spans:
        assert {sc.GEN_AI_USAGE_COST_AMOUNT, sc.OTEL_LLM_COST_UNPRICED_REASON} & dict(
            attributes
        ).keys()


_COUNTS = [  # input, output, cache read, cache write, reasoning
    (1_000, 200, 0, 0, 0),
    (1_000, 200, 300, 0, 0),
    (1_000, 200, 300, 100, 0),
    (1_000, 200, 0, 0, 150),
    (1_000, 200, 300, 100, 150),
    (100, 50, 300, 400, 900),  # parts larger than their wholes
    (0, 0, 0, 0, 0),
    (99_999_999, 99_999_999, 0, 0, 0),
]


@pytest.mark.parametrize(
    "prices",
    [
        {"input_mtok": 3, "output_mtok": 15},
        {"input_mtok": "1.1", "output_mtok": "4.4", "cache_read_mtok": "0.275"},
        {
            "input_mtok": "1.1",
            "output_mtok": "4.4",
            "cache_read_mtok": "0.275",
            "cache_write_mtok": "1.375",
            "output_reasoning_mtok": "8.8",
            "requests_kcount": "0.5",
        },
    ],
    ids=["input and output", "cache read", "every price"],
)
def test_the_one_pass_integer_price_is_the_full_paths(prices: dict[str, str]) -> None:
    """The one pass prices with ``flat_units`` (``Rates.units``' arithmetic): every branch of it
    (a cache part priced or charged as input, reasoning priced apart or as output, a price per
    request) gives the cost attributes the full path gives, for the same counts."""
    exported = {}
    for one_pass in (True, False):
        exporter = InMemorySpanExporter()
        processor = LLMSpanProcessor(
            SimpleSpanProcessor(exporter),
            registry=CollectorRegistry(),
            price_overrides=[PriceOverride(match="all-flat", provider="openai", prices=prices)],
        )
        processor._learns = one_pass
        provider = TracerProvider()
        provider.add_span_processor(processor)
        tracer = provider.get_tracer(SCOPE)
        for _ in range(2):
            for counts in _COUNTS:
                attributes = _with(gen_ai__request__model="all-flat", gen_ai__response__model=None)
                for name, count in zip(
                    (
                        sc.GEN_AI_USAGE_INPUT_TOKENS,
                        sc.GEN_AI_USAGE_OUTPUT_TOKENS,
                        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
                        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
                        sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
                    ),
                    counts,
                    strict=True,
                ):
                    attributes[name] = count
                tracer.start_span("chat all-flat", attributes=attributes).end()
        assert bool(processor._entries) is one_pass
        exported[one_pass] = [
            [(k, v) for k, v in (span.attributes or {}).items() if "cost" in k]
            for span in exporter.get_finished_spans()
        ]
    assert exported[True] == exported[False]
    assert all(attributes for attributes in exported[True])


def test_with_max_tokens_past_the_prices_bound_calls_take_the_full_path() -> None:
    """The one pass prices with ``flat_units`` without testing the counts against the prices'
    bound: it keeps an entry only when every count up to ``max_tokens`` is below it. Past it
    (a ``max_tokens`` of 10**25 against gpt-4o-mini's bound of ~10**22) no entry is made, and
    counts too large for the integer path are still priced, by the Decimal one, as the full
    path alone prices them."""
    huge = {sc.GEN_AI_USAGE_INPUT_TOKENS: 10**23, sc.GEN_AI_USAGE_OUTPUT_TOKENS: 10**22}
    exported = {}
    for one_pass in (True, False):
        exporter = InMemorySpanExporter()
        processor = LLMSpanProcessor(
            SimpleSpanProcessor(exporter), registry=CollectorRegistry(), max_tokens=10**25
        )
        processor._learns = one_pass
        provider = TracerProvider()
        provider.add_span_processor(processor)
        tracer = provider.get_tracer(SCOPE)
        for attributes in (COMMON, COMMON, {**COMMON, **huge}, COMMON):
            tracer.start_span("chat", attributes=attributes).end()
        assert not processor._entries
        exported[one_pass] = [
            [(k, v) for k, v in (span.attributes or {}).items() if "cost" in k]
            for span in exporter.get_finished_spans()
        ]
    assert exported[True] == exported[False]
    assert all(attributes for attributes in exported[True])
    # The one pass does keep an entry under the default max_tokens.
    processor = LLMSpanProcessor(registry=CollectorRegistry())
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.get_tracer(SCOPE).start_span("chat", attributes=COMMON).end()
    assert processor._entries
