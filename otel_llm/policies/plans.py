"""A call's ``Plan`` -- what the calls of one scope are checked against -- and its tab, the
deferred sums the engine's request path adds most calls to.

A call adds to each spend of its plan (3 in a typical plan). Most calls change no level: those
are added to their plan's tab instead (a few additions), and the tab to the spends when
anything reads or judges them. So that no level change hides in a tab, each armed plan holds a
room on each of its spends (``arm``), reserved so that a spend's sum, its rooms and the next
call of a plan that must be judged stay under its next threshold: for every spend, nanos +
reserved < next_nanos (tokens alike), and a tab's sums < its room. A call that would not fit,
a late one, one of another minute (rolling windows) or after a window's end is added at once
(``PolicyEngine._add``, which ``flush``es the plan's tab first), after all tabs when it might
cross a threshold: the state flips at the exact call, as when every call was added at once.
The test whether a call is deferred is the engine's (``PolicyEngine._observe``), on the
request path.
"""

from __future__ import annotations

from collections.abc import Mapping

from otel_llm.policies.budgets import NEVER, Budget, Spend, add_minute
from otel_llm.policies.model import Policy
from otel_llm.policies.windows import MINUTE_NS, minute_of


class Plan:
    """What the calls of one scope key are checked against, and its tab: its calls not yet
    added to its spends within the room its spends reserved for them. One object, so that a
    deferred call reads one (with 1,000 policies the plans outgrow the CPU's caches: each
    object a call reads is a likely miss)."""

    __slots__ = (
        "big_nanos",
        "big_tokens",
        "broken",
        "calls",
        "hi",
        "left_nanos",
        "left_tokens",
        "lo",
        "max_cost",
        "max_tokens",
        "minute",
        "policies",
        "room_nanos",
        "room_tokens",
        "sized",
        "spends",
        "unpriced",
        "until",
    )

    def __init__(
        self,
        policies: tuple[Policy, ...],
        spends: tuple[Spend, ...],
        broken: tuple[tuple[Policy, str], ...],
        sized: tuple[Policy, ...],
    ) -> None:
        self.policies = policies
        self.spends = spends
        self.broken = broken
        """(policy, rule) of the model rules these calls break."""
        self.sized = sized
        """Policies with a max_tokens or max_cost rule: checked call by call."""
        self.max_tokens = min(
            (p.calls.max_tokens for p in sized if p.calls.max_tokens is not None), default=NEVER
        )
        """The least max_tokens of ``sized`` (``NEVER``: none; ``-NEVER`` when the calls
        break a model rule): a call within it and ``max_cost`` breaks no call rule, which is
        all most calls need to know (a comparison or two, not a call per policy)."""
        if broken:
            self.max_tokens = -NEVER
        self.max_cost = min(
            (p.calls.max_cost_nanos for p in sized if p.calls.max_cost_nanos is not None),
            default=NEVER,
        )
        self.calls = self.unpriced = 0
        self.room_nanos = self.room_tokens = 0
        """The room reserved on the spends (0: not armed, every call added at once)."""
        self.left_nanos = self.left_tokens = 0
        """What is left of it: a call is deferred while its sums stay strictly under these
        (the deferred sums are the room less what is left)."""
        self.big_nanos = self.big_tokens = 1
        """The largest call seen, plus one: the room asked for is 64 of them."""
        self.lo = self.hi = self.until = self.minute = 0
        """Calls started in [lo, hi) are deferred while now < until (the spends' windows, and
        for a rolling one the minute ``minute`` its deferred sums go to)."""


def plan_for(
    policies: tuple[Policy, ...], model: str | None, budgets: Mapping[tuple[str, str], Budget]
) -> Plan:
    """The plan of the calls of a scope: the ``policies`` it is in, the spends of their
    ``budgets``, and the model rules' verdicts (the scope holds the ``model``)."""
    model = model or ""
    broken: list[tuple[Policy, str]] = []
    sized: list[Policy] = []
    for policy in policies:
        rules = policy.calls
        if rules.allowed_models is not None and not any(
            p.text == "*" or p.matches(model) for p in rules.allowed_models
        ):
            broken.append((policy, "allowed_models"))
        if rules.denied_models is not None and any(
            p.text == "*" or p.matches(model) for p in rules.denied_models
        ):
            broken.append((policy, "denied_models"))
        if rules.max_tokens is not None or rules.max_cost_nanos is not None:
            sized.append(policy)
    spends = {
        id(budget.spend): budget.spend
        for policy in policies
        for rule in policy.budgets
        for budget in (budgets[(policy.name, rule.name)],)
    }
    return Plan(policies, tuple(spends.values()), tuple(broken), tuple(sized))


def arm(plan: Plan, when: int, nanos: int, tokens: int) -> bool:
    """Reserve room on the plan's spends for up to 64 calls as large as its largest, at most
    an eighth of what is left under each spend's next threshold (many plans may share a
    spend); none when that is less than four such calls (near a threshold: its calls are added
    at once). True when it did (the plan's tab is then open from ``when``'s minute on)."""
    # Sized by the largest call seen (the calls that did not fit are added here).
    plan.big_nanos = big_nanos = max(plan.big_nanos, nanos + 1)
    plan.big_tokens = big_tokens = max(plan.big_tokens, tokens + 1)
    room_nanos = big_nanos << 6
    room_tokens = big_tokens << 6
    start, until, rolling = 0, NEVER, False
    spends = plan.spends
    for spend in spends:
        free = (spend.next_nanos - spend.nanos - spend.reserved_nanos) >> 3
        room_nanos = min(room_nanos, free)
        free = (spend.next_tokens - spend.tokens - spend.reserved_tokens) >> 3
        room_tokens = min(room_tokens, free)
        start = max(start, spend.start_ns)
        until = min(until, spend.end_ns)
        rolling = rolling or spend.minutes is not None
    if room_nanos < big_nanos << 2 or room_tokens < big_tokens << 2:
        return False
    for spend in spends:
        spend.reserved_nanos += room_nanos
        spend.reserved_tokens += room_tokens
    plan.room_nanos, plan.room_tokens, plan.until = room_nanos, room_tokens, until
    plan.left_nanos, plan.left_tokens = room_nanos, room_tokens
    if rolling:  # its deferred calls go to one minute of the rolling windows
        plan.minute = minute_of(when)
        plan.lo, plan.hi = max(start, plan.minute), plan.minute + MINUTE_NS
    else:
        plan.lo, plan.hi = start, NEVER
    return True


def flush(plan: Plan) -> bool:
    """The plan's tab into its spends, and its room given back; False when it held none."""
    if not plan.room_nanos:
        return False
    calls = plan.calls
    nanos, tokens = plan.room_nanos - plan.left_nanos, plan.room_tokens - plan.left_tokens
    for spend in plan.spends:
        if calls:
            spend.calls += calls
            spend.unpriced += plan.unpriced
            spend.nanos += nanos
            spend.tokens += tokens
            if spend.minutes is not None:
                add_minute(spend.minutes, plan.minute, nanos, tokens)
        spend.reserved_nanos -= plan.room_nanos
        spend.reserved_tokens -= plan.room_tokens
    plan.calls = plan.unpriced = 0
    plan.room_nanos = plan.room_tokens = plan.left_nanos = plan.left_tokens = 0
    return True
