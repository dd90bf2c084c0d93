"""Richer call-log queries over real HTTP against real stores (SQLite, PostgreSQL): several
values per filter, operators in a POST query, the newer filters, sorts on several keys, gateway
model names, the seeds' aliases (days, from/to), stats' by_model and the enhanced list.

Every expectation is computed here from the records written, not from the store's SQL.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest

from otel_llm.calllog.api import CallLogAPI
from otel_llm.calllog.catalogue import COMPARED, FIELDS, SORTS
from otel_llm.calllog.enhanced import rate_per_million
from otel_llm.calllog.paramvalues import MAX_VALUES
from otel_llm.calllog.record import NANO, CallRecord
from otel_llm.calllog.store import open_store
from tests.support.postgres import BACKENDS, empty_store_url, pg_cluster  # noqa: F401 - fixture
from tests.test_calllog_api import INJECTIONS, KEYS, UNLIMITED, Client, make_records

# Seed 001's enhanced example: 5,000 input tokens at $5/M, 2,500 output at $15/M.
PRICED = dataclasses.replace(
    make_records(1)[0],
    id=f"{99:032x}-{99:016x}",
    trace_id=f"{99:032x}",
    span_id=f"{99:016x}",
    created_at=datetime.now(UTC) - timedelta(minutes=5),
    completed_at=None,
    model="gpt-4o",
    provider="openai",
    status="success",
    status_code=200,
    error_type=None,
    error_message=None,
    input_tokens=5000,
    output_tokens=2500,
    total_tokens=7500,
    cost=Decimal("0.0625"),
    cost_input=Decimal("0.025"),
    cost_output=Decimal("0.0375"),
    pipeline_step=None,
)
RECORDS = [
    dataclasses.replace(
        r,
        pipeline_step=None if i % 3 == 2 else ("plan", "act")[i % 2],
        billing=("credits", "own_key", None)[i % 3],
    )
    for i, r in enumerate(make_records())
] + [PRICED]


@pytest.fixture(scope="module", params=BACKENDS)
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    url = empty_store_url(request.param, request, tmp_path_factory.mktemp("queries"))
    store = open_store(url)
    try:
        assert store.write(RECORDS) == len(RECORDS)
        with CallLogAPI(store, keys=KEYS, limits=UNLIMITED) as served:
            yield Client(served.url)
    finally:
        store.close()


def ids(answer: dict[str, Any]) -> list[str]:
    return [call["id"] for call in answer["calls"]]


def newest(matches: Callable[[CallRecord], bool]) -> list[str]:
    found = [r for r in RECORDS if matches(r)]
    return [r.id for r in sorted(found, key=lambda r: (r.created_at, r.id), reverse=True)]


def post(api: Client, query: dict[str, Any], path: str = "") -> dict[str, Any]:
    answer: dict[str, Any] = api.ok(path, method="POST", body={"query": query, "limit": 100})
    return answer


def count(api: Client, query: dict[str, Any]) -> int:
    return int(api.ok("/count", method="POST", body={"query": query})["count"])


# --- several values, exclusions, gateway names ---------------------------------------------------


def test_billing_mode_filters_list_and_count(api: Client) -> None:
    expected = newest(lambda r: r.billing == "credits")
    assert 0 < len(expected) < len(RECORDS)
    assert ids(api.ok("?billing=credits&limit=100")) == expected
    assert ids(post(api, {"billing": {"$in": ["credits"]}})) == expected
    assert api.ok("/count?billing=own_key") == {
        "count": len([r for r in RECORDS if r.billing == "own_key"])
    }
    assert "billing" in api.error(400, "?billing=free")
    assert "billing" in api.error(400, "?billing=credits'%20OR%201=1--")


def test_several_values_in_the_url_and_in_the_body(api: Client) -> None:
    wanted = {"gpt-4o", "claude-sonnet-4"}
    expected = newest(lambda r: r.model in wanted)
    assert 0 < len(expected) < len(RECORDS)
    assert ids(api.ok("?model=gpt-4o,claude-sonnet-4&limit=100")) == expected
    assert ids(post(api, {"model": {"$in": sorted(wanted)}})) == expected
    assert ids(post(api, {"model": sorted(wanted)})) == expected
    assert api.ok("/count?model=gpt-4o,claude-sonnet-4") == {"count": len(expected)}
    stats = api.ok("/stats?model=gpt-4o,claude-sonnet-4")["stats"]
    assert stats["total_requests"] == len(expected)
    # two lists: a call must be in both
    both = {"model": {"$in": ["gpt-4o", "gemini-2.0-flash"], "$eq": "gpt-4o"}}
    assert ids(post(api, both)) == newest(lambda r: r.model == "gpt-4o")
    assert post(api, {"model": {"$in": ["gpt-4o"], "$eq": "gemini-2.0-flash"}})["calls"] == []
    assert ids(post(api, {"status": {"$in": ["error"]}})) == newest(lambda r: r.status == "error")


def test_ne_and_nin_exclude_values_and_keep_calls_without_one(api: Client) -> None:
    # project None (one call) is not "alpha": it stays
    expected = newest(lambda r: r.project != "alpha")
    assert any(r.project is None for r in RECORDS)
    assert ids(post(api, {"project": {"$ne": "alpha"}})) == expected
    expected = newest(lambda r: r.model not in ("gpt-4o", "gpt-4o-mini"))
    assert ids(post(api, {"model": {"$nin": ["gpt-4o", "gpt-4o-mini"]}})) == expected
    assert count(api, {"model": {"$nin": ["openai/gpt-4o"]}}) == len(
        newest(lambda r: r.model != "gpt-4o")
    )


def test_a_gateway_prefixed_model_matches_the_stored_name(api: Client) -> None:
    expected = newest(lambda r: r.model == "gpt-4o")
    assert ids(api.ok("?model=openai/gpt-4o&limit=100")) == expected
    assert ids(post(api, {"model": "openai/gpt-4o"})) == expected
    assert ids(post(api, {"model": {"$in": ["openai/gpt-4o"]}})) == expected
    assert api.ok("/count?model=openai%2Fgpt-4o") == {"count": len(expected)}
    assert api.ok("/stats?model=openai/gpt-4o")["stats"]["total_requests"] == len(expected)
    expected = newest(lambda r: r.model in ("gpt-4o", "claude-sonnet-4"))
    assert ids(api.ok("?model=openai/gpt-4o,anthropic/claude-sonnet-4&limit=100")) == expected
    response = newest(lambda r: r.response_model == "gpt-4o-2024")
    assert ids(api.ok("?response_model=openrouter/gpt-4o-2024&limit=100")) == response


# --- the newer filters ---------------------------------------------------------------------------

NEW_FILTERS: list[tuple[str, str, Any, Callable[[CallRecord], bool]]] = [
    ("streaming", "true", True, lambda r: r.streaming),
    ("streaming", "false", False, lambda r: not r.streaming),
    ("pipeline_step", "plan", "plan", lambda r: r.pipeline_step == "plan"),
    ("pipeline_step", "plan,act", ["plan", "act"], lambda r: r.pipeline_step is not None),
    ("response_model", "gpt-4o-2024", "gpt-4o-2024", lambda r: r.response_model == "gpt-4o-2024"),
    ("error_type", "RateLimitError", "RateLimitError", lambda r: r.error_type is not None),
]


@pytest.mark.parametrize(("name", "text", "value", "matches"), NEW_FILTERS)
def test_each_new_filter_by_get_and_post(
    api: Client, name: str, text: str, value: Any, matches: Callable[[CallRecord], bool]
) -> None:
    expected = newest(matches)
    assert 0 < len(expected) < len(RECORDS)
    assert ids(api.ok(f"?{name}={text}&limit=100")) == expected
    assert ids(post(api, {name: value})) == expected
    assert api.ok(f"/count?{name}={text}") == {"count": len(expected)}


def test_streaming_operators(api: Client) -> None:
    assert ids(post(api, {"streaming": {"$ne": True}})) == newest(lambda r: not r.streaming)
    assert ids(post(api, {"streaming": {"$eq": True}})) == newest(lambda r: r.streaming)


# --- comparison operators ------------------------------------------------------------------------

EDGE = make_records()[10].created_at
COMPARISONS: list[tuple[dict[str, Any], Callable[[CallRecord], bool]]] = [
    ({"latency_ms": {"$gt": 500}}, lambda r: r.latency_ms is not None and r.latency_ms > 500),
    ({"latency_ms": {"$gte": 507}}, lambda r: r.latency_ms is not None and r.latency_ms >= 507),
    ({"latency_ms": {"$lt": 211}}, lambda r: r.latency_ms is not None and r.latency_ms < 211),
    ({"latency_ms": {"$lte": 211}}, lambda r: r.latency_ms is not None and r.latency_ms <= 211),
    ({"latency_ms": {"$ne": 100}}, lambda r: r.latency_ms is not None and r.latency_ms != 100),
    (
        {"latency_ms": {"$gt": 200, "$lte": 400}},
        lambda r: r.latency_ms is not None and 200 < r.latency_ms <= 400,
    ),
    ({"total_tokens": {"$gte": 1100}}, lambda r: (r.total_tokens or 0) >= 1100),
    ({"input_tokens": {"$lt": 550.5}}, lambda r: (r.input_tokens or 0) < 550.5),
    ({"input_tokens": {"$gt": 500.5}}, lambda r: (r.input_tokens or 0) > 500.5),
    ({"input_tokens": 500.5}, lambda r: False),
    ({"status_code": 429}, lambda r: r.status_code == 429),
    ({"status_code": {"$ne": 429}}, lambda r: r.status_code not in (429, None)),
    # cost: exact in nano-USD; 0.0010000095 lies between two stored values' nano-USD
    (
        {"cost": {"$gt": 0.001000009}},
        lambda r: r.cost is not None and r.cost > Decimal("0.001000009"),
    ),
    (
        {"cost": {"$gte": 0.0010000095}},
        lambda r: r.cost is not None and r.cost >= Decimal("0.0010000095"),
    ),
    (
        {"cost": {"$lte": 0.0010000095}},
        lambda r: r.cost is not None and r.cost <= Decimal("0.0010000095"),
    ),
    ({"cost": {"$ne": 0.0010000095}}, lambda r: r.cost is not None),
    ({"cost": 0.001000009}, lambda r: r.cost == Decimal("0.001000009")),
    (
        {"time_to_first_chunk_ms": {"$ne": 21}},
        lambda r: r.time_to_first_chunk_ms not in (None, 21),
    ),
    (
        {"created_at": {"$gte": EDGE.isoformat()}},
        lambda r: r.created_at >= EDGE,
    ),
    ({"created_at": {"$lt": EDGE.isoformat()}}, lambda r: r.created_at < EDGE),
    ({"created_at": {"$gt": EDGE.isoformat()}}, lambda r: r.created_at > EDGE),
    ({"created_at": {"$lte": EDGE.isoformat()}}, lambda r: r.created_at <= EDGE),
    ({"created_at": EDGE.isoformat()}, lambda r: r.created_at == EDGE),
    (
        {"completed_at": {"$lt": EDGE.isoformat()}},
        lambda r: r.completed_at is not None and r.completed_at < EDGE,
    ),
]


@pytest.mark.parametrize(("query", "matches"), COMPARISONS, ids=lambda v: str(v)[:40])
def test_each_comparison_lists_and_counts_the_matching_calls(
    api: Client, query: dict[str, Any], matches: Callable[[CallRecord], bool]
) -> None:
    expected = newest(matches)
    assert ids(post(api, query)) == expected
    assert count(api, query) == len(expected)


def test_comparisons_combine_with_the_other_filters(api: Client) -> None:
    query = {"provider": "openai", "latency_ms": {"$gte": 300}, "status_code": {"$ne": 429}}
    expected = newest(
        lambda r: (
            r.provider == "openai"
            and r.latency_ms is not None
            and r.latency_ms >= 300
            and r.status_code != 429
        )
    )
    assert len(expected) > 0
    assert ids(post(api, query)) == expected


# --- sort ----------------------------------------------------------------------------------------


def sort_value(key: str) -> Callable[[CallRecord], Any]:
    field = FIELDS[SORTS[key]]
    return lambda r: getattr(r, field.source)


def sorted_ids(keys: list[tuple[str, bool]]) -> list[str]:
    """NULLs as the smallest value; ties by id in the last key's direction."""
    rows = sorted(RECORDS, key=lambda r: r.id, reverse=keys[-1][1])
    for key, descending in reversed(keys):
        value = sort_value(key)
        present = [r for r in rows if value(r) is not None]
        missing = [r for r in rows if value(r) is None]
        present.sort(key=value, reverse=descending)
        rows = present + missing if descending else missing + present
    return [r.id for r in rows]


