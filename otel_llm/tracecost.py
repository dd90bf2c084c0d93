"""What a run cost: the LLM calls of a trace rolled up to their agents and local root.

An agent run is a trace: an ``invoke_agent`` span (or OpenInference's ``AGENT`` span) with LLM
calls, tool calls and sub-agents under it. Two things flow through the trace here:

- **down, at start**: each span started under an agent span learns its nearest enclosing agent
  (name, id, conversation), so an LLM call ending under it is recorded with them;
- **up, at end**: each priced call adds its cost and tokens to every agent above it and to its
  trace's local root; when that agent or root span ends, its exported copy carries the sum
  (``otel_llm.rollup.*``).

Roll-ups are attributes of spans that are not LLM calls, so no metric counts them again.

Only spans under a live agent are followed, so a span outside any agent run costs three
dictionary tests. Both tables are bounded (``rollup_max_open``): the oldest entry goes first and
is counted (``otel_llm_rollup_evicted_total``), so a trace whose root never ends, or a flood
of agents, cannot grow memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from otel_llm import _semconv as sc
from otel_llm.derive import Derived
from otel_llm.pricing import Cost

__all__ = [
    "OPENINFERENCE_AGENT",
    "OPENINFERENCE_KIND",
    "AgentScope",
    "CallParts",
    "Rollup",
    "TraceCosts",
    "agent_of_span",
    "call_parts",
    "span_role",
]

OPENINFERENCE_KIND = "openinference.span.kind"
OPENINFERENCE_AGENT = "AGENT"
OPENINFERENCE_TOOL = "TOOL"
"""OpenInference names an agent's span by its kind, not by an operation; the agent's name is
then the span's name."""


