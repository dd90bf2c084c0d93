"""The collector's request path with 1,000 policies, side by side with none (issue 14).

A real ``CollectorService`` (no listeners, no queue: nothing but the request path) accepts the
same pre-serialized OTLP requests -- each parsed from bytes, priced, measured and, with a
policy file, evaluated against it -- in interleaved rounds (A B, B A, ...) so drift on a
shared machine spreads over both. The requests hold ``--spans`` GenAI calls each, spread over
``--scopes`` distinct (service, project, user, model) values.

Variants:

* ``none``: no policy file;
* ``1000``: 1,000 policies -- 960 per project (a day budget in USD, a token budget on a rolling
  24 h, one per project of 960), 30 per model glob with call rules, 10 over every call;
* ``1000-cold``: the same policies, but every call is of a project never seen before, so
  the policies a call is in are worked out for each call (the per-scope cache never helps):
  the worst case;
* ``1000-sync``: ``1000`` as replicas on one store run it (``policy_sync_interval`` > 0): each
  evaluated call is also remembered until the call sink stores it (``follow_store``); after
  each cell the calls are reported stored, as the call feeder does within milliseconds (its
  side, off the request path, is not measured).

Every call has a user of its own: no policy names users, so they make no plans of their own.

The figure is calls per second of the request path, and the ratio to ``none``: the policies'
share of the collector's CPU per call. The request path here excludes the network, the disk
queue and the call log, so the real service's ratio is closer to 1 than this one.

    .venv/bin/python benchmarks/policy_evaluation.py
    .venv/bin/python benchmarks/policy_evaluation.py --rounds 9 --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from otel_llm.collector.config import CollectorConfig  # noqa: E402
from otel_llm.collector.service import CollectorService  # noqa: E402

PROJECTS = 960
MODELS = ("gpt-4o", "gpt-4o-mini", "o1", "claude-3-5-sonnet", "claude-3-haiku")
_ids = itertools.count(1)


def policy_file(directory: Path) -> Path:
    lines = ["policies:"]
    for index in range(PROJECTS):
        lines.append(
            f"  - {{name: project-{index}, scope: {{project: p{index}}}, action: block, "
            "budgets: [{window: day, usd: 100, warn_at: 80}, {window: 24h, tokens: 10000000}]}"
        )
    for index in range(30):
        lines.append(
            f"  - {{name: model-{index}, scope: {{model: 'gpt-4{index}*'}}, action: alert, "
            "calls: {max_tokens: 100000, max_cost_usd: 5}}"
        )
    for index in range(10):
        lines.append(
            f"  - {{name: all-{index}, scope: '*', "
            "budgets: [{window: month, usd: 100000}], calls: {denied_models: ['o1-pro*']}}"
        )
    path = directory / "policies.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _attribute(key: str, value: str | int) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    return KeyValue(key=key, value=AnyValue(int_value=value))


def requests(count: int, spans: int, scopes: int, *, fresh: bool) -> list[bytes]:
    """``count`` serialized requests of ``spans`` GenAI spans each."""
    now = time.time_ns()
    out = []
    for _ in range(count):
        resource = ResourceSpans()
        resource.resource.attributes.append(_attribute("service.name", "shop"))
        scope_spans = ScopeSpans()
        for index in range(spans):
            n = next(_ids)
            which = n % scopes
            project = f"fresh-{n}" if fresh else f"p{which % PROJECTS}"
            span = Span(
                name="chat",
                trace_id=n.to_bytes(16, "big"),
                span_id=n.to_bytes(8, "big"),
                start_time_unix_nano=now + index,
                end_time_unix_nano=now + index + 10**8,
                kind=Span.SPAN_KIND_CLIENT,
            )
            span.attributes.extend(
                [
                    _attribute("gen_ai.operation.name", "chat"),
                    _attribute("gen_ai.provider.name", "openai"),
                    _attribute("gen_ai.request.model", MODELS[which % len(MODELS)]),
                    _attribute("gen_ai.usage.input_tokens", 1000 + which),
                    _attribute("gen_ai.usage.output_tokens", 200),
                    _attribute("otel_llm.context.project_id", project),
                    _attribute("otel_llm.context.user_id", f"user-{n}"),
                ]
            )
            scope_spans.spans.append(span)
        resource.scope_spans.append(scope_spans)
        out.append(ExportTraceServiceRequest(resource_spans=[resource]).SerializeToString())
    return out


def service(policies: Path | None) -> CollectorService:
    config = CollectorConfig.from_settings(
        grpc_endpoint="none",
        http_endpoint="none",
        metrics_endpoint="none",
        policies_file=str(policies) if policies else "none",
    )
    return CollectorService(config, registry=CollectorRegistry()).start()


def run(target: CollectorService, payloads: list[bytes]) -> float:
    """Seconds of CPU to accept every payload as the receivers do (parse, then accept)."""
    accept = target._accept  # the request path itself, without a socket
    start = time.thread_time_ns()
    for payload in payloads:
        accept(ExportTraceServiceRequest.FromString(payload), payload, "grpc")
    return (time.thread_time_ns() - start) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=40, help="requests per cell per round")
    parser.add_argument("--spans", type=int, default=100, help="GenAI spans per request")
    parser.add_argument("--scopes", type=int, default=2000, help="distinct scopes (warm runs)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        path = policy_file(Path(directory))
        targets = {"none": service(None), "1000": service(path), "1000-cold": service(path)}
        targets["1000-sync"] = service(path)
        synced = targets["1000-sync"].policies
        assert synced is not None
        synced.engine.follow_store()
        warm = requests(args.requests, args.spans, args.scopes, fresh=False)
        calls = args.requests * args.spans
        for name, target in targets.items():  # warm-up: prices cached, scopes seen
            run(target, warm if name != "1000-cold" else warm[:2])
        seconds: dict[str, list[float]] = {name: [] for name in targets}
        order = list(targets)
        for round_ in range(args.rounds):
            # New span ids every round: a request sent again is (rightly) not counted again.
            warm = requests(args.requests, args.spans, args.scopes, fresh=False)
            cold = requests(args.requests, args.spans, args.scopes, fresh=True)
            for name in order if round_ % 2 == 0 else reversed(order):
                payloads = cold if name == "1000-cold" else warm
                seconds[name].append(run(targets[name], payloads))
                if name == "1000-sync":  # the feeder stored them (what it reports, by id)
                    synced.engine.stored(list(synced.engine._pending or ()))
        engine = targets["1000"].policies
        assert engine is not None
        evaluated = sum(p["budgets"][0]["calls"] for p in engine.engine.snapshot()[:PROJECTS])
        for target in targets.values():
            target.stop()
    if evaluated != calls * (args.rounds + 1):  # the warm-up's and each round's
        print(f"the project budgets counted {evaluated} calls, not {calls * (args.rounds + 1)}")
        return 1

    rate = {name: calls / statistics.median(values) for name, values in seconds.items()}
    result = {
        "calls_per_round": calls,
        "rounds": args.rounds,
        "calls_per_second": {name: round(value) for name, value in rate.items()},
        "ratio_to_none": {name: round(rate[name] / rate["none"], 3) for name in rate},
        "us_per_call": {name: round(1e6 / value, 2) for name, value in rate.items()},
        "project_budget_calls_counted": evaluated,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{calls} GenAI calls per cell per round, {args.rounds} rounds, CPU time, medians")
    print(f"{'variant':<10} {'calls/s':>10} {'µs/call':>9} {'ratio':>7}")
    for name, value in rate.items():
        print(f"{name:<10} {value:>10,.0f} {1e6 / value:>9.2f} {value / rate['none']:>7.3f}")
    print(f"(the 960 project budgets counted {evaluated} calls: the policies did evaluate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
