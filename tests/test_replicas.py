"""Three ``otel-llm collector`` replicas writing one PostgreSQL store (issue 16, item 4).

A driver stands in for the OpenTelemetry Collector's ``loadbalancing`` exporter with
``routing_key: traceID``: a consistent hash ring of the replicas (``HashRing``, the exporter's
algorithm) sends each trace's spans to one replica. It sends them as an application fleet
would: a trace's spans in several requests, children before their parents, requests of
different traces interleaved on three connections at once; some requests twice at once (a
client retrying), some spans again at the end (a late redelivery to the same replica), and one
call to a different replica (the ring changed: its owner left). The driver keeps the exact
sums (integer nano-USD from the price overrides) and the test asserts: every call stored
once, stats and daily aggregates equal to those sums, each trace's roll-up exact, and every
budget's spend the same on the three replicas -- the exact total -- within the resync interval
(``policy_sync_interval``), a block policy blocking on all three.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support.collector_process import CollectorProcess
from tests.support.postgres import PostgresCluster, pg_cluster  # noqa: F401 - fixture
from tests.test_traces import API_KEY, agent, ask, call, post, span, usd

REPLICAS = ("otel-llm-0:4317", "otel-llm-1:4317", "otel-llm-2:4317")
"""The endpoints the load balancer's ring is built from (as in its ``static`` resolver)."""
SYNC = 0.5
"""The replicas' ``policy_sync_interval``, seconds."""
TRACES = 45
DAY_NS = 86_400 * 10**9

PRICES = """
overrides:
  - match: m-big
    provider: openai
    prices: {input_mtok: 3.0, output_mtok: 15.0}
  - match: m-small
    provider: openai
    prices: {input_mtok: 0.15, output_mtok: 0.6}
"""
NANOS_PER_TOKEN = {"m-big": (3000, 15000), "m-small": (150, 600)}
"""Nano-USD per input and output token ($ per million tokens x 1000); m-unknown: no price."""

POLICIES = """
policies:
  - name: everything
    scope: "*"
    budgets: [{window: day, usd: 1000}, {window: 2h, usd: 1000, tokens: 100000000}]
  - name: team-a
    scope: {project: team-a}
    budgets: [{window: day, usd: 0.01}]
    action: block
"""


class HashRing:
    """The ``loadbalancing`` exporter's consistent hash ring (its ``consistent_hashing.go``):
    each endpoint at 100 positions of 36,000 -- the CRC-32 of the endpoint followed by the
    point's index (4 bytes, little-endian), a taken position probed forward up to 10 times --
    and a trace at the first position at or after the CRC-32 of its 16-byte id, wrapping."""

    POSITIONS, WEIGHT, PROBES = 36_000, 100, 10

    def __init__(self, endpoints: tuple[str, ...]):
        taken: dict[int, str] = {}
        for endpoint in endpoints:
            for index in range(self.WEIGHT):
                crc = zlib.crc32(index.to_bytes(4, "little"), zlib.crc32(endpoint.encode()))
                position, probed = crc % self.POSITIONS, 0
                while position in taken and probed < self.PROBES:
                    position, probed = (position + 1) % self.POSITIONS, probed + 1
                if probed < self.PROBES:
                    taken[position] = endpoint
        self._positions = sorted(taken)
        self._endpoints = [taken[p] for p in self._positions]

    def endpoint_for(self, trace_id: bytes) -> str:
        index = bisect.bisect_left(self._positions, zlib.crc32(trace_id) % self.POSITIONS)
        return self._endpoints[index % len(self._endpoints)]


