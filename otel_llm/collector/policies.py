"""The policies in the collector: each accepted request's calls evaluated, states on ``/metrics``.

``CollectorPolicies`` is what ``CollectorService`` holds when it has a policy file: the engine
(``otel_llm.policies``), the file watcher, and a Prometheus collector that renders the engine's
state at scrape time (nothing to keep in step). The calls of a request are evaluated once the
request is on the queue -- where its metrics are recorded -- so a request refused and retried
is evaluated once, and a budget's state is current when the client's export returns. A call
the enricher marks ``redelivered`` (its span among the last ``dedup_window`` recorded: a
request sent again) is not evaluated again -- the enricher's dedup window is the one answer to
"seen before?" -- and gets its first delivery's verdict.

The metrics (``semconv/metrics.yaml``, component ``policies``):

* ``otel_llm_policy_spend_usd`` / ``otel_llm_policy_limit_usd`` {policy, rule}: a budget's spend
  in its current window and its limit (budgets with a USD limit);
* ``otel_llm_policy_tokens`` / ``otel_llm_policy_token_limit`` {policy, rule}: the same in
  tokens (budgets with a token limit);
* ``otel_llm_policy_state`` {policy, rule}: 0 ok, 1 warning, 2 exceeded;
* ``otel_llm_policy_violations_total`` {policy, rule, action}, ``otel_llm_policy_alerts_total``
  {policy, rule}, ``otel_llm_policy_blocks_total`` {policy}.

Their series are bounded by the file: one per policy and rule, none for the calls' values.

Each violating call's verdict -- (policy, rule, action), its most severe violation -- goes to
the call log with the call (fields ``policy``, ``policy_rule``, ``policy_action``). The call is
queued before it is evaluated, so the call feeder may take it from the queue first: ``expect``
marks a request's calls as pending before they are queued and gives the request a ticket,
``observe`` sets their verdicts and closes the ticket, and the feeder's ``settle`` waits (a
bound) for the pending ones before they are stored. A call the feeder derives again from the
payload (no memo: a restart, or the queue's in-memory hand-off full) is a new object that
``expect`` never marked: ``settle`` then waits for every request queued before it to be
evaluated (the tickets up to now), and finds its verdict among the recent violations, kept by
span id within a bound. A call replayed after a crash, or one whose verdict fell out of that
bound, is stored without it (its violation is still counted in the metrics).

Replicas: several collectors writing one store each evaluate the calls they receive. Every
``sync_interval`` seconds (setting ``policy_sync_interval``) each resyncs its budgets from the
store (``PolicyEngine.resync``): the store's sums, plus the calls it evaluated that its call
sink has not stored yet. ``storing`` wraps the call sink so that the engine learns which calls
are stored, and so that no call is stored while a resync reads the store (else a call could be
counted both in the store's sums and as not stored yet). So each replica's spend is the
store's total within about ``sync_interval`` plus the time its calls take to be stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from otel_llm.collector.dedup import span_key
from otel_llm.policies.engine import LEVELS, SpendHistory, Verdict
from otel_llm.policies.model import CALL_RULES, Policy
from otel_llm.policies.watch import DEFAULT_INTERVAL, PolicyFile

if TYPE_CHECKING:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    from otel_llm.collector.enrich import EnrichedCall
    from otel_llm.collector.feed import CallSink

_logger = logging.getLogger(__name__)

PROM_SPEND: Final = "otel_llm_policy_spend_usd"
PROM_LIMIT: Final = "otel_llm_policy_limit_usd"
PROM_TOKENS: Final = "otel_llm_policy_tokens"
PROM_TOKEN_LIMIT: Final = "otel_llm_policy_token_limit"  # noqa: S105 - not a password
PROM_STATE: Final = "otel_llm_policy_state"
PROM_VIOLATIONS: Final = "otel_llm_policy_violations_total"
PROM_ALERTS: Final = "otel_llm_policy_alerts_total"
PROM_BLOCKS: Final = "otel_llm_policy_blocks_total"

_NANO = Decimal(1_000_000_000)

PENDING: Final = ("", "", "")
"""A call's ``policy`` between ``expect`` and ``observe`` (no verdict is ever empty)."""
MAX_VERDICTS = 65_536
"""Recent violations kept by span id for calls derived again from the queue's payload."""
SETTLE_TIMEOUT = 5.0
"""Seconds the call feeder waits for a request's evaluation (it follows the put at once)."""


