"""Spans of other instrumentation libraries, read in their own dialects (semconv/dialects.yaml).

Each attribute set below is what the library's code writes for one call, read from the released
wheels (paths are inside the wheel; line numbers of the version named). Two calls throughout:

- OpenAI chat: gpt-4o, 2_000 prompt tokens of which 1_500 cached, 300 completion tokens.
  gpt-4o: $2.50 input, $1.25 cached input, $10 output per million:
  500 x 2.5 + 1_500 x 1.25 + 300 x 10 = $0.006125.
- Anthropic messages: claude-sonnet-4-5, 50 uncached input tokens, 8_000 read from the cache,
  2_000 written to it, 100 output tokens. $3 input, $0.30 cache read, $3.75 cache write,
  $15 output per million: 50 x 3 + 8_000 x 0.3 + 2_000 x 3.75 + 100 x 15 = $0.01155.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_llm import _dialects_table, dialects
from otel_llm import _semconv as sc
from otel_llm.call import LLMCall, Rejected, is_llm_call, read_call
from otel_llm.pricing import Cost, PriceBook

MAX = 100_000_000
SEMCONV = Path(__file__).parent.parent / "semconv"

OPENAI_COST = Decimal("0.006125")
ANTHROPIC_COST = Decimal("0.01155")

# The same calls in the conventions' own names: what every dialect must read as.
CANONICAL_OPENAI = {
    sc.GEN_AI_OPERATION_NAME: "chat",
    sc.GEN_AI_PROVIDER_NAME: "openai",
    sc.GEN_AI_REQUEST_MODEL: "gpt-4o",
    sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-2024-08-06",
    sc.GEN_AI_USAGE_INPUT_TOKENS: 2_000,
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 1_500,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
}
CANONICAL_ANTHROPIC = {
    sc.GEN_AI_OPERATION_NAME: "chat",
    sc.GEN_AI_PROVIDER_NAME: "anthropic",
    sc.GEN_AI_REQUEST_MODEL: "claude-sonnet-4-5",
    sc.GEN_AI_RESPONSE_MODEL: "claude-sonnet-4-5-20250929",
    sc.GEN_AI_USAGE_INPUT_TOKENS: 10_050,
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 8_000,
    sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 2_000,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: 100,
}

# --- official OpenTelemetry ---------------------------------------------------------------------

# opentelemetry-instrumentation-openai-v2 2.4b0, default (legacy) mode: request attributes from
# openai_v2/utils.py:224-246 (gen_ai.system, not gen_ai.provider.name), response attributes from
# openai_v2/patch.py:451-488. It writes no cache-read count (see the test below).
OTEL_OPENAI_V2 = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.system": "openai",
    "server.address": "api.openai.com",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.usage.input_tokens": 2_000,
    "gen_ai.usage.output_tokens": 300,
}
# opentelemetry-instrumentation-genai-openai 1.3b0: genai/openai/utils.py:72-91 fills the
# invocation (input = prompt_tokens, cache read = cached_tokens); util-genai 1.3b0
# _inference_invocation.py:716-767 writes it, the cache write under the new repository's name.
OTEL_GENAI_OPENAI = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.provider.name": "openai",
    "server.address": "api.openai.com",
    "server.port": 443,
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.usage.input_tokens": 2_000,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 1_500,
}

# --- Traceloop OpenLLMetry ----------------------------------------------------------------------

# opentelemetry-instrumentation-openai 0.62.4: operation at span start (shared/chat_wrappers.py:94),
# provider from the base URL (shared/__init__.py:143-145), usage (shared/__init__.py:274-290).
OPENLLMETRY_OPENAI = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.openai.api_base": "https://api.openai.com/v1/",
    "gen_ai.usage.total_tokens": 2_300,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.input_tokens": 2_000,
    "gen_ai.usage.cache_read.input_tokens": 1_500,
    "gen_ai.usage.reasoning_tokens": 0,  # shared/chat_wrappers.py:350-354
}
# opentelemetry-instrumentation-anthropic 0.62.4: span start anthropic/__init__.py:555-561;
# usage __init__.py:341-350 and 409-422: input_tokens = input + cache read + cache creation.
OPENLLMETRY_ANTHROPIC = {
    "gen_ai.provider.name": "anthropic",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.response.model": "claude-sonnet-4-5-20250929",
    "gen_ai.response.id": "msg_1",
    "gen_ai.usage.input_tokens": 10_050,
    "gen_ai.usage.output_tokens": 100,
    "gen_ai.usage.total_tokens": 10_150,
    "gen_ai.usage.cache_read.input_tokens": 8_000,
    "gen_ai.usage.cache_creation.input_tokens": 2_000,
}
# opentelemetry-instrumentation-openai 0.47.5 (semantic-conventions-ai 0.4.13): no operation
# name, llm.request.type instead (shared/chat_wrappers.py:59, 87); gen_ai.system
# (shared/__init__.py:110-112); usage under the old names (shared/__init__.py:221-237).
OPENLLMETRY_OPENAI_LEGACY = {
    "llm.request.type": "chat",
    "gen_ai.system": "openai",
    "gen_ai.openai.api_base": "https://api.openai.com/v1/",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "llm.usage.total_tokens": 2_300,
    "gen_ai.usage.completion_tokens": 300,
    "gen_ai.usage.prompt_tokens": 2_000,
    "gen_ai.usage.cache_read_input_tokens": 1_500,
}
# opentelemetry-instrumentation-anthropic 0.47.5: gen_ai.system "Anthropic" and request type
# "completion" even for Messages (anthropic/__init__.py:531-537); usage __init__.py:319-333 and
# 390-402: prompt_tokens = input + cache read + cache creation.
OPENLLMETRY_ANTHROPIC_LEGACY = {
    "gen_ai.system": "Anthropic",
    "llm.request.type": "completion",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.response.model": "claude-sonnet-4-5-20250929",
    "gen_ai.usage.prompt_tokens": 10_050,
    "gen_ai.usage.completion_tokens": 100,
    "llm.usage.total_tokens": 10_150,
    "gen_ai.usage.cache_read_input_tokens": 8_000,
    "gen_ai.usage.cache_creation_input_tokens": 2_000,
}

# --- Arize OpenInference ------------------------------------------------------------------------

# openinference-instrumentation-openai 0.1.66: kind and system (_request.py:192-196), provider
# from the host (_request.py:167-182), model and usage (_response_attributes_extractor.py:172-174,
# 310-340).
OPENINFERENCE_OPENAI = {
    "openinference.span.kind": "LLM",
    "llm.system": "openai",
    "llm.provider": "openai",
    "llm.invocation_parameters": '{"model": "gpt-4o"}',
    "input.value": '{"messages": []}',
    "input.mime_type": "application/json",
    "llm.model_name": "gpt-4o-2024-08-06",
    "llm.token_count.total": 2_300,
    "llm.token_count.prompt": 2_000,
    "llm.token_count.completion": 300,
    "llm.token_count.prompt_details.cache_read": 1_500,
    "llm.token_count.prompt_details.audio": 0,
    "llm.token_count.completion_details.reasoning": 0,
    "llm.token_count.completion_details.audio": 0,
}
# openinference-instrumentation-anthropic 3.1.0: kind, provider, system (_wrappers.py:872-906),
# model names (_wrappers.py:919-930), usage (_utils.py:32-58): prompt = input + cache creation
# + cache read; the cache counts are written only when non-zero.
OPENINFERENCE_ANTHROPIC = {
    "openinference.span.kind": "LLM",
    "llm.provider": "anthropic",
    "llm.system": "anthropic",
    "llm.model_name": "claude-sonnet-4-5-20250929",
    "llm.request.model_name": "claude-sonnet-4-5",
    "llm.response.model_name": "claude-sonnet-4-5-20250929",
    "llm.token_count.prompt": 10_050,
    "llm.token_count.completion": 100,
    "llm.token_count.prompt_details.cache_read": 8_000,
    "llm.token_count.prompt_details.cache_write": 2_000,
    "llm.token_count.total": 10_150,
}

# --- OpenLIT ------------------------------------------------------------------------------------

# openlit 1.45.0: common attributes __helpers.py:921-941, usage and cost
# instrumentation/openai/utils.py:1046-1074 (prompt_tokens, inclusive).
OPENLIT_OPENAI = {
    "telemetry.sdk.name": "openlit",
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "server.address": "api.openai.com",
    "server.port": 443,
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "deployment.environment": "default",
    "service.name": "default",
    "gen_ai.request.stream": False,
    "gen_ai.server.time_between_tokens": 0,
    "gen_ai.server.time_to_first_token": 0.8,
    "gen_ai.sdk.version": "1.45.0",
    "gen_ai.usage.input_tokens": 2_000,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.client.token.usage": 2_300,
    "gen_ai.usage.cost": 0.006125,
    "gen_ai.usage.reasoning_tokens": 0,
    "gen_ai.usage.cache_read.input_tokens": 1_500,
    "gen_ai.usage.cache_creation.input_tokens": 0,
}
# instrumentation/anthropic/utils.py:577-593 and 686-708: input_tokens is Anthropic's raw,
# cache-EXCLUSIVE count; the cache counts beside it.
OPENLIT_ANTHROPIC = {
    "telemetry.sdk.name": "openlit",
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "anthropic",
    "server.address": "api.anthropic.com",
    "server.port": 443,
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.response.model": "claude-sonnet-4-5-20250929",
    "gen_ai.request.stream": False,
    "gen_ai.usage.input_tokens": 50,
    "gen_ai.usage.output_tokens": 100,
    "gen_ai.client.token.usage": 150,
    "gen_ai.usage.cost": 0.01155,
    "gen_ai.usage.cache_read.input_tokens": 8_000,
    "gen_ai.usage.cache_creation.input_tokens": 2_000,
}

OTEL_V2_SCOPE = "opentelemetry.instrumentation.openai_v2"
GENAI_OPENAI_SCOPE = "opentelemetry.instrumentation.genai.openai"
OPENLLMETRY_OPENAI_SCOPE = "opentelemetry.instrumentation.openai.v1"
OPENLLMETRY_ANTHROPIC_SCOPE = "opentelemetry.instrumentation.anthropic"
OPENINFERENCE_OPENAI_SCOPE = "openinference.instrumentation.openai"
OPENINFERENCE_ANTHROPIC_SCOPE = "openinference.instrumentation.anthropic"
OPENLIT_SCOPE = "openlit.otel.tracing"

# (case id, attributes, scope, dialect id, canonical twin, operation, expected cost)
CASES = [
    ("otel-genai-openai", OTEL_GENAI_OPENAI, GENAI_OPENAI_SCOPE, "otel", CANONICAL_OPENAI,
     "chat", OPENAI_COST),
    ("openllmetry-openai", OPENLLMETRY_OPENAI, OPENLLMETRY_OPENAI_SCOPE, "openllmetry",
     CANONICAL_OPENAI, "chat", OPENAI_COST),
    ("openllmetry-anthropic", OPENLLMETRY_ANTHROPIC, OPENLLMETRY_ANTHROPIC_SCOPE, "openllmetry",
     CANONICAL_ANTHROPIC, "chat", ANTHROPIC_COST),
    ("openllmetry-openai-0.47", OPENLLMETRY_OPENAI_LEGACY, OPENLLMETRY_OPENAI_SCOPE,
     "openllmetry", CANONICAL_OPENAI, "chat", OPENAI_COST),
    ("openllmetry-anthropic-0.47", OPENLLMETRY_ANTHROPIC_LEGACY, OPENLLMETRY_ANTHROPIC_SCOPE,
     "openllmetry", CANONICAL_ANTHROPIC, "text_completion", ANTHROPIC_COST),
    ("openinference-openai", OPENINFERENCE_OPENAI, OPENINFERENCE_OPENAI_SCOPE, "openinference",
     CANONICAL_OPENAI, "chat", OPENAI_COST),
    ("openinference-anthropic", OPENINFERENCE_ANTHROPIC, OPENINFERENCE_ANTHROPIC_SCOPE,
     "openinference", CANONICAL_ANTHROPIC, "chat", ANTHROPIC_COST),
    ("openlit-openai", OPENLIT_OPENAI, OPENLIT_SCOPE, "openlit", CANONICAL_OPENAI, "chat",
     OPENAI_COST),
    ("openlit-anthropic", OPENLIT_ANTHROPIC, OPENLIT_SCOPE, "openlit", CANONICAL_ANTHROPIC,
     "chat", ANTHROPIC_COST),
]  # fmt: skip

# Read without a scope (the processor does not pass it yet), the dialect comes from a marker
# attribute; the official library and OpenLLMetry 0.62 need none: they write canonical names.
MARKED = {"openllmetry-openai-0.47", "openllmetry-anthropic-0.47", "openinference-openai",
          "openinference-anthropic", "openlit-openai", "openlit-anthropic"}  # fmt: skip


def _read(attributes: dict[str, Any], scope: str | None = None) -> LLMCall:
    assert is_llm_call(attributes, scope)
    call, rejected = read_call(attributes, max_tokens=MAX, scope=scope)
    assert rejected == []
    assert call is not None
    return call


def _cost(call: LLMCall) -> Cost:
    cost = PriceBook().price(call, 0)
    assert isinstance(cost, Cost), cost
    return cost


def test_the_canonical_twins_cost_what_was_computed_by_hand() -> None:
    assert _cost(_read(CANONICAL_OPENAI)).amount == OPENAI_COST
    assert _cost(_read(CANONICAL_ANTHROPIC)).amount == ANTHROPIC_COST


@pytest.mark.parametrize("with_scope", [True, False], ids=["scope", "no-scope"])
@pytest.mark.parametrize(
    ("case", "attributes", "scope", "dialect", "twin", "operation", "expected"),
    CASES,
    ids=[case[0] for case in CASES],
)
def test_each_library_reads_as_its_canonical_twin(
    *,
    case: str,
    attributes: dict[str, Any],
    scope: str,
    dialect: str,
    twin: dict[str, Any],
    operation: str,
    expected: Decimal,
    with_scope: bool,
) -> None:
    call = _read(attributes, scope if with_scope else None)
    reference = _read(twin)
    assert call.operation == operation
    assert call.provider == reference.provider
    assert call.model == reference.model
    assert (call.input_tokens, call.output_tokens) == (
        reference.input_tokens,
        reference.output_tokens,
    )
    assert call.cache_read_tokens == reference.cache_read_tokens
    assert (call.cache_creation_tokens or 0) == (reference.cache_creation_tokens or 0)
    assert (call.reasoning_tokens or 0) == 0
    assert call.provider_cost is None
    assert call.dialect == (dialect if with_scope or case in MARKED else None)
    cost = _cost(call)
    assert cost.amount == expected
    assert cost == _cost(reference)


def test_official_openai_v2_writes_no_cache_count() -> None:
    """Its default chat path records only prompt_tokens (cached included) and no cached_tokens:
    the cached part can only be priced as uncached input, an over-estimate no reader can undo."""
    call = _read(OTEL_OPENAI_V2, OTEL_V2_SCOPE)
    assert call.dialect == "otel"
    assert (call.input_tokens, call.cache_read_tokens) == (2_000, None)
    # 2_000 x 2.5 + 300 x 10 per million, instead of $0.006125.
    assert _cost(call).amount == Decimal("0.008")
    # Canonical names: the same call without the scope, only not attributed to a dialect.
    unscoped = _read(OTEL_OPENAI_V2)
    assert unscoped.dialect is None
    assert _cost(unscoped) == _cost(call)


def test_openlit_anthropic_input_excludes_the_cache_even_when_it_is_the_larger_part() -> None:
    # 5_000 uncached + 1_000 read: the parts do not exceed the whole, so without knowing the
    # dialect the reader would take 5_000 as inclusive and under-count by the cache read.
    attributes = {
        **OPENLIT_ANTHROPIC,
        "gen_ai.usage.input_tokens": 5_000,
        "gen_ai.usage.cache_read.input_tokens": 1_000,
        "gen_ai.usage.cache_creation.input_tokens": 0,
    }
    for scope in (OPENLIT_SCOPE, None):
        call = _read(attributes, scope)
        assert (call.input_tokens, call.cache_read_tokens) == (6_000, 1_000)
    # 5_000 x 3 + 1_000 x 0.3 + 100 x 15 per million.
    assert _cost(call).amount == Decimal("0.0168")
    # The same numbers without the marker read as the conventions say: inclusive.
    unmarked = {k: v for k, v in attributes.items() if k != "telemetry.sdk.name"}
    assert _read(unmarked).input_tokens == 5_000
    # OpenLIT's OpenAI counts are inclusive: nothing added.
    call = _read({**OPENLIT_OPENAI, "gen_ai.usage.cache_read.input_tokens": 500}, OPENLIT_SCOPE)
    assert call.input_tokens == 2_000


def test_openlit_cost_is_exposed_but_never_used_as_the_price() -> None:
    wrong = {**OPENLIT_ANTHROPIC, "gen_ai.usage.cost": 99.0}  # its own, stale price table
    call = _read(wrong, OPENLIT_SCOPE)
    assert call.instrumentation_cost == Decimal("99.0")
    assert call.provider_cost is None
    assert _cost(call).amount == ANTHROPIC_COST
    call, rejected = read_call(
        {**OPENLIT_ANTHROPIC, "gen_ai.usage.cost": -1.0}, max_tokens=MAX, scope=OPENLIT_SCOPE
    )
    assert call is not None
    assert rejected == [Rejected("gen_ai.usage.cost", "negative")]
    assert call.instrumentation_cost is None
    assert call.usage_rejected is False
    # Outside the OpenLIT dialect, gen_ai.usage.cost is not read at all.
    unmarked = {k: v for k, v in OPENLIT_ANTHROPIC.items() if k != "telemetry.sdk.name"}
    assert _read(unmarked).instrumentation_cost is None


@pytest.mark.parametrize(("kind", "operation"), [("LLM", "chat"), ("EMBEDDING", "embeddings")])
def test_openinference_span_kinds(kind: str, operation: str) -> None:
    # openai/_request.py:156-161; embeddings name the model in embedding.model_name
    # (_response_attributes_extractor.py:213-222) and count only prompt tokens (:343-351).
    call = _read(
        {
            "openinference.span.kind": kind,
            "llm.system": "openai",
            "llm.provider": "openai",
            "embedding.model_name": "text-embedding-3-small",
            "llm.token_count.prompt": 1_000,
            "llm.token_count.total": 1_000,
        }
    )
    assert (call.operation, call.model, call.input_tokens) == (
        operation,
        "text-embedding-3-small",
        1_000,
    )


@pytest.mark.parametrize(
    ("attributes", "provider"),
    [
        ({"llm.provider": "azure", "llm.system": "openai"}, "azure.ai.openai"),
        ({"llm.provider": "aws", "llm.system": "anthropic"}, "aws.bedrock"),
        ({"llm.provider": "google", "llm.system": "anthropic"}, "gcp.gen_ai"),
        ({"llm.provider": "xai", "llm.system": "openai"}, "x_ai"),
        ({"llm.system": "openai"}, "openai"),  # a local base URL: no provider inferred
        ({"llm.system": "vertexai"}, "gcp.vertex_ai"),
    ],
)
def test_openinference_provider_values(attributes: dict[str, Any], provider: str) -> None:
    call = _read({"openinference.span.kind": "LLM", **attributes})
    assert call.provider == provider


@pytest.mark.parametrize(
    ("system", "provider"),
    [("Anthropic", "anthropic"), ("Azure", "azure.ai.openai"), ("AWS", "aws.bedrock"),
     ("openai", "openai"), ("OpenRouter", "openrouter")],
)  # fmt: skip
def test_openllmetry_legacy_provider_values(system: str, provider: str) -> None:
    call = _read({"llm.request.type": "chat", "gen_ai.system": system})
    assert call.provider == provider


# --- what is not a call, or not read ------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "scope"),
    [
        # Vercel AI SDK style: a dialect nobody mapped.
        ({"ai.model.id": "gpt-4o", "ai.usage.promptTokens": 10, "ai.usage.completionTokens": 5},
         None),
        # OpenInference spans that are not model calls, or no kind at all.
        ({"openinference.span.kind": "CHAIN", "llm.token_count.prompt": 10}, None),
        ({"openinference.span.kind": "RERANKER", "llm.token_count.prompt": 10}, None),
        ({"openinference.span.kind": "llm", "llm.token_count.prompt": 10}, None),
        ({"llm.model_name": "gpt-4o", "llm.token_count.prompt": 10}, None),
        ({"openinference.span.kind": ["LLM"], "llm.token_count.prompt": 10}, None),
        ({"openinference.span.kind": 1}, None),
        # OpenLLMetry request types that are not priced.
        ({"llm.request.type": "rerank", "gen_ai.usage.prompt_tokens": 10}, None),
        ({"llm.request.type": "unknown"}, None),
        ({"llm.request.type": None}, None),
        # A known scope without its marker, and a marker of another dialect under a known scope.
        ({"gen_ai.usage.prompt_tokens": 10}, OPENLLMETRY_OPENAI_SCOPE),
        ({"openinference.span.kind": "CHAIN"}, OPENINFERENCE_OPENAI_SCOPE),
        ({"openinference.span.kind": "LLM"}, OPENLLMETRY_ANTHROPIC_SCOPE),
        ({"llm.request.type": "chat"}, OPENLIT_SCOPE),
        # OpenLIT names the operation canonically: its marker alone is not a call.
        ({"telemetry.sdk.name": "openlit", "gen_ai.usage.input_tokens": 10}, OPENLIT_SCOPE),
        ({"telemetry.sdk.name": "openlit", "gen_ai.operation.name": "execute_tool"}, None),
    ],
)  # fmt: skip
def test_spans_that_are_not_calls_in_any_dialect(
    attributes: dict[str, Any], scope: str | None
) -> None:
    assert is_llm_call(attributes, scope) is False
    assert read_call(attributes, max_tokens=MAX, scope=scope) == (None, [])


def test_a_canonical_span_of_an_unknown_library_reads_no_dialect_names() -> None:
    attributes = {
        **CANONICAL_ANTHROPIC,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: None,
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: None,
        "gen_ai.usage.cache_read_input_tokens": 8_000,  # OpenLLMetry's old name
        "llm.token_count.prompt_details.cache_write": 2_000,  # OpenInference's
        "gen_ai.usage.cost": 1.0,  # OpenLIT's
        "telemetry.sdk.name": "opentelemetry",
    }
    for scope in (None, "com.example.llm"):
        call = _read(attributes, scope)
        assert call.dialect is None
        assert (call.cache_read_tokens, call.cache_creation_tokens) == (None, None)
        assert call.instrumentation_cost is None
        assert call.input_tokens == 10_050


def test_the_scope_wins_over_markers() -> None:
    # An OpenLIT-marked span from OpenLLMetry's scope is read as OpenLLMetry's: inclusive.
    attributes = {**OPENLIT_ANTHROPIC, "gen_ai.usage.input_tokens": 12_000}
    assert _read(attributes, OPENLLMETRY_ANTHROPIC_SCOPE).input_tokens == 12_000
    assert _read(attributes, OPENLIT_SCOPE).input_tokens == 22_000
    assert _read(attributes).input_tokens == 22_000  # by the marker


def test_canonical_names_win_over_dialect_names() -> None:
    call = _read({**OPENINFERENCE_OPENAI, sc.GEN_AI_USAGE_INPUT_TOKENS: 7})
    assert call.input_tokens == 1_507  # 7 < 1_500 cached: the cache is added to the whole
    call = _read({**OPENINFERENCE_OPENAI, sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini"})
    assert call.response_model == "gpt-4o-mini"


def test_bad_dialect_values_are_rejected_under_their_own_names() -> None:
    call, rejected = read_call(
        {**OPENINFERENCE_OPENAI, "llm.token_count.prompt": -5, "llm.model_name": 3},
        max_tokens=MAX,
    )
    assert call is not None
    assert sorted(rejected) == [
        Rejected("llm.model_name", "wrong_type"),
        Rejected("llm.token_count.prompt", "negative"),
    ]
    assert call.usage_rejected is True
    assert call.input_tokens is None


# --- the table and the code ---------------------------------------------------------------------


def _model() -> Any:
    return yaml.safe_load((SEMCONV / "dialects.yaml").read_text())


def test_the_generated_table_is_the_yaml() -> None:
    model = _model()
    assert model["version"] == 1
    assert model["dialects"] == _dialects_table.DIALECTS
    generated = Path(_dialects_table.__file__).read_text()
    assert generated == dialects.render(model), "run: python -m otel_llm.dialects"


def test_the_table_is_consistent_with_the_conventions() -> None:
    attributes = {entry["name"] for entry in yaml.safe_load(
        (SEMCONV / "attributes.yaml").read_text())["attributes"]}  # fmt: skip
    constants = {v for k, v in vars(sc).items() if k.isupper() and isinstance(v, str)}
    scopes: list[str] = []
    for dialect in dialects.DIALECTS:
        assert dialect.id
        assert dialect.scopes, dialect.id
        scopes.extend(dialect.scopes)
        names = dialect.dialect_names()
        # A dialect adds names of its own; canonical names are read for every span anyway,
        # and _semconv.py holds the conventions' names only.
        assert not names & attributes, dialect.id
        assert not names & constants, dialect.id
        for operation in dialect.operations.values():
            assert operation in sc.PRICED_OPERATIONS, (dialect.id, operation)
        for value in dialect.provider_values.values():
            assert value not in sc.PROVIDER_RENAMED, (dialect.id, value)
            assert value == value.lower(), (dialect.id, value)
        for provider in dialect.input_includes_cache_by_provider:
            assert provider not in sc.PROVIDER_RENAMED
        # Every span of a dialect that names no operation must be detectable without a scope.
        if dialect.operation_attribute is None:
            assert dialect.detect_attribute is not None or dialect.dialect_names() == set()
    assert len(scopes) == len(set(scopes))
    assert set(dialects.BY_SCOPE) == set(scopes)
    # The official library writes the conventions' names: nothing to add.
    assert dialects.BY_ID["otel"].dialect_names() == set()


def test_every_dialect_has_a_case_here() -> None:
    assert {case[3] for case in CASES} == set(dialects.BY_ID)
    for dialect in dialects.DIALECTS:
        assert dialect.id in {case[3] for case in CASES if case[2] in dialect.scopes}


# --- property: no dialect double-counts or drops the cache --------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    dialect=st.sampled_from([d for d in dialects.DIALECTS if d.operation_attribute]),
    uncached=st.integers(0, 400_000),
    cache_read=st.integers(0, 200_000),
    cache_write=st.integers(0, 50_000),
    inclusive=st.booleans(),
    with_scope=st.booleans(),
)
def test_dialect_tokens_are_read_once(
    *,
    dialect: dialects.Dialect,
    uncached: int,
    cache_read: int,
    cache_write: int,
    inclusive: bool,
    with_scope: bool,
) -> None:
    """Whatever the counts, a dialect's parts are within its whole and counted once."""
    assert dialect.operation_attribute is not None
    marker = next(v for v, op in dialect.operations.items() if op == "chat")
    reported = uncached + cache_read + cache_write
    attributes = {
        dialect.operation_attribute: marker,
        dialect.input_names[-1]: reported if inclusive else uncached,
        dialect.cache_read_names[-1]: cache_read,
        dialect.cache_creation_names[-1]: cache_write,
    }
    call, rejected = read_call(
        attributes, max_tokens=MAX, scope=dialect.scopes[0] if with_scope else None
    )
    assert rejected == []
    assert call is not None
    assert call.dialect == dialect.id
    assert (call.cache_read_tokens, call.cache_creation_tokens) == (cache_read, cache_write)
    assert call.input_tokens is not None
    assert call.input_tokens >= cache_read + cache_write
    if inclusive or cache_read + cache_write > uncached:
        # An inclusive count is taken as is; an exclusive one only when the parts exceed it
        # (these dialects are inclusive, so a smaller exclusive count is not theirs).
        assert call.input_tokens == reported
