"""Pricing and measuring the GenAI spans of an OTLP export request, in place.

The same pricing as ``LLMSpanProcessor`` (a ``otel_llm.pricer.Pricer``) and the same rules:

* Most spans are not LLM calls: they cost a look at their attribute keys and are left as they
  are, byte for byte.
* An LLM span gains the cost attributes (or the reason it has none); a cost it came with that
  could not be trusted is removed.
* Nesting: an LLM span that is the parent of another LLM span in the same request (two
  instrumentations of one call) is marked ``otel_llm.call.counted_in`` with the id of the
  innermost one and neither priced nor measured -- the innermost is.
* A span an in-process ``LLMSpanProcessor`` already handled (it carries
  ``otel_llm.cost.price_data``, ``otel_llm.cost.unpriced_reason`` or
  ``otel_llm.call.counted_in``) is forwarded unchanged and NOT recorded in the metrics again:
  the application's own ``/metrics`` has it, and a dashboard summing both would count it twice.
  It is still derived and handed to the call sink (unless it is a ``counted_in`` marker), so a
  call log fed from here stores every call once, whichever process priced it.
* Redelivery: a call whose span's (trace id, span id) was recorded among the last
  ``dedup_window`` calls is priced and forwarded again but not recorded again (``dedup.py``),
  and marked ``redelivered`` (the collector's policies evaluate it once, by this same answer);
  ``EnrichResult.duplicates`` counts those priced here. Checked when the metrics are recorded,
  not when the span is priced: a request refused (queue full) was not recorded, so its retry
  counts once.

With ``tree_spans`` (the call log is on), the spans a trace's cost tree needs besides its
calls -- roots, agents, tools (``tracecost.span_role``) -- are handed on too
(``EnrichResult.tree``), found with the same byte search (agents and tools carry the keys
calls do) plus a look at each span's parent id; they are not changed.

Enriching never raises: a span whose derivation fails is forwarded unchanged and counted in
``otel_llm_processor_errors_total{stage="collector"}``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_llm import _semconv as sc
from otel_llm.call import is_llm_call, may_be_llm_call
from otel_llm.collector import wire
from otel_llm.collector.dedup import RecentSpans, span_key
from otel_llm.collector.otlp import UNTRUSTED_WHEN_UNPRICED, apply_attributes, attributes_of
from otel_llm.derive import Derived
from otel_llm.dialects import OPERATION_MARKERS
from otel_llm.metrics.prometheus import PrometheusRecorder
from otel_llm.pricer import Pricer
from otel_llm.pricing import Unpriced
from otel_llm.tracecost import agent_of_span, span_role

_logger = logging.getLogger(__name__)

MARKER_ATTRIBUTES = tuple(attribute for attribute, _ in OPERATION_MARKERS)

ERROR_STAGE = "collector"
"""The ``stage`` label of ``otel_llm_processor_errors_total`` for failures in the service."""

# The keys that can make a span an LLM call (see otel_llm.call.may_be_llm_call), as they appear
# in a protobuf encoding: a span without any of them is not one.
_MARKERS = tuple(key.encode() for key in (sc.GEN_AI_OPERATION_NAME, *MARKER_ATTRIBUTES))
_SERVICE_NAME = "service.name"
_ALREADY_HANDLED = (
    sc.OTEL_LLM_COST_PRICE_DATA,
    sc.OTEL_LLM_COST_UNPRICED_REASON,
    sc.OTEL_LLM_CALL_COUNTED_IN,
)
_ALREADY_HANDLED_SET = frozenset(_ALREADY_HANDLED)
MAX_TREE_ROOTS = 10_000
"""Root spans one request hands on for the trees (``EnrichResult.tree``), the first ones. Every
span without a parent is a root: a 3.9 MB request of 2,000,000 empty spans made as many (545 MB),
and the call log keeps at most 10,000 roots waiting for a call of their trace anyway."""
_T = TypeVar("_T")


@dataclass(slots=True)
class EnrichedCall:
    """One LLM call found in a request, for the call sink (the call log of issue 5)."""

    derived: Derived
    attributes: dict[str, Any]
    """The span's attributes as they arrived (before the cost attributes were added)."""
    span: Span
    """The protobuf span, as forwarded (with its cost attributes)."""
    resource: dict[str, Any]
    """The resource's attributes."""
    scope: str | None
    """The instrumentation scope's name."""
    measured: bool
    """True when this service recorded its metrics; False when an in-process
    ``LLMSpanProcessor`` had already priced and measured it (the span is unchanged)."""
    span_key: bytes | None = None
    """Its span's ``dedup.span_key``, once ``Enricher.record`` made it (the policies key the
    calls they remember until stored by it: reading the ids from the protobuf again costs)."""
    redelivered: bool = False
    """Its span was among the last ``dedup_window`` calls recorded (``Enricher.record``): a
    redelivery, measured and evaluated against the policies the first time only."""
    policy: tuple[str, str, str] | None = None
    """Its most severe policy violation, (policy, rule, action), set by the collector's
    policies after the call's request was queued (``collector/policies.py``); None: none."""


