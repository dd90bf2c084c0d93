"""The collector's wire-level path (``collector/wire.py``): a received request's spans found by
their place in its bytes, only the spans holding an LLM key looked at, the changed ones written
back into the bytes as they came. It must forward exactly what the full path (every span read
from Python, the whole request serialized again) forwards, find the same calls and tree spans,
and fall back to the full path on anything its walk does not expect."""

from __future__ import annotations

import random
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from prometheus_client import CollectorRegistry

from otel_llm import _semconv as sc
from otel_llm.collector import wire
from otel_llm.collector.enrich import MAX_TREE_ROOTS, Enricher, EnrichResult, detach
from otel_llm.collector.otlp import set_value
from otel_llm.metrics.prometheus import PrometheusRecorder
from otel_llm.pricer import Pricer, PricingOptions
from otel_llm.pricing import Unpriced
from otel_llm.pricing.cost import Cost

T0 = 1_760_000_000_000_000_000
PRICER = Pricer(PricingOptions.from_settings())


def pairs(attributes: dict[str, Any]) -> list[KeyValue]:
    out = []
    for key, value in attributes.items():
        pair = KeyValue(key=key)
        set_value(pair.value, value)
        out.append(pair)
    return out


def chat(model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {
        sc.GEN_AI_OPERATION_NAME: "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 80,
        **extra,
    }


def span(number: int, attributes: dict[str, Any], *, parent: int = 0, trace: int = 1) -> Span:
    made = Span(
        name=f"span-{number}",
        trace_id=trace.to_bytes(16, "big"),
        span_id=number.to_bytes(8, "big"),
        start_time_unix_nano=T0 + number,
        end_time_unix_nano=T0 + number + 10**9,
        attributes=pairs(attributes),
    )
    if parent:
        made.parent_span_id = parent.to_bytes(8, "big")
    return made


def plain(number: int, **extra: Any) -> Span:
    attributes = {"http.request.method": "GET", "http.route": "/v1/items", **extra}
    return span(number, attributes, parent=number - 1 if number % 4 else 0)


def request(*resources: tuple[dict[str, Any], list[tuple[str, list[Span]]]]) -> bytes:
    message = ExportTraceServiceRequest()
    for attributes, scopes in resources:
        resource_spans = ResourceSpans(schema_url="https://opentelemetry.io/schemas/1.30.0")
        resource_spans.resource.attributes.extend(pairs(attributes))
        for scope_name, spans in scopes:
            scope_spans = ScopeSpans(spans=spans)
            scope_spans.scope.name = scope_name
            resource_spans.scope_spans.append(scope_spans)
        message.resource_spans.append(resource_spans)
    return message.SerializeToString()


def mixed() -> bytes:
    """Three resources, several scopes, LLM spans among plain ones; a plain span whose value
    (not key) holds an LLM key and a resource holding one (hits outside any LLM span); nested
    LLM spans; a span already priced in-process; an unknown model (unpriced: the untrusted
    cost it came with is removed); an agent and a tool; a scope without spans."""
    return request(
        (
            {"service.name": "checkout", "note": "gen_ai.operation.name in a resource"},
            [
                (
                    "app",
                    [
                        plain(0),
                        span(1, chat(), parent=0),
                        plain(2, **{"db.query.text": "SELECT 'gen_ai.operation.name'"}),
                        span(3, chat("gpt-4o", **{"gen_ai.usage.cache_read.input_tokens": 100})),
                        plain(4),
                    ],
                ),
                ("empty", []),
                (
                    "agents",
                    [
                        span(
                            10, {sc.GEN_AI_OPERATION_NAME: "invoke_agent", "gen_ai.agent.name": "a"}
                        ),
                        span(11, chat(), parent=10),
                        span(12, chat(), parent=11),  # nested in 11: 11 is counted in 12
                        span(13, {sc.GEN_AI_OPERATION_NAME: "execute_tool"}, parent=10),
                    ],
                ),
            ],
        ),
        ({"service.name": "search"}, [("plain-only", [plain(n) for n in range(20, 40)])]),
        (
            {"service.name": "bot"},
            [
                (
                    "bot",
                    [
                        plain(40),
                        span(
                            41,
                            chat(
                                "no-such-model-anywhere",
                                **{
                                    sc.GEN_AI_USAGE_COST_AMOUNT: 9.99,
                                    sc.GEN_AI_USAGE_COST_CURRENCY: "USD",
                                },
                            ),
                        ),
                        span(42, chat(**{sc.OTEL_LLM_COST_PRICE_DATA: "in-process"})),
                        *[plain(n) for n in range(43, 300)],  # lengths past 16 kB
                        span(
                            300, chat("claude-sonnet-4-5", **{"gen_ai.provider.name": "anthropic"})
                        ),
                    ],
                )
            ],
        ),
    )


def enrich(raw: bytes, *, fast: bool, tree: bool) -> tuple[EnrichResult, bytes]:
    """The result and the forwarded bytes of one path: the wire path (``raw`` given, as the
    receivers do) or the full one (no ``raw``: every span read, the request serialized)."""
    enricher = Enricher(
        PRICER, PrometheusRecorder.for_registry(CollectorRegistry()), tree_spans=tree
    )
    message = ExportTraceServiceRequest.FromString(raw)
    if fast:
        result = enricher.enrich(message, raw=raw)
        assert result.payload is not None
        # The request is changed in place as well, as the full path changes it.
        assert ExportTraceServiceRequest.FromString(result.payload) == message
        return result, result.payload
    result = enricher.enrich(message)
    return result, message.SerializeToString() if result.modified else raw


def summary(result: EnrichResult) -> dict[str, Any]:
    return {
        "spans": result.spans,
        "modified": result.modified,
        "errors": result.errors,
        "calls": [
            (c.derived, c.attributes, c.span, c.resource, c.scope, c.measured) for c in result.calls
        ],
        "tree": [(t.span, t.kind, t.service, t.agent_name) for t in result.tree],
    }


def assert_same_as_full_path(raw: bytes, *, tree: bool) -> EnrichResult:
    fast, forwarded = enrich(raw, fast=True, tree=tree)
    full, expected = enrich(raw, fast=False, tree=tree)
    assert ExportTraceServiceRequest.FromString(forwarded) == ExportTraceServiceRequest.FromString(
        expected
    )
    assert summary(fast) == summary(full)
    return fast


@pytest.mark.parametrize("tree", [False, True], ids=["calls", "calls-and-tree"])
def test_a_mixed_request_forwards_the_same_content_and_finds_the_same_calls(tree: bool) -> None:
    raw = mixed()
    where = wire.layout(raw)
    assert where is not None  # the wire path is the one taken
    result = assert_same_as_full_path(raw, tree=tree)
    assert len(result.calls) == 6  # 1, 3, 12 (11 is counted in it), 41, 42, 300
    assert [c.measured for c in result.calls].count(False) == 1  # 42, priced in-process
    if tree:
        assert {t.kind for t in result.tree} >= {"root", "agent", "tool"}
    # Every span left unchanged is forwarded as the bytes that came.
    assert result.payload is not None
    changed = {c.span.span_id for c in result.calls if c.measured} | {(11).to_bytes(8, "big")}
    for start, end in zip(where.starts, where.ends, strict=True):
        if Span.FromString(raw[start:end]).span_id not in changed:
            assert raw[start:end] in result.payload


def test_a_request_without_llm_spans_is_forwarded_as_it_came() -> None:
    raw = request(({"service.name": "search"}, [("s", [plain(n) for n in range(50)])]))
    result = assert_same_as_full_path(raw, tree=True)
    assert result.payload is raw
    assert not result.calls


def test_the_100_percent_genai_request_is_the_same_too() -> None:
    spans = [
        span(n, chat(model), parent=0) for n, model in enumerate(["gpt-4o", "gpt-4o-mini"] * 40)
    ]
    raw = request(({"service.name": "bot"}, [("s", spans)]))
    assert len(assert_same_as_full_path(raw, tree=False).calls) == 80


def test_hostile_spans_are_handled_as_the_full_path_handles_them() -> None:
    """A huge attribute, values of the wrong types, an LLM key on a span that is no call: the
    good spans around them are priced and every span forwarded, as without the wire path."""
    raw = request(
        (
            {"service.name": "checkout"},
            [
                (
                    "app",
                    [
                        plain(0, blob="x" * 2_000_000),
                        span(1, chat(), parent=0),
                        span(2, chat(**{"gen_ai.usage.input_tokens": "lots"}), parent=0),
                        span(3, chat(**{"gen_ai.request.model": 42}), parent=0),
                        span(4, chat(**{"gen_ai.usage.output_tokens": [1, 2]}), parent=0),
                        span(5, {sc.GEN_AI_OPERATION_NAME: 7}, parent=0),
                        span(6, chat(), parent=0),
                    ],
                )
            ],
        )
    )
    result = assert_same_as_full_path(raw, tree=True)
    priced = {
        c.span.span_id[-1] for c in result.calls if not isinstance(c.derived.priced, Unpriced)
    }
    assert {1, 6} <= priced
    assert result.payload is not None
    forwarded = ExportTraceServiceRequest.FromString(result.payload)
    assert len(forwarded.resource_spans[0].scope_spans[0].spans) == 7


def test_what_the_walk_does_not_expect_takes_the_full_path() -> None:
    """A resource given twice (protobuf merges the two): the walk refuses it, the request is
    enriched and forwarded as the full path does."""
    body = request(({"service.name": "checkout"}, [("app", [plain(0), span(1, chat())])]))
    resource_spans = ExportTraceServiceRequest.FromString(body).resource_spans[0]
    second = ResourceSpans()
    second.resource.attributes.extend(pairs({"host.name": "node-1"}))
    merged = resource_spans.SerializeToString() + second.SerializeToString()
    raw = b"\x0a" + wire_length(len(merged)) + merged
    assert wire.layout(raw) is None
    result = assert_same_as_full_path(raw, tree=True)
    assert len(result.calls) == 1
    assert result.calls[0].resource == {"service.name": "checkout", "host.name": "node-1"}


def wire_length(size: int) -> bytes:
    out = bytearray()
    while size > 0x7F:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out)


