"""Every otel-llm setting, defined once.

Each setting is a keyword argument (of ``configure``, ``LLMSpanProcessor``, the services' config
objects and the CLI) and an environment variable, ``OTEL_LLM_`` + its name in capitals.
Precedence: argument > environment > config file (``otel-llm collector --config``) > default.
A bad value -- from any place -- logs a warning and falls back, because a typo in a telemetry
setting must never stop the application it observes.

The services read their settings through frozen config objects (``CollectorConfig``,
``CallLogConfig``), subclasses of ``Configured`` whose fields are bound to settings, so each
setting is resolved once, where the object is built. What a setting is and how values are
checked: ``otel_llm._setting``.
"""

from __future__ import annotations

import os
from typing import Any

from otel_llm._setting import (
    Setting,
    boolean,
    byte_size,
    choice,
    endpoint,
    header_map,
    int_at_least,
    name_list,
    non_empty_text,
    optional_port,
    optional_text,
    or_off,
    parse_bool,
    parse_extra_labels,
    parse_extra_labels_text,
    parse_headers,
    parse_name_list,
    parse_size,
    path_text,
    positive_seconds,
    seconds_or_off,
)


def _state_path(*parts: str) -> str:
    # Queue and call log are state that must survive a reboot (so not /tmp, often a tmpfs) and
    # need no root (so not /var/lib). XDG's state directory is that place: "data that should
    # persist between restarts but is not important enough for $XDG_DATA_HOME". A container or
    # system service sets it to a volume. Read when the default is, not at import.
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "otel-llm", *parts)


# --- The core: configure(), LLMSpanProcessor, the instrumentors ------------------------------

ENABLED: Setting[bool] = Setting(
    name="enabled",
    default=True,
    parse=parse_bool,
    check=boolean,
    doc="Master switch. When false, ``configure()`` installs nothing.",
)
PRICE_OVERRIDES: Setting[str | None] = Setting(
    name="price_overrides",
    default=None,
    parse=str,
    check=optional_text,
    doc="Path of a YAML or JSON file of price overrides and model aliases (see README).",
)
EXTRA_LABELS: Setting[dict[str, str]] = Setting(
    name="extra_labels",
    default={},
    parse=parse_extra_labels_text,
    check=parse_extra_labels,
    doc=(
        "Span attributes added as metric labels. Environment form: "
        "``feature=otel_llm.context.feature,team=app.team``; a bare attribute name gets the "
        "label name Prometheus' translation gives it (dots become underscores)."
    ),
)
MAX_LABEL_VALUES: Setting[int] = Setting(
    name="max_label_values",
    default=200,
    parse=int,
    check=int_at_least(1),
    doc=(
        "Distinct values kept per metric label (models, services, extra labels); later new "
        "values are reported as ``other`` so one bad attribute cannot explode cardinality."
    ),
)
MAX_TOKENS: Setting[int] = Setting(
    name="max_tokens",
    default=100_000_000,
    parse=int,
    check=int_at_least(1),
    doc="A token count above this is absurd for one call: it is ignored and counted, not priced.",
)
PRICE_CACHE_SIZE: Setting[int] = Setting(
    name="price_cache_size",
    default=4096,
    parse=int,
    check=int_at_least(1),
    doc="Number of (provider, model) price look-ups remembered; the oldest is forgotten first.",
)
BILLING_GATEWAYS: Setting[tuple[str, ...]] = Setting(
    name="billing_gateways",
    default=(),
    parse=parse_name_list,
    check=name_list,
    doc=(
        "Providers (``openrouter``) and hosts (``llm-proxy.example.com``, subdomains included, "
        "matched against ``server.address``) that bill credits: their calls are billed "
        "``credits``, every other call ``own_key`` unless it carries a provider-reported cost "
        "or ``llm_context(billing=...)``. Environment form: ``openrouter,litellm.internal``."
    ),
)
PROMETHEUS_PORT: Setting[int | None] = Setting(
    name="prometheus_port",
    default=None,
    parse=int,
    check=optional_port,
    doc="When set, ``configure()`` serves ``/metrics`` on this port (0 or unset: no endpoint).",
)
PROMETHEUS_HOST: Setting[str] = Setting(
    name="prometheus_host",
    default="127.0.0.1",
    parse=str,
    check=non_empty_text,
    doc="Address the ``/metrics`` endpoint binds; set 0.0.0.0 to let a remote Prometheus scrape.",
)


