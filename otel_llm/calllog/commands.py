"""What each ``otel-llm calls`` subcommand does (``cli.py`` parses their arguments): ask a
store or a running query API, print a table or JSON; serve the API; prune; make a key.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from otel_llm import settings
from otel_llm._cli_types import CommandError
from otel_llm.calllog import tables
from otel_llm.calllog.api import CallLogAPI
from otel_llm.calllog.app import jsonable
from otel_llm.calllog.auth import KeyRing, hash_key, new_key
from otel_llm.calllog.flags import filter_params
from otel_llm.calllog.retention import prune
from otel_llm.calllog.source import CallSource, open_existing


def run_list(args: argparse.Namespace) -> int:
    query = filter_params(args)
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


def run_show(args: argparse.Namespace) -> int:
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


def run_traces(args: argparse.Namespace) -> int:
    query = filter_params(args)
    for name in ("agent", "conversation", "sort", "order", "limit", "offset"):
        value = getattr(args, name)
        if value is not None:
            query[name] = str(value)
    with _source(args) as source:
        answer = source.traces(query)
    if args.json:
        return tables.print_json(answer)
    traces = answer["data"]
    columns = list(_TRACE_COLUMNS)
    print(tables.table(columns, [[tables.cell(c, t.get(c)) for c in columns] for t in traces]))
    page = answer["pagination"]
    shown = f"{page['offset'] + 1}-{page['offset'] + len(traces)}" if traces else "none"
    more = f"; next: --offset {page['offset'] + len(traces)}" if page["hasMore"] else ""
    print(f"\n{shown} of {page['total']} traces{more}")
    return 0


_TRACE_COLUMNS = (
    "first_call_at",
    "root_span_name",
    "total_cost",
    "calls",
    "errors",
    "total_tokens",
    "services",
    "agents",
    "trace_id",
)


def run_trace(args: argparse.Namespace) -> int:
    with _source(args) as source:
        answer = source.trace(args.trace_id)
    if args.json:
        return tables.print_json(answer)
    summary = [
        (name, tables.cell(name, answer.get(name), wide=True))
        for name in (
            "trace_id",
            "root_span_name",
            "total_cost",
            "calls",
            "errors",
            "unpriced_calls",
            "input_tokens",
            "output_tokens",
            "services",
            "agents",
        )
    ]
    print(tables.pairs(summary))
    print()
    for line in tree_lines(answer["tree"]):
        print(line)
    return 0


def tree_lines(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """The tree as indented lines: each node's kind, name, own cost and its subtree's."""
    lines: list[str] = []
    stack = [(node, "", True) for node in reversed(nodes)]
    while stack:
        node, indent, last = stack.pop()
        branch = "└─ " if last else "├─ "
        label = f"[{node['kind']}] {node['name']}"
        if node.get("agent_name") and node["kind"] != "agent":
            label += f" (agent {node['agent_name']})"
        cost = f"subtree {tables.cell('cost', node.get('subtree_cost'))}"
        if node["kind"] == "llm_call":
            cost = f"cost {tables.cell('cost', node.get('cost'))}"
        elif node.get("subtree_calls"):
            calls = node["subtree_calls"]
            cost += f" in {calls} call{'' if calls == 1 else 's'}"
        lines.append(f"{indent}{branch}{label}  {cost}")
        children = node.get("children") or []
        deeper = indent + ("   " if last else "│  ")
        stack.extend((child, deeper, index == 0) for index, child in enumerate(reversed(children)))
    return lines


def run_count(args: argparse.Namespace) -> int:
    with _source(args) as source:
        answer = source.ask("/count", filter_params(args))
    return tables.print_json(answer) if args.json else tables.print_line(str(answer["count"]))


def run_stats(args: argparse.Namespace) -> int:
    query = filter_params(args)
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


def run_serve(args: argparse.Namespace) -> int:
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
    store = open_existing(args.store)
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
            f"serving the call log on {api.url} ({len(keys)} API keys), its page on "
            f"{api.page_url}; Ctrl-C stops",
            flush=True,
        )
        try:
            stop.wait()
        finally:
            api.stop()
    finally:
        store.close()
    return 0


def run_prune(args: argparse.Namespace) -> int:
    content_days = settings.CALL_LOG_CONTENT_DAYS.resolve(args.content_days)
    record_days = settings.CALL_LOG_RECORD_DAYS.resolve(args.record_days)
    store = open_existing(args.store)
    try:
        result = prune(store, content_days=content_days, record_days=record_days)
    finally:
        store.close()
    answer = jsonable(
        {
            "content_deleted": result.content_deleted,
            "records_deleted": result.records_deleted,
            "dead_letters_deleted": result.dead_letters_deleted,
            "content_cutoff": result.content_cutoff,
            "records_cutoff": result.records_cutoff,
        }
    )
    if args.json:
        return tables.print_json(answer)
    print(
        f"deleted the content of {result.content_deleted} calls (older than "
        f"{content_days} days), {result.records_deleted} call records and "
        f"{result.dead_letters_deleted} dead letters (older than {record_days} days); daily "
        "aggregates kept"
    )
    return 0


def run_dead_letters(args: argparse.Namespace) -> int:
    store = open_existing(args.store)
    try:
        total = store.dead_letter_count()
        letters = store.dead_letters(args.limit)
    finally:
        store.close()
    if args.json:
        return tables.print_json(
            jsonable({"total": total, "dead_letters": [letter.as_dict() for letter in letters]})
        )
    if not letters:
        return tables.print_line("no dead letters: every call was stored")
    columns = ["quarantined_at", "attempts", "id", "error"]
    rows = [
        [
            tables.cell("quarantined_at", letter.quarantined_at),
            str(letter.attempts),
            letter.id,
            _one_line(letter.error, 100),
        ]
        for letter in letters
    ]
    print(tables.table(columns, rows))
    print(
        f"\n{len(letters)} of {total} dead letters; after a fix: otel-llm calls replay-dead-letters"
    )
    return 0


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def run_replay_dead_letters(args: argparse.Namespace) -> int:
    store = open_existing(args.store)
    try:
        result = store.replay_dead_letters()
        left = store.dead_letter_count()
    finally:
        store.close()
    answer = {
        "stored": result.stored,
        "duplicates": result.duplicates,
        "failed": result.failed,
        "left": left,
    }
    if args.json:
        return tables.print_json(answer)
    print(
        f"stored {result.stored} calls ({result.duplicates} were stored already); "
        f"{result.failed} still failed; {left} dead letters left"
    )
    return 0 if not result.failed else 1


def run_keygen(args: argparse.Namespace) -> int:
    key = new_key()
    projects = [p.strip() for p in (args.projects or "").split(",") if p.strip()]
    print(f"key (give it to the client; it is not stored): {key}\n")
    print("entry for the API key file (keys:):")
    print(f"  - name: {json.dumps(args.name)}")
    print(f"    sha256: {hash_key(key)}")
    if projects:
        print(f"    projects: {json.dumps(projects)}")
    return 0


def _source(args: argparse.Namespace) -> CallSource:
    return CallSource(store=args.store, api=args.api, api_key=args.api_key)


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": run_list,
    "show": run_show,
    "count": run_count,
    "traces": run_traces,
    "trace": run_trace,
    "stats": run_stats,
    "serve": run_serve,
    "prune": run_prune,
    "keygen": run_keygen,
    "dead-letters": run_dead_letters,
    "replay-dead-letters": run_replay_dead_letters,
}
"""Subcommand -> what runs it."""
