"""Traces in the call log (issue 13): a trace's spans reach a real ``otel-llm collector`` in
several OTLP requests, out of order, from two services; the query API answers the trace's tree
with exact subtree costs, lists traces (filters, sorts, pages), totals a conversation, groups
stats by agent and conversation -- on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from otel_llm.cli import main
from tests.support.api import get_json
from tests.support.collector_process import CollectorProcess
from tests.support.postgres import BACKENDS, empty_store_url, pg_cluster  # noqa: F401 - fixture

API_KEY = "traces-secret-key-0123456789"
README = (Path(__file__).parent.parent / "README.md").read_text()
PRICES = """
overrides:
  - match: m-big
    provider: openai
    prices: {input_mtok: 3.0, output_mtok: 15.0}
  - match: m-small
    provider: openai
    prices: {input_mtok: 0.15, output_mtok: 0.6}
"""
PRICE = {"m-big": (Decimal(3), Decimal(15)), "m-small": (Decimal("0.15"), Decimal("0.6"))}

T1 = "0af7651916cd43dd8448eb211c80319c"
T2 = "1bf7651916cd43dd8448eb211c80319d"
T3 = "2cf7651916cd43dd8448eb211c80319e"


def cost(model: str, tokens_in: int, tokens_out: int) -> Decimal | None:
    if model not in PRICE:
        return None
    per_in, per_out = PRICE[model]
    return (per_in * tokens_in + per_out * tokens_out) / 1_000_000


def _value(value: Any) -> AnyValue:
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(string_value=str(value))


def span(  # noqa: PLR0917 - a span is these six things
    trace: str,
    span_id: str,
    parent: str | None,
    name: str,
    attributes: dict[str, Any],
    at: float,
) -> Span:
    start = int((time.time() - 600 + at) * 1e9)
    return Span(
        trace_id=bytes.fromhex(trace),
        span_id=bytes.fromhex(span_id),
        parent_span_id=bytes.fromhex(parent) if parent else b"",
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=start + 50_000_000,
        attributes=[KeyValue(key=k, value=_value(v)) for k, v in attributes.items()],
    )


def call(  # noqa: PLR0917 - a call is these six things
    trace: str,
    span_id: str,
    parent: str | None,
    model: str,
    tokens: tuple[int, int],
    at: float,
    **extra: Any,
) -> Span:
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.usage.input_tokens": tokens[0],
        "gen_ai.usage.output_tokens": tokens[1],
        **extra,
    }
    return span(trace, span_id, parent, f"chat {model}", attributes, at)


def agent(trace: str, span_id: str, parent: str | None, name: str, at: float, **extra: Any) -> Span:
    attributes = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name, **extra}
    return span(trace, span_id, parent, f"invoke_agent {name}", attributes, at)


def tool(trace: str, span_id: str, parent: str, name: str, at: float) -> Span:
    attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
    return span(trace, span_id, parent, f"execute_tool {name}", attributes, at)


def post(http: str, service: str, spans: list[Span]) -> None:
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [KeyValue(key="service.name", value=_value(service))]},
                scope_spans=[ScopeSpans(scope={"name": "tests.traces"}, spans=spans)],
            )
        ]
    )
    sent = urllib.request.Request(
        f"http://{http}/v1/traces",
        data=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
        method="POST",
    )
    with urllib.request.urlopen(sent, timeout=10) as response:  # noqa: S310 - 127.0.0.1
        assert response.status == 200


def ask(base: str, path: str, key: str | None = API_KEY, **query: str) -> tuple[int, Any]:
    url = base.removesuffix("/api/v1/calls") + path + (f"?{urlencode(query)}" if query else "")
    return get_json(url, key)


def usd(value: float | None) -> Decimal | None:
    """A JSON number as the decimal it was written from (the API writes exact nano-USD)."""
    return None if value is None else Decimal(repr(value))


# The run of trace T1: the web front end's root, then the agents service's planner agent with a
# researcher sub-agent, a tool, and four calls (one of an unknown model: unpriced).
CALLS_T1 = {
    "c1": ("00000000000000c1", "00000000000000a1", "m-big", (1234, 567)),
    "c2": ("00000000000000c2", "00000000000000b1", "m-small", (777, 333)),
    "c3": ("00000000000000c3", "0000000000000071", "m-big", (101, 19)),
    "c4": ("00000000000000c4", "00000000000000b1", "m-unknown", (50, 5)),
}
ROOT, HTTP_CHILD, PLANNER, RESEARCHER, SEARCH = (
    "00000000000000f1",
    "00000000000000f2",
    "00000000000000a1",
    "00000000000000b1",
    "0000000000000071",
)


def send_trace_t1(http: str) -> None:
    """T1 in four requests, each before its parents: the root first (no call of its trace is
    known yet), then calls whose agents have not arrived, then the agents, then the rest."""
    post(
        http,
        "web",
        [
            span(T1, ROOT, None, "POST /chat", {"http.request.method": "POST"}, 0),
            span(T1, HTTP_CHILD, ROOT, "SELECT users", {"db.system": "postgresql"}, 0.1),
        ],
    )
    conversation = {"gen_ai.conversation.id": "conv-1"}
    c2, c3 = CALLS_T1["c2"], CALLS_T1["c3"]
    post(
        http,
        "agents",
        [
            call(T1, c2[0], c2[1], c2[2], c2[3], 3, **{"gen_ai.agent.name": "researcher"}),
            call(T1, c3[0], c3[1], c3[2], c3[3], 4),
        ],
    )
    post(
        http,
        "agents",
        [
            tool(T1, SEARCH, RESEARCHER, "search", 3.5),
            agent(T1, RESEARCHER, PLANNER, "researcher", 2),
            agent(T1, PLANNER, ROOT, "planner", 1, **conversation),
        ],
    )
    c1, c4 = CALLS_T1["c1"], CALLS_T1["c4"]
    post(
        http,
        "agents",
        [
            call(
                T1,
                c1[0],
                c1[1],
                c1[2],
                c1[3],
                1.5,
                **{"gen_ai.agent.name": "planner"},
                **conversation,
            ),
            call(T1, c4[0], c4[1], c4[2], c4[3], 5, **{"gen_ai.agent.name": "researcher"}),
        ],
    )


def send_other_traces(http: str) -> None:
    """T2: one agent, two calls of conversation conv-1 (root received); T3: a lone call."""
    post(
        http,
        "agents",
        [
            span(T2, "00000000000002f1", None, "POST /help", {}, 20),
            agent(T2, "00000000000002a1", "00000000000002f1", "support", 21),
            call(
                T2,
                "00000000000002c1",
                "00000000000002a1",
                "m-small",
                (10_000, 1000),
                22,
                **{"gen_ai.agent.name": "support", "gen_ai.conversation.id": "conv-1"},
            ),
            call(
                T2,
                "00000000000002c2",
                "00000000000002a1",
                "m-small",
                (20_000, 2000),
                23,
                **{"gen_ai.agent.name": "support", "gen_ai.conversation.id": "conv-1"},
            ),
        ],
    )
    post(http, "batch", [call(T3, "00000000000003c1", "00000000000003f0", "m-big", (5, 5), 30)])


def wait_for(base: str, path: str, done: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        status, answer = ask(base, path)
        if status == 200 and done(answer):
            return answer
        assert time.monotonic() < deadline, (status, answer)
        time.sleep(0.1)


def nodes_by_id(tree: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    stack = list(tree)
    while stack:
        node = stack.pop()
        found[node["span_id"]] = node
        stack.extend(node["children"])
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_trace_sent_out_of_order_by_two_services_is_one_tree_with_exact_costs(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    collectors: list[CollectorProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = empty_store_url(backend, request, tmp_path)
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    collector = CollectorProcess(
        [
            "--grpc-endpoint=127.0.0.1:0",
            "--http-endpoint=127.0.0.1:0",
            "--metrics-endpoint=127.0.0.1:0",
            "--agent-label",
            f"--queue-dir={tmp_path / 'queue'}",
            f"--call-log-store={store}",
            "--call-log-api-endpoint=127.0.0.1:0",
            f"--price-overrides={prices}",
        ],
        {
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "OTEL_LLM_CALL_LOG_API_KEYS": f"t={API_KEY}",
        },
    )
    collectors.append(collector)
    api = collector.api
    assert api is not None, collector.text
    send_trace_t1(collector.http)
    send_other_traces(collector.http)

    trace = wait_for(
        api,
        f"/api/v1/traces/{T1}",
        lambda answer: answer["calls"] == 4 and answer["root_span_name"] == "POST /chat",
    )
    costs = {name: cost(spec[2], *spec[3]) for name, spec in CALLS_T1.items()}
    priced = [value for value in costs.values() if value is not None]
    assert usd(trace["total_cost"]) == sum(priced)
    assert (trace["calls"], trace["unpriced_calls"], trace["errors"]) == (4, 1, 0)
    assert trace["input_tokens"] == sum(spec[3][0] for spec in CALLS_T1.values())
    assert trace["services"] == ["agents", "web"]
    assert trace["agents"] == ["planner", "researcher"]

    # The tree: root -> planner -> (c1, researcher -> (search -> c3, c2, c4)); the plain
    # database span is not kept. Subtree costs are exact sums of the calls under each node.
    assert [node["span_id"] for node in trace["tree"]] == [ROOT]
    nodes = nodes_by_id(trace["tree"])
    assert set(nodes) == {ROOT, PLANNER, RESEARCHER, SEARCH} | {c[0] for c in CALLS_T1.values()}
    assert nodes[ROOT]["kind"] == "root"
    assert [child["span_id"] for child in nodes[ROOT]["children"]] == [PLANNER]
    assert [child["span_id"] for child in nodes[PLANNER]["children"]] == [
        CALLS_T1["c1"][0],
        RESEARCHER,
    ]
    assert [child["span_id"] for child in nodes[RESEARCHER]["children"]] == [
        CALLS_T1["c2"][0],
        SEARCH,
        CALLS_T1["c4"][0],
    ]
    assert [child["span_id"] for child in nodes[SEARCH]["children"]] == [CALLS_T1["c3"][0]]
    assert (nodes[PLANNER]["kind"], nodes[PLANNER]["agent_name"]) == ("agent", "planner")
    assert (nodes[SEARCH]["kind"], nodes[SEARCH]["name"]) == ("tool", "execute_tool search")
    researcher_cost = costs["c2"] + costs["c3"]  # type: ignore[operator]
    assert usd(nodes[RESEARCHER]["subtree_cost"]) == researcher_cost
    assert nodes[RESEARCHER]["subtree_calls"] == 3
    assert usd(nodes[PLANNER]["subtree_cost"]) == researcher_cost + costs["c1"]
    assert usd(nodes[ROOT]["subtree_cost"]) == sum(priced)
    assert nodes[ROOT]["subtree_calls"] == 4
    c3 = nodes[CALLS_T1["c3"][0]]
    assert (c3["kind"], c3["model"], c3["call_id"]) == (
        "llm_call",
        "m-big",
        f"{T1}-{c3['span_id']}",
    )
    assert usd(c3["cost"]) == usd(c3["subtree_cost"]) == costs["c3"]
    assert c3["agent_name"] == "researcher"  # inherited from the nearest agent for display
    c4 = nodes[CALLS_T1["c4"][0]]
    assert (c4["cost"], c4["subtree_cost"], c4["subtree_calls"]) == (None, None, 1)

    # The calls carry their place in the trace; the root's name reached calls stored before it.
    status, got = ask(
        api,
        f"/api/v1/calls/{T1}-{CALLS_T1['c1'][0]}",
        select="parent_span_id,agent_name,conversation_id,root_span_name",
    )
    assert status == 200, got
    assert got == {
        "id": f"{T1}-{CALLS_T1['c1'][0]}",
        "parent_span_id": PLANNER,
        "agent_name": "planner",
        "conversation_id": "conv-1",
        "root_span_name": "POST /chat",
    }
    status, got = ask(api, f"/api/v1/calls/{T1}-{CALLS_T1['c3'][0]}", select="root_span_name")
    assert got["root_span_name"] == "POST /chat"

    # The list: sorted by cost, by calls; filtered; paged.
    wait_for(api, "/api/v1/traces", lambda answer: len(answer["data"]) == 3)
    status, listed = ask(api, "/api/v1/traces", sort="cost", order="desc")
    assert status == 200, listed
    totals = {t["trace_id"]: usd(t["total_cost"]) for t in listed["data"]}
    t2_cost = cost("m-small", 10_000, 1000) + cost("m-small", 20_000, 2000)  # type: ignore[operator]
    assert totals == {T1: sum(priced), T2: t2_cost, T3: cost("m-big", 5, 5)}
    assert [t["trace_id"] for t in listed["data"]] == sorted(totals, key=lambda t: -totals[t])  # type: ignore[operator]
    first = listed["data"][[t["trace_id"] for t in listed["data"]].index(T1)]
    assert first["root_span_name"] == "POST /chat"
    assert (first["calls"], first["unpriced_calls"], first["services"]) == (4, 1, ["agents", "web"])
    assert first["first_call_at"].endswith("Z")
    assert first["last_call_at"] > first["first_call_at"]
    assert listed["has_more"] is False
    assert listed["pagination"]["total"] == 3
    status, by_calls = ask(api, "/api/v1/traces", sort="calls", order="asc")
    assert [t["trace_id"] for t in by_calls["data"]] == [T3, T2, T1]
    status, paged = ask(api, "/api/v1/traces", sort="calls", limit="2", offset="1")
    assert [t["trace_id"] for t in paged["data"]] == [T2, T3]
    assert (paged["has_more"], paged["pagination"]["total"]) == (False, 3)
    status, paged = ask(api, "/api/v1/traces", sort="calls", limit="1")
    assert [t["trace_id"] for t in paged["data"]] == [T1]
    assert paged["has_more"] is True
    assert [t["trace_id"] for t in ask(api, "/api/v1/traces", agent="researcher")[1]["data"]] == [
        T1
    ]
    status, conv = ask(api, "/api/v1/traces", conversation="conv-1", sort="time", order="asc")
    assert [t["trace_id"] for t in conv["data"]] == [T1, T2]
    # A trace with one matching call is listed with all its calls' totals.
    assert ask(api, "/api/v1/traces", agent="planner")[1]["data"][0]["calls"] == 4
    status, rich = ask(api, "/api/v1/traces", min_cost=str(t2_cost))
    assert {t["trace_id"] for t in rich["data"]} == {T1, T2}
    assert [t["trace_id"] for t in ask(api, "/api/v1/traces", service="batch")[1]["data"]] == [T3]

    # A conversation's totals, across its traces, exact.
    status, totals_c = ask(api, "/api/v1/conversations/conv-1")
    assert status == 200, totals_c
    assert usd(totals_c["total_cost"]) == costs["c1"] + t2_cost  # type: ignore[operator]
    assert (totals_c["calls"], totals_c["traces"], totals_c["agents"]) == (
        3,
        2,
        ["planner", "support"],
    )

    # Stats by agent and by conversation: exact sums per group.
    status, stats = ask(api, "/api/v1/calls/stats", group_by="agent")
    assert status == 200, stats
    groups = {g["group"]: g for g in stats["groups"]}
    assert usd(groups["support"]["total_cost"]) == t2_cost
    assert usd(groups["researcher"]["total_cost"]) == costs["c2"]
    assert groups["researcher"]["total_requests"] == 2  # c2, c4 (c3 has no agent of its own)
    assert groups[None]["total_requests"] == 2  # c3 and T3's call
    assert groups["support"]["p50_latency_ms"] == pytest.approx(50, rel=0.02)
    # Seed 003's role is the agent's name: the same groups, the same calls.
    status, by_role = ask(api, "/api/v1/calls/stats", group_by="role")
    assert (status, by_role["group_by"]) == (200, "role"), by_role
    assert {**by_role, "group_by": "agent"} == stats
    status, by_role = ask(api, "/api/v1/calls", role="researcher")
    assert status == 200, by_role
    assert by_role == ask(api, "/api/v1/calls", agent_name="researcher")[1]
    assert len(by_role["calls"]) == 2  # c2, c4
    status, both = ask(api, "/api/v1/calls", role="researcher", agent_name="planner")
    assert status == 400, both
    assert "role" in both["error"]["message"], both
    status, stats = ask(api, "/api/v1/calls/stats", group_by="conversation", limit="1")
    assert status == 200, stats
    groups = {g["group"]: g for g in stats["groups"]}
    assert list(groups) == [None, "other"]  # the busiest (no conversation: 4 calls), the rest
    assert groups["other"]["total_requests"] == 3
    assert groups["other"]["p50_latency_ms"] == pytest.approx(50, rel=0.02)  # read anyway
    assert usd(groups["other"]["total_cost"]) == costs["c1"] + t2_cost  # type: ignore[operator]
    # A listed group holding fewer calls than the rest: only its calls are read (by index),
    # the rest's percentiles are not computed; its sums stay exact.
    status, stats = ask(api, "/api/v1/calls/stats", group_by="agent", limit="1")
    groups = {g["group"]: g for g in stats["groups"]}
    assert list(groups) == ["researcher", "other"]
    assert groups["researcher"]["p50_latency_ms"] == pytest.approx(50, rel=0.02)
    assert (groups["other"]["total_requests"], groups["other"]["p50_latency_ms"]) == (5, None)
    everything = sum(priced) + t2_cost + cost("m-big", 5, 5)  # type: ignore[operator]
    assert usd(groups["other"]["total_cost"]) == everything - costs["c2"]  # type: ignore[operator]

    # The command line prints the tree as the README shows it.
    assert main(["calls", "trace", T1, "--api", api, "--api-key", API_KEY]) == 0
    printed = capsys.readouterr().out
    shown = README.split("└─ [root] POST /chat", 1)[1].split("```", 1)[0]
    assert "└─ [root] POST /chat" + shown in printed

    # The collector's cost counters carry the calls' agent (agent_label on).
    metrics = collector.scrape()
    assert 'gen_ai_agent_name="researcher"' in metrics
    assert 'gen_ai_agent_name="support"' in metrics

    # Hostile or wrong input: 400 naming the parameter; an unknown trace: 404.
    status, error = ask(api, "/api/v1/traces/not-a-trace-id")
    assert status == 400
    assert "trace_id" in error["error"]["message"]
    status, error = ask(api, f"/api/v1/traces/{'f' * 32}")
    assert status == 404
    assert "no trace" in error["error"]["message"]
    for bad, named in (
        ({"sort": "price"}, "sort"),
        ({"min_cost": "lots"}, "min_cost"),
        ({"limit": "0"}, "limit"),
        ({"agentt": "x"}, "agentt"),
        ({"order": "up"}, "order"),
    ):
        status, error = ask(api, "/api/v1/traces", **bad)
        assert (status, named in error["error"]["message"]) == (400, True), (bad, error)
    status, error = ask(api, "/api/v1/traces", agent="a", agent_name="b")
    assert status == 400
    assert "agent" in error["error"]["message"]
    assert ask(api, "/api/v1/conversations/nobody")[0] == 404
    assert ask(api, "/api/v1/traces", key=None)[0] == 401
    assert collector.terminate() == 0
