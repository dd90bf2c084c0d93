"""What a policy file says, once validated: policies, their scopes and rules.

Everything here is immutable and already checked (``load.py`` builds it from YAML): a value
that got here is usable as it is. Money is integer nano-USD from the start, so a budget is
compared with the spend exactly.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Action = Literal["record", "alert", "block"]
ACTIONS: tuple[Action, ...] = ("record", "alert", "block")
"""What a violation does: ``record`` counts it; ``alert`` also raises an alert; ``block`` also
asks applications to refuse calls in the scope until the window resets (or, for a call rule,
calls that break it)."""

SCOPE_FIELDS = ("service", "project", "feature", "user", "api_key_id", "provider", "model")
"""A call's fields a scope can name, in the order of ``ScopeKey``; the call log's names."""

ScopeKey = tuple[str | None, str | None, str | None, str | None, str | None, str | None, str | None]
"""A call's values of ``SCOPE_FIELDS`` (None: the call has none)."""

CALENDAR_WINDOWS = ("day", "week", "month")
"""Calendar windows, in UTC: a day from midnight, an ISO week from Monday, a month from the
1st."""

CALL_RULES = ("allowed_models", "denied_models", "max_tokens", "max_cost")
"""The rule names of a policy's per-call rules (the ``rule`` label of a violation)."""


@dataclass(frozen=True, slots=True)
class Pattern:
    """A value to match exactly, or a glob (``*``, ``?``, ``[abc]``), case-sensitive."""

    text: str
    matches: Callable[[str], object] = field(compare=False, repr=False)

    @property
    def is_glob(self) -> bool:
        return any(char in self.text for char in "*?[")

    @classmethod
    def of(cls, text: str) -> Pattern:
        if not any(char in text for char in "*?["):
            return cls(text, text.__eq__)
        return cls(text, re.compile(fnmatch.translate(text)).match)


def check_glob(text: str) -> str | None:
    """Why ``text`` is not a usable pattern, or None."""
    if not text:
        return "an empty pattern matches nothing; use '*' for any value"
    if len(text) > 256:
        return "a pattern is at most 256 characters"
    i = 0
    while i < len(text):
        if text[i] == "[":
            start = i + 2 if text[i + 1 : i + 2] in ("!", "]") else i + 1
            end = text.find("]", start)
            if end < 0:
                return f"'[' at position {i + 1} is never closed"
            i = end
        i += 1
    return None


@dataclass(frozen=True, slots=True)
class Scope:
    """The calls a policy is about: for each field named, one of its patterns must match the
    call's value (a call without a value matches only ``*``); a field not named matches any."""

    fields: Mapping[str, tuple[Pattern, ...]]
    """By field of ``SCOPE_FIELDS``; empty: every call."""
    _checks: tuple[tuple[int, frozenset[str], tuple[Callable[[str], object], ...]], ...] = field(
        init=False, repr=False, compare=False
    )
    """Per field named (``*`` aside): its index in a ``ScopeKey``, its exact values, its
    globs' matchers."""

    def __post_init__(self) -> None:
        checks = []
        for index, name in enumerate(SCOPE_FIELDS):
            patterns = self.fields.get(name)
            if patterns is None or any(p.text == "*" for p in patterns):
                continue
            exact = frozenset(p.text for p in patterns if not p.is_glob)
            globs = tuple(p.matches for p in patterns if p.is_glob)
            checks.append((index, exact, globs))
        object.__setattr__(self, "_checks", tuple(checks))

    def matches(self, key: ScopeKey) -> bool:
        for index, exact, globs in self._checks:
            value = key[index]
            if value is None:
                return False
            if value not in exact and not any(glob(value) for glob in globs):
                return False
        return True

    def describe(self) -> dict[str, list[str]]:
        """The scope as the API and ``policies check`` show it (``{}``: every call)."""
        return {name: [p.text for p in patterns] for name, patterns in self.fields.items()}


@dataclass(frozen=True, slots=True)
class Window:
    """``day``, ``week``, ``month`` (calendar, UTC) or a rolling number of hours."""

    kind: Literal["day", "week", "month", "rolling"]
    hours: int = 0
    """The rolling window's length (0 for calendar windows)."""

    @property
    def name(self) -> str:
        return f"{self.hours}h" if self.kind == "rolling" else self.kind


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """Spend allowed in a window: USD (nano-USD) and/or tokens; a warning from a percentage."""

    name: str
    window: Window
    usd_nanos: int | None
    tokens: int | None
    warn_percent: int | None
    """Warning when the spend reaches this percentage of a limit (None: no warning state)."""

    def warn_nanos(self) -> int | None:
        return _share(self.usd_nanos, self.warn_percent)

    def warn_tokens(self) -> int | None:
        return _share(self.tokens, self.warn_percent)


def _share(limit: int | None, percent: int | None) -> int | None:
    if limit is None or percent is None:
        return None
    return -(-limit * percent // 100)  # rounded up: reaching 80 % means at least 80 %


@dataclass(frozen=True, slots=True)
class CallRules:
    """Rules each call must keep, whatever was spent before."""

    allowed_models: tuple[Pattern, ...] | None = None
    denied_models: tuple[Pattern, ...] | None = None
    max_tokens: int | None = None
    """The requested ``max_tokens``, and the reported total (input + output), at most."""
    max_cost_nanos: int | None = None

    @property
    def empty(self) -> bool:
        return (
            self.allowed_models is None
            and self.denied_models is None
            and self.max_tokens is None
            and self.max_cost_nanos is None
        )


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    scope: Scope
    budgets: tuple[BudgetRule, ...]
    calls: CallRules
    action: Action
    line: int
    """Where it starts in its file (1-based)."""

    def signature(self, rule: BudgetRule) -> tuple[object, ...]:
        """What a budget's spend depends on: a reload keeps the spend of a rule whose
        signature did not change, and reads the others again."""
        return (self.scope.describe(), rule.window)


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The policies of one file, in its order; names are unique."""

    policies: tuple[Policy, ...]
    path: str | None = None

    def named(self, name: str) -> Policy | None:
        for policy in self.policies:
            if policy.name == name:
                return policy
        return None
