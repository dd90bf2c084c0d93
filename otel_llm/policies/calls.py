"""A call's ``PolicyCall``: the values a policy reads, taken as the call log takes them.

The scope values are those the call log stores (``calllog/record.py``): the service, the
provider, the request model (else the response's), and the ``otel_llm.context.*`` attributes
``llm_context`` sets (project, feature, user, API key id). So the spend recovered from the
store after a restart is made of the same calls, matched the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from otel_llm import _semconv as sc
from otel_llm.derive import Derived
from otel_llm.policies.engine import PolicyCall
from otel_llm.pricing import Unpriced
from otel_llm.pricing.cost import to_nanos

_PROJECT = sc.CONTEXT_PREFIX + "project_id"
_FEATURE = sc.CONTEXT_PREFIX + "feature"
_USER = sc.CONTEXT_PREFIX + "user_id"
_API_KEY = sc.CONTEXT_PREFIX + "api_key_id"


def policy_call(
    derived: Derived,
    attributes: Mapping[str, Any],
    start_time_ns: int | None = None,
    call_id: str | None = None,
) -> PolicyCall:
    """The ``PolicyCall`` of one derived call and its span's attributes."""
    call = derived.call
    priced = derived.priced
    tokens = None
    if call.input_tokens is not None or call.output_tokens is not None:
        tokens = (call.input_tokens or 0) + (call.output_tokens or 0)
    requested = attributes.get(sc.GEN_AI_REQUEST_MAX_TOKENS)
    key = (
        derived.service_name or None,
        _text(attributes.get(_PROJECT)),
        _text(attributes.get(_FEATURE)),
        _text(attributes.get(_USER)),
        _text(attributes.get(_API_KEY)),
        call.provider,
        call.request_model or call.response_model,
    )
    return PolicyCall(
        key,
        start_time_ns or derived.start_time_ns,
        None if isinstance(priced, Unpriced) else to_nanos(priced.amount),
        tokens,
        requested if isinstance(requested, int) and not isinstance(requested, bool) else None,
        call_id,
    )


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)