@pytest.mark.parametrize("key", list(SORTS))
def test_every_sort_key_both_ways(api: Client, key: str) -> None:
    for descending in (True, False):
        order = "desc" if descending else "asc"
        expected = sorted_ids([(key, descending)])
        assert ids(api.ok(f"?sort={key}&order={order}&limit=100")) == expected, order


def test_several_sort_keys(api: Client) -> None:
    expected = sorted_ids([("model", False), ("cost", True)])
    assert ids(api.ok("?sort=model,cost&order=asc,desc&limit=100")) == expected
    body = {"sort": {"model": 1, "cost": -1}, "limit": 100}
    assert ids(api.ok("", method="POST", body=body)) == expected
    body = {"sort": ["model", "cost"], "order": ["asc", "desc"], "limit": 100}
    assert ids(api.ok("", method="POST", body=body)) == expected
    body = {"sort": {"provider": -1, "streaming": -1, "latency_ms": 1}, "limit": 100}
    # streaming is no sort key (not numeric): refused, naming it
    assert "streaming" in api.error(400, "", method="POST", body=body)
    expected = sorted_ids([("provider", True), ("status_code", True), ("latency_ms", True)])
    assert ids(api.ok("?sort=provider,status_code,latency_ms&order=desc&limit=100")) == expected


