"""read_call: attribute names, dialects, and that no attribute value can break it."""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from otel_llm import _semconv as sc
from otel_llm.call import Rejected, is_llm_call, read_call, read_call_fast, read_call_full
from otel_llm.pricing import Cost, PriceBook, Unpriced

MAX = 100_000_000


def read(attributes: dict[str, Any], max_tokens: int = MAX) -> Any:
    call, rejected = read_call(
        {sc.GEN_AI_OPERATION_NAME: "chat", **attributes}, max_tokens=max_tokens
    )
    assert call is not None
    return call, rejected


def test_current_attribute_names() -> None:
    call, rejected = read(
        {
            sc.GEN_AI_PROVIDER_NAME: "anthropic",
            sc.GEN_AI_REQUEST_MODEL: "claude-sonnet-4-5",
            sc.GEN_AI_RESPONSE_MODEL: "claude-sonnet-4-5-20250929",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 1_200,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 500,
            sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 200,
            sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 100,
            sc.ERROR_TYPE: "timeout",
            sc.GEN_AI_REQUEST_STREAM: True,
            sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: 0.25,
        }
    )
    assert rejected == []
    assert call.operation == "chat"
    assert call.provider == "anthropic"
    assert (call.request_model, call.response_model) == (
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
    )
    assert call.model == "claude-sonnet-4-5-20250929"
    assert (call.input_tokens, call.output_tokens) == (1_200, 300)
    assert (call.cache_read_tokens, call.cache_creation_tokens) == (500, 200)
    assert call.reasoning_tokens == 100
    assert call.error_type == "timeout"
    assert call.streaming is True
    assert call.time_to_first_chunk == 0.25
    assert call.provider_cost is None
    assert call.usage_missing is False
    assert call.usage_rejected is False


def test_deprecated_attribute_names() -> None:
    call, rejected = read(
        {
            sc.GEN_AI_SYSTEM: "openai",
            sc.GEN_AI_REQUEST_MODEL: "gpt-4o",
            sc.GEN_AI_USAGE_PROMPT_TOKENS: 1_000,
            sc.GEN_AI_USAGE_COMPLETION_TOKENS: 50,
            sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: 300,
        }
    )
    assert rejected == []
    assert call.provider == "openai"
    assert (call.input_tokens, call.output_tokens, call.cache_creation_tokens) == (1_000, 50, 300)
    assert call.streaming is False


def test_current_names_win_over_deprecated_ones() -> None:
    call, _ = read(
        {
            sc.GEN_AI_PROVIDER_NAME: "anthropic",
            sc.GEN_AI_SYSTEM: "openai",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 10,
            sc.GEN_AI_USAGE_PROMPT_TOKENS: 99,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 20,
            sc.GEN_AI_USAGE_COMPLETION_TOKENS: 98,
            sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 5,
            sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: 97,
        }
    )
    assert call.provider == "anthropic"
    assert (call.input_tokens, call.output_tokens, call.cache_creation_tokens) == (10, 20, 5)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("az.ai.openai", "azure.ai.openai"),
        ("vertex_ai", "gcp.vertex_ai"),
        ("gemini", "gcp.gemini"),
        ("az.ai.inference", "azure.ai.inference"),
    ],
)
def test_renamed_provider_values(old: str, new: str) -> None:
    assert read({sc.GEN_AI_PROVIDER_NAME: old})[0].provider == new
    assert read({sc.GEN_AI_SYSTEM: old})[0].provider == new


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {sc.GEN_AI_REQUEST_MODEL: "gpt-4o", sc.GEN_AI_USAGE_INPUT_TOKENS: 10},
        {sc.GEN_AI_OPERATION_NAME: "execute_tool", sc.GEN_AI_USAGE_INPUT_TOKENS: 10},
        {sc.GEN_AI_OPERATION_NAME: "invoke_agent"},
        {sc.GEN_AI_OPERATION_NAME: "Chat"},
        {sc.GEN_AI_OPERATION_NAME: ["chat"]},
        {sc.GEN_AI_OPERATION_NAME: ("chat",)},
        {sc.GEN_AI_OPERATION_NAME: 1},
        {sc.GEN_AI_OPERATION_NAME: None},
    ],
)
def test_spans_that_are_not_llm_calls(attributes: dict[str, Any]) -> None:
    assert read_call(attributes, max_tokens=MAX) == (None, [])
    assert is_llm_call(attributes) is False


