"""collector_config/: the routed Collector configs, checked against the dialect table and for
their wiring.

otelcol-contrib cannot be installed on these machines, so no Collector loads these files and
``otelcol-contrib validate`` was not run. What is checked instead:

- the routing condition is the one ``otel_llm.collector.routing`` generates from
  ``semconv/dialects.yaml`` (a stale config fails), and it routes every span otel-llm prices or
  keeps -- the real libraries' attribute sets of tests/test_dialects.py, agents, tools, roll-ups
  -- and no plain span (evaluated by a small evaluator of the condition's one form, key
  presence, not by OTTL);
- every Collector config of ``collector_config/`` parses as YAML and is wired consistently:
  every component a pipeline names is defined and every defined one used, connectors are an
  exporter of one pipeline and a receiver of another, every pipeline is reachable from a
  receiver, the routing table names exactly the pipelines its connector feeds;
- the OTTL conditions are plausible: balanced quotes, brackets and parentheses, attribute keys
  quoted, nothing but known tokens left. That is a lexical check, not otelcol's parser.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from otel_llm import PriceBook
from otel_llm import _semconv as sc
from otel_llm.call import is_llm_call
from otel_llm.collector import routing
from otel_llm.collector.enrich import Enricher, EnrichResult
from otel_llm.collector.otlp import attributes_of
from otel_llm.dialects import DIALECTS
from otel_llm.metrics.prometheus import PrometheusRecorder
from otel_llm.pricer import Pricer, PricingOptions
from otel_llm.pricing import Cost
from otel_llm.tracecost import agent_of_span, span_role
from tests.test_collector_config import KNOWN_TYPES as PLAIN_TYPES
from tests.test_collector_config import (
    OTELCOL_CONFIGS,
    SECTIONS,
    _compose_flag,
    _compose_otel_llm_port,
    _queue_and_retry,
)
from tests.test_dialects import CASES

CONFIG_DIR = Path(__file__).resolve().parents[1] / "collector_config"
ROUTED = routing.CONFIGS
ALL_CONFIGS = (*OTELCOL_CONFIGS, *ROUTED)
KNOWN_TYPES = {**PLAIN_TYPES, "connectors": {"routing"}}
# The routing connector's settings (its README, contrib main) and OTTL contexts for traces.
ROUTING_KEYS = {"table", "default_pipelines", "error_mode"}
ROUTE_KEYS = {"context", "condition", "statement", "pipelines", "action"}
TRACE_CONTEXTS = {"resource", "span", "request"}


def _config(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIG_DIR / name).read_text())  # type: ignore[no-any-return]


def _route(config: dict[str, Any]) -> dict[str, Any]:
    (route,) = config["connectors"]["routing"]["table"]
    return route  # type: ignore[no-any-return]


# --- the condition: generated from the dialect table ---------------------------------------------
_PRESENT = re.compile(r'attributes\["([^"\\]+)"\] != nil')


def _keys_of(condition: str) -> list[str]:
    """The keys of a condition of the generated form: presence tests joined by ``or``."""
    clauses = condition.split(" or ")
    keys = []
    for clause in clauses:
        match = _PRESENT.fullmatch(clause)
        assert match, f"not a presence test: {clause!r}"
        keys.append(match.group(1))
    return keys


@pytest.mark.parametrize("name", ROUTED)
def test_routing_condition_is_the_one_generated_from_the_dialect_table(name: str) -> None:
    text = (CONFIG_DIR / name).read_text()
    # The generator would leave the file as it is ...
    assert routing.update(text) == text, "stale: run python -m otel_llm.collector.routing"
    # ... and what the Collector will read names exactly the keys the table gives.
    route = _route(_config(name))
    assert route["context"] == "span"  # per span, not per resource or request
    assert _keys_of(route["condition"]) == list(routing.routing_keys())
    assert routing.main(["--check", "--dir", str(CONFIG_DIR)]) == 0


def test_a_stale_config_is_detected_and_rewritten(tmp_path: Path) -> None:
    for name in ROUTED:
        text = (CONFIG_DIR / name).read_text()
        (tmp_path / name).write_text(text.replace('or attributes["llm.request.type"] != nil\n', ""))
    assert routing.main(["--check", "--dir", str(tmp_path)]) == 1
    assert routing.main(["--dir", str(tmp_path)]) == 0
    for name in ROUTED:
        assert (tmp_path / name).read_text() == (CONFIG_DIR / name).read_text()
    assert routing.main(["--check", "--dir", str(tmp_path)]) == 0
    with pytest.raises(ValueError, match="one generated block"):
        routing.update("exporters: {}\n")


def test_routing_keys_follow_the_dialect_table() -> None:
    keys = routing.routing_keys()
    assert len(keys) == len(set(keys))
    assert keys[0] == sc.GEN_AI_OPERATION_NAME
    # Every dialect that marks its calls with an attribute of its own is routed by it; a new
    # dialect in semconv/dialects.yaml adds its key here (and fails the test above until the
    # configs are regenerated).
    for dialect in DIALECTS:
        if dialect.operation_attribute is not None:
            assert dialect.operation_attribute in keys, dialect.id
    assert {"llm.request.type", "openinference.span.kind"} <= set(keys)
    assert sc.OTEL_LLM_ROLLUP_CALLS in keys
    # Provider names alone make no span a call (see otel_llm/collector/routing.py).
    assert sc.GEN_AI_SYSTEM not in keys
    assert sc.GEN_AI_PROVIDER_NAME not in keys
    with pytest.raises(ValueError, match="escaping"):
        routing.condition(['a"b'])


def _routed(attributes: dict[str, Any]) -> bool:
    """The generated condition evaluated on a span's attributes (its only form: presence)."""
    return any(key in attributes for key in _keys_of(routing.condition(routing.routing_keys())))


