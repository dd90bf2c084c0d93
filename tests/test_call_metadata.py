"""Call metadata (issue 12, item 4): real openai and anthropic clients against the fake server,
through the instrumentors, the processor and the in-process call log into a real store
(SQLite and PostgreSQL), and out of the query API: the response id, the HTTP status (200, 429,
500), the provider's error code, the endpoint and method, and a hint of the key -- while the key
itself appears nowhere: not in the span, not in the store, not in an API answer."""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anthropic
import openai
import psycopg
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from otel_llm import LLMSpanProcessor
from otel_llm import _semconv as sc
from otel_llm.calllog import schema, sql
from otel_llm.calllog.api import CallLogAPI
from otel_llm.calllog.auth import ApiKey, KeyRing
from otel_llm.calllog.catalogue import FIELDS, TABLES
from otel_llm.calllog.exporter import CallLogExporter
from otel_llm.calllog.query import CallFilter, CallQuery, StatsQuery
from otel_llm.calllog.ratelimit import RateLimits
from otel_llm.calllog.store import open_store
from otel_llm.instrumentation.anthropic import AnthropicInstrumentor
from otel_llm.instrumentation.openai import OpenAIInstrumentor
from otel_llm.redaction import as_key_hint, key_hint
from tests.support.fake_llm import FakeLLMServer, ScriptedResponse
from tests.support.postgres import pg_cluster, store_at_version, store_url  # noqa: F401
from tests.test_calllog_store import make_records

SECRET = "Q7xvT2mLp9RzK4wNc8HsJ1bYd6FgA3eU5iOo0PlMnBvCxZaSdWqErTy"
API_READ_KEY = "metadata-test-reader-key-0123456789"


@dataclass(frozen=True)
class Provider:
    name: str
    instrumentor: type[OpenAIInstrumentor | AnthropicInstrumentor]
    key: str
    hint: str
    endpoint: str
    rate_limited_code: str
    server_error_code: str

    def client(self, fake: FakeLLMServer) -> Any:
        if self.name == "openai":
            return openai.OpenAI(base_url=fake.openai_base_url, api_key=self.key, max_retries=0)
        return anthropic.Anthropic(
            base_url=fake.anthropic_base_url, api_key=self.key, max_retries=0
        )

    def call(self, client: Any, *, stream: bool = False) -> str | None:
        """One chat call; the response id (None for a stream: read from the span)."""
        messages = [{"role": "user", "content": "Say hi"}]
        if self.name == "openai":
            if stream:
                for _ in client.chat.completions.create(
                    model="gpt-4o-mini", messages=messages, stream=True
                ):
                    pass
                return None
            return str(client.chat.completions.create(model="gpt-4o-mini", messages=messages).id)
        if stream:
            for _ in client.messages.create(
                model="claude-sonnet-4-5", max_tokens=50, messages=messages, stream=True
            ):
                pass
            return None
        return str(
            client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=messages).id
        )

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        return (openai.APIStatusError,) if self.name == "openai" else (anthropic.APIStatusError,)


PROVIDERS = {
    "openai": Provider(
        "openai",
        OpenAIInstrumentor,
        "sk-proj-" + SECRET + "WXyz",
        "sk-proj-...WXyz",
        "/v1/chat/completions",
        "rate_limit_exceeded",
        "server_error",  # OpenAI's 500 body has a null code: its type
    ),
    "anthropic": Provider(
        "anthropic",
        AnthropicInstrumentor,
        "sk-ant-api03-" + SECRET + "-AbCdAA",
        "sk-ant-api03-...CdAA",
        "/v1/messages",
        "rate_limit_error",
        "api_error",
    ),
}


def leaks(provider: Provider, text: str) -> list[str]:
    """The pieces of the key's secret part (any 8 characters of it in a row) found in text."""
    secret = provider.key.removeprefix(provider.hint.split("...")[0])
    return [secret[i : i + 8] for i in range(len(secret) - 7) if secret[i : i + 8] in text]


@dataclass
class App:
    provider: TracerProvider
    memory: InMemorySpanExporter
    calls: CallLogExporter


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as started:
        yield started


@pytest.fixture
def fake(server: FakeLLMServer) -> Iterator[FakeLLMServer]:
    server.clear()
    yield server
    server.clear()


def _app(store: str, sdk: Provider, **instrument: Any) -> tuple[App, Any]:
    memory = InMemorySpanExporter()
    calls = CallLogExporter(store, flush_interval=0.05, retention_interval=0)
    processor = LLMSpanProcessor(
        SimpleSpanProcessor(memory), SimpleSpanProcessor(calls), registry=CollectorRegistry()
    )
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    tracer_provider.add_span_processor(processor)
    instrumentor = sdk.instrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, configure=False, **instrument)
    return App(tracer_provider, memory, calls), instrumentor


