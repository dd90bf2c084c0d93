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

Calls are matched to policies through a bounded cache keyed by the call's scope values, so
with many policies a call costs a dictionary look-up plus the work of the policies it is in.
A call dated before its budget's current window (late data) is checked against the call rules
but adds nothing to the current window; one dated after the clock counts as now.

After a restart, ``recover`` reads each budget's window back from a ``SpendHistory`` (the call
log): the same calls, so the same sums. The counts of violations, alerts and blocks start at 0
with the process, like any Prometheus counter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from otel_llm.policies.model import SCOPE_FIELDS, Action, BudgetRule, Policy, PolicySet, ScopeKey
from otel_llm.policies.windows import bounds, iso, minute_of

_logger = logging.getLogger(__name__)

Level = Literal["ok", "warning", "exceeded"]
LEVELS: tuple[Level, ...] = ("ok", "warning", "exceeded")
MAX_CACHED_SCOPES = 10_000
"""Distinct scope values whose matching policies are remembered; past it the cache restarts."""


@dataclass(frozen=True, slots=True)
class PolicyCall:
    """What the policies read of one call (``calls.policy_call`` makes it from a span)."""

    key: ScopeKey
    time_ns: int
    """When the call started (the call log's ``created_at``)."""
    cost_nanos: int | None
    """None: unpriced -- it adds no money (an unknown cost is not 0) but its tokens."""
    tokens: int | None
    """Input + output, as the call log's ``total_tokens``."""
    requested_max_tokens: int | None = None
    call_id: str | None = None

    @property
    def model(self) -> str | None:
        return self.key[6]


class SpendHistory(Protocol):
    """Where past spend is read after a restart or a reload (the call log's store)."""

    def spend(
        self, start_ns: int, end_ns: int, per_minute: bool
    ) -> Iterable[tuple[ScopeKey, int | None, int, int]]:
        """(scope values, minute start or None, nano-USD, tokens) of the calls created in
        [start_ns, end_ns), summed by scope values (and by minute when ``per_minute``)."""


