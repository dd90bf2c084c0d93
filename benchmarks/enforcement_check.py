"""The application's policy check before a call (``policy_enforce=block``), side by side with
enforcement off, in one run (issue 14: < 1 µs per call with a cached state).

Each variant runs what ``start_call`` adds to an instrumented call -- read
``enforcement.active``, and when set, ``Enforcer.check(provider, model)`` -- in interleaved
rounds (A B C ..., then reversed) so drift on a shared machine spreads over all of them. The
state is one poll's worth of 1,000 block policies (960 per project, 30 per model glob with
denied models, 10 over every call), its per-key outcomes cached as after the first call.

Variants:

* ``off``: no enforcement (the default): one attribute read;
* ``on``: a call in no blocked scope, no ``llm_context``;
* ``on-context``: the same inside ``llm_context(project_id=..., user_id=...)``;
* ``on-blocked``: a call of an exceeded budget's scope (the reset time compared with the clock).

    .venv/bin/python benchmarks/enforcement_check.py
    .venv/bin/python benchmarks/enforcement_check.py --rounds 9 --calls 200000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_llm import enforcement, llm_context  # noqa: E402 - after the path


def _answer() -> dict[str, object]:
    policies: list[dict[str, object]] = [
        {
            "name": f"project-{i}",
            "scope": {"project": [f"project-{i}"]},
            "blocked": i == 7,
            "blocked_until": "2999-01-01T00:00:00.000000Z" if i == 7 else None,
            "blocking": ["day"] if i == 7 else [],
            "calls": {},
        }
        for i in range(960)
    ]
    policies += [
        {
            "name": f"model-{i}",
            "scope": {"model": [f"family-{i}-*"]},
            "calls": {"denied_models": ["x"]},
        }
        for i in range(30)
    ]
    policies += [{"name": f"all-{i}", "scope": "*", "calls": {}} for i in range(10)]
    return {"revision": 1, "policies": policies}


def _timed(check: Callable[[], object], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        check()
    return (time.perf_counter_ns() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100_000)
    options = parser.parse_args()

    enforcer = enforcement.Enforcer("shop-api")
    enforcer.update(_answer())

    def hook() -> object:  # what start_call and llm_call run
        active = enforcement.active
        return None if active is None else active.check("openai", "gpt-4o-mini")

    def off() -> object:
        enforcement.active = None
        return hook

    def on() -> object:
        enforcement.active = enforcer
        return hook

    variants: dict[str, tuple[Callable[[], object], dict[str, str] | None]] = {
        "off": (off, None),
        "on": (on, None),
        "on-context": (on, {"project_id": "project-3", "user_id": "u-1"}),
        "on-blocked": (on, {"project_id": "project-7"}),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(options.rounds):
        order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        for name in order:
            setup, context = variants[name]
            setup()
            if context is None:
                hook()
                results[name].append(_timed(hook, options.calls))
            else:
                with llm_context(**context):  # type: ignore[arg-type]
                    hook()
                    results[name].append(_timed(hook, options.calls))
    enforcement.active = None
    assert enforcer.blocked, "the blocked variant blocked nothing"

    base = statistics.median(results["off"])
    print(f"{'variant':<12} {'ns/check':>9} {'added ns':>9} {'x off':>7}")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:<12} {median:9.1f} {median - base:9.1f} {median / base:7.2f}")


if __name__ == "__main__":
    main()
