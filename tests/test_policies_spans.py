"""A span's call as the policies read it (``policies/calls.py``) and the engine's span path
(``PolicyEngine.observe_spans``, the collector's): the same as a ``PolicyCall`` made whole.

Real priced calls: OTLP protobuf spans priced by the collector's ``Pricer``.
"""

from __future__ import annotations

import random
import textwrap
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_llm.derive import Derived
from otel_llm.policies.calls import (
    CallId,
    DerivedCall,
    PolicyCall,
    SpanCall,
    policy_call,
    reader,
)
from otel_llm.policies.engine import PolicyEngine
from otel_llm.policies.load import parse_policies
from otel_llm.policies.matching import projection
from otel_llm.policies.model import SCOPE_FIELDS, ScopeKey
from otel_llm.pricer import Pricer
from otel_llm.pricing import Unpriced

START = 1_796_000_000 * 10**9
PRICER = Pricer()
CONTEXT = {
    "project": "otel_llm.context.project_id",
    "feature": "otel_llm.context.feature",
    "user": "otel_llm.context.user_id",
    "api_key_id": "otel_llm.context.api_key_id",
}


def priced(attributes: dict[str, Any], service: str, start: int, trace: int = 1) -> Derived | None:
    span = Span(
        name="chat",
        trace_id=trace.to_bytes(16, "big"),
        span_id=trace.to_bytes(8, "big"),
        start_time_unix_nano=start,
        end_time_unix_nano=start + 10**8,
    )
    return PRICER.price_otlp_span(span, attributes, None, {"service.name": service})


def random_attributes(rng: random.Random, values: dict[str, list[Any]]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": rng.choice(["openai", "anthropic"]),
    }
    if rng.random() < 0.9:
        attributes["gen_ai.request.model"] = rng.choice(values["model"])
    if rng.random() < 0.3:
        attributes["gen_ai.response.model"] = rng.choice(values["model"])
    for name, tokens in (("input", [0, 10, 1000, 4000]), ("output", [0, 5, 200, 1600])):
        if rng.random() < 0.85:
            attributes[f"gen_ai.usage.{name}_tokens"] = rng.choice(tokens)
    if rng.random() < 0.3:
        attributes["gen_ai.request.max_tokens"] = rng.choice([10, 5000, True, "9", 2.5])
    for field, attribute in CONTEXT.items():
        if rng.random() < 0.8:
            attributes[attribute] = rng.choice(values[field])
    return attributes


def expected_key(derived: Derived, attributes: dict[str, Any]) -> ScopeKey:
    """The scope values as the call log stores them, spelled out here."""

    def text(value: Any) -> str | None:
        return None if value is None or value == "" else str(value)

    call = derived.call
    return (
        derived.service_name or None,
        text(attributes.get(CONTEXT["project"])),
        text(attributes.get(CONTEXT["feature"])),
        text(attributes.get(CONTEXT["user"])),
        text(attributes.get(CONTEXT["api_key_id"])),
        call.provider,
        call.request_model or call.response_model,
    )


VALUES: dict[str, list[Any]] = {
    "service": ["shop", "search", ""],
    "project": ["p1", "p2", "p3", "", 7, True],
    "feature": ["chat", "summary", ""],
    "user": ["u1", "u2", 42],
    "api_key_id": ["k1", "k2", ""],
    "model": ["gpt-4o", "gpt-4o-mini", "claude-3-haiku-20240307", "o1-pro", "no-such-model"],
}