@dataclass
class Expected:
    """What the driver sent, each call once: the exact sums the store must hold."""

    calls: dict[str, tuple[str, str, int | None, int, int]] = field(default_factory=dict)
    """Call id -> (project, model, nano-USD or None, input tokens, output tokens)."""
    started: dict[str, int] = field(default_factory=dict)
    """Call id -> its start (ns since the epoch: the call log's created_at)."""
    traces: dict[str, list[str]] = field(default_factory=dict)
    """Trace id -> its call ids."""

    def add(
        self, trace: str, made: Span, project: str, model: str, tokens: tuple[int, int]
    ) -> None:
        per_token = NANOS_PER_TOKEN.get(model)
        nanos = None if per_token is None else tokens[0] * per_token[0] + tokens[1] * per_token[1]
        call_id = f"{trace}-{made.span_id.hex()}"
        self.calls[call_id] = (project, model, nanos, *tokens)
        self.started[call_id] = made.start_time_unix_nano
        self.traces.setdefault(trace, []).append(call_id)

    def nanos(self, ids: Any = None, **where: str) -> int:
        return sum(c[2] or 0 for c in self._chosen(ids, where))

    def tokens(self, ids: Any = None, **where: str) -> int:
        return sum(c[3] + c[4] for c in self._chosen(ids, where))

    def _chosen(
        self, ids: Any, where: dict[str, str]
    ) -> list[tuple[str, str, int | None, int, int]]:
        chosen = self.calls.values() if ids is None else [self.calls[i] for i in ids]
        return [
            c
            for c in chosen
            if all(c[("project", "model").index(k)] == v for k, v in where.items())
        ]


def build_traces(rng: random.Random) -> tuple[dict[str, list[Span]], Expected]:
    """Each trace: a root, an agent under it, 2-5 calls under the agent (one model unpriced)."""
    expected = Expected()
    traces: dict[str, list[Span]] = {}
    for number in range(TRACES):
        trace = f"{rng.getrandbits(128):032x}"
        project = ("team-a", "team-b", "team-c")[number % 3]
        root, planner = f"{rng.getrandbits(64) | 1:016x}", f"{rng.getrandbits(64) | 1:016x}"
        spans = [
            span(trace, root, None, "POST /chat", {"http.request.method": "POST"}, 0.0),
            agent(trace, planner, root, "planner", 0.01),
        ]
        for index in range(rng.randint(2, 5)):
            model = rng.choice(("m-big", "m-small", "m-small", "m-unknown"))
            tokens = (rng.randint(1, 5000), rng.randint(0, 2000))
            made = call(
                trace, f"{rng.getrandbits(64) | 1:016x}", planner, model, tokens,
                0.02 + index / 100, **{"otel_llm.context.project_id": project},
            )  # fmt: skip
            spans.append(made)
            expected.add(trace, made, project, model, tokens)
        traces[trace] = spans
    return traces, expected


def requests_of(rng: random.Random, spans: list[Span]) -> list[list[Span]]:
    """A trace's spans as its services would export them: children before their parents (the
    calls end first, in any order, the root last), in 2-4 requests."""
    calls = spans[2:]
    rng.shuffle(calls)
    ordered = [*calls, *reversed(spans[:2])]
    cuts = sorted(rng.sample(range(1, len(ordered)), k=rng.randint(1, 3)))
    return [ordered[a:b] for a, b in zip([0, *cuts], [*cuts, len(ordered)], strict=True)]


def start_replica(
    collectors: list[CollectorProcess], tmp_path: Path, store: str, index: int
) -> CollectorProcess:
    collector = CollectorProcess(
        [
            "--grpc-endpoint=none",
            "--http-endpoint=127.0.0.1:0",
            "--metrics-endpoint=127.0.0.1:0",
            f"--queue-dir={tmp_path / f'queue{index}'}",
            f"--call-log-store={store}",
            "--call-log-api-endpoint=127.0.0.1:0",
            f"--price-overrides={tmp_path / 'prices.yaml'}",
            f"--policies={tmp_path / 'policies.yaml'}",
            f"--policy-sync-interval={SYNC}",
        ],
        {
            "XDG_STATE_HOME": str(tmp_path / f"state{index}"),
            "OTEL_LLM_CALL_LOG_API_KEYS": f"t={API_KEY}",
            "OTEL_LLM_CALL_LOG_RATE_LIMIT_LIST": "100000",  # the test polls
        },
    )
    collectors.append(collector)
    assert collector.http, collector.text
    assert collector.api, collector.text
    return collector


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition`` held (fails after ``timeout``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.1)
    return time.monotonic() - started


