"""PriceBook: hand-computed costs, name normalisation, overrides, refusals, exactness, bounds.

Prices below are literals copied from genai-prices' bundled snapshot (0.2.3); the first test
checks they are still what the snapshot says, so a data update fails loudly in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from genai_prices import data_snapshot

from otel_llm import _semconv as sc
from otel_llm.call import LLMCall, Rejected, read_call
from otel_llm.pricing import Cost, OverrideError, PriceBook, PriceOverride, Unpriced, load_overrides
from otel_llm.pricing.overrides import parse_overrides

M = Decimal(1_000_000)
# A fixed instant (2026-01-15 12:00 UTC) so time-dependent prices do not depend on the clock.
START_NS = int(datetime(2026, 1, 15, 12, tzinfo=UTC).timestamp()) * 1_000_000_000

# $/MTok from the snapshot:
GPT_4O_MINI = {"input": Decimal("0.15"), "cache_read": Decimal("0.075"), "output": Decimal("0.6")}
GPT_4O = {"input": Decimal("2.5"), "cache_read": Decimal("1.25"), "output": Decimal("10")}
# claude-sonnet-4-5: tiered, every rate switches when the call's input exceeds 200_000 tokens.
SONNET_45 = {
    "input": Decimal(3),
    "cache_write": Decimal("3.75"),
    "cache_read": Decimal("0.3"),
    "output": Decimal(15),
}
SONNET_45_ABOVE_200K = {
    "input": Decimal(6),
    "cache_write": Decimal("7.5"),
    "cache_read": Decimal("0.6"),
    "output": Decimal("22.5"),
}
CLAUDE_35_SONNET = {
    "input": Decimal(3),
    "cache_write": Decimal("3.75"),
    "cache_read": Decimal("0.3"),
    "output": Decimal(15),
}
O3_MINI = {"input": Decimal("1.1"), "cache_read": Decimal("0.55"), "output": Decimal("4.4")}
# perplexity sonar-deep-research prices reasoning separately; sonar charges per request.
DEEP_RESEARCH = {"input": Decimal(2), "output": Decimal(8), "reasoning": Decimal(3)}
SONAR = {"input": Decimal(1), "output": Decimal(1), "requests_kcount": Decimal(12)}
EMBEDDING_3_SMALL = {"input": Decimal("0.02")}
# openai o3: $10/$40 (cache read $0.5) until 2025-06-10, then $2/$8 (cache read $0.5).
O3_BEFORE = {"input": Decimal(10), "cache_read": Decimal("0.5"), "output": Decimal(40)}
O3_AFTER = {"input": Decimal(2), "cache_read": Decimal("0.5"), "output": Decimal(8)}


def _model(provider_id: str, model_ref: str) -> Any:
    snapshot = data_snapshot.get_snapshot()
    provider = data_snapshot.find_provider_by_id(snapshot.providers, provider_id)
    assert provider is not None
    model = provider.find_model(model_ref, all_providers=snapshot.providers)
    assert model is not None, model_ref
    return model


def test_the_literals_are_the_snapshot_prices() -> None:
    mini = _model("openai", "gpt-4o-mini").prices
    assert (mini.input_mtok, mini.cache_read_mtok, mini.output_mtok) == tuple(GPT_4O_MINI.values())
    assert mini.cache_write_mtok is None
    assert mini.output_reasoning_mtok is None
    gpt4o = _model("openai", "gpt-4o").prices
    assert (gpt4o.input_mtok, gpt4o.cache_read_mtok, gpt4o.output_mtok) == tuple(GPT_4O.values())
    sonnet = _model("anthropic", "claude-sonnet-4-5").prices
    for key, price_key in [
        ("input", "input_mtok"),
        ("cache_write", "cache_write_mtok"),
        ("cache_read", "cache_read_mtok"),
        ("output", "output_mtok"),
    ]:
        tiered = getattr(sonnet, price_key)
        assert tiered.base == SONNET_45[key]
        assert [(t.start, t.price) for t in tiered.tiers] == [(200_000, SONNET_45_ABOVE_200K[key])]
    o3_mini = _model("openai", "o3-mini").prices
    assert (o3_mini.input_mtok, o3_mini.cache_read_mtok, o3_mini.output_mtok) == tuple(
        O3_MINI.values()
    )
    assert o3_mini.output_reasoning_mtok is None
    deep = _model("perplexity", "sonar-deep-research").prices
    assert (deep.input_mtok, deep.output_mtok, deep.output_reasoning_mtok) == tuple(
        DEEP_RESEARCH.values()
    )
    sonar = _model("perplexity", "sonar").prices
    assert (sonar.input_mtok, sonar.output_mtok, sonar.requests_kcount) == tuple(SONAR.values())
    embedding = _model("openai", "text-embedding-3-small").prices
    assert embedding.input_mtok == EMBEDDING_3_SMALL["input"]
    assert embedding.output_mtok is None
    for provider_id, ref in [
        ("anthropic", "claude-3-5-sonnet-20241022"),
        ("aws", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
        ("google", "claude-3-5-sonnet"),
    ]:
        claude = _model(provider_id, ref).prices
        assert (
            claude.input_mtok,
            claude.cache_write_mtok,
            claude.cache_read_mtok,
            claude.output_mtok,
        ) == tuple(CLAUDE_35_SONNET.values())
    o3 = _model("openai", "o3").prices
    assert [str(c.constraint.start_date) if c.constraint else None for c in o3] == [
        None,
        "2025-06-10",
    ]
    for conditional, expected in zip(o3, (O3_BEFORE, O3_AFTER), strict=True):
        got = conditional.prices
        assert (got.input_mtok, got.cache_read_mtok, got.output_mtok) == tuple(expected.values())


def make_call(
    model: str | None = "gpt-4o-mini",
    provider: str | None = "openai",
    *,
    input_tokens: int | None = 1_000,
    output_tokens: int | None = 100,
    cache_read: int | None = None,
    cache_write: int | None = None,
    reasoning: int | None = None,
    operation: str = "chat",
    response_model: str | None = None,
    provider_cost: Decimal | None = None,
    usage_missing: bool = False,
    usage_rejected: bool = False,
) -> LLMCall:
    return LLMCall(
        operation=operation,
        provider=provider,
        request_model=model,
        response_model=response_model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_write,
        reasoning_tokens=reasoning,
        error_type=None,
        streaming=False,
        time_to_first_chunk=None,
        provider_cost=provider_cost,
        usage_missing=usage_missing,
        usage_rejected=usage_rejected,
    )


def priced(call: LLMCall, book: PriceBook | None = None, start_ns: int = START_NS) -> Cost:
    cost = (book or PriceBook()).price(call, start_ns)
    assert isinstance(cost, Cost), cost
    return cost


def unpriced(call: LLMCall, book: PriceBook | None = None) -> str:
    result = (book or PriceBook()).price(call, START_NS)
    assert isinstance(result, Unpriced), result
    return result.reason


def read_mini_chat(attributes: Mapping[str, Any]) -> tuple[LLMCall, list[Rejected]]:
    """The call the span reader reads from a gpt-4o-mini chat span with ``make_call``'s counts
    (1,000 input and 100 output tokens) and ``attributes`` added, with what it rejected."""
    call, rejected = read_call(
        {
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_PROVIDER_NAME: "openai",
            sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 1_000,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 100,
            **attributes,
        },
        max_tokens=10**8,
    )
    assert call is not None
    return call, rejected


# --- hand-computed costs ------------------------------------------------------------------------


def test_openai_cached_input_is_charged_at_the_cache_rate_once() -> None:
    cost = priced(
        make_call("gpt-4o-mini", input_tokens=10_000, output_tokens=500, cache_read=4_000)
    )
    # 6_000 uncached at 0.15, 4_000 cached at 0.075, 500 output at 0.6 ($/MTok)
    assert cost.input == Decimal("0.0009")
    assert cost.cache_read == Decimal("0.0003")
    assert cost.cache_write == 0
    assert cost.output == Decimal("0.0003")
    assert cost.request == 0
    assert cost.amount == Decimal("0.0015")
    assert cost.source == "local"
    assert (cost.provider_id, cost.model_id) == ("openai", "gpt-4o-mini")
    assert cost.price_data.startswith("genai-prices ")


def test_anthropic_cache_write_and_read() -> None:
    cost = priced(
        make_call(
            "claude-sonnet-4-5",
            "anthropic",
            input_tokens=12_000,
            output_tokens=800,
            cache_read=5_000,
            cache_write=3_000,
        )
    )
    # 4_000 x 3 + 5_000 x 0.3 + 3_000 x 3.75 + 800 x 15, all per million
    assert cost.input == 4_000 * SONNET_45["input"] / M == Decimal("0.012")
    assert cost.cache_read == Decimal("0.0015")
    assert cost.cache_write == Decimal("0.01125")
    assert cost.output == Decimal("0.012")
    assert cost.amount == Decimal("0.03675")


def test_reasoning_at_the_output_rate_without_a_reasoning_price() -> None:
    with_reasoning = priced(make_call("o3-mini", output_tokens=2_000, reasoning=1_500))
    without = priced(make_call("o3-mini", output_tokens=2_000))
    assert with_reasoning.output == without.output == 2_000 * O3_MINI["output"] / M
    assert with_reasoning.amount == Decimal("0.0011") + Decimal("0.0088")


def test_reasoning_at_its_own_price_when_the_model_has_one() -> None:
    cost = priced(
        make_call(
            "sonar-deep-research",
            "perplexity",
            input_tokens=0,
            output_tokens=2_000,
            reasoning=1_500,
        )
    )
    # 500 plain output at $8 + 1_500 reasoning at $3
    assert cost.output == Decimal("0.004") + Decimal("0.0045")


def test_a_request_fee() -> None:
    cost = priced(make_call("sonar", "perplexity", input_tokens=1_000, output_tokens=1_000))
    assert cost.request == Decimal("0.012")  # $12 per thousand requests
    assert cost.amount == Decimal("0.001") + Decimal("0.001") + Decimal("0.012")


def test_embeddings_without_output_tokens() -> None:
    cost = priced(make_call("text-embedding-3-small", operation="embeddings", output_tokens=None))
    assert cost.amount == 1_000 * EMBEDDING_3_SMALL["input"] / M == Decimal("0.00002")
    assert cost.output == 0
    # Only embeddings may omit the output count.
    assert unpriced(make_call("gpt-4o-mini", output_tokens=None)) == "missing_usage"


def test_tier_cliff_at_200k_input_tokens() -> None:
    below = priced(make_call("claude-sonnet-4-5", "anthropic", input_tokens=199_999))
    at = priced(make_call("claude-sonnet-4-5", "anthropic", input_tokens=200_000))
    above = priced(make_call("claude-sonnet-4-5", "anthropic", input_tokens=200_001))
    assert below.input == Decimal("0.599997")  # 199_999 x $3
    assert at.input == Decimal("0.6")
    assert above.input == Decimal("1.200006")  # every token at $6 past the threshold
    # The cliff applies to the output of the same call too: 100 x $15 vs 100 x $22.5.
    assert below.output == at.output == Decimal("0.0015")
    assert above.output == Decimal("0.00225")
    # ...and to cache reads, with the threshold on the call's total input.
    cached_above = priced(
        make_call("claude-sonnet-4-5", "anthropic", input_tokens=200_001, cache_read=150_000)
    )
    assert cached_above.cache_read == 150_000 * SONNET_45_ABOVE_200K["cache_read"] / M
    assert cached_above.input == 50_001 * SONNET_45_ABOVE_200K["input"] / M


# --- name normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model", "model_id"),
    [
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "openai/gpt-4o", "gpt-4o"),
        ("litellm", "openai/gpt-4o", "gpt-4o"),
        ("my-gateway", "openai/gpt-4o", "gpt-4o"),
        ("my-gateway", "OpenAI/gpt-4o-mini", "gpt-4o-mini"),
        (None, "gpt-4o", "gpt-4o"),
    ],
)
def test_openai_names(provider: str | None, model: str, model_id: str) -> None:
    cost = priced(make_call(model, provider, input_tokens=1_000_000, output_tokens=0))
    assert cost.model_id == model_id
    assert cost.amount == {"gpt-4o": GPT_4O, "gpt-4o-mini": GPT_4O_MINI}[model_id]["input"]


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("aws.bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
        ("aws.bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0"),
        (
            "aws.bedrock",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
            "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        ),
        ("gcp.vertex_ai", "claude-3-5-sonnet@20240620"),
        ("anthropic", "claude-3-5-sonnet-20241022"),
    ],
)
def test_claude_3_5_sonnet_names(provider: str, model: str) -> None:
    cost = priced(
        make_call(model, provider, input_tokens=2_000, output_tokens=1_000, cache_write=1_000)
    )
    assert "claude-3-5-sonnet" in (cost.model_id or "")
    # 1_000 x $3 + 1_000 x $3.75 + 1_000 x $15
    assert cost.amount == Decimal("0.003") + Decimal("0.00375") + Decimal("0.015")


def test_a_model_without_a_router_prefix_needs_a_known_provider() -> None:
    assert unpriced(make_call("gpt-4o", "my-gateway")) == "unknown_provider"
    assert unpriced(make_call("nobody/gpt-4o", "my-gateway")) == "unknown_provider"


@pytest.mark.parametrize(
    ("system", "model", "expected_provider_id"),
    [
        ("az.ai.openai", "gpt-4o", "azure"),
        ("vertex_ai", "claude-3-5-sonnet@20240620", "google"),
    ],
)
def test_deprecated_provider_names_through_the_call_reader(
    system: str, model: str, expected_provider_id: str
) -> None:
    call, rejected = read_call(
        {
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_SYSTEM: system,
            sc.GEN_AI_REQUEST_MODEL: model,
            sc.GEN_AI_USAGE_PROMPT_TOKENS: 1_000_000,
            sc.GEN_AI_USAGE_COMPLETION_TOKENS: 0,
        },
        max_tokens=10**8,
    )
    assert rejected == []
    assert call is not None
    assert call.provider == sc.PROVIDER_RENAMED[system]
    cost = priced(call)
    assert cost.provider_id == expected_provider_id
    assert cost.amount == (GPT_4O if model == "gpt-4o" else CLAUDE_35_SONNET)["input"]


def test_the_response_model_is_preferred_and_the_request_model_is_the_fallback() -> None:
    both = make_call("gpt-4o", response_model="gpt-4o-mini-2024-07-18")
    assert priced(both).model_id == "gpt-4o-mini"
    unknown_response = make_call("gpt-4o", response_model="some-unknown-snapshot")
    assert priced(unknown_response).model_id == "gpt-4o"


# --- overrides ----------------------------------------------------------------------------------


def test_exact_alias_for_an_azure_deployment() -> None:
    book = PriceBook([PriceOverride(match="prod-chat", alias="gpt-4o")])
    cost = priced(make_call("prod-chat", "azure.ai.openai", input_tokens=1_000_000), book)
    assert (cost.provider_id, cost.model_id) == ("azure", "gpt-4o")
    assert cost.amount == GPT_4O["input"] + 100 * GPT_4O["output"] / M
    assert cost.price_data.endswith("+ override")
    assert unpriced(make_call("prod-chat", "azure.ai.openai")) == "unknown_model"  # no override


def test_regex_alias_for_fine_tuned_models() -> None:
    book = PriceBook([PriceOverride(regex=r"ft:gpt-4o-mini:.*", alias="gpt-4o-mini")])
    cost = priced(make_call("ft:gpt-4o-mini:acme::abc123", input_tokens=1_000_000), book)
    assert cost.model_id == "gpt-4o-mini"
    assert cost.input == GPT_4O_MINI["input"]
    # Whole-name match: with a prefix before the pattern it is not the fine-tuned model.
    assert unpriced(make_call("x-ft:gpt-4o-mini:acme", "openai"), book) == "unknown_model"
    assert unpriced(make_call("x-ft:gpt-4o-mini:acme", "openai")) == "unknown_model"


def test_full_prices_for_an_unknown_model() -> None:
    book = PriceBook(
        [
            PriceOverride(
                match="my-llama",
                provider="vllm",
                prices={"input_mtok": Decimal("0.2"), "output_mtok": Decimal("0.4")},
            )
        ]
    )
    cost = priced(make_call("my-llama", "vllm", input_tokens=3_000, output_tokens=2_000), book)
    assert cost.amount == Decimal("0.0006") + Decimal("0.0008")
    assert (cost.provider_id, cost.model_id) == ("vllm", "my-llama")
    # Without cache prices, cached input is charged as input.
    cached = priced(make_call("my-llama", "vllm", input_tokens=3_000, cache_read=3_000), book)
    assert cached.cache_read == 0
    assert cached.input == Decimal("0.0006")


def test_a_partial_override_inherits_the_other_prices() -> None:
    book = PriceBook([PriceOverride(match="gpt-4o", prices={"input_mtok": Decimal(2)})])
    cost = priced(
        make_call("gpt-4o", input_tokens=1_000_000, output_tokens=1_000_000, cache_read=500_000),
        book,
    )
    assert cost.input == Decimal(1)  # 500_000 x the overridden $2
    assert cost.cache_read == GPT_4O["cache_read"] / 2  # inherited
    assert cost.output == GPT_4O["output"]  # inherited
    assert cost.model_id == "gpt-4o"


def test_a_provider_restricted_override() -> None:
    book = PriceBook(
        [
            PriceOverride(
                match="gpt-4o", provider="azure.ai.openai", prices={"input_mtok": Decimal(100)}
            )
        ]
    )
    azure = priced(make_call("gpt-4o", "azure.ai.openai", input_tokens=1_000_000), book)
    openai = priced(make_call("gpt-4o", "openai", input_tokens=1_000_000), book)
    assert azure.input == 100
    assert openai.input == GPT_4O["input"]


def test_an_alias_to_an_unknown_model_is_unpriced() -> None:
    book = PriceBook([PriceOverride(match="prod-chat", alias="gpt-99-imaginary")])
    assert unpriced(make_call("prod-chat", "openai"), book) == "unknown_model"


def test_incomplete_prices_for_an_unknown_model_are_unpriced() -> None:
    book = PriceBook([PriceOverride(match="my-llama", prices={"input_mtok": Decimal(1)})])
    assert unpriced(make_call("my-llama", "vllm"), book) == "unknown_model"


def test_the_alias_provider_is_used_for_the_alias() -> None:
    book = PriceBook(
        [
            PriceOverride(
                match="house-model", alias="claude-3-5-sonnet-20241022", alias_provider="anthropic"
            )
        ]
    )
    cost = priced(make_call("house-model", "my-gateway", input_tokens=1_000_000), book)
    assert cost.provider_id == "anthropic"
    assert cost.input == CLAUDE_35_SONNET["input"]


YAML_OVERRIDES = """\
overrides:
  - match: prod-chat
    provider: azure.ai.openai
    alias: gpt-4o
  - regex: "ft:gpt-4o-mini:.*"
    alias: gpt-4o-mini
  - match: my-llama
    provider: vllm
    prices: {input_mtok: 0.2, output_mtok: 0.4}
  - match: gpt-4o
    prices:
      input_mtok: "2"