@pytest.mark.parametrize("cut", [1, 7, 100, 5000])
def test_a_truncated_request_is_no_layout(cut: int) -> None:
    """The receivers refuse what does not parse before enriching (INVALID_ARGUMENT, 400); the
    walk, for its part, never reads past the end."""
    raw = mixed()
    assert wire.layout(raw[:-cut]) is None


def test_splice_writes_every_length_around_a_replaced_span_again() -> None:
    """Random spans of a several-resource request replaced by shorter and much longer ones
    (lengths crossing 1-, 2- and 3-byte varints): the result parses to the request with those
    spans replaced, and a field of the request the schema does not know is kept."""
    rng = random.Random(7)  # noqa: S311 - test data, not secrets
    raw = mixed() + b"\x7a\x03abc"  # field 15, length-delimited: unknown to the schema
    where = wire.layout(raw)
    assert where is not None
    message = ExportTraceServiceRequest.FromString(raw)
    spans = [s for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans]
    for _ in range(20):
        chosen = rng.sample(range(len(spans)), rng.randint(1, 8))
        expected = ExportTraceServiceRequest.FromString(raw)
        targets = [s for rs in expected.resource_spans for ss in rs.scope_spans for s in ss.spans]
        replaced = {}
        for index in chosen:
            targets[index].name = "n" * rng.choice((0, 5, 200, 20_000))
            replaced[index] = targets[index].SerializeToString()
        spliced = wire.splice(raw, where, replaced)
        assert ExportTraceServiceRequest.FromString(spliced) == expected
        assert spliced.endswith(b"\x7a\x03abc")


