"""``GET /api/v1/policies`` and ``/api/v1/policies/{name}``: the budgets' states, served by the
call-log API (``app.py`` routes here) with its keys, rate limits and project restrictions.

The answer is built to be polled. ``revision`` changes whenever any state does (a window's
reset included). An application enforcing ``block`` policies polls ``?view=enforcement``:
only the ``block`` policies, each with its name, scope, state, ``blocked``, ``blocked_until``
(the latest reset of its exceeded budgets), ``blocking`` (those budgets) and its call rules --
all a check before a call needs -- and, with ``&since=<revision>``, just
``{"revision": n, "unchanged": true}`` while nothing changed. The full answer gives every
budget's spend; money twice: USD numbers for people, exact integer nano-USD (``*_nanos``) for
programs.

A key limited to projects sees only the policies whose scope names projects, exactly, that it
may read (a policy over other projects' calls, or over every project, would show their spend);
another policy is "not found", as a call of another project is. Nor is it shown the file's
path or the error of a bad edit (``_OPERATOR_ONLY``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from otel_llm.calllog.auth import ApiKey
from otel_llm.calllog.params import ParamError
from otel_llm.policies.engine import LEVELS
from otel_llm.policies.load import describe_policy
from otel_llm.policies.model import ACTIONS, Policy
from otel_llm.policies.watch import PolicyFile
from otel_llm.policies.windows import iso

POLICIES_PREFIX = "/api/v1/policies"
_PARAMS: dict[str, tuple[str, ...] | None] = {
    "state": LEVELS,
    "action": ACTIONS,
    "view": ("full", "enforcement"),
    "since": None,  # a revision number
}
_NANO = Decimal(1_000_000_000)


class NoPolicy(LookupError):
    """The policy named does not exist, or the key may not see it (404)."""


def answer(
    file: PolicyFile, key: ApiKey | None, name: str | None, query: Mapping[str, list[str]]
) -> dict[str, Any]:
    """The list (``name`` None) or one policy, as ``key`` may see them (None: all of them,
    for ``otel-llm policies status --store``)."""
    wanted = _filters(query, single=name is not None)
    engine = file.engine
    revision = engine.current_revision()
    enforcement = wanted.pop("view", {"full"}) == {"enforcement"}
    since = wanted.pop("since", None)
    if since is not None and str(revision) in since:
        return {"revision": revision, "unchanged": True}
    if enforcement:
        wanted["action"] = {"block"}
    visible = {p.name: p for p in engine.policies.policies if _may_see(key, p)}
    states = [s for s in engine.snapshot() if s["name"] in visible]
    if name is not None:
        for state in states:
            if state["name"] == name:
                return _policy(state, visible[name])
        raise NoPolicy(name)
    chosen = [
        (_enforced if enforcement else _policy)(state, visible[state["name"]])
        for state in states
        if all(state[field] in values for field, values in wanted.items())
    ]
    if enforcement:
        return {"revision": revision, "generated_at": iso(time.time_ns()), "policies": chosen}
    return {
        "revision": revision,
        "generated_at": iso(time.time_ns()),
        "file": _file_state(file, key),
        "policies": chosen,
    }


_OPERATOR_ONLY = ("path", "last_error")
"""The file's state a key limited to projects is not shown: where it lies on the server, and
the error of a bad edit, which quotes the line it refuses (any project's policy)."""


def _file_state(file: PolicyFile, key: ApiKey | None) -> dict[str, Any]:
    state = file.state()
    if key is None or key.projects is None:
        return state
    return {name: value for name, value in state.items() if name not in _OPERATOR_ONLY}


def _filters(query: Mapping[str, list[str]], *, single: bool) -> dict[str, set[str]]:
    wanted: dict[str, set[str]] = {}
    for param, values in query.items():
        if single or param not in _PARAMS:
            known = "none" if single else ", ".join(_PARAMS)
            raise ParamError(f"unknown parameter '{param[:40]}'; parameters: {known}")
        choices = {part for value in values for part in value.split(",") if part}
        allowed = _PARAMS[param]
        if allowed is None:  # since: one revision number
            if len(choices) != 1 or not next(iter(choices)).isdigit():
                raise ParamError(f"{param} must be a revision number (the answer's 'revision')")
        elif choices - set(allowed) or not choices:
            raise ParamError(f"{param} must be one or more of {', '.join(allowed)}")
        wanted[param] = choices
    return wanted


def _may_see(key: ApiKey | None, policy: Policy) -> bool:
    if key is None or key.projects is None:
        return True
    patterns = policy.scope.fields.get("project")
    if not patterns:
        return False
    return all(not any(char in p.text for char in "*?[") and key.allows(p.text) for p in patterns)


def _policy(state: dict[str, Any], policy: Policy) -> dict[str, Any]:
    shown = dict(state)
    shown["budgets"] = [_budget(budget) for budget in state["budgets"]]
    shown["calls"] = describe_policy(policy)["calls"]
    shown["line"] = policy.line
    return shown


def _enforced(state: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """What an application needs to refuse a call before it is made."""
    return {
        "name": state["name"],
        "scope": state["scope"],
        "state": state["state"],
        "blocked": state["blocked"],
        "blocked_until": state["blocked_until"],
        "blocking": [b["name"] for b in state["budgets"] if b["state"] == "exceeded"],
        "calls": describe_policy(policy)["calls"],
    }


def _budget(budget: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for field, value in budget.items():
        if field.endswith("_nanos"):
            shown[field.removesuffix("_nanos") + "_usd"] = (
                Decimal(value) / _NANO if value is not None else None
            )
        shown[field] = value
    return shown