"""


def _check_file_overrides(overrides: list[PriceOverride]) -> None:
    assert len(overrides) == 4
    book = PriceBook(overrides)
    assert priced(make_call("prod-chat", "azure.ai.openai"), book).model_id == "gpt-4o"
    assert unpriced(make_call("prod-chat", "openai"), book) == "unknown_model"
    assert priced(make_call("ft:gpt-4o-mini:x:y"), book).model_id == "gpt-4o-mini"
    llama = priced(make_call("my-llama", "vllm", input_tokens=1_000_000, output_tokens=0), book)
    assert llama.amount == Decimal("0.2")
    gpt4o = priced(make_call("gpt-4o", input_tokens=1_000_000, output_tokens=0), book)
    assert gpt4o.amount == Decimal(2)


def test_overrides_from_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(YAML_OVERRIDES)
    _check_file_overrides(load_overrides(path))


def test_overrides_from_a_json_file(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "prices.json"
    path.write_text(json.dumps(yaml.safe_load(YAML_OVERRIDES)))
    _check_file_overrides(load_overrides(str(path)))
    # A bare list is accepted too.
    path.write_text(json.dumps(yaml.safe_load(YAML_OVERRIDES)["overrides"]))
    _check_file_overrides(load_overrides(path))


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "unknown.yaml",
            "overrides: [{match: a, alias: b, colour: red}]",
            "unknown field(s) colour",
        ),
        ("price.yaml", "overrides: [{match: a, prices: {input_mtok: -1}}]", "finite and >= 0"),
        ("nan.yaml", "overrides: [{match: a, prices: {input_mtok: .nan}}]", "finite and >= 0"),
        ("nan.json", '{"overrides": [{"match": "a", "prices": {"input_mtok": NaN}}]}', ">= 0"),
        ("inf.json", '[{"match": "a", "prices": {"output_mtok": Infinity}}]', "finite"),
        ("bool.yaml", "overrides: [{match: a, prices: {input_mtok: true}}]", "must be a number"),
        ("text.yaml", "overrides: [{match: a, prices: {input_mtok: cheap}}]", "is not a number"),
        ("key.yaml", "overrides: [{match: a, prices: {input_tokens: 1}}]", "unknown price"),
        ("regex.yaml", 'overrides: [{regex: "ft:(", alias: gpt-4o}]', "bad regex"),
        ("both.yaml", "overrides: [{match: a, regex: b, alias: c}]", "exactly one of"),
        ("neither.yaml", "overrides: [{alias: c}]", "exactly one of"),
        ("empty.yaml", "overrides: [{match: a}]", "sets no alias or prices"),
        ("list.yaml", "overrides: {match: a, alias: b}", "expected a list"),
        ("scalar.yaml", "just text", "expected a list"),
        ("void.yaml", "", "expected a list"),
        ("entry.yaml", "overrides: [gpt-4o]", "expected a mapping"),
        ("prices.yaml", "overrides: [{match: a, prices: [1, 2]}]", "'prices' must be a mapping"),
        ("match.yaml", "overrides: [{match: 42, alias: b}]", "'match' must be a string"),
        ("bad.yaml", "overrides: [{match: a\n  - b", "not valid yaml"),
        ("bad.json", '{"overrides": [', "not valid json"),
    ],
)
def test_bad_override_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(
        OverrideError, match="(?i)" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        load_overrides(path)


def test_unreadable_override_files(tmp_path: Path) -> None:
    with pytest.raises(OverrideError, match="cannot read price overrides"):
        load_overrides(tmp_path / "missing.yaml")
    with pytest.raises(OverrideError, match="cannot read price overrides"):
        load_overrides(tmp_path)  # a directory
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00overrides")
    with pytest.raises(OverrideError, match=r"cannot read price overrides.*UTF-8"):
        load_overrides(binary)


def test_error_messages_name_the_entry() -> None:
    with pytest.raises(OverrideError, match=r"my-file: entry 1: .*input_mtok"):
        parse_overrides(
            [{"match": "a", "alias": "b"}, {"match": "c", "prices": {"input_mtok": -2}}], "my-file"
        )


@pytest.mark.parametrize(
    "prices",
    [
        {"input_mtok": float("nan")},
        {"input_mtok": float("inf")},
        {"input_mtok": -0.1},
        {"input_mtok": True},
        {"input_mtok": "x"},
        {"input_mtok": None},
        {"bogus_mtok": 1},
    ],
)
def test_bad_override_prices_from_code(prices: dict[str, Any]) -> None:
    with pytest.raises(OverrideError):
        PriceOverride(match="a", prices=prices)


def test_override_prices_are_exact_decimals() -> None:
    # From code, floats and numeric strings are accepted and converted exactly (via str).
    prices: dict[str, Any] = {"input_mtok": 0.1, "output_mtok": "0.3"}
    override = PriceOverride(match="a", prices=prices)
    assert override.patch == {"input_mtok": Decimal("0.1"), "output_mtok": Decimal("0.3")}


# --- provider-reported cost ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "attributes",
    [
        {sc.GEN_AI_USAGE_COST_AMOUNT: 0.001615, sc.GEN_AI_USAGE_COST_SOURCE: "provider"},
        {sc.USAGE_COST: 0.001615},
    ],
)
def test_the_provider_reported_cost_wins(attributes: dict[str, Any]) -> None:
    call, rejected = read_mini_chat(attributes)
    assert rejected == []
    cost = priced(call)
    assert cost.source == "provider"
    assert cost.amount == Decimal("0.001615")
    assert cost.model_id is None
    # A provider cost even for a model the price data does not know.
    assert priced(replace(call, request_model="unknown")).amount == Decimal("0.001615")


def test_a_cost_without_the_provider_source_is_not_the_providers() -> None:
    call, _ = read_mini_chat(
        {
            sc.GEN_AI_USAGE_COST_AMOUNT: 5.0,
            sc.GEN_AI_USAGE_COST_SOURCE: "estimate",
        }
    )
    cost = priced(call)
    assert cost.source == "local"
    assert cost.amount == Decimal("0.00021")  # 1_000 x 0.15 + 100 x 0.6, per million


def test_a_rejected_provider_cost_falls_back_to_local_prices() -> None:
    call, rejected = read_mini_chat(
        {
            sc.GEN_AI_USAGE_COST_AMOUNT: -3.0,
            sc.GEN_AI_USAGE_COST_SOURCE: "provider",
        }
    )
    assert [tuple(r) for r in rejected] == [(sc.GEN_AI_USAGE_COST_AMOUNT, "negative")]
    cost = priced(call)
    assert (cost.source, cost.amount) == ("local", Decimal("0.00021"))


# --- why a call has no cost ---------------------------------------------------------------------


def test_unpriced_reasons() -> None:
    assert unpriced(make_call("gpt-4o", "no-such-provider")) == "unknown_provider"
    assert unpriced(make_call("gpt-99-imaginary", "openai")) == "unknown_model"
    assert unpriced(make_call(None, "openai")) == "missing_model"
    assert unpriced(make_call("gpt-4o", input_tokens=None, output_tokens=None)) == "missing_usage"
    assert unpriced(make_call("gpt-4o", input_tokens=None)) == "missing_usage"
    assert unpriced(make_call("gpt-4o", usage_missing=True)) == "missing_usage"
    assert unpriced(make_call("gpt-4o", usage_rejected=True)) == "invalid_usage"
    # An unknown provider is final: the request model is not tried with it either.
    assert unpriced(make_call("gpt-4o", "no-such-provider", response_model="x")) == (
        "unknown_provider"
    )


def test_a_rejected_usage_value_from_a_span_is_invalid_usage() -> None:
    call, rejected = read_mini_chat({sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: -5})
    assert [tuple(r) for r in rejected] == [(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, "negative")]
    assert unpriced(call) == "invalid_usage"


def test_usage_missing_flag_from_a_span() -> None:
    call, _ = read_mini_chat({sc.GEN_AI_USAGE_OUTPUT_TOKENS: 0, sc.OTEL_LLM_USAGE_MISSING: True})
    assert unpriced(call) == "missing_usage"


# --- money is exact -----------------------------------------------------------------------------


def test_costs_are_exact_decimals() -> None:
    book = PriceBook()
    calls = [
        make_call("gpt-4o-mini", input_tokens=1_000, output_tokens=2_000),
        make_call("gpt-4o-mini", input_tokens=3_000, output_tokens=100, cache_read=1_000),
        make_call("gpt-4o-mini", input_tokens=7, output_tokens=3),
    ]
    costs = [priced(call, book) for call in calls]
    assert all(type(cost.amount) is Decimal for cost in costs)
    assert [cost.amount for cost in costs] == [
        Decimal("0.00135"),
        Decimal("0.000435"),
        Decimal("0.00000285"),
    ]
    total = sum((cost.amount for cost in costs), Decimal(0))
    assert total == Decimal("0.00178785")
    assert str(total) == "0.00178785"
    # With floats the same sum has an artefact; this is what Decimal avoids.
    assert 0.00135 + 0.000435 + 0.00000285 != 0.00178785
    assert priced(make_call("gpt-4o-mini", input_tokens=0, output_tokens=0)).amount == 0


# --- bounded caches -----------------------------------------------------------------------------


def test_the_resolution_cache_is_bounded() -> None:
    book = PriceBook(cache_size=100)
    for index in range(10_000):
        provider = ("openai", "my-gateway", None, "anthropic")[index % 4]
        result = book.price(make_call(f"unknown-model-{index}", provider), START_NS)
        assert isinstance(result, Unpriced)
        assert len(book._cache) <= 100
    assert len(book._cache) == 100
    # The cache still works: a known model is priced, and priced the same again.
    first = priced(make_call("gpt-4o-mini"), book)
    assert priced(make_call("gpt-4o-mini"), book) == first


def test_genai_prices_own_caches_do_not_grow() -> None:
    snapshot = data_snapshot.get_snapshot()
    before = (
        len(snapshot._lookup_cache),
        len(snapshot._provider_cache),
        len(snapshot._provider_misses),
    )
    book = PriceBook(cache_size=10)
    for index in range(500):
        for provider, model in [
            ("openai", f"gpt-4o-{index}"),
            ("my-gateway", f"openai/nothing-{index}"),
            ("litellm", f"openai/gpt-{index}"),
            (None, f"model-{index}"),
            ("aws.bedrock", f"us.anthropic.claude-{index}-v1:0"),
        ]:
            book.price(make_call(model, provider), START_NS)
    # Known names too, through every path.
    for provider, model in [("openai", "gpt-4o"), ("litellm", "openai/gpt-4o"), (None, "gpt-4o")]:
        priced(make_call(model, provider), book)
    after = (
        len(snapshot._lookup_cache),
        len(snapshot._provider_cache),
        len(snapshot._provider_misses),
    )
    assert after == before


# --- prices that change over time ---------------------------------------------------------------


def _ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * 10**9


def test_the_price_in_force_when_the_call_started() -> None:
    book = PriceBook()
    call = make_call("o3", input_tokens=1_000_000, output_tokens=1_000_000, cache_read=100_000)
    before = priced(call, book, _ns(2025, 6, 9, 23, 59))
    after = priced(call, book, _ns(2025, 6, 10))
    assert before.input == 900_000 * O3_BEFORE["input"] / M == Decimal(9)
    assert before.output == Decimal(40)
    assert after.input == Decimal("1.8")
    assert after.output == Decimal(8)
    assert before.cache_read == after.cache_read == Decimal("0.05")
    # The same book keeps answering by time, in any order.
    assert priced(call, book, _ns(2025, 1, 1)).amount == before.amount
    assert priced(call, book, _ns(2026, 1, 1)).amount == after.amount


def test_a_partial_override_applies_to_every_period() -> None:
    book = PriceBook([PriceOverride(match="o3", prices={"output_mtok": Decimal(1)})])
    call = make_call("o3", input_tokens=1_000_000, output_tokens=1_000_000)
    assert priced(call, book, _ns(2025, 1, 1)).amount == Decimal(10) + 1
    assert priced(call, book, _ns(2025, 7, 1)).amount == Decimal(2) + 1


def test_off_peak_prices_by_time_of_day() -> None:
    # deepseek-chat: $0.27 input 00:30-16:30 UTC, $0.135 otherwise (snapshot).
    book = PriceBook()
    call = make_call("deepseek-chat", "deepseek", input_tokens=1_000_000, output_tokens=0)
    assert priced(call, book, _ns(2025, 3, 1, 12)).amount == Decimal("0.27")
    assert priced(call, book, _ns(2025, 3, 1, 20)).amount == Decimal("0.135")
    assert priced(call, book, _ns(2025, 3, 1, 0, 29)).amount == Decimal("0.135")


# --- entries that do not price tokens, currencies, names, times ---------------------------------


def test_an_entry_without_token_prices_is_unpriced_not_free() -> None:
    # whisper-1 is priced per audio minute: a token-based call against it has no known price.
    assert unpriced(make_call("whisper-1")) == "no_token_price"


def test_a_provider_cost_in_another_currency_falls_back_to_the_local_price() -> None:
    call, rejected = read_mini_chat(
        {
            sc.GEN_AI_USAGE_COST_AMOUNT: 0.5,
            sc.GEN_AI_USAGE_COST_SOURCE: "provider",
            sc.GEN_AI_USAGE_COST_CURRENCY: "EUR",
        }
    )
    assert (sc.GEN_AI_USAGE_COST_CURRENCY, "unsupported_currency") in rejected
    cost = priced(call)
    assert cost.source == "local"
    assert cost.amount == (1_000 * Decimal("0.15") + 100 * Decimal("0.6")) / 1_000_000


def test_an_override_written_with_a_deprecated_provider_name_applies() -> None:
    override = PriceOverride(match="prod-chat", provider="az.ai.openai", alias="gpt-4o")
    assert override.provider == "azure.ai.openai"
    cost = priced(make_call("prod-chat", "azure.ai.openai"), PriceBook([override]))
    assert cost.model_id == "gpt-4o"