def _span_text(span: ReadableSpan) -> str:
    return span.to_json(indent=None)


def _raw_rows(url: str) -> list[Any]:
    """Every row of every table of the store, read past the store's code."""
    if url.startswith("postgresql://"):
        with psycopg.connect(url) as connection:
            return [connection.execute(f"SELECT * FROM {t}").fetchall() for t in TABLES]  # noqa: S608
    with sqlite3.connect(url) as connection:
        return [connection.execute(f"SELECT * FROM {t}").fetchall() for t in TABLES]  # noqa: S608


def _get(url: str) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - the test's own http:// URL
        url, headers={"Authorization": f"Bearer {API_READ_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status, response.read().decode()


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_metadata_on_the_span_in_the_store_and_api_and_the_key_nowhere(
    name: str,
    fake: FakeLLMServer,
    store_url: str,  # noqa: F811 - the fixture
) -> None:
    sdk = PROVIDERS[name]
    app, instrumentor = _app(store_url, sdk)
    try:
        with sdk.client(fake) as client:
            response_id = sdk.call(client)
            fake.script(ScriptedResponse(first_chunk_delay_ms=20))
            sdk.call(client, stream=True)
            for status in (429, 500):
                fake.script(ScriptedResponse(status=status))
                with pytest.raises(sdk.errors):
                    sdk.call(client)
        # The key was really used: the fake server received it.
        assert any(sdk.key in json.dumps(r.headers) for r in fake.requests)
    finally:
        instrumentor.uninstrument()
        app.provider.force_flush()

    ok, streamed, limited, failed = app.memory.get_finished_spans()
    for span in (ok, streamed, limited, failed):
        attributes = span.attributes or {}
        assert attributes[sc.URL_PATH] == sdk.endpoint
        assert attributes[sc.HTTP_REQUEST_METHOD] == "POST"
        assert attributes[sc.OTEL_LLM_API_KEY_HINT] == sdk.hint
        text = _span_text(span)
        assert sdk.key not in text
        assert leaks(sdk, text) == []
    assert ok.attributes[sc.GEN_AI_RESPONSE_ID] == response_id  # type: ignore[index]
    assert ok.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 200  # type: ignore[index]
    assert sc.OTEL_LLM_ERROR_CODE not in ok.attributes  # type: ignore[operator]
    assert streamed.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 200  # type: ignore[index]
    assert streamed.attributes[sc.GEN_AI_RESPONSE_ID]  # type: ignore[index]
    assert limited.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 429  # type: ignore[index]
    assert limited.attributes[sc.OTEL_LLM_ERROR_CODE] == sdk.rate_limited_code  # type: ignore[index]
    assert failed.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 500  # type: ignore[index]
    assert failed.attributes[sc.OTEL_LLM_ERROR_CODE] == sdk.server_error_code  # type: ignore[index]
    # Each exception recorded on the span (its event) says nothing of the key either.
    assert all(span.events for span in (limited, failed))

    # The store: every field of every call, as the exporter wrote it.
    assert app.calls.force_flush(5000)
    store = app.calls.store
    page = store.list(CallQuery(select=tuple(FIELDS), sort="created_at", descending=False))
    by_id = {call["id"]: call for call in page.calls}
    assert len(by_id) == 4
    stored = [
        by_id[f"{s.context.trace_id:032x}-{s.context.span_id:016x}"]
        for s in (ok, streamed, limited, failed)
    ]
    for call in stored:
        assert call["endpoint"] == sdk.endpoint
        assert call["method"] == "POST"
        assert call["api_key_hint"] == sdk.hint
    first, stream_call, limited_call, failed_call = stored
    assert first["request_id"] == response_id
    assert (first["status"], first["status_code"], first["error_code"]) == ("success", 200, None)
    assert stream_call["request_id"] == streamed.attributes[sc.GEN_AI_RESPONSE_ID]  # type: ignore[index]
    assert stream_call["time_to_first_token_ms"] == stream_call["time_to_first_chunk_ms"]
    assert stream_call["time_to_first_token_ms"] >= 20
    assert (limited_call["status"], limited_call["status_code"]) == ("error", 429)
    assert limited_call["error_code"] == sdk.rate_limited_code
    assert (failed_call["status"], failed_call["status_code"]) == ("error", 500)
    assert failed_call["error_code"] == sdk.server_error_code
    details = [store.details(call["id"]) for call in stored]
    gets = [store.get(call["id"]) for call in stored]
    raw = _raw_rows(store_url)
    assert len(raw[0]) == 4  # the calls table's rows
    stored_text = json.dumps([page.calls, details, gets, raw], default=str)
    assert sdk.key not in stored_text
    assert leaks(sdk, stored_text) == []
    # A filter on the response id finds its call, and on the hint all of them.
    found = store.list(CallQuery(filter=CallFilter(request_id=response_id)))
    assert [call["id"] for call in found.calls] == [first["id"]]
    assert store.count(CallFilter(api_key_hint=sdk.hint)) == 4
    assert store.count(CallFilter(api_key_hint="sk-proj-...none")) == 0

    # The query API: the list with every field, each call, its details, and the filters.
    keys = KeyRing([ApiKey.plain("reader", API_READ_KEY)])
    with CallLogAPI(store, keys=keys, limits=RateLimits(0, 0, 0)) as api:
        answers = []
        select = ",".join(FIELDS)
        status, listed = _get(f"{api.url}?limit=10&select={select}")
        assert status == 200
        answers.append(listed)
        for call in stored:
            answers.append(_get(f"{api.url}/{call['id']}")[1])
            answers.append(_get(f"{api.url}/{call['id']}/details")[1])
        query = urllib.parse.urlencode({"request_id": response_id})
        status, by_request = _get(f"{api.url}?{query}")
        answers.append(by_request)
        summary = json.loads(by_request)["calls"]
        assert [call["id"] for call in summary] == [first["id"]]
        assert summary[0]["request_id"] == response_id
        assert summary[0]["status_code"] == 200
        assert summary[0]["api_key_hint"] == sdk.hint
        one = json.loads(_get(f"{api.url}/{first['id']}")[1])
        assert (one["endpoint"], one["method"]) == (sdk.endpoint, "POST")
    api_text = "\n".join(answers)
    assert sdk.hint in api_text
    assert sdk.key not in api_text
    assert leaks(sdk, api_text) == []
    app.provider.shutdown()


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_the_key_hint_can_be_turned_off(
    name: str, fake: FakeLLMServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = PROVIDERS[name]
    for off in ({"api_key_hint": False}, {}):
        if not off:
            monkeypatch.setenv("OTEL_LLM_API_KEY_HINT", "false")
        app, instrumentor = _app(str(tmp_path / f"calls-{len(off)}.db"), sdk, **off)
        try:
            with sdk.client(fake) as client:
                sdk.call(client)
        finally:
            instrumentor.uninstrument()
        (span,) = app.memory.get_finished_spans()
        assert sc.OTEL_LLM_API_KEY_HINT not in (span.attributes or {})
        assert span.attributes[sc.URL_PATH] == sdk.endpoint  # type: ignore[index]
        app.provider.shutdown()


@pytest.mark.parametrize("name", sorted(PROVIDERS))
@pytest.mark.parametrize("form", ["provider's", "gateway's"])
def test_a_key_the_sdk_quotes_in_its_error_is_not_in_the_span(
    name: str, form: str, fake: FakeLLMServer, tmp_path: Any
) -> None:
    """Found in review: a key read from a file keeps its newline, httpx refuses the header and
    quotes it whole in the error the SDK chains to its own: the recorded exception carried the
    key. A provider's key is redacted by its format, a gateway's (no known format) as the
    client's key."""
    sdk = PROVIDERS[name]
    key = (sdk.key if form == "provider's" else "corp-gw-" + SECRET) + "\n"
    app, instrumentor = _app(str(tmp_path / "calls.db"), sdk)
    try:
        client_type = openai.OpenAI if name == "openai" else anthropic.Anthropic
        base_url = fake.openai_base_url if name == "openai" else fake.anthropic_base_url
        with client_type(base_url=base_url, api_key=key, max_retries=0) as client:
            with pytest.raises((openai.APIConnectionError, anthropic.APIConnectionError)) as raised:
                sdk.call(client)
        assert SECRET in repr(raised.value.__cause__)  # the application still sees it all
    finally:
        instrumentor.uninstrument()
    (span,) = app.memory.get_finished_spans()
    (event,) = [event for event in span.events if event.name == "exception"]
    assert "[REDACTED]" in str(event.attributes["exception.stacktrace"])  # type: ignore[index]
    text = _span_text(span)
    assert not [SECRET[i : i + 8] for i in range(len(SECRET) - 7) if SECRET[i : i + 8] in text]
    app.provider.shutdown()


def test_a_client_base_path_is_part_of_the_endpoint(fake: FakeLLMServer, tmp_path: Any) -> None:
    # A gateway that serves OpenAI's API under a path of its own: the SDK joins the two (the
    # fake serves /v1 only, so it answers 404 -- which the span says too).
    sdk = PROVIDERS["openai"]
    app, instrumentor = _app(str(tmp_path / "calls.db"), sdk)
    try:
        with openai.OpenAI(
            base_url=fake.base_url + "/gateway/v1/", api_key=sdk.key, max_retries=0
        ) as client:
            with pytest.raises(openai.NotFoundError):
                client.embeddings.create(model="text-embedding-3-small", input="hi")
    finally:
        instrumentor.uninstrument()
    assert fake.last_request.path == "/gateway/v1/embeddings"
    (span,) = app.memory.get_finished_spans()
    assert span.attributes[sc.URL_PATH] == "/gateway/v1/embeddings"  # type: ignore[index]
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 404  # type: ignore[index]
    app.provider.shutdown()


def test_a_whole_key_in_the_hint_attribute_is_stored_as_its_hint(tmp_path: Any) -> None:
    # Another instrumentation (or a sender to the collector) puts a whole key where the hint
    # goes: the call log stores the hint of it, never the key.
    sdk = PROVIDERS["openai"]
    app, instrumentor = _app(str(tmp_path / "calls.db"), sdk)
    instrumentor.uninstrument()
    tracer = app.provider.get_tracer("other.instrumentation")
    attributes = {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        sc.OTEL_LLM_API_KEY_HINT: sdk.key,
        sc.ERROR_CODE: "their_code",
        sc.ERROR_TYPE: "TheirError",
    }
    tracer.start_span("chat", kind=SpanKind.CLIENT, attributes=attributes).end()
    assert app.calls.force_flush(5000)
    (call,) = app.calls.store.list(CallQuery(select=tuple(FIELDS))).calls
    assert call["api_key_hint"] == sdk.hint
    assert call["error_code"] == "their_code"  # error.code, read when ours is absent
    assert sdk.key not in json.dumps(call, default=str)
    app.provider.shutdown()


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("sk-proj-" + SECRET + "WXyz", "sk-proj-...WXyz"),
        ("sk-" + SECRET + "1234", "sk-...1234"),
        ("sk-ant-api03-" + SECRET + "-AA", "sk-ant-api03-...y-AA"),
        ("sk-or-v1-" + SECRET, "sk-or-v1-...ErTy"),
        ("gsk_" + SECRET, "gsk_...ErTy"),
        (SECRET, "...ErTy"),  # an unknown kind: the last 4 characters only
        (" sk-" + SECRET + "1234\n", "sk-...1234"),  # read from a file
        ("ollama", None),  # placeholders and short tokens: nothing
        ("sk-" + "x" * 28, None),
        (None, None),
        (12345678901234567890123456789012345, None),
    ],
)
def test_key_hints(key: Any, hint: str | None) -> None:
    assert key_hint(key) == hint
    assert as_key_hint(hint) == hint  # a hint is kept as it is
    if hint is not None:
        assert as_key_hint(key) == hint  # a key is cut to its hint
        assert key.strip()[len(hint.split("...")[0]) : -4] not in hint