def _parse_capture(raw: str) -> bool:
    # The legacy true/false and the newer modes; otel-llm records content on spans only.
    mode = raw.upper()
    if mode in {"SPAN_ONLY", "SPAN_AND_EVENT"}:
        return True
    if mode in {"NO_CONTENT", "EVENT_ONLY"}:
        return False
    return parse_bool(raw)


CAPTURE_CONTENT: Setting[bool] = Setting(
    name="capture_content",
    fallback_env="OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    default=False,
    parse=_parse_capture,
    check=boolean,
    doc=(
        "Record prompts and responses on spans (``gen_ai.input.messages``, "
        "``gen_ai.output.messages``). Off by default: content is often personal data. "
        "Also read from the standard OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT "
        "(true/false, SPAN_ONLY, SPAN_AND_EVENT, NO_CONTENT, EVENT_ONLY)."
    ),
)
CONTENT_MAX_LENGTH: Setting[int] = Setting(
    name="content_max_length",
    default=4096,
    parse=int,
    check=int_at_least(1),
    doc="Characters kept of each captured content attribute; longer content is truncated.",
)
STREAM_INCLUDE_USAGE: Setting[bool] = Setting(
    name="stream_include_usage",
    default=False,
    parse=parse_bool,
    check=boolean,
    doc=(
        "Add ``stream_options={'include_usage': True}`` to OpenAI streaming requests that do "
        "not set it, so streamed calls report token counts. Trade-off: the stream then ends "
        "with one extra chunk that has usage and no choices, which code iterating "
        "``chunk.choices[0]`` must tolerate. Off: such streams are marked usage-missing."
    ),
)
ROLLUP_MAX_OPEN: Setting[int] = Setting(
    name="rollup_max_open",
    default=10_000,
    parse=int,
    check=int_at_least(1),
    doc=(
        "Traces with calls whose local root has not ended, and spans under a live agent, the "
        "processor follows for cost roll-ups (each table); past it the oldest is given up and "
        "counted in ``otel_llm_rollup_evicted_total``."
    ),
)
AGENT_LABEL: Setting[bool] = Setting(
    name="agent_label",
    default=False,
    parse=parse_bool,
    check=boolean,
    doc=(
        "Add the ``gen_ai_agent_name`` label (from ``gen_ai.agent.name``, inherited from the "
        "enclosing agent) to the GenAI metrics; capped by ``max_label_values`` like every "
        "label a span fills. Off by default: one more label multiplies the series."
    ),
)

API_KEY_HINT: Setting[bool] = Setting(
    name="api_key_hint",
    default=True,
    parse=parse_bool,
    check=boolean,
    doc=(
        "Record a non-secret hint of the client's provider key on the instrumentors' spans "
        "(``otel_llm.api_key.hint``): its type prefix and last 4 characters, ``sk-proj-...Ab3d``, "
        "never more (``otel_llm.redaction.key_hint``), so calls can be told apart by key. "
        "False: no hint."
    ),
)