_PLAIN_SPANS = [
    {"http.request.method": "GET", "url.path": "/checkout", "http.response.status_code": 200},
    {"db.system.name": "postgresql", "db.query.text": "SELECT 1"},
    {"rpc.system": "grpc", "rpc.method": "Export"},
    {},
    # A provider but no operation: otel-llm does not read it as a call (routing.py's doc).
    {sc.GEN_AI_SYSTEM: "openai", sc.GEN_AI_REQUEST_MODEL: "gpt-4o"},
    {sc.GEN_AI_PROVIDER_NAME: "anthropic"},
    {"llm.provider": "openai", "llm.model_name": "gpt-4o"},
]


def _agents_tools_and_rollups() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("invoke_agent", {sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT}),
        (
            "invoke_agent planner",
            {sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT, sc.GEN_AI_AGENT_NAME: "planner"},
        ),
        ("execute_tool search", {sc.GEN_AI_OPERATION_NAME: sc.OPERATION_EXECUTE_TOOL}),
        ("planner", {"openinference.span.kind": "AGENT"}),
        ("search", {"openinference.span.kind": "TOOL"}),
        ("RunnableSequence", {"openinference.span.kind": "CHAIN"}),
        ("turn", {sc.GEN_AI_OPERATION_NAME: "create_agent"}),
        ("POST /chat", {"http.request.method": "POST", sc.OTEL_LLM_ROLLUP_CALLS: 3}),
    ]


def test_the_condition_routes_every_span_otel_llm_prices_or_keeps_and_no_plain_span() -> None:
    # Every real library's call of tests/test_dialects.py, with its scope or without.
    for case_id, attributes, scope, *_ in CASES:
        assert is_llm_call(attributes, scope), case_id
        assert _routed(attributes), case_id
    # Each dialect's every marked operation value, and each canonical operation.
    for dialect in DIALECTS:
        for value in dialect.operations:
            attributes = {str(dialect.operation_attribute): value}
            assert _routed(attributes), (dialect.id, value)
    for operation in sc.PRICED_OPERATIONS:
        assert _routed({sc.GEN_AI_OPERATION_NAME: operation}), operation
    # Agents (their identity flows down to the calls under them), tools, a framework's step
    # between an agent and its calls, a span an in-process processor rolled up: the cost
    # tree's spans otel-llm's call log keeps -- all routed.
    for name, attributes in _agents_tools_and_rollups():
        assert span_role(name, attributes, has_parent=True) is not None, name
        assert _routed(attributes), name
    assert agent_of_span("planner", {"openinference.span.kind": "AGENT"}) is not None
    # Spans otel-llm would pass on unchanged: not routed, and indeed neither call nor tree span
    # (a tree keeps a plain span only as a trace's root: see the README, "Routed topology").
    for attributes in _PLAIN_SPANS:
        assert not _routed(attributes), attributes
        assert not is_llm_call(attributes)
        assert span_role("span", attributes, has_parent=True) is None, attributes


