"""Names of the attributes and metrics otel-llm reads and emits.

The machine-readable model is ``semconv/*.yaml``; ``tests/test_semconv.py`` fails when this
module and the model disagree, so a rename has to happen in both places at once.
"""

from __future__ import annotations

from typing import Final

# --- call identity ------------------------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_REQUEST_METHOD: Final = "http.request.method"
URL_PATH: Final = "url.path"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"
ERROR_CODE: Final = "error.code"
"""Not a convention: read (after ``OTEL_LLM_ERROR_CODE``) when another instrumentation sets it."""

# --- opt-in content (JSON strings; recorded only when content capture is on) ---------------------
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"

# --- usage --------------------------------------------------------------------------------------
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"

# --- deprecated names, read as their current name -----------------------------------------------
GEN_AI_SYSTEM: Final = "gen_ai.system"
GEN_AI_USAGE_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"

DEPRECATED: Final[dict[str, str]] = {
    GEN_AI_SYSTEM: GEN_AI_PROVIDER_NAME,
    GEN_AI_USAGE_PROMPT_TOKENS: GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_COMPLETION_TOKENS: GEN_AI_USAGE_OUTPUT_TOKENS,
    GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
}

# --- cost extension (open proposal) and otel-llm's own attributes -------------------------------
GEN_AI_USAGE_COST_AMOUNT: Final = "gen_ai.usage.cost.amount"
GEN_AI_USAGE_COST_CURRENCY: Final = "gen_ai.usage.cost.currency"
GEN_AI_USAGE_COST_SOURCE: Final = "gen_ai.usage.cost.source"
OTEL_LLM_COST_PRICE_DATA: Final = "otel_llm.cost.price_data"
OTEL_LLM_COST_PROVIDER_ID: Final = "otel_llm.cost.provider_id"
OTEL_LLM_COST_MODEL_ID: Final = "otel_llm.cost.model_id"
OTEL_LLM_COST_INPUT: Final = "otel_llm.cost.input"
OTEL_LLM_COST_CACHE_READ: Final = "otel_llm.cost.cache_read"
OTEL_LLM_COST_CACHE_WRITE: Final = "otel_llm.cost.cache_write"
OTEL_LLM_COST_OUTPUT: Final = "otel_llm.cost.output"
OTEL_LLM_COST_REQUEST: Final = "otel_llm.cost.request"
OTEL_LLM_COST_UNPRICED_REASON: Final = "otel_llm.cost.unpriced_reason"
OTEL_LLM_COST_LIST_AMOUNT: Final = "otel_llm.cost.list_amount"
OTEL_LLM_BILLING: Final = "otel_llm.billing"
OTEL_LLM_USAGE_MISSING: Final = "otel_llm.usage.missing"
OTEL_LLM_CALL_COUNTED_IN: Final = "otel_llm.call.counted_in"

# --- roll-ups: on agent and local root spans, the LLM calls that ended under them ---------------
OTEL_LLM_ROLLUP_COST_AMOUNT: Final = "otel_llm.rollup.cost.amount"
OTEL_LLM_ROLLUP_COST_EXACT: Final = "otel_llm.rollup.cost.exact"
OTEL_LLM_ROLLUP_CALLS: Final = "otel_llm.rollup.calls"
OTEL_LLM_ROLLUP_UNPRICED_CALLS: Final = "otel_llm.rollup.unpriced_calls"
OTEL_LLM_ROLLUP_FAILED_CALLS: Final = "otel_llm.rollup.failed_calls"
OTEL_LLM_ROLLUP_INPUT_TOKENS: Final = "otel_llm.rollup.usage.input_tokens"
OTEL_LLM_ROLLUP_OUTPUT_TOKENS: Final = "otel_llm.rollup.usage.output_tokens"
OTEL_LLM_ROLLUP_CACHE_READ_TOKENS: Final = "otel_llm.rollup.usage.cache_read_tokens"
OTEL_LLM_ROLLUP_CACHE_CREATION_TOKENS: Final = "otel_llm.rollup.usage.cache_creation_tokens"
OTEL_LLM_ROLLUP_REASONING_TOKENS: Final = "otel_llm.rollup.usage.reasoning_tokens"
ROLLUP_TOKEN_ATTRIBUTES: Final = (
    OTEL_LLM_ROLLUP_INPUT_TOKENS,
    OTEL_LLM_ROLLUP_OUTPUT_TOKENS,
    OTEL_LLM_ROLLUP_CACHE_READ_TOKENS,
    OTEL_LLM_ROLLUP_CACHE_CREATION_TOKENS,
    OTEL_LLM_ROLLUP_REASONING_TOKENS,
)
"""In the order of ``TOKEN_TYPES``."""
OTEL_LLM_ERROR_CODE: Final = "otel_llm.error.code"
OTEL_LLM_API_KEY_HINT: Final = "otel_llm.api_key.hint"
OTEL_LLM_POLICY_BLOCKED: Final = "otel_llm.policy.blocked"
OTEL_LLM_POLICY_NAME: Final = "otel_llm.policy.name"
OTEL_LLM_POLICY_RULE: Final = "otel_llm.policy.rule"
OTEL_LLM_POLICY_BLOCKED_UNTIL: Final = "otel_llm.policy.blocked_until"
USAGE_COST: Final = "usage.cost"

