"""The attribute dialects table: generated from semconv/dialects.yaml, do not edit.

Regenerate with ``python -m otel_llm.dialects``; tests/test_dialects.py checks it is current.
"""

from __future__ import annotations

from typing import Any, Final

DIALECTS: Final[list[dict[str, Any]]] = [{'id': 'otel',
  'library': 'opentelemetry-instrumentation-openai-v2 2.4b0 (with opentelemetry-util-genai '
             '1.0b0), opentelemetry-instrumentation-genai-openai 1.3b0 (with '
             'opentelemetry-util-genai 1.3b0)',
  'scopes': ['opentelemetry.instrumentation.openai_v2',
             'opentelemetry.util.genai.handler',
             'opentelemetry.instrumentation.genai.openai'],
  'input_includes_cache': True,
  'source': 'Canonical names (gen_ai.operation.name, gen_ai.system or gen_ai.provider.name, '
            'gen_ai.usage.input_tokens = OpenAI prompt_tokens, which include cached tokens: '
            "openai_v2/patch.py:479-488, genai/openai/utils.py:75). openai-v2's default (legacy) "
            'chat path sets no cache-read count at all (patch.py:476-489), so cached tokens are '
            'priced as uncached input there; genai-openai 1.3b0 sets '
            'gen_ai.usage.cache_read.input_tokens and gen_ai.usage.cache_write.input_tokens '
            '(util/genai/_inference_invocation.py:750-767).'},
 {'id': 'openllmetry',
  'library': 'Traceloop OpenLLMetry opentelemetry-instrumentation-openai / -anthropic 0.62.4 '
             '(semantic-conventions-ai 0.5.1) and <= 0.47 (semantic-conventions-ai 0.4.x)',
  'scopes': ['opentelemetry.instrumentation.openai.v1',
             'opentelemetry.instrumentation.openai.v0',
             'opentelemetry.instrumentation.anthropic'],
  'operation': {'attribute': 'llm.request.type',
                'values': {'chat': 'chat',
                           'completion': 'text_completion',
                           'embedding': 'embeddings'}},
  'provider': {'values': {'Anthropic': 'anthropic',
                          'Azure': 'azure.ai.openai',
                          'AWS': 'aws.bedrock',
                          'Google': 'gcp.vertex_ai',
                          'OpenRouter': 'openrouter'}},
  'tokens': {'cache_read': ['gen_ai.usage.cache_read_input_tokens'],
             'cache_creation': ['gen_ai.usage.cache_creation_input_tokens'],
             'reasoning': ['gen_ai.usage.reasoning_tokens', 'llm.usage.reasoning_tokens']},
  'input_includes_cache': True,
  'source': 'Anthropic: input = usage.input_tokens + cache_read_input_tokens + '
            'cache_creation_input_tokens, in 0.62.4 (anthropic/__init__.py:226-234 async, 342-350 '
            'sync, streaming.py:85-95) and 0.47.5 (anthropic/__init__.py:212-219, '
            'streaming.py:81-91). (0.62.4 span_utils.py:355-357 first writes the raw, '
            'cache-exclusive input_tokens, but _set_token_usage overwrites it right after, '
            '__init__.py:639-648.) OpenAI: input = prompt_tokens, which include cached_tokens '
            '(shared/__init__.py:282-290).'},
 {'id': 'openinference',
  'library': 'Arize OpenInference openinference-instrumentation-openai 0.1.66, -anthropic 3.1.0 '
             '(openinference-semantic-conventions 0.1.42)',
  'scopes': ['openinference.instrumentation.openai', 'openinference.instrumentation.anthropic'],
  'operation': {'attribute': 'openinference.span.kind',
                'values': {'LLM': 'chat', 'EMBEDDING': 'embeddings'}},
  'provider': {'attributes': ['llm.provider', 'llm.system'],
               'values': {'azure': 'azure.ai.openai',
                          'aws': 'aws.bedrock',
                          'google': 'gcp.gen_ai',
                          'vertexai': 'gcp.vertex_ai',
                          'mistralai': 'mistral_ai',
                          'xai': 'x_ai',
                          'moonshot': 'moonshot_ai'}},
  'request_model': ['llm.request.model_name'],
  'response_model': ['llm.response.model_name', 'llm.model_name', 'embedding.model_name'],
  'tokens': {'input': ['llm.token_count.prompt'],
             'output': ['llm.token_count.completion'],
             'cache_read': ['llm.token_count.prompt_details.cache_read'],
             'cache_creation': ['llm.token_count.prompt_details.cache_write'],
             'reasoning': ['llm.token_count.completion_details.reasoning']},
  'input_includes_cache': True,
  'source': 'Anthropic: llm.token_count.prompt = input_tokens + cache_creation_input_tokens + '
            'cache_read_input_tokens (anthropic/_utils.py:32-40), thinking tokens part of the '
            'completion (_utils.py:51-56). OpenAI: prompt = prompt_tokens, cached_tokens included '
            '(openai/_response_attributes_extractor.py:310-325).'},
 {'id': 'openlit',
  'library': 'OpenLIT 1.45.0',
  'scopes': ['openlit.otel.tracing'],
  'detect': {'attribute': 'telemetry.sdk.name', 'values': ['openlit']},
  'tokens': {'reasoning': ['gen_ai.usage.reasoning_tokens']},
  'input_includes_cache': {'anthropic': False, 'default': True},
  'instrumentation_cost': 'gen_ai.usage.cost',
  'source': 'Canonical names otherwise (__helpers.py:921-934). Anthropic: '
            'gen_ai.usage.input_tokens is the raw usage.input_tokens, EXCLUSIVE of the cache '
            'counts it sets beside it (instrumentation/anthropic/utils.py:501-507, 577-593, '
            '686-708, 893-896). OpenAI: prompt_tokens, inclusive (openai/utils.py:742-751, '
            "907-916). gen_ai.usage.cost is OpenLIT's own estimate from its price table "
            '(anthropic/utils.py:586-697, openai/utils.py:1056).'}]