# --- aliases: days, from, to ---------------------------------------------------------------------


def test_days_from_and_to(api: Client) -> None:
    today = datetime.combine(datetime.now(UTC).date(), time(), UTC)
    since = today - timedelta(days=1)
    expected = newest(lambda r: r.created_at >= since)
    assert 0 < len(expected) < len(RECORDS)
    assert ids(api.ok("?days=2&limit=100")) == expected
    assert ids(api.ok("?limit=100", method="POST", body={"query": {"days": 2}})) == expected
    stats = api.ok("/stats?days=2")
    assert stats["start"] == since.date().isoformat() + "T00:00:00.000000Z"
    assert stats["stats"]["total_requests"] == len(expected)
    start, end = RECORDS[20].created_at.date(), RECORDS[5].created_at.date()
    expected = newest(lambda r: start <= r.created_at.date() <= end)
    query = f"from={start.isoformat()}&to={end.isoformat()}"
    assert ids(api.ok(f"?{query}&limit=100")) == expected
    # seed 004: days is overridden when both from and to are given
    assert ids(api.ok(f"?{query}&days=1&limit=100")) == expected
    assert api.ok(f"/stats?{query}")["stats"]["total_requests"] == len(expected)
    assert api.ok(f"/count?{query}") == {"count": len(expected)}
    assert "days" in api.error(400, f"?days=2&from={start.isoformat()}")
    assert "from and start_date" in api.error(400, f"?from={start}&start_date={start}")
    assert "days" in api.error(400, "?days=0")
    assert "days" in api.error(400, "?days=ten")
    assert "days" in api.error(400, f"?{query}&days=-1")  # overridden, still checked