@pytest.mark.parametrize("operation", sorted(sc.PRICED_OPERATIONS))
def test_priced_operations(operation: str) -> None:
    call, _ = read_call({sc.GEN_AI_OPERATION_NAME: operation}, max_tokens=MAX)
    assert call is not None
    assert call.operation == operation
    assert is_llm_call({sc.GEN_AI_OPERATION_NAME: operation})


# --- dialects -----------------------------------------------------------------------------------


def test_exclusive_cache_counts_are_made_inclusive() -> None:
    # Anthropic's raw input_tokens exclude the cache: 100 uncached + 1_000 read + 500 written.
    call, rejected = read(
        {
            sc.GEN_AI_USAGE_INPUT_TOKENS: 100,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 1_000,
            sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 500,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 10,
        }
    )
    assert rejected == []
    assert call.input_tokens == 1_600
    assert (call.cache_read_tokens, call.cache_creation_tokens) == (1_000, 500)


def test_inclusive_cache_counts_are_left_alone() -> None:
    call, _ = read(
        {sc.GEN_AI_USAGE_INPUT_TOKENS: 2_000, sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 1_500}
    )
    assert call.input_tokens == 2_000
    # Exactly equal: every input token came from the cache, nothing is added.
    call, _ = read(
        {sc.GEN_AI_USAGE_INPUT_TOKENS: 1_500, sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 1_500}
    )
    assert call.input_tokens == 1_500


def test_both_dialects_cost_the_same() -> None:
    common = {
        sc.GEN_AI_PROVIDER_NAME: "anthropic",
        sc.GEN_AI_REQUEST_MODEL: "claude-sonnet-4-5",
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 100,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 8_000,
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 2_000,
    }
    exclusive, _ = read({**common, sc.GEN_AI_USAGE_INPUT_TOKENS: 50})
    inclusive, _ = read({**common, sc.GEN_AI_USAGE_INPUT_TOKENS: 10_050})
    book = PriceBook()
    one = book.price(exclusive, 0)
    other = book.price(inclusive, 0)
    assert isinstance(one, Cost)
    assert isinstance(other, Cost)
    assert one == other
    # 50 x $3 + 8_000 x $0.3 + 2_000 x $3.75 + 100 x $15, per million: the cache once.
    assert one.amount == Decimal("0.00015") + Decimal("0.0024") + Decimal("0.0075") + Decimal(
        "0.0015"
    )


def test_reasoning_beyond_output_is_added_to_output() -> None:
    # Gemini's candidates_token_count excludes thoughts.
    call, _ = read(
        {sc.GEN_AI_USAGE_OUTPUT_TOKENS: 100, sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 400}
    )
    assert (call.output_tokens, call.reasoning_tokens) == (500, 400)
    call, _ = read(
        {sc.GEN_AI_USAGE_OUTPUT_TOKENS: 500, sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 400}
    )
    assert call.output_tokens == 500


def test_parts_summing_past_max_tokens_are_absurd() -> None:
    call, rejected = read(
        {
            sc.GEN_AI_USAGE_INPUT_TOKENS: 10,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 900,
            sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 900,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 10,
            sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 995,
        },
        max_tokens=1_000,
    )
    assert call.input_tokens is None
    assert call.output_tokens is None
    assert rejected == [
        Rejected(sc.GEN_AI_USAGE_INPUT_TOKENS, "absurd"),
        Rejected(sc.GEN_AI_USAGE_OUTPUT_TOKENS, "absurd"),
    ]
    assert call.usage_rejected


# --- rejected values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("12", "wrong_type"),
        (True, "wrong_type"),
        ([1, 2], "wrong_type"),
        ((1,), "wrong_type"),
        (Decimal(5), "wrong_type"),
        (-1, "negative"),
        (-0.5, "negative"),
        (float("nan"), "not_finite"),
        (float("inf"), "not_finite"),
        (float("-inf"), "not_finite"),
        (1.5, "not_integer"),
        (MAX + 1, "absurd"),
        (1e300, "absurd"),
        (10**400, "absurd"),
    ],
)
def test_rejected_token_values(value: Any, reason: str) -> None:
    call, rejected = read({sc.GEN_AI_USAGE_OUTPUT_TOKENS: value, sc.GEN_AI_USAGE_INPUT_TOKENS: 5})
    assert rejected == [Rejected(sc.GEN_AI_USAGE_OUTPUT_TOKENS, reason)]
    assert call.output_tokens is None
    assert call.input_tokens == 5
    assert call.usage_rejected is True