# --- structure and wiring of every Collector config ---------------------------------------------
def _wiring(config: dict[str, Any]) -> None:
    assert set(config) <= {*SECTIONS, "service"}, set(config)
    pipelines: dict[str, dict[str, list[str]]] = config["service"]["pipelines"]
    connectors = set(config.get("connectors") or {})
    feeds, fed_by = _components(config)
    # A connector is the exporter of one pipeline and the receiver of others.
    for connector in connectors:
        assert fed_by.get(connector), (connector, "feeds from no pipeline")
        assert feeds.get(connector), (connector, "feeds no pipeline")
        assert not fed_by[connector] & feeds[connector], connector  # no pipeline loops on itself
    # Every pipeline is reachable from a real receiver, through connectors.
    reached = {p for p, pipe in pipelines.items() if set(pipe["receivers"]) - connectors}
    frontier = list(reached)
    while frontier:
        pipeline = pipelines[frontier.pop()]
        for connector in set(pipeline["exporters"]) & connectors:
            for target in feeds[connector] - reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(pipelines), set(pipelines) - reached
    for connector_id, settings in (config.get("connectors") or {}).items():
        _routing_table(settings, feeds[connector_id])
    # memory_limiter first wherever data enters from a receiver (it refuses before anything
    # buffers), and only there.
    for pipeline_id, pipeline in pipelines.items():
        processors = pipeline.get("processors", [])
        if set(pipeline["receivers"]) - connectors:
            assert processors[:1] == ["memory_limiter"], pipeline_id
        else:
            assert "memory_limiter" not in processors, pipeline_id
    limiter = config["processors"]["memory_limiter"]
    assert limiter["limit_percentage"] > limiter["spike_limit_percentage"]
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"