# --- stats by model ------------------------------------------------------------------------------


def test_stats_carry_by_model_exactly(api: Client) -> None:
    answer = api.ok("/stats")
    expected: dict[str, dict[str, Any]] = {}
    for r in RECORDS:
        entry = expected.setdefault(r.model or "", {"requests": 0, "tokens": 0, "cost": 0})
        entry["requests"] += 1
        entry["tokens"] += r.total_tokens or 0
        entry["cost"] += r.cost or 0
    got = {m["model"]: m for m in answer["by_model"]}
    assert set(got) == set(expected)
    for model, entry in expected.items():
        assert got[model]["requests"] == entry["requests"]
        assert got[model]["tokens"] == entry["tokens"]
        assert Decimal(str(got[model]["cost"])) == entry["cost"]
    requests = [m["requests"] for m in answer["by_model"]]
    assert requests == sorted(requests, reverse=True)
    # the limit folds the rest into "other", totals exact
    folded = api.ok("/stats?limit=1")["by_model"]
    assert [m["model"] for m in folded] == [answer["by_model"][0]["model"], "other"]
    assert sum(m["requests"] for m in folded) == len(RECORDS)
    assert api.ok("/stats?group_by=model")["by_model"] == answer["by_model"]


# --- the enhanced list ---------------------------------------------------------------------------