@dataclass(slots=True)
class EnrichedSpan:
    """A span of a trace's cost tree that is no LLM call (a root, agent, tool), for the call
    sink's span side (``tracecost.span_role`` says which ``kind``)."""

    span: Span
    kind: str
    service: str | None
    agent_name: str | None


@dataclass(slots=True)
class EnrichResult:
    """What enriching one request found and did."""

    spans: int = 0
    """Spans in the request."""
    modified: bool = False
    """Some span was changed: the request must be serialized again."""
    calls: list[EnrichedCall] = field(default_factory=list)
    errors: int = 0
    """Spans passed on unchanged because deriving them failed."""
    recorded: bool = False
    duplicates: int = 0
    """Calls priced here that were not recorded again: their span was recorded recently."""
    tree: list[EnrichedSpan] = field(default_factory=list)
    """The tree's other spans (only with ``tree_spans``)."""
    payload: bytes | None = None
    """With ``raw``: the request's encoding to forward (``raw`` itself when nothing changed)."""


_COPY_BYTES_PER_BYTE = 4
"""What a parsed span takes a byte of its encoding, at most in practice (~3.5x, measured on the
benchmarks' GenAI spans)..."""
_COPY_BYTES_PER_PART = 64
"""...and an attribute, event or link of it, whatever its encoding (an empty event is two
bytes on the wire and tens of bytes parsed)."""
_COPY_BYTES_PER_SPAN = 256
"""...and the span itself."""


def detach(result: EnrichResult, size: int) -> int:
    """Have each call and tree span of ``result`` hold a span of its own when the request has
    others, so that what keeps them (the queue's memo for the call feeder) keeps those spans
    only, not the whole parsed request of ``size`` bytes -- found in review: one call beside a
    span of a million empty events (2 MB on the wire, ~60 MB parsed) kept all of it, weighed
    as 2 MB. Returns what is kept, at most (encodings, attributes, events and links). A request
    of calls and tree spans only is kept as it is: copies would hold as much. A copy costs ~3-5
    us (measured in the enricher's loop); with the call log on, +2.1 % of the service's CPU a
    span at 100 % GenAI spans, +5.3 % at 10 % (``benchmarks/collector_throughput.py``)."""
    found: list[EnrichedCall | EnrichedSpan] = [*result.calls, *result.tree]
    if len(found) >= result.spans:
        parts = sum(_parts(item.span) for item in found)
        return _weight(size, len(found), parts)
    weight = 0
    for item in found:
        copy = Span()
        copy.CopyFrom(item.span)
        item.span = copy
        weight += _weight(copy.ByteSize(), 1, _parts(copy))
    return weight


def _parts(span: Span) -> int:
    return len(span.attributes) + len(span.events) + len(span.links)


def _weight(encoded: int, spans: int, parts: int) -> int:
    return (
        _COPY_BYTES_PER_BYTE * encoded + _COPY_BYTES_PER_SPAN * spans + _COPY_BYTES_PER_PART * parts
    )


@dataclass(slots=True)
class _Candidate:
    span: Span
    attributes: dict[str, Any]
    scope: str | None
    resource_index: int
    handled: bool
    counted_in: str | None = None
    position: int = -1
    """The span's index in the request's ``wire.Layout`` (-1: found without one)."""
    changed: bool = False