def test_a_span_is_read_as_the_call_log_stores_it_whatever_fields_are_read() -> None:
    """Every set of scope fields: the reader's values are the projection (the plans' cache
    key) of the whole key, which holds the call log's values -- absent and empty values None,
    numbers and booleans as text -- with the start, exact nano-USD (None unpriced), input +
    output tokens (None without either) and the requested max_tokens (an int, not a bool)."""
    rng = random.Random(1401)  # noqa: S311 - reproducible calls, not secrets
    unpriced = priced_count = 0
    for index in range(400):
        attributes = random_attributes(rng, VALUES)
        service = rng.choice(VALUES["service"])
        derived = priced(attributes, service, START + index)
        assert derived is not None
        key = expected_key(derived, attributes)
        cost = None if isinstance(derived.priced, Unpriced) else derived.priced.nanos()
        unpriced += cost is None
        priced_count += cost is not None
        usage = (derived.call.input_tokens, derived.call.output_tokens)
        tokens = None if usage == (None, None) else (usage[0] or 0) + (usage[1] or 0)
        requested = attributes.get("gen_ai.request.max_tokens")
        requested = requested if type(requested) is int else None
        item = DerivedCall(derived, attributes)
        assert policy_call(item, "c1") == PolicyCall(
            key, START + index, cost, tokens, requested, "c1"
        )
        fields = tuple(sorted(rng.sample(range(len(SCOPE_FIELDS)), rng.randint(0, 4))))
        assert reader(fields)(item) == (
            projection(fields)(key),
            START + index,
            cost,
            tokens,
            requested,
        )
    assert unpriced > 20  # both kinds read
    assert priced_count > 50


POLICIES = """
policies:
  - name: per-project
    scope: {project: [p1, p2, p3]}
    budgets:
      - {name: day, window: day, usd: 0.05, warn_at: 50}
      - {name: rolling, window: 1h, tokens: 60000, warn_at: 80}
    action: block
  - name: chat-users
    scope: {feature: chat, user: "u*"}
    budgets: [{name: day, window: day, usd: 0.02}]
    action: alert
  - name: shop
    scope: {service: shop, api_key_id: k1}
    budgets: [{name: month, window: month, tokens: 200000, warn_at: 70}]
    calls: {max_tokens: 4500, max_cost_usd: 0.01}
  - name: models
    scope: "*"
    calls: {denied_models: ["o1-pro*"], allowed_models: ["gpt-*", "claude-*", "o1*"]}
    action: record
"""


class _NoStore:
    def spend(self, *args: object) -> list[Any]:
        return []


def test_spans_observed_through_the_reader_judge_as_their_whole_calls() -> None:
    """The same random traffic (real priced spans) through ``observe_spans`` and through
    ``observe`` of each span's ``policy_call``: the same verdicts after every batch, the same
    states, counts, calls that crossed (by id) and calls remembered until stored."""
    rng = random.Random(1402)  # noqa: S311 - reproducible traffic, not secrets
    now = [START]
    spans = PolicyEngine(parse_policies(textwrap.dedent(POLICIES)), clock=lambda: now[0])
    whole = PolicyEngine(parse_policies(textwrap.dedent(POLICIES)), clock=lambda: now[0])
    spans.follow_store()
    whole.follow_store()
    ids: dict[int, str] = {}

    def ident(call: SpanCall) -> CallId:
        return ids[id(call)]

    counter = 0
    for _ in range(300):
        batch: list[DerivedCall] = []
        for _ in range(rng.randint(1, 30)):
            counter += 1
            attributes = random_attributes(rng, VALUES)
            when = now[0] - rng.randint(0, 2 * 3600 * 10**9 if rng.random() < 0.05 else 10**9)
            derived = priced(attributes, rng.choice(VALUES["service"]), when, counter)
            assert derived is not None
            batch.append(DerivedCall(derived, attributes))
            ids[id(batch[-1])] = f"c{counter}"
        made = [policy_call(item, ident(item)) for item in batch]
        assert spans.observe_spans(batch, ident) == whole.observe(made)
        if rng.random() < 0.2:
            assert spans.snapshot() == whole.snapshot()
            assert spans.counts() == whole.counts()
        if rng.random() < 0.1:  # the calls remembered until stored: the same sums
            assert spans.resync(_NoStore()) == whole.resync(_NoStore())
            assert spans.snapshot() == whole.snapshot()
        now[0] += rng.choice((10**8, 10**9, 30 * 10**9, 60 * 10**9))
    assert spans.snapshot() == whole.snapshot()
    assert spans.counts() == whole.counts()
    violations, alerts, blocks = whole.counts()
    rules = {rule for _, rule, _ in violations}
    assert {"day", "max_tokens", "max_cost", "denied_models", "allowed_models"} <= rules, rules
    assert alerts
    assert blocks
    crossed = [
        budget["crossed_by"]
        for policy in whole.snapshot()
        for budget in policy["budgets"]
        if budget["crossed_by"]
    ]
    assert crossed
    assert all(str(c["call_id"]).startswith("c") for c in crossed), crossed