def test_the_enhanced_view_groups_tokens_cost_and_rates(api: Client) -> None:
    by_path = api.ok("/enhanced?sort=cost&order=desc&limit=10")
    assert api.ok("?view=enhanced&sort=cost&order=desc&limit=10") == by_path
    assert by_path["pagination"] == {"total": 25, "limit": 10, "offset": 0, "hasMore": True}
    first = by_path["calls"][0]
    assert first["id"] == PRICED.id
    assert first["tokens"] == {
        "input": 5000,
        "output": 2500,
        "total": 7500,
        "cache_read": None,
        "cache_write": None,
        "reasoning": None,
    }
    assert first["cost"]["input"] == 0.025
    assert first["cost"]["output"] == 0.0375
    assert first["cost"]["total"] == 0.0625
    assert first["pricing"] == {"input_per_million": 5.0, "output_per_million": 15.0}
    assert "input_tokens" not in first  # grouped, not repeated
    for call in by_path["calls"][1:]:
        record = next(r for r in RECORDS if r.id == call["id"])
        assert call["tokens"]["total"] == record.total_tokens
        assert call["model"] == record.model
    priced = [r.cost for r in RECORDS if r.cost is not None]
    total = sum(priced, Decimal(0))
    summary = by_path["summary"]
    assert Decimal(str(summary["total_cost"])) == total
    assert summary["total_tokens"] == sum(r.total_tokens or 0 for r in RECORDS)
    average = (total / len(priced)).quantize(NANO, ROUND_HALF_EVEN)
    assert Decimal(str(summary["avg_cost_per_request"])) == average
    assert summary["requests"] == len(RECORDS)
    assert summary["priced_requests"] == len(priced)
    # filtered: the summary follows the filter
    errors = api.ok("/enhanced?status=error")
    assert errors["summary"]["requests"] == len(newest(lambda r: r.status == "error"))
    assert "select" in api.error(400, "/enhanced?select=id")
    assert "view" in api.error(400, "?view=fancy")
    assert "view" in api.error(400, "/enhanced?view=plain")


def test_rates_are_given_only_when_the_stored_cost_pins_them() -> None:
    assert rate_per_million(Decimal("0.025"), 5000) == Decimal(5)
    assert rate_per_million(Decimal("0.0000375"), 1000) == Decimal("0.0375")
    # 1 token at $0.0375/M is 37.5 nano-USD, stored as 38: $0.0375 and $0.038 both fit
    assert rate_per_million(Decimal("0.000000038"), 1) is None
    assert rate_per_million(Decimal(0), 100_000) == Decimal(0)
    assert rate_per_million(None, 100) is None
    assert rate_per_million(Decimal("0.01"), 0) is None
    assert rate_per_million(Decimal("0.01"), None) is None
    # six decimals pin once the tokens make a nano-USD finer than a step of the rate
    assert rate_per_million(Decimal("1.234567"), 1_000_000) == Decimal("1.234567")
    assert rate_per_million(Decimal("0.000001234"), 1000) == Decimal("0.001234")
    assert rate_per_million(Decimal("0.000001234"), 100) is None  # 12.335 to 12.345 per M


# --- unknown paths -------------------------------------------------------------------------------


def test_unknown_sub_paths_are_no_endpoint_and_unknown_ids_no_call(api: Client) -> None:
    for path in ("/enhanced-logs", "/request-logs", "/stats/x", "/log_abc123", "/x/details"):
        message = api.error(404, path)
        assert message.startswith("no such endpoint"), message
        assert "/api/v1/calls/enhanced" in message
    unknown = f"{7777:032x}-{7777:016x}"
    assert api.error(404, f"/{unknown}") == f"no call with id '{unknown}'"
    assert api.error(404, f"/{unknown}/details") == f"no call with id '{unknown}'"


# --- bad input and injection ---------------------------------------------------------------------

