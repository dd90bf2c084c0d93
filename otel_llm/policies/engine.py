"""``PolicyEngine``: each priced call matched to the policies, budgets kept exact, states known.

A budget's spend is integer nano-USD (and tokens) per (policy, budget rule, window), added call
by call in the order calls are observed, so the state flips -- ``ok`` -> ``warning`` ->
``exceeded`` -- at the exact call that reaches the threshold or the limit; that call is
remembered (``crossed_by``). A budget is ``exceeded`` once its spend reaches its limit (nothing
remains); ``warning`` once it reaches ``warn_at`` percent of it.

What is counted, per policy and rule:

* a **violation**: each call that breaks a call rule, and each call that reaches a budget's
  limit or comes while it is exceeded;
* an **alert** (``alert`` and ``block`` policies): each call-rule violation, and a budget's
  first warning and first excess of a window;
* a **block** (``block`` policies): each call an enforcing application refuses -- one that
  breaks a call rule, or comes while a budget of the policy is exceeded. The collector sees
  calls after they were made: it counts what enforcement refuses (or would have refused).

Calls are matched to policies through an index and a bounded cache of plans (``matching.py``,
``plans.py``), and the spend is kept once per (scope, window) (``budgets.py``), so with many
policies a call costs a dictionary look-up plus an addition per distinct budget window it is in
-- or, for most calls, a few additions to its plan's tab, added to the windows later
(``plans.py``: the state still flips at the exact call). The collector's calls are read here
(``observe_spans``, with ``calls.py``'s one reading of a span): of most calls only the scope
values some policy reads, and their time, cost and size.
A call dated before its budget's current window (late data) is checked against the call rules
but adds nothing to the current window; one dated after the clock counts as now.

After a restart, ``recover`` reads each budget's window back from a ``SpendHistory`` (the call
log): the same calls, so the same sums. The counts of violations, alerts and blocks start at 0
with the process, like any Prometheus counter.

Several collectors writing one store (replicas behind a load balancer) each see some of the
calls. With ``follow_store``, an engine remembers the calls it evaluated until its call sink
says they are stored (``stored``), and ``resync`` sets each spend to the store's sums plus the
calls it evaluated that are not stored yet -- its own calls counted once, whether the store has
them or not, and every other replica's as far as they are stored. Between two resyncs a call
adds to the spend as always. A resync runs while this process stores nothing (the caller's
lock), so no call of its own is half in the store's sums and half in the pending ones. A level
a resync changes counts no violation or alert (no call of this process crossed the line: the
calls after it do), like a restart's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from otel_llm.policies.budgets import (
    LEVELS,
    Budget,
    Level,
    Spend,
    add_minute,
    signature,
)
from otel_llm.policies.calls import (
    CallFields,
    CallId,
    PolicyCall,
    SpanCall,
    SpanIds,
    policy_call,
    reader,
)
from otel_llm.policies.matching import ScopeIndex, projected, projection
from otel_llm.policies.model import SCOPE_FIELDS, Action, Policy, PolicySet, ScopeKey
from otel_llm.policies.plans import Plan, arm, flush, plan_for
from otel_llm.policies.windows import iso, minute_of

__all__ = [
    "LEVELS",
    "Level",
    "PolicyCall",
    "PolicyEngine",
    "SpanIds",
    "SpendHistory",
    "Verdict",
]

_logger = logging.getLogger(__name__)

MAX_CACHED_SCOPES = 10_000
"""Plans remembered (by the scope values policies read); past it the cache restarts."""
MAX_PENDING = 100_000
"""Calls evaluated and not yet known stored, remembered at most (oldest forgotten first: it
then reads low by them until they are stored); about 280 bytes each, 28 MB in all."""
PENDING_MAX_AGE_NS = 300 * 1_000_000_000
"""A call not known stored after this long is taken as stored: its sink was never told (a call
stored before its evaluation, its verdict's wait timed out) or is far behind; counting it
twice would last until its window's end, missing it only until it is stored."""

SETTLED_AFTER_NS = 10 * 60 * 1_000_000_000
"""A resync reads the calls that started in the last this long (and the window's current
minute) from the store every time; the older part of a window from a cache."""
PAST_REFRESH_NS = 60 * 1_000_000_000
"""The older part of a window is read again after this long (at once when this process
stores a call that old): a call another replica stores more than ``SETTLED_AFTER_NS`` after
it started (a long call, a queue drained after an outage) counts everywhere within it."""

_Row = tuple[ScopeKey, int | None, int, int, int, int]
"""A ``SpendHistory`` row: scope values, minute or None, nano-USD, tokens, calls, unpriced."""
_Pending = tuple[tuple[Spend, ...], int, int | None, int, int]
"""A call evaluated and not yet stored: its spends, when it counts, nano-USD (None:
unpriced), tokens, and when it was evaluated."""


Verdict = tuple[str, str, Action]
"""A call's violation as the call log records it: (policy, rule, the policy's action)."""

_SEVERITY: dict[str, int] = {"record": 0, "alert": 1, "block": 2}


class SpendHistory(Protocol):
    """Where past spend is read after a restart or a reload (the call log's store)."""

    def spend(
        self, start_ns: int, end_ns: int, per_minute: bool, fields: Sequence[str] = SCOPE_FIELDS
    ) -> Iterable[tuple[ScopeKey, int | None, int, int, int, int]]:
        """(scope values, minute start or None, nano-USD, tokens, calls, unpriced calls) of
        the calls created in [start_ns, end_ns), summed by the scope values of ``fields``
        (the others None: no budget reads them) and by minute when ``per_minute``."""


_T = TypeVar("_T")


def _same(call: PolicyCall) -> PolicyCall:
    return call


def _call_id(call: PolicyCall) -> CallId:
    return call.call_id


class PolicyEngine:
    """The policies of a ``PolicySet`` evaluated against calls; thread-safe.

    Args:
        policies: what to enforce (``load_policies``); ``replace`` swaps it at a reload.
        clock: now, in nanoseconds since the epoch (tests inject theirs).
    """

    def __init__(self, policies: PolicySet, *, clock: Callable[[], int] = time.time_ns):
        self._clock = clock
        self._lock = threading.Lock()
        self._policies = policies
        self._spends: dict[tuple[object, ...], Spend] = {}
        self._budgets: dict[tuple[str, str], Budget] = {}
        self._cache: dict[object, Plan] = {}
        """Plans by the values of the fields some policy reads (``matching.projection``)."""
        self._armed: dict[int, Plan] = {}
        """The plans holding room on their spends (``_arm``), by id."""
        self.violations: dict[tuple[str, str, Action], int] = {}
        """Violations by (policy, rule, action)."""
        self.alerts: dict[tuple[str, str], int] = {}
        self.blocks: dict[str, int] = {}
        self._found: list[Verdict] = []
        """The violations of the call being evaluated (``observe`` makes its verdict)."""
        self.revision = 0
        """Bumped by every change of a state (and by a reload): a poller compares it."""
        self.loaded_at_ns = clock()
        self._pending: dict[object, _Pending] | None = None
        """By call id (``follow_store``): the calls evaluated that are not stored yet."""
        self._past: dict[tuple[int | None, bool], tuple[int, int, int, list[_Row]]] = {}
        """The older part of windows by (window start, or None for the rolling ones; per
        minute): (read at, from, until, rows)."""
        self._past_stale = False
        self._install(policies)

    # --- the policies -----------------------------------------------------------------------
    @property
    def policies(self) -> PolicySet:
        return self._policies

    def replace(self, policies: PolicySet, history: SpendHistory | None = None) -> list[str]:
        """Swap in a new set (a reload): a budget whose scope and window are unchanged keeps
        its spend (judged against its new limits); a new or changed one is read from
        ``history`` (else starts at 0). The counts of the policies kept are kept. Returns the
        budgets read again."""
        with self._lock:
            fresh = self._install(policies)
            names = {p.name for p in policies.policies}
            for counts in (self.violations, self.alerts):
                for count_key in [k for k in counts if k[0] not in names]:
                    del counts[count_key]  # type: ignore[arg-type] # both keyed by policy first
            for name in [n for n in self.blocks if n not in names]:
                del self.blocks[name]
            if history is not None and fresh:
                self._recover(fresh, history)
            self.loaded_at_ns = self._clock()
            self.revision += 1
            return [
                f"{budget.policy.name}/{budget.rule.name}"
                for spend in fresh
                for budget in spend.budgets
            ]

    def _install(self, policies: PolicySet) -> list[Spend]:
        """Spends and budgets for ``policies``, keeping those of the same signature; the new
        spends."""
        self._settle_tabs()  # the old plans' sums into the spends kept
        now = self._clock()
        old_spends, old_budgets = self._spends, self._budgets
        spends: dict[tuple[object, ...], Spend] = {}
        budgets: dict[tuple[str, str], Budget] = {}
        fresh: list[Spend] = []
        for policy in policies.policies:
            for rule in policy.budgets:
                key = signature(policy.scope, rule.window)
                spend = spends.get(key)
                if spend is None:
                    spend = old_spends.get(key)
                    if spend is None:
                        spend = Spend(policy.scope, rule.window, now)
                        fresh.append(spend)
                    spend.budgets = []
                    spends[key] = spend
                budget = Budget(policy, rule, spend)
                old = old_budgets.get((policy.name, rule.name))
                if old is not None and old.spend is spend:
                    budget.crossed_by = old.crossed_by
                spend.budgets.append(budget)
                budgets[(policy.name, rule.name)] = budget
        for spend in spends.values():
            if now >= spend.end_ns:
                spend.roll(now)
            spend.settle()  # kept spends against their (maybe new) limits
        self._policies = policies
        self._spends, self._budgets = spends, budgets
        named = {name for p in policies.policies if p.budgets for name in p.scope.fields}
        self._fields = tuple(name for name in SCOPE_FIELDS if name in named)
        """The scope fields budgets read: the store's spend is summed by these alone (a
        user or key id no budget names would make a row per user)."""
        self._past.clear()  # summed by other fields, maybe
        self._index = ScopeIndex(policies.policies)
        fields = projected(policies.policies)
        self._project = project = projection(fields)
        self._read_span = reader(fields)
        """A span's call read for its plan's look-up (``observe_spans``)."""
        self._read_call: Callable[[PolicyCall], CallFields] = lambda call: (
            project(call.key),
            call.time_ns,
            call.cost_nanos,
            call.tokens,
            call.requested_max_tokens,
        )
        """A ``PolicyCall``'s fields, as ``_read_span`` gives a span's (``observe``)."""
        self._cache = {}
        return fresh

    # --- evaluation ---------------------------------------------------------------------------
    def observe(self, calls: Sequence[PolicyCall]) -> dict[int, Verdict]:
        """Evaluate calls, in order. Never raises. Returns the violating calls' verdicts by
        their index in ``calls``: each call's most severe violation (block over alert over
        record), the first one among equals."""
        return self._observe(calls, None)

    def observe_spans(
        self, calls: Sequence[_T], ident: Callable[[_T], CallId]
    ) -> dict[int, Verdict]:
        """``observe`` of spans' calls (``SpanCall``s: the collector's request path), read
        here (``calls.reader``): of most calls only what their plan's look-up and the test
        for a deferred call need. ``ident``: a call's id (``CallId``), asked for when it is
        needed (a call crossing a limit, remembered until stored)."""
        return self._observe(calls, ident)

    def _observe(  # noqa: PLR0912, PLR0915 - the hot path, written out inline
        self, calls: Sequence[Any], ident: Callable[[Any], CallId] | None
    ) -> dict[int, Verdict]:
        """Both ``observe``s: ``ident`` None for ``PolicyCall``s, else for ``SpanCall``s."""
        verdicts: dict[int, Verdict] = {}
        try:
            with self._lock:
                now = self._clock()
                cache = self._cache
                found, pending = self._found, self._pending
                read: Callable[[Any], CallFields]
                whole: Callable[[Any], PolicyCall]
                if ident is None:
                    read, whole, ident = self._read_call, _same, _call_id
                else:
                    read = self._read_span
                    whole = _whole_of(ident)
                for index, item in enumerate(calls):
                    # The hot path: inline, a few comparisons and additions per call.
                    scope, when, cost, tokens, requested = read(item)
                    call = None  # the whole ``PolicyCall``: read only when needed
                    plan = cache.get(scope)
                    if plan is None:
                        call = whole(item)
                        plan = self._plan(call.key)
                    tokens = tokens or 0
                    nanos = cost or 0
                    blocked = None
                    limit = plan.max_tokens  # NEVER: no size rule; -NEVER: a model rule broken
                    if (
                        tokens > limit
                        or nanos > plan.max_cost
                        or (requested is not None and requested > limit)
                    ):
                        if call is None:
                            call = whole(item)
                        blocked = self._call_rules(plan, call)
                    if when > now:  # noqa: PLR1730 - min() is a call, this a comparison
                        when = now
                    if (
                        nanos < plan.left_nanos
                        and tokens < plan.left_tokens
                        and plan.lo <= when < plan.hi
                        and now < plan.until
                    ):
                        # Deferred: within the room its spends reserved, so no level can
                        # change (``plans.py``).
                        plan.left_nanos -= nanos
                        plan.left_tokens -= tokens
                        plan.calls += 1
                        if cost is None:
                            plan.unpriced += 1
                    elif plan.spends:
                        if call is None:
                            call = whole(item)
                        blocked = self._add(plan, call, when, now, nanos, tokens, blocked)
                    if blocked:
                        self._blocked(blocked)
                    if found:  # rare: only a violating call pays for its verdict
                        verdicts[index] = max(found, key=lambda v: _SEVERITY[v[2]])
                        found.clear()
                    if pending is not None and plan.spends:
                        call_id = ident(item)
                        if call_id is not None:
                            pending[call_id] = (plan.spends, when, cost, tokens, now)
                            if len(pending) > MAX_PENDING:
                                del pending[next(iter(pending))]
        except Exception:  # a policy must never fail the request that carried the call
            self._found.clear()
            _logger.exception("otel-llm policies: evaluating calls failed")
        return verdicts

    # --- deferred sums (``plans.py``) ----------------------------------------------------------
    def _add(  # noqa: PLR0917 - the hot path's values
        self,
        plan: Plan,
        call: PolicyCall,
        when: int,
        now: int,
        nanos: int,
        tokens: int,
        blocked: list[Policy] | None,
    ) -> list[Policy] | None:
        """Add a call to its plan's spends at once, judging its levels; then arm the plan."""
        self._flush(plan)
        spends = plan.spends
        for spend in spends:
            if now >= spend.end_ns:
                self._roll_all(now)  # every window at once: a tab's sums belong to one
                break
        for spend in spends:
            if (
                spend.nanos + spend.reserved_nanos + nanos >= spend.live_nanos
                or spend.tokens + spend.reserved_tokens + tokens >= spend.live_tokens
            ):
                self._settle_tabs()  # it may change a level: every earlier call in first
                break
        cost = call.cost_nanos
        for spend in spends:
            if when < spend.start_ns:
                continue  # late data: it belongs to a window gone by
            spend.calls += 1
            if cost is None:
                spend.unpriced += 1
            spend.nanos = spent = spend.nanos + nanos
            spend.tokens = used = spend.tokens + tokens
            minutes = spend.minutes
            if minutes is not None:
                add_minute(minutes, when, nanos, tokens)
            if spent >= spend.next_nanos or used >= spend.next_tokens:
                if blocked is None:
                    blocked = []
                self._levels(spend, call, blocked)
        self._arm(plan, when, nanos, tokens)
        return blocked

    def _arm(self, plan: Plan, when: int, nanos: int, tokens: int) -> None:
        if arm(plan, when, nanos, tokens):
            self._armed[id(plan)] = plan

    def _flush(self, plan: Plan) -> None:
        if flush(plan):
            del self._armed[id(plan)]

    def _settle_tabs(self) -> None:
        """Every tab into its spends (before the spends are read, judged, rolled or replaced)."""
        for plan in list(self._armed.values()):
            self._flush(plan)

    def _matching(self, key: ScopeKey) -> tuple[Policy, ...]:
        plan = self._cache.get(self._project(key))
        return (plan if plan is not None else self._plan(key)).policies

    def _plan(self, key: ScopeKey) -> Plan:
        """What a call of these scope values is checked against, worked out once per key: its
        policies, their spends, and the model rules' verdicts (the key holds the model)."""
        plan = plan_for(self._index.matching(key), key[6], self._budgets)
        if len(self._cache) >= MAX_CACHED_SCOPES:
            self._settle_tabs()
            self._cache.clear()
        self._cache[self._project(key)] = plan
        return plan

    def _levels(self, spend: Spend, call: PolicyCall, blocked: list[Policy]) -> None:
        """A threshold of ``spend`` reached by ``call``: its budgets' levels, violations and
        alerts; the policies of those that were exceeded already into ``blocked``."""
        for budget in spend.budgets:
            if (
                spend.nanos >= budget.next_nanos or spend.tokens >= budget.next_tokens
            ) and self._crossed(budget, call):
                blocked.append(budget.policy)
        spend.rearm()

    def _blocked(self, blocked: list[Policy]) -> None:
        for name in {policy.name for policy in blocked if policy.action == "block"}:
            self.blocks[name] = self.blocks.get(name, 0) + 1

    def _call_rules(self, plan: Plan, call: PolicyCall) -> list[Policy]:
        """The call rules' violations; the policies whose rules the call broke."""
        broke: list[Policy] = []
        for policy, rule in plan.broken:
            self._violated(policy, rule)
            broke.append(policy)
        for policy in plan.sized:
            for rule in _broken_size_rules(policy, call):
                self._violated(policy, rule)
                broke.append(policy)
        return broke

    def _crossed(self, budget: Budget, call: PolicyCall) -> bool:
        """A threshold reached (or the budget was exceeded already): the level's change, the
        violation, the alert. True when the call came while the budget was exceeded."""
        policy, rule = budget.policy, budget.rule.name
        before = budget.level
        if before == "exceeded":
            self._violated(policy, rule, alert=False)
            return True
        after = budget.level_now()
        if after == "exceeded":
            budget.crossed_by = {"call_id": call.id, "time": iso(call.time_ns)}
            self._violated(policy, rule)
        elif after == "warning" and before == "ok":
            self._alert(policy, rule)
        if after != before:
            budget.set_level(after)
            self.revision += 1
        return False

    def _violated(self, policy: Policy, rule: str, *, alert: bool = True) -> None:
        key = (policy.name, rule, policy.action)
        self.violations[key] = self.violations.get(key, 0) + 1
        self._found.append(key)
        if alert:
            self._alert(policy, rule)

    def _alert(self, policy: Policy, rule: str) -> None:
        if policy.action == "record":
            return
        key = (policy.name, rule)
        self.alerts[key] = self.alerts.get(key, 0) + 1

    # --- recovery -----------------------------------------------------------------------------
    def recover(self, history: SpendHistory) -> None:
        """Read every budget's current window back from ``history`` (at start-up, before
        calls are observed: what it reads replaces the spend kept so far)."""
        with self._lock:
            self._recover(list(self._spends.values()), history)

    def _recover(self, spends: list[Spend], history: SpendHistory) -> None:
        self._settle_tabs()
        now = self._clock()
        reads: dict[tuple[int, bool], list[Spend]] = {}
        for spend in spends:
            spend.open(now)
            reads.setdefault((spend.start_ns, spend.minutes is not None), []).append(spend)
        # One read per distinct window start: all day budgets share one, and so on.
        for (start, per_minute), group in reads.items():
            for key, minute, nanos, tokens, calls, unpriced in history.spend(
                start, now + 1, per_minute, self._fields
            ):
                for spend in group:
                    if spend.scope.matches(key):
                        spend.add(start if minute is None else minute, nanos, tokens)
                        spend.calls += calls
                        spend.unpriced += unpriced
            for spend in group:
                spend.settle()
                for budget in spend.budgets:
                    if budget.level == "exceeded":
                        budget.crossed_by = {"call_id": None, "time": None, "recovered": True}
        self.revision += 1

    # --- replicas: the store's spend -----------------------------------------------------------
    def follow_store(self) -> None:
        """Remember the calls evaluated until ``stored`` is told, for ``resync``."""
        with self._lock:
            if self._pending is None:
                self._pending = {}

    @property
    def follows_store(self) -> bool:
        """Whether calls evaluated are remembered by id until ``stored`` (``follow_store``)."""
        return self._pending is not None

    def stored(self, call_ids: Iterable[object]) -> None:
        """The call sink has stored these calls (or found them stored already): the store's
        sums hold them from now on."""
        with self._lock:
            pending = self._pending
            if pending:
                cached = max((past[2] for past in self._past.values()), default=None)
                for ident in call_ids:
                    entry = pending.pop(ident, None)
                    if entry is not None and cached is not None and entry[1] < cached:
                        self._past_stale = True  # a cached sum lacks it: read again

    def resync(self, history: SpendHistory) -> int:
        """Every spend set to the store's sums for its window plus this engine's calls not
        stored yet; returns the number of budgets whose level changed. The caller keeps its
        call sink from storing meanwhile (``CollectorPolicies``)."""
        with self._lock:
            now = self._clock()
            self._roll_all(now)
            groups = {(s.start_ns, s.minutes is not None) for s in self._spends.values()}
        # Read without the lock: the request path goes on evaluating calls meanwhile.
        # Rolling windows share one read of earlier days, from the earliest of them.
        rolling = min((start for start, per_minute in groups if per_minute), default=now)
        read = {group: self._read(history, *group, now, rolling) for group in groups}
        with self._lock:
            # The calls evaluated since the read are among the pending ones: their tabs'
            # sums go into the spends replaced below.
            self._settle_tabs()
            kept = {(None if per_minute else start, per_minute) for start, per_minute in groups}
            for gone in [key for key in self._past if key not in kept]:
                del self._past[gone]  # the cache of a window gone (last month's)
            sums: dict[int, _Sums] = {}
            for (start, per_minute), rows in read.items():
                for key, minute, nanos, tokens, calls, unpriced in rows:
                    for spend in self._plan_of(key).spends:
                        if spend.start_ns == start and (spend.minutes is not None) == per_minute:
                            sums.setdefault(id(spend), _Sums()).add(
                                start if minute is None else minute, nanos, tokens, calls, unpriced
                            )
            self._add_pending(sums, now)
            changed = 0
            for spend in self._spends.values():
                if (spend.start_ns, spend.minutes is not None) not in read:
                    continue  # a window that rolled since the read: the next resync
                found = sums.get(id(spend)) or _Sums()
                before = [budget.level for budget in spend.budgets]
                spend.replace(found.nanos, found.tokens, found.calls, found.unpriced, found.minutes)
                spend.settle()
                for budget, level in zip(spend.budgets, before, strict=True):
                    if budget.level != level:
                        changed += 1
                        if budget.level == "exceeded":
                            budget.crossed_by = {"call_id": None, "time": None, "synced": True}
            if changed:
                self.revision += 1
            return changed

    def _read(
        self, history: SpendHistory, start: int, per_minute: bool, now: int, rolling: int
    ) -> list[_Row]:
        """The store's sums of [start, now]: its last ``SETTLED_AFTER_NS`` read each time,
        what is older at most every ``PAST_REFRESH_NS`` (a day's or a month's budget would
        otherwise re-read the whole window every interval)."""
        until = minute_of(now - SETTLED_AFTER_NS)
        fields = self._fields
        if start >= until:
            return list(history.spend(start, now + 1, per_minute, fields))
        key = (None if per_minute else start, per_minute)
        with self._lock:
            if self._past_stale:
                self._past.clear()
                self._past_stale = False
            past = self._past.get(key)
        if past is None or now - past[0] >= PAST_REFRESH_NS or past[1] > start:
            since = rolling if per_minute else start
            past = (now, since, until, list(history.spend(since, until, per_minute, fields)))
            with self._lock:
                self._past[key] = past
        rows = past[3]
        if per_minute and past[1] < start:  # a rolling window moved on since the read
            rows = [row for row in rows if row[1] is not None and row[1] >= start]
        return [*rows, *history.spend(past[2], now + 1, per_minute, fields)]

    def _plan_of(self, key: ScopeKey) -> Plan:
        plan = self._cache.get(self._project(key))
        return plan if plan is not None else self._plan(key)

    def _add_pending(self, sums: dict[int, _Sums], now: int) -> None:
        """The calls evaluated and not stored yet, into ``sums`` (forgetting those too old)."""
        pending = self._pending
        if not pending:
            return
        oldest = now - PENDING_MAX_AGE_NS
        while pending:
            first = next(iter(pending))
            if pending[first][4] >= oldest:
                break
            del pending[first]
        for spends, when, nanos, tokens, _ in pending.values():
            for spend in spends:
                if when >= spend.start_ns:  # as the request path: late data adds nothing
                    sums.setdefault(id(spend), _Sums()).add(
                        when if spend.minutes is not None else spend.start_ns,
                        nanos or 0,
                        tokens,
                        1,
                        int(nanos is None),
                    )

    # --- state --------------------------------------------------------------------------------
    def current_revision(self) -> int:
        """The revision, windows that ended since rolled over first (a reset is a change)."""
        with self._lock:
            self._roll_all(self._clock())
            return self.revision

    def _roll_all(self, now: int) -> None:
        """Windows that ended rolled over (the tabs in first, when one did: a tab's sums
        belong to the windows they were deferred in). A tab changes no level: the revision
        needs no tab added (an enforcing application's poll asks it every few seconds)."""
        ended = [spend for spend in self._spends.values() if now >= spend.end_ns]
        if not ended:
            return
        self._settle_tabs()
        for spend in ended:
            if spend.roll(now):
                self.revision += 1

    def snapshot(self) -> list[dict[str, Any]]:
        """Every policy's state, in file order (the API's ``policies``; money in nano-USD
        under ``*_nanos`` keys, turned into USD by the answer's writer)."""
        with self._lock:
            self._roll_all(self._clock())
            self._settle_tabs()
            # The counts per policy in one pass each (not one pass per policy).
            totals: dict[str, list[int]] = {}
            for (name, _, _), count in self.violations.items():
                totals.setdefault(name, [0, 0])[0] += count
            for (name, _), count in self.alerts.items():
                totals.setdefault(name, [0, 0])[1] += count
            return [
                self._status(policy, totals.get(policy.name, (0, 0)))
                for policy in self._policies.policies
            ]

    def _status(self, policy: Policy, totals: Sequence[int]) -> dict[str, Any]:
        budgets: list[dict[str, Any]] = []
        level: Level = "ok"
        blocked_until: int | None = None
        for rule in policy.budgets:
            budget = self._budgets[(policy.name, rule.name)]
            spend = budget.spend
            if LEVELS.index(budget.level) > LEVELS.index(level):
                level = budget.level
            reset = budget.reset_ns()
            if budget.level == "exceeded" and policy.action == "block":
                blocked_until = max(blocked_until or 0, reset)
            budgets.append(
                {
                    "name": rule.name,
                    "window": rule.window.name,
                    "state": budget.level,
                    "limit_nanos": rule.usd_nanos,
                    "spent_nanos": spend.nanos,
                    "remaining_nanos": _remaining(rule.usd_nanos, spend.nanos),
                    "limit_tokens": rule.tokens,
                    "spent_tokens": spend.tokens,
                    "remaining_tokens": _remaining(rule.tokens, spend.tokens),
                    "warn_at": rule.warn_percent,
                    "calls": spend.calls,
                    "unpriced_calls": spend.unpriced,
                    "window_start": iso(spend.start_ns),
                    "resets_at": iso(reset),
                    "crossed_by": budget.crossed_by,
                }
            )
        name = policy.name
        return {
            "name": name,
            "scope": policy.scope.describe() or "*",
            "action": policy.action,
            "state": level,
            "blocked": blocked_until is not None,
            "blocked_until": iso(blocked_until) if blocked_until is not None else None,
            "budgets": budgets,
            "violations": totals[0],
            "alerts": totals[1],
            "blocks": self.blocks.get(name, 0),
        }

    def counts(
        self,
    ) -> tuple[dict[tuple[str, str, Action], int], dict[tuple[str, str], int], dict[str, int]]:
        """Copies of (violations, alerts, blocks), for the metrics."""
        with self._lock:
            return dict(self.violations), dict(self.alerts), dict(self.blocks)


class _Sums:
    """A spend's sums as a resync adds them up: totals, and per minute for rolling windows."""

    __slots__ = ("calls", "minutes", "nanos", "tokens", "unpriced")

    def __init__(self) -> None:
        self.nanos = self.tokens = self.calls = self.unpriced = 0
        self.minutes: dict[int, list[int]] = {}

    def add(self, when: int, nanos: int, tokens: int, calls: int, unpriced: int) -> None:
        self.nanos += nanos
        self.tokens += tokens
        self.calls += calls
        self.unpriced += unpriced
        minute = self.minutes.setdefault(minute_of(when), [0, 0])
        minute[0] += nanos
        minute[1] += tokens


def _whole_of(ident: Callable[[Any], CallId]) -> Callable[[SpanCall], PolicyCall]:
    """A span's call read whole, with its id."""
    return lambda call: policy_call(call, ident(call))


def _broken_size_rules(policy: Policy, call: PolicyCall) -> list[str]:
    rules = policy.calls
    broken: list[str] = []
    limit = rules.max_tokens
    if limit is not None and (
        (call.requested_max_tokens or 0) > limit or (call.tokens or 0) > limit
    ):
        broken.append("max_tokens")
    cost = call.cost_nanos
    if rules.max_cost_nanos is not None and cost is not None and cost > rules.max_cost_nanos:
        broken.append("max_cost")
    return broken


def _remaining(limit: int | None, spent: int) -> int | None:
    return None if limit is None else max(limit - spent, 0)