POLICY_ENFORCE: Setting[str] = Setting(
    name="policy_enforce",
    default="off",
    parse=str,
    check=choice("off", "block"),
    doc=(
        "``block``: the instrumentors and ``llm_call`` refuse, before the provider is called, a "
        "call that a ``block`` policy of the collector refuses (a denied model, a requested "
        "max_tokens over the rule's, an exceeded budget), raising ``otel_llm.PolicyBlocked``; "
        "the states come from a cached poll of ``policy_api_url``, never from a request on the "
        "call's path. ``off``: no check."
    ),
)
POLICIES: Setting[str | None] = Setting(
    name="policies",
    default=None,
    parse=str,
    check=or_off(path_text),
    doc=(
        "A policy file (the collector's format: README, Budgets and policies) this "
        "application enforces from its own spend, without a collector: with "
        "``policy_enforce=block``, each budget's spend is kept from the calls this process "
        "prices -- per process: other processes' calls, and this one's before it started, are "
        "not counted -- and a call a ``block`` policy refuses raises ``PolicyBlocked``. The file "
        "is looked at every ``policy_refresh_interval`` seconds and reloaded when it changed (an "
        "invalid edit keeps the last good policies). Set, ``policy_api_url`` is not polled."
    ),
)
POLICY_API_URL: Setting[str | None] = Setting(
    name="policy_api_url",
    default=None,
    parse=str,
    check=optional_text,
    doc=(
        "Base URL of the collector's call-log API (``http://host:port``; the URL it logs, "
        "ending ``/api/v1/calls``, works too) whose ``/api/v1/policies?view=enforcement`` "
        "``policy_enforce`` polls."
    ),
)
POLICY_API_KEY: Setting[str | None] = Setting(
    name="policy_api_key",
    default=None,
    parse=str,
    check=optional_text,
    doc="The API key sent to ``policy_api_url`` (``Authorization: Bearer``).",
)
POLICY_REFRESH_INTERVAL: Setting[float] = Setting(
    name="policy_refresh_interval",
    default=5.0,
    parse=float,
    check=positive_seconds,
    doc=(
        "Seconds between two polls of the policy states: how long a budget exceeded elsewhere "
        "may take to block calls here (a budget's reset unblocks at its time, without a poll). "
        "With ``policies``: seconds between two looks at the file."
    ),
)
POLICY_FAIL_MODE: Setting[str] = Setting(
    name="policy_fail_mode",
    default="open",
    parse=str,
    check=choice("open", "closed"),
    doc=(
        "While the policy states cannot be read: ``open`` lets every call through (counted in "
        "``otel_llm_policy_enforcement_unreachable_total``, with a warning); ``closed`` refuses "
        "every call with ``PolicyBlocked`` (rule ``unreachable``)."
    ),
)

CORE: tuple[Setting[Any], ...] = (
    ENABLED,
    PRICE_OVERRIDES,
    EXTRA_LABELS,
    MAX_LABEL_VALUES,
    MAX_TOKENS,
    PRICE_CACHE_SIZE,
    BILLING_GATEWAYS,
    PROMETHEUS_PORT,
    PROMETHEUS_HOST,
    CAPTURE_CONTENT,
    CONTENT_MAX_LENGTH,
    STREAM_INCLUDE_USAGE,
    ROLLUP_MAX_OPEN,
    AGENT_LABEL,
    API_KEY_HINT,
    POLICY_ENFORCE,
    POLICIES,
    POLICY_API_URL,
    POLICY_API_KEY,
    POLICY_REFRESH_INTERVAL,
    POLICY_FAIL_MODE,
)

# --- The collector service (`otel-llm collector`) -------------------------------------------


