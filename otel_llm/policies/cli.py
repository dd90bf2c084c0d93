"""``otel-llm policies``: check a policy file, show the budgets' states.

    otel-llm policies check policies.yaml          # validate; print each policy's scope and rules
    otel-llm policies status --api http://127.0.0.1:9466 --api-key KEY   # the collector's states
    otel-llm policies status --policies policies.yaml --store calls.db  # computed from a store

``status`` asks a running collector's API (the states it keeps, with the counts of violations,
alerts and blocks), or computes the budgets' spend from a call-log store the way a collector
does after a restart (no counts: those are the collector's). Part of the command line (the
``cli`` layer): it may use the call log.
"""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from typing import Any

from otel_llm._cli_types import CommandError


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``policies`` on the ``otel-llm`` subparsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "policies",
        help="check a budgets-and-policies file, show the budgets' states",
        description="Budgets and policies (README, 'Budgets and policies').",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="validate a policy file and print what it says (exit 1 if invalid)"
    )
    check.add_argument("file", metavar="FILE")
    check.add_argument("--json", action="store_true", help="print the parsed policies as JSON")
    check.set_defaults(handler=_check)
    status = actions.add_parser(
        "status", help="the budgets' states: from a collector's API, or computed from a store"
    )
    status.add_argument("--api", metavar="URL", help="a collector's call-log API")
    status.add_argument("--api-key", metavar="KEY", help="default: call_log_client_key")
    status.add_argument(
        "--policies", metavar="FILE", help="with --store: the policy file (default: policies_file)"
    )
    status.add_argument("--store", metavar="PATH_OR_URL", help="default: call_log_store")
    status.add_argument("--json", action="store_true", help="the API's JSON answer")
    status.set_defaults(handler=_status)
    return parser


def _check(args: argparse.Namespace) -> int:
    from otel_llm.policies.load import PolicyFileError, describe, load_policies  # noqa: PLC0415

    try:
        policies = load_policies(args.file)
    except PolicyFileError as exc:
        raise CommandError(str(exc)) from None
    described = describe(policies)
    if args.json:
        print(json.dumps(described, indent=2, default=_number))
        return 0
    print(f"{args.file}: {len(described)} policies, valid")
    for policy in described:
        scope = policy["scope"]
        shown = (
            "every call"
            if scope == "*"
            else "; ".join(f"{field} {' | '.join(values)}" for field, values in scope.items())
        )
        print(f"\n{policy['name']} (line {policy['line']}, action {policy['action']})")
        print(f"  scope: {shown}")
        for budget in policy["budgets"]:
            limits = [f"${budget['usd']}" if budget["usd"] is not None else None]
            limits.append(f"{budget['tokens']} tokens" if budget["tokens"] is not None else None)
            warn = f", warning at {budget['warn_at']}%" if budget["warn_at"] else ""
            per = " and ".join(limit for limit in limits if limit)
            print(f"  budget {budget['name']}: {per} per {budget['window']}{warn}")
        for rule, value in policy["calls"].items():
            print(f"  call rule {rule}: {value}")
    return 0


def _status(args: argparse.Namespace) -> int:
    # The call log (and its SQL) loads only when the command runs.
    from otel_llm.calllog.source import CallSource  # noqa: PLC0415

    if args.api is not None:
        if args.store is not None or args.policies is not None:
            raise CommandError("give --api, or --store and --policies, not both")
        with CallSource(api=args.api, api_key=args.api_key) as source:
            answer = source.policies({})
    else:
        answer = _from_store(args.store, args.policies)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(_table(answer["policies"]))
    return 0


def _from_store(store_url: str | None, path: str | None) -> dict[str, Any]:
    from otel_llm import settings  # noqa: PLC0415
    from otel_llm.calllog.app import jsonable  # noqa: PLC0415
    from otel_llm.calllog.policyapi import answer  # noqa: PLC0415
    from otel_llm.calllog.policyspend import StoreSpendHistory  # noqa: PLC0415
    from otel_llm.calllog.source import open_existing  # noqa: PLC0415
    from otel_llm.policies import PolicyFile, PolicyFileError  # noqa: PLC0415

    path = path or settings.POLICIES_FILE.resolve()
    if path is None:
        raise CommandError("give --policies FILE (or set OTEL_LLM_POLICIES_FILE), or --api URL")
    try:
        file = PolicyFile.open(path)
    except PolicyFileError as exc:
        raise CommandError(str(exc)) from None
    store = open_existing(store_url)
    try:
        file.engine.recover(StoreSpendHistory(store))
    finally:
        store.close()
    return jsonable(answer(file, None, None, {}))  # type: ignore[no-any-return]


def _table(policies: list[dict[str, Any]]) -> str:
    from otel_llm.calllog.tables import table  # noqa: PLC0415

    rows: list[list[str]] = []
    for policy in policies:
        budgets = policy["budgets"] or [None]
        for budget in budgets:
            spent = limit = "-"
            resets = "-"
            if budget is not None:
                spent, limit = _amounts(budget)
                resets = budget["resets_at"]
            rows.append(
                [
                    policy["name"],
                    policy["action"],
                    budget["state"] if budget is not None else policy["state"],
                    budget["name"] if budget is not None else "-",
                    spent,
                    limit,
                    resets,
                    str(policy["violations"]),
                    str(policy["alerts"]),
                    str(policy["blocks"]),
                ]
            )
    if not rows:
        return "(no policies)"
    columns = ["policy", "action", "state", "budget", "spent", "limit", "resets at"]
    return table([*columns, "violations", "alerts", "blocks"], rows)


def _amounts(budget: dict[str, Any]) -> tuple[str, str]:
    spent: list[str] = []
    limit: list[str] = []
    if budget["limit_nanos"] is not None:
        spent.append(f"${Decimal(budget['spent_nanos']).scaleb(-9).normalize():f}")
        limit.append(f"${Decimal(budget['limit_nanos']).scaleb(-9).normalize():f}")
    if budget["limit_tokens"] is not None:
        spent.append(f"{budget['spent_tokens']} tok")
        limit.append(f"{budget['limit_tokens']} tok")
    return " + ".join(spent), " + ".join(limit)


def _number(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