class Enricher:
    """Prices and measures the GenAI spans of OTLP requests; thread-safe.

    Args:
        pricer: prices each call; its extra attributes are those of the recorder's extra
            labels, in its label order.
        recorder: where the GenAI metrics go (``PrometheusRecorder.for_registry``).
        dedup_window: priced spans remembered by (trace id, span id); one recorded among the
            last ``dedup_window`` is not recorded again (0: every span is recorded).
    """

    def __init__(
        self,
        pricer: Pricer,
        recorder: PrometheusRecorder,
        *,
        dedup_window: int = 0,
        tree_spans: bool = False,
    ):
        self._pricer = pricer
        self._recorder = recorder
        self._recent = RecentSpans(dedup_window)
        self.tree_spans = tree_spans
        """Whether results carry the trace tree's other spans (``EnrichResult.tree``)."""

    @property
    def recorder(self) -> PrometheusRecorder:
        return self._recorder

    def enrich(
        self,
        request: ExportTraceServiceRequest,
        *,
        raw: bytes | None = None,
        record: bool = True,
    ) -> EnrichResult:
        """Price the request's GenAI spans in place; returns the calls found.

        ``raw`` is the request's protobuf encoding as received, if at hand: a request without
        a single LLM span is then recognised without looking at its spans, the spans to look at
        are found by where the LLM keys lie in it, and ``result.payload`` is the encoding to
        forward: ``raw`` with only the changed spans written again (``wire.splice``).

        With ``record=False`` the metrics are left to a later ``record(result)``: the service
        records only once the request is accepted, so a request refused (queue full) and sent
        again is not counted twice.
        """
        result = EnrichResult()
        where: list[wire.Layout] = []
        candidates: list[_Candidate] = []
        try:
            candidates = self._candidates(request, raw, result, where)
            if candidates:
                resources = [
                    attributes_of(resource_spans.resource.attributes)
                    for resource_spans in request.resource_spans
                ]
                _mark_nested(candidates)
                for candidate in candidates:
                    self._enrich_span(candidate, resources[candidate.resource_index], result)
        except Exception:  # noqa: BLE001 - a bad request must not take the service down
            self._failed(result)
        if raw is not None:
            result.payload = _payload(request, raw, where, candidates, result.modified)
        if record:
            self.record(result)
        return result

    def record(self, result: EnrichResult) -> None:
        """Record the metrics of the calls this service priced (once per result), but for
        those whose span was recorded recently (``result.duplicates``); mark each call whose
        span was (``EnrichedCall.redelivered``)."""
        if result.recorded:
            return
        result.recorded = True
        recorder = self._recorder
        calls = result.calls
        if calls and self._recent.size:
            # Every call, measured here or not: the policies read ``redelivered`` too.
            try:
                keys = [span_key(call.span.trace_id, call.span.span_id) for call in calls]
                new = self._recent.admit(keys)
            except Exception:  # noqa: BLE001 - then each is counted, as without the window
                self._failed(result)
            else:
                for call, key, first in zip(calls, keys, new, strict=True):
                    call.span_key = key
                    if not first:
                        call.redelivered = True
                        result.duplicates += call.measured
        measured = [call for call in calls if call.measured and not call.redelivered]
        for call in measured:
            try:
                recorder.record(call.derived)
                if call.derived.rejected:
                    recorder.record_rejected(call.derived.rejected)
            except Exception:  # noqa: BLE001 - metrics must not fail the request
                self._failed(result)
        if result.errors:
            with contextlib.suppress(Exception):
                for _ in range(result.errors):
                    recorder.record_error(ERROR_STAGE)

    def _candidates(
        self,
        request: ExportTraceServiceRequest,
        raw: bytes | None,
        result: EnrichResult,
        where: list[wire.Layout],
    ) -> list[_Candidate]:
        """The request's LLM spans.

        Most spans are not LLM calls, and reading a protobuf span's attributes from Python
        costs ~0.4 µs each. So the first test is a byte search for the keys that can make a
        span an LLM call (``may_be_llm_call``'s), in the request as received -- none there,
        no span is looked at -- then in each span's encoding (C speed); only a span that
        contains one has its attributes decoded for the real test.
        """
        spans_of = [
            (index, scope_spans)
            for index, resource_spans in enumerate(request.resource_spans)
            for scope_spans in resource_spans.scope_spans
        ]
        result.spans = sum(len(scope_spans.spans) for _, scope_spans in spans_of)
        # ``in`` on bytes is a fast substring search; a regular expression of the three keys is
        # ten times slower over a whole request.
        # Agents and tools carry the same keys as calls (``gen_ai.operation.name``, OpenInference's
        # span kind): the search finds them too. Roots carry none: a look at each span's parent.
        tree = _Tree(request, result) if self.tree_spans else None
        markers = _MARKERS
        if raw is not None and not any(marker in raw for marker in markers):
            if tree:
                tree.roots(spans_of)
            return []
        found = _layout(raw, spans_of) if raw is not None else None
        if found is not None and raw is not None:
            where.append(found)
            return self._found_in(raw, found, spans_of, tree, result)
        candidates: list[_Candidate] = []
        for index, scope_spans in spans_of:
            scope = scope_spans.scope.name or None
            for span in scope_spans.spans:
                encoded = span.SerializeToString()
                for marker in markers:
                    if marker in encoded:
                        break
                else:
                    if tree and not span.parent_span_id:
                        tree.add(index, span, "root", None)
                    continue
                try:
                    attributes = attributes_of(span.attributes)
                    if not (may_be_llm_call(attributes) and is_llm_call(attributes, scope)):
                        if tree:
                            tree.maybe(index, span, attributes)
                        continue
                except Exception:  # noqa: BLE001 - one odd span must not stop the rest
                    self._failed(result)
                    continue
                handled = any(name in attributes for name in _ALREADY_HANDLED)
                candidates.append(_Candidate(span, attributes, scope, index, handled))
        return candidates

    def _found_in(
        self,
        raw: bytes,
        where: wire.Layout,
        spans_of: list[tuple[int, Any]],
        tree: _Tree | None,
        result: EnrichResult,
    ) -> list[_Candidate]:
        """``_candidates`` of a request whose spans' places in ``raw`` are known: only the
        spans holding an LLM key (found by ``bytes.find``, C speed) are looked at from Python;
        the others are never touched (but for the roots of the trees, with ``tree``)."""
        positions: list[int] = []
        for marker in _MARKERS:
            find = raw.find
            at = find(marker)
            while at >= 0:
                positions.append(at)
                at = find(marker, at + len(marker))
        hits = where.spans_at(positions)
        firsts = []  # the index of each scope's first span
        total = 0
        for _, scope_spans in spans_of:
            firsts.append(total)
            total += len(scope_spans.spans)
        scope_of = where.scope_of
        candidates: list[_Candidate] = []
        scopes: dict[int, str | None] = {}
        for position in hits:
            scope_index = scope_of[position]
            index, scope_spans = spans_of[scope_index]
            try:
                span = scope_spans.spans[position - firsts[scope_index]]
                if scope_index in scopes:
                    scope = scopes[scope_index]
                else:
                    scope = scopes[scope_index] = scope_spans.scope.name or None
                attributes = attributes_of(span.attributes)
                if not (may_be_llm_call(attributes) and is_llm_call(attributes, scope)):
                    if tree:
                        tree.maybe(index, span, attributes, position)
                    continue
            except Exception:  # noqa: BLE001 - one odd span must not stop the rest
                self._failed(result)
                continue
            handled = not _ALREADY_HANDLED_SET.isdisjoint(attributes)
            candidates.append(_Candidate(span, attributes, scope, index, handled, None, position))
        if tree:
            tree.roots_but(spans_of, firsts, set(hits))
        return candidates

    def _enrich_span(
        self, candidate: _Candidate, resource: dict[str, Any], result: EnrichResult
    ) -> None:
        if candidate.handled:
            if sc.OTEL_LLM_CALL_COUNTED_IN in candidate.attributes:
                return  # a marker of a call counted in another span: not a call of its own
            derived = self._derive(candidate, resource, result)
            if derived is not None:
                result.calls.append(_call(candidate, derived, resource, measured=False))
            return
        if candidate.counted_in is not None:
            # Priced and measured as the LLM span nested in it; forwarded saying so.
            marker = {sc.OTEL_LLM_CALL_COUNTED_IN: candidate.counted_in}
            self._apply(candidate, marker, (), result)
            return
        derived = self._derive(candidate, resource, result)
        if derived is None:
            return
        remove = UNTRUSTED_WHEN_UNPRICED if isinstance(derived.priced, Unpriced) else ()
        if self._apply(candidate, derived.cost_attributes(), remove, result):
            result.calls.append(_call(candidate, derived, resource, measured=True))

    def _derive(
        self, candidate: _Candidate, resource: dict[str, Any], result: EnrichResult
    ) -> Derived | None:
        try:
            return self._pricer.price_otlp_span(
                candidate.span, candidate.attributes, candidate.scope, resource
            )
        except Exception:  # noqa: BLE001 - the span goes on unchanged, the failure is counted
            self._failed(result)
            return None

    def _apply(
        self,
        candidate: _Candidate,
        added: dict[str, Any],
        remove: Sequence[str],
        result: EnrichResult,
    ) -> bool:
        try:
            # Checks every value before changing the span: a failure leaves it as it came.
            apply_attributes(
                candidate.span, added, remove=remove, present=candidate.attributes.keys()
            )
        except Exception:  # noqa: BLE001 - forwarded as it came
            self._failed(result)
            return False
        result.modified = True
        candidate.changed = True
        return True

    @staticmethod
    def _failed(result: EnrichResult) -> None:
        _logger.exception("otel-llm collector: a span could not be enriched; passed on unchanged")
        result.errors += 1