def test_accepted_token_values() -> None:
    call, rejected = read(
        {
            sc.GEN_AI_USAGE_INPUT_TOKENS: 7.0,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: MAX,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 0,
        }
    )
    assert rejected == []
    assert call.input_tokens == 7
    assert type(call.input_tokens) is int
    assert call.output_tokens == MAX
    assert call.cache_read_tokens == 0


def test_a_deprecated_name_is_reported_by_its_own_name() -> None:
    _, rejected = read({sc.GEN_AI_USAGE_PROMPT_TOKENS: -3})
    assert rejected == [Rejected(sc.GEN_AI_USAGE_PROMPT_TOKENS, "negative")]


def test_other_rejected_values() -> None:
    call, rejected = read(
        {
            sc.GEN_AI_PROVIDER_NAME: 3,
            sc.GEN_AI_REQUEST_MODEL: ["gpt-4o"],
            sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: -1.0,
            sc.USAGE_COST: 100_001,
            sc.GEN_AI_USAGE_INPUT_TOKENS: 1,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 1,
        }
    )
    assert sorted(rejected) == sorted(
        [
            Rejected(sc.GEN_AI_PROVIDER_NAME, "wrong_type"),
            Rejected(sc.GEN_AI_REQUEST_MODEL, "wrong_type"),
            Rejected(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, "negative"),
            Rejected(sc.USAGE_COST, "absurd"),
        ]
    )
    assert call.provider is None
    assert call.request_model is None
    assert call.time_to_first_chunk is None
    assert call.provider_cost is None
    # None of those is a token count: the usage itself is fine.
    assert call.usage_rejected is False


def test_time_to_first_chunk_too_large_for_a_float() -> None:
    call, rejected = read({sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: 10**400})
    assert rejected == [Rejected(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, "absurd")]
    assert call.time_to_first_chunk is None


def test_provider_cost_is_exact() -> None:
    call, _ = read({sc.GEN_AI_USAGE_COST_AMOUNT: 0.001615, sc.GEN_AI_USAGE_COST_SOURCE: "provider"})
    assert call.provider_cost == Decimal("0.001615")
    call, _ = read({sc.USAGE_COST: 3})
    assert call.provider_cost == Decimal(3)


# --- property: nothing breaks the reader --------------------------------------------------------

TOKEN_FIELDS = {
    # field: (current name, deprecated name)
    "input_tokens": (sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_PROMPT_TOKENS),
    "output_tokens": (sc.GEN_AI_USAGE_OUTPUT_TOKENS, sc.GEN_AI_USAGE_COMPLETION_TOKENS),
    "cache_read_tokens": (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, None),
    "cache_creation_tokens": (
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    ),
    "reasoning_tokens": (sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, None),
}
KEYS = [
    sc.GEN_AI_PROVIDER_NAME,
    sc.GEN_AI_SYSTEM,
    sc.GEN_AI_REQUEST_MODEL,
    sc.GEN_AI_RESPONSE_MODEL,
    sc.GEN_AI_REQUEST_STREAM,
    sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    sc.ERROR_TYPE,
    sc.GEN_AI_USAGE_COST_AMOUNT,
    sc.GEN_AI_USAGE_COST_SOURCE,
    sc.USAGE_COST,
    sc.OTEL_LLM_USAGE_MISSING,
    *(name for names in TOKEN_FIELDS.values() for name in names if name is not None),
]
REASONS = {"wrong_type", "negative", "not_finite", "not_integer", "absurd"}

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=2_000),
    st.integers(),
    st.sampled_from([10**8, 10**8 + 1, 10**20, 10**400, -(10**400)]),
    st.floats(),
    st.floats(min_value=0, max_value=5_000).map(math.floor).map(float),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, sys.float_info.max]),
    st.text(max_size=10),
    st.sampled_from(["", "openai", "anthropic", "gpt-4o-mini", "claude-sonnet-4-5", "provider"]),
    st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
    st.tuples(st.integers()),
    st.binary(max_size=3),
    st.decimals(allow_nan=True),
)
# Mostly a priced operation, otherwise anything.
operations = st.tuples(
    st.sampled_from([True, True, True, False]),
    st.sampled_from(sorted(sc.PRICED_OPERATIONS)),
    values,
).map(lambda drawn: drawn[1] if drawn[0] else drawn[2])
# Plausible values three times in four, so that many examples get as far as a price.
plausible = {
    sc.GEN_AI_PROVIDER_NAME: st.sampled_from(["openai", "anthropic", "az.ai.openai", "nope"]),
    sc.GEN_AI_REQUEST_MODEL: st.sampled_from(["gpt-4o-mini", "claude-sonnet-4-5", "o3", "nope"]),
    sc.GEN_AI_USAGE_COST_SOURCE: st.just("provider"),
    **{
        name: st.integers(min_value=0, max_value=300_000)
        for names in TOKEN_FIELDS.values()
        for name in names
        if name is not None
    },
}
attribute_dicts = st.fixed_dictionaries(
    {},
    optional={
        key: st.tuples(
            st.sampled_from([True, True, True, False]), plausible.get(key, values), values
        ).map(lambda drawn: drawn[1] if drawn[0] else drawn[2])
        for key in KEYS
    },
)