@pytest.mark.parametrize("bad", [object(), ("ok", object()), None])
def test_a_value_that_cannot_be_encoded_leaves_the_span_as_it_was(bad: Any) -> None:
    """The appending path encodes every value before it touches the span (it no longer checks
    them in a pass of its own)."""
    from otel_llm.collector.otlp import apply_attributes

    target = span(1, chat())
    before = target.SerializeToString()
    with pytest.raises(TypeError):
        apply_attributes(target, {"ok": 1.5, "bad": bad}, present={"other"})
    assert target.SerializeToString() == before


def delimited(tag: int, data: bytes) -> bytes:
    return bytes((tag,)) + wire_length(len(data)) + data


def scope_spans_request(*fields: bytes) -> bytes:
    """One resource of one ``ScopeSpans`` made of ``fields`` as given (any order)."""
    resource_spans = ResourceSpans()
    resource_spans.resource.attributes.extend(pairs({"service.name": "checkout"}))
    body = resource_spans.SerializeToString() + delimited(0x12, b"".join(fields))
    return delimited(0x0A, body)


def test_fields_in_any_order_around_the_spans_are_walked_and_kept() -> None:
    """A scope and a schema URL after and between the spans, an unknown varint field: the walk
    finds the spans and splicing keeps the rest, as the full path does."""
    scope = delimited(0x0A, b"\x0a\x03lib")  # InstrumentationScope(name="lib")
    raw = scope_spans_request(
        delimited(0x12, plain(0).SerializeToString()),
        delimited(0x1A, b"https://schema"),  # schema_url
        delimited(0x12, span(1, chat(), parent=0).SerializeToString()),
        b"\x20\x05",  # field 4, varint: unknown to the schema
        scope,
        delimited(0x12, span(2, chat(), parent=0).SerializeToString()),
    )
    where = wire.layout(raw)
    assert where is not None
    assert len(where.starts) == 3
    result = assert_same_as_full_path(raw, tree=True)
    assert [c.scope for c in result.calls] == ["lib", "lib"]