class CollectorPolicies:
    """The collector's policies: evaluation, reloading and metrics.

    Args:
        file: the engine and its file (``PolicyFile.open(path)``; raises ``PolicyFileError``
            on an invalid file).
        history: where spend is read back at start-up and for budgets a reload adds (the call
            log's store; None: budgets start at 0).
    """

    def __init__(self, file: PolicyFile, history: SpendHistory | None = None):
        self.file = file
        self.engine = file.engine
        self.history = history
        self._verdicts: OrderedDict[bytes, Verdict] = OrderedDict()
        self._settled = threading.Condition()
        self._tickets = 0
        """The last request ticket ``expect`` gave."""
        self._open: set[int] = set()
        """The tickets of requests queued and not evaluated yet (``expect`` -> ``observe``)."""
        self.sync_interval = 0.0
        """Seconds between two resyncs from ``history`` (0: none, as a single collector)."""
        self._storing = threading.Lock()
        """Held while the call sink stores and while a resync reads the store."""
        self._stopping = threading.Event()
        self._syncer: threading.Thread | None = None
        self._sync_failed = False

    @classmethod
    def open(
        cls,
        path: str,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], int] = time.time_ns,
    ) -> CollectorPolicies:
        """The policies of the file at ``path``; ``PolicyFileError`` when it is not valid."""
        holder: list[CollectorPolicies] = []
        file = PolicyFile.open(
            path,
            clock=clock,
            interval=interval,
            history=lambda: holder[0].history if holder else None,
        )
        policies = cls(file)
        holder.append(policies)
        return policies

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(_PolicyMetrics(self))

    def follow(self, history: SpendHistory, interval: float) -> None:
        """Before the service starts: read the spend back from ``history`` at start-up and,
        with an ``interval`` (seconds), resync from it that often."""
        self.history = history
        self.sync_interval = interval
        if interval > 0:
            self.engine.follow_store()  # from the first call evaluated

    def start(self) -> None:
        """Read the budgets' windows back from the history, then watch the file (and resync
        from the history, with a ``sync_interval``)."""
        if self.history is not None:
            self.engine.recover(self.history)
        self.file.start()
        if self.history is not None and self.sync_interval > 0 and self._syncer is None:
            self._stopping.clear()
            self._syncer = threading.Thread(
                target=self._sync_loop, name="otel-llm-policy-sync", daemon=True
            )
            self._syncer.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._syncer is not None:
            self._syncer.join(10)
            self._syncer = None
        self.file.stop()

    def storing(self, sink: Callable[[Sequence[EnrichedCall]], None]) -> CallSink:
        """``sink`` (the call sink), telling the engine which calls it stored, never while a
        resync reads the store."""

        def store(calls: Sequence[EnrichedCall]) -> None:
            with self._storing:
                sink(calls)
                self.engine.stored([_ident(c) for c in calls])

        return store

    def resync(self) -> int:
        """Resync the budgets from the history now; the number of budgets whose level
        changed (raises when the store cannot be read)."""
        assert self.history is not None
        with self._storing:
            return self.engine.resync(self.history)

    def _sync_loop(self) -> None:
        while not self._stopping.wait(self.sync_interval):
            try:
                changed = self.resync()
            except Exception:  # the store is down: the local spend goes on; retried later
                if not self._sync_failed:
                    _logger.exception("otel-llm collector: resyncing the budgets failed")
                self._sync_failed = True
                continue
            if self._sync_failed:
                _logger.info("otel-llm collector: the budgets are resynced from the store again")
            self._sync_failed = False
            if changed:
                _logger.info("otel-llm collector: %d budget state(s) changed at a resync", changed)

    def expect(self, calls: Sequence[EnrichedCall]) -> int:
        """Before the calls are queued: their verdicts are pending until ``observe`` is given
        the ticket returned (or ``abandon``, if the request is not queued after all)."""
        for call in calls:
            call.policy = PENDING
        with self._settled:
            self._tickets += 1
            self._open.add(self._tickets)
            return self._tickets

    def abandon(self, ticket: int) -> None:
        """The request of ``ticket`` was not queued: it will not be evaluated."""
        with self._settled:
            self._open.discard(ticket)
            self._settled.notify_all()

    def observe(self, calls: Sequence[EnrichedCall], ticket: int | None = None) -> None:
        """Evaluate the calls of an accepted request and set their verdicts; never raises.
        ``ticket``: ``expect``'s, when the calls were marked pending."""
        if not calls:
            if ticket is not None:
                self.abandon(ticket)
            return
        evaluated = calls
        for call in calls:
            if call.redelivered:  # the enricher's answer (its dedup window): evaluated once
                evaluated = [c for c in calls if not c.redelivered]
                break
        try:
            # The span stands for its ids, read from the protobuf only if the call crosses a
            # limit -- but for an engine remembering its calls by id until they are stored:
            # the span key the enricher made.
            verdicts = self.engine.observe_spans(
                evaluated, _stored_id if self.engine.follows_store else _span
            )
            if verdicts:
                self._remember(evaluated, verdicts)
        finally:
            if ticket is not None:
                self._settle_all(calls, ticket)

    def _remember(self, calls: Sequence[EnrichedCall], verdicts: dict[int, Verdict]) -> None:
        with self._settled:
            kept = self._verdicts
            for index, verdict in verdicts.items():
                call = calls[index]
                call.policy = verdict
                key = span_key(call.span.trace_id, call.span.span_id)
                if key is not None:
                    kept[key] = verdict
            while len(kept) > MAX_VERDICTS:
                kept.popitem(last=False)

    def _settle_all(self, calls: Sequence[EnrichedCall], ticket: int) -> None:
        with self._settled:
            for call in calls:
                if call.policy is PENDING:
                    # No violation, or not evaluated here (a redelivery): the verdict of its
                    # first delivery.
                    call.policy = self._kept(call) if call.redelivered else None
            self._open.discard(ticket)
            self._settled.notify_all()

    def settle(
        self, calls: Sequence[EnrichedCall], derived: bool = False, timeout: float = SETTLE_TIMEOUT
    ) -> None:
        """Before the call feeder stores ``calls``: wait for their evaluation, and give those
        derived again from the payload the verdicts remembered for them. ``derived``: some
        were (their batch's memo was refused or dropped): new objects ``expect`` never marked,
        so the wait is for every request queued before now to be evaluated (their requests
        among them) -- else such a call could be stored before its request's evaluation,
        without its verdict, and told ``stored`` to the engine before it was evaluated (a
        resync would then count it twice until it aged out)."""
        with self._settled:
            horizon = self._tickets  # the batches read were queued before now: tickets <= it
            open_ = self._open

            def evaluated() -> bool:
                if derived and open_ and min(open_) <= horizon:
                    return False
                return all(call.policy is not PENDING for call in calls)

            if not self._settled.wait_for(evaluated, timeout):
                _logger.warning("otel-llm collector: calls stored before their policy verdicts")
            for call in calls:
                if call.policy is PENDING:
                    call.policy = None
                elif call.policy is None:
                    call.policy = self._kept(call)

    def _kept(self, call: EnrichedCall) -> Verdict | None:
        """The verdict remembered for the call's span (held under ``_settled``)."""
        if not self._verdicts:
            return None
        key = span_key(call.span.trace_id, call.span.span_id)
        return self._verdicts.get(key) if key is not None else None