def _expected_reason(value: Any, max_tokens: int) -> str | None:
    """The specification of a token count's validity, independent of the implementation."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "wrong_type"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "not_finite"
    if value < 0:
        return "negative"
    if value != int(value):
        return "not_integer"
    if value > max_tokens:
        return "absurd"
    return None


def _check_token_fields(
    attributes: dict[str, Any], call: Any, rejected: list[Rejected], max_tokens: int
) -> bool:
    """Each token count against its specification; True if any was rejected."""
    rejected_usage = False
    for field, (name, deprecated) in TOKEN_FIELDS.items():
        got = getattr(call, field)
        assert got is None or (type(got) is int and 0 <= got <= max_tokens), (field, got)
        used = name if attributes.get(name) is not None else deprecated
        value = attributes.get(used) if used is not None else None
        if value is None:
            assert got is None
            assert not any(r.attribute in (name, deprecated) for r in rejected)
            continue
        reason = _expected_reason(value, max_tokens)
        own = [r.reason for r in rejected if r.attribute == used]
        if reason is not None:
            rejected_usage = True
            assert own == [reason], (field, value)
            assert got is None
        elif field in ("input_tokens", "output_tokens"):
            # Made inclusive of its parts -- or rejected as absurd when that sum is too large,
            # under the current name whichever name was read.
            if got is None:
                rejected_usage = True
                assert Rejected(name, "absurd") in rejected
                assert own in ([], ["absurd"])
            else:
                assert own == []
                assert got >= int(value)
        else:
            assert own == []
            assert got == int(value)
    return rejected_usage


@settings(max_examples=600, deadline=None)
@given(
    attributes=attribute_dicts,
    operation=operations,
    max_tokens=st.sampled_from([1_000, MAX]),
)
def test_arbitrary_attributes_never_break_the_reader(
    attributes: dict[str, Any], operation: Any, max_tokens: int
) -> None:
    attributes = {sc.GEN_AI_OPERATION_NAME: operation, **attributes}
    call, rejected = read_call(attributes, max_tokens=max_tokens)
    if not (isinstance(operation, str) and operation in sc.PRICED_OPERATIONS):
        assert (call, rejected) == (None, [])
        return
    assert call is not None
    for entry in rejected:
        assert isinstance(entry, Rejected)
        assert entry.reason in REASONS
        assert entry.attribute in attributes or entry.attribute in (
            sc.GEN_AI_USAGE_INPUT_TOKENS,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS,
        )
    rejected_usage = _check_token_fields(attributes, call, rejected, max_tokens)
    # Never double-counted, never inconsistent: the parts are within their wholes.
    if call.input_tokens is not None:
        parts = (call.cache_read_tokens or 0) + (call.cache_creation_tokens or 0)
        assert call.input_tokens >= parts
    if call.output_tokens is not None:
        assert call.output_tokens >= (call.reasoning_tokens or 0)
    assert call.usage_rejected is rejected_usage
    assert call.usage_missing is (attributes.get(sc.OTEL_LLM_USAGE_MISSING) is True)
    for text in (call.provider, call.request_model, call.response_model, call.error_type):
        assert text is None or (isinstance(text, str) and text)
    ttfc = call.time_to_first_chunk
    assert ttfc is None or (type(ttfc) is float and math.isfinite(ttfc) and ttfc >= 0)
    cost = call.provider_cost
    assert cost is None or (isinstance(cost, Decimal) and cost.is_finite() and 0 <= cost <= 100_000)
    # Whatever was read can be priced or refused, never crash the book.
    priced = PriceBook().price(call, 0)
    event(f"priced: {type(priced).__name__} {getattr(priced, 'reason', '')}")
    if isinstance(priced, Cost):
        assert priced.amount >= 0
        for part in (priced.input, priced.cache_read, priced.cache_write, priced.output):
            assert part is None or part >= 0
    else:
        assert isinstance(priced, Unpriced)
        assert priced.reason in {
            "unknown_provider",
            "unknown_model",
            "missing_model",
            "missing_usage",
            "invalid_usage",
        }


# --- the fast path: the full reader's answer, or none at all -------------------------------------

# The common form: what otel-llm's instrumentors and llm_call write.
COMMON = {
    sc.GEN_AI_OPERATION_NAME: "chat",
    sc.GEN_AI_PROVIDER_NAME: "openai",
    sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
    sc.SERVER_ADDRESS: "api.openai.com",
    sc.SERVER_PORT: 443,
    sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
    sc.GEN_AI_RESPONSE_ID: "chatcmpl-1",
    sc.GEN_AI_RESPONSE_FINISH_REASONS: ["stop"],
    sc.GEN_AI_USAGE_INPUT_TOKENS: 1_200,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 400,
    sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 0,
}


@pytest.mark.parametrize(
    "more",
    [
        {},
        {sc.GEN_AI_REQUEST_STREAM: True, sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: 0.25},
        {sc.ERROR_TYPE: "openai.RateLimitError"},
        {sc.OTEL_LLM_USAGE_MISSING: True},
        {sc.GEN_AI_PROVIDER_NAME: "az.ai.openai"},  # renamed
        {sc.GEN_AI_PROVIDER_NAME: "", sc.GEN_AI_REQUEST_MODEL: "", sc.ERROR_TYPE: ""},  # unset
        # Our own estimate, exported and read again (the collector): not a provider's cost.
        {sc.GEN_AI_USAGE_COST_AMOUNT: 0.0004, sc.GEN_AI_USAGE_COST_SOURCE: "estimated"},
    ],
)
def test_the_common_form_takes_the_fast_path(more: dict[str, Any]) -> None:
    attributes = {**COMMON, **more}
    fast = read_call_fast(attributes, max_tokens=MAX)
    assert fast is not None
    assert (fast, []) == read_call_full(attributes, max_tokens=MAX)


@pytest.mark.parametrize(
    ("more", "scope"),
    [
        ({sc.GEN_AI_PROVIDER_NAME: ""}, None),  # -- so gen_ai.system would be read
        ({sc.GEN_AI_USAGE_INPUT_TOKENS: -1}, None),
        ({sc.GEN_AI_USAGE_OUTPUT_TOKENS: 2.0}, None),
        ({sc.GEN_AI_USAGE_OUTPUT_TOKENS: True}, None),
        ({sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: 5}, None),
        ({sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: 1}, None),
        ({sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: math.nan}, None),
        ({sc.GEN_AI_REQUEST_MODEL: 4}, None),
        ({sc.GEN_AI_USAGE_COST_AMOUNT: 0.01, sc.GEN_AI_USAGE_COST_SOURCE: "provider"}, None),
        ({sc.USAGE_COST: 0.01}, None),
        ({"telemetry.sdk.name": "openlit"}, None),
        ({}, "opentelemetry.instrumentation.openai_v2"),
    ],
)
def test_anything_unusual_is_left_to_the_full_reader(more: dict[str, Any], scope: Any) -> None:
    attributes = {**COMMON, **more}
    if more.get(sc.GEN_AI_PROVIDER_NAME) == "":
        attributes[sc.GEN_AI_SYSTEM] = "anthropic"
    assert read_call_fast(attributes, max_tokens=1_000_000, scope=scope) is None
    # The dispatcher still reads it, as the full reader does.
    assert read_call(attributes, max_tokens=1_000_000, scope=scope) == read_call_full(
        attributes, max_tokens=1_000_000, scope=scope
    )


# Plausible values fifteen times in sixteen: many spans in the common form, a few just off it.
nearly_common_dicts = st.fixed_dictionaries(
    {},
    optional={
        key: st.tuples(
            st.sampled_from([True] * 15 + [False]), plausible.get(key, values), values
        ).map(lambda drawn: drawn[1] if drawn[0] else drawn[2])
        for key in KEYS
    },
)


@settings(max_examples=500, deadline=None)
@given(
    attributes=st.one_of(attribute_dicts, nearly_common_dicts),
    operation=operations,
    max_tokens=st.sampled_from([1_000, MAX]),
    scope=st.sampled_from([None, "otel_llm", "otel_llm.instrumentation", "openlit.otel.tracing"]),
    marker=st.sampled_from([None, "openlit", "opentelemetry"]),
)
def test_the_fast_path_reads_what_the_full_reader_reads(
    attributes: dict[str, Any], operation: Any, max_tokens: int, scope: Any, marker: Any
) -> None:
    attributes = {sc.GEN_AI_OPERATION_NAME: operation, **attributes}
    if marker is not None:
        attributes["telemetry.sdk.name"] = marker
    fast = read_call_fast(attributes, max_tokens=max_tokens, scope=scope)
    full = read_call_full(attributes, max_tokens=max_tokens, scope=scope)
    event(f"fast path: {fast is not None}")
    if fast is not None:
        assert (fast, []) == full
    assert read_call(attributes, max_tokens=max_tokens, scope=scope) == full


# --- property: read, then price, equals genai-prices on the provider's own numbers --------------

KNOWN = [
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("openai", "o3-mini"),
    ("perplexity", "sonar-deep-research"),
    ("perplexity", "sonar"),
]


@settings(max_examples=300, deadline=None)
@given(
    known=st.sampled_from(KNOWN),
    input_parts=st.tuples(st.integers(0, 400_000), st.integers(0, 200_000), st.integers(0, 50_000)),
    output_parts=st.tuples(st.integers(0, 20_000), st.integers(0, 20_000)),
    exclusive=st.booleans(),
)
def test_read_and_priced_equals_genai_prices(
    known: tuple[str, str],
    input_parts: tuple[int, int, int],
    output_parts: tuple[int, int],
    exclusive: bool,
) -> None:
    """A span in either dialect is priced as genai-prices prices the provider's usage."""
    import genai_prices
    from genai_prices import data_snapshot

    provider_id, model_id = known
    uncached, cache_read, cache_write = input_parts
    visible_output, reasoning = output_parts
    total_input = uncached + cache_read + cache_write
    total_output = visible_output + reasoning
    # The exclusive dialect only reads unambiguously when the parts exceed the reported whole.
    exclusive_input = exclusive and cache_read + cache_write > uncached
    exclusive_output = exclusive and reasoning > visible_output
    call, rejected = read(
        {
            sc.GEN_AI_PROVIDER_NAME: provider_id,
            sc.GEN_AI_REQUEST_MODEL: model_id,
            sc.GEN_AI_USAGE_INPUT_TOKENS: uncached if exclusive_input else total_input,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: visible_output if exclusive_output else total_output,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: cache_read,
            sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: cache_write,
            sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: reasoning,
        }
    )
    assert rejected == []
    assert (call.input_tokens, call.output_tokens) == (total_input, total_output)
    cost = PriceBook().price(call, 0)
    assert isinstance(cost, Cost)
    snapshot = data_snapshot.get_snapshot()
    provider = data_snapshot.find_provider_by_id(snapshot.providers, provider_id)
    assert provider is not None
    model = provider.find_model(model_id)
    assert model is not None
    usage = genai_prices.Usage(
        input_tokens=total_input,
        output_tokens=total_output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_reasoning_tokens=reasoning,
    )
    reference = model.calc_price(
        usage, provider, genai_request_timestamp=datetime(1970, 1, 1, tzinfo=UTC)
    )
    assert cost.amount == reference.total_price
