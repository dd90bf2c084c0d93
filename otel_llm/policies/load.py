"""A policy file (YAML) read and validated into a ``PolicySet``.

The file is read as YAML nodes (``yaml.compose``), not plain values, so each error names the
line and the key it is about (``policies.yaml:12: policies[1].budgets[0].window: ...``), and so
money is read from the text written (``0.1`` is exactly ten cents, never a float). Every error
of the file is reported at once, up to ``MAX_ERRORS``. The format (README, "Budgets and
policies")::

    policies:
      - name: checkout-daily          # unique; letters, digits, ``_ . : -``
        scope:                        # "*" for every call; else any of SCOPE_FIELDS, each a
          service: checkout           # value or a list of values, exact or glob
          model: ["gpt-4*", "o1*"]
        budgets:                      # spend per window: usd and/or tokens
          - window: day               # day | week | month (UTC) | <N>h (rolling)
            usd: 25.00
            tokens: 2000000
            warn_at: 80               # percent of a limit (optional)
        calls:                        # rules every call must keep
          allowed_models: ["gpt-4o*"]
          denied_models: ["gpt-4-32k*"]
          max_tokens: 8000            # requested max_tokens and reported total, at most
          max_cost_usd: 0.50
        action: alert                 # record (default) | alert | block
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from otel_llm.policies.model import (
    ACTIONS,
    CALENDAR_WINDOWS,
    CALL_RULES,
    SCOPE_FIELDS,
    Action,
    BudgetRule,
    CallRules,
    Pattern,
    Policy,
    PolicySet,
    Scope,
    Window,
    check_glob,
)

MAX_FILE_BYTES = 4 << 20
MAX_POLICIES = 10_000
MAX_ROLLING_HOURS = 31 * 24
"""A rolling window keeps a sum per minute: at most 44,640 of them per budget."""
MAX_ERRORS = 50
MAX_PATTERNS = 1000
"""Patterns of one field: a file is small, but YAML aliases can repeat a long list cheaply."""
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_ROLLING = re.compile(r"([0-9]+)h")
_NANO = Decimal(1_000_000_000)
_MAX_USD = Decimal(10) ** 12
_MAX_TOKENS = 10**15


class PolicyFileError(ValueError):
    """The file cannot be used; ``errors`` lists each problem with its line and key."""

    def __init__(self, path: str, errors: list[str]):
        self.path = path
        self.errors = errors
        super().__init__(f"invalid policy file {path}:\n  " + "\n  ".join(errors))


def load_policies(path: str | Path) -> PolicySet:
    """The policies of the file at ``path``; ``PolicyFileError`` when it is not valid."""
    name = str(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PolicyFileError(name, [f"{name}: cannot be read: {exc.strerror or exc}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise PolicyFileError(name, [f"{name}: larger than {MAX_FILE_BYTES} bytes"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyFileError(name, [f"{name}: not UTF-8 ({exc.reason})"]) from None
    return parse_policies(text, name)


def parse_policies(text: str, name: str = "<policies>") -> PolicySet:
    """The policies of a YAML document; ``PolicyFileError`` naming ``name`` and the lines."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyFileError(name, [f"{where}: not valid YAML: {problem}"]) from None
    reader = _Reader(name)
    policies = reader.document(root)
    if reader.errors:
        ordered = sorted(reader.errors, key=lambda error: _line_of(error, name))
        raise PolicyFileError(name, ordered[:MAX_ERRORS])
    return PolicySet(tuple(policies), name)


def _line_of(error: str, name: str) -> int:
    line = error[len(name) + 1 :].partition(":")[0]
    return int(line) if line.isdigit() else 0


