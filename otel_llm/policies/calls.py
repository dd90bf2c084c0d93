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
from otel_llm.policies.engine import PolicyCall, SpanIds
from otel_llm.pricing import Unpriced

_make = PolicyCall._make  # tuple.__new__: a third of the generated __new__'s time
_PROJECT = sc.CONTEXT_PREFIX + "project_id"
_FEATURE = sc.CONTEXT_PREFIX + "feature"
_USER = sc.CONTEXT_PREFIX + "user_id"
_API_KEY = sc.CONTEXT_PREFIX + "api_key_id"


def policy_call(
    derived: Derived,
    attributes: Mapping[str, Any],
    start_time_ns: int | None = None,
    call_id: str | bytes | tuple[bytes, bytes] | SpanIds | None = None,
) -> PolicyCall:
    """The ``PolicyCall`` of one derived call and its span's attributes."""
    call = derived.call
    priced = derived.priced
    input_tokens, output_tokens = call.input_tokens, call.output_tokens
    tokens = None
    if input_tokens is not None or output_tokens is not None:
        tokens = (input_tokens or 0) + (output_tokens or 0)
    get = attributes.get
    project, feature, user, api_key = get(_PROJECT), get(_FEATURE), get(_USER), get(_API_KEY)
    requested = get(sc.GEN_AI_REQUEST_MAX_TOKENS)
    # One is made per call on the collector's request path: a value that is absent or a
    # non-empty string (nearly all) costs a test or two, not a call of ``_text``.
    if project is not None and (type(project) is not str or not project):
        project = _text(project)
    if feature is not None and (type(feature) is not str or not feature):
        feature = _text(feature)
    if user is not None and (type(user) is not str or not user):
        user = _text(user)
    if api_key is not None and (type(api_key) is not str or not api_key):
        api_key = _text(api_key)
    key = (
        derived.service_name or None,
        project,
        feature,
        user,
        api_key,
        call.provider,
        call.request_model or call.response_model,
    )
    return _make(
        (
            key,
            start_time_ns or derived.start_time_ns,
            None if isinstance(priced, Unpriced) else priced.nanos(),
            tokens,
            requested if type(requested) is int else None,  # not a bool
            call_id,
        )
    )


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)
