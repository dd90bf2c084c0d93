"""Traces in the call log fed in process (``CallLogExporter`` under the real SDK and
``LLMSpanProcessor``), the tree's rules on hostile input, the bounds, and the CLI."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor, llm_call, llm_context
from otel_llm import _semconv as sc
from otel_llm.calllog import tracespans
from otel_llm.calllog.api import CallLogAPI
from otel_llm.calllog.exporter import CallLogExporter
from otel_llm.calllog.store import SQLCallStore, open_store
from otel_llm.calllog.traces import MAX_DEPTH, TraceQuery, build_tree
from otel_llm.calllog.tracespans import DAY_US
from otel_llm.cli import main
from tests.support.postgres import pg_cluster, store_url  # noqa: F401 - fixtures
from tests.test_calllog_api import ALL_KEY, ALPHA_KEY, KEYS, UNLIMITED

NOW = datetime.now(UTC)


def run_agents(provider: TracerProvider) -> None:
    """A request: an agent with a tool and a sub-agent, calls at each level; then a plain
    trace without any call."""
    tracer = provider.get_tracer("app")

    def call(model: str, tokens_in: int, tokens_out: int) -> None:
        with llm_call(provider="openai", model=model, tracer_provider=provider) as handle:
            handle.set_usage(input_tokens=tokens_in, output_tokens=tokens_out)

    def agent(name: str) -> Any:
        return tracer.start_as_current_span(
            f"invoke_agent {name}",
            attributes={sc.GEN_AI_OPERATION_NAME: "invoke_agent", sc.GEN_AI_AGENT_NAME: name},
        )

    with tracer.start_as_current_span("POST /ask"), llm_context(conversation="c-9"):
        with agent("planner"):
            call("gpt-4o-mini", 1200, 300)
            with tracer.start_as_current_span(
                "execute_tool lookup", attributes={sc.GEN_AI_OPERATION_NAME: "execute_tool"}
            ):
                call("gpt-4o", 500, 50)
            with agent("researcher"):
                call("gpt-4o-mini", 3000, 700)
                call("no-such-model-xyz", 10, 10)
    with tracer.start_as_current_span("GET /health"):
        pass


@pytest.fixture
def exported(store_url: str) -> Iterator[tuple[SQLCallStore, list[ReadableSpan]]]:  # noqa: F811
    store = open_store(store_url)
    memory = InMemorySpanExporter()
    exporter = CallLogExporter(store, flush_interval=0.05)
    processor = LLMSpanProcessor(
        SimpleSpanProcessor(memory), SimpleSpanProcessor(exporter), registry=CollectorRegistry()
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "assistant"}))
    provider.add_span_processor(processor)
    try:
        run_agents(provider)
        assert exporter.force_flush()
        yield store, list(memory.get_finished_spans())
    finally:
        provider.shutdown()
        store.close()


def rollup(span: ReadableSpan) -> Decimal:
    return Decimal(str(span.attributes[sc.OTEL_LLM_ROLLUP_COST_EXACT]))


def walk(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node["children"])


def test_the_in_process_tree_matches_the_roll_ups_on_the_spans(
    exported: tuple[SQLCallStore, list[ReadableSpan]],
) -> None:
    store, spans = exported
    by_name = {span.name: span for span in spans}
    root = by_name["POST /ask"]
    trace_id = f"{root.context.trace_id:032x}"
    trace = store.trace(trace_id)
    assert trace is not None
    assert (trace["calls"], trace["unpriced_calls"], trace["root_span_name"]) == (4, 1, "POST /ask")
    assert trace["agents"] == ["planner", "researcher"]
    (top,) = trace["tree"]
    assert (top["kind"], top["name"], top["span_id"]) == (
        "root",
        "POST /ask",
        f"{root.context.span_id:016x}",
    )
    # The tree's subtree costs are the roll-ups the processor put on the exported spans.
    nodes = {node["name"]: node for node in walk(trace["tree"])}
    assert top["subtree_cost"] == rollup(root) == trace["total_cost"]
    for name in ("invoke_agent planner", "invoke_agent researcher"):
        assert nodes[name]["kind"] == "agent"
        assert nodes[name]["subtree_cost"] == rollup(by_name[name])
    assert nodes["invoke_agent researcher"]["subtree_calls"] == 2
    assert nodes["execute_tool lookup"]["kind"] == "tool"
    (tool_call,) = nodes["execute_tool lookup"]["children"]
    assert tool_call["model"] == "gpt-4o"
    assert tool_call["subtree_cost"] == tool_call["cost"]
    # Calls carry their agent and conversation (inherited in process), and their parent.
    call = store.get(tool_call["call_id"])
    assert call is not None
    assert (call["agent_name"], call["conversation_id"]) == ("planner", "c-9")
    assert call["parent_span_id"] == nodes["execute_tool lookup"]["span_id"]
    assert call["root_span_name"] == "POST /ask"
    conversation = store.conversation("c-9")
    assert conversation is not None
    assert (conversation["calls"], conversation["traces"]) == (4, 1)
    assert conversation["total_cost"] == trace["total_cost"]
    # A trace without calls keeps nothing.
    health = by_name["GET /health"]
    assert store.trace(f"{health.context.trace_id:032x}") is None
    kept = store.traces(TraceQuery())
    assert [t["trace_id"] for t in kept["data"]] == [trace_id]


# --- the tree's rules -----------------------------------------------------------------------


def kept(
    span_id: str, parent: str | None, kind: str = "agent", at: int = 0
) -> tracespans.TraceSpan:
    return tracespans.TraceSpan(
        "a" * 32, span_id, parent, f"span {span_id}", kind, None, None, at, None
    )


def call_row(span_id: str, parent: str | None, nusd: int | None, at: int = 0) -> tuple[Any, ...]:
    return (
        f"{'a' * 32}-{span_id}",
        span_id,
        parent,
        at,
        "m",
        "chat",
        "success",
        None,
        None,
        nusd,
        None,
    )


def test_a_parent_loop_is_cut_and_every_node_is_shown_once() -> None:
    spans = [kept("01", "02", at=1), kept("02", "03", at=2), kept("03", "01", at=3)]
    calls = [call_row("04", "02", 7), call_row("05", "05", 11)]  # the second: its own parent
    tree = build_tree(calls, spans)
    ids = [node["span_id"] for node in walk(tree)]
    assert sorted(ids) == ["01", "02", "03", "04", "05"]
    total = sum(node["subtree_cost"] or 0 for node in tree)
    assert total == Decimal("0.000000018")  # every call counted once


def test_a_deep_chain_is_bounded_in_depth_and_its_costs_stay_exact() -> None:
    depth = 5 * MAX_DEPTH
    spans = [kept(f"{i:016x}", f"{i - 1:016x}" if i else None, at=i) for i in range(depth)]
    calls = [call_row("f" * 16, f"{depth - 1:016x}", 5, at=depth)]
    (top,) = build_tree(calls, spans)
    assert top["subtree_cost"] == Decimal("0.000000005")
    assert top["subtree_calls"] == 1
    deepest = 0
    stack = [(top, 0)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in node["children"])
    assert deepest <= MAX_DEPTH + 1


def test_nodes_whose_parent_was_not_received_hang_at_the_top() -> None:
    tree = build_tree([call_row("01", "99", 3), call_row("02", None, None)], [])
    assert [node["span_id"] for node in tree] == ["01", "02"]
    assert tree[1]["subtree_cost"] is None


# --- bounds ------------------------------------------------------------------------------------


def test_spans_per_trace_are_capped_and_roots_wait_for_a_call(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "calls.db"))
    try:
        start = int((NOW - timedelta(minutes=5)).timestamp() * 1e6)
        many = [
            tracespans.TraceSpan(
                "b" * 32, f"{i:016x}", None, "tool", "tool", None, None, start, None
            )
            for i in range(tracespans.MAX_SPANS_PER_TRACE + 50)
        ]
        assert store.write_trace_spans(many) == tracespans.MAX_SPANS_PER_TRACE
        assert store.write_trace_spans(many) == 0  # delivered again: nothing new
        keeper = tracespans.RootKeeper(max_pending=2)
        roots = [
            tracespans.TraceSpan(
                f"{i:032x}", "1" * 16, None, "GET /", "root", None, None, start, None
            )
            for i in range(1, 5)
        ]
        assert store.keep_trace_spans(keeper, roots) == 0  # no call of these traces
        assert (keeper.pending, keeper.dropped) == (2, 2)  # the oldest two given up
        assert (
            store.keep_trace_spans(keeper, [], [(f"{4:032x}", start // DAY_US)]) == 1
        )  # its call arrived
        assert keeper.pending == 1
        store.apply_retention(NOW + timedelta(days=400), content_days=1, record_days=1)
        with sqlite3.connect(tmp_path / "calls.db") as db:
            assert db.execute("SELECT COUNT(*) FROM llm_trace_spans").fetchone() == (0,)
    finally:
        store.close()


def test_a_hostile_span_is_cleaned_or_refused() -> None:
    now = NOW
    ns = int(now.timestamp() * 1e9)
    kept_span = tracespans.trace_span(
        trace_id=1,
        span_id=2,
        parent_span_id=None,
        name="a\x00" + "x" * 5000,
        kind="root",
        service=123,
        agent_name=None,
        start_time_ns=ns,
        end_time_ns=ns - 10_000_000,
        now=now,
    )
    assert kept_span is not None
    assert "\x00" not in kept_span.name
    assert len(kept_span.name) == 256
    assert (kept_span.service, kept_span.end_us) == ("123", None)
    for wrong in (
        {"trace_id": 0},
        {"span_id": 1 << 64},
        {"kind": "weird"},
        {"start_time_ns": 2**64 - 1},
        {"start_time_ns": 1},
    ):
        values: dict[str, Any] = {
            "trace_id": 1,
            "span_id": 2,
            "parent_span_id": None,
            "name": "n",
            "kind": "root",
            "service": None,
            "agent_name": None,
            "start_time_ns": ns,
            "end_time_ns": None,
        }
        values.update(wrong)
        assert tracespans.trace_span(**values, now=now) is None, wrong


# --- the command line --------------------------------------------------------------------------


def test_the_cli_lists_traces_and_prints_a_tree_from_a_store_and_an_api(
    exported: tuple[SQLCallStore, list[ReadableSpan]], capsys: pytest.CaptureFixture[str]
) -> None:
    store, spans = exported
    root = next(span for span in spans if span.name == "POST /ask")
    trace_id = f"{root.context.trace_id:032x}"
    url = getattr(store, "url", None) or store.path  # type: ignore[attr-defined]
    with CallLogAPI(store, keys=KEYS, limits=UNLIMITED) as served:
        api = ["--api", f"http://127.0.0.1:{served.port}", "--api-key", ALL_KEY]
        outputs = []
        for source in (["--store", url], api):
            assert main(["calls", "traces", *source, "--sort", "cost", "--agent", "planner"]) == 0
            listed = capsys.readouterr().out
            assert main(["calls", "trace", trace_id, *source]) == 0
            outputs.append((listed, capsys.readouterr().out))
    assert outputs[0] == outputs[1]
    listed, tree = outputs[0]
    assert trace_id in listed
    assert "1-1 of 1 traces" in listed
    lines = tree.splitlines()
    assert any(line.startswith("└─ [root] POST /ask  subtree $") for line in lines), tree
    assert any("[agent] invoke_agent researcher  subtree $" in line for line in lines), tree
    assert any(
        "[llm_call] chat no-such-model-xyz (agent researcher)  cost unknown" in line
        for line in lines
    )
    assert main(["calls", "trace", "nothex", "--store", url]) == 1
    assert "32 hex" in capsys.readouterr().err
    assert main(["calls", "traces", "--store", url, "--min-cost", "x"]) == 1
    assert "--min-cost" in capsys.readouterr().err


def test_a_trace_whose_root_is_an_agent_is_named_after_it(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "calls.db"))
    exporter = CallLogExporter(store, flush_interval=0.05)
    provider = TracerProvider()
    provider.add_span_processor(
        LLMSpanProcessor(SimpleSpanProcessor(exporter), registry=CollectorRegistry())
    )
    try:
        tracer = provider.get_tracer("agents")
        attributes = {sc.GEN_AI_OPERATION_NAME: "invoke_agent", sc.GEN_AI_AGENT_NAME: "solo"}
        with tracer.start_as_current_span("invoke_agent solo", attributes=attributes) as root:
            with llm_call(provider="openai", model="gpt-4o", tracer_provider=provider) as call:
                call.set_usage(input_tokens=10, output_tokens=2)
        assert exporter.force_flush()
        trace_id = f"{root.get_span_context().trace_id:032x}"
        trace = store.trace(trace_id)
        assert trace is not None
        assert trace["root_span_name"] == "invoke_agent solo"
        (top,) = trace["tree"]
        assert (top["kind"], top["subtree_calls"]) == ("agent", 1)
        (listed,) = store.traces(TraceQuery())["data"]
        assert listed["root_span_name"] == "invoke_agent solo"
        assert store.get(top["children"][0]["call_id"])["root_span_name"] == "invoke_agent solo"  # type: ignore[index]
    finally:
        provider.shutdown()
        store.close()


def test_a_key_limited_to_projects_sees_only_their_traces(
    exported: tuple[SQLCallStore, list[ReadableSpan]],
) -> None:
    store, spans = exported  # the run's calls have no project
    root = next(span for span in spans if span.name == "POST /ask")
    trace_id = f"{root.context.trace_id:032x}"
    with CallLogAPI(store, keys=KEYS, limits=UNLIMITED) as served:
        base = f"http://127.0.0.1:{served.port}"

        def get(path: str, key: str) -> tuple[int, Any]:
            request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1
                base + path, headers={"Authorization": f"Bearer {key}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        assert get(f"/api/v1/traces/{trace_id}", ALL_KEY)[0] == 200
        assert get(f"/api/v1/traces/{trace_id.upper()}", ALL_KEY)[0] == 200
        assert get(f"/api/v1/traces/{trace_id}", ALPHA_KEY)[0] == 404
        assert get("/api/v1/traces", ALPHA_KEY)[1]["data"] == []
        assert get("/api/v1/conversations/c-9", ALPHA_KEY)[0] == 404
        assert get("/api/v1/conversations/c-9", ALL_KEY)[1]["calls"] == 4
        status, answer = get(f"/api/v1/traces/{trace_id}?select=cost", ALL_KEY)
        assert status == 400
        assert "select" in answer["error"]["message"]


def test_a_key_limited_to_projects_sees_only_the_spans_above_its_calls(tmp_path: Path) -> None:
    # Found in review: kept spans have no project, and a trace visible through one of a key's
    # calls showed all of them -- the agents, tools and root name of another project's calls
    # in the same trace, in the tree and in the list's agents.
    store = open_store(str(tmp_path / "calls.db"))
    exporter = CallLogExporter(store, flush_interval=0.05)
    provider = TracerProvider(resource=Resource.create({"service.name": "shared"}))
    provider.add_span_processor(
        LLMSpanProcessor(SimpleSpanProcessor(exporter), registry=CollectorRegistry())
    )

    def agent(name: str) -> Any:
        attributes = {sc.GEN_AI_OPERATION_NAME: "invoke_agent", sc.GEN_AI_AGENT_NAME: name}
        return tracer.start_as_current_span(f"invoke_agent {name}", attributes=attributes)

    def call(project: str) -> None:
        with (
            llm_context(project_id=project),
            llm_call(provider="openai", model="gpt-4o", tracer_provider=provider) as handle,
        ):
            handle.set_usage(input_tokens=10, output_tokens=2)

    try:
        tracer = provider.get_tracer("agents")
        with tracer.start_as_current_span("POST /ask") as root:
            with agent("planner"):
                call("alpha")
            with agent("beta-secret-agent"):
                with tracer.start_as_current_span(
                    "execute_tool beta-secret-tool",
                    attributes={sc.GEN_AI_OPERATION_NAME: "execute_tool"},
                ):
                    call("beta")
        assert exporter.force_flush()
        trace_id = f"{root.get_span_context().trace_id:032x}"
        with CallLogAPI(store, keys=KEYS, limits=UNLIMITED) as served:
            base = f"http://127.0.0.1:{served.port}"

            def get(path: str, key: str) -> Any:
                request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1
                    base + path, headers={"Authorization": f"Bearer {key}"}
                )
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    return json.loads(response.read())

            everything = json.dumps(get(f"/api/v1/traces/{trace_id}", ALL_KEY))
            assert "beta-secret-agent" in everything
            assert "beta-secret-tool" in everything
            trace = get(f"/api/v1/traces/{trace_id}", ALPHA_KEY)
            assert "beta-secret" not in json.dumps(trace)
            assert trace["calls"] == 1
            assert trace["agents"] == ["planner"]
            assert trace["root_span_name"] == "POST /ask"
            (top,) = trace["tree"]
            (planner,) = top["children"]
            assert (top["kind"], planner["agent_name"]) == ("root", "planner")
            assert [child["kind"] for child in planner["children"]] == ["llm_call"]
            assert get("/api/v1/traces", ALL_KEY)["data"][0]["agents"] == [
                "beta-secret-agent",
                "planner",
            ]
            (listed,) = get("/api/v1/traces", ALPHA_KEY)["data"]
            assert (listed["agents"], listed["root_span_name"]) == (["planner"], "POST /ask")
    finally:
        provider.shutdown()
        store.close()
