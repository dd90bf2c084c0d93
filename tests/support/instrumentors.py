"""What the instrumentor tests share, per SDK: its instrumentor, its real clients pointed at the
fake server, the response the fake answers by default, and the metric labels of a priced call.

The fixtures built on it (``fake``, ``traced``, ``client``, ``async_client``) live in
``tests/conftest.py``; a test module chooses its SDK with an ``sdk`` fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import anthropic
import openai

from otel_llm.instrumentation.anthropic import AnthropicInstrumentor
from otel_llm.instrumentation.openai import OpenAIInstrumentor
from tests.support.fake_llm import FakeLLMServer, ScriptedResponse
from tests.support.pipeline import Pipeline, chat_labels


@dataclass(frozen=True)
class SDK:
    """One provider's SDK as the instrumentor tests use it."""

    instrumentor: type[OpenAIInstrumentor | AnthropicInstrumentor]
    client_class: Callable[..., Any]
    async_client_class: Callable[..., Any]
    base_url: Callable[[FakeLLMServer], str]
    """The fake server's URL for this SDK's API."""
    labels_of_call: dict[str, str]
    """The provider and model labels of the tests' priced call."""
    default: ScriptedResponse | None = field(default=None)
    """What the fake answers when a test scripts nothing (None: the fake's own default)."""

    def instrument(
        self, pipeline: Pipeline, **kwargs: Any
    ) -> OpenAIInstrumentor | AnthropicInstrumentor:
        """The SDK's instrumentor, instrumenting ``pipeline``'s provider."""
        instrumentor = self.instrumentor()
        instrumentor.instrument(tracer_provider=pipeline.provider, **kwargs)
        return instrumentor

    def client(self, fake: FakeLLMServer) -> Any:
        """A synchronous client of ``fake`` that does not retry."""
        return self.client_class(base_url=self.base_url(fake), api_key="test", max_retries=0)

    def async_client(self, fake: FakeLLMServer) -> Any:
        """An asynchronous client of ``fake`` that does not retry."""
        return self.async_client_class(base_url=self.base_url(fake), api_key="test", max_retries=0)

    def labels(self, **more: str) -> dict[str, str]:
        """The Prometheus labels of the tests' priced call (``more`` adds or replaces)."""
        return chat_labels(**{**self.labels_of_call, **more})


OPENAI = SDK(
    instrumentor=OpenAIInstrumentor,
    client_class=openai.OpenAI,
    async_client_class=openai.AsyncOpenAI,
    base_url=attrgetter("openai_base_url"),
    labels_of_call={
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o-mini",
        "gen_ai_response_model": "gpt-4o-mini-2024-07-18",
    },
)

ANTHROPIC = SDK(
    instrumentor=AnthropicInstrumentor,
    client_class=anthropic.Anthropic,
    async_client_class=anthropic.AsyncAnthropic,
    base_url=attrgetter("anthropic_base_url"),
    labels_of_call={
        "gen_ai_provider_name": "anthropic",
        "gen_ai_request_model": "claude-sonnet-4-5",
        "gen_ai_response_model": "claude-sonnet-4-5-20250929",
    },
)