_V4_COLUMNS = ("request_id", "endpoint", "method", "api_key_hint")
_V6_COLUMNS = ("agent_name", "agent_id", "conversation_id", "parent_span_id", "root_span_name")
_V7_COLUMNS = ("policy", "policy_rule", "policy_action")
_AFTER_V2_COLUMNS = (
    "billing",
    "list_cost_nusd",
    "discount_nusd",
    *_V4_COLUMNS,
    *_V6_COLUMNS,
    *_V7_COLUMNS,
)
"""The calls' columns migrations 3 (billing), 4 (call metadata), 6 (traces) and 7 (policy
violations) add (5 adds tables only)."""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_v2_database_upgrades_keeping_its_calls(
    backend: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """A store made before the call metadata (v1 + v2) gains its columns on open: its calls
    keep every value and have none of the new ones; new calls store them."""
    old, new = make_records(2, now=datetime.now(UTC))
    columns = [c for c in sql.INSERT_COLUMNS if c not in _AFTER_V2_COLUMNS]
    assert len(columns) == len(sql.INSERT_COLUMNS) - len(_AFTER_V2_COLUMNS)
    values = [v for c, v in zip(sql.INSERT_COLUMNS, sql.row_of(old), strict=True) if c in columns]
    marks = ", ".join("?" for _ in columns)
    insert = f"INSERT INTO {schema.CALLS} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
    url = store_at_version(backend, request, tmp_path, 2, (insert, values))
    store = open_store(url)
    try:
        assert store.schema_version() == schema.LATEST  # type: ignore[attr-defined]
        kept = store.get(old.id)
        assert kept is not None
        assert (kept["model"], kept["status_code"]) == (old.model, old.status_code)
        assert all(kept[name] is None for name in (*_V4_COLUMNS, *_V6_COLUMNS, *_V7_COLUMNS))
        assert store.write([new]) == 1
        stored = store.get(new.id)
        assert stored is not None
        assert [stored[name] for name in _V4_COLUMNS] == [
            getattr(new, name) for name in _V4_COLUMNS
        ]
        assert stored["request_id"] is not None
        # v5's table by key holds the new call (the old one was stored without a roll-up).
        groups = store.stats(StatsQuery(group_by="api_key"))["groups"]
        assert [group["total_requests"] for group in groups] == [1]
    finally:
        store.close()
