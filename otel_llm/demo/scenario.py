"""What the demo simulates: the models of several providers and a seeded plan of calls to them."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from otel_llm.demo import OverloadedError, ProviderError, RateLimitError, ThrottlingException

FEATURES = ("chat", "summarize", "classify", "extract")


@dataclass(frozen=True, slots=True)
class Provider:
    """What the models of one provider share: its API's address, error, ids and finish reason."""

    name: str
    server_address: str
    error: type[ProviderError]
    id_prefix: str
    finish_reason: str
    error_message: str
    """What its API says when it refuses a call for load (the span's status message)."""


@dataclass(frozen=True, slots=True)
class Model:
    provider: Provider
    model: str
    response_model: str
    input_tokens: tuple[int, int]
    output_tokens: tuple[int, int]
    cache: str
    """``prefix``: automatic prefix caching, reads only (OpenAI, Gemini); ``explicit``: cache
    writes and reads (Anthropic's cache_control); ``none``."""
    reasoning: bool = False
    first_token_s: float = 0.5
    """Typical seconds to the first token, for ``demo --serve``'s month of calls."""
    tokens_per_s: float = 60.0
    """Typical output speed once streaming, for ``demo --serve``'s month of calls."""


OPENAI = Provider(
    "openai", "api.openai.com", RateLimitError, "chatcmpl-", "stop",
    "Rate limit reached for requests per min (RPM): Limit 500, Used 500, Requested 1. "
    "Please try again in 120ms.",
)  # fmt: skip
ANTHROPIC = Provider(
    "anthropic", "api.anthropic.com", OverloadedError, "msg_", "end_turn", "Overloaded"
)
BEDROCK = Provider(
    "aws.bedrock", "bedrock-runtime.us-east-1.amazonaws.com", ThrottlingException, "msg_bdrk_",
    "end_turn", "Too many requests, please wait before trying again.",
)  # fmt: skip
GEMINI = Provider(
    "gcp.gemini", "generativelanguage.googleapis.com", RateLimitError, "", "STOP",
    "Resource has been exhausted (e.g. check quota).",
)  # fmt: skip

GPT_4O_MINI = Model(
    OPENAI, "gpt-4o-mini", "gpt-4o-mini-2024-07-18", (300, 6_000), (40, 700), "prefix",
    first_token_s=0.35, tokens_per_s=110.0,
)  # fmt: skip
GPT_4O = Model(
    OPENAI, "gpt-4o", "gpt-4o-2024-08-06", (800, 12_000), (100, 1_500), "prefix",
    first_token_s=0.5, tokens_per_s=80.0,
)  # fmt: skip
CLAUDE_SONNET = Model(
    ANTHROPIC, "claude-sonnet-4-5", "claude-sonnet-4-5-20250929",
    (2_000, 30_000), (150, 2_500), "explicit", first_token_s=0.9, tokens_per_s=75.0,
)  # fmt: skip
BEDROCK_HAIKU = Model(
    BEDROCK, "us.anthropic.claude-3-5-haiku-20241022-v1:0",
    "us.anthropic.claude-3-5-haiku-20241022-v1:0", (400, 5_000), (60, 800), "explicit",
    first_token_s=0.6, tokens_per_s=110.0,
)  # fmt: skip
GEMINI_FLASH = Model(
    GEMINI, "gemini-2.5-flash", "gemini-2.5-flash", (300, 8_000), (100, 1_200), "prefix",
    reasoning=True, first_token_s=0.45, tokens_per_s=200.0,
)  # fmt: skip
UNKNOWN_MODEL = Model(
    OPENAI, "gpt-imaginary-1", "gpt-imaginary-1", (500, 2_000), (50, 400), "none",
    first_token_s=0.7, tokens_per_s=60.0,
)  # fmt: skip
"""No price data knows it: its one call shows as unpriced (``unknown_model``), never as $0."""

# The traffic mix: the cheap model most, every priced model at least once in any 9 calls.
_DECK = (
    GPT_4O_MINI, GPT_4O_MINI, GPT_4O_MINI, GPT_4O,
    CLAUDE_SONNET, CLAUDE_SONNET, BEDROCK_HAIKU, GEMINI_FLASH, GEMINI_FLASH,
)  # fmt: skip
_FAILURE_SHARE = 0.1
_STREAM_SHARE = 0.4


@dataclass(frozen=True, slots=True)
class SimulatedCall:
    model: Model
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    reasoning_tokens: int
    stream: bool
    fails: bool
    feature: str
    user_id: str
    project_id: str
    response_id: str
    latency_s: float
    """Simulated wait before the first chunk / the response: milliseconds, to stay quick."""


def plan(calls: int, seed: int) -> list[SimulatedCall]:
    """The calls the demo makes: a function of ``calls`` and ``seed`` only.

    Always one call of the unknown model; with two calls or more, at least one failure and at
    least one ``summarize`` call.
    """
    rng = random.Random(seed)  # noqa: S311 - simulated traffic, not cryptography
    models = [_DECK[i % len(_DECK)] for i in range(calls)]
    rng.shuffle(models)
    # In place of one call of the most frequent model, so that every priced model stays.
    models[rng.choice([i for i, m in enumerate(models) if m is GPT_4O_MINI])] = UNKNOWN_MODEL
    planned = [_simulate(rng, model) for model in models]
    others = [i for i, call in enumerate(planned) if call.model is not UNKNOWN_MODEL]
    if others and not any(call.fails for call in planned):
        i = rng.choice(others)
        planned[i] = replace(planned[i], fails=True)
    if len(planned) > 1 and not any(call.feature == "summarize" for call in planned):
        i = rng.choice(others)
        planned[i] = replace(planned[i], feature="summarize")
    return planned


def _simulate(rng: random.Random, model: Model) -> SimulatedCall:
    input_tokens = rng.randint(*model.input_tokens)
    output_tokens = rng.randint(*model.output_tokens)
    cache_read = cache_creation = reasoning = 0
    if model.cache == "prefix" and input_tokens >= 1024 and rng.random() < 0.5:
        # OpenAI and Gemini cache prompt prefixes of 1024 tokens and more, in 128-token steps.
        cache_read = 1024 + 128 * rng.randrange((input_tokens - 1024) // 128 + 1)
    elif model.cache == "explicit":
        cached = rng.randint(input_tokens // 4, input_tokens * 3 // 4)
        kind = rng.random()
        if kind < 0.25:
            cache_creation = cached  # first call of a conversation writes the prompt cache
        elif kind < 0.75:
            cache_read = cached  # later calls read it
    if model.reasoning:
        reasoning = rng.randint(0, output_tokens * 2 // 3)
    return SimulatedCall(
        model=model,
        input_tokens=input_tokens,  # cached tokens included, as the conventions count
        output_tokens=output_tokens,  # reasoning included
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_creation,
        reasoning_tokens=reasoning,
        stream=rng.random() < _STREAM_SHARE,
        fails=model is not UNKNOWN_MODEL and rng.random() < _FAILURE_SHARE,
        feature=rng.choice(FEATURES),
        user_id=f"user-{rng.randint(1, 12):02d}",
        project_id=rng.choice(("proj-web", "proj-support")),
        response_id=f"{model.provider.id_prefix}{rng.getrandbits(64):016x}",
        latency_s=rng.uniform(0.001, 0.004),
    )