class _Tree:
    """Collects the spans of a request that a trace's cost tree shows besides its calls."""

    def __init__(self, request: ExportTraceServiceRequest, result: EnrichResult):
        self._request = request
        self._result = result
        self._services: dict[int, str | None] = {}
        self._positions: list[int] = []
        """Each tree span's index in the request, when found out of order (``roots_but``)."""
        self._roots = 0
        """Roots handed on so far."""

    def roots(self, spans_of: list[tuple[int, Any]]) -> None:
        """The request's root spans (a request without any GenAI key)."""
        tree = self._result.tree
        for index, scope_spans in spans_of:
            roots = self._first_roots(span for span in scope_spans.spans if not span.parent_span_id)
            if roots:
                service = self._service(index)
                tree.extend([EnrichedSpan(span, "root", service, None) for span in roots])

    def roots_but(
        self, spans_of: list[tuple[int, Any]], firsts: list[int], looked_at: set[int]
    ) -> None:
        """The request's root spans but those in ``looked_at`` (positions: spans' indexes in
        the request, ``firsts`` each scope's first), then the tree in the request's order."""
        positions, tree = self._positions, self._result.tree
        for (index, scope_spans), first in zip(spans_of, firsts, strict=True):
            roots = self._first_roots(
                (first + offset, span)
                for offset, span in enumerate(scope_spans.spans)
                if not span.parent_span_id and first + offset not in looked_at
            )
            if roots:
                service = self._service(index)
                positions.extend(position for position, _ in roots)
                tree.extend([EnrichedSpan(span, "root", service, None) for _, span in roots])
        if looked_at:
            ordered = sorted(zip(positions, tree, strict=True), key=lambda pair: pair[0])
            tree[:] = [entry for _, entry in ordered]

    def maybe(self, index: int, span: Span, attributes: dict[str, Any], position: int = -1) -> None:
        """A span with a GenAI key that is no LLM call: kept if the tree shows it."""
        kind = span_role(span.name, attributes, bool(span.parent_span_id))
        if kind is None:
            return
        agent = agent_of_span(span.name, attributes) if kind == "agent" else None
        if self.add(index, span, kind, agent[0] if agent else None):
            # Only a span kept has a place: ``roots_but`` pairs the places with the tree.
            self._positions.append(position)

    def add(self, index: int, span: Span, kind: str, agent_name: str | None) -> bool:
        """Hand the span on, unless it is a root past ``MAX_TREE_ROOTS``; whether it was."""
        if kind == "root":
            if self._roots >= MAX_TREE_ROOTS:
                return False
            self._roots += 1
        self._result.tree.append(EnrichedSpan(span, kind, self._service(index), agent_name or None))
        return True

    def _first_roots(self, roots: Iterator[_T]) -> list[_T]:
        """Of ``roots``, as many as the request may still hand on (``MAX_TREE_ROOTS``); the
        rest are not even looked at."""
        taken = list(islice(roots, MAX_TREE_ROOTS - self._roots))
        self._roots += len(taken)
        return taken

    def _service(self, index: int) -> str | None:
        """The ``service.name`` of the request's ``index``-th resource."""
        services = self._services
        if index not in services:
            resource = attributes_of(self._request.resource_spans[index].resource.attributes)
            service = resource.get(_SERVICE_NAME)
            services[index] = str(service) if service is not None else None
        return services[index]