COLLECTOR_GRPC_ENDPOINT: Setting[str | None] = Setting(
    name="collector_grpc_endpoint",
    default="127.0.0.1:4317",
    parse=str,
    check=endpoint,
    doc=(
        "Address the service's OTLP/gRPC receiver binds (``host:port``; ``0.0.0.0:4317`` for "
        "other hosts; ``none``: no gRPC receiver)."
    ),
)
COLLECTOR_HTTP_ENDPOINT: Setting[str | None] = Setting(
    name="collector_http_endpoint",
    default="127.0.0.1:4318",
    parse=str,
    check=endpoint,
    doc=(
        "Address the service's OTLP/HTTP receiver (``POST /v1/traces``, protobuf or JSON) "
        "binds; ``none``: no HTTP receiver."
    ),
)
COLLECTOR_METRICS_ENDPOINT: Setting[str | None] = Setting(
    name="collector_metrics_endpoint",
    default="127.0.0.1:9464",
    parse=str,
    check=endpoint,
    doc="Address of the service's ``/metrics`` and ``/health`` endpoints; ``none``: off.",
)
COLLECTOR_UPSTREAM_ENDPOINT: Setting[str | None] = Setting(
    name="collector_upstream_endpoint",
    default=None,
    parse=str,
    check=optional_text,
    doc=(
        "Where the service forwards every span (Jaeger, Tempo, a Collector): ``host:port`` or "
        "``https://host:4317`` for gRPC, a URL (``http://host:4318``; ``/v1/traces`` is "
        "appended unless there) for http/protobuf. Unset: spans are priced and measured, then "
        "dropped (no queue)."
    ),
)
COLLECTOR_UPSTREAM_PROTOCOL: Setting[str] = Setting(
    name="collector_upstream_protocol",
    default="grpc",
    parse=str,
    check=choice("grpc", "http/protobuf"),
    doc="OTLP protocol of the upstream: ``grpc`` or ``http/protobuf``.",
)
COLLECTOR_UPSTREAM_HEADERS: Setting[dict[str, str]] = Setting(
    name="collector_upstream_headers",
    default={},
    parse=parse_headers,
    check=header_map,
    doc=(
        "Headers (gRPC metadata) sent upstream, e.g. an API key: ``k=v,k2=v2`` with "
        "URL-encoded values, as OTEL_EXPORTER_OTLP_HEADERS; a mapping in the config file."
    ),
)
COLLECTOR_UPSTREAM_INSECURE: Setting[bool] = Setting(
    name="collector_upstream_insecure",
    default=False,
    parse=parse_bool,
    check=boolean,
    doc=(
        "gRPC upstream without TLS (as OTEL_EXPORTER_OTLP_INSECURE). An ``http://`` endpoint "
        "is plaintext and an ``https://`` one TLS whatever this says."
    ),
)
COLLECTOR_UPSTREAM_CA_FILE: Setting[str | None] = Setting(
    name="collector_upstream_ca_file",
    default=None,
    parse=str,
    check=optional_text,
    doc="PEM file of the CA certificates that verify the upstream (default: the system's).",
)
COLLECTOR_UPSTREAM_CLIENT_CERT: Setting[str | None] = Setting(
    name="collector_upstream_client_cert",
    default=None,
    parse=str,
    check=optional_text,
    doc="PEM client certificate for mutual TLS with the upstream (with the client key).",
)
COLLECTOR_UPSTREAM_CLIENT_KEY: Setting[str | None] = Setting(
    name="collector_upstream_client_key",
    default=None,
    parse=str,
    check=optional_text,
    doc="PEM private key of the client certificate.",
)
COLLECTOR_UPSTREAM_TIMEOUT: Setting[float] = Setting(
    name="collector_upstream_timeout",
    default=10.0,
    parse=float,
    check=positive_seconds,
    doc="Seconds one export to the upstream may take before it is retried.",
)
COLLECTOR_UPSTREAM_COMPRESSION: Setting[str] = Setting(
    name="collector_upstream_compression",
    default="none",
    parse=str,
    check=choice("none", "gzip"),
    doc=(
        "Compression of requests to the upstream: ``none`` or ``gzip`` (less bandwidth, more "
        "CPU per span)."
    ),
)
COLLECTOR_QUEUE_DIR: Setting[str] = Setting(
    name="collector_queue_dir",
    default_factory=lambda: _state_path("queue"),
    parse=str,
    check=path_text,
    doc=(
        "Directory of the disk-backed queue of spans not yet forwarded (default: "
        "``$XDG_STATE_HOME/otel-llm/queue``, i.e. ``~/.local/state/otel-llm/queue``: it must "
        "survive restarts, so not /tmp). One service per directory."
    ),
)
COLLECTOR_QUEUE_MAX_BYTES: Setting[int] = Setting(
    name="collector_queue_max_bytes",
    default=256 << 20,
    parse=parse_size,
    check=byte_size,
    doc=(
        "Disk space the queue may use (``268435456``, ``256MiB``, ``1GiB``); when full, "
        "exporters are told to retry later (gRPC RESOURCE_EXHAUSTED, HTTP 503)."
    ),
)
COLLECTOR_MAX_REQUEST_BYTES: Setting[int] = Setting(
    name="collector_max_request_bytes",
    default=4 << 20,
    parse=parse_size,
    check=byte_size,
    doc=(
        "Largest export request accepted, after decompression (default 4 MiB, the "
        "OpenTelemetry Collector's gRPC default); larger ones get RESOURCE_EXHAUSTED / 413."
    ),
)
COLLECTOR_FORWARD_WORKERS: Setting[int] = Setting(
    name="collector_forward_workers",
    default=2,
    parse=int,
    check=int_at_least(1),
    doc="Export requests sent to the upstream at once.",
)
COLLECTOR_GRPC_WORKERS: Setting[int] = Setting(
    name="collector_grpc_workers",
    default=8,
    parse=int,
    check=int_at_least(1),
    doc=(
        "Threads handling OTLP/gRPC Export calls. Four times as many calls are admitted at "
        "once (running or waiting for a thread); past that a call is refused with "
        "RESOURCE_EXHAUSTED and a RetryInfo, which OTLP exporters retry."
    ),
)
COLLECTOR_RETRY_INITIAL_BACKOFF: Setting[float] = Setting(
    name="collector_retry_initial_backoff",
    default=0.5,
    parse=float,
    check=positive_seconds,
    doc="Seconds before the first retry of a failed export; the wait doubles per retry.",
)
COLLECTOR_RETRY_MAX_BACKOFF: Setting[float] = Setting(
    name="collector_retry_max_backoff",
    default=30.0,
    parse=float,
    check=positive_seconds,
    doc=(
        "Longest wait between retries of a failed export (an upstream's Retry-After or "
        "RetryInfo may ask for more, up to 300 s)."
    ),
)
COLLECTOR_RETRY_AFTER: Setting[float] = Setting(
    name="collector_retry_after",
    default=5.0,
    parse=float,
    check=positive_seconds,
    doc=(
        "Seconds a client refused because the queue is full (or the service is stopping) is "
        "told to wait before retrying (gRPC RetryInfo, HTTP Retry-After)."
    ),
)