def drive(
    rng: random.Random, replicas: dict[str, CollectorProcess], traces: dict[str, list[Span]]
) -> float:
    """Send every trace to its replica as the load balancer would, with duplicates; returns
    when the last span was sent (``time.monotonic()``)."""
    ring = HashRing(REPLICAS)
    lanes: dict[str, list[list[Span]]] = defaultdict(list)
    for trace, spans in traces.items():
        owner = ring.endpoint_for(bytes.fromhex(trace))
        for request in requests_of(rng, spans):
            lanes[owner].append(request)
            if rng.random() < 0.15:  # a client retrying a request whose reply it lost
                lanes[owner].append(request)
    assert all(len(lanes[endpoint]) > 10 for endpoint in REPLICAS), "a replica gets no traffic"
    for lane in lanes.values():
        rng.shuffle(lane)  # traces interleaved; a trace's requests in any order

    def send(endpoint: str) -> None:
        for request in lanes[endpoint]:
            post(replicas[endpoint].http, "agents", request)

    senders = [threading.Thread(target=send, args=(endpoint,)) for endpoint in REPLICAS]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(60)
    for trace in rng.sample(sorted(traces), 5):  # calls again, same replica, after the rest
        post(replicas[ring.endpoint_for(bytes.fromhex(trace))].http, "agents", traces[trace][2:])
    # The ring changes (the owner of a trace leaves): one of its calls, stored already,
    # reaches the replica that owns the trace now.
    moved = bytes.fromhex(sorted(traces)[0])
    owner = ring.endpoint_for(moved)
    now_owner = HashRing(tuple(e for e in REPLICAS if e != owner)).endpoint_for(moved)
    assert now_owner != owner
    post(replicas[now_owner].http, "agents", [traces[moved.hex()][2]])
    return time.monotonic()


def spends(replicas: dict[str, CollectorProcess]) -> list[dict[tuple[str, str], tuple[int, int]]]:
    """Each replica's budgets: (policy, budget) -> (nano-USD, tokens) spent."""
    seen = []
    for replica in replicas.values():
        assert replica.api is not None
        status, answer = ask(replica.api, "/api/v1/policies")
        assert status == 200, answer
        seen.append(
            {
                (policy["name"], budget["name"]): (budget["spent_nanos"], budget["spent_tokens"])
                for policy in answer["policies"]
                for budget in policy["budgets"]
            }
        )
    return seen