@dataclass(slots=True)
class _Budget:
    """One budget rule's current window."""

    policy: Policy
    rule: BudgetRule
    start_ns: int = 0
    end_ns: int = 0
    nanos: int = 0
    tokens: int = 0
    calls: int = 0
    unpriced: int = 0
    level: Level = "ok"
    crossed_by: dict[str, Any] | None = None
    minutes: deque[list[int]] | None = None
    """Rolling windows: [minute start, nano-USD, tokens], oldest first."""

    def level_now(self) -> Level:
        rule = self.rule
        limit_nanos, limit_tokens = rule.usd_nanos, rule.tokens
        if (limit_nanos is not None and self.nanos >= limit_nanos) or (
            limit_tokens is not None and self.tokens >= limit_tokens
        ):
            return "exceeded"
        warn_nanos, warn_tokens = rule.warn_nanos(), rule.warn_tokens()
        if (warn_nanos is not None and self.nanos >= warn_nanos) or (
            warn_tokens is not None and self.tokens >= warn_tokens
        ):
            return "warning"
        return "ok"

    def reset_ns(self) -> int:
        """When the window's spend falls back under its limits: the calendar window's end; for
        a rolling one, when enough old minutes have left it."""
        if self.minutes is None or self.level != "exceeded":
            return self.end_ns
        rule = self.rule
        nanos, tokens = self.nanos, self.tokens
        hours_ns = self.end_ns - self.start_ns
        for minute, minute_nanos, minute_tokens in self.minutes:
            nanos -= minute_nanos
            tokens -= minute_tokens
            if (rule.usd_nanos is None or nanos < rule.usd_nanos) and (
                rule.tokens is None or tokens < rule.tokens
            ):
                return minute + hours_ns
        return self.end_ns


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
        self._budgets: dict[tuple[str, str], _Budget] = {}
        self._cache: dict[ScopeKey, tuple[Policy, ...]] = {}
        self.violations: dict[tuple[str, str, Action], int] = {}
        """Violations by (policy, rule, action)."""
        self.alerts: dict[tuple[str, str], int] = {}
        self.blocks: dict[str, int] = {}
        self.revision = 0
        """Bumped by every change of a state (and by a reload): a poller compares it."""
        self.loaded_at_ns = clock()
        self._install(policies, keep={})

    # --- the policies -----------------------------------------------------------------------
    @property
    def policies(self) -> PolicySet:
        return self._policies

    def replace(self, policies: PolicySet, history: SpendHistory | None = None) -> list[str]:
        """Swap in a new set (a reload): a budget whose scope and window are unchanged keeps
        its spend; a new or changed one is read from ``history`` (else starts at 0). The
        counts of the policies kept are kept. Returns the budgets read again."""
        with self._lock:
            kept = {
                key: budget
                for key, budget in self._budgets.items()
                if (policy := policies.named(key[0])) is not None
                and any(
                    rule.name == key[1]
                    and policy.signature(rule) == budget.policy.signature(budget.rule)
                    for rule in policy.budgets
                )
            }
            fresh = self._install(policies, kept)
            names = {p.name for p in policies.policies}
            for counts in (self.violations, self.alerts):
                for count_key in [k for k in counts if k[0] not in names]:
                    del counts[count_key]  # type: ignore[arg-type] # both keyed by policy first
            for name in [n for n in self.blocks if n not in names]:
                del self.blocks[name]
            if history is not None and fresh:
                self._recover([self._budgets[key] for key in fresh], history)
            self.loaded_at_ns = self._clock()
            self.revision += 1
            return [f"{policy}/{rule}" for policy, rule in fresh]

    def _install(
        self, policies: PolicySet, keep: dict[tuple[str, str], _Budget]
    ) -> list[tuple[str, str]]:
        budgets: dict[tuple[str, str], _Budget] = {}
        fresh: list[tuple[str, str]] = []
        now = self._clock()
        for policy in policies.policies:
            for rule in policy.budgets:
                key = (policy.name, rule.name)
                budget = keep.get(key)
                if budget is None:
                    budget = _Budget(policy, rule)
                    self._open(budget, now)
                    fresh.append(key)
                else:
                    budget.policy, budget.rule = policy, rule
                    budget.level = budget.level_now()  # the limits may have changed
                budgets[key] = budget
        self._policies = policies
        self._budgets = budgets
        self._index = _ScopeIndex(policies.policies)
        self._cache = {}
        return fresh

    # --- evaluation ---------------------------------------------------------------------------
    def observe(self, calls: Sequence[PolicyCall]) -> None:
        """Evaluate calls, in order (the collector's request path). Never raises."""
        try:
            with self._lock:
                now = self._clock()
                for call in calls:
                    for policy in self._matching(call.key):
                        self._evaluate(policy, call, now)
        except Exception:  # a policy must never fail the request that carried the call
            _logger.exception("otel-llm policies: evaluating calls failed")

    def _matching(self, key: ScopeKey) -> tuple[Policy, ...]:
        found = self._cache.get(key)
        if found is None:
            found = self._index.matching(key)
            if len(self._cache) >= MAX_CACHED_SCOPES:
                self._cache.clear()
            self._cache[key] = found
        return found

    def _evaluate(self, policy: Policy, call: PolicyCall, now: int) -> None:
        broken = self._broken_call_rules(policy, call)
        for broken_rule in broken:
            self._violated(policy, broken_rule)
        blocked = bool(broken)
        for rule in policy.budgets:
            budget = self._budgets[(policy.name, rule.name)]
            self._roll(budget, now)
            when = min(call.time_ns, now)
            if when < budget.start_ns:
                continue  # late data: it belongs to a window gone by
            before = budget.level
            self._add(budget, when, call.cost_nanos, call.tokens)
            after = budget.level = budget.level_now()
            if before == "exceeded":
                self._violated(policy, rule.name, alert=False)
                blocked = True
            elif after == "exceeded":
                budget.crossed_by = {"call_id": call.call_id, "time": iso(call.time_ns)}
                self._violated(policy, rule.name)
            elif after == "warning" and before == "ok":
                self._alert(policy, rule.name)
            if after != before:
                self.revision += 1
        if blocked and policy.action == "block":
            self.blocks[policy.name] = self.blocks.get(policy.name, 0) + 1

    @staticmethod
    def _broken_call_rules(policy: Policy, call: PolicyCall) -> list[str]:
        rules = policy.calls
        if rules.empty:
            return []
        broken: list[str] = []
        model = call.model or ""
        if rules.allowed_models is not None and not any(
            p.text == "*" or p.matches(model) for p in rules.allowed_models
        ):
            broken.append("allowed_models")
        if rules.denied_models is not None and any(
            p.text == "*" or p.matches(model) for p in rules.denied_models
        ):
            broken.append("denied_models")
        limit = rules.max_tokens
        if limit is not None and (
            (call.requested_max_tokens or 0) > limit or (call.tokens or 0) > limit
        ):
            broken.append("max_tokens")
        if (
            rules.max_cost_nanos is not None
            and call.cost_nanos is not None
            and call.cost_nanos > rules.max_cost_nanos
        ):
            broken.append("max_cost")
        return broken

    def _add(self, budget: _Budget, when: int, nanos: int | None, tokens: int | None) -> None:
        budget.calls += 1
        if nanos is None:
            budget.unpriced += 1
        budget.nanos += nanos or 0
        budget.tokens += tokens or 0
        minutes = budget.minutes
        if minutes is not None:
            minute = minute_of(when)
            # Calls arrive nearly in order: the newest minute is almost always the last.
            if minutes and minutes[-1][0] == minute:
                minutes[-1][1] += nanos or 0
                minutes[-1][2] += tokens or 0
            else:
                minutes.append([minute, nanos or 0, tokens or 0])
                if len(minutes) > 1 and minutes[-2][0] > minute:
                    minutes_sorted = sorted(minutes, key=lambda entry: entry[0])
                    minutes.clear()
                    for entry in minutes_sorted:
                        if minutes and minutes[-1][0] == entry[0]:
                            minutes[-1][1] += entry[1]
                            minutes[-1][2] += entry[2]
                        else:
                            minutes.append(entry)

    def _violated(self, policy: Policy, rule: str, *, alert: bool = True) -> None:
        key = (policy.name, rule, policy.action)
        self.violations[key] = self.violations.get(key, 0) + 1
        if alert:
            self._alert(policy, rule)

    def _alert(self, policy: Policy, rule: str) -> None:
        if policy.action == "record":
            return
        key = (policy.name, rule)
        self.alerts[key] = self.alerts.get(key, 0) + 1

    # --- windows ------------------------------------------------------------------------------
    def _open(self, budget: _Budget, now: int) -> None:
        budget.start_ns, budget.end_ns = bounds(budget.rule.window, now)
        budget.nanos = budget.tokens = budget.calls = budget.unpriced = 0
        budget.level = "ok"
        budget.crossed_by = None
        budget.minutes = deque() if budget.rule.window.kind == "rolling" else None

    def _roll(self, budget: _Budget, now: int) -> None:
        if now < budget.end_ns:
            return
        if budget.minutes is None:
            self._open(budget, now)
            self.revision += 1
            return
        budget.start_ns, budget.end_ns = bounds(budget.rule.window, now)
        minutes = budget.minutes
        while minutes and minutes[0][0] < budget.start_ns:
            _, nanos, tokens = minutes.popleft()
            budget.nanos -= nanos
            budget.tokens -= tokens
        level = budget.level_now()
        if level != budget.level:
            budget.level = level
            self.revision += 1
            if level != "exceeded":
                budget.crossed_by = None

    # --- recovery -----------------------------------------------------------------------------
    def recover(self, history: SpendHistory) -> None:
        """Read every budget's current window back from ``history`` (at start-up, before
        calls are observed: what it reads replaces the spend kept so far)."""
        with self._lock:
            self._recover(list(self._budgets.values()), history)

    def _recover(self, budgets: list[_Budget], history: SpendHistory) -> None:
        now = self._clock()
        reads: dict[tuple[int, bool], list[_Budget]] = {}
        for budget in budgets:
            self._open(budget, now)
            reads.setdefault((budget.start_ns, budget.minutes is not None), []).append(budget)
        # One read per distinct window start: all day budgets share one, and so on.
        for (start, per_minute), group in reads.items():
            for key, minute, nanos, tokens in history.spend(start, now + 1, per_minute):
                for budget in group:
                    if budget.policy.scope.matches(key):
                        self._add(budget, minute if minute is not None else start, nanos, tokens)
                        budget.calls -= 1  # _add counts a call; a sum is not one
            for budget in group:
                budget.level = budget.level_now()
                if budget.level == "exceeded":
                    budget.crossed_by = {"call_id": None, "time": None, "recovered": True}
        self.revision += 1

    # --- state --------------------------------------------------------------------------------
    def snapshot(self) -> list[dict[str, Any]]:
        """Every policy's state, in file order (the API's ``policies``; money in nano-USD
        under ``*_nanos`` keys, turned into USD by the answer's writer)."""
        with self._lock:
            now = self._clock()
            return [self._status(policy, now) for policy in self._policies.policies]

    def _status(self, policy: Policy, now: int) -> dict[str, Any]:
        budgets: list[dict[str, Any]] = []
        level: Level = "ok"
        blocked_until: int | None = None
        for rule in policy.budgets:
            budget = self._budgets[(policy.name, rule.name)]
            self._roll(budget, now)
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
                    "spent_nanos": budget.nanos,
                    "remaining_nanos": _remaining(rule.usd_nanos, budget.nanos),
                    "limit_tokens": rule.tokens,
                    "spent_tokens": budget.tokens,
                    "remaining_tokens": _remaining(rule.tokens, budget.tokens),
                    "warn_at": rule.warn_percent,
                    "calls": budget.calls,
                    "unpriced_calls": budget.unpriced,
                    "window_start": iso(budget.start_ns),
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
            "violations": sum(n for (p, _, _), n in self.violations.items() if p == name),
            "alerts": sum(n for (p, _), n in self.alerts.items() if p == name),
            "blocks": self.blocks.get(name, 0),
        }

    def counts(
        self,
    ) -> tuple[dict[tuple[str, str, Action], int], dict[tuple[str, str], int], dict[str, int]]:
        """Copies of (violations, alerts, blocks), for the metrics."""
        with self._lock:
            return dict(self.violations), dict(self.alerts), dict(self.blocks)


