"""Instrumentors for LLM client libraries and the content capture they share.

``OpenAIInstrumentor`` (``otel_llm.instrumentation.openai``) and ``AnthropicInstrumentor``
(``otel_llm.instrumentation.anthropic``) are ``BaseInstrumentor``s, registered under the
``opentelemetry_instrumentor`` entry points ``otel_llm_openai`` and ``otel_llm_anthropic`` (so
``opentelemetry-instrument`` loads them and ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` can switch
each off). Each call becomes one GenAI client span, ``{operation} {model}``, kind CLIENT, with
the attributes known at the start given at the start (for samplers).

- Failures: ``error.type`` is the exception's class qualified by its module, as ``llm_call``
  does (``openai.RateLimitError``, ``anthropic.InternalServerError``); ``http.response.status_code``
  is set too when the error carries one. Status ERROR, the exception recorded and re-raised as
  is.
- Streams (``streams.py``): the span ends exactly once -- end of stream, error, ``close()``,
  ``with`` exit, ``break``, or garbage collection -- with time to first chunk and the stream's
  final usage.
- Never in the way: when the instrumentation's own code fails, the SDK call proceeds as if it
  were not instrumented.
- ``instrument()`` also calls ``otel_llm.configure()`` on the SDK TracerProvider in use (given
  as ``tracer_provider`` or the global one), so ``LLMSpanProcessor`` prices the spans and
  ``/metrics`` is served when ``OTEL_LLM_PROMETHEUS_PORT`` is set. Without an SDK provider it
  installs none (call ``otel_llm.configure()`` for that); ``instrument(configure=False)`` skips it.
- Content capture (``content.py``) is off by default: ``instrument(capture_content=True)`` or
  ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``.

Modules: ``openai.py`` (with ``openai_apis.py``, each API's fields) and ``anthropic.py`` read
their SDK; ``instrumentor.py`` is their common ``BaseInstrumentor``; ``traced.py`` runs one SDK call
in its span, whose life is ``otel_llm.lifecycle.CallSpan``'s (shared with ``llm_call``);
``streams.py`` proxies streams; ``wrapping.py`` wraps methods and steps aside for another
instrumentation; ``values.py`` reads request and response values; ``content.py`` (with
``messages.py``, ``redaction.py``, ``bounded_json.py``) captures content.
"""