def check_store(store: str, api: str, expected: Expected) -> None:
    """Each call once; stats and the daily aggregates equal to the driver's sums."""
    with psycopg.connect(store) as connection:
        rows = connection.execute("SELECT id, cost_nusd FROM llm_calls").fetchall()
        daily = connection.execute(
            "SELECT SUM(requests), SUM(cost_nusd), SUM(total_tokens), SUM(unpriced) "
            "FROM llm_call_daily"
        ).fetchone()
    assert sorted(row[0] for row in rows) == sorted(expected.calls)  # none twice, none missing
    assert dict(rows) == {call_id: c[2] for call_id, c in expected.calls.items()}
    unpriced = sum(1 for c in expected.calls.values() if c[2] is None)
    assert daily is not None
    assert tuple(int(value) for value in daily) == (
        len(expected.calls), expected.nanos(), expected.tokens(), unpriced
    )  # fmt: skip

    status, stats = ask(api, "/api/v1/calls/stats", group_by="model")
    assert status == 200, stats
    totals = stats["stats"]
    assert totals["total_requests"] == len(expected.calls)
    assert usd(totals["total_cost"]) == Decimal(expected.nanos()) / 10**9
    assert totals["total_tokens"] == expected.tokens()
    by_model = {group["group"]: group for group in stats["groups"]}
    for model in ("m-big", "m-small", "m-unknown"):
        chosen = [i for i, c in expected.calls.items() if c[1] == model]
        assert by_model[model]["total_requests"] == len(chosen)
        assert by_model[model]["total_tokens"] == expected.tokens(chosen)
        if model != "m-unknown":
            assert usd(by_model[model]["total_cost"]) == Decimal(expected.nanos(chosen)) / 10**9
    assert by_model["m-unknown"]["total_cost"] is None  # unknown, never 0
    status, days = ask(api, "/api/v1/calls/stats", group_by="day")
    assert status == 200, days
    per_day: dict[str, list[str]] = defaultdict(list)
    for call_id, started in expected.started.items():
        per_day[time.strftime("%Y-%m-%d", time.gmtime(started // 10**9))].append(call_id)
    assert {group["group"][:10]: group["total_requests"] for group in days["groups"]} == {
        day: len(ids) for day, ids in per_day.items()
    }
    for group in days["groups"]:
        chosen = per_day[group["group"][:10]]
        assert usd(group["total_cost"]) == Decimal(expected.nanos(chosen)) / 10**9


def check_traces(replicas: dict[str, CollectorProcess], expected: Expected) -> None:
    """Each trace's roll-up, read from any replica: its calls and their exact cost."""
    readers = [replica.api for replica in replicas.values()]
    for number, (trace, ids) in enumerate(expected.traces.items()):
        reader = readers[number % len(readers)]
        assert reader is not None
        status, answer = ask(reader, f"/api/v1/traces/{trace}")
        assert status == 200, answer
        priced = [i for i in ids if expected.calls[i][2] is not None]
        assert (answer["calls"], answer["unpriced_calls"]) == (len(ids), len(ids) - len(priced))
        assert usd(answer["total_cost"]) == Decimal(expected.nanos(ids)) / 10**9
        assert answer["root_span_name"] == "POST /chat"


def test_three_replicas_on_one_postgresql_store_each_call_once_and_agree_on_the_spend(
    pg_cluster: PostgresCluster,  # noqa: F811 - the fixture
    tmp_path: Path,
    collectors: list[CollectorProcess],
) -> None:
    (tmp_path / "prices.yaml").write_text(PRICES)
    (tmp_path / "policies.yaml").write_text(POLICIES)
    store = pg_cluster.create_database()
    replicas = {
        endpoint: start_replica(collectors, tmp_path, store, index)
        for index, endpoint in enumerate(REPLICAS)
    }
    rng = random.Random(16)  # noqa: S311 - a reproducible load, not a secret
    traces, expected = build_traces(rng)
    sent = drive(rng, replicas, traces)

    # The budgets: the same spend on every replica -- the exact total -- within the interval
    # (plus the time the last calls take to be stored). Spans are dated ~10 minutes ago:
    # near midnight some are in yesterday's day window.
    midnight = time.time_ns() // DAY_NS * DAY_NS
    today = [i for i, started in expected.started.items() if started >= midnight]
    exact = {
        ("everything", "day"): (expected.nanos(today), expected.tokens(today)),
        ("everything", "2h"): (expected.nanos(), expected.tokens()),
        ("team-a", "day"): (
            expected.nanos(today, project="team-a"),
            expected.tokens(today, project="team-a"),
        ),
    }
    wait_for(lambda: all(seen == exact for seen in spends(replicas)), SYNC + 10)
    agreed = time.monotonic() - sent
    print(f"the 3 replicas agreed on the exact spend {agreed:.2f} s after the last span")
    assert agreed < SYNC + 5  # the interval, the storing, and a loaded 2-core machine
    assert exact[("team-a", "day")][0] > 10_000_000  # over its $0.01: blocked on every replica
    for replica in replicas.values():
        assert replica.api is not None
        status, enforcement = ask(replica.api, "/api/v1/policies", view="enforcement")
        assert status == 200
        assert [(p["name"], p["blocked"]) for p in enforcement["policies"]] == [("team-a", True)]

    api = replicas[REPLICAS[0]].api
    assert api is not None
    check_store(store, api, expected)
    check_traces(replicas, expected)
    for collector in collectors:
        assert collector.terminate() == 0