class _ScopeIndex:
    """The policies a call may be in, found without trying each: a policy whose scope names a
    field by exact values only is filed under those values (of the first such field); the
    others are tried on every call. So a thousand per-project policies cost a call one
    look-up per field, and only the candidates are matched in full."""

    def __init__(self, policies: Sequence[Policy]):
        self._order = {policy.name: index for index, policy in enumerate(policies)}
        self._always: list[Policy] = []
        self._by_value: list[dict[str, list[Policy]]] = [{} for _ in SCOPE_FIELDS]
        for policy in policies:
            for index, name in enumerate(SCOPE_FIELDS):
                patterns = policy.scope.fields.get(name)
                if patterns and not any(char in p.text for p in patterns for char in "*?["):
                    for pattern in patterns:
                        self._by_value[index].setdefault(pattern.text, []).append(policy)
                    break
            else:
                self._always.append(policy)

    def matching(self, key: ScopeKey) -> tuple[Policy, ...]:
        candidates = list(self._always)
        for index, value in enumerate(key):
            if value is not None:
                filed = self._by_value[index].get(value)
                if filed:
                    candidates.extend(filed)
        if len(candidates) > 1:  # in the file's order, each once
            unique = {p.name: p for p in candidates}.values()
            candidates = sorted(unique, key=lambda p: self._order[p.name])
        return tuple(p for p in candidates if p.scope.matches(key))


def _remaining(limit: int | None, spent: int) -> int | None:
    return None if limit is None else max(limit - spent, 0)