COST_SOURCE_LOCAL: Final = "local"
COST_SOURCE_PROVIDER: Final = "provider"
COST_SOURCE_BLOCKED: Final = "blocked"
"""A call a policy refused before the provider was called: $0, known (not unpriced)."""
CURRENCY_USD: Final = "USD"
BILLING_CREDITS: Final = "credits"
BILLING_OWN_KEY: Final = "own_key"
BILLING_MODES: Final = (BILLING_CREDITS, BILLING_OWN_KEY)

# --- call context -------------------------------------------------------------------------------
CONTEXT_PREFIX: Final = "otel_llm.context."
OTEL_LLM_CONTEXT_FEATURE: Final = "otel_llm.context.feature"
OTEL_LLM_CONTEXT_USER_ID: Final = "otel_llm.context.user_id"
OTEL_LLM_CONTEXT_PROJECT_ID: Final = "otel_llm.context.project_id"
OTEL_LLM_CONTEXT_API_KEY_ID: Final = "otel_llm.context.api_key_id"
OTEL_LLM_CONTEXT_PIPELINE_STEP: Final = "otel_llm.context.pipeline_step"
OTEL_LLM_CONTEXT_BILLING: Final = "otel_llm.context.billing"

# --- operations ---------------------------------------------------------------------------------
# The inference and embeddings operations the processor prices; tool and agent spans are not calls.
OPERATION_INVOKE_AGENT: Final = "invoke_agent"
OPERATION_EXECUTE_TOOL: Final = "execute_tool"
PRICED_OPERATIONS: Final = frozenset(
    {"chat", "text_completion", "generate_content", "embeddings", "completion", "responses"}
)

# --- providers ----------------------------------------------------------------------------------
PROVIDER_RENAMED: Final[dict[str, str]] = {
    "az.ai.inference": "azure.ai.inference",
    "az.ai.openai": "azure.ai.openai",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
}
PROVIDER_PRICE_DATA_ID: Final[dict[str, str]] = {
    "aws.bedrock": "aws",
    "azure.ai.inference": "azure",
    "azure.ai.openai": "azure",
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "gcp.vertex_ai": "google",
    "mistral_ai": "mistral",
    "moonshot_ai": "moonshotai",
    "x_ai": "x-ai",
}

# --- metrics ------------------------------------------------------------------------------------
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

STANDARD_LABELS: Final = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "error_type",
    "service_name",
)
TOKEN_TYPE_LABEL: Final = "gen_ai_token_type"
REASON_LABEL: Final = "reason"

# Prometheus names, as the OTel->Prometheus translation names the OTel metrics below.
PROM_DURATION: Final = "gen_ai_client_operation_duration_seconds"
PROM_TOKEN_USAGE: Final = "gen_ai_client_token_usage"
PROM_TIME_TO_FIRST_CHUNK: Final = "gen_ai_client_operation_time_to_first_chunk_seconds"
PROM_TOKENS: Final = "gen_ai_client_tokens_total"
PROM_COST: Final = "gen_ai_client_cost_usd_total"
PROM_UNPRICED: Final = "gen_ai_client_unpriced_operations_total"
PROM_INVALID_ATTRIBUTES: Final = "otel_llm_invalid_attributes_total"
PROM_PROCESSOR_ERRORS: Final = "otel_llm_processor_errors_total"
PROM_ROLLUP_EVICTED: Final = "otel_llm_rollup_evicted_total"

OTEL_DURATION: Final = "gen_ai.client.operation.duration"
OTEL_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
OTEL_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
OTEL_TOKENS: Final = "gen_ai.client.tokens"
OTEL_COST: Final = "gen_ai.client.cost"
OTEL_UNPRICED: Final = "gen_ai.client.unpriced_operations"
OTEL_INVALID_ATTRIBUTES: Final = "otel_llm.invalid_attributes"
OTEL_PROCESSOR_ERRORS: Final = "otel_llm.processor.errors"
OTEL_ROLLUP_EVICTED: Final = "otel_llm.rollup.evicted"

TOKEN_TYPES: Final = ("input", "output", "cache_read", "cache_creation", "reasoning")
