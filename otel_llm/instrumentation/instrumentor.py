"""What the SDK instrumentors share as ``BaseInstrumentor``s: their options, wrapping the SDK's
methods and attaching ``LLMSpanProcessor`` to the TracerProvider they report to."""

from __future__ import annotations

import logging
from abc import abstractmethod
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from otel_llm._configure import configure
from otel_llm.instrumentation.content import ContentCapture
from otel_llm.instrumentation.traced import get_tracer
from otel_llm.instrumentation.wrapping import Target, Wrapped, unwrap_methods, wrap_methods

_logger = logging.getLogger(__name__)


def configure_processor(tracer_provider: trace.TracerProvider | None) -> None:
    """Attach ``LLMSpanProcessor`` to the SDK TracerProvider the instrumentor reports to (the
    given one, else the global one) -- as ``opentelemetry-instrument`` sets one up before it
    loads instrumentors. Without an SDK provider it does nothing: instrumenting must not install
    an exporting provider of its own; call ``otel_llm.configure()`` for that."""
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return
    try:
        configure(tracer_provider=provider)
    except Exception:
        _logger.warning("otel-llm: could not attach the LLM span processor", exc_info=True)


class SDKInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Wraps the methods ``targets`` names on ``instrument()`` and unwraps them on
    ``uninstrument()``.

    ``instrument(tracer_provider=..., capture_content=None, content_max_length=None,
    redact=None, configure=True)`` (None: the ``OTEL_LLM_*`` setting or its default; see
    ``otel_llm.instrumentation.content`` for capture). Unless ``configure=False``, it also
    attaches ``LLMSpanProcessor`` to the SDK TracerProvider in use (``otel_llm.configure``,
    idempotent), which is what makes ``opentelemetry-instrument`` price calls with no code change.
    """

    _wrapped: Wrapped

    @abstractmethod
    def targets(
        self, tracer: Tracer, capture: ContentCapture, options: dict[str, Any]
    ) -> list[Target]:
        """The methods to wrap, given the ``instrument()`` keyword arguments."""

    def _instrument(self, **kwargs: Any) -> None:
        tracer_provider = kwargs.get("tracer_provider")
        capture = ContentCapture(
            enabled=kwargs.get("capture_content"),
            max_length=kwargs.get("content_max_length"),
            redact=kwargs.get("redact"),
        )
        self._wrapped = wrap_methods(self.targets(get_tracer(tracer_provider), capture, kwargs))
        if kwargs.get("configure", True):
            configure_processor(tracer_provider)

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap_methods(self._wrapped)