def _layout(raw: bytes, spans_of: list[tuple[int, Any]]) -> wire.Layout | None:
    """The spans' places in ``raw``, if the walk and the parse agree on every scope's spans."""
    found = wire.layout(raw)
    if found is None or found.scope_counts() != [len(spans.spans) for _, spans in spans_of]:
        return None
    return found


def _payload(
    request: ExportTraceServiceRequest,
    raw: bytes,
    where: list[wire.Layout],
    candidates: list[_Candidate],
    modified: bool,
) -> bytes:
    """The request's encoding to forward: ``raw`` when nothing changed, else ``raw`` with the
    changed spans (changed in ``request`` too) written again, or the whole request serialized
    again when their places are not known."""
    if not modified:
        return raw
    changed = [c for c in candidates if c.changed]
    # Writing a span back costs about three times what serializing it with the whole request
    # does (measured: 2.9 against 1.1 us per span): past a third of the spans changed, the
    # whole request is serialized again.
    if where and len(changed) * _SPLICE_SHARE <= len(where[0].starts):
        replaced = {c.position: c.span.SerializeToString() for c in changed}
        with contextlib.suppress(Exception):  # then as a whole, below
            return wire.splice(raw, where[0], replaced)
    return request.SerializeToString()


_SPLICE_SHARE = 3
"""The request is spliced while at most one span in this many changed."""