def agent_of_span(name: str, attributes: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(agent name, agent id, conversation id) when the span is an agent's run, else None.

    Read at the span's start: the conventions and OpenInference both name an agent span as it
    starts. Values that are not text become text; absent ones are ``""``.
    """
    if attributes.get(sc.GEN_AI_OPERATION_NAME) == sc.OPERATION_INVOKE_AGENT:
        agent = attributes.get(sc.GEN_AI_AGENT_NAME)
    elif attributes.get(OPENINFERENCE_KIND) == OPENINFERENCE_AGENT:
        agent = attributes.get(sc.GEN_AI_AGENT_NAME) or name
    else:
        return None
    return (
        _text(agent),
        _text(attributes.get(sc.GEN_AI_AGENT_ID)),
        _text(attributes.get(sc.GEN_AI_CONVERSATION_ID)),
    )


def span_role(name: str, attributes: Mapping[str, Any], has_parent: bool) -> str | None:
    """What a span that is not an LLM call is in a trace's cost tree: ``agent``, ``tool``,
    ``root`` (no parent), ``span`` (a local root whose parent is in another process: it
    carries a roll-up; or another GenAI span between an agent and its calls), or None: a span
    the tree does not keep (most spans).

    The call log keeps these (bounded per trace) so a trace's calls can be shown under the
    agents and tools that made them, from any process (``calllog/tracespans.py``)."""
    if agent_of_span(name, attributes) is not None:
        return "agent"
    if (
        attributes.get(sc.GEN_AI_OPERATION_NAME) == sc.OPERATION_EXECUTE_TOOL
        or attributes.get(OPENINFERENCE_KIND) == OPENINFERENCE_TOOL
    ):
        return "tool"
    if not has_parent:
        return "root"
    if (
        sc.OTEL_LLM_ROLLUP_CALLS in attributes
        or OPENINFERENCE_KIND in attributes
        or sc.GEN_AI_OPERATION_NAME in attributes
    ):
        # A framework's own step between an agent and its calls (the OpenAI Agents SDK's
        # "turn", a LangChain chain): without it the calls under it would lose their agent.
        return "span"
    return None


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


CallParts = tuple[int | None, int | None, int | None, int | None, int | None, Decimal | None, bool]
"""What a roll-up adds of one call: its five token counts (``sc.TOKEN_TYPES``' order), its exact
cost (None: unpriced) and whether it failed. A tuple: the processor's one pass has no
``Derived`` to hand over."""


def call_parts(derived: Derived) -> CallParts:
    """The ``CallParts`` of a priced call."""
    call = derived.call
    priced = derived.priced
    return (
        call.input_tokens,
        call.output_tokens,
        call.cache_read_tokens,
        call.cache_creation_tokens,
        call.reasoning_tokens,
        priced.amount if isinstance(priced, Cost) else None,
        bool(derived.error_type),
    )


class Rollup:
    """The LLM calls that ended under one span: exact cost, tokens by type, counts."""

    __slots__ = ("cost", "counts", "tokens")

    def __init__(self) -> None:
        self.cost = Decimal(0)
        self.tokens = [0, 0, 0, 0, 0]
        """input, output, cache_read, cache_creation, reasoning (``sc.TOKEN_TYPES``)."""
        self.counts = [0, 0, 0]
        """calls, unpriced calls, failed calls."""

    def add(self, call: CallParts) -> None:
        input_, output, cache_read, cache_creation, reasoning, cost, failed = call
        tokens = self.tokens
        tokens[0] += input_ or 0
        tokens[1] += output or 0
        tokens[2] += cache_read or 0
        tokens[3] += cache_creation or 0
        tokens[4] += reasoning or 0
        counts = self.counts
        counts[0] += 1
        if cost is not None:
            self.cost += cost  # a Decimal: the sum stays exact
        else:
            counts[1] += 1
        if failed:
            counts[2] += 1

    def attributes(self) -> dict[str, Any]:
        """The ``otel_llm.rollup.*`` attributes of the span the calls ended under."""
        calls, unpriced, failed = self.counts
        attributes: dict[str, Any] = {
            sc.OTEL_LLM_ROLLUP_CALLS: calls,
            sc.OTEL_LLM_ROLLUP_UNPRICED_CALLS: unpriced,
            sc.OTEL_LLM_ROLLUP_FAILED_CALLS: failed,
            sc.OTEL_LLM_ROLLUP_COST_AMOUNT: float(self.cost),
            sc.OTEL_LLM_ROLLUP_COST_EXACT: str(self.cost),
        }
        for name, count in zip(sc.ROLLUP_TOKEN_ATTRIBUTES, self.tokens, strict=True):
            attributes[name] = count
        return attributes


class AgentScope:
    """One live agent span: who it is, the agent it runs under, what its calls cost so far."""

    __slots__ = ("agent_id", "conversation", "name", "outer", "rollup", "span_id")

    def __init__(
        self, span_id: int, identity: tuple[str, str, str], outer: AgentScope | None
    ) -> None:
        self.span_id = span_id
        self.name, self.agent_id, own_conversation = identity
        # A sub-agent runs in its caller's conversation unless it names its own.
        self.conversation: str = own_conversation or (
            outer.conversation if outer is not None else ""
        )
        self.outer = outer
        self.rollup = Rollup()

    def call_attributes(self) -> dict[str, str]:
        """What an LLM call under this agent inherits (the call's own values win)."""
        inherited = {}
        if self.name:  # an invoke_agent span need not name its agent
            inherited[sc.GEN_AI_AGENT_NAME] = self.name
        if self.agent_id:
            inherited[sc.GEN_AI_AGENT_ID] = self.agent_id
        if self.conversation:
            inherited[sc.GEN_AI_CONVERSATION_ID] = self.conversation
        return inherited


class TraceCosts:
    """The processor's view of agent runs and traces in flight; thread-safe.

    ``on_evicted(kind)`` is told of each entry given up to the bound (``kind``: ``agent_span``
    or ``trace``).
    """

    def __init__(self, max_open: int, on_evicted: Callable[[str], None]) -> None:
        self._max_open = max_open
        self._on_evicted = on_evicted
        self._lock = threading.Lock()
        # Public for their truth value only, which the processor tests on every span (it keeps
        # references: the two dicts are never replaced); a property would double what a span
        # outside any agent run costs here.
        self.under: dict[int, AgentScope] = {}
        """span id -> the nearest agent at or above it, for spans started under an agent."""
        self.traces: dict[int, Rollup] = {}
        """trace id -> calls ended in the trace whose local root has not ended yet."""

    def started(
        self, span_id: int, parent_id: int | None, agent: tuple[str, str, str] | None
    ) -> None:
        """A span started; ``parent_id`` when its parent is local, ``agent`` when it is one."""
        with self._lock:
            enclosing = self.under.get(parent_id) if parent_id is not None else None
            if agent is not None:
                enclosing = AgentScope(span_id, agent, enclosing)
            if enclosing is not None:
                self._put(self.under, span_id, enclosing, "agent_span")

    def ended(self, span_id: int) -> AgentScope | None:
        """The nearest agent at or above an ending span (forgotten from now on)."""
        with self._lock:
            return self.under.pop(span_id, None)

    def add_call(self, call: CallParts, agent: AgentScope | None, trace_id: int | None) -> None:
        """A priced call ended under ``agent`` (if any), in trace ``trace_id`` unless the call
        is its trace's local root (None)."""
        with self._lock:
            while agent is not None:
                agent.rollup.add(call)
                agent = agent.outer
            if trace_id is None:
                return
            rollup = self.traces.get(trace_id)
            if rollup is None:
                rollup = Rollup()
                self._put(self.traces, trace_id, rollup, "trace")
            rollup.add(call)

    def root_ended(self, trace_id: int) -> Rollup | None:
        """The calls of the trace that ended under the local root ending now."""
        with self._lock:
            return self.traces.pop(trace_id, None)

    def _put(self, table: dict[int, Any], key: int, value: Any, kind: str) -> None:
        if key not in table and len(table) >= self._max_open:
            table.pop(next(iter(table)))  # the oldest: a root that never ended, most likely
            self._on_evicted(kind)
        table[key] = value
