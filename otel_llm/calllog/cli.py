"""``otel-llm calls``: read the call log from a store or a running query API, serve that API,
apply retention, make API keys.

    otel-llm calls list --model gpt-4o --status error --since 24h
    otel-llm calls list --sort cost --limit 20 --api http://127.0.0.1:9466 --json
    otel-llm calls show <id> --details
    otel-llm calls count --project checkout
    otel-llm calls stats --group-by model --since 2025-01-01
    otel-llm calls traces --sort cost --since 24h   # traces with LLM calls, most expensive first
    otel-llm calls trace <trace id>             # one trace's tree, with cost per node
    otel-llm calls serve                      # the query API alone
    otel-llm calls prune                      # retention, once
    otel-llm calls keygen --name dashboards   # a new key and its line for the key file
    otel-llm calls dead-letters               # calls the store could not take, and why
    otel-llm calls replay-dead-letters        # store them again after a fix

This module is the argument table; the filter flags come from the catalogue (``flags.py``) and
are turned into the API's own parameters, checked by the same code (``params.py``), so a store
and an API answer the same flags with the same messages. What the subcommands do is in
``commands.py``, loaded only when one runs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, get_args

from otel_llm._cli_types import int_between
from otel_llm.calllog.catalogue import SORTS
from otel_llm.calllog.flags import add_filter_flags
from otel_llm.calllog.query import MAX_LIMIT, MAX_OFFSET, StatsGroup

Argument = tuple[tuple[str, ...], dict[str, Any]]


def _arg(*names: str, **options: Any) -> Argument:
    return names, options


_STORE = _arg("--store", metavar="PATH_OR_URL", help="default: call_log_store")
_DAYS = int_between(1, 100_000)


@dataclass(frozen=True)
class _Either:
    """Arguments of which at most one may be given."""

    arguments: tuple[Argument, ...]


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    parents: tuple[str, ...] = ()
    """Shared argument sets: "source" (where the calls are), "filters", "stats filters"."""
    arguments: tuple[Argument | _Either, ...] = ()
    description: str | None = None


_COMMANDS = (
    _Command(
        "list",
        "list calls, newest first (filters, sort, page)",
        ("source", "filters"),
        (
            _arg("--sort", choices=tuple(SORTS), help="sort key (default created_at)"),
            _Either(
                (
                    _arg(
                        "--desc",
                        dest="order",
                        action="store_const",
                        const="desc",
                        help="largest first (default)",
                    ),
                    _arg(
                        "--asc",
                        dest="order",
                        action="store_const",
                        const="asc",
                        help="smallest first",
                    ),
                )
            ),
            _arg(
                "--limit",
                type=int_between(1, MAX_LIMIT),
                metavar="N",
                help=f"calls per page, 1-{MAX_LIMIT} (default 10)",
            ),
            _arg("--offset", type=int_between(0, MAX_OFFSET), metavar="N", help="skip N calls"),
            _arg("--select", metavar="FIELDS", help="comma-separated fields to show"),
        ),
    ),
    _Command(
        "show",
        "one call, every field",
        ("source",),
        (
            _arg("id", help="the call id (<trace id>-<span id>)"),
            _arg(
                "--details",
                action="store_true",
                help="also its captured prompt and response preview",
            ),
        ),
    ),
    _Command("count", "count calls", ("source", "filters")),
    _Command(
        "traces",
        "traces with LLM calls: total cost, calls, tokens, services, agents (newest first)",
        ("source", "filters"),
        (
            _arg("--agent", metavar="NAME", help="only traces with a call under this agent"),
            _arg("--conversation", metavar="ID", help="only traces of this conversation"),
            _arg("--sort", choices=("cost", "time", "calls"), help="sort key (default time)"),
            _Either(
                (
                    _arg("--desc", dest="order", action="store_const", const="desc"),
                    _arg("--asc", dest="order", action="store_const", const="asc"),
                )
            ),
            _arg("--limit", type=int_between(1, MAX_LIMIT), metavar="N", help="traces per page"),
            _arg("--offset", type=int_between(0, MAX_OFFSET), metavar="N", help="skip N traces"),
        ),
        description=(
            "A trace is listed when one of its calls matches the filters; its totals are those "
            "of all its calls. --min-cost/--max-cost bound the trace's total cost."
        ),
    ),
    _Command(
        "trace",
        "one trace as a tree: its calls under their agents and tools, with cost per node",
        ("source",),
        (_arg("trace_id", help="the trace id (32 hex digits)"),),
    ),
    _Command(
        "stats",
        "usage statistics: requests, tokens, cost, latency percentiles, per day",
        ("source", "stats filters"),
        (_arg("--group-by", choices=get_args(StatsGroup), help="also per group"),),
    ),
    _Command(
        "serve",
        "serve the query API (read-only, API keys, rate limits)",
        arguments=(
            _STORE,
            _arg(
                "--endpoint",
                metavar="HOST:PORT",
                help="address to bind (default: call_log_api_endpoint, 127.0.0.1:9466; "
                "port 0: any)",
            ),
            _arg("--api-keys-file", metavar="PATH", help="YAML/JSON key file (see `calls keygen`)"),
        ),
        description=(
            "Serve the call log's HTTP JSON API under /api/v1/calls until interrupted. Keys "
            "come from --api-keys-file or the call_log_api_keys_file / call_log_api_keys "
            "settings; rate limits from the call_log_rate_limit_* settings."
        ),
    ),
    _Command(
        "prune",
        "apply retention once: drop old content and records, keep daily aggregates",
        arguments=(
            _STORE,
            _arg(
                "--content-days",
                type=_DAYS,
                metavar="N",
                help="keep prompts/responses N days (default: call_log_content_days, 30)",
            ),
            _arg(
                "--record-days",
                type=_DAYS,
                metavar="N",
                help="keep call records N days (default: call_log_record_days, 90)",
            ),
            _arg("--json", action="store_true", help="print JSON"),
        ),
    ),
    _Command(
        "dead-letters",
        "calls the store could not take (quarantined), newest first, with the error",
        arguments=(
            _STORE,
            _arg(
                "--limit",
                type=int_between(1, 100_000),
                default=20,
                metavar="N",
                help="show at most N (default 20)",
            ),
            _arg("--json", action="store_true", help="print JSON (the records too)"),
        ),
        description=(
            "A call whose write failed for a reason of its own (a value the database refused, "
            "a constraint, a start time outside [2000-01-01, now + 1 day]) is kept in the "
            "store's dead letters, not dropped with its batch. After a fix, "
            "`otel-llm calls replay-dead-letters` stores them."
        ),
    ),
    _Command(
        "replay-dead-letters",
        "re-validate and store the quarantined calls; those stored leave the dead letters",
        arguments=(_STORE, _arg("--json", action="store_true", help="print JSON")),
    ),
    _Command(
        "keygen",
        "make a new API key and print its entry for the key file",
        arguments=(
            _arg("--name", default="reader", help="the key's name (default: reader)"),
            _arg("--projects", metavar="A,B", help="projects the key may read (default: all)"),
        ),
    ),
)


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``calls`` and its subcommands on the ``otel-llm`` subparsers."""
    calls: argparse.ArgumentParser = commands.add_parser(
        "calls",
        help="query the LLM call log (list, show, count, stats), serve its API, prune it",
        description=(
            "Every priced LLM call, stored by the collector or the call-log exporter: list and "
            "filter them, show one, count, usage statistics; serve the query API; apply "
            "retention. Reads a store (--store) or a running API (--api)."
        ),
    )
    actions = calls.add_subparsers(dest="calls_command", metavar="ACTION", required=True)
    parents = _parents()
    for command in _COMMANDS:
        parser = actions.add_parser(
            command.name,
            parents=[parents[name] for name in command.parents],
            help=command.help,
            description=command.description,
        )
        for argument in command.arguments:
            if isinstance(argument, _Either):
                group = parser.add_mutually_exclusive_group()
                for names, options in argument.arguments:
                    group.add_argument(*names, **options)
            else:
                names, options = argument
                parser.add_argument(*names, **options)
        parser.set_defaults(handler=_run)
    return calls