BAD: list[tuple[dict[str, Any], list[str]]] = [
    ({"latency_ms": {"$regex": "x"}}, ["query.latency_ms", "unknown operator '$regex'", "$gt"]),
    ({"latency_ms": {}}, ["query.latency_ms has no operator"]),
    ({"latency_ms": {"$gt": "fast"}}, ["query.latency_ms.$gt", "a number"]),
    ({"latency_ms": {"$gt": True}}, ["query.latency_ms.$gt", "a number"]),
    ({"total_tokens": {"$gt": 1e30}}, ["query.total_tokens.$gt", "between"]),
    ({"cost": {"$gt": -1}}, ["query.cost.$gt", "from 0"]),
    ({"created_at": {"$gt": "yesterday"}}, ["query.created_at.$gt", "ISO 8601"]),
    ({"created_at": {"$gt": 5}}, ["query.created_at.$gt", "a string"]),
    ({"model": {"$gt": "a"}}, ["query.model", "unknown operator '$gt'", "$in"]),
    ({"model": {"$in": "a"}}, ["query.model.$in", "an array"]),
    ({"model": {"$in": []}}, ["query.model.$in lists no value"]),
    ({"model": {"$in": [1]}}, ["query.model.$in", "a string"]),
    ({"model": {"$in": ["x"] * (MAX_VALUES + 1)}}, ["query.model.$in", f"at most {MAX_VALUES}"]),
    ({"model": {"$ne": ["a"]}}, ["query.model.$ne", "a string"]),
    ({"status": {"$in": ["failed"]}}, ["query.status.$in", "success, error"]),
    ({"streaming": "yes"}, ["query.streaming", "true or false"]),
    ({"streaming": {"$lt": True}}, ["query.streaming", "unknown operator '$lt'"]),
    ({"streaming": {"$eq": True, "$ne": True}}, ["query.streaming", "contradict"]),
    ({"account_id": "7"}, ["unknown filter 'account_id' in query"]),  # seed 003's; we have none
]


@pytest.mark.parametrize(("query", "words"), BAD, ids=lambda v: str(v)[:40])
def test_bad_operators_and_values_are_400s_naming_them(
    api: Client, query: dict[str, Any], words: list[str]
) -> None:
    message = api.error(400, "", method="POST", body={"query": query})
    for word in words:
        assert word in message, message


def test_bad_url_values_are_400s_naming_them(api: Client) -> None:
    assert "streaming" in api.error(400, "?streaming=1")
    assert "model" in api.error(400, "?model=a,,b")
    values = ",".join(f"m{i}" for i in range(MAX_VALUES + 1))
    assert f"at most {MAX_VALUES}" in api.error(400, f"?model={values}")
    assert "latency_ms" in api.error(400, "?latency_ms=5")  # operators: POST query only
    message = api.error(400, "/stats", method="POST", body={"query": {"latency_ms": {"$gt": 1}}})
    assert "stats cannot filter on latency_ms" in message
    assert "stats cannot filter on streaming" in api.error(400, "/stats?streaming=true")
    body = {"query": {"model": {"$ne": "gpt-4o"}}}
    assert "stats cannot exclude values of model" in api.error(
        400, "/stats", method="POST", body=body
    )


@pytest.mark.parametrize("name", ["pipeline_step", "response_model", "error_type", "model"])
def test_injection_in_each_new_filter_and_operator_matches_nothing(api: Client, name: str) -> None:
    for attempt in INJECTIONS:
        query = urllib.parse.urlencode({name: attempt})
        assert api.ok(f"?{query}")["calls"] == []
        assert count(api, {name: attempt}) == 0
        assert count(api, {name: {"$in": [attempt, attempt + "x"]}}) == 0
        # an excluded injection string excludes nothing
        assert count(api, {name: {"$ne": attempt}}) == len(RECORDS)
        assert count(api, {name: {"$nin": [attempt, "' OR 1=1 --"]}}) == len(RECORDS)
    assert api.ok("/count") == {"count": len(RECORDS)}