COLLECTOR_DEDUP_WINDOW: Setting[int] = Setting(
    name="collector_dedup_window",
    default=100_000,
    parse=int,
    check=int_at_least(0),
    doc=(
        "LLM calls whose (trace id, span id) the service remembers, so a span delivered "
        "again (an export retried by a client) is forwarded but not counted twice in the GenAI "
        "metrics (counted in ``otel_llm_collector_duplicate_spans_total`` instead) nor "
        "evaluated twice against the policies. About 110 bytes each (100,000: about 11 MB). A "
        "span redelivered after this many newer calls is counted again; 0 turns the check off."
    ),
)

POLICIES_FILE: Setting[str | None] = Setting(
    name="policies_file",
    default=None,
    parse=str,
    check=or_off(path_text),
    doc=(
        'YAML file of budgets and policies (README, "Budgets and policies") the collector '
        "evaluates every priced call against. Validated on start (an invalid file refuses to "
        "start), reloaded when it changes and on SIGHUP (an invalid edit is logged and the "
        "last good policies stay in force). Unset or ``none``: no policies."
    ),
)
POLICY_SYNC_INTERVAL: Setting[float] = Setting(
    name="policy_sync_interval",
    default=5.0,
    parse=float,
    check=seconds_or_off,
    doc=(
        "Seconds between two resyncs of the collector's budgets from its call log's store: "
        "replicas writing one store each set every budget's spend to the store's sums plus "
        "their own calls not stored yet, so all agree on the spend (and on what is blocked) "
        "within about this interval plus the time a call takes to be stored. 0: no resync "
        "(the spend is read back at start-up only; one collector per store)."
    ),
)

