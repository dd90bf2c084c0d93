"""What the policies read of a call: ``PolicyCall``, and the one reading of a priced span.

The scope values are those the call log stores (``calllog/record.py``): the service, the
provider, the request model (else the response's), and the ``otel_llm.context.*`` attributes
``llm_context`` sets (project, feature, user, API key id). So the spend recovered from the
store after a restart is made of the same calls, matched the same way.

A span's call is read in one place, ``_SCOPE`` and ``_READ`` below: ``reader(fields)`` is that
reading, for the scope values of ``fields`` only, plus the call's start, cost and size. The
engine (``PolicyEngine.observe_spans``) looks a call's plan up by the values some policy reads
(``matching.projected``) and reads the whole key (``policy_call``, the same reader over every
field) only for a call it has no plan for yet or must judge. The reader is one function per
set of fields, compiled from the table's expressions (never from any input) -- a call costs
one function call, and nothing for the fields no policy names (with 1,000 policies this step
is about a tenth of the collector's request path: a call of a function per field, or reading
every field, was most of it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from otel_llm import _semconv as sc
from otel_llm.derive import Derived
from otel_llm.policies.model import SCOPE_FIELDS, ScopeKey
from otel_llm.pricing import Unpriced

__all__ = ["CallId", "DerivedCall", "PolicyCall", "SpanCall", "policy_call", "reader"]


class SpanIds(Protocol):
    """A span's ids (an OTLP protobuf span)."""

    @property
    def trace_id(self) -> bytes: ...
    @property
    def span_id(self) -> bytes: ...


CallId = str | bytes | tuple[bytes, bytes] | SpanIds | None
"""The call log's id, or the span's (trace id, span id) to make it from when needed (or both as
one ``bytes``, the collector's span key) -- or the span itself (its ids read only if the call
crosses a limit; not for an engine that ``follow_store``s, which keys its pending calls by
id)."""


class PolicyCall(NamedTuple):
    """What the policies read of one call: made by hand, or from a span by ``policy_call``."""

    key: ScopeKey
    time_ns: int
    """When the call started (the call log's ``created_at``)."""
    cost_nanos: int | None
    """None: unpriced -- it adds no money (an unknown cost is not 0) but its tokens."""
    tokens: int | None
    """Input + output, as the call log's ``total_tokens``."""
    requested_max_tokens: int | None = None
    call_id: CallId = None

    @property
    def model(self) -> str | None:
        return self.key[6]

    @property
    def id(self) -> str | None:
        """The call log's id of the call (``{trace id}-{span id}`` in hex)."""
        ident = self.call_id
        if ident is None or isinstance(ident, str):
            return ident
        if isinstance(ident, bytes):
            ident = (ident[:16], ident[16:])
        elif not isinstance(ident, tuple):
            ident = (ident.trace_id, ident.span_id)
        trace_id, span_id = (int.from_bytes(raw, "big") for raw in ident)
        return f"{trace_id:032x}-{span_id:016x}" if trace_id and span_id else None


class SpanCall(Protocol):
    """A priced call and its span's attributes (the collector's ``EnrichedCall``, a
    ``DerivedCall``)."""

    @property
    def derived(self) -> Derived: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...


class DerivedCall(NamedTuple):
    """A ``SpanCall`` with its id (an application's own call, ``localpolicies``)."""

    derived: Derived
    attributes: Mapping[str, Any]
    call_id: CallId = None


CallFields = tuple[object, int, int | None, int | None, int | None]
"""A reader's answer: the scope values read (``matching.projection``'s shape: none ``()``, one
bare, else a tuple), the start, nano-USD (None: unpriced), tokens, the requested max_tokens --
``PolicyCall``'s fields, but the id."""


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _attribute(name: str) -> str:
    # Absent or a non-empty string (nearly all): a test or two, not a call of ``_text``.
    return (
        f"(_v if (_v := attributes.get({name!r})) is None or (type(_v) is str and _v) "
        "else _text(_v))"
    )


_SCOPE = (  # each of SCOPE_FIELDS, read from ``derived``, its ``call`` and ``attributes``
    "(derived.service_name or None)",
    _attribute(sc.CONTEXT_PREFIX + "project_id"),
    _attribute(sc.CONTEXT_PREFIX + "feature"),
    _attribute(sc.CONTEXT_PREFIX + "user_id"),
    _attribute(sc.CONTEXT_PREFIX + "api_key_id"),
    "call.provider",
    "(call.request_model or call.response_model)",
)
assert len(_SCOPE) == len(SCOPE_FIELDS)

_READ = """
def read(item):
    derived = item.derived
    call = derived.call
    attributes = item.attributes
    priced = derived.priced
    tokens = call.input_tokens
    output = call.output_tokens
    if output is not None:
        tokens = output if tokens is None else tokens + output
    requested = attributes.get({requested!r})
    return (
        {scope},
        derived.start_time_ns,
        None if isinstance(priced, Unpriced) else priced.nanos(),
        tokens,
        requested if type(requested) is int else None,  # not a bool
    )
"""


@lru_cache(maxsize=32)
def reader(fields: tuple[int, ...]) -> Callable[[SpanCall], CallFields]:
    """The reading of a span's call, for the scope values at ``fields`` (indexes of
    ``SCOPE_FIELDS``, in order)."""
    if not fields:
        scope = "()"
    elif len(fields) == 1:
        scope = _SCOPE[fields[0]]
    else:
        scope = "(" + "".join(f"{_SCOPE[index]}, " for index in fields) + ")"
    namespace: dict[str, Any] = {"Unpriced": Unpriced, "_text": _text}
    # The table's expressions and the template above, nothing else (see the module's doc).
    exec(_READ.format(requested=sc.GEN_AI_REQUEST_MAX_TOKENS, scope=scope), namespace)  # noqa: S102
    read: Callable[[SpanCall], CallFields] = namespace["read"]
    return read


_whole = reader(tuple(range(len(SCOPE_FIELDS))))


def policy_call(call: SpanCall, call_id: CallId = None) -> PolicyCall:
    """The ``PolicyCall`` of a span's call."""
    key, when, cost, tokens, requested = _whole(call)
    return PolicyCall(key, when, cost, tokens, requested, call_id)  # type: ignore[arg-type]