def test_a_scope_given_twice_takes_the_full_path() -> None:
    scope = delimited(0x0A, b"\x0a\x03lib")
    other = delimited(0x0A, b"\x12\x011")  # InstrumentationScope(version="1"): merged
    raw = scope_spans_request(scope, delimited(0x12, span(1, chat()).SerializeToString()), other)
    assert wire.layout(raw) is None
    result = assert_same_as_full_path(raw, tree=True)
    assert [c.scope for c in result.calls] == ["lib"]


@pytest.mark.parametrize("with_call", [False, True], ids=["roots-only", "roots-and-a-call"])
def test_the_roots_handed_on_per_request_are_bounded(with_call: bool) -> None:
    """Found in review: every span without a parent was handed on as a root of a trace's
    tree, 2,000,000 of them from one 3.9 MB request of empty spans -- 545 MB on top of the
    parse (the call log keeps at most 10,000 roots waiting for a call anyway)."""
    roots = [Span(trace_id=n.to_bytes(16, "big"), span_id=b"\x01" * 8) for n in range(1, 12_001)]
    spans = [*roots, span(50_000, chat(), trace=12_000)] if with_call else roots
    raw = request(({"service.name": "flood"}, [("a", spans[:6000]), ("b", spans[6000:])]))
    result = assert_same_as_full_path(raw, tree=True)
    kept = [t for t in result.tree if t.kind == "root"]
    assert len(kept) == MAX_TREE_ROOTS
    assert [t.span.trace_id for t in kept] == [r.trace_id for r in roots[:MAX_TREE_ROOTS]]
    assert len(result.calls) == int(with_call)


def test_roots_past_the_bound_that_carry_a_genai_key_leave_the_call_priced() -> None:
    """Found in review: a root with a GenAI key but no call (a workflow) past the bound was
    dropped by the tree but its place kept, so pairing the places with the tree raised and the
    request's one call went unpriced, unmeasured and out of the call log."""
    workflow = {sc.GEN_AI_OPERATION_NAME: "invoke_workflow"}
    roots = [span(n, workflow, trace=n) for n in range(1, MAX_TREE_ROOTS + 3)]
    call = span(50_000, chat(), parent=7, trace=1)
    raw = request(({"service.name": "flood"}, [("a", [call, *roots])]))
    result = assert_same_as_full_path(raw, tree=True)
    assert result.errors == 0
    assert len(result.calls) == 1
    assert isinstance(result.calls[0].derived.priced, Cost)
    kept = [t for t in result.tree if t.kind == "root"]
    assert [t.span.span_id for t in kept] == [r.span_id for r in roots[:MAX_TREE_ROOTS]]


def test_detached_spans_are_equal_copies_weighed_by_what_they_hold() -> None:
    """Found in review: a memo's call span kept the whole parsed request alive -- a span of a
    million empty events beside one call, 2 MB on the wire, kept ~60 MB, weighed as 2 MB."""
    filler = span(2, {"http.route": "/v1/items"}, parent=1)
    filler.events.extend(Span.Event() for _ in range(1000))
    call = span(3, chat(), parent=2)
    call.events.extend(Span.Event() for _ in range(100))
    raw = request(({"service.name": "svc"}, [("a", [filler, call])]))
    result, _ = enrich(raw, fast=True, tree=True)
    (found,) = result.calls
    before = found.span
    weight = detach(result, len(raw))
    assert found.span is not before
    assert found.span == before
    assert weight >= 100 * 64 + 4 * found.span.ByteSize()  # its own events counted
    assert weight < 1000 * 64  # the filler's are not kept
    # A request of calls only is kept as it is, weighed whole: copies would hold as much.
    alone = request(({"service.name": "svc"}, [("a", [call])]))
    result, _ = enrich(alone, fast=True, tree=True)
    (found,) = result.calls
    before = found.span
    assert detach(result, len(alone)) >= 100 * 64 + 4 * len(alone)
    assert found.span is before