COLLECTOR: tuple[Setting[Any], ...] = (
    COLLECTOR_GRPC_ENDPOINT,
    COLLECTOR_HTTP_ENDPOINT,
    COLLECTOR_METRICS_ENDPOINT,
    COLLECTOR_UPSTREAM_ENDPOINT,
    COLLECTOR_UPSTREAM_PROTOCOL,
    COLLECTOR_UPSTREAM_HEADERS,
    COLLECTOR_UPSTREAM_INSECURE,
    COLLECTOR_UPSTREAM_CA_FILE,
    COLLECTOR_UPSTREAM_CLIENT_CERT,
    COLLECTOR_UPSTREAM_CLIENT_KEY,
    COLLECTOR_UPSTREAM_TIMEOUT,
    COLLECTOR_UPSTREAM_COMPRESSION,
    COLLECTOR_QUEUE_DIR,
    COLLECTOR_QUEUE_MAX_BYTES,
    COLLECTOR_MAX_REQUEST_BYTES,
    COLLECTOR_FORWARD_WORKERS,
    COLLECTOR_GRPC_WORKERS,
    COLLECTOR_RETRY_INITIAL_BACKOFF,
    COLLECTOR_RETRY_MAX_BACKOFF,
    COLLECTOR_RETRY_AFTER,
    COLLECTOR_DEDUP_WINDOW,
    POLICIES_FILE,
    POLICY_SYNC_INTERVAL,
)

# --- The call log (store, query API, retention) ---------------------------------------------

# The store, its writer and retention (otel_llm/calllog/store.py, writer.py, retention.py).


# Text even when it is ``none``: only the collector reads that as "off" (``is_off``); the
# exporter and ``otel-llm calls`` take the value as a path.
CALL_LOG_STORE: Setting[str] = Setting(
    name="call_log_store",
    # Beside the collector's queue: state that must survive restarts, writable without root.
    default_factory=lambda: _state_path("calls.db"),
    parse=str,
    check=path_text,
    doc=(
        "Where the call log is stored: a SQLite file path (or ``sqlite:///path``), or a "
        "``postgresql://user@host/db`` URL shared by several collector replicas. Default: "
        "``$XDG_STATE_HOME/otel-llm/calls.db`` (``~/.local/state/otel-llm/calls.db``). "
        "``none``: ``otel-llm collector`` keeps no call log."
    ),
)
CALL_LOG_BATCH_SIZE: Setting[int] = Setting(
    name="call_log_batch_size",
    default=20_000,
    parse=int,
    check=int_at_least(1),
    doc=(
        "Calls written to the call log in one transaction, at most (under load; a quiet "
        "application's calls are written every flush interval)."
    ),
)
"""No call waits longer for it: a batch is written when full or a flush interval after its
oldest call, whichever is first, so the size only matters above ``size / interval`` calls a
second, where a larger transaction spends less a call (SQLite, 100,000 users: 10,000 against
5,000 is +6-11 %, 20,000 against 10,000 +6-12 % over a million calls, a call's daily rows
shared by more calls; ``benchmarks/calllog_benchmark.py --batch``). What it costs: the write
lock held up to ~1 s a batch at 20,000 calls a second (readers do not wait for it; the store's
other writes -- trace spans, retention, ranks -- wait that long at most), and memory while a
batch is written: its rows and roll-up peak at ~45 MB over its records (23 at 10,000; traced
with ``tracemalloc``, 100,000 users); ``call_log_max_pending`` bounds the queue. In the
collector, a transaction holds the calls of the queued requests read at once, 5,000 spans' at
most (``collector/feed.py``'s ``MAX_CALLS``), so this caps them only when set lower."""
CALL_LOG_FLUSH_INTERVAL: Setting[float] = Setting(
    name="call_log_flush_interval",
    default=1.0,
    parse=float,
    check=seconds_or_off,
    doc=(
        "Seconds a call may wait for its batch to fill before it is written anyway (in-process "
        "CallLogExporter; the collector writes each queued batch as its call log reads it)."
    ),
)
CALL_LOG_MAX_PENDING: Setting[int] = Setting(
    name="call_log_max_pending",
    default=100_000,
    parse=int,
    check=int_at_least(1),
    doc=(
        "Calls waiting to be written, at most; beyond, new calls are dropped, counted and "
        "logged (the store is down or too slow), never blocking the application (in-process "
        "CallLogExporter; in the collector the durable queue holds them and fills instead)."
    ),
)
CALL_LOG_CONTENT_DAYS: Setting[int] = Setting(
    name="call_log_content_days",
    default=30,
    parse=int,
    check=int_at_least(1),
    doc="Days captured prompts and response previews are kept in the call log.",
)
CALL_LOG_RECORD_DAYS: Setting[int] = Setting(
    name="call_log_record_days",
    default=90,
    parse=int,
    check=int_at_least(1),
    doc=(
        "Days call records are kept; daily aggregates (stats by day, week, model, ...) are "
        "kept without limit."
    ),
)
CALL_LOG_MAX_DAILY_VALUES: Setting[int] = Setting(
    name="call_log_max_daily_values",
    # As max_label_values: a deployment with more than 200 models, services, features or
    # projects in one day is rare, and the metrics fold at the same number, so dashboards and
    # call-log stats agree. What it bounds: a client sending a new model name per call used to
    # add a daily row per call, kept for ever.
    default=200,
    parse=int,
    check=int_at_least(1),
    doc=(
        "Distinct values per day of each daily-aggregate dimension (service, provider, model, "
        "operation, feature, project); calls with later new values are added to that day's "
        "``other`` and counted. Call records keep the real value. Give every writer of a "
        "shared store the same value."
    ),
)
CALL_LOG_MAX_DAILY_USERS: Setting[int] = Setting(
    name="call_log_max_daily_users",
    # Stats by user and by API key have tables of their own (a row per user and day, not per
    # user and model name and feature...), sized for 100,000 users a day: about 150 bytes a row.
    default=100_000,
    parse=int,
    check=int_at_least(1),
    doc=(
        "Distinct users, and distinct API key ids, per day kept by the daily aggregates by "
        "user and by API key; calls of later new ones are added to that day's ``other`` and "
        "counted. Call records keep the real value. Give every writer of a shared store the "
        "same value."
    ),
)
CALL_LOG_PG_POOL_SIZE: Setting[int] = Setting(
    name="call_log_pg_pool_size",
    # The query API serves requests on several threads: with one connection they queued
    # behind each other. Eight replicas of 8 (+1 writer each) stay inside PostgreSQL's
    # default max_connections (100).
    default=8,
    parse=int,
    check=int_at_least(1),
    doc=(
        "Connections to a PostgreSQL call log each process keeps open at most for reads (its "
        "pool; the writer has one more): concurrent API requests each use their own. Several "
        "replicas: keep replicas x (size + 1) below the server's ``max_connections``."
    ),
)
CALL_LOG_PG_POOL_TIMEOUT: Setting[float] = Setting(
    name="call_log_pg_pool_timeout",
    default=5.0,
    parse=float,
    check=positive_seconds,
    doc=(
        "Seconds a PostgreSQL call-log read waits for a connection of the pool (all busy, or "
        "the server unreachable) before it fails with an error naming the server (the API "
        "answers 500 and logs it)."
    ),
)
CALL_LOG_RETENTION_INTERVAL: Setting[float] = Setting(
    name="call_log_retention_interval",
    default=3600.0,
    parse=float,
    check=seconds_or_off,
    doc="Seconds between two runs of the writer's retention job (0: never; use ``prune``).",
)

