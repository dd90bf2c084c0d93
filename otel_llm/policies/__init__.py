"""Budgets and policies: spend limits per scope, per-call rules, their states and violations.

``load.py`` reads and validates a policy file into a ``PolicySet`` (``model.py``);
``engine.PolicyEngine`` evaluates calls against it, keeping each budget's spend exact per
window (``windows.py``); ``watch.PolicyFile`` reloads the file when it changes. The collector
hooks the engine in (``otel_llm/collector/policies.py``); the call log serves its states
(``/api/v1/policies``) and reads past spend back after a restart. Only ``cli.py`` (the
``otel-llm policies`` command) sits above: it is part of the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_llm._lazy import lazy_attributes

if TYPE_CHECKING:
    from otel_llm.policies.calls import PolicyCall
    from otel_llm.policies.engine import PolicyEngine, SpendHistory
    from otel_llm.policies.load import PolicyFileError, load_policies, parse_policies
    from otel_llm.policies.model import PolicySet
    from otel_llm.policies.watch import PolicyFile

__all__ = [
    "PolicyCall",
    "PolicyEngine",
    "PolicyFile",
    "PolicyFileError",
    "PolicySet",
    "SpendHistory",
    "load_policies",
    "parse_policies",
]

# Loaded on first use: `otel-llm --version` imports this package for its subcommand.
__getattr__ = lazy_attributes(
    __name__,
    {
        "PolicyCall": "otel_llm.policies.calls",
        "PolicyEngine": "otel_llm.policies.engine",
        "SpendHistory": "otel_llm.policies.engine",
        "PolicyFileError": "otel_llm.policies.load",
        "load_policies": "otel_llm.policies.load",
        "parse_policies": "otel_llm.policies.load",
        "PolicySet": "otel_llm.policies.model",
        "PolicyFile": "otel_llm.policies.watch",
    },
)
