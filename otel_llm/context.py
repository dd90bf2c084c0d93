"""Call context: who and what an LLM call was for (feature, user, project, API key, ...).

``llm_context`` values are set on every GenAI span started inside it, as
``otel_llm.context.<key>`` attributes, and can become metric labels through ``extra_labels``.
Contexts nest; an inner value wins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, Literal

from otel_llm import _semconv as sc

_current: ContextVar[Mapping[str, Any]] = ContextVar(
    "otel_llm_context", default=MappingProxyType({})
)

_logger = logging.getLogger(__name__)

_ATTRIBUTE_TYPES = (str, bool, int, float)
_INT64 = range(-(1 << 63), 1 << 63)


def _stored(key: str, value: Any) -> str | bool | int | float | None:
    """What the span carries of a context value (None: nothing)."""
    if isinstance(value, _ATTRIBUTE_TYPES) and (
        not isinstance(value, int) or isinstance(value, bool) or value in _INT64
    ):
        return value
    try:  # an int beyond 64 bits (found in review: an exporter dropped it, or the batch)
        return str(value)
    except Exception:  # noqa: BLE001 - the value's own code, or an int too long for str
        _logger.debug("otel-llm: llm_context(%s=...) ignored: its str() failed", key)
        return None


class _Entered:
    """Whether this process ever entered an ``llm_context`` (``ENTERED.ever``).

    Until one is entered, no span can start inside one, so the processor's on_start, which runs
    on every span, does not look the context variable up (a C call and a search of the
    context: ~300 of the ~2,500 instructions our hooks added to a plain span,
    benchmarks/span_instructions.py). Never reset: a thread or task may still run in a context
    copied from inside one after it was left. An instance attribute, which the interpreter
    reads in one specialised step, where a class attribute or a function call takes several.
    """

    def __init__(self) -> None:
        self.ever = False


ENTERED = _Entered()

_CONVENTION_KEYS = {
    "agent": sc.GEN_AI_AGENT_NAME,
    "agent_id": sc.GEN_AI_AGENT_ID,
    "conversation": sc.GEN_AI_CONVERSATION_ID,
}
"""llm_context keywords that name a conventions' attribute, not an ``otel_llm.context.*`` one."""
_CONVENTION_NAMES = frozenset(_CONVENTION_KEYS.values())


@contextmanager
def llm_context(
    *,
    feature: str | None = None,
    user_id: str | None = None,
    project_id: str | None = None,
    api_key_id: str | None = None,
    pipeline_step: str | None = None,
    agent: str | None = None,
    agent_id: str | None = None,
    conversation: str | None = None,
    billing: Literal["credits", "own_key"] | None = None,
    **more: Any,
) -> Iterator[Mapping[str, Any]]:
    """Attach call context to the GenAI spans started inside the ``with`` block.

    ``agent``, ``agent_id`` and ``conversation`` become the conventions' ``gen_ai.agent.name``,
    ``gen_ai.agent.id`` and ``gen_ai.conversation.id`` (they win over an enclosing
    ``invoke_agent`` span's, as a call's own values win over both); the other keys
    ``otel_llm.context.<key>``.
    Values that are not str, bool, int or float are stored as their ``str()`` (an int beyond
    64 bits too: OTLP cannot carry it); None is skipped, and so is a value whose ``str()``
    raises (with a debug log).
    ``billing`` says how the calls are billed -- ``credits`` (through a gateway/router) or
    ``own_key`` (a direct provider key) -- overriding what otel-llm infers (a provider-reported
    cost, the ``billing_gateways`` setting); another value is ignored when the call is priced.
    """
    given = {
        "feature": feature,
        "user_id": user_id,
        "project_id": project_id,
        "api_key_id": api_key_id,
        "pipeline_step": pipeline_step,
        "billing": billing,
        **more,
        _CONVENTION_KEYS["agent"]: agent,
        _CONVENTION_KEYS["agent_id"]: agent_id,
        _CONVENTION_KEYS["conversation"]: conversation,
    }
    attributes = dict(_current.get())
    for key, value in given.items():
        if value is None:
            continue
        name = key if key in _CONVENTION_NAMES else sc.CONTEXT_PREFIX + key
        stored = _stored(key, value)
        if stored is not None:
            attributes[name] = stored
    ENTERED.ever = True  # before the variable is set: a span started inside it must see both
    token = _current.set(attributes)
    try:
        yield attributes
    finally:
        _current.reset(token)


current_context_attributes: Callable[[], Mapping[str, Any]] = _current.get
"""The attributes of the innermost ``llm_context`` (empty outside any). The context variable's
own ``get``: the processor asks at every span's start once ``ENTERED.ever``, and a wrapping
function doubled that."""