# The query API (otel_llm/calllog/api.py) and its client, `otel-llm calls --api`.
CALL_LOG_API_ENDPOINT: Setting[str | None] = Setting(
    name="call_log_api_endpoint",
    default="127.0.0.1:9466",
    parse=str,
    check=endpoint,
    doc=(
        "Address the call-log query API (``/api/v1/calls``) binds, e.g. for ``otel-llm calls "
        "serve``; ``0.0.0.0:9466`` for other hosts; ``none``: not served."
    ),
)
CALL_LOG_API_KEYS_FILE: Setting[str | None] = Setting(
    name="call_log_api_keys_file",
    default=None,
    parse=str,
    check=optional_text,
    doc=(
        "YAML or JSON file of the query API's keys: each a name, its ``sha256`` (or a plain "
        "``key``) and optionally the ``projects`` it may read (see README)."
    ),
)
CALL_LOG_API_KEYS: Setting[str | None] = Setting(
    name="call_log_api_keys",
    default=None,
    parse=str,
    check=optional_text,
    doc=(
        "Query API keys given inline, each allowed every project: "
        "``name=key,name2=sha256:<hex>`` (added to those of the keys file)."
    ),
)
CALL_LOG_CLIENT_KEY: Setting[str | None] = Setting(
    name="call_log_client_key",
    default=None,
    parse=str,
    check=optional_text,
    doc=(
        "The key ``otel-llm calls --api URL`` sends when ``--api-key`` is not given (a key on "
        "the command line is visible to other users of the machine)."
    ),
)
CALL_LOG_RATE_LIMIT_LIST: Setting[int] = Setting(
    name="call_log_rate_limit_list",
    default=60,
    parse=int,
    check=int_at_least(0),
    doc="List and count requests per minute per API key (0: unlimited); more get 429.",
)
CALL_LOG_RATE_LIMIT_DETAILS: Setting[int] = Setting(
    name="call_log_rate_limit_details",
    default=120,
    parse=int,
    check=int_at_least(0),
    doc="Requests per minute per API key for one call and its details (0: unlimited).",
)
CALL_LOG_RATE_LIMIT_STATS: Setting[int] = Setting(
    name="call_log_rate_limit_stats",
    default=30,
    parse=int,
    check=int_at_least(0),
    doc="Stats requests per minute per API key (0: unlimited).",
)
CALL_LOG_STATS_TIMEOUT: Setting[float] = Setting(
    name="call_log_stats_timeout",
    # Capped aggregates answer a year of stats in well under a second; the budget is for what
    # is not capped (daily rows of many dimension combinations, stores written before the cap)
    # and bounds how long a stats request can hold the API's store connection and the CPU.
    default=5.0,
    parse=float,
    check=positive_seconds,
    doc=(
        "Seconds a stats request of the query API may take; past them it is stopped (the "
        "database statement too) and answered 503."
    ),
)
CALL_LOG_QUERY_TIMEOUT: Setting[float] = Setting(
    name="call_log_query_timeout",
    # An indexed page or count answers in milliseconds; the budget is for what no index
    # serves (a deep offset sorted by cost, traces over a month of calls) and bounds how long
    # one request holds SQLite's one reader connection (or a pool connection) from the others.
    default=10.0,
    parse=float,
    check=positive_seconds,
    doc=(
        "Seconds any other read of the query API (list, count, enhanced list, one call, its "
        "details, traces, a trace, a conversation) may take; past them it is stopped (the "
        "database statement too) and answered 503."
    ),
)
CALL_LOG_TRACE_URL: Setting[str | None] = Setting(
    name="call_log_trace_url",
    default=None,
    parse=str,
    check=optional_text,
    doc=(
        'Link template of the page\'s "open trace" links, ``{trace_id}`` (and ``{span_id}``) '
        "replaced, e.g. ``http://jaeger:16686/trace/{trace_id}``; unset: no link."
    ),
)