def _components(config: dict[str, Any]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Checks every component a pipeline names is defined, and every defined one used; returns
    which pipelines each connector feeds (is a receiver of) and is fed by (an exporter of)."""
    service = config["service"]
    connectors = set(config.get("connectors") or {})
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    used["extensions"] = set(service.get("extensions", []))
    feeds: dict[str, set[str]] = {}
    fed_by: dict[str, set[str]] = {}
    for pipeline_id, pipeline in service["pipelines"].items():
        assert pipeline_id.split("/")[0] == "traces", pipeline_id
        assert set(pipeline) <= {"receivers", "processors", "exporters"}, pipeline_id
        assert pipeline["receivers"], pipeline_id
        assert pipeline["exporters"], pipeline_id
        for section in ("receivers", "processors", "exporters"):
            ids = pipeline.get(section, [])
            assert len(ids) == len(set(ids)), (pipeline_id, ids)
            for component_id in ids:
                if section == "processors" or component_id not in connectors:
                    used[section].add(component_id)
                    continue
                used["connectors"].add(component_id)
                side = feeds if section == "receivers" else fed_by
                side.setdefault(component_id, set()).add(pipeline_id)
    for section in SECTIONS:
        defined = set(config.get(section) or {})
        assert used[section] <= defined, (section, "undefined", used[section] - defined)
        assert defined <= used[section], (section, "unused", defined - used[section])
        for component_id in defined:
            assert component_id.split("/")[0] in KNOWN_TYPES[section], component_id
    return feeds, fed_by


def _routing_table(settings: dict[str, Any], fed: set[str]) -> None:
    """The routing table and default pipelines name exactly the pipelines the connector
    feeds; each route has one condition or statement, in a context of traces."""
    assert set(settings) <= ROUTING_KEYS, set(settings) - ROUTING_KEYS
    named = set(settings.get("default_pipelines", []))
    for route in settings["table"]:
        assert set(route) <= ROUTE_KEYS, set(route) - ROUTE_KEYS
        assert ("condition" in route) != ("statement" in route), route  # exactly one
        assert route.get("context", "resource") in TRACE_CONTEXTS, route
        assert route["pipelines"], route
        named |= set(route["pipelines"])
    assert named == fed, named ^ fed


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_collector_config_is_wired_consistently(name: str) -> None:
    _wiring(_config(name))


def test_the_wiring_check_catches_broken_configs() -> None:
    config = _config("otelcol-routing.yaml")
    config["service"]["pipelines"]["traces/llm"]["exporters"] = ["otlp/tempo"]
    with pytest.raises(AssertionError, match="undefined"):
        _wiring(config)
    config = _config("otelcol-routing.yaml")
    config["service"]["pipelines"]["traces/plain"]["receivers"] = ["routing/other"]
    with pytest.raises(AssertionError):
        _wiring(config)
    config = _config("otelcol-routing.yaml")
    config["connectors"]["routing"]["default_pipelines"] = ["traces/nowhere"]
    with pytest.raises(AssertionError):
        _wiring(config)
    config = _config("otelcol-routing.yaml")
    config["connectors"]["routing"]["match_once"] = False  # removed in v0.120.0
    with pytest.raises(AssertionError):
        _wiring(config)


# --- what the routed configs route where ---------------------------------------------------------
@pytest.mark.parametrize("name", ROUTED)
def test_llm_spans_go_to_otel_llm_and_the_rest_straight_to_the_backend(name: str) -> None:
    config = _config(name)
    pipelines = config["service"]["pipelines"]
    settings = config["connectors"]["routing"]
    route = _route(config)
    # A span matching the route goes to otel-llm only: `action` left to its default (move).
    assert "action" not in route
    assert settings["error_mode"] == "ignore"  # a failed condition: forwarded, not dropped
    (llm,) = route["pipelines"]
    (plain,) = settings["default_pipelines"]
    # Full batches after the split, on both sides.
    assert pipelines[llm]["processors"] == ["batch"]
    assert pipelines[plain]["processors"] == ["batch"]
    assert config["processors"]["batch"]["send_batch_size"] == 512
    (backend,) = pipelines[plain]["exporters"]
    assert config["exporters"][backend]["endpoint"] == "jaeger:4317"
    _queue_and_retry(config["exporters"][backend])
    # otel-llm forwards what it priced to the same backend.
    assert _compose_flag("otel-llm", "--upstream") == "jaeger:4317"
    (towards_otel_llm,) = pipelines[llm]["exporters"]
    exporter = config["exporters"][towards_otel_llm]
    grpc_port = _compose_otel_llm_port("--grpc-endpoint")
    if towards_otel_llm == "loadbalancing":
        assert exporter["routing_key"] == "traceID"
        _queue_and_retry(exporter["protocol"]["otlp"])
        assert set(exporter["resolver"]) == {"static"}  # dns: documented, commented out
        hostnames = exporter["resolver"]["static"]["hostnames"]
        assert len(set(hostnames)) == len(hostnames) >= 2
        assert all(re.fullmatch(rf"otel-llm-\d+:{grpc_port}", h) for h in hostnames), hostnames
        assert "# dns:" in (CONFIG_DIR / name).read_text()
    else:
        assert exporter["endpoint"] == f"otel-llm:{grpc_port}"
        _queue_and_retry(exporter)


# --- OTTL plausibility (lexical; not otelcol's parser) ------------------------------------------
_TOKEN = re.compile(
    r"""\s+|(?P<path>(?:resource\.|span\.)?attributes\[(?P<key>"(?:[^"\\]|\\.)*")\])"""
    r"""|(?P<string>"(?:[^"\\]|\\.)*")|(?P<number>-?\d+(?:\.\d+)?)"""
    r"""|(?P<op>==|!=|<=|>=|<|>)|(?P<word>\b(?:and|or|not|nil|true|false)\b)"""
    r"""|(?P<call>[A-Z][A-Za-z]*\()|(?P<paren>[()])|(?P<comma>,)"""
    r"""|(?P<field>\b(?:name|kind|status\.code|trace_id\.string|span_id\.string)\b)"""
)


def ottl_problems(condition: str) -> list[str]:
    """What makes ``condition`` implausible as an OTTL condition: unbalanced quotes, brackets
    or parentheses, an unquoted attribute key, an unknown token."""
    problems = []
    if (condition.count('"') - condition.count('\\"')) % 2:
        problems.append("unbalanced double quotes")
    depth = 0
    position = 0
    while position < len(condition):
        match = _TOKEN.match(condition, position)
        if match is None or match.end() == position:
            problems.append(f"unexpected text at {position}: {condition[position:][:20]!r}")
            break
        if match.group("call"):
            depth += 1
        elif match.group("paren"):
            depth += 1 if match.group("paren") == "(" else -1
            if depth < 0:
                problems.append(f"unbalanced ')' at {position}")
                break
        position = match.end()
    if depth > 0:
        problems.append("unbalanced '('")
    if re.search(r"attributes\[(?!\")", condition):
        problems.append("an attribute key that is not a quoted string")
    if condition.count("[") != condition.count("]"):
        problems.append("unbalanced brackets")
    return problems


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_ottl_conditions_are_plausible(name: str) -> None:
    config = _config(name)
    for settings in (config.get("connectors") or {}).values():
        for route in settings["table"]:
            text = route.get("condition") or route["statement"].removeprefix("route() where ")
            assert ottl_problems(text) == [], (name, text)
    # The commented alternative route of the README parses too.
    assert ottl_problems("IsRootSpan()") == []


@pytest.mark.parametrize(
    "broken",
    [
        'attributes["gen_ai.operation.name" != nil',
        "attributes[gen_ai.operation.name] != nil",
        'attributes["gen_ai.operation.name"] != nil or (attributes["x"] != nil',
        'attributes["a"] != nil) or attributes["b"] != nil',
        'attributes["a] != nil',
        'attributes["a"] != nil || attributes["b"] != nil',
    ],
)
def test_the_ottl_check_rejects_broken_conditions(broken: str) -> None:
    assert ottl_problems(broken)


# --- otel-llm behind the routing: the same calls, the same cost tree ----------------------------
def _app_trace() -> ExportTraceServiceRequest:
    """One export of an application with no otel-llm inside (real SDK spans, OTLP-encoded): an
    HTTP request running an agent, whose steps are plain spans, two instrumentations of one
    call (nested), an OpenInference agent with its LLM span, a legacy OpenLLMetry call, a tool
    and database spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "routed-app"}), shutdown_on_exit=False
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    canonical = dict(CASES[0][4])  # the canonical OpenAI chat of tests/test_dialects.py
    with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("SELECT orders", attributes={"db.system.name": "pg"}):
            pass
        agent = {sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT, sc.GEN_AI_AGENT_NAME: "shop"}
        with tracer.start_as_current_span("invoke_agent shop", attributes=agent):
            with tracer.start_as_current_span("plan step"):  # a plain span between
                with tracer.start_as_current_span("chat gpt-4o", attributes=canonical):
                    # The SDK's own span inside the framework's: one call, counted once.
                    with tracer.start_as_current_span("chat gpt-4o", attributes=canonical):
                        pass
            tool = {sc.GEN_AI_OPERATION_NAME: sc.OPERATION_EXECUTE_TOOL}
            with tracer.start_as_current_span("execute_tool search", attributes=tool):
                with tracer.start_as_current_span("GET /search", kind=SpanKind.CLIENT):
                    pass
        kind = {"openinference.span.kind": "AGENT"}
        with tracer.start_as_current_span("support-agent", attributes=kind):
            for case_id, attributes, *_ in CASES:
                if case_id in ("openinference-anthropic", "openllmetry-openai-0.47"):
                    with tracer.start_as_current_span(case_id, attributes=attributes):
                        pass
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans())


def _split(request: ExportTraceServiceRequest) -> tuple[ExportTraceServiceRequest, int]:
    """What the routing connector sends to otel-llm (the generated condition, per span), and
    how many spans went straight to the backend."""
    routed = ExportTraceServiceRequest()
    bypassed = 0
    for resource_spans in request.resource_spans:
        target = routed.resource_spans.add(resource=resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            scope = target.scope_spans.add(scope=scope_spans.scope)
            for span in scope_spans.spans:
                if _routed(attributes_of(span.attributes)):
                    scope.spans.append(span)
                else:
                    bypassed += 1
    return routed, bypassed


def _enrich(request: ExportTraceServiceRequest) -> EnrichResult:
    recorder = PrometheusRecorder.for_registry(CollectorRegistry())
    pricer = Pricer(PricingOptions(price_book=PriceBook(), max_tokens=10**8))
    return Enricher(pricer, recorder, tree_spans=True).enrich(request)


def test_otel_llm_behind_the_routing_prices_and_keeps_what_it_did_but_plain_roots() -> None:
    everything = _app_trace()
    routed, bypassed = _split(everything)
    assert bypassed == 4  # the HTTP root, the database, the plan step, the tool's HTTP call
    alone, behind = _enrich(everything), _enrich(routed)

    def calls(result: EnrichResult) -> list[tuple[bytes, bytes, Any]]:
        return [
            (c.span.span_id, c.span.SerializeToString(), c.derived.priced) for c in result.calls
        ]

    # The same calls, priced the same, forwarded byte for byte the same (the outer span of the
    # nested pair marked counted_in in both: parent and child were routed together).
    assert calls(behind) == calls(alone)
    assert len(behind.calls) == 3
    assert all(isinstance(call.derived.priced, Cost) for call in behind.calls)
    counted_in = [
        span
        for resource_spans in routed.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
        if sc.OTEL_LLM_CALL_COUNTED_IN in attributes_of(span.attributes)
    ]
    assert len(counted_in) == 1
    # The cost tree's agents and tools: the same. Its root: lost when the root is a plain span
    # (the README says so; route IsRootSpan() too to keep it).
    tree_alone = {(s.span.span_id, s.kind, s.agent_name) for s in alone.tree}
    tree_behind = {(s.span.span_id, s.kind, s.agent_name) for s in behind.tree}
    roots = {entry for entry in tree_alone if entry[1] == "root"}
    assert len(roots) == 1
    assert tree_behind == tree_alone - roots
    assert {kind for _, kind, _ in tree_behind} == {"agent", "tool"}
    assert {name for _, kind, name in tree_behind if kind == "agent"} == {"shop", "support-agent"}
