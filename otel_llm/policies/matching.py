"""Which policies a call is in, found fast: an index of scopes by exact value, and the part of
a call's scope values that decides it (so a cache of plans stays small).

A policy whose scope names a field by exact values only is filed under those values (of the
first such field); the others are tried on every new key. A thousand per-project policies thus
cost a new call one look-up per field, and only the candidates are matched in full. The
engine caches the outcome per ``projection`` of the key: the fields some scope names (and the
model, when a policy has model rules), so a user or key id no policy names makes no plan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter

from otel_llm.policies.model import SCOPE_FIELDS, Policy, ScopeKey


def projected(policies: Sequence[Policy]) -> tuple[int, ...]:
    """The indexes of ``ScopeKey`` that decide a call's plan: the fields some scope names, and
    the model when a policy has model rules; in key order."""
    used = {
        index
        for policy in policies
        for index, name in enumerate(SCOPE_FIELDS)
        if name in policy.scope.fields
    }
    if any(
        p.calls.allowed_models is not None or p.calls.denied_models is not None for p in policies
    ):
        used.add(SCOPE_FIELDS.index("model"))
    return tuple(sorted(used))


def projection(used: tuple[int, ...]) -> Callable[[ScopeKey], object]:
    """The part of a scope key that decides a call's plan (``projected``'s fields): ``()``
    for none, a lone field's value, else a tuple -- what ``calls.reader(used)`` reads of a
    span."""
    if not used:
        return lambda key: ()
    if len(used) == 1:
        (only,) = used
        return lambda key: key[only]
    return itemgetter(*used)


class ScopeIndex:
    """The policies a call may be in, found without trying each."""

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
        filed: list[Policy] = []
        for index, value in enumerate(key):
            if value is not None:
                found = self._by_value[index].get(value)
                if found:
                    filed.extend(found)
        candidates: Sequence[Policy] = self._always
        if filed:  # in the file's order, each once
            unique = {p.name: p for p in (*self._always, *filed)}.values()
            candidates = sorted(unique, key=lambda p: self._order[p.name])
        return tuple(p for p in candidates if p.scope.matches(key))
