"""The call-log query API over real HTTP (127.0.0.1) against real stores: SQLite, PostgreSQL.

The store is filled through its own ``write`` with calls whose every filterable field varies;
each expectation is computed here, from the same records, independently of the store's SQL.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from otel_llm.calllog.api import CallLogAPI
from otel_llm.calllog.app import CallLogApp
from otel_llm.calllog.auth import ApiKey, AuthError, KeyRing, hash_key
from otel_llm.calllog.paramvalues import MAX_MOMENT, MIN_MOMENT
from otel_llm.calllog.query import CallFilter
from otel_llm.calllog.ratelimit import RateLimiter, RateLimits
from otel_llm.calllog.record import FIELDS, CallRecord
from otel_llm.calllog.store import open_store
from tests.support.postgres import BACKENDS, empty_store_url, pg_cluster  # noqa: F401 - fixture
from tests.support.raw_http import exchange

ALL_KEY = "test-key-all-projects"
ALPHA_KEY = "test-key-alpha-only"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
MODELS = {
    "gpt-4o": "openai",
    "gpt-4o-mini": "openai",
    "claude-sonnet-4": "anthropic",
    "gemini-2.0-flash": "google",
}


def make_records(count: int = 24, base: datetime = NOW) -> list[CallRecord]:
    """Calls 1 hour to ~3 days old; every field varies so that each filter splits them."""
    records = []
    for i in range(count):
        model = list(MODELS)[i % 4]
        failed = i % 6 == 0
        cost = None if i == 7 else Decimal("0.0001") * (i + 1) + Decimal("0.000000001") * i
        records.append(
            CallRecord(
                id=f"{i + 1:032x}-{i + 1:016x}",
                trace_id=f"{i + 1:032x}",
                span_id=f"{i + 1:016x}",
                created_at=base - timedelta(hours=1 + 3 * i, microseconds=-i),
                completed_at=base - timedelta(hours=1 + 3 * i) + timedelta(seconds=1),
                latency_ms=100.0 + 37 * i,
                time_to_first_chunk_ms=20.0 + i if i % 2 else None,
                service="checkout" if i % 2 else "search",
                provider=MODELS[model],
                model=model,
                response_model=model + "-2024",
                operation="embeddings" if i % 5 == 0 else "chat",
                streaming=bool(i % 2),
                status="error" if failed else "success",
                status_code=429 if failed else 200,
                error_type="RateLimitError" if failed else None,
                error_message="Rate limit exceeded" if failed else None,
                input_tokens=100 * (i + 1),
                output_tokens=10 * (i + 1),
                total_tokens=110 * (i + 1),
                cost=cost,
                cost_input=None if cost is None else cost / 2,
                cost_output=None if cost is None else cost / 2,
                cost_source=None if cost is None else "local",
                unpriced_reason="unknown model" if cost is None else None,
                feature=("summary", "chat", "rag")[i % 3],
                user=f"user-{i % 4}",
                project=None if i == 5 else ("alpha" if i % 3 == 0 else "beta"),
                api_key_id=f"key-{i % 2}",
                request_prompt='[{"role": "user", "content": "hello"}]' if i == 1 else None,
                response_preview='[{"role": "assistant", "content": "hi"}]' if i == 1 else None,
            )
        )
    return records


RECORDS = make_records()
BY_ID = {record.id: record for record in RECORDS}


@dataclass
class Client:
    """A urllib client of one API."""

    url: str
    key: str | None = ALL_KEY

    def request(
        self,
        path: str = "",
        *,
        method: str = "GET",
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = "default",
    ) -> tuple[int, Any, dict[str, str]]:
        sent = dict(headers or {})
        key = self.key if key == "default" else key
        if key is not None and "Authorization" not in sent and "ApiKey" not in sent:
            sent["Authorization"] = f"Bearer {key}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(  # noqa: S310 - http:// URLs this test builds
            self.url + path, data=data, headers=sent, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as error:
            text = error.read()
            return error.code, json.loads(text) if text else None, dict(error.headers)

    def ok(self, path: str = "", **kwargs: Any) -> Any:
        status, answer, _ = self.request(path, **kwargs)
        assert status == 200, answer
        return answer

    def error(self, status: int, path: str = "", **kwargs: Any) -> str:
        got, answer, _ = self.request(path, **kwargs)
        assert got == status, answer
        assert set(answer) == {"error"}
        assert set(answer["error"]) == {"code", "message"}
        return str(answer["error"]["message"])


KEYS = KeyRing([ApiKey.plain("all", ALL_KEY), ApiKey.plain("alpha", ALPHA_KEY, ["alpha"])])
UNLIMITED = RateLimits(0, 0, 0)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("calllog") / "calls.db"
    store = open_store(str(path))
    try:
        assert store.write(RECORDS) == len(RECORDS)
    finally:
        store.close()
    return path


@pytest.fixture(scope="module", params=BACKENDS)
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    """The API over a store of each backend: a SQLite file, then a real PostgreSQL database."""
    url = empty_store_url(request.param, request, tmp_path_factory.mktemp("api"))
    store = open_store(url)
    try:
        assert store.write(RECORDS) == len(RECORDS)
        with CallLogAPI(store, keys=KEYS, limits=UNLIMITED) as served:
            assert served.port != 0
            assert served.url == f"http://127.0.0.1:{served.port}/api/v1/calls"  # the default
            yield Client(served.url)
    finally:
        store.close()


def ids(calls: list[dict[str, Any]]) -> list[str]:
    return [call["id"] for call in calls]


def newest_first(records: list[CallRecord]) -> list[str]:
    return [r.id for r in sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- filters ------------------------------------------------------------------------------------

MIDDLE = RECORDS[10].created_at
FILTER_CASES: list[tuple[str, Any, Callable[[CallRecord], bool]]] = [
    ("provider", "openai", lambda r: r.provider == "openai"),
    ("model", "gpt-4o", lambda r: r.model == "gpt-4o"),
    ("operation", "embeddings", lambda r: r.operation == "embeddings"),
    ("status", "error", lambda r: r.status == "error"),
    ("status", "success", lambda r: r.status == "success"),
    ("service", "checkout", lambda r: r.service == "checkout"),
    ("feature", "rag", lambda r: r.feature == "rag"),
    ("user", "user-3", lambda r: r.user == "user-3"),
    ("project", "alpha", lambda r: r.project == "alpha"),
    ("api_key_id", "key-1", lambda r: r.api_key_id == "key-1"),
    ("start_date", iso(MIDDLE), lambda r: r.created_at >= MIDDLE),
    ("end_date", iso(MIDDLE), lambda r: r.created_at < MIDDLE),
    ("min_latency", 500, lambda r: r.latency_ms is not None and r.latency_ms >= 500),
    ("max_latency", 321.5, lambda r: r.latency_ms is not None and r.latency_ms <= 321.5),
    ("min_cost", Decimal("0.001"), lambda r: r.cost is not None and r.cost >= Decimal("0.001")),
    (
        "max_cost",
        Decimal("0.000500004"),
        lambda r: r.cost is not None and r.cost <= Decimal("0.000500004"),
    ),
    ("min_tokens", 1100, lambda r: (r.total_tokens or 0) >= 1100),
    ("max_tokens", 550, lambda r: (r.total_tokens or 0) <= 550),
]


def json_value(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


@pytest.mark.parametrize(("name", "value", "matches"), FILTER_CASES, ids=lambda v: str(v)[:20])
def test_each_filter_by_get_and_post_lists_and_counts_the_matching_calls(
    api: Client, name: str, value: Any, matches: Callable[[CallRecord], bool]
) -> None:
    expected = newest_first([r for r in RECORDS if matches(r)])
    assert 0 < len(expected) < len(RECORDS)  # the case splits the calls

    by_get = api.ok(f"?{name}={value}&limit=100")
    by_post = api.ok(
        "/list", method="POST", body={"query": {name: json_value(value)}, "limit": 100}
    )
    by_post_root = api.ok("?limit=100", method="POST", body={"query": {name: json_value(value)}})
    for answer in (by_get, by_post, by_post_root):
        assert ids(answer["calls"]) == expected
        assert answer["pagination"] == {
            "total": len(expected),
            "limit": 100,
            "offset": 0,
            "hasMore": False,
        }
    assert api.ok(f"/count?{name}={value}") == {"count": len(expected)}
    assert api.ok("/count", method="POST", body={"query": {name: json_value(value)}}) == {
        "count": len(expected)
    }


def test_filters_combine_and_a_bare_end_date_includes_that_day(api: Client) -> None:
    day = RECORDS[3].created_at.date()
    expected = newest_first(
        [r for r in RECORDS if r.created_at.date() <= day and r.provider == "openai"]
    )
    answer = api.ok(f"?end_date={day.isoformat()}&provider=openai&limit=100")
    assert ids(answer["calls"]) == expected
    query = {"provider": "openai", "status": "success", "min_tokens": 500, "max_cost": 0.002}
    expected = newest_first(
        [
            r
            for r in RECORDS
            if r.provider == "openai"
            and r.status == "success"
            and (r.total_tokens or 0) >= 500
            and r.cost is not None
            and r.cost <= Decimal("0.002")
        ]
    )
    assert ids(api.ok("", method="POST", body={"query": query, "limit": 100})["calls"]) == expected


# --- sort and pagination --------------------------------------------------------------------------

SORT_VALUES: dict[str, Callable[[CallRecord], Any]] = {
    "created_at": lambda r: r.created_at,
    "cost": lambda r: r.cost,
    "latency": lambda r: r.latency_ms,
    "tokens": lambda r: r.total_tokens,
}


def sorted_ids(key: str, descending: bool) -> list[str]:
    value = SORT_VALUES[key]
    # Unknown values (an unpriced call's cost) sort as smallest: last when descending.
    present = [r for r in RECORDS if value(r) is not None]
    missing = sorted((r for r in RECORDS if value(r) is None), key=lambda r: r.id)
    ordered = sorted(present, key=lambda r: (value(r), r.id), reverse=descending)
    return [r.id for r in (ordered + missing[::-1] if descending else missing + ordered)]


@pytest.mark.parametrize("key", list(SORT_VALUES))
@pytest.mark.parametrize("descending", [True, False])
def test_sort_by_each_key_both_ways(api: Client, key: str, descending: bool) -> None:
    expected = sorted_ids(key, descending)
    order = "desc" if descending else "asc"
    assert ids(api.ok(f"?sort={key}&order={order}&limit=100")["calls"]) == expected
    body = {"sort": {key: -1 if descending else 1}, "limit": 100}
    assert ids(api.ok("/list", method="POST", body=body)["calls"]) == expected
    body = {"sort": key, "order": order, "limit": 100}
    assert ids(api.ok("/list", method="POST", body=body)["calls"]) == expected


def test_the_default_is_fifty_newest_calls(api: Client) -> None:
    # Seed 001's default page size; a page of 10 still says there are more.
    answer = api.ok()
    assert ids(answer["calls"]) == newest_first(RECORDS)[:50]
    assert answer["pagination"] == {"total": 24, "limit": 50, "offset": 0, "hasMore": False}
    answer = api.ok("?limit=10")
    assert ids(answer["calls"]) == newest_first(RECORDS)[:10]
    assert answer["pagination"] == {"total": 24, "limit": 10, "offset": 0, "hasMore": True}


def test_paging_through_every_call_up_to_the_last_page(api: Client) -> None:
    seen: list[str] = []
    pages = []
    for offset in range(0, 28, 7):
        page = api.ok(f"?sort=cost&limit=7&offset={offset}")
        seen += ids(page["calls"])
        pages.append(page["pagination"])
    assert seen == sorted_ids("cost", True)
    assert [p["hasMore"] for p in pages] == [True, True, True, False]
    assert len(api.ok("?sort=cost&limit=7&offset=21")["calls"]) == 3
    # skip is the seeds' name for offset, in the URL or the body
    assert ids(api.ok("?sort=cost&limit=7&skip=7")["calls"]) == seen[7:14]
    body = {"sort": {"cost": -1}, "limit": 7, "skip": 14}
    assert ids(api.ok("", method="POST", body=body)["calls"]) == seen[14:21]
    beyond = api.ok("?offset=500")
    assert beyond["calls"] == []
    assert beyond["pagination"] == {"total": 24, "limit": 50, "offset": 500, "hasMore": False}


def test_limit_over_100_is_rejected_not_capped(api: Client) -> None:
    assert api.ok("?limit=100")["pagination"]["limit"] == 100
    for query in ("?limit=101", "?limit=0", "?limit=-3"):
        message = api.error(400, query)
        assert "limit" in message
        assert "between 1 and 100" in message
    message = api.error(400, "", method="POST", body={"limit": 1000})
    assert "limit must be between 1 and 100; got 1000" in message


def test_values_python_would_take_but_json_and_urls_do_not_mean_are_a_400(api: Client) -> None:
    """Found in review: ``\\d``, ``int`` and ``Decimal`` took other scripts' digits (limit=５),
    True passed for the sort direction 1, and a name given twice in a body had its last value
    win, unseen."""
    fullwidth_five = urllib.parse.quote("\uff15")
    assert "limit" in api.error(400, f"?limit={fullwidth_five}")
    assert "min_cost" in api.error(400, f"?min_cost={fullwidth_five}")
    assert "sort direction" in api.error(400, "", method="POST", body={"sort": {"cost": True}})
    twice = b'{"query": {"model": "gpt-4o"}, "query": {"model": "none-such"}}'
    assert "'query' is given twice" in api.error(400, "", method="POST", raw=twice)
    inner = b'{"query": {"model": "gpt-4o", "model": "none-such"}}'
    assert "'model' is given twice" in api.error(400, "/count", method="POST", raw=inner)


# --- select, get, details ------------------------------------------------------------------------


def test_select_returns_only_the_fields_asked_and_the_id(api: Client) -> None:
    answer = api.ok("?select=model,cost,created_at&limit=3")
    assert [list(call) for call in answer["calls"]] == [["id", "model", "cost", "created_at"]] * 3
    body = {"select": {"status": True, "total_tokens": True}, "limit": 2}
    calls = api.ok("/list", method="POST", body=body)["calls"]
    assert [set(call) for call in calls] == [{"id", "status", "total_tokens"}] * 2
    body = {"select": ["service", "context"], "limit": 1}
    assert set(api.ok("", method="POST", body=body)["calls"][0]) == {"id", "service", "context"}


def test_select_of_an_unknown_or_content_field_is_a_400(api: Client) -> None:
    message = api.error(400, "?select=model,costInUSDCents")
    assert "unknown field 'costInUSDCents'" in message
    assert "cost_input" in message
    assert "details" in api.error(400, "?select=request_prompt")
    assert "unknown field" in api.error(400, "", method="POST", body={"select": ["nope"]})
    assert "true" in api.error(400, "", method="POST", body={"select": {"model": False}})


def test_every_list_value_is_json_typed(api: Client) -> None:
    call = api.ok(f"?select={','.join(FIELDS)}&limit=1&sort=tokens&order=asc")["calls"][0]
    record = min(RECORDS, key=lambda r: r.total_tokens or 0)
    assert call["id"] == record.id
    assert isinstance(call["cost"], float)
    assert call["cost"] == float(record.cost or 0)
    assert call["created_at"] == record.created_at.isoformat(timespec="microseconds").replace(
        "+00:00", "Z"
    )
    assert isinstance(call["streaming"], bool)
    assert isinstance(call["input_tokens"], int)


def test_get_one_call_with_every_field(api: Client) -> None:
    record = RECORDS[6]
    call = api.ok(f"/{record.id}")
    assert list(call) == list(FIELDS)
    assert call["trace_id"] == record.trace_id
    assert call["span_id"] == record.span_id
    assert call["status"] == "error"
    assert call["status_code"] == 429
    assert call["error_message"] == "Rate limit exceeded"
    assert call["cost"] == float(record.cost or 0)
    assert call["cost_source"] == "local"
    assert call["has_content"] is False
    assert api.ok(f"/{record.id}?select=model,cost") == {
        "id": record.id,
        "model": record.model,
        "cost": float(record.cost or 0),
    }
    unpriced = api.ok(f"/{RECORDS[7].id}")
    assert unpriced["cost"] is None
    assert unpriced["unpriced_reason"] == "unknown model"


def test_unknown_call_is_a_404(api: Client) -> None:
    missing = f"{999:032x}-{999:016x}"
    assert missing in api.error(404, f"/{missing}")
    assert missing in api.error(404, f"/{missing}/details")


def test_details_with_and_without_captured_content(api: Client) -> None:
    captured = api.ok(f"/{RECORDS[1].id}/details")
    assert captured["request_prompt"] == RECORDS[1].request_prompt
    assert captured["response_preview"] == RECORDS[1].response_preview
    assert captured["has_content"] is True
    assert captured["id"] == RECORDS[1].id
    none = api.ok(f"/{RECORDS[2].id}/details")
    assert none["has_content"] is False
    assert none["request_prompt"] is None
    assert none["response_preview"] is None
    assert none["cost"] == float(RECORDS[2].cost or 0)


def test_fields_lists_the_catalogue(api: Client) -> None:
    fields = api.ok("/fields")["fields"]
    assert [field["name"] for field in fields] == list(FIELDS)
    assert all(field["type"] and field["description"] for field in fields)


# --- count and stats ----------------------------------------------------------------------------


def test_count_all(api: Client) -> None:
    assert api.ok("/count") == {"count": 24}
    assert api.ok("/count", method="POST", body={}) == {"count": 24}
    assert "limit" in api.error(400, "/count?limit=5")


def test_stats_totals_and_groups_match_the_records(api: Client) -> None:
    answer = api.ok("/stats?group_by=model")
    stats = answer["stats"]
    assert stats["total_requests"] == 24
    assert stats["failed_requests"] == sum(r.status == "error" for r in RECORDS) == 4
    assert stats["total_tokens"] == sum(r.total_tokens or 0 for r in RECORDS)
    assert stats["total_cost"] == pytest.approx(float(sum(r.cost or 0 for r in RECORDS)))
    assert stats["unpriced_requests"] == 1
    assert answer["group_by"] == "model"
    assert answer["start"].endswith("Z")
    assert answer["end"].endswith("Z")
    groups = {group["group"]: group for group in answer["groups"]}
    assert set(groups) == set(MODELS)
    for model in MODELS:
        mine = [r for r in RECORDS if r.model == model]
        assert groups[model]["total_requests"] == len(mine)
        assert groups[model]["total_tokens"] == sum(r.total_tokens or 0 for r in mine)
    days = {r.created_at.date().isoformat() for r in RECORDS}
    assert {day["date"] for day in answer["by_day"]} == days
    assert sum(day["requests"] for day in answer["by_day"]) == 24


def test_stats_by_post_with_filters_and_group_by(api: Client) -> None:
    body = {"query": {"provider": "openai", "service": "checkout"}, "group_by": "day"}
    answer = api.ok("/stats", method="POST", body=body)
    mine = [r for r in RECORDS if r.provider == "openai" and r.service == "checkout"]
    assert answer["stats"]["total_requests"] == len(mine) > 0
    per_day: dict[str, int] = {}
    for record in mine:
        per_day[record.created_at.date().isoformat()] = (
            per_day.get(record.created_at.date().isoformat(), 0) + 1
        )
    assert {g["group"][:10]: g["total_requests"] for g in answer["groups"]} == per_day


def test_stats_refuse_filters_the_daily_aggregates_cannot_answer(api: Client) -> None:
    message = api.error(400, "/stats?min_latency=100")
    assert "stats cannot filter on min_latency" in message
    assert "group_by" in api.error(400, "/stats?group_by=month")


def test_stats_by_key_user_and_status_over_get_and_post(api: Client) -> None:
    """Issue 12: filters and groups by api_key_id, user and status, combined, exact."""
    answer = api.ok("/stats?status=error&group_by=api_key")
    failed = [r for r in RECORDS if r.status == "error"]
    assert answer["stats"]["total_requests"] == len(failed) == 4
    groups = {group["group"]: group for group in answer["groups"]}
    assert {key: group["total_requests"] for key, group in groups.items()} == {
        key: sum(r.api_key_id == key for r in failed) for key in {r.api_key_id for r in failed}
    }
    body = {"query": {"user": "user-1", "model": "gpt-4o-mini"}, "group_by": "status"}
    answer = api.ok("/stats", method="POST", body=body)
    mine = [r for r in RECORDS if r.user == "user-1" and r.model == "gpt-4o-mini"]
    assert answer["stats"]["total_requests"] == len(mine) > 0
    assert answer["stats"]["total_cost"] == json_value(sum(r.cost or 0 for r in mine))
    assert {g["group"]: g["total_requests"] for g in answer["groups"]} == {
        status: sum(r.status == status for r in mine) for status in {r.status for r in mine}
    }
    answer = api.ok("/stats?api_key_id=key-1&group_by=day")
    assert answer["stats"]["total_requests"] == sum(r.api_key_id == "key-1" for r in RECORDS)


def test_stats_refuse_bad_values_and_combinations_no_aggregate_keeps(api: Client) -> None:
    message = api.error(400, "/stats?user=user-1&api_key_id=key-1")
    assert "stats cannot combine user and api_key_id" in message
    message = api.error(400, "/stats?feature=chat&group_by=user")
    assert "stats cannot combine feature and group_by=user" in message
    assert "status" in api.error(400, "/stats?status=failed")
    assert "group_by" in api.error(400, "/stats?group_by=users")
    assert "user" in api.error(400, "/stats", method="POST", body={"query": {"user": 7}})


# --- access ---------------------------------------------------------------------------------------


def test_a_key_is_required_in_either_header(api: Client) -> None:
    status, answer, headers = api.request(key=None)
    assert status == 401
    assert answer["error"]["code"] == "unauthorized"
    assert "Authorization: Bearer" in answer["error"]["message"]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert "unknown API key" in api.error(401, key="wrong-key")
    assert "unknown API key" in api.error(401, headers={"ApiKey": "wrong-key"})
    assert "Bearer" in api.error(401, headers={"Authorization": f"Basic {ALL_KEY}"})
    assert api.ok("/count", headers={"ApiKey": ALL_KEY}) == {"count": 24}
    assert api.ok("/count", headers={"Authorization": f"bearer {ALL_KEY}"}) == {"count": 24}


def test_a_key_limited_to_a_project_sees_only_it(api: Client) -> None:
    alpha = Client(api.url, ALPHA_KEY)
    mine = [r for r in RECORDS if r.project == "alpha"]
    assert ids(alpha.ok("?limit=100")["calls"]) == newest_first(mine)
    assert alpha.ok("?project=alpha&limit=100")["pagination"]["total"] == len(mine)
    assert alpha.ok("/count") == {"count": len(mine)}
    assert alpha.ok("/stats")["stats"]["total_requests"] == len(mine)
    groups = alpha.ok("/stats?group_by=service")["groups"]
    assert sum(group["total_requests"] for group in groups) == len(mine)
    other = next(r for r in RECORDS if r.project == "beta")
    alpha.error(404, f"/{other.id}")
    alpha.error(404, f"/{other.id}/details")
    assert alpha.ok(f"/{mine[0].id}")["project"] == "alpha"


def test_a_key_asking_for_another_project_is_a_403(api: Client) -> None:
    alpha = Client(api.url, ALPHA_KEY)
    for path in ("?project=beta", "/count?project=beta", "/stats?project=beta"):
        message = alpha.error(403, path)
        assert "'alpha'" in message
        assert "'beta'" in message
    alpha.error(403, "", method="POST", body={"query": {"project": "beta"}})
    assert api.ok("/count?project=beta")["count"] > 0  # the other key may


# --- read-only, unknown paths, bad input ---------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_writing_methods_are_405_with_allow(api: Client, method: str) -> None:
    for path, allowed in (("", "GET, POST"), (f"/{RECORDS[0].id}", "GET"), ("/count", "GET, POST")):
        status, answer, headers = api.request(path, method=method, body={"model": "x"})
        assert status == 405
        assert answer["error"]["code"] == "method_not_allowed"
        assert headers["Allow"] == allowed
    assert api.ok("/count") == {"count": 24}


def test_post_to_one_call_is_405_and_unknown_paths_404(api: Client) -> None:
    status, _, headers = api.request(f"/{RECORDS[0].id}", method="POST", body={})
    assert status == 405
    assert headers["Allow"] == "GET"
    api.error(404, "/x/y/z")
    base = api.url.removesuffix("/api/v1/calls")
    status, answer, _ = Client(base).request("/api/v2/calls")
    assert status == 404
    assert answer["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("?start_date=yesterday", None, ["start_date", "ISO 8601", "yesterday"]),
        ("?end_date=2025-13-45", None, ["end_date", "2025-13-45"]),
        ("?limit=ten", None, ["limit", "integer"]),
        ("?sort=price", None, ["sort", "created_at, cost, latency, tokens", "price"]),
        ("?order=up", None, ["order", "asc, desc"]),
        ("?modle=gpt-4o", None, ["unknown parameter 'modle'"]),
        ("?status=failed", None, ["status", "success, error"]),
        ("?min_cost=cheap", None, ["min_cost", "number"]),
        ("?min_cost=5&max_cost=1", None, ["min_cost (5) is greater than max_cost (1)"]),
        ("?model=a&model=b", None, ["model", "2 times"]),
        ("?model=gpt%00", None, ["model", "NUL character"]),
        ("/stats?group_by=hour&start_date=2020-01-01", None, ["hourly stats", "7 days"]),
        ("?model=", None, ["model", "empty"]),
        ("?limit=5&select=", None, ["select names no field"]),
        ("?start_date=2025-02-01&end_date=2025-01-01", None, ["before"]),
        ("", {"query": {"modle": "x"}}, ["unknown filter 'modle' in query"]),
        ("", {"query": {"model": 4}}, ["query.model must be a string, got a number"]),
        ("", {"query": {"min_tokens": "many"}}, ["query.min_tokens", "integer", "a string"]),
        ("", {"query": ["model"]}, ["query must be an object"]),
        ("", {"filter": {}}, ["unknown key 'filter' in the request body"]),
        (
            "",
            {"sort": {"cost": -1, "latency": 1, "tokens": 1, "model": 1, "provider": 1}},
            ["at most 4"],
        ),
        ("", {"sort": ["cost", "cost"]}, ["sort names a key twice"]),
        ("?sort=model,cost&order=asc,desc,asc", None, ["order", "one of them per sort key (2)"]),
        ("", {"sort": {"cost": "down"}}, ["sort direction"]),
        ("?limit=5", {"limit": 6}, ["'limit' is given both in the URL and in the request body"]),
    ],
)
def test_bad_input_is_a_400_that_says_what_is_wrong(
    api: Client, path: str, body: Any, words: list[str]
) -> None:
    message = api.error(400, path, method="POST" if body is not None else "GET", body=body)
    for word in words:
        assert word in message


def test_malformed_bodies(api: Client) -> None:
    message = api.error(400, "", method="POST", raw=b'{"query": {"model": ')
    assert "not valid JSON" in message
    assert "line 1" in message
    assert "JSON object" in api.error(400, "", method="POST", raw=b"[1, 2]")
    assert "not valid JSON" in api.error(400, "", method="POST", raw=b"\xff\xfe")
    status, answer, _ = api.request(
        "",
        method="POST",
        raw=b"<query/>",
        headers={"Content-Type": "application/xml"},
    )
    assert status == 415
    assert "application/json" in answer["error"]["message"]
    status, answer, _ = api.request("", method="POST", raw=b"{" + b" " * 70_000 + b"}")
    assert status == 413
    assert answer["error"]["code"] == "payload_too_large"
    # curl -d and urllib label a JSON body form-urlencoded: it is read as JSON
    status, answer, _ = api.request(
        "",
        method="POST",
        raw=b'{"limit": 2}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200
    assert len(answer["calls"]) == 2


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"query": {"model": "\ud800"}}',
        rb'{"query": {"model": {"$in": ["a", "\udc00\ud800"]}}}',
        rb'{"query": {"\ud800": 1}}',
        rb'{"\ud800": 1}',
        rb'{"select": ["\ud800"]}',
        rb'{"query": {"created_at": {"$gt": "\ud800"}}}',
        # Found in a later review: the same, sent as the bytes UTF-8 would make of a surrogate
        # (``json.loads`` of bytes let them through).
        b'{"query": {"model": "\xed\xa0\x80"}}',
        b'{"query": {"status": "\xed\xa0\x80"}}',
        b'{"sort": "\xed\xa0\x80"}',
    ],
)
@pytest.mark.parametrize("path", ["", "/count", "/stats"])
def test_a_lone_surrogate_in_a_body_is_a_400(api: Client, path: str, raw: bytes) -> None:
    # Found in review: JSON's \ud800 escape decodes to a string UTF-8 cannot encode; as a filter
    # value it failed in the store's driver (500), echoed in a message it failed the error's
    # own encoding (the connection was dropped without an answer).
    message = api.error(400, path, method="POST", raw=raw)
    assert ("surrogate" if b"\\u" in raw else "'utf-8' codec can't decode") in message
    # A pair of them is one character, matched as any other.
    assert api.ok(path, method="POST", raw=rb'{"query": {"model": "\ud83d\ude00"}}') is not None


INJECTIONS = [
    "модель-😀",
    "a\\b",
    "' OR '1'='1",
    "x'; DROP TABLE calls; --",
    '" OR 1=1 --',
    "gpt-4o' --",
    "gpt-4o' OR model LIKE '%",
    "%",
    "1) OR (1=1",
    "alpha') OR ('1'='1",
]


@pytest.mark.parametrize(
    "name",
    ["model", "provider", "service", "feature", "user", "project", "api_key_id", "operation"],
)
def test_sql_injection_in_every_text_filter_matches_nothing(api: Client, name: str) -> None:
    for attempt in INJECTIONS:
        query = urllib.parse.urlencode({name: attempt})
        answer = api.ok(f"?{query}")
        assert answer["calls"] == []
        assert answer["pagination"]["total"] == 0
        assert api.ok(f"/count?{query}") == {"count": 0}
        assert api.ok("", method="POST", body={"query": {name: attempt}})["calls"] == []
        if name in ("model", "provider", "service", "feature", "project", "operation"):
            assert api.ok(f"/stats?{query}")["stats"]["total_requests"] == 0
    assert api.ok("/count") == {"count": 24}


def test_sql_injection_in_the_id_and_sort_matches_nothing(api: Client) -> None:
    for attempt in [*INJECTIONS, f"{RECORDS[0].id}' OR '1'='1", "../../etc/passwd"]:
        quoted = urllib.parse.quote(attempt, safe="")
        api.error(404, f"/{quoted}")
        api.error(404, f"/{quoted}/details")
    assert "sort" in api.error(400, "?sort=" + urllib.parse.quote("cost; DROP TABLE calls"))
    assert "select" in api.error(400, "?select=" + urllib.parse.quote("id FROM calls --"))
    assert api.ok("/count") == {"count": 24}
    assert api.ok(f"/{RECORDS[0].id}")["id"] == RECORDS[0].id


def test_a_store_failure_is_a_500_that_reveals_nothing(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "calls.db"))
    store.write(RECORDS[:3])
    with CallLogAPI(store, keys=KEYS, limits=UNLIMITED) as served:
        client = Client(served.url)
        assert client.ok("/count") == {"count": 3}
        store.close()  # every query now fails inside sqlite3
        for path in ("", "/count", "/stats", f"/{RECORDS[0].id}"):
            status, answer, _ = client.request(path)
            assert status == 500
            assert answer["error"]["code"] == "internal_error"
            text = json.dumps(answer).lower()
            assert "sqlite" not in text
            assert "traceback" not in text
            assert "closed" not in text


def test_concurrent_requests_are_answered(api: Client) -> None:
    results: list[int] = []

    def ask() -> None:
        for _ in range(5):
            results.append(api.ok("/count?provider=openai")["count"])

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [sum(r.provider == "openai" for r in RECORDS)] * 40


# --- rate limits --------------------------------------------------------------------------------


def test_rate_limits_answer_429_with_retry_after(store_path: Path) -> None:
    store = open_store(str(store_path))
    limits = RateLimits(list_per_minute=3, details_per_minute=2, stats_per_minute=1)
    try:
        with CallLogAPI(store, keys=KEYS, limits=limits) as served:
            client = Client(served.url)
            remaining = [client.request("?limit=1")[2]["X-RateLimit-Remaining"] for _ in range(2)]
            assert remaining == ["2", "1"]
            assert client.ok("/count") == {"count": 24}  # count is in the list class
            status, answer, headers = client.request("?limit=1")
            assert status == 429
            assert answer["error"]["code"] == "rate_limited"
            assert headers["Retry-After"] in ("19", "20")  # a token every 60/3 s
            assert "3 requests per minute" in answer["error"]["message"]
            client.ok("/stats")
            status, _, headers = client.request("/stats")
            assert status == 429
            assert headers["Retry-After"] in ("59", "60")
            client.ok(f"/{RECORDS[0].id}")  # details have their own budget
            # another key has its own buckets
            assert Client(served.url, ALPHA_KEY).ok("/count") == {"count": 8}
    finally:
        store.close()


def test_token_bucket_refills_and_memory_is_bounded() -> None:
    now = [1000.0]
    limiter = RateLimiter(RateLimits(list_per_minute=2), clock=lambda: now[0], max_buckets=3)
    assert [limiter.check("k", "list").allowed for _ in range(3)] == [True, True, False]
    assert limiter.check("k", "list").retry_after == 30
    now[0] += 29.0
    refused = limiter.check("k", "list")
    assert not refused.allowed
    assert refused.retry_after == 1
    now[0] += 1.0
    assert limiter.check("k", "list").allowed
    for name in ("a", "b", "c", "d", "e"):
        limiter.check(name, "list")
    assert len(limiter) == 3
    assert limiter.check("x", "details").limit == 120
    assert limiter.check("x", "stats").limit == 30


def test_token_bucket_is_exact_under_threads() -> None:
    limiter = RateLimiter(RateLimits(list_per_minute=60), clock=lambda: 5.0)
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(50):
            decision = limiter.check("k", "list")
            with lock:
                allowed.append(decision.allowed)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 60
    assert len(allowed) == 400


def test_unlimited_and_bad_limits() -> None:
    limiter = RateLimiter(RateLimits(0, 0, 0))
    assert all(limiter.check("k", "stats").allowed for _ in range(1000))
    with pytest.raises(ValueError, match="stats_per_minute"):
        RateLimits(stats_per_minute=-1)


# --- keys -----------------------------------------------------------------------------------------


def test_key_file_with_hashes_plain_keys_and_projects(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(
        "keys:\n"
        f"  - name: hashed\n    sha256: {hash_key('hashed-secret-1')}\n"
        "  - name: plain\n    key: plain-secret-2\n    projects: [alpha, beta]\n"
        "  - name: star\n    key: star-secret-3\n    projects: '*'\n"
    )
    ring = KeyRing.load(path)
    headers = {"Authorization": "Bearer hashed-secret-1"}
    assert ring.identify(headers.get).name == "hashed"
    plain = ring.identify({"ApiKey": "plain-secret-2"}.get)
    assert plain.projects == frozenset({"alpha", "beta"})
    assert ring.identify({"ApiKey": "star-secret-3"}.get).projects is None
    assert "plain-secret-2" not in repr(plain)
    restricted = plain.restrict(CallFilter(model="m"))
    assert restricted.projects == frozenset({"alpha", "beta"})
    assert restricted.model == "m"
    with pytest.raises(AuthError) as refused:
        plain.restrict(CallFilter(project="gamma"))
    assert refused.value.status == 403
    json_path = tmp_path / "keys.json"
    json_path.write_text(json.dumps([{"name": "j", "key": "json-secret-4"}]))
    assert [key.name for key in KeyRing.load(json_path)] == ["j"]
    inline = KeyRing.inline(f"a=secret-aaaa, b=sha256:{hash_key('secret-bbbb')}")
    assert inline.identify({"ApiKey": "secret-bbbb"}.get).name == "b"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("keys:\n  - name: a\n", ["keys[0]", "exactly one of 'key' and 'sha256'"]),
        ("keys:\n  - name: a\n    sha256: abc\n", ["64 hex digits"]),
        ("keys:\n  - {name: a, key: secret-one}\n  - {name: a, key: secret-two}\n", ["unique"]),
        ("keys:\n  - {name: a, key: secret-one, projects: []}\n", ["projects"]),
        ("keys:\n  - {name: a, key: secret-one, role: admin}\n", ["unknown fields", "role"]),
        ("keys: [\n", ["not valid"]),
        ("other: 1\n", ["unknown top-level"]),
    ],
)
def test_bad_key_files_say_what_is_wrong(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"\.|:") as error:
        KeyRing.load(path)
    for word in words:
        assert word in str(error.value)
    with pytest.raises(ValueError, match="cannot read"):
        KeyRing.load(tmp_path / "missing.yaml")


def test_an_api_without_keys_does_not_start(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "calls.db"))
    try:
        with pytest.raises(ValueError, match="at least one API key"):
            CallLogAPI(store, keys=KeyRing())
    finally:
        store.close()


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_other_methods_are_405_too(api: Client, method: str) -> None:
    request = urllib.request.Request(api.url, method=method)  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert refused.value.code == 405
    assert refused.value.headers["Allow"] == "GET, POST"


def test_the_app_answers_without_a_server(store_path: Path) -> None:
    """What a host with its own HTTP server (the collector) calls."""
    store = open_store(str(store_path))
    try:
        app = CallLogApp(store, keys=KEYS, limits=UNLIMITED)
        headers = {"ApiKey": ALPHA_KEY}
        response = app.handle("GET", "/api/v1/calls/count?model=gpt-4o", headers.get, b"")
        expected = sum(r.model == "gpt-4o" and r.project == "alpha" for r in RECORDS)
        assert (response.status, json.loads(response.body)) == (200, {"count": expected})
        response = app.handle("POST", "/api/v1/calls", headers.get, b'{"limit": 101}')
        assert response.status == 400
        assert ("Content-Type", "application/json; charset=utf-8") in response.headers
    finally:
        store.close()


def test_the_api_from_settings(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(f"keys:\n  - name: ops\n    sha256: {hash_key('file-key-123')}\n")
    monkeypatch.setenv("OTEL_LLM_CALL_LOG_API_KEYS_FILE", str(keys_file))
    monkeypatch.setenv("OTEL_LLM_CALL_LOG_API_KEYS", "ci=inline-key-456")
    monkeypatch.setenv("OTEL_LLM_CALL_LOG_API_ENDPOINT", "127.0.0.1:0")
    monkeypatch.setenv("OTEL_LLM_CALL_LOG_RATE_LIMIT_STATS", "1")
    store = open_store(str(store_path))
    try:
        with CallLogAPI.from_settings(store) as served:
            for key in ("file-key-123", "inline-key-456"):
                assert Client(served.url, key).ok("/count") == {"count": 24}
            client = Client(served.url, "file-key-123")
            client.ok("/stats")
            assert client.request("/stats")[0] == 429
        monkeypatch.setenv("OTEL_LLM_CALL_LOG_API_ENDPOINT", "none")
        with pytest.raises(ValueError, match="off"):
            CallLogAPI.from_settings(store)
    finally:
        store.close()


def test_requests_http_server_refuses_itself_still_get_json(api: Client) -> None:
    host, port = api.url.removeprefix("http://").split("/")[0].split(":")
    # (Refusals that leave request bytes unread end in a TCP reset, so only this one is tested.)
    for request in (b"FROB /api/v1/calls HTTP/1.0\r\n\r\n",):  # 501: no such method
        answer = exchange(host, int(port), request)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split()[1] == b"501"
        assert b"application/json" in head
        assert set(json.loads(body)["error"]) == {"code", "message"}


@pytest.mark.parametrize(
    "length", ["\u00b9", "\u00b2", "+2", "0_2", "2, 2", "2\r\nContent-Length: 0"]
)
def test_a_content_length_that_is_not_one_number_is_a_400(api: Client, length: str) -> None:
    """Found in review: a superscript digit passed ``isdigit`` and failed ``int``, outside
    every handler -- the connection closed without an answer, before any key was checked."""
    host, port = api.url.removeprefix("http://").split("/")[0].split(":")
    request = (
        b"POST /api/v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + length.encode("latin-1") + b"\r\n\r\n{}"
    )
    head, _, body = exchange(host, int(port), request).partition(b"\r\n\r\n")
    assert head.split()[1] == b"400"
    assert json.loads(body)["error"]["message"] == "Content-Length must be one number of bytes"


EXTREME_DATES = [
    ("end_date", "9999-12-31T12:00:00Z"),  # the next midnight overflowed: a 500
    ("end_date", "0001-01-02"),  # the default 30-day window before it overflowed: a 500
    ("end_date", "9999-12-31"),  # a bare end date means through that day: past year 9999
    ("end_date", "0001-01-01T00:00:00Z"),
    ("start_date", "0001-01-01"),
    ("start_date", "9999-12-31T23:59:59Z"),
    ("start_date", "0001-01-01T00:00:00+01:00"),  # the year before 1 in UTC
    ("end_date", "9999-12-31T23:00:00-05:00"),  # the year after 9999 in UTC
]


@pytest.mark.parametrize(("name", "value"), EXTREME_DATES)
@pytest.mark.parametrize("path", ["", "/count", "/stats", "/stats?group_by=hour"])
def test_dates_out_of_range_are_a_400_naming_the_parameter(
    api: Client, path: str, name: str, value: str
) -> None:
    separator = "&" if "?" in path else "?"
    query = urllib.parse.urlencode({name: value})
    message = api.error(400, f"{path}{separator}{query}")
    assert name in message
    assert f"from {MIN_MOMENT.date()} to {MAX_MOMENT.date()}" in message
    if path != "/stats?group_by=hour":  # hourly stats take no body
        body: dict[str, Any] = {"query": {name: value}}
        assert f"query.{name}" in api.error(400, path, method="POST", body=body)


def test_dates_at_the_ends_of_the_range_are_answered(api: Client) -> None:
    wide = "start_date=1900-01-01&end_date=9998-12-31"
    assert api.ok(f"?{wide}&limit=100") == api.ok("?limit=100")  # every call is inside
    assert api.ok(f"/count?{wide}") == {"count": 24}
    stats = api.ok(f"/stats?{wide}")
    assert (stats["start"], stats["end"]) == (
        "1900-01-01T00:00:00.000000Z",
        "9999-01-01T00:00:00.000000Z",
    )
    assert stats["stats"] == api.ok("/stats")["stats"]
    assert api.ok("/count?end_date=1900-01-01") == {"count": 0}
    assert api.ok("/stats?end_date=1900-01-01")["stats"]["total_requests"] == 0
    assert api.ok("/count?start_date=9999-01-01T00:00:00Z") == {"count": 0}
    far = api.ok("/stats?start_date=9998-12-31&end_date=9998-12-31")
    assert far["stats"]["total_requests"] == 0


def test_a_conversation_id_with_a_nul_is_a_400(api: Client) -> None:
    # Found in review: PostgreSQL text cannot hold NUL, and the id went to it as it came (500).
    v1 = Client(api.url.removesuffix("/calls"))
    message = v1.error(400, "/conversations/a%00b")
    assert "conversation_id" in message
    assert "NUL" in message