def _span(call: EnrichedCall) -> Span:
    return call.span


def _stored_id(call: EnrichedCall) -> bytes | tuple[bytes, bytes]:
    return call.span_key or _ident(call)


def _ident(call: EnrichedCall) -> bytes | tuple[bytes, bytes]:
    """The id the engine remembers a call by until it is stored: its span's key, as the
    enricher makes it (the span's ids themselves when they are not valid)."""
    span = call.span
    trace_id, span_id = span.trace_id, span.span_id
    return span_key(trace_id, span_id) or (trace_id, span_id)


class _PolicyMetrics(Collector):
    """Renders the engine's state at each scrape."""

    def __init__(self, policies: CollectorPolicies):
        self._policies = policies

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        return iter(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        return iter(self._families(self._policies))

    @staticmethod
    def _families(
        policies: CollectorPolicies | None = None,
    ) -> list[GaugeMetricFamily | CounterMetricFamily]:
        spend = GaugeMetricFamily(
            PROM_SPEND, "A budget's spend in its current window (USD).", labels=["policy", "rule"]
        )
        limit = GaugeMetricFamily(PROM_LIMIT, "A budget's USD limit.", labels=["policy", "rule"])
        tokens = GaugeMetricFamily(
            PROM_TOKENS, "A budget's tokens in its current window.", labels=["policy", "rule"]
        )
        token_limit = GaugeMetricFamily(
            PROM_TOKEN_LIMIT, "A budget's token limit.", labels=["policy", "rule"]
        )
        state = GaugeMetricFamily(
            PROM_STATE, "A budget's state: 0 ok, 1 warning, 2 exceeded.", labels=["policy", "rule"]
        )
        violations = CounterMetricFamily(
            PROM_VIOLATIONS.removesuffix("_total"),
            "Calls that broke a rule of a policy.",
            labels=["policy", "rule", "action"],
        )
        alerts = CounterMetricFamily(
            PROM_ALERTS.removesuffix("_total"),
            "Alerts raised by alert and block policies.",
            labels=["policy", "rule"],
        )
        blocks = CounterMetricFamily(
            PROM_BLOCKS.removesuffix("_total"),
            "Calls a block policy refuses (or would have refused).",
            labels=["policy"],
        )
        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            spend, limit, tokens, token_limit, state, violations, alerts, blocks
        ]  # fmt: skip
        if policies is None:
            return families
        engine = policies.engine
        counted_violations, counted_alerts, counted_blocks = engine.counts()
        named = {policy.name: policy for policy in engine.policies.policies}
        for policy in engine.snapshot():
            name = policy["name"]
            for budget in policy["budgets"]:
                labels = [name, budget["name"]]
                if budget["limit_nanos"] is not None:
                    spend.add_metric(labels, _usd(budget["spent_nanos"]))
                    limit.add_metric(labels, _usd(budget["limit_nanos"]))
                if budget["limit_tokens"] is not None:
                    tokens.add_metric(labels, budget["spent_tokens"])
                    token_limit.add_metric(labels, budget["limit_tokens"])
                state.add_metric(labels, LEVELS.index(budget["state"]))
            action = policy["action"]
            # Every rule's series from the start, so an alert's increase() sees the first one.
            for rule in _rules(named.get(name)):
                count = counted_violations.get((name, rule, action), 0)
                violations.add_metric([name, rule, action], count)
                if action != "record":
                    alerts.add_metric([name, rule], counted_alerts.get((name, rule), 0))
            if action == "block":
                blocks.add_metric([name], counted_blocks.get(name, 0))
        return families


def _rules(policy: Policy | None) -> list[str]:
    if policy is None:
        return []
    calls = policy.calls
    present = {
        "allowed_models": calls.allowed_models is not None,
        "denied_models": calls.denied_models is not None,
        "max_tokens": calls.max_tokens is not None,
        "max_cost": calls.max_cost_nanos is not None,
    }
    return [rule.name for rule in policy.budgets] + [r for r in CALL_RULES if present[r]]


def _usd(nanos: int) -> float:
    return float(Decimal(nanos) / _NANO)  # exact until this last step