def _call(
    candidate: _Candidate, derived: Derived, resource: dict[str, Any], *, measured: bool
) -> EnrichedCall:
    return EnrichedCall(
        derived=derived,
        attributes=candidate.attributes,
        span=candidate.span,
        resource=resource,
        scope=candidate.scope,
        measured=measured,
    )


def _mark_nested(candidates: list[_Candidate]) -> None:
    """Mark each LLM span that is the parent of another LLM span of the request with the id
    of the innermost one (``LLMSpanProcessor``'s rule: the span closest to the provider is
    priced). Spans of another trace, or whose parent is not in the request, are not nested."""
    by_id = {(c.span.trace_id, c.span.span_id): c for c in candidates if c.span.span_id}
    child_of: dict[tuple[bytes, bytes], _Candidate] = {}
    for candidate in candidates:
        parent = (candidate.span.trace_id, candidate.span.parent_span_id)
        if candidate.span.parent_span_id and parent in by_id:
            child_of[parent] = candidate  # of several, the last: the processor keeps the last
    innermost: dict[tuple[bytes, bytes], _Candidate] = {}
    for key, candidate in by_id.items():
        child = child_of.get(key)
        if child is not None:
            found = _innermost(child, child_of, innermost)
            # On a loop of parents (hostile, or a span its own parent) the walk ends back at a
            # span of the loop: that one is the call, not counted in itself.
            if found is not candidate:
                candidate.counted_in = found.span.span_id.hex()


def _innermost(
    top: _Candidate,
    child_of: dict[tuple[bytes, bytes], _Candidate],
    known: dict[tuple[bytes, bytes], _Candidate],
) -> _Candidate:
    """The innermost LLM span at or below ``top``. Every span on the way down learns the answer,
    so a chain of n spans costs O(n) in all, not O(n) for each of its spans: one request of
    16,000 chained spans took 45 s of CPU when each walked down on its own."""
    path: list[tuple[bytes, bytes]] = []
    on_path: set[tuple[bytes, bytes]] = set()
    node = top
    while True:
        key = (node.span.trace_id, node.span.span_id)
        found = known.get(key)
        if found is not None:
            break
        deeper = child_of.get(key)
        # ``on_path`` stops a malformed request whose parents form a loop.
        if deeper is None or key in on_path:
            found = node
            break
        path.append(key)
        on_path.add(key)
        node = deeper
    for key in path:
        known[key] = found
    return found
