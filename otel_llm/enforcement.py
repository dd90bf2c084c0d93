"""Opt-in blocking in the application (``policy_enforce=block``): a call a ``block`` policy
refuses raises ``PolicyBlocked`` before the provider is called.

The collector keeps the budgets' spend (it sees every service); ``PolicyPoller`` reads its block
policies from ``/api/v1/policies?view=enforcement`` in the background, and each poll makes a new
``EnforcementState``. The check on a call's path (``Enforcer.check``) is a dictionary look-up of
the call's scope key in that state, never a request: a key seen before costs one ``dict.get``;
a new one is matched once with the policies' own scope code (``policies.matching``), and the
outcome is kept until the next state.

A budget's block ends at its reset time (``blocked_until``) without waiting for a poll. While
the API cannot be read, ``policy_fail_mode`` decides: ``open`` (the default) lets calls through,
counting each failed poll and warning once per outage; ``closed`` refuses every call.

Without a collector, ``localpolicies`` keeps the same state from this process's own spend
(``engine_state``); ``install`` makes either source's enforcer the one checked.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, Self

from otel_llm import _semconv as sc
from otel_llm.background import Background
from otel_llm.context import current_context_attributes
from otel_llm.lifecycle import CallSpan
from otel_llm.policies.matching import ScopeIndex
from otel_llm.policies.model import (
    SCOPE_FIELDS,
    CallRules,
    Pattern,
    Policy,
    Scope,
    ScopeKey,
    check_glob,
)

if TYPE_CHECKING:
    from otel_llm.policies.engine import PolicyEngine

__all__ = ["EnforcementState", "Enforcer", "PolicyBlocked", "PolicyPoller", "refuse"]

_logger = logging.getLogger(__name__)

ENFORCEMENT_PATH = "/api/v1/policies?view=enforcement"
_MAX_KEYS = 10_000
"""Scope keys whose outcome a state keeps: a user id per call must not grow it without end."""
_MAX_POLICIES = 10_000
_MAX_ANSWER_BYTES = 16 << 20
_PROJECT = sc.CONTEXT_PREFIX + "project_id"
_FEATURE = sc.CONTEXT_PREFIX + "feature"
_USER = sc.CONTEXT_PREFIX + "user_id"
_API_KEY = sc.CONTEXT_PREFIX + "api_key_id"


class PolicyBlocked(Exception):
    """A call refused by a ``block`` policy before the provider was called.

    ``policy``: the policy's name (None when the states could not be read and
    ``policy_fail_mode`` is ``closed``); ``rule``: the exceeded budgets' names
    (comma-separated), ``denied_models``, ``allowed_models``, ``max_tokens`` (the requested
    ``max_tokens`` over the rule's) or ``unreachable``;
    ``blocked_until``: when the budget's window resets (ISO 8601 UTC; None for a call rule),
    ``reset_time_ns`` the same in nanoseconds since the epoch.
    """

    def __init__(
        self, policy: str | None, rule: str, blocked_until: str | None, reset_time_ns: int | None
    ):
        self.policy = policy
        self.rule = rule
        self.blocked_until = blocked_until
        self.reset_time_ns = reset_time_ns
        until = f" until {blocked_until}" if blocked_until else ""
        who = f"policy {policy!r}" if policy else "policy enforcement"
        super().__init__(f"call refused by {who} (rule {rule}){until}")

    def __reduce__(self) -> tuple[type[PolicyBlocked], tuple[Any, ...]]:
        # Pickled with its attributes (to a worker process and back), not just its message.
        return (PolicyBlocked, (self.policy, self.rule, self.blocked_until, self.reset_time_ns))


# The SDKs' errors are named by their package (openai.RateLimitError): so is this one, and its
# spans' error.type is "otel_llm.PolicyBlocked".
PolicyBlocked.__module__ = "otel_llm"


class Block:
    """Why a call is refused; ``until_ns`` None: until the policies change."""

    __slots__ = ("label", "max_tokens", "policy", "rule", "until", "until_ns")

    def __init__(
        self,
        policy: str | None,
        rule: str,
        until: str | None,
        until_ns: int | None,
        max_tokens: int | None = None,
    ):
        self.policy = policy
        self.rule = rule
        self.until = until
        self.until_ns = until_ns
        self.max_tokens = max_tokens
        """A ``max_tokens`` rule: refuses only a call requesting more."""
        self.label = (policy or "", rule)

    def exception(self) -> PolicyBlocked:
        return PolicyBlocked(self.policy, self.rule, self.until, self.until_ns)


UNREACHABLE = Block(None, "unreachable", None, None)
_NONE: tuple[Block, ...] = ()


class EnforcementState:
    """The block policies of one poll, and the outcome per scope key seen since."""

    def __init__(self, policies: Sequence[tuple[Policy, Block | None]], *, closed: bool = False):
        self.closed = closed
        """Every call refused (the states are unreadable, ``policy_fail_mode=closed``)."""
        self._budget_blocks = {policy.name: block for policy, block in policies}
        self._index = ScopeIndex([policy for policy, _ in policies])
        self._blocks: dict[ScopeKey, tuple[Block, ...]] = {}

    def blocks(self, key: ScopeKey) -> tuple[Block, ...]:
        found = self._blocks.get(key)
        if found is None:
            found = self._match(_scope_key(key))
            if len(self._blocks) >= _MAX_KEYS:
                self._blocks.clear()
            self._blocks[key] = found
        return found

    def _match(self, key: ScopeKey) -> tuple[Block, ...]:
        model = key[6]
        found: list[Block] = []
        for policy in self._index.matching(key):
            rule = _call_rule(policy.calls, model)
            if rule is not None:
                found.append(Block(policy.name, rule, None, None))
            if policy.calls.max_tokens is not None:
                found.append(Block(policy.name, "max_tokens", None, None, policy.calls.max_tokens))
            budget = self._budget_blocks[policy.name]
            if budget is not None:
                found.append(budget)
        return tuple(found) if found else _NONE


def _call_rule(calls: CallRules, model: str | None) -> str | None:
    """The model rule ``model`` breaks, or None (a call without a model breaks none: the
    collector judges it by its response's model)."""
    if model is None:
        return None
    if calls.denied_models is not None and any(p.matches(model) for p in calls.denied_models):
        return "denied_models"
    if calls.allowed_models is not None and not any(p.matches(model) for p in calls.allowed_models):
        return "allowed_models"
    return None


def parse_state(answer: Any) -> EnforcementState:
    """The state of an enforcement answer (``policyapi``'s ``?view=enforcement``); a policy
    that does not read as one is left out, with a warning."""
    if not isinstance(answer, Mapping) or not isinstance(answer.get("policies"), list):
        raise ValueError("not an enforcement answer: no 'policies' list")
    policies: list[tuple[Policy, Block | None]] = []
    for entry in answer["policies"][:_MAX_POLICIES]:
        try:
            policies.append(_policy(entry))
        except (TypeError, ValueError, KeyError) as exc:
            _logger.warning("otel-llm: ignored a block policy the API sent: %s", exc)
    return EnforcementState(policies)


def _patterns(values: Any, what: str) -> tuple[Pattern, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TypeError(f"{what}: expected a list of patterns")
    for value in values:
        problem = check_glob(value)
        if problem is not None:
            raise ValueError(f"{what}: {problem}")
    return tuple(Pattern.of(value) for value in values)


def _policy(entry: Any) -> tuple[Policy, Block | None]:
    name = entry["name"]
    if not isinstance(name, str):
        raise TypeError("a policy's name must be text")
    raw_scope = entry["scope"]
    fields: dict[str, tuple[Pattern, ...]] = {}
    if raw_scope != "*":
        if not isinstance(raw_scope, Mapping):
            raise TypeError(f"{name}: scope must be '*' or a mapping")
        for field, values in raw_scope.items():
            if field not in SCOPE_FIELDS:
                raise ValueError(f"{name}: unknown scope field {field!r}")
            fields[field] = _patterns(values, f"{name}: scope.{field}")
    calls = entry.get("calls") or {}
    rules = CallRules(
        allowed_models=(
            _patterns(calls["allowed_models"], f"{name}: allowed_models")
            if "allowed_models" in calls
            else None
        ),
        denied_models=(
            _patterns(calls["denied_models"], f"{name}: denied_models")
            if "denied_models" in calls
            else None
        ),
        max_tokens=_count(calls.get("max_tokens"), f"{name}: max_tokens"),
    )
    budget = _budget_block(
        name, entry.get("blocked"), entry.get("blocked_until"), entry.get("blocking")
    )
    return Policy(name, Scope(fields), (), rules, "block", 0), budget


def _budget_block(name: str, blocked: Any, until: Any, blocking: Any) -> Block | None:
    """The block of a policy whose budgets are exceeded (``blocked``), from its state as the
    engine's snapshot and the enforcement answer give it; None when it is not blocked."""
    if blocked is not True:
        return None
    until_ns = _instant_ns(until) if isinstance(until, str) else None
    rule = ",".join(b for b in blocking or () if isinstance(b, str)) or "budget"
    return Block(name, rule, until if until_ns is not None else None, until_ns)


def engine_state(engine: PolicyEngine) -> EnforcementState:
    """The state of an engine in this process (``localpolicies``): its ``block`` policies as
    they are, what ``parse_state`` makes of the collector's enforcement answer."""
    named = {policy.name: policy for policy in engine.policies.policies}
    policies: list[tuple[Policy, Block | None]] = []
    for state in engine.snapshot():
        policy = named.get(state["name"])
        if policy is None or policy.action != "block":
            continue
        exceeded = [b["name"] for b in state["budgets"] if b["state"] == "exceeded"]
        policies.append(
            (policy, _budget_block(policy.name, state["blocked"], state["blocked_until"], exceeded))
        )
    return EnforcementState(policies)


def _count(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise ValueError(f"{what}: expected a whole number of tokens")
    return value


def _instant_ns(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(moment.timestamp() * 1_000_000) * 1000


class Enforcer:
    """The check before a call: the current state's outcome for the call's scope key."""

    def __init__(
        self,
        service: str | None,
        *,
        fail_closed: bool = False,
        clock: Callable[[], int] = time.time_ns,
    ):
        self.service = service or None
        self.fail_closed = fail_closed
        self.clock = clock
        self.state = EnforcementState(())
        self.reachable = True
        self.unreachable_polls = 0
        self.blocked: dict[tuple[str, str], int] = {}
        """Calls refused, by (policy, rule); ``policy`` ``""`` for ``unreachable``."""
        self._lock = threading.Lock()

    def check(
        self, provider: str | None, model: str | None, max_tokens: object = None
    ) -> Block | None:
        """Why a call of ``provider``/``model`` requesting ``max_tokens``, in the current
        ``llm_context``, is refused; None: it may go."""
        try:
            return self._check(provider, model, max_tokens)
        except Exception:
            # A fault of ours never stops the application's call: it goes, as when fail-open.
            _logger.debug("otel-llm: could not check the call against the policies", exc_info=True)
            return None

    def _check(self, provider: str | None, model: str | None, max_tokens: object) -> Block | None:
        context = current_context_attributes()
        if context:
            get = context.get
            # As given: the state's cache normalizes a key it has not seen (``_scope_key``).
            key: ScopeKey = (
                self.service,
                get(_PROJECT),
                get(_FEATURE),
                get(_USER),
                get(_API_KEY),
                provider,
                model,
            )
        else:
            key = (self.service, None, None, None, None, provider, model)
        state = self.state
        if state.closed:
            return self._count(UNREACHABLE)
        found = state.blocks(key)
        if not found:
            return None
        now = None
        for block in found:
            limit = block.max_tokens
            if limit is not None:
                if type(max_tokens) is not int or max_tokens <= limit:
                    continue
            elif block.until_ns is not None:
                now = self.clock() if now is None else now
                if now >= block.until_ns:
                    continue  # its window reset: the collector will say so at the next poll
            return self._count(block)
        return None

    def _count(self, block: Block) -> Block:
        label = block.label
        blocked = self.blocked
        with self._lock:
            count = blocked.get(label)
            if count is not None:
                blocked[label] = count + 1
            elif len(blocked) < 1000:  # the API names the policies: bounded all the same
                blocked[label] = 1
        return block

    def update(self, answer: Any) -> None:
        """A poll's answer: the new state (``unchanged`` keeps the current one)."""
        # After a failed poll the poller asks for everything again, so "unchanged" always
        # refers to the state in force.
        if not (isinstance(answer, Mapping) and answer.get("unchanged") is True):
            self.state = parse_state(answer)
        if not self.reachable:
            _logger.warning("otel-llm: the policy states can be read again; enforcing them")
        self.reachable = True

    def unreachable(self, error: object) -> None:
        """A poll failed: fail open (nothing refused) or closed (everything refused)."""
        with self._lock:
            self.unreachable_polls += 1
        if self.reachable:
            _logger.warning(
                "otel-llm: cannot read the policy states (%s); %s until they can be read",
                error,
                "refusing every call" if self.fail_closed else "letting calls through",
            )
        self.reachable = False
        self.state = EnforcementState((), closed=self.fail_closed)


def _scope_key(key: tuple[object, ...]) -> ScopeKey:
    """``key``'s values as the call log stores them (``policies/calls.py``): text, "" none."""
    return (
        _text(key[0]),
        _text(key[1]),
        _text(key[2]),
        _text(key[3]),
        _text(key[4]),
        _text(key[5]),
        _text(key[6]),
    )


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


class PolicyPoller(Background):
    """Polls the enforcement view every ``interval`` seconds into ``enforcer``; the first poll
    happens in ``start()``, so calls made right after ``configure()`` are checked."""

    def __init__(self, enforcer: Enforcer, url: str, api_key: str | None, interval: float) -> None:
        self.enforcer = enforcer
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"policy_api_url must be an http(s) URL, got {url[:80]!r}")
        # The API's URL as the collector prints it (``.../api/v1/calls``) works as well as its base.
        self.url = url.split("/api/v1/", 1)[0].rstrip("/") + ENFORCEMENT_PATH
        self.api_key = api_key
        self.interval = interval
        self._revision: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._thread is None:
            self.poll()
            self._thread = threading.Thread(
                target=self._run, name="otel-llm-policy-poller", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self.interval + 10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        url = self.url if self._revision is None else f"{self.url}&since={self._revision}"
        request = urllib.request.Request(url)  # noqa: S310 - http(s), checked in __init__
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            timeout = min(self.interval, 5.0) + 1
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                answer = json.loads(response.read(_MAX_ANSWER_BYTES + 1)[:_MAX_ANSWER_BYTES])
            self.enforcer.update(answer)
        except Exception as exc:  # noqa: BLE001 - any failure is "unreachable", warned once
            self._revision = None
            self.enforcer.unreachable(exc)
            return
        revision = answer.get("revision")
        self._revision = revision if type(revision) is int else None


def refuse(call: CallSpan | None, block: Block) -> NoReturn:
    """End ``call``'s span as refused by ``block`` and raise its ``PolicyBlocked``."""
    exc = block.exception()
    if call is not None:
        try:
            call.span.set_attributes(
                {
                    sc.OTEL_LLM_POLICY_BLOCKED: True,
                    sc.OTEL_LLM_POLICY_RULE: block.rule,
                    **({sc.OTEL_LLM_POLICY_NAME: block.policy} if block.policy else {}),
                    **({sc.OTEL_LLM_POLICY_BLOCKED_UNTIL: block.until} if block.until else {}),
                }
            )
        except Exception:
            _logger.debug("otel-llm: could not mark the span blocked", exc_info=True)
        call.fail(exc)
        call.end()
    raise exc


active: Enforcer | None = None
"""The enforcer ``configure(policy_enforce="block")`` installed; None: no check (the default).
Read by the instrumentors and ``llm_call`` before each call: off, it costs one attribute read."""
_poller: Background | None = None
"""What keeps ``active``'s state: the collector's poller, or the in-process policies."""
_install_lock = threading.Lock()


def enforce(
    url: str,
    *,
    api_key: str | None = None,
    interval: float = 5.0,
    fail_closed: bool = False,
    service: str | None = None,
    clock: Callable[[], int] = time.time_ns,
) -> Enforcer:
    """Start enforcing the block policies served at ``url`` (replacing any enforcement before);
    the first poll is done when this returns."""
    enforcer = Enforcer(service, fail_closed=fail_closed, clock=clock)
    install(enforcer, PolicyPoller(enforcer, url, api_key, interval).start())
    return enforcer


def install(enforcer: Enforcer, source: Background) -> None:
    """Make ``enforcer`` the one checked before each call, its state kept by ``source`` (a
    started poller, or ``localpolicies.LocalPolicies``), replacing any enforcement before."""
    global active, _poller
    with _install_lock:
        previous, _poller, active = _poller, source, enforcer
    if previous is not None:
        previous.stop()


def stop_enforcing() -> None:
    """No check any more; the poller stopped."""
    global active, _poller
    with _install_lock:
        previous, _poller, active = _poller, None, None
    if previous is not None:
        previous.stop()