CALL_LOG: tuple[Setting[Any], ...] = (
    CALL_LOG_STORE,
    CALL_LOG_BATCH_SIZE,
    CALL_LOG_FLUSH_INTERVAL,
    CALL_LOG_MAX_PENDING,
    CALL_LOG_CONTENT_DAYS,
    CALL_LOG_RECORD_DAYS,
    CALL_LOG_MAX_DAILY_VALUES,
    CALL_LOG_MAX_DAILY_USERS,
    CALL_LOG_RETENTION_INTERVAL,
    CALL_LOG_PG_POOL_SIZE,
    CALL_LOG_PG_POOL_TIMEOUT,
    CALL_LOG_API_ENDPOINT,
    CALL_LOG_API_KEYS_FILE,
    CALL_LOG_API_KEYS,
    CALL_LOG_CLIENT_KEY,
    CALL_LOG_RATE_LIMIT_LIST,
    CALL_LOG_RATE_LIMIT_DETAILS,
    CALL_LOG_RATE_LIMIT_STATS,
    CALL_LOG_STATS_TIMEOUT,
    CALL_LOG_QUERY_TIMEOUT,
    CALL_LOG_TRACE_URL,
)

ALL: tuple[Setting[Any], ...] = (*CORE, *COLLECTOR, *CALL_LOG)