def test_injection_in_operators_sort_and_view_is_refused(api: Client) -> None:
    for attempt in INJECTIONS:
        for field in ("latency_ms", "cost", "created_at", "total_tokens"):
            body = {"query": {field: {"$gt": attempt}}}
            assert field in api.error(400, "", method="POST", body=body)
        body = {"query": {"latency_ms": {attempt: 1}}}
        assert "unknown operator" in api.error(400, "", method="POST", body=body)
        body = {"query": {attempt: {"$gt": 1}}}
        assert "unknown filter" in api.error(400, "", method="POST", body=body)
        quoted = urllib.parse.quote(attempt, safe="")
        assert "sort" in api.error(400, f"?sort=model,{quoted}")
        assert "order" in api.error(400, f"?sort=model,cost&order=asc,{quoted}")
        assert "view" in api.error(400, f"?view={quoted}")
        assert "streaming" in api.error(400, f"?streaming={quoted}")
    assert api.ok("/count") == {"count": len(RECORDS)}


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def test_every_compared_field_takes_each_operator(api: Client) -> None:
    for field in COMPARED:
        source = FIELDS[field].source
        if FIELDS[field].type == "datetime":
            sample: Any = EDGE
            sent: Any = EDGE.isoformat()
        else:
            sample = sent = 429 if field == "status_code" else 1
        for operator, holds in OPERATORS.items():
            expected = [
                r
                for r in RECORDS
                if getattr(r, source) is not None and holds(getattr(r, source), sample)
            ]
            assert count(api, {field: {operator: sent}}) == len(expected), (field, operator)


def test_the_largest_operands_compare_in_both_databases(api: Client) -> None:
    # beyond every stored value, within what a 64-bit column (and PostgreSQL's 4-byte
    # status_code) can be compared with: no 500
    for field in COMPARED:
        if FIELDS[field].type == "datetime":
            low, high = "1900-01-01", "9999-01-01"
        elif FIELDS[field].codec == "money":
            low, high = 0, 10**9
        else:
            low, high = -(10**15), 10**15
        assert count(api, {field: {"$gt": high}}) == 0, field
        assert count(api, {field: {"$lt": low}}) == 0, field
        present = sum(getattr(r, FIELDS[field].source) is not None for r in RECORDS)
        assert count(api, {field: {"$lte": high, "$gte": low}}) == present, field


def test_bounds_finer_than_the_stored_values_fall_on_the_right_side_of_them(api: Client) -> None:
    """Found in review: a cost bound was divided in a 28-digit context (36 digits rounded to
    the next nano-USD; 1e-99999999999999999 to 0) and a latency bound rounded to the nearest
    double, either way: each took in a call on its wrong side."""
    cost = "0.0625"  # PRICED's, exactly
    above, below = cost + "000000000000000000000000000001", "0.0624999999999999999999999999999999"
    assert PRICED.id not in ids(api.ok(f"?min_cost={above}&limit=100"))
    assert PRICED.id not in ids(api.ok(f"?max_cost={below}&limit=100"))
    assert PRICED.id in ids(api.ok(f"?min_cost={cost}&max_cost={cost}&limit=100"))
    exact = b'{"query": {"cost": {"$eq": ' + cost.encode() + b"}}}"
    finer = b'{"query": {"cost": {"$eq": ' + above.encode() + b"}}}"
    assert api.ok("/count", method="POST", raw=exact)["count"] >= 1
    assert api.ok("/count", method="POST", raw=finer)["count"] == 0
    priced = sum(1 for r in RECORDS if r.cost)
    assert api.ok("/count?min_cost=1e-99999999999999999") == {"count": priced}
    traces = Client(api.url.replace("/api/v1/calls", "/api/v1/traces"))
    listed = {t["trace_id"] for t in traces.ok(f"?max_cost={below}&limit=100")["data"]}
    assert PRICED.trace_id not in listed
    listed = {t["trace_id"] for t in traces.ok(f"?max_cost={cost}&limit=100")["data"]}
    assert PRICED.trace_id in listed
    latency = Decimal(PRICED.latency_ms or 0.0)  # a double, exactly
    tiny = Decimal("1e-20")
    assert PRICED.id not in ids(api.ok(f"?max_latency={latency - tiny}&limit=100"))
    assert PRICED.id not in ids(api.ok(f"?min_latency={latency + tiny}&limit=100"))
    bound = str(latency + tiny).encode()
    under = b'{"query": {"latency_ms": {"$lt": ' + bound + b'}}, "limit": 100}'
    over = b'{"query": {"latency_ms": {"$gt": ' + bound + b'}}, "limit": 100}'
    assert PRICED.id in ids(api.ok("", method="POST", raw=under))
    assert PRICED.id not in ids(api.ok("", method="POST", raw=over))
