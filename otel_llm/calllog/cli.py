"""``otel-llm calls``: read the call log from a store or a running query API, serve that API,
apply retention, make API keys.

    otel-llm calls list --model gpt-4o --status error --since 24h
    otel-llm calls list --sort cost --limit 20 --api http://127.0.0.1:9466 --json
    otel-llm calls show <id> --details
    otel-llm calls count --project checkout
    otel-llm calls stats --group-by model --since 2025-01-01
    otel-llm calls serve                      # the query API alone
    otel-llm calls prune                      # retention, once
    otel-llm calls keygen --name dashboards   # a new key and its line for the key file

Filters are turned into the API's own parameters and checked by the same code
(``params.py``), so a store and an API answer the same flags with the same messages. Nothing
heavy is imported until a subcommand runs.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from otel_llm._cli_types import CommandError, int_between
from otel_llm.calllog import tables
from otel_llm.calllog.query import MAX_LIMIT, SortKey, StatsGroup

_TEXT_FLAGS = (
    ("provider", "provider, e.g. openai"),
    ("model", "model (the requested one)"),
    ("operation", "operation, e.g. chat"),
    ("service", "service.name of the application"),
    ("feature", "llm_context feature"),
    ("user", "llm_context user id"),
    ("project", "llm_context project id"),
    ("api-key-id", "llm_context api key id"),
)
_STATS_FLAGS = {"provider", "model", "operation", "service", "feature", "project"}
_RELATIVE = re.compile(r"(\d+)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


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

    source = argparse.ArgumentParser(add_help=False)
    where = source.add_argument_group("where the calls are")
    where.add_argument(
        "--store",
        metavar="PATH_OR_URL",
        help="SQLite file or postgresql:// URL (default: the call_log_store setting)",
    )
    where.add_argument("--api", metavar="URL", help="a running query API, e.g. http://host:9466")
    where.add_argument(
        "--api-key",
        metavar="KEY",
        help="key for --api (default: OTEL_LLM_CALL_LOG_CLIENT_KEY)",
    )
    source.add_argument("--json", action="store_true", help="print JSON instead of a table")

    filters = argparse.ArgumentParser(add_help=False)
    _filter_flags(filters.add_argument_group("filters"), stats=False)
    stats_filters = argparse.ArgumentParser(add_help=False)
    _filter_flags(stats_filters.add_argument_group("filters"), stats=True)

    listing = actions.add_parser(
        "list", parents=[source, filters], help="list calls, newest first (filters, sort, page)"
    )
    listing.add_argument("--sort", choices=get_args(SortKey), help="sort key (default created_at)")
    order = listing.add_mutually_exclusive_group()
    order.add_argument(
        "--desc", dest="order", action="store_const", const="desc", help="largest first (default)"
    )
    order.add_argument(
        "--asc", dest="order", action="store_const", const="asc", help="smallest first"
    )
    listing.add_argument(
        "--limit",
        type=int_between(1, MAX_LIMIT),
        metavar="N",
        help=f"calls per page, 1-{MAX_LIMIT} (default 10)",
    )
    listing.add_argument("--offset", type=int_between(0, 10**9), metavar="N", help="skip N calls")
    listing.add_argument("--select", metavar="FIELDS", help="comma-separated fields to show")
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", parents=[source], help="one call, every field")
    show.add_argument("id", help="the call id (<trace id>-<span id>)")
    show.add_argument(
        "--details", action="store_true", help="also its captured prompt and response preview"
    )
    show.set_defaults(handler=_show)

    count = actions.add_parser("count", parents=[source, filters], help="count calls")
    count.set_defaults(handler=_count)

    stats = actions.add_parser(
        "stats",
        parents=[source, stats_filters],
        help="usage statistics: requests, tokens, cost, latency percentiles, per day",
    )
    stats.add_argument("--group-by", choices=get_args(StatsGroup), help="also per group")
    stats.set_defaults(handler=_stats)

    serve = actions.add_parser(
        "serve",
        help="serve the query API (read-only, API keys, rate limits)",
        description=(
            "Serve the call log's HTTP JSON API under /api/v1/calls until interrupted. Keys "
            "come from --api-keys-file or the call_log_api_keys_file / call_log_api_keys "
            "settings; rate limits from the call_log_rate_limit_* settings."
        ),
    )
    serve.add_argument("--store", metavar="PATH_OR_URL", help="default: call_log_store")
    serve.add_argument(
        "--endpoint",
        metavar="HOST:PORT",
        help="address to bind (default: call_log_api_endpoint, 127.0.0.1:9466; port 0: any)",
    )
    serve.add_argument(
        "--api-keys-file", metavar="PATH", help="YAML/JSON key file (see `calls keygen`)"
    )
    serve.set_defaults(handler=_serve)

    prune = actions.add_parser(
        "prune",
        help="apply retention once: drop old content and records, keep daily aggregates",
    )
    prune.add_argument("--store", metavar="PATH_OR_URL", help="default: call_log_store")
    prune.add_argument(
        "--content-days",
        type=int_between(1, 100_000),
        metavar="N",
        help="keep prompts/responses N days (default: call_log_content_days, 30)",
    )
    prune.add_argument(
        "--record-days",
        type=int_between(1, 100_000),
        metavar="N",
        help="keep call records N days (default: call_log_record_days, 90)",
    )
    prune.add_argument("--json", action="store_true", help="print JSON")
    prune.set_defaults(handler=_prune)

    keygen = actions.add_parser(
        "keygen", help="make a new API key and print its entry for the key file"
    )
    keygen.add_argument("--name", default="reader", help="the key's name (default: reader)")
    keygen.add_argument(
        "--projects", metavar="A,B", help="projects the key may read (default: all)"
    )
    keygen.set_defaults(handler=_keygen)
    return calls


def _filter_flags(group: Any, *, stats: bool) -> None:
    for flag, help_text in _TEXT_FLAGS:
        if not stats or flag in _STATS_FLAGS:
            group.add_argument(f"--{flag}", metavar="NAME", help=f"only this {help_text}")
    time_help = "ISO date/date-time (2025-01-10, 2025-01-10T12:00Z) or an age: 30m, 24h, 7d, 2w"
    group.add_argument("--since", metavar="WHEN", help=f"calls at or after WHEN: {time_help}")
    group.add_argument(
        "--until", metavar="WHEN", help="calls before WHEN (a bare date: through that day)"
    )
    if stats:
        return
    group.add_argument("--status", choices=("success", "error"), help="only these calls")
    for name, unit in (("latency", "MS"), ("cost", "USD"), ("tokens", "N")):
        group.add_argument(f"--min-{name}", metavar=unit, help=f"{name} at least")
        group.add_argument(f"--max-{name}", metavar=unit, help=f"{name} at most")


# --- the parameters, as the API names them ----------------------------------------------------


def _filter_params(args: argparse.Namespace) -> dict[str, str]:
    given: dict[str, str] = {}
    for flag, _ in _TEXT_FLAGS:
        value = getattr(args, flag.replace("-", "_"), None)
        if value is not None:
            given[flag.replace("-", "_")] = value
    for flag, name in (("since", "start_date"), ("until", "end_date")):
        if getattr(args, flag, None) is not None:
            given[name] = _when(getattr(args, flag))
    for name in (
        "status",
        "min_latency",
        "max_latency",
        "min_cost",
        "max_cost",
        "min_tokens",
        "max_tokens",
    ):
        value = getattr(args, name, None)
        if value is not None:
            given[name] = value
    return given


def _when(text: str) -> str:
    """An age (``24h``) as the ISO date-time that long ago; anything else as given."""
    match = _RELATIVE.fullmatch(text.strip().lower())
    if match is None:
        return text
    ago = timedelta(**{_UNITS[match[2]]: int(match[1])})
    return (datetime.now(UTC) - ago).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- the subcommands --------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    query = _filter_params(args)
    for name in ("sort", "order", "limit", "offset", "select"):
        value = getattr(args, name)
        if value is not None:
            query[name] = str(value)
    with _source(args) as source:
        answer = source.ask("", query)
    if args.json:
        return tables.print_json(answer)
    calls = answer["calls"]
    columns = _list_columns(args.select, calls)
    print(
        tables.table(
            columns,
            [[tables.cell(column, call.get(column)) for column in columns] for call in calls],
        )
    )
    page = answer["pagination"]
    shown = f"{page['offset'] + 1}-{page['offset'] + len(calls)}" if calls else "none"
    more = f"; next: --offset {page['offset'] + len(calls)}" if page["hasMore"] else ""
    print(f"\n{shown} of {page['total']} calls{more}")
    return 0


_LIST_COLUMNS = (
    "created_at",
    "provider",
    "model",
    "status",
    "total_tokens",
    "cost",
    "latency_ms",
    "feature",
    "id",
)


def _list_columns(select: str | None, calls: Sequence[Mapping[str, Any]]) -> list[str]:
    if select is None:
        return list(_LIST_COLUMNS)
    # The API's order: the selected fields (the id first), as the answer has them.
    return list(calls[0]) if calls else ["id", *select.split(",")]


def _show(args: argparse.Namespace) -> int:
    with _source(args) as source:
        call = source.call(args.id)
        details = source.call(args.id, details=True) if args.details else None
    if args.json:
        return tables.print_json({**call, "details": details} if details is not None else call)
    print(
        tables.pairs([(name, tables.cell(name, value, wide=True)) for name, value in call.items()])
    )
    if details is not None:
        for name in ("request_prompt", "response_preview"):
            print(f"\n{name}:")
            print(details.get(name) or "(not captured, or no longer kept)")
    return 0


def _count(args: argparse.Namespace) -> int:
    with _source(args) as source:
        answer = source.ask("/count", _filter_params(args))
    return tables.print_json(answer) if args.json else tables.print_line(str(answer["count"]))


def _stats(args: argparse.Namespace) -> int:
    query = _filter_params(args)
    if args.group_by is not None:
        query["group_by"] = args.group_by
    with _source(args) as source:
        answer = source.ask("/stats", query)
    if args.json:
        return tables.print_json(answer)
    start, end = tables.cell("start", answer["start"]), tables.cell("end", answer["end"])
    print(f"from {start} to {end} (UTC)\n")
    print(tables.pairs(tables.flatten(answer["stats"])))
    if answer.get("groups"):
        columns = ["group", *_GROUP_COLUMNS]
        rows = [[tables.cell(c, group.get(c)) for c in columns] for group in answer["groups"]]
        print(f"\nby {answer['group_by']}:")
        print(tables.table(columns, rows))
    if answer.get("by_day"):
        columns = ["date", "requests", "tokens", "cost", "error_rate", "cache_hit_rate", "models"]
        rows = [[tables.cell(c, day.get(c)) for c in columns] for day in answer["by_day"]]
        print("\nby day:")
        print(tables.table(columns, rows))
    return 0


_GROUP_COLUMNS = (
    "total_requests",
    "error_rate",
    "total_tokens",
    "total_cost",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
)


def _serve(args: argparse.Namespace) -> int:
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from otel_llm import settings  # noqa: PLC0415
    from otel_llm.calllog.api import CallLogAPI  # noqa: PLC0415
    from otel_llm.calllog.auth import KeyRing  # noqa: PLC0415

    endpoint = settings.CALL_LOG_API_ENDPOINT.resolve(args.endpoint)
    if endpoint is None:
        raise CommandError("call_log_api_endpoint is 'none': give --endpoint HOST:PORT")
    if args.endpoint is not None and endpoint != args.endpoint.strip():
        raise CommandError(f"--endpoint must be host:port, got {args.endpoint!r}")
    try:
        keys = KeyRing.from_settings(args.api_keys_file)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not len(keys):
        raise CommandError(
            "no API keys: give --api-keys-file PATH or set OTEL_LLM_CALL_LOG_API_KEYS_FILE "
            "(make a key with `otel-llm calls keygen`)"
        )
    store = _open_existing(args.store)
    stop = threading.Event()
    try:
        api = CallLogAPI.from_settings(store, endpoint=endpoint, keys=keys)
        try:
            api.start()
        except OSError as exc:
            raise CommandError(f"cannot serve on {endpoint}: {exc.strerror}") from None
        if threading.current_thread() is threading.main_thread():
            # A service manager's stop (SIGTERM) ends the server as Ctrl-C does: store closed.
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print(
            f"serving the call log on {api.url} ({len(keys)} API keys); Ctrl-C stops",
            flush=True,
        )
        try:
            stop.wait()
        finally:
            api.stop()
    finally:
        store.close()
    return 0


def _prune(args: argparse.Namespace) -> int:
    from otel_llm import settings  # noqa: PLC0415

    content_days = settings.CALL_LOG_CONTENT_DAYS.resolve(args.content_days)
    record_days = settings.CALL_LOG_RECORD_DAYS.resolve(args.record_days)
    from otel_llm.calllog.retention import prune  # noqa: PLC0415

    store = _open_existing(args.store)
    try:
        result = prune(store, content_days=content_days, record_days=record_days)
    finally:
        store.close()
    from otel_llm.calllog.api import jsonable  # noqa: PLC0415

    answer = jsonable(
        {
            "content_deleted": result.content_deleted,
            "records_deleted": result.records_deleted,
            "content_cutoff": result.content_cutoff,
            "records_cutoff": result.records_cutoff,
        }
    )
    if args.json:
        return tables.print_json(answer)
    print(
        f"deleted the content of {result.content_deleted} calls (older than "
        f"{content_days} days) and {result.records_deleted} call records (older than "
        f"{record_days} days); daily aggregates kept"
    )
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from otel_llm.calllog.auth import hash_key, new_key  # noqa: PLC0415

    key = new_key()
    projects = [p.strip() for p in (args.projects or "").split(",") if p.strip()]
    print(f"key (give it to the client; it is not stored): {key}\n")
    print("entry for the API key file (keys:):")
    print(f"  - name: {json.dumps(args.name)}")
    print(f"    sha256: {hash_key(key)}")
    if projects:
        print(f"    projects: {json.dumps(projects)}")
    return 0


def _open_existing(store: str | None) -> Any:
    from otel_llm.calllog.source import open_existing  # noqa: PLC0415

    return open_existing(store)


def _source(args: argparse.Namespace) -> Any:
    from otel_llm.calllog.source import CallSource  # noqa: PLC0415 - the store, the HTTP client

    return CallSource(store=args.store, api=args.api, api_key=args.api_key)