@dataclass
class _Reader:
    name: str

    def __post_init__(self) -> None:
        self.errors: list[str] = []

    def error(self, node: Node | None, key: str, message: str) -> None:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        self.errors.append(
            f"{self.name}{line}: {key}: {message}" if key else f"{self.name}{line}: {message}"
        )

    # --- structure ------------------------------------------------------------------------------
    def mapping(
        self, node: Node, key: str, known: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> dict[str, tuple[Node, Node]] | None:
        """The entries of a mapping node by key (key node, value node); unknown, duplicate
        and missing keys are errors."""
        if not isinstance(node, MappingNode):
            self.error(node, key, f"must be a mapping with keys {', '.join(known)}")
            return None
        entries: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(name, str) or name not in known:
                shown = name if isinstance(name, str) else "?"
                self.error(
                    key_node,
                    f"{key}.{shown}" if key else shown,
                    f"unknown field; expected one of {', '.join(known)}",
                )
                continue
            if name in entries:
                self.error(key_node, f"{key}.{name}" if key else name, "given twice")
                continue
            entries[name] = (key_node, value_node)
        for name in required:
            if name not in entries:
                self.error(node, key, f"'{name}' is required")
        return entries

    def document(self, root: Node | None) -> list[Policy]:
        if root is None:
            self.error(None, "", "empty file; expected 'policies:' and a list of policies")
            return []
        entries = self.mapping(root, "", ("policies",), ("policies",))
        if not entries or "policies" not in entries:
            return []
        node = entries["policies"][1]
        if not isinstance(node, SequenceNode):
            self.error(node, "policies", "must be a list of policies")
            return []
        if len(node.value) > MAX_POLICIES:
            self.error(node, "policies", f"at most {MAX_POLICIES} policies")
            return []
        policies: list[Policy] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(node.value):
            policy = self.policy(item, f"policies[{index}]")
            if policy is None:
                continue
            if policy.name in seen:
                self.error(
                    item,
                    f"policies[{index}].name",
                    f"'{policy.name}' is already the name of the policy on line "
                    f"{seen[policy.name]}",
                )
                continue
            seen[policy.name] = policy.line
            policies.append(policy)
        return policies

    def policy(self, node: Node, key: str) -> Policy | None:
        entries = self.mapping(
            node, key, ("name", "scope", "budgets", "calls", "action"), ("name", "scope")
        )
        if entries is None:
            return None
        before = len(self.errors)
        name = self.text(entries["name"][1], f"{key}.name") if "name" in entries else None
        if name is not None and not _NAME.fullmatch(name):
            self.error(
                entries["name"][1],
                f"{key}.name",
                "1 to 64 letters, digits, '_', '.', ':' or '-'",
            )
        scope = self.scope(entries["scope"][1], f"{key}.scope") if "scope" in entries else None
        budgets: list[BudgetRule] = []
        if "budgets" in entries:
            budgets = self.budgets(entries["budgets"][1], f"{key}.budgets")
        calls = CallRules()
        if "calls" in entries:
            calls = self.calls(entries["calls"][1], f"{key}.calls") or calls
        action: Action = "record"
        if "action" in entries:
            value = self.text(entries["action"][1], f"{key}.action")
            if value is not None and value not in ACTIONS:
                self.error(entries["action"][1], f"{key}.action", f"one of {', '.join(ACTIONS)}")
            elif value is not None:
                action = value
        if not budgets and calls.empty and len(self.errors) == before:
            self.error(node, key, "a policy needs at least one rule: 'budgets' or 'calls'")
        if len(self.errors) != before or name is None or scope is None:
            return None
        return Policy(name, scope, tuple(budgets), calls, action, node.start_mark.line + 1)

    # --- scope ----------------------------------------------------------------------------------
    def scope(self, node: Node, key: str) -> Scope | None:
        if isinstance(node, ScalarNode) and node.value == "*":
            return Scope({})
        entries = self.mapping(node, key, SCOPE_FIELDS)
        if entries is None:
            return None
        fields: dict[str, tuple[Pattern, ...]] = {}
        for field, (_, value) in entries.items():
            patterns = self.patterns(value, f"{key}.{field}")
            if patterns is not None:
                fields[field] = patterns
        return Scope(fields)

    def patterns(self, node: Node, key: str) -> tuple[Pattern, ...] | None:
        items = node.value if isinstance(node, SequenceNode) else [node]
        if not items:
            self.error(node, key, "an empty list matches nothing; use '*' for any value")
            return None
        if len(items) > MAX_PATTERNS:
            self.error(node, key, f"at most {MAX_PATTERNS} patterns")
            return None
        patterns: list[Pattern] = []
        for item in items:
            text = self.text(item, key)
            if text is None:
                return None
            problem = check_glob(text)
            if problem is not None:
                self.error(item, key, f"bad pattern {text!r}: {problem}")
                return None
            patterns.append(Pattern.of(text))
        return tuple(patterns)

    # --- rules ----------------------------------------------------------------------------------
    def budgets(self, node: Node, key: str) -> list[BudgetRule]:
        if not isinstance(node, SequenceNode) or not node.value:
            self.error(node, key, "must be a list of budgets, each with a window and a limit")
            return []
        rules: list[BudgetRule] = []
        names: set[str] = set()
        for index, item in enumerate(node.value):
            rule = self.budget(item, f"{key}[{index}]")
            if rule is None:
                continue
            if rule.name in names or rule.name in CALL_RULES:
                self.error(
                    item,
                    f"{key}[{index}]",
                    f"another rule of this policy is named '{rule.name}'; give this one a "
                    "different 'name'",
                )
                continue
            names.add(rule.name)
            rules.append(rule)
        return rules

    def budget(self, node: Node, key: str) -> BudgetRule | None:
        fields = ("name", "window", "usd", "tokens", "warn_at")
        entries = self.mapping(node, key, fields, ("window",))
        if entries is None:
            return None
        before = len(self.errors)
        window = self.window(entries["window"][1], f"{key}.window") if "window" in entries else None
        usd = self.usd(entries["usd"][1], f"{key}.usd") if "usd" in entries else None
        tokens = self.count(entries["tokens"][1], f"{key}.tokens") if "tokens" in entries else None
        warn = (
            self.percent(entries["warn_at"][1], f"{key}.warn_at") if "warn_at" in entries else None
        )
        if "usd" not in entries and "tokens" not in entries:
            self.error(node, key, "a budget needs a limit: 'usd' and/or 'tokens'")
        name = None
        if "name" in entries:
            name = self.text(entries["name"][1], f"{key}.name")
            if name is not None and not _NAME.fullmatch(name):
                self.error(entries["name"][1], f"{key}.name", "1 to 64 letters, digits, _ . : -")
        if len(self.errors) != before or window is None:
            return None
        return BudgetRule(name or window.name, window, usd, tokens, warn)

    def window(self, node: Node, key: str) -> Window | None:
        text = self.text(node, key)
        if text is None:
            return None
        if text in CALENDAR_WINDOWS:
            return Window(text)  # type: ignore[arg-type] # one of CALENDAR_WINDOWS
        rolling = _ROLLING.fullmatch(text)
        if rolling is None:
            self.error(node, key, f"'{text}' is not a window: day, week, month or <N>h (rolling)")
            return None
        hours = int(rolling.group(1))
        if not 1 <= hours <= MAX_ROLLING_HOURS:
            self.error(
                node, key, f"a rolling window of {hours} hours: it must be 1 to {MAX_ROLLING_HOURS}"
            )
            return None
        return Window("rolling", hours)

    def calls(self, node: Node, key: str) -> CallRules | None:
        fields = ("allowed_models", "denied_models", "max_tokens", "max_cost_usd")
        entries = self.mapping(node, key, fields)
        if entries is None:
            return None
        if not entries:
            self.error(node, key, f"name at least one rule: {', '.join(fields)}")
            return None
        allowed = denied = None
        if "allowed_models" in entries:
            allowed = self.patterns(entries["allowed_models"][1], f"{key}.allowed_models")
        if "denied_models" in entries:
            denied = self.patterns(entries["denied_models"][1], f"{key}.denied_models")
        if allowed and denied:
            both = {p.text for p in allowed} & {p.text for p in denied}
            if both:
                self.error(
                    entries["denied_models"][1],
                    f"{key}.denied_models",
                    f"{', '.join(sorted(both))} both allowed and denied",
                )
        max_tokens = max_cost = None
        if "max_tokens" in entries:
            max_tokens = self.count(entries["max_tokens"][1], f"{key}.max_tokens")
        if "max_cost_usd" in entries:
            max_cost = self.usd(entries["max_cost_usd"][1], f"{key}.max_cost_usd")
        return CallRules(allowed, denied, max_tokens, max_cost)

    # --- values ---------------------------------------------------------------------------------
    def text(self, node: Node, key: str) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            if isinstance(node, ScalarNode) and node.tag != "tag:yaml.org,2002:null":
                return str(node.value)  # `model: 4` names a model "4"
            self.error(node, key, "must be a text value")
            return None
        return str(node.value)

    def usd(self, node: Node, key: str) -> int | None:
        """A positive USD amount as whole nano-USD, read from its text."""
        raw = node.value if isinstance(node, ScalarNode) else None
        try:
            amount = Decimal(str(raw).replace("_", "")) if isinstance(raw, str) else None
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite():
            self.error(node, key, "must be an amount of USD, e.g. 25 or 0.50")
            return None
        if amount <= 0:
            self.error(node, key, f"must be greater than 0, got {raw}")
            return None
        if amount > _MAX_USD:
            self.error(node, key, f"at most {_MAX_USD} USD")
            return None
        nanos = amount * _NANO
        if nanos != nanos.to_integral_value():
            self.error(node, key, f"{raw} is finer than a nano-USD (9 decimal places)")
            return None
        return int(nanos)

    def count(self, node: Node, key: str) -> int | None:
        raw = node.value if isinstance(node, ScalarNode) else None
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:int":
            self.error(node, key, "must be a whole number")
            return None
        value = int(SafeConstructor().construct_yaml_int(node))
        if value <= 0:
            self.error(node, key, f"must be greater than 0, got {raw}")
            return None
        if value > _MAX_TOKENS:
            self.error(node, key, f"at most {_MAX_TOKENS}")
            return None
        return value

    def percent(self, node: Node, key: str) -> int | None:
        raw = str(node.value).strip() if isinstance(node, ScalarNode) else ""
        text = raw.removesuffix("%").strip()
        if not text.isdigit() or not 1 <= int(text) <= 100:
            self.error(node, key, f"a whole percentage from 1 to 100 (e.g. 80), got {raw!r}")
            return None
        return int(text)


def describe(policies: PolicySet) -> list[dict[str, Any]]:
    """Each policy's parsed form, for ``otel-llm policies check`` and the API."""
    return [describe_policy(policy) for policy in policies.policies]


def describe_policy(policy: Policy) -> dict[str, Any]:
    calls = policy.calls
    rules: dict[str, Any] = {}
    if calls.allowed_models is not None:
        rules["allowed_models"] = [p.text for p in calls.allowed_models]
    if calls.denied_models is not None:
        rules["denied_models"] = [p.text for p in calls.denied_models]
    if calls.max_tokens is not None:
        rules["max_tokens"] = calls.max_tokens
    if calls.max_cost_nanos is not None:
        rules["max_cost_usd"] = Decimal(calls.max_cost_nanos) / _NANO
    return {
        "name": policy.name,
        "line": policy.line,
        "scope": policy.scope.describe() or "*",
        "action": policy.action,
        "budgets": [
            {
                "name": rule.name,
                "window": rule.window.name,
                "usd": Decimal(rule.usd_nanos) / _NANO if rule.usd_nanos is not None else None,
                "tokens": rule.tokens,
                "warn_at": rule.warn_percent,
            }
            for rule in policy.budgets
        ],
        "calls": rules,
    }
