"""A budget's spend in its current window, and the budgets' levels against it.

Spend is kept once per (scope, window) -- ``Spend`` -- however many budgets share it: ten
policies with a monthly budget over every call add each call once. Each ``Budget`` (a policy's
budget rule) reads that spend against its own limits and holds its own level. Both arm the
spend at which a level may next change (``next_nanos``, ``next_tokens``): below it, a call
only adds to the sums, which is all the hot path does.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

from otel_llm.policies.model import BudgetRule, Policy, Scope, Window
from otel_llm.policies.windows import bounds, minute_of

Level = Literal["ok", "warning", "exceeded"]
LEVELS: tuple[Level, ...] = ("ok", "warning", "exceeded")
NEVER = 1 << 126
"""A threshold no spend reaches."""


class Budget:
    """One budget rule of one policy: its limits read against the spend of its window."""

    __slots__ = ("crossed_by", "level", "next_nanos", "next_tokens", "policy", "rule", "spend")

    def __init__(self, policy: Policy, rule: BudgetRule, spend: Spend):
        self.policy = policy
        self.rule = rule
        self.spend = spend
        self.crossed_by: dict[str, Any] | None = None
        """The call that made it exceeded (its id and time)."""
        self.level: Level = "ok"
        self.next_nanos = self.next_tokens = 0
        self.set_level("ok")

    def set_level(self, level: Level) -> None:
        self.level = level
        rule = self.rule
        if level == "exceeded":  # every call is a violation: always the slow path
            self.next_nanos = self.next_tokens = -NEVER
        elif level == "warning" or rule.warn_percent is None:
            self.next_nanos = NEVER if rule.usd_nanos is None else rule.usd_nanos
            self.next_tokens = NEVER if rule.tokens is None else rule.tokens
        else:
            warn_nanos, warn_tokens = rule.warn_nanos(), rule.warn_tokens()
            self.next_nanos = NEVER if warn_nanos is None else warn_nanos
            self.next_tokens = NEVER if warn_tokens is None else warn_tokens

    def level_now(self) -> Level:
        """The level the spend is at: exceeded once a limit is reached, warning once
        ``warn_at`` percent of one is."""
        rule, nanos, tokens = self.rule, self.spend.nanos, self.spend.tokens
        if (rule.usd_nanos is not None and nanos >= rule.usd_nanos) or (
            rule.tokens is not None and tokens >= rule.tokens
        ):
            return "exceeded"
        warn_nanos, warn_tokens = rule.warn_nanos(), rule.warn_tokens()
        if (warn_nanos is not None and nanos >= warn_nanos) or (
            warn_tokens is not None and tokens >= warn_tokens
        ):
            return "warning"
        return "ok"

    def reset_ns(self) -> int:
        """When the spend falls back under the limits: the calendar window's end; for a
        rolling one, when enough of its oldest minutes have left it."""
        spend = self.spend
        if spend.minutes is None or self.level != "exceeded":
            return spend.end_ns
        rule = self.rule
        nanos, tokens = spend.nanos, spend.tokens
        length = spend.end_ns - spend.start_ns
        for minute, minute_nanos, minute_tokens in spend.minutes:
            nanos -= minute_nanos
            tokens -= minute_tokens
            if (rule.usd_nanos is None or nanos < rule.usd_nanos) and (
                rule.tokens is None or tokens < rule.tokens
            ):
                return minute + length
        return spend.end_ns


class Spend:
    """The calls of one scope in the current window of one window kind: their nano-USD,
    tokens, count; per minute too for a rolling window."""

    __slots__ = (
        "budgets",
        "calls",
        "end_ns",
        "live_nanos",
        "live_tokens",
        "minutes",
        "nanos",
        "next_nanos",
        "next_tokens",
        "reserved_nanos",
        "reserved_tokens",
        "scope",
        "start_ns",
        "tokens",
        "unpriced",
        "window",
    )

    def __init__(self, scope: Scope, window: Window, now: int):
        self.scope = scope
        self.window = window
        self.budgets: list[Budget] = []
        self.minutes: deque[list[int]] | None = None
        """Rolling windows: [minute start, nano-USD, tokens], oldest first."""
        self.start_ns = self.end_ns = 0
        self.nanos = self.tokens = self.calls = self.unpriced = 0
        self.next_nanos = self.next_tokens = NEVER
        self.live_nanos = self.live_tokens = NEVER
        """``next_*`` of the budgets not exceeded yet: where a level may still change."""
        self.reserved_nanos = self.reserved_tokens = 0
        """Room the engine's plans hold on this spend for calls not added yet (``engine``)."""
        self.open(now)

    def open(self, now: int) -> None:
        """A new window, empty, holding ``now``."""
        self.start_ns, self.end_ns = bounds(self.window, now)
        self.nanos = self.tokens = self.calls = self.unpriced = 0
        self.minutes = deque() if self.window.kind == "rolling" else None
        for budget in self.budgets:
            budget.crossed_by = None
            budget.set_level("ok")
        self.rearm()

    def roll(self, now: int) -> bool:
        """Move to the window holding ``now`` (``now`` is past the end); True if a level
        changed."""
        levels = [budget.level for budget in self.budgets]
        if self.minutes is None:
            self.open(now)
        else:
            self.start_ns, self.end_ns = bounds(self.window, now)
            minutes = self.minutes
            while minutes and minutes[0][0] < self.start_ns:
                _, nanos, tokens = minutes.popleft()
                self.nanos -= nanos
                self.tokens -= tokens
            self.settle()
        return levels != [budget.level for budget in self.budgets]

    def add(self, when: int, nanos: int, tokens: int) -> None:
        """Sums read back from the store (the hot path adds inline)."""
        self.nanos += nanos
        self.tokens += tokens
        if self.minutes is not None:
            add_minute(self.minutes, when, nanos, tokens)

    def replace(
        self, nanos: int, tokens: int, calls: int, unpriced: int, minutes: dict[int, list[int]]
    ) -> None:
        """The spend as a resync found it (the store's sums plus the calls not stored yet);
        ``minutes``: a rolling window's [nano-USD, tokens] by minute start."""
        self.nanos, self.tokens, self.calls, self.unpriced = nanos, tokens, calls, unpriced
        if self.minutes is not None:
            self.minutes = deque([minute, *sums] for minute, sums in sorted(minutes.items()))

    def settle(self) -> None:
        """Each budget's level from the spend as it is (after a read-back or a roll), without
        counting anything: no call crossed a line."""
        for budget in self.budgets:
            level = budget.level_now()
            if level != "exceeded":
                budget.crossed_by = None
            budget.set_level(level)
        self.rearm()

    def rearm(self) -> None:
        self.next_nanos = min((budget.next_nanos for budget in self.budgets), default=NEVER)
        self.next_tokens = min((budget.next_tokens for budget in self.budgets), default=NEVER)
        live = [budget for budget in self.budgets if budget.level != "exceeded"]
        self.live_nanos = min((budget.next_nanos for budget in live), default=NEVER)
        self.live_tokens = min((budget.next_tokens for budget in live), default=NEVER)


def add_minute(minutes: deque[list[int]], when: int, nanos: int, tokens: int) -> None:
    minute = minute_of(when)
    # Calls arrive nearly in order: the newest minute is almost always the last.
    if minutes and minutes[-1][0] == minute:
        minutes[-1][1] += nanos
        minutes[-1][2] += tokens
        return
    minutes.append([minute, nanos, tokens])
    if len(minutes) > 1 and minutes[-2][0] > minute:  # out of order: merged into its place
        ordered = sorted(minutes, key=lambda entry: entry[0])
        minutes.clear()
        for entry in ordered:
            if minutes and minutes[-1][0] == entry[0]:
                minutes[-1][1] += entry[1]
                minutes[-1][2] += entry[2]
            else:
                minutes.append(entry)


def signature(scope: Scope, window: Window) -> tuple[object, ...]:
    """What a spend is the spend of: budgets with the same one share it, and a reload keeps
    it."""
    fields = tuple(sorted((name, tuple(p.text for p in ps)) for name, ps in scope.fields.items()))
    return (fields, window)
