"""The call log's JSON query API, independent of any server: routes, API keys, per-key rate
limits and the answers. ``api.py`` serves it over HTTP. Paths outside ``/api/`` are the page's
(``webpage.py``: the static files at ``/``, no key needed; their data comes from this API).

Routes (all under ``/api/v1/calls``; every request needs an API key)::

    GET|POST /api/v1/calls                list calls (also POST /api/v1/calls/list)
    GET|POST /api/v1/calls/enhanced       the list in seed 001's shape (?view=enhanced)
    GET|POST /api/v1/calls/count          count calls
    GET|POST /api/v1/calls/stats          usage statistics
    GET      /api/v1/calls/fields         the fields a call has (for select)
    GET      /api/v1/calls/{id}           one call, every field (or ?select=)
    GET      /api/v1/calls/{id}/details   its captured prompt and response preview
    GET      /api/v1/traces               traces with LLM calls and their totals (traces.py)
    GET      /api/v1/traces/{trace_id}    one trace: its calls, agents and tools as a tree
    GET      /api/v1/conversations/{id}   the totals of a conversation's calls
    GET      /api/v1/policies[/{name}]    budgets and policies (``policyapi.py``)

Every read is bounded in time, as the API runs in the collector's process beside its OTLP
receivers and SQLite has one reader connection: a list, count, call, trace or conversation
within ``call_log_query_timeout``, stats within ``call_log_stats_timeout``; past it the database
statement is stopped (which lets the connection go to the next request at once) and the answer
is 503 saying which budget and what to ask instead. Stats are bounded in number too: at most
``MAX_CONCURRENT_STATS`` run at once -- another waits up to ``STATS_QUEUE_SECONDS`` for its
turn, then gets 503 with ``Retry-After``. So stats can hold at most that many threads (and of
the GIL) for at most that long, however large the store.

Nothing creates, changes or deletes a call: other methods get 405 with ``Allow``. Errors are
``{"error": {"code": ..., "message": ...}}``; a failure of the store is logged and answered with
a generic 500 -- no SQL or stack trace reaches the client. Money leaves as JSON numbers
(converted from Decimal only here), datetimes as ISO 8601 UTC with ``Z``.

``CallLogApp.handle(method, target, header, body)`` answers one request with a ``Response``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from otel_llm import settings
from otel_llm.calllog import enhanced, params, policyapi, traces
from otel_llm.calllog.auth import ApiKey, AuthError, KeyRing
from otel_llm.calllog.query import CallQuery, QueryError, QueryTimeout
from otel_llm.calllog.ratelimit import EndpointClass, RateLimiter, RateLimits
from otel_llm.calllog.record import FIELDS, is_call_id
from otel_llm.calllog.webpage import WebPage

if TYPE_CHECKING:  # the stores' module (SQL, drivers) is only needed to type the reader
    from otel_llm.calllog.store import CallReader, Page
    from otel_llm.policies import PolicyFile

_logger = logging.getLogger(__name__)

PREFIX = "/api/v1/calls"
TRACES_PREFIX = "/api/v1/traces"
CONVERSATIONS_PREFIX = "/api/v1/conversations"
MAX_BODY_BYTES = 64 * 1024
"""A query body is a few hundred bytes; anything near this is not one."""
_MAX_QUERY_FIELDS = 100
MAX_CONCURRENT_STATS = 2
"""Stats answered at once: enough for a dashboard's parallel panels, and at most two threads'
worth of CPU taken from the receivers (SQLite reads one statement at a time anyway)."""
STATS_QUEUE_SECONDS = 1.0
"""How long a stats request waits for one of those places before it is answered 503."""
_ERROR_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class Refusal(Exception):
    """Ends a request early with an error response (the server's reading of the body too)."""

    def __init__(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)


@dataclass(frozen=True, slots=True)
class _Route:
    endpoint: str
    methods: tuple[str, ...]
    call_id: str | None = None
    policy: str | None = None


def jsonable(value: Any) -> Any:
    """A store value as JSON: Decimal -> number, datetime -> ISO 8601 UTC ``Z``, date -> ISO."""
    if isinstance(value, Decimal | float):
        number = float(value)  # money stays Decimal until this very last step
        return number if math.isfinite(number) else None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def encode(value: Any) -> bytes:
    return json.dumps(jsonable(value), allow_nan=False, ensure_ascii=False).encode()


def error_body(status: int, message: str) -> bytes:
    # ASCII, escaped: a message quoting the request encodes whatever the request held.
    code = _ERROR_CODES.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_"))
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class CallLogApp:
    """Routes a request, checks its key, rate and parameters, and answers from the store."""

    def __init__(
        self,
        store: CallReader,
        *,
        keys: KeyRing,
        limits: RateLimits | None = None,
        limiter: RateLimiter | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        stats_timeout: float | None = None,
        query_timeout: float | None = None,
        max_concurrent_stats: int = MAX_CONCURRENT_STATS,
        policies: PolicyFile | None = None,
        trace_url: str | None = None,
    ):
        if not len(keys):
            raise ValueError(
                "the call-log API needs at least one API key (call_log_api_keys_file or "
                "call_log_api_keys)"
            )
        self.store = store
        self.keys = keys
        self.limiter = limiter if limiter is not None else RateLimiter(limits)
        self.max_body_bytes = max_body_bytes
        self.stats_timeout = settings.CALL_LOG_STATS_TIMEOUT.resolve(stats_timeout)
        self.query_timeout = settings.CALL_LOG_QUERY_TIMEOUT.resolve(query_timeout)
        self.max_concurrent_stats = max_concurrent_stats
        self._stats_places = threading.BoundedSemaphore(max_concurrent_stats)
        self.policies = policies
        """The collector's budgets and policies, served under /api/v1/policies."""
        self.page = WebPage(settings.CALL_LOG_TRACE_URL.resolve(trace_url))
        """The page at ``/`` (``webpage.py``): every path outside ``/api/``."""

    def handle(
        self, method: str, target: str, header: Callable[[str], str | None], body: bytes
    ) -> Response:
        """The response to one request (``header(name)`` reads a request header)."""
        page = self.page.answer(method, target, header)
        if page is not None:
            return Response(page.status, page.body, page.headers)
        return self._handle_api(method, target, header, body)

    def _handle_api(
        self, method: str, target: str, header: Callable[[str], str | None], body: bytes
    ) -> Response:
        extra: tuple[tuple[str, str], ...] = ()
        try:
            split = urlsplit(target)
            route = _route(split.path)
            if method not in route.methods:
                allow = ", ".join(route.methods)
                raise Refusal(
                    405, f"{method} is not allowed here; allowed: {allow}", [("Allow", allow)]
                )
            key = self.keys.identify(header)
            extra = self._admit(key, route)
            query = _query(split.query)
            if method == "POST" and body.strip() and not _is_json(header("Content-Type")):
                raise Refusal(415, "send the request body as Content-Type: application/json")
            payload = params.parse_body(body) if method == "POST" else {}
            answer = (
                self._policies_answer(route, key, query)
                if route.endpoint == "policies"
                else self._answer(route, key, query, payload)
            )
            return Response(200, encode(answer), (*JSON_HEADERS, *extra))
        except Refusal as refusal:
            return self.error(refusal.status, refusal.message, (*refusal.headers, *extra))
        except AuthError as refused:
            headers = (
                [("WWW-Authenticate", 'Bearer realm="otel-llm"')] if refused.status == 401 else []
            )
            return self.error(refused.status, refused.message, (*headers, *extra))
        except params.ParamError as bad:
            return self.error(400, bad.message, extra)
        except QueryError as refused_query:  # the store's own "cannot answer that as asked"
            return self.error(400, str(refused_query), extra)

        except Exception:
            # The store's errors (SQL, connection) stay in the log; the client learns only that
            # the server failed.
            _logger.exception("otel-llm call-log API: %s %s failed", method, target[:200])
            return self.error(
                500, "the call log could not answer this request; see the server log", extra
            )

    def error(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
        return Response(status, error_body(status, message), (*JSON_HEADERS, *headers))

    def _admit(self, key: ApiKey, route: _Route) -> tuple[tuple[str, str], ...]:
        decision = self.limiter.check(key.name, _ENDPOINT_CLASSES[route.endpoint])
        if decision.limit == 0:
            return ()
        headers = (
            ("X-RateLimit-Limit", str(decision.limit)),
            ("X-RateLimit-Remaining", str(decision.remaining)),
        )
        if not decision.allowed:
            raise Refusal(
                429,
                f"rate limit of {decision.limit} requests per minute reached for this API key; "
                f"retry in {decision.retry_after} s",
                [*headers, ("Retry-After", str(decision.retry_after))],
            )
        return headers

    def _policies_answer(
        self, route: _Route, key: ApiKey, query: Mapping[str, list[str]]
    ) -> dict[str, Any]:
        if self.policies is None:
            raise Refusal(404, "no policies are configured (otel-llm collector --policies)")
        try:
            return policyapi.answer(self.policies, key, route.policy, query)
        except policyapi.NoPolicy:
            raise Refusal(404, f"no policy named '{_shown(route.policy or '')}'") from None

    def _answer(
        self, route: _Route, key: ApiKey, query: Mapping[str, list[str]], body: Mapping[str, Any]
    ) -> Any:
        """``_endpoint_answer``, or 503 past the time budget (stats say theirs themselves)."""
        try:
            return self._endpoint_answer(route, key, query, body)
        except QueryTimeout as timeout:
            raise Refusal(503, timeout.explained(*_QUERY_BUDGET)) from None

    def _endpoint_answer(  # noqa: PLR0911 - one return per endpoint
        self, route: _Route, key: ApiKey, query: Mapping[str, list[str]], body: Mapping[str, Any]
    ) -> Any:
        """The JSON-able answer of one admitted request. A key limited to projects has its
        filter narrowed to them (or is refused, 403, a project it may not read)."""
        store = self.store
        if route.endpoint in ("list", "enhanced"):
            view = "enhanced" if route.endpoint == "enhanced" else None
            wanted = params.parse_list(query, body, view=view)
            wanted = dataclasses.replace(wanted, filter=key.restrict(wanted.filter))
            if wanted.view == "enhanced":
                return enhanced_answer(wanted, store, self.query_timeout)
            return list_answer(wanted, store.list(wanted, timeout=self.query_timeout))
        if route.endpoint == "count":
            wanted_filter = key.restrict(params.parse_count(query, body))
            return {"count": store.count(wanted_filter, timeout=self.query_timeout)}
        if route.endpoint == "stats":
            stats = params.parse_stats(query, body)
            stats = dataclasses.replace(
                stats, filter=key.restrict(stats.filter), timeout=self.stats_timeout
            )
            if not self._stats_places.acquire(timeout=STATS_QUEUE_SECONDS):
                raise Refusal(
                    503,
                    f"{self.max_concurrent_stats} stats requests are being answered already; "
                    "retry in a second",
                    [("Retry-After", "1")],
                )
            try:
                return store.stats(stats)
            except QueryTimeout as timeout:
                raise Refusal(503, timeout.explained(*_STATS_BUDGET)) from None
            finally:
                self._stats_places.release()
        if route.endpoint in _TRACE_ENDPOINTS:
            return _trace_answer(store, route, key, query, self.query_timeout)
        if route.endpoint == "fields":
            params.parse_none(query)
            return {
                "fields": [
                    {"name": name, "type": info.type, "description": info.description}
                    for name, info in FIELDS.items()
                ]
            }
        call_id = route.call_id or ""
        if route.endpoint == "get":
            select = params.parse_item(query)
            call = store.get(call_id, key.projects, timeout=self.query_timeout)
        else:
            params.parse_none(query)
            select = None
            call = store.details(call_id, key.projects, timeout=self.query_timeout)
        if call is None:
            # Also for a call of a project the key may not read: its existence is not revealed.
            raise Refusal(404, f"no call with id '{_shown(call_id)}'")
        return call if select is None else {name: call.get(name) for name in select}


_TRACE_ENDPOINTS = ("traces", "trace", "conversation")
_STATS_BUDGET = (
    "the statistics",
    "call_log_stats_timeout",
    "ask for a shorter range or fewer dimensions",
)
_QUERY_BUDGET = (
    "the query",
    "call_log_query_timeout",
    "narrow the time range (start_date, end_date) or add filters; to go deeper than a few "
    "pages, page by time (end_date: the created_at of the last call seen) instead of offset",
)
"""What a 503 past a time budget says: what did not finish, its setting, what to ask instead."""


def _trace_answer(
    store: CallReader,
    route: _Route,
    key: ApiKey,
    query: Mapping[str, list[str]],
    timeout: float,
) -> Any:
    """The answers of the trace endpoints (``traces.py``)."""
    if route.endpoint == "traces":
        wanted = traces.parse_traces(query)
        restricted = dataclasses.replace(wanted, filter=key.restrict(wanted.filter))
        return store.traces(restricted, timeout=timeout)
    params.parse_none(query)
    ident = route.call_id or ""
    if route.endpoint == "trace":
        found = store.trace(ident, key.projects, timeout=timeout)
        if found is None:
            raise Refusal(404, f"no trace with id '{ident}' has LLM calls in the call log")
        return found
    conversation_id = traces.check_conversation_id(ident)
    found = store.conversation(conversation_id, key.projects, timeout=timeout)
    if found is None:
        raise Refusal(404, f"no conversation with id '{_shown(ident)}' has LLM calls")
    return found


def list_answer(query: CallQuery, page: Page) -> dict[str, Any]:
    """The list endpoint's answer: the page's calls and the seeds' pagination block."""
    pagination = {
        "total": page.total,
        "limit": query.limit,
        "offset": query.offset,
        "hasMore": page.has_more,
    }
    return {"calls": page.calls, "pagination": pagination}


def enhanced_answer(
    query: CallQuery, store: CallReader, timeout: float | None = None
) -> dict[str, Any]:
    """The enhanced view: the list's page with each call's tokens, cost and rates grouped, and
    the summary of every call the filter selects; both within ``timeout`` seconds."""
    started = time.monotonic()
    page = store.list(dataclasses.replace(query, select=enhanced.FIELDS), timeout=timeout)
    answer = list_answer(query, page)
    answer["calls"] = [enhanced.enhanced_call(call) for call in page.calls]
    left = None if timeout is None else max(timeout - (time.monotonic() - started), 1e-6)
    answer["summary"] = enhanced.summary(store.summary(query.filter, timeout=left))
    return answer


JSON_HEADERS = (
    ("Content-Type", "application/json; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
)
_QUERYING = ("GET", "POST")
_READING = ("GET",)
_COLLECTIONS = {
    "list": "list",
    "enhanced": "enhanced",
    "count": "count",
    "stats": "stats",
    "fields": "fields",
}
_ENDPOINT_CLASSES: dict[str, EndpointClass] = {
    "list": "list",
    "enhanced": "list",
    "count": "list",
    "stats": "stats",
    "fields": "details",
    "get": "details",
    "details": "details",
    "traces": "list",
    "trace": "details",
    "conversation": "details",
    "policies": "details",
}


def _route(path: str) -> _Route:  # noqa: PLR0911 - one return per kind of path
    if path != "/" and path.endswith("/"):
        path = path[:-1]
    if path == PREFIX:
        return _Route("list", _QUERYING)
    policies = policyapi.POLICIES_PREFIX
    if path == policies:
        return _Route("policies", _READING)
    if path.startswith(policies + "/") and "/" not in path[len(policies) + 1 :]:
        return _Route("policies", _READING, policy=unquote(path[len(policies) + 1 :]))
    traced = _trace_route(path)
    if traced is not None:
        return traced
    if not path.startswith(PREFIX + "/"):
        raise Refusal(404, f"no such endpoint: {_shown(unquote(path))}; the API is under {PREFIX}")
    # Split before decoding: an encoded slash belongs to the id, not the path.
    segments = [unquote(segment) for segment in path[len(PREFIX) + 1 :].split("/")]
    if len(segments) == 1 and segments[0] in _COLLECTIONS:
        name = segments[0]
        return _Route(name, _READING if name == "fields" else _QUERYING)
    # Only an id of the calls' form names a call: any other path is no endpoint (a client
    # asking for /request-logs/enhanced of another product learns that, not "no call").
    if len(segments) == 1 and is_call_id(segments[0]):
        return _Route("get", _READING, segments[0])
    if len(segments) == 2 and is_call_id(segments[0]) and segments[1] == "details":
        return _Route("details", _READING, segments[0])
    raise Refusal(
        404,
        f"no such endpoint: {_shown(unquote(path))}; endpoints: {PREFIX}, "
        + ", ".join(f"{PREFIX}/{name}" for name in _COLLECTIONS)
        + f", {PREFIX}/{{id}}, {PREFIX}/{{id}}/details",
    )


def _trace_route(path: str) -> _Route | None:
    """The trace endpoints' routes; None for another path."""
    if path == TRACES_PREFIX:
        return _Route("traces", _READING)
    for prefix, endpoint in ((TRACES_PREFIX, "trace"), (CONVERSATIONS_PREFIX, "conversation")):
        if not path.startswith(prefix + "/"):
            continue
        ident = unquote(path[len(prefix) + 1 :])
        if not ident or "/" in path[len(prefix) + 1 :]:
            return None
        if endpoint == "trace" and not traces.is_trace_id(ident):
            raise params.ParamError(
                f"trace_id must be 32 hex digits, got '{_shown(ident)}'", "trace_id"
            )
        return _Route(endpoint, _READING, ident)
    return None


def _query(text: str) -> dict[str, list[str]]:
    try:
        return parse_qs(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=_MAX_QUERY_FIELDS,
            errors="strict",
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise params.ParamError(f"the URL's query string cannot be read: {exc}") from None


_LENIENT_TYPES = {
    "application/json",
    "text/json",
    "text/plain",
    "application/x-www-form-urlencoded",
}


def _is_json(content_type: str | None) -> bool:
    # `curl -d '{...}'` (and urllib) label a JSON body form-urlencoded unless told otherwise;
    # refusing those would refuse the most common client. A type that is clearly something
    # else (multipart, XML) is refused.
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in _LENIENT_TYPES or media.endswith("+json")


def _shown(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."