def _parents() -> dict[str, argparse.ArgumentParser]:
    source = argparse.ArgumentParser(add_help=False)
    where = source.add_argument_group("where the calls are")
    where.add_argument(
        "--store",
        metavar="PATH_OR_URL",
        help="SQLite file or postgresql:// URL (default: the call_log_store setting)",
    )
    where.add_argument("--api", metavar="URL", help="a running query API, e.g. http://host:9466")
    where.add_argument(
        "--api-key", metavar="KEY", help="key for --api (default: OTEL_LLM_CALL_LOG_CLIENT_KEY)"
    )
    source.add_argument("--json", action="store_true", help="print JSON instead of a table")
    filters = argparse.ArgumentParser(add_help=False)
    add_filter_flags(filters.add_argument_group("filters"), stats=False)
    stats_filters = argparse.ArgumentParser(add_help=False)
    add_filter_flags(stats_filters.add_argument_group("filters"), stats=True)
    return {"source": source, "filters": filters, "stats filters": stats_filters}


def _run(args: argparse.Namespace) -> int:
    # The subcommands need the stores, the query API and their drivers: loaded only when one
    # runs, so that `otel-llm --version` and the other commands do not pay for them.
    from otel_llm.calllog import commands  # noqa: PLC0415

    return commands.HANDLERS[args.calls_command](args)
